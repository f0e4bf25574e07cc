//! Classifies the Fashion-MNIST test set with the MLP kiln compiled ahead of
//! time (parameters baked in), calling it through its C interface:
//!
//! ```sh
//! KILN_LIB_DIR=build cargo run --manifest-path examples/rust-app/Cargo.toml -- DATA_DIR
//! ```

use std::process::{Command, ExitCode};

/// The batch size the library was compiled for (`--bind N=1000`); smaller
/// batches are allowed, larger ones return status 2.
const BATCH: usize = 1000;

unsafe extern "C" {
    /// From `mlp.h`: `x` is f32[n, 784], `out` f32[n, 10]; returns 0 or a status.
    fn mlp_forward(x: *const f32, n: i64, out: *mut f32) -> i32;
}

/// The decompressed bytes of a gzip file (through `gzip -dc`).
fn read_gz(path: &str) -> Result<Vec<u8>, String> {
    let out = Command::new("gzip").args(["-dc", path]).output().map_err(|e| format!("cannot run gzip: {e}"))?;
    if out.status.success() { Ok(out.stdout) } else { Err(format!("cannot read {path}")) }
}

fn big_endian(b: &[u8]) -> usize {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize
}

fn main() -> ExitCode {
    let Some(dir) = std::env::args().nth(1) else {
        eprintln!("usage: kiln-rust-app DATA_DIR");
        return ExitCode::from(2);
    };
    let read = |name: &str| read_gz(&format!("{dir}/{name}"));
    let (images, labels) = match (read("t10k-images-idx3-ubyte.gz"), read("t10k-labels-idx1-ubyte.gz")) {
        (Ok(i), Ok(l)) if i.len() >= 16 && l.len() >= 8 => (i, l),
        _ => {
            eprintln!("error: cannot read the Fashion-MNIST test set in {dir}");
            return ExitCode::FAILURE;
        }
    };
    let count = big_endian(&labels[4..]);
    if images.len() != 16 + count * 784 || labels.len() != 8 + count {
        eprintln!("error: the test set in {dir} is not 28x28 images with one label each");
        return ExitCode::FAILURE;
    }
    let mut correct = 0;
    let mut logits = vec![0f32; BATCH * 10];
    for start in (0..count).step_by(BATCH) {
        let n = BATCH.min(count - start);
        let x: Vec<f32> = images[16 + start * 784..16 + (start + n) * 784].iter().map(|&p| f32::from(p) / 255.0).collect();
        // SAFETY: `x` holds n x 784 floats and `logits` room for n x 10.
        let status = unsafe { mlp_forward(x.as_ptr(), n as i64, logits.as_mut_ptr()) };
        if status != 0 {
            eprintln!("error: mlp_forward returned {status}");
            return ExitCode::FAILURE;
        }
        for i in 0..n {
            let row = &logits[i * 10..i * 10 + 10];
            let best = (0..10).fold(0, |b, c| if row[c] > row[b] { c } else { b });
            correct += usize::from(best == usize::from(labels[8 + start + i]));
        }
    }
    println!("{count} test images, test accuracy {:.4}", correct as f64 / count as f64);
    ExitCode::SUCCESS
}

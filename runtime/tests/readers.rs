//! The file readers never panic or abort: valid NPY, safetensors and IDX
//! files (raw and gzip) mutated at random (bytes changed, cut short, grown,
//! header numbers set to huge values) and random bytes are read back as a
//! value or a clear error. The same holds for the fuzz targets in `fuzz/`,
//! which run these readers for longer.

use std::io::Write;
use std::path::PathBuf;

use kiln_ir::interp::Tensor;
use kiln_runtime::{checkpoint, idx, npy};
use proptest::prelude::*;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kiln-readers-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// A change to a file's bytes.
#[derive(Clone, Debug)]
enum Mutation {
    Set(usize, u8),
    Truncate(usize),
    Extend(Vec<u8>),
    /// Four bytes at a position set to a huge count (a header's size field).
    Huge(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        any::<usize>().prop_map(Mutation::Truncate),
        proptest::collection::vec(any::<u8>(), 0..64).prop_map(Mutation::Extend),
        any::<usize>().prop_map(Mutation::Huge),
    ]
}

fn mutate(mut bytes: Vec<u8>, changes: &[Mutation]) -> Vec<u8> {
    for m in changes {
        let n = bytes.len().max(1);
        match m {
            Mutation::Set(i, b) => {
                if !bytes.is_empty() {
                    bytes[i % n] = *b;
                }
            }
            Mutation::Truncate(i) => bytes.truncate(i % n),
            Mutation::Extend(more) => bytes.extend(more),
            Mutation::Huge(i) => {
                let at = i % n;
                for (k, b) in [0x7f, 0xff, 0xff, 0xff].into_iter().enumerate() {
                    if let Some(slot) = bytes.get_mut(at + k) {
                        *slot = b;
                    }
                }
            }
        }
    }
    bytes
}

fn valid_npy() -> Vec<u8> {
    let path = scratch("valid.npy");
    npy::write(&path, &Tensor::from_f32(&[3, 4], &[1.5; 12])).unwrap();
    std::fs::read(path).unwrap()
}

fn module() -> kiln_ir::Module {
    kiln_ir::parse_module(
        "param w: f32[3, 2] = zeros\nparam b: i64[2] = zeros\nfunc f(x: f32[3]) -> (f32[3]) {\n  %0: f32[3] = input 0\n  return %0\n}\n",
    )
    .unwrap()
}

fn valid_checkpoint() -> Vec<u8> {
    let m = module();
    let params = kiln_ir::initialize_params(&m, 1);
    let path = scratch("valid.safetensors");
    let names = vec!["w".to_string(), "b".to_string()];
    checkpoint::save_training(&path, &params, &names, checkpoint::TrainState { epoch: 1, steps: 2, seed: 3, batch: 4 })
        .unwrap();
    std::fs::read(path).unwrap()
}

fn valid_idx(gzip: bool) -> Vec<u8> {
    let mut raw = vec![0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 2];
    raw.extend([1, 2, 3, 4, 5, 6, 7, 8]);
    if !gzip {
        return raw;
    }
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(&raw).unwrap();
    e.finish().unwrap()
}

/// Reads `bytes` as each kind of file; any result but a panic is fine.
fn read_all_ways(name: &str, bytes: &[u8]) {
    let path = scratch(name);
    std::fs::write(&path, bytes).unwrap();
    let _ = npy::read(&path);
    let _ = checkpoint::load(&path, &module(), |_| true);
    let _ = checkpoint::train_state(&path);
    let _ = idx::read_images(&path);
    let _ = idx::read_labels(&path);
}

/// Cases per property: `KILN_FUZZ_CASES`, else 400 (CI's).
fn cases() -> u32 {
    std::env::var("KILN_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(400)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn mutated_npy_files_never_panic(changes in proptest::collection::vec(mutation(), 1..4)) {
        read_all_ways("npy", &mutate(valid_npy(), &changes));
    }

    #[test]
    fn mutated_checkpoints_never_panic(changes in proptest::collection::vec(mutation(), 1..4)) {
        read_all_ways("ckpt", &mutate(valid_checkpoint(), &changes));
    }

    #[test]
    fn mutated_idx_files_never_panic(gzip in any::<bool>(), changes in proptest::collection::vec(mutation(), 1..4)) {
        read_all_ways("idx", &mutate(valid_idx(gzip), &changes));
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        read_all_ways("random", &bytes);
    }
}

/// The unmutated files read back, so the mutations start from valid ones.
#[test]
fn the_valid_files_read() {
    let path = scratch("check.npy");
    std::fs::write(&path, valid_npy()).unwrap();
    assert_eq!(npy::read(&path).unwrap().shape(), &[3, 4]);
    std::fs::write(&path, valid_checkpoint()).unwrap();
    assert_eq!(checkpoint::load(&path, &module(), |_| true).unwrap().len(), 2);
    for gzip in [false, true] {
        std::fs::write(&path, valid_idx(gzip)).unwrap();
        assert_eq!(idx::read_images(&path).unwrap().dims, vec![2, 2, 2]);
    }
}

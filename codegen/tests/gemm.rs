//! kiln's f32 GEMM against a plain f64 triple loop: random sizes around
//! every blocking boundary (tile edges, the 256-deep blocks, the 144-row
//! tasks and 1024-column panels), row strides wider than the matrix, and
//! 1, 2 and 3 threads, which must all give the same bits.

use kiln_codegen::gemm::{Matrix, sgemm};
use proptest::prelude::Rng;
use proptest::test_runner::{RngAlgorithm, TestRng};

struct Case {
    m: usize,
    n: usize,
    k: usize,
    /// Extra elements at the end of each row, for every matrix.
    pad: usize,
}

/// Runs the case on `threads` threads; returns `c` with its padding, which
/// starts as NaN so that a write outside `m x n` or a missed element shows.
fn run(case: &Case, threads: usize, rng: &mut TestRng) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let Case { m, n, k, pad } = *case;
    let mut values = |len: usize| (0..len).map(|_| (rng.next_u32() % 2001) as f32 / 1000.0 - 1.0).collect::<Vec<_>>();
    let (a, b) = (values(m * (k + pad)), values(k * (n + pad)));
    let mut c = vec![f32::NAN; m * (n + pad)];
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("a thread pool");
    pool.install(|| {
        // SAFETY: the vectors hold the matrices with these strides.
        unsafe {
            sgemm(
                m,
                n,
                k,
                Matrix { data: a.as_ptr(), row_stride: k + pad },
                Matrix { data: b.as_ptr(), row_stride: n + pad },
                Matrix { data: c.as_mut_ptr(), row_stride: n + pad },
            )
        }
    });
    (a, b, c)
}

fn check(case: &Case, seed: u64) {
    let Case { m, n, k, pad } = *case;
    let mut s = [0u8; 32];
    s[..8].copy_from_slice(&seed.to_le_bytes());
    let mut results = Vec::new();
    for threads in [1, 2, 3] {
        let (a, b, c) = run(case, threads, &mut TestRng::from_seed(RngAlgorithm::ChaCha, &s));
        for i in 0..m {
            for j in 0..n + pad {
                let got = c[i * (n + pad) + j];
                if j >= n {
                    assert!(got.is_nan(), "{m}x{n}x{k}: c[{i}][{j}] is outside the matrix but was written");
                    continue;
                }
                let exact: f64 =
                    (0..k).map(|p| f64::from(a[i * (k + pad) + p]) * f64::from(b[p * (n + pad) + j])).sum();
                let scale: f64 =
                    (0..k).map(|p| (f64::from(a[i * (k + pad) + p]) * f64::from(b[p * (n + pad) + j])).abs()).sum();
                let bound = 1e-6 * (k as f64 + 1.0) * scale.max(1.0);
                assert!(
                    (f64::from(got) - exact).abs() <= bound,
                    "{m}x{n}x{k} (pad {pad}, {threads} threads): c[{i}][{j}] = {got}, exactly {exact}"
                );
            }
        }
        results.push(c);
    }
    let bits = |c: &Vec<f32>| c.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert!(results.iter().all(|c| bits(c) == bits(&results[0])), "{m}x{n}x{k}: thread counts disagree");
}

#[test]
fn blocking_boundaries() {
    let sizes = [
        (1, 1, 1, 0),
        (12, 32, 1, 0),
        (13, 33, 7, 3),
        (11, 31, 256, 0),
        (25, 17, 257, 5),
        (145, 65, 300, 1),
        (300, 40, 513, 0),
        (40, 1100, 20, 2),
        (289, 1057, 260, 0),
        (5, 3, 0, 1),
    ];
    for (seed, &(m, n, k, pad)) in sizes.iter().enumerate() {
        check(&Case { m, n, k, pad }, seed as u64);
    }
}

#[test]
fn random_sizes() {
    let mut rng = TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]);
    for seed in 0..40 {
        let mut dim = |most: u32| (rng.next_u32() % most) as usize + 1;
        let case = Case { m: dim(80), n: dim(100), k: dim(300), pad: dim(4) - 1 };
        check(&case, seed);
    }
}

#[test]
fn empty_matrices_write_nothing() {
    for (m, n) in [(0, 5), (5, 0)] {
        let (_, _, c) = run(&Case { m, n, k: 3, pad: 1 }, 2, &mut TestRng::from_seed(RngAlgorithm::ChaCha, &[1; 32]));
        assert!(c.iter().all(|x| x.is_nan()));
    }
}

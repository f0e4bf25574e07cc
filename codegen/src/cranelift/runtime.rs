//! Functions compiled kernels call: transcendental functions (computed in
//! f64 and rounded, exactly as the reference interpreter does; `exp` of f32
//! vectors is computed inline instead, see `vector.rs`) and GEMM
//! (single-threaded calls of the `gemm` crate; big products split by rows or by
//! matrix across rayon's threads, small products with a long `k` as
//! partial products over fixed chunks of `k` added in order). Each is
//! registered as a JIT symbol under the name the code generator calls it
//! by.

use cranelift_jit::JITBuilder;
use rayon::prelude::*;

extern "C" fn kiln_exp_f32(x: f32) -> f32 {
    f64::from(x).exp() as f32
}
extern "C" fn kiln_log_f32(x: f32) -> f32 {
    f64::from(x).ln() as f32
}
extern "C" fn kiln_sin_f32(x: f32) -> f32 {
    f64::from(x).sin() as f32
}
extern "C" fn kiln_cos_f32(x: f32) -> f32 {
    f64::from(x).cos() as f32
}
extern "C" fn kiln_tanh_f32(x: f32) -> f32 {
    f64::from(x).tanh() as f32
}
extern "C" fn kiln_exp_f64(x: f64) -> f64 {
    x.exp()
}
extern "C" fn kiln_log_f64(x: f64) -> f64 {
    x.ln()
}
extern "C" fn kiln_sin_f64(x: f64) -> f64 {
    x.sin()
}
extern "C" fn kiln_cos_f64(x: f64) -> f64 {
    x.cos()
}
extern "C" fn kiln_tanh_f64(x: f64) -> f64 {
    x.tanh()
}
extern "C" fn kiln_pow_f32(x: f32, y: f32) -> f32 {
    f64::from(x).powf(f64::from(y)) as f32
}
extern "C" fn kiln_pow_f64(x: f64, y: f64) -> f64 {
    x.powf(y)
}

/// One single-threaded product `c = a @ b`: `(m, k, n, a, rsa, csa, b,
/// rsb, csb, c, rsc, csc)`, strides in elements.
type Gemm<T> = unsafe fn(usize, usize, usize, *const T, isize, isize, *const T, isize, isize, *mut T, isize, isize);

/// [`Gemm`] through the `gemm` crate, which beat `matrixmultiply` on the
/// products the book's models make, narrow ones most
/// (`docs/performance.md`). An empty sum (`k` = 0) writes zeros.
macro_rules! product {
    ($name:ident, $t:ty) => {
        /// # Safety
        /// `a` (m x k), `b` (k x n) and `c` (m x n) lie inside their
        /// buffers at these strides, and `c` overlaps neither operand.
        #[allow(clippy::too_many_arguments)]
        pub unsafe fn $name(
            m: usize,
            k: usize,
            n: usize,
            a: *const $t,
            rsa: isize,
            csa: isize,
            b: *const $t,
            rsb: isize,
            csb: isize,
            c: *mut $t,
            rsc: isize,
            csc: isize,
        ) {
            if k == 0 {
                for i in 0..m as isize {
                    for j in 0..n as isize {
                        // SAFETY: element (i, j) of `c`, inside it by the caller's contract.
                        unsafe { *c.offset(i * rsc + j * csc) = 0.0 };
                    }
                }
                return;
            }
            // SAFETY: the caller's contract: every matrix inside its buffer,
            // `c` apart from `a` and `b`. `c` is not read (`read_dst`
            // false) and the product is scaled by one.
            unsafe {
                gemm::gemm(
                    m,
                    n,
                    k,
                    c,
                    csc,
                    rsc,
                    false,
                    a,
                    csa,
                    rsa,
                    b,
                    csb,
                    rsb,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                )
            }
        }
    };
}

product!(product_f32, f32);
product!(product_f64, f64);

/// Products with fewer multiply-adds than this run on the calling thread:
/// below it, waking a second thread costs more than it saves.
const PARALLEL_GEMM: i64 = 1 << 25;

/// Pointers into the operands, shared by the tasks of one product.
#[derive(Clone, Copy)]
struct Operands<T>(*const T, *const T, *mut T);

// SAFETY: the tasks read `a` and `b` and write disjoint rows or matrices of `c`.
unsafe impl<T> Send for Operands<T> {}
unsafe impl<T> Sync for Operands<T> {}

/// `c = a @ b` for `batch` matrices: rows `rs*` apart, columns `cs*` apart
/// (`c`'s are 1), matrices `bs*` apart (sizes and strides as the kernel
/// passes them, in elements). Big products are split across rayon's
/// threads, by matrix when there are several and by blocks of rows of `c`
/// otherwise; each piece is one single-threaded [`Gemm`] call.
///
/// # Safety
/// The kernel IR verifier proved every matrix inside its buffer and `c`
/// apart from `a` and `b`.
#[allow(clippy::too_many_arguments)]
unsafe fn batched<T: Copy + Send + Sync + std::ops::AddAssign>(
    gemm: Gemm<T>,
    zero: T,
    a: *const T,
    b: *const T,
    c: *mut T,
    dims: [i64; 12],
) {
    let [batch, m, n, k, rsa, bsa, csa, rsb, bsb, csb, rsc, bsc] = dims;
    let operands = Operands(a, b, c);
    // Rows `rows` of matrix `j`.
    let piece = move |j: i64, rows: std::ops::Range<i64>| {
        let Operands(a, b, c) = { operands };
        // SAFETY: see the function's contract; the rows lie inside the matrix.
        unsafe {
            gemm(
                (rows.end - rows.start) as usize,
                k as usize,
                n as usize,
                a.offset((j * bsa + rows.start * rsa) as isize),
                rsa as isize,
                csa as isize,
                b.offset((j * bsb) as isize),
                rsb as isize,
                csb as isize,
                c.offset((j * bsc + rows.start * rsc) as isize),
                rsc as isize,
                1,
            );
        }
    };
    if batch == 1 && m * n <= SMALL_PRODUCT && k >= 2 * K_CHUNK {
        // SAFETY: as `batched`'s; `c` holds m x n elements with row stride `rsc`.
        return unsafe { k_split(gemm, zero, a, b, c, [m, n, k, rsa, csa, rsb, csb, rsc]) };
    }
    let threads = rayon::current_num_threads() as i64;
    if threads < 2 || batch * m * n * k < PARALLEL_GEMM {
        (0..batch).for_each(|j| piece(j, 0..m));
    } else if batch >= threads {
        (0..batch).into_par_iter().for_each(|j| piece(j, 0..m));
    } else {
        let parts = threads.min((m + 15) / 16);
        (0..batch).for_each(|j| {
            (0..parts).into_par_iter().for_each(|p| piece(j, m * p / parts..m * (p + 1) / parts));
        });
    }
}

/// Products with at most this many elements of `c`...
const SMALL_PRODUCT: i64 = 4096;
/// ...and at least twice this many multiply-adds per element (a
/// convolution's weight gradient: 6 x 25 elements, each a sum over the
/// batch and the image) are computed as partial products over chunks of
/// this many steps of `k`, which rayon's threads share, then added in
/// chunk order. The chunks do not depend on the thread count, so neither
/// do the bits.
const K_CHUNK: i64 = 16384;

/// `c = a @ b` for one small, long product (see [`K_CHUNK`]), sizes and
/// strides as `[m, n, k, rsa, csa, rsb, csb, rsc]`.
///
/// # Safety
/// As [`batched`].
#[allow(clippy::too_many_arguments)]
unsafe fn k_split<T: Copy + Send + Sync + std::ops::AddAssign>(
    gemm: Gemm<T>,
    zero: T,
    a: *const T,
    b: *const T,
    c: *mut T,
    dims: [i64; 8],
) {
    let [m, n, k, rsa, csa, rsb, csb, rsc] = dims;
    let operands = Operands(a, b, c);
    let chunks = (k + K_CHUNK - 1) / K_CHUNK;
    let size = (m * n) as usize;
    let partials: Vec<Vec<T>> = (0..chunks)
        .into_par_iter()
        .map(|j| {
            let Operands(a, b, _) = { operands };
            let start = j * K_CHUNK;
            let depth = K_CHUNK.min(k - start);
            let mut partial = vec![zero; size];
            // SAFETY: columns start..start+depth of `a` and rows of `b` lie
            // inside the matrices; `partial` is m x n, row-major.
            unsafe {
                gemm(
                    m as usize,
                    depth as usize,
                    n as usize,
                    a.offset((start * csa) as isize),
                    rsa as isize,
                    csa as isize,
                    b.offset((start * rsb) as isize),
                    rsb as isize,
                    csb as isize,
                    partial.as_mut_ptr(),
                    n as isize,
                    1,
                );
            }
            partial
        })
        .collect();
    for i in 0..m {
        for col in 0..n {
            let mut sum = zero;
            for partial in &partials {
                sum += partial[(i * n + col) as usize];
            }
            // SAFETY: element (i, col) of `c`.
            unsafe { *c.offset((i * rsc + col) as isize) = sum };
        }
    }
}

/// `kiln_gemm_f32` and `kiln_gemm_f64`: what GEMM calls in generated code
/// reach, with sizes and strides as `batched` takes them.
macro_rules! gemm_entry {
    ($name:ident, $t:ty, $gemm:path) => {
        #[allow(clippy::too_many_arguments)]
        extern "C" fn $name(
            a: *const $t,
            b: *const $t,
            c: *mut $t,
            batch: i64,
            m: i64,
            n: i64,
            k: i64,
            rsa: i64,
            bsa: i64,
            csa: i64,
            rsb: i64,
            bsb: i64,
            csb: i64,
            rsc: i64,
            bsc: i64,
        ) {
            let dims = [batch, m, n, k, rsa, bsa, csa, rsb, bsb, csb, rsc, bsc];
            // SAFETY: the kernel IR verifier proved every matrix inside its
            // buffer and the result apart from the operands.
            unsafe { batched($gemm, 0.0, a, b, c, dims) }
        }
    };
}

gemm_entry!(kiln_gemm_f32, f32, product_f32);
gemm_entry!(kiln_gemm_f64, f64, product_f64);

/// Makes every helper visible to the JIT.
pub fn register(builder: &mut JITBuilder) {
    let symbols: [(&str, *const u8); 14] = [
        ("kiln_exp_f32", kiln_exp_f32 as *const u8),
        ("kiln_log_f32", kiln_log_f32 as *const u8),
        ("kiln_sin_f32", kiln_sin_f32 as *const u8),
        ("kiln_cos_f32", kiln_cos_f32 as *const u8),
        ("kiln_tanh_f32", kiln_tanh_f32 as *const u8),
        ("kiln_exp_f64", kiln_exp_f64 as *const u8),
        ("kiln_log_f64", kiln_log_f64 as *const u8),
        ("kiln_sin_f64", kiln_sin_f64 as *const u8),
        ("kiln_cos_f64", kiln_cos_f64 as *const u8),
        ("kiln_tanh_f64", kiln_tanh_f64 as *const u8),
        ("kiln_pow_f32", kiln_pow_f32 as *const u8),
        ("kiln_pow_f64", kiln_pow_f64 as *const u8),
        ("kiln_gemm_f32", kiln_gemm_f32 as *const u8),
        ("kiln_gemm_f64", kiln_gemm_f64 as *const u8),
    ];
    for (name, pointer) in symbols {
        builder.symbol(name, pointer);
    }
}

//! Functions compiled kernels call: transcendental functions (computed in
//! f64 and rounded, exactly as the reference interpreter does) and GEMM
//! (matrixmultiply, with its own threads). Each is registered as a JIT
//! symbol under the name the code generator calls it by.

use cranelift_jit::JITBuilder;

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

/// The signature of matrixmultiply's `sgemm` and `dgemm`.
type Gemm<T> =
    unsafe fn(usize, usize, usize, T, *const T, isize, isize, *const T, isize, isize, T, *mut T, isize, isize);

/// `c = a @ b` for `batch` row-major matrices: rows `rs*` apart, matrices
/// `bs*` apart (strides and sizes as the kernel passes them, in elements).
///
/// # Safety
/// The kernel IR verifier proved every matrix inside its buffer.
#[allow(clippy::too_many_arguments)]
unsafe fn batched<T: Copy>(gemm: Gemm<T>, one: T, zero: T, a: *const T, b: *const T, c: *mut T, dims: [i64; 12]) {
    let [batch, m, n, k, rsa, bsa, csa, rsb, bsb, csb, rsc, bsc] = dims;
    for j in 0..batch as isize {
        // SAFETY: see the function's contract.
        unsafe {
            gemm(
                m as usize,
                k as usize,
                n as usize,
                one,
                a.offset(j * bsa as isize),
                rsa as isize,
                csa as isize,
                b.offset(j * bsb as isize),
                rsb as isize,
                csb as isize,
                zero,
                c.offset(j * bsc as isize),
                rsc as isize,
                1,
            );
        }
    }
}

#[allow(clippy::too_many_arguments)]
extern "C" fn kiln_gemm_f32(
    a: *const f32,
    b: *const f32,
    c: *mut f32,
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
    // SAFETY: the kernel IR verifier proved every matrix inside its buffer.
    unsafe {
        batched(matrixmultiply::sgemm, 1.0, 0.0, a, b, c, [batch, m, n, k, rsa, bsa, csa, rsb, bsb, csb, rsc, bsc])
    }
}

#[allow(clippy::too_many_arguments)]
extern "C" fn kiln_gemm_f64(
    a: *const f64,
    b: *const f64,
    c: *mut f64,
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
    // SAFETY: as for `kiln_gemm_f32`.
    unsafe {
        batched(matrixmultiply::dgemm, 1.0, 0.0, a, b, c, [batch, m, n, k, rsa, bsa, csa, rsb, bsb, csb, rsc, bsc])
    }
}

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

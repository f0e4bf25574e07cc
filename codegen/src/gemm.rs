//! kiln's f32 matrix product, `c = a @ b` on row-major matrices, which
//! compiled GEMM calls reach through the runtime.
//!
//! On x86-64 with AVX-512 it is a BLIS-style product written here: `b` is
//! packed into panels of [`NR`] columns and `a` into panels of [`MR`] rows
//! (both zero-padded to whole panels), and a 14 x 32 micro-kernel keeps its
//! tile of `c` in 28 zmm registers, one broadcast of `a` and two loads of
//! `b` per step of `k`. Packing and the panels of `b` are split among
//! rayon's threads.
//! Cranelift has no 512-bit vectors (see `../shared/TOOLCHAIN.md`), so this
//! kernel is Rust with `std::arch` intrinsics rather than generated code;
//! on machines without AVX-512, and for f64, the `matrixmultiply` crate
//! does the work. `docs/performance.md` has the measurements behind this.
//!
//! Guarantee: every `c[i][j] = sum_p a[i][p] * b[p][j]` in f32, accumulated
//! with fused multiply-adds in order of `p` within blocks of 256 and block
//! sums added in order, the same whatever the thread count; only the
//! `m x n` elements of `c` are written.

use rayon::prelude::*;

/// Rows of the micro-kernel's tile.
pub const MR: usize = 14;
/// Columns of the micro-kernel's tile (two zmm registers).
pub const NR: usize = 32;
/// Depth of one packed block (the `k` extent the micro-kernel runs over).
const KC: usize = 256;
/// Most rows of `a` packed at once (a multiple of `MR`, 168 KB at `KC`).
const MC: usize = 168;
/// Most columns of `b` packed at once (a multiple of `NR`, 1 MB at `KC`).
const NC: usize = 1024;

/// A row-major matrix: its first element and the distance between rows.
#[derive(Clone, Copy)]
pub struct Matrix<T> {
    pub data: T,
    pub row_stride: usize,
}

// SAFETY: the pointers are only read (a, b) or written at disjoint rows by
// different tasks (c); see `sgemm`'s contract.
unsafe impl Send for Matrix<*const f32> {}
unsafe impl Sync for Matrix<*const f32> {}
unsafe impl Send for Matrix<*mut f32> {}
unsafe impl Sync for Matrix<*mut f32> {}

/// `c = a @ b` for an `m x k` matrix `a` and a `k x n` matrix `b`.
///
/// # Safety
/// `a`, `b` and `c` must point to matrices of those sizes with their row
/// strides, `c` must not overlap `a` or `b`, and nothing else may access
/// `c` during the call.
pub unsafe fn sgemm(m: usize, n: usize, k: usize, a: Matrix<*const f32>, b: Matrix<*const f32>, c: Matrix<*mut f32>) {
    if m == 0 || n == 0 {
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if k > 0 && avx512::available() {
        // SAFETY: the caller's contract, and the CPU has AVX-512F.
        unsafe { avx512::sgemm(m, n, k, a, b, c) };
        return;
    }
    // SAFETY: the caller's contract.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.data,
            a.row_stride as isize,
            1,
            b.data,
            b.row_stride as isize,
            1,
            0.0,
            c.data,
            c.row_stride as isize,
            1,
        );
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::*;
    use std::arch::x86_64::*;
    use std::sync::OnceLock;

    pub fn available() -> bool {
        static AVAILABLE: OnceLock<bool> = OnceLock::new();
        *AVAILABLE.get_or_init(|| is_x86_feature_detected!("avx512f") && std::env::var_os("KILN_NO_AVX512").is_none())
    }

    /// # Safety
    /// As `super::sgemm`, with `m, n, k > 0` and AVX-512F present.
    pub unsafe fn sgemm(
        m: usize,
        n: usize,
        k: usize,
        a: Matrix<*const f32>,
        b: Matrix<*const f32>,
        c: Matrix<*mut f32>,
    ) {
        // Small products stay on the calling thread: handing work to the
        // pool costs more than it saves below about 2^21 multiply-adds.
        let threads = if m * n * k >= 1 << 21 { rayon::current_num_threads() } else { 1 };
        with_space(&PACKED_B, NC.min(n.div_ceil(NR) * NR) * KC, |packed_b| {
            with_space(&PACKED_A, MC * KC, |packed_a| {
                // SAFETY: the caller's contract.
                unsafe { blocks(m, n, k, a, b, c, threads, packed_a, packed_b) }
            })
        });
    }

    type Space = std::cell::RefCell<Vec<f32>>;

    /// Runs `f` on at least `len` floats of this thread's `space`, or of a
    /// fresh vector if the space is in use further up this thread's stack
    /// (a rayon worker can pick up a task while it waits).
    fn with_space(space: &'static std::thread::LocalKey<Space>, len: usize, f: impl FnOnce(&mut [f32])) {
        space.with(|cell| match cell.try_borrow_mut() {
            Ok(mut v) => {
                if v.len() < len {
                    v.resize(len, 0.0);
                }
                f(&mut v[..len])
            }
            Err(_) => f(&mut vec![0.0; len]),
        })
    }

    thread_local! {
        /// Packing space, kept per thread so that calls do not allocate
        /// (and fault in fresh pages) every time.
        static PACKED_A: Space = const { std::cell::RefCell::new(Vec::new()) };
        static PACKED_B: Space = const { std::cell::RefCell::new(Vec::new()) };
    }

    /// Runs `f(i)` for every `i` in `0..count`, split into `threads`
    /// contiguous ranges run on rayon's threads when `threads > 1`.
    fn split(count: usize, threads: usize, f: impl Fn(std::ops::Range<usize>) + Sync) {
        if threads <= 1 || count <= 1 {
            return f(0..count);
        }
        let parts = threads.min(count);
        (0..parts).into_par_iter().for_each(|t| f(count * t / parts..count * (t + 1) / parts));
    }

    /// The blocked product: for each block of `b` (`NC` columns, `KC`
    /// deep), packed once, and each block of `MC` rows of `a`, packed once,
    /// the `NR`-column panels of `b` are split among the threads, each
    /// running the micro-kernel over all the `MR`-row tiles of `a`.
    ///
    /// # Safety
    /// As `sgemm`.
    #[allow(clippy::too_many_arguments)]
    unsafe fn blocks(
        m: usize,
        n: usize,
        k: usize,
        a: Matrix<*const f32>,
        b: Matrix<*const f32>,
        c: Matrix<*mut f32>,
        threads: usize,
        packed_a: &mut [f32],
        packed_b: &mut [f32],
    ) {
        /// A packing buffer that tasks fill at disjoint ranges.
        #[derive(Clone, Copy)]
        struct Shared(*mut f32);
        // SAFETY: tasks write disjoint panels of it.
        unsafe impl Sync for Shared {}
        unsafe impl Send for Shared {}
        let (pa, pb) = (Shared(packed_a.as_mut_ptr()), Shared(packed_b.as_mut_ptr()));
        for jc in (0..n).step_by(NC) {
            let nc = NC.min(n - jc);
            let panels = nc.div_ceil(NR);
            for pc in (0..k).step_by(KC) {
                let kc = KC.min(k - pc);
                split(panels, threads, |range| {
                    let pb = pb;
                    for panel in range {
                        let j0 = jc + panel * NR;
                        // SAFETY: rows pc..pc+kc, columns j0..j0+width of
                        // `b` exist; the panel lies inside `packed_b`.
                        unsafe {
                            let dst = std::slice::from_raw_parts_mut(pb.0.add(panel * NR * kc), NR * kc);
                            pack_b(dst, b, pc, kc, j0, NR.min(n - j0));
                        }
                    }
                });
                for ic in (0..m).step_by(MC) {
                    let rows = MC.min(m - ic);
                    let tiles = rows.div_ceil(MR);
                    split(tiles, threads, |range| {
                        let pa = pa;
                        for tile in range {
                            let i0 = ic + tile * MR;
                            // SAFETY: rows i0..i0+height, columns pc..pc+kc
                            // of `a` exist; the tile lies inside `packed_a`.
                            unsafe {
                                let dst = std::slice::from_raw_parts_mut(pa.0.add(tile * MR * kc), MR * kc);
                                pack_a(dst, a, i0, MR.min(m - i0), pc, kc);
                            }
                        }
                    });
                    split(panels, threads, |range| {
                        let (pa, pb) = (pa, pb);
                        for panel in range {
                            let j0 = jc + panel * NR;
                            let width = NR.min(n - j0);
                            for tile in 0..tiles {
                                let i0 = ic + tile * MR;
                                // SAFETY: the packed panels were filled
                                // above; the tile lies inside `c`, and
                                // tasks own disjoint columns of it; the CPU
                                // has AVX-512F.
                                unsafe {
                                    let ap = std::slice::from_raw_parts(pa.0.add(tile * MR * kc), MR * kc);
                                    let bp = std::slice::from_raw_parts(pb.0.add(panel * NR * kc), NR * kc);
                                    kernel(kc, ap, bp, c, i0, j0, MR.min(m - i0), width, pc > 0);
                                }
                            }
                        }
                    });
                }
            }
        }
    }

    /// Packs `b[p0..p0+kc][j0..j0+width]` as `kc` rows of `NR` (zero-padded).
    unsafe fn pack_b(dst: &mut [f32], b: Matrix<*const f32>, p0: usize, kc: usize, j0: usize, width: usize) {
        for (p, row) in dst.chunks_exact_mut(NR).enumerate().take(kc) {
            // SAFETY: the caller's bounds.
            let src = unsafe { std::slice::from_raw_parts(b.data.add((p0 + p) * b.row_stride + j0), width) };
            row[..width].copy_from_slice(src);
            row[width..].fill(0.0);
        }
    }

    /// Packs `a[i0..i0+height][p0..p0+kc]` as `kc` columns of `MR` values
    /// (rows past `height` are zero).
    unsafe fn pack_a(dst: &mut [f32], a: Matrix<*const f32>, i0: usize, height: usize, p0: usize, kc: usize) {
        for r in 0..height {
            // SAFETY: the caller's bounds.
            let src = unsafe { std::slice::from_raw_parts(a.data.add((i0 + r) * a.row_stride + p0), kc) };
            for (p, &v) in src.iter().enumerate() {
                dst[p * MR + r] = v;
            }
        }
        for r in height..MR {
            for p in 0..kc {
                dst[p * MR + r] = 0.0;
            }
        }
    }

    /// One `MR x NR` tile: `c[i0.., j0..] (+)= ap @ bp` over `kc` steps,
    /// adding to `c` when `accumulate`, writing only `height x width`.
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn kernel(
        kc: usize,
        ap: &[f32],
        bp: &[f32],
        c: Matrix<*mut f32>,
        i0: usize,
        j0: usize,
        height: usize,
        width: usize,
        accumulate: bool,
    ) {
        let mut acc = [[_mm512_setzero_ps(); 2]; MR];
        let (mut a, mut b) = (ap.as_ptr(), bp.as_ptr());
        for _ in 0..kc {
            // SAFETY: the packed panels hold kc steps of MR and NR values.
            unsafe {
                // The packed `a` streams from L2: ask for it 16 steps ahead
                // (a prefetch past the end is harmless).
                _mm_prefetch::<_MM_HINT_T0>(a.wrapping_add(MR * 16).cast());
                let b0 = _mm512_loadu_ps(b);
                let b1 = _mm512_loadu_ps(b.add(16));
                for (r, row) in acc.iter_mut().enumerate() {
                    let x = _mm512_set1_ps(*a.add(r));
                    row[0] = _mm512_fmadd_ps(x, b0, row[0]);
                    row[1] = _mm512_fmadd_ps(x, b1, row[1]);
                }
                a = a.add(MR);
                b = b.add(NR);
            }
        }
        let full = [u16::MAX, u16::MAX];
        let masks = if width == NR {
            full
        } else {
            let lanes = |w: usize| if w >= 16 { u16::MAX } else { ((1u32 << w) - 1) as u16 };
            [lanes(width), lanes(width.saturating_sub(16))]
        };
        for (r, row) in acc.iter().enumerate().take(height) {
            for (half, &value) in row.iter().enumerate() {
                let mask = masks[half];
                if mask == 0 {
                    continue;
                }
                // SAFETY: masked lanes stay inside the tile's `width` columns of row i0 + r.
                unsafe {
                    let dst = c.data.add((i0 + r) * c.row_stride + j0 + 16 * half);
                    let value = if accumulate { _mm512_add_ps(_mm512_maskz_loadu_ps(mask, dst), value) } else { value };
                    _mm512_mask_storeu_ps(dst, mask, value);
                }
            }
        }
    }
}

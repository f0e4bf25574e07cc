//! Host buffers: typed, 64-byte aligned memory that compiled kernels read
//! and write through raw pointers, with conversions from and to the
//! interpreter's tensors; an [`Arena`] holds all of a plan's buffers in one
//! allocation laid out by liveness.

use kiln_ir::interp::{Data, Tensor};
use kiln_ir::kernel::{ArenaLayout, Plan, Storage};
use kiln_ir::{Bindings, DType};
use rayon::prelude::*;

/// 64-byte aligned bytes holding `len` elements of `dtype` (bools as one
/// byte each, 0 or 1).
pub struct HostBuffer {
    pub dtype: DType,
    pub len: usize,
    words: Vec<Align64>,
}

#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Align64([u8; 64]);

impl HostBuffer {
    pub fn zeros(dtype: DType, len: usize) -> HostBuffer {
        let bytes = len * dtype.size_bytes();
        HostBuffer { dtype, len, words: vec![Align64([0; 64]); bytes.div_ceil(64).max(1)] }
    }

    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        self.words.as_mut_ptr().cast()
    }

    /// The elements as bytes, native endianness.
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: the words are plain bytes; the slice covers only what was allocated.
        unsafe { std::slice::from_raw_parts(self.words.as_ptr().cast::<u8>(), self.len * self.dtype.size_bytes()) }
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        let n = self.len * self.dtype.size_bytes();
        // SAFETY: as in `bytes`, and the borrow is unique.
        unsafe { std::slice::from_raw_parts_mut(self.words.as_mut_ptr().cast::<u8>(), n) }
    }

    /// A buffer holding the elements of `t` in row-major order.
    pub fn from_tensor(t: &Tensor) -> HostBuffer {
        let mut b = HostBuffer::zeros(t.dtype, t.len());
        write_tensor(b.bytes_mut(), t);
        b
    }

    /// The elements as the kernel IR executor holds them.
    pub fn to_storage(&self) -> Storage {
        read_storage(self.bytes(), self.dtype)
    }
}

/// One 64-byte aligned allocation holding every buffer of a plan at the
/// offsets of its [`ArenaLayout`]: what a compiled function runs on, made
/// once and reused by every call.
pub struct Arena {
    words: Vec<Align64>,
    /// Byte offset, dtype and length of each buffer, indexed like the plan's.
    buffers: Vec<(usize, DType, usize)>,
    /// The sizes the buffers are laid out for.
    bindings: Bindings,
}

impl Arena {
    /// An arena for `plan` at `bindings`, laid out as `layout` (made by
    /// `arena_layout` for the same plan and bindings).
    pub fn new(plan: &Plan, bindings: &Bindings, layout: &ArenaLayout) -> Result<Arena, String> {
        let mut buffers = Vec::with_capacity(plan.buffers.len());
        for (i, (d, &o)) in plan.buffers.iter().zip(&layout.offsets).enumerate() {
            let len = plan.buffer_len(kiln_ir::kernel::BufferId(i as u32), bindings);
            let len = len.ok_or_else(|| format!("buffer b{i} of {} elements has no length at these sizes", d.len))?;
            buffers.push((o as usize, d.dtype, len as usize));
        }
        let words = usize::try_from(layout.bytes).map_err(|_| "the arena is larger than memory".to_string())?;
        let mut memory = Vec::new();
        memory
            .try_reserve_exact(words.div_ceil(64).max(1))
            .map_err(|_| format!("no memory for an arena of {} bytes at these sizes", layout.bytes))?;
        memory.resize(words.div_ceil(64).max(1), Align64([0; 64]));
        Ok(Arena { words: memory, buffers, bindings: bindings.clone() })
    }

    /// The sizes the arena was laid out for.
    pub fn bindings(&self) -> &Bindings {
        &self.bindings
    }

    /// Whether this arena was made for `plan` laid out as `layout`.
    pub fn fits(&self, plan: &Plan, layout: &ArenaLayout) -> bool {
        self.words.len() * 64 >= layout.bytes as usize
            && self.buffers.len() == plan.buffers.len()
            && self.buffers.iter().zip(plan.buffers.iter().zip(&layout.offsets)).enumerate().all(
                |(i, (&(o, t, n), (d, &offset)))| {
                    let len = plan.buffer_len(kiln_ir::kernel::BufferId(i as u32), &self.bindings);
                    o == offset as usize && t == d.dtype && len == Some(n as u64)
                },
            )
    }

    /// Every byte set to `byte`: tests poison the arena so that code reading
    /// a temporary before writing it shows up.
    pub fn fill(&mut self, byte: u8) {
        self.words.iter_mut().for_each(|w| w.0 = [byte; 64]);
    }

    /// The address of each buffer, in plan order.
    pub fn pointers(&mut self) -> Vec<*mut u8> {
        let base: *mut u8 = self.words.as_mut_ptr().cast();
        // SAFETY: every offset lies inside the allocation (the layout's guarantee).
        self.buffers.iter().map(|&(offset, _, _)| unsafe { base.add(offset) }).collect()
    }

    /// The bytes of buffer `buffer`, native endianness, and its dtype.
    pub fn bytes(&self, buffer: usize) -> (&[u8], DType) {
        let (offset, dtype, len) = self.buffers[buffer];
        // SAFETY: the buffer's bytes lie inside the allocation.
        let bytes = unsafe {
            std::slice::from_raw_parts(self.words.as_ptr().cast::<u8>().add(offset), len * dtype.size_bytes())
        };
        (bytes, dtype)
    }

    /// Writes `t` into buffer `buffer`, which must have its dtype and size.
    pub fn write(&mut self, buffer: usize, t: &Tensor) -> Result<(), String> {
        let (offset, dtype, len) = self.buffers[buffer];
        if t.dtype != dtype || t.len() != len {
            return Err(format!("buffer b{buffer} holds {dtype}[{len}], not {}[{}]", t.dtype, t.len()));
        }
        // SAFETY: as in `bytes`, and the borrow is unique.
        let bytes = unsafe {
            std::slice::from_raw_parts_mut(self.words.as_mut_ptr().cast::<u8>().add(offset), len * dtype.size_bytes())
        };
        write_tensor(bytes, t);
        Ok(())
    }

    /// Copies `values`, elements of `dtype` (f32, i32 or i64 as Rust's
    /// `f32`, `i32`, `i64`), into buffer `buffer`, which must have that
    /// dtype and length: a batch goes in without conversion.
    pub fn write_elements<T: Element>(&mut self, buffer: usize, values: &[T]) -> Result<(), String> {
        let (offset, dtype, len) = self.buffers[buffer];
        if T::DTYPE != dtype || values.len() != len {
            return Err(format!("buffer b{buffer} holds {dtype}[{len}], not {}[{}]", T::DTYPE, values.len()));
        }
        // SAFETY: as in `bytes`, the borrow is unique, and `T` has the
        // dtype's size (checked above through `Element`).
        let target = unsafe {
            std::slice::from_raw_parts_mut(self.words.as_mut_ptr().cast::<u8>().add(offset).cast::<T>(), len)
        };
        target.copy_from_slice(values);
        Ok(())
    }

    /// Copies `source` (a buffer's bytes, native endianness) into buffer
    /// `buffer`, which must have its dtype and length.
    pub fn write_bytes(&mut self, buffer: usize, source: &HostBuffer) -> Result<(), String> {
        let (offset, dtype, len) = self.buffers[buffer];
        if source.dtype != dtype || source.len != len {
            return Err(format!("buffer b{buffer} holds {dtype}[{len}], not {}[{}]", source.dtype, source.len));
        }
        let n = len * dtype.size_bytes();
        // SAFETY: as in `bytes`, and the borrow is unique.
        let bytes = unsafe { std::slice::from_raw_parts_mut(self.words.as_mut_ptr().cast::<u8>().add(offset), n) };
        bytes.copy_from_slice(source.bytes());
        Ok(())
    }

    /// Copies buffer `buffer` into `target`, which must have its dtype and
    /// length.
    pub fn read_into(&self, buffer: usize, target: &mut HostBuffer) -> Result<(), String> {
        let (bytes, dtype) = self.bytes(buffer);
        if target.dtype != dtype || target.len * dtype.size_bytes() != bytes.len() {
            return Err(format!(
                "buffer b{buffer} holds {dtype}[{}], not {}[{}]",
                bytes.len() / dtype.size_bytes().max(1),
                target.dtype,
                target.len
            ));
        }
        target.bytes_mut().copy_from_slice(bytes);
        Ok(())
    }

    /// The elements of buffer `buffer`.
    pub fn read(&self, buffer: usize) -> Storage {
        let (bytes, dtype) = self.bytes(buffer);
        read_storage(bytes, dtype)
    }
}

/// Above this many elements, conversions into and out of an arena are split
/// across rayon's threads. Waking a second thread costs about as much as
/// converting a few hundred thousand elements on this one (an MLP batch of
/// 256 x 784: 0.10 ms on one thread, 0.24 ms split in two), so only
/// conversions of millions of elements are split.
const PARALLEL_ELEMENTS: usize = 1 << 22;

/// Writes the elements of `t`, row-major, into `bytes` (sized for them).
fn write_tensor(bytes: &mut [u8], t: &Tensor) {
    fn destination<T>(bytes: &mut [u8]) -> &mut [T] {
        // SAFETY: the bytes are 64-byte aligned and sized for the elements;
        // every bit pattern is a valid T for the number types used here.
        let (head, dst, _) = unsafe { bytes.align_to_mut::<T>() };
        debug_assert!(head.is_empty());
        dst
    }
    fn fill<T: Copy + Send, S: Copy + Sync>(bytes: &mut [u8], values: &[S], convert: impl Fn(S) -> T + Sync) {
        let dst = destination::<T>(bytes);
        if values.len() >= PARALLEL_ELEMENTS {
            let chunk = values.len().div_ceil(rayon::current_num_threads().max(1));
            dst.par_chunks_mut(chunk)
                .zip(values.par_chunks(chunk))
                .for_each(|(d, s)| d.iter_mut().zip(s).for_each(|(d, s)| *d = convert(*s)));
        } else {
            dst.iter_mut().zip(values).for_each(|(d, s)| *d = convert(*s));
        }
    }
    fn fill_each<T: Copy, S: Copy>(bytes: &mut [u8], values: impl Iterator<Item = S>, convert: impl Fn(S) -> T) {
        destination::<T>(bytes).iter_mut().zip(values).for_each(|(d, s)| *d = convert(s));
    }
    // Row-major arrays go through their slice (much faster than ndarray's
    // general iterator); any other layout element by element.
    macro_rules! each {
        ($a:expr, $convert:expr) => {
            match $a.as_slice() {
                Some(values) => fill(bytes, values, $convert),
                None => fill_each(bytes, $a.iter().copied(), $convert),
            }
        };
    }
    match (&t.data, t.dtype) {
        (Data::Float(a), DType::F32) => each!(a, |x: f64| x as f32),
        (Data::Float(a), _) => each!(a, |x: f64| x),
        (Data::Int(a), DType::I32) => each!(a, |x: i64| x as i32),
        (Data::Int(a), _) => each!(a, |x: i64| x),
        (Data::Bool(a), _) => each!(a, u8::from),
    }
}

/// The elements in `bytes`, of `dtype`, as the kernel IR executor holds them.
fn read_storage(bytes: &[u8], dtype: DType) -> Storage {
    fn all<T: Copy>(bytes: &[u8]) -> &[T] {
        // SAFETY: as in `write_tensor`.
        let (head, values, _) = unsafe { bytes.align_to::<T>() };
        debug_assert!(head.is_empty());
        values
    }
    match dtype {
        DType::F32 => {
            let values = all::<f32>(bytes);
            Storage::Float(if values.len() >= PARALLEL_ELEMENTS {
                values.par_iter().map(|&x| f64::from(x)).collect()
            } else {
                values.iter().map(|&x| f64::from(x)).collect()
            })
        }
        DType::F64 => Storage::Float(all::<f64>(bytes).to_vec()),
        DType::I32 => Storage::Int(all::<i32>(bytes).iter().map(|&x| i64::from(x)).collect()),
        DType::I64 => Storage::Int(all::<i64>(bytes).to_vec()),
        DType::Bool => Storage::Bool(bytes.iter().map(|&b| b != 0).collect()),
    }
}

/// A Rust number type that is exactly one element of a kernel IR dtype.
pub trait Element: Copy {
    const DTYPE: DType;
}

impl Element for f32 {
    const DTYPE: DType = DType::F32;
}

impl Element for i32 {
    const DTYPE: DType = DType::I32;
}

impl Element for i64 {
    const DTYPE: DType = DType::I64;
}

//! Host buffers: typed, 64-byte aligned memory that compiled kernels read
//! and write through raw pointers, with conversions from and to the
//! interpreter's tensors.

use kiln_ir::DType;
use kiln_ir::interp::Tensor;
use kiln_ir::kernel::Storage;

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

    fn bytes(&self) -> &[u8] {
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
        let values = t.to_f64_vec();
        let mut b = HostBuffer::zeros(t.dtype, values.len());
        let ints: Vec<i64> = match &t.data {
            kiln_ir::interp::Data::Int(a) => a.iter().copied().collect(),
            _ => Vec::new(),
        };
        let size = t.dtype.size_bytes();
        let dtype = t.dtype;
        for (i, chunk) in b.bytes_mut().chunks_exact_mut(size).enumerate() {
            match dtype {
                DType::F32 => chunk.copy_from_slice(&(values[i] as f32).to_ne_bytes()),
                DType::F64 => chunk.copy_from_slice(&values[i].to_ne_bytes()),
                DType::I32 => chunk.copy_from_slice(&(ints[i] as i32).to_ne_bytes()),
                DType::I64 => chunk.copy_from_slice(&ints[i].to_ne_bytes()),
                DType::Bool => chunk[0] = u8::from(values[i] != 0.0),
            }
        }
        b
    }

    /// The elements as the kernel IR executor holds them.
    pub fn to_storage(&self) -> Storage {
        let size = self.dtype.size_bytes();
        let chunks = self.bytes().chunks_exact(size);
        let word = |c: &[u8], n: usize| {
            let mut w = [0u8; 8];
            w[..n].copy_from_slice(&c[..n]);
            w
        };
        match self.dtype {
            DType::F32 => Storage::Float(
                chunks.map(|c| f64::from(f32::from_ne_bytes(word(c, 4)[..4].try_into().unwrap_or([0; 4])))).collect(),
            ),
            DType::F64 => Storage::Float(chunks.map(|c| f64::from_ne_bytes(word(c, 8))).collect()),
            DType::I32 => Storage::Int(
                chunks.map(|c| i64::from(i32::from_ne_bytes(word(c, 4)[..4].try_into().unwrap_or([0; 4])))).collect(),
            ),
            DType::I64 => Storage::Int(chunks.map(|c| i64::from_ne_bytes(word(c, 8))).collect()),
            DType::Bool => Storage::Bool(chunks.map(|c| c[0] != 0).collect()),
        }
    }
}

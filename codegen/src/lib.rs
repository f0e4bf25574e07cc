//! Native code generation for kiln. `cranelift` compiles a kernel IR plan to
//! machine code through Cranelift's JIT; `buffer` holds the host memory the
//! compiled kernels run on; `nvptx` (feature `ptx`) compiles a plan to PTX
//! through LLVM 19 and runs the same launches on the host to check them.
//!
//! Invariant: codegen consumes verified kernel IR only (the verifier proved
//! every affine access in bounds); computed indices are checked at run time
//! and reported through the kernel's status, never used out of bounds.

pub mod aot;
pub mod buffer;
pub mod cranelift;
#[cfg(feature = "ptx")]
pub mod nvptx;

pub use buffer::{Arena, HostBuffer};
pub use cranelift::{CodegenError, CompiledPlan, asm_text, clif_text, compile_plan, product_f32, product_f64};

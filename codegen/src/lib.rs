//! Native code generation for kiln. `cranelift` compiles a kernel IR plan to
//! machine code through Cranelift's JIT; `buffer` holds the host memory the
//! compiled kernels run on. PTX through LLVM comes with the GPU issue.
//!
//! Invariant: codegen consumes verified kernel IR only (the verifier proved
//! every affine access in bounds); computed indices are checked at run time
//! and reported through the kernel's status, never used out of bounds.

pub mod aot;
pub mod buffer;
pub mod cranelift;

pub use buffer::{Arena, HostBuffer};
pub use cranelift::{CodegenError, CompiledPlan, asm_text, clif_text, compile_plan};

//! Native code generation for kiln: kernel IR to Cranelift (JIT and object
//! files) and to PTX through LLVM. This crate is empty until the CPU code
//! generation issue lands; it exists now so the workspace has its final
//! shape and dependency order (`codegen` depends on `ir` only).

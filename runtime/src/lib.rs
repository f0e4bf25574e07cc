//! kiln's runtime: what running a compiled model needs besides generated
//! code. Today that is tensors on disk (NPY); the executor, thread pool,
//! buffers, data loaders and checkpoints arrive with the code generation and
//! training issues (see docs/ARCHITECTURE.md).

pub mod npy;

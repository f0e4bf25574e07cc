//! kiln's runtime: what running and training a compiled model needs besides
//! generated code: tensors on disk (NPY), data sets (IDX files and the
//! book's synthetic data) with shuffled minibatches, checkpoints
//! (safetensors), and the training loop's step. The executor, thread pool
//! and buffers arrive with code generation (see docs/ARCHITECTURE.md).

pub mod checkpoint;
pub mod dataset;
pub mod execute;
pub mod idx;
pub mod npy;
pub mod trainer;

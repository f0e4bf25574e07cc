//! kiln's runtime: what running and training a compiled model needs besides
//! generated code: tensors on disk (NPY), data sets (IDX files, the
//! book's synthetic data, CSV tables, a character corpus, translation
//! pairs) with shuffled minibatches, checkpoints
//! (safetensors), the interface of executors and their sessions
//! (`execute`, with the reference interpreter as one), and the training
//! loop's step. It depends only on `ir`: the executors of compiled code
//! (the JIT, the GPU) live in the `kiln` crate, which implements
//! `execute::Execute` for them (see docs/ARCHITECTURE.md).

pub mod checkpoint;
pub mod dataset;
pub mod execute;
pub mod files;
pub mod idx;
pub mod npy;
pub mod resize;
pub mod table;
pub mod text;
pub mod trainer;
pub mod translation;

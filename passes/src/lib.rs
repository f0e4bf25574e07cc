//! Passes over graph IR and the pipeline that runs them.
//!
//! A pass is a function from a module to a module with a doc comment stating
//! what it needs and guarantees; the [`Pipeline`] runs a named list of them,
//! times each, and verifies the IR after each.

pub mod autodiff;
mod build_train_step;
pub mod cost;
mod eliminate_dead_code;
pub mod fuse;
mod lower_to_kernels;
mod merge_gemm_epilogues;
mod pipeline;
pub mod simplify;

pub use autodiff::{AutodiffError, Source, differentiate};
pub use build_train_step::{TrainStepError, build_train_step};
pub use eliminate_dead_code::eliminate_dead_code;
pub use lower_to_kernels::{
    ConvLowering, GemmLowering, LowerError, LowerOptions, lower_to_kernels, lower_to_kernels_deciding_at,
    lower_to_kernels_with,
};
pub use merge_gemm_epilogues::merge_gemm_epilogues;
pub use pipeline::{PassError, Pipeline, StageReport};
pub use simplify::{Limits, SimplifyReport, simplify, simplify_function};

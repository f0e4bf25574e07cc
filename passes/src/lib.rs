//! Passes over graph IR and the pipeline that runs them.
//!
//! A pass is a function from a module to a module with a doc comment stating
//! what it needs and guarantees; the [`Pipeline`] runs a named list of them,
//! times each, and verifies the IR after each.

pub mod autodiff;
mod build_train_step;
mod eliminate_dead_code;
mod fuse_elementwise;
mod lower_to_kernels;
mod pipeline;

pub use autodiff::{AutodiffError, Source, differentiate};
pub use build_train_step::{TrainStepError, build_train_step};
pub use eliminate_dead_code::eliminate_dead_code;
pub use lower_to_kernels::{
    ConvLowering, GemmLowering, LowerError, LowerOptions, lower_to_kernels, lower_to_kernels_with,
};
pub use pipeline::{PassError, Pipeline, StageReport};

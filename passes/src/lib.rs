//! Passes over graph IR and the pipelines that run them.
//!
//! A pass is a function with a doc comment stating what it needs and
//! guarantees. [`compile`] runs the compilation pipeline on one function
//! (simplify, fuse, lower, merge GEMM epilogues, each verified) and returns
//! every stage's output as a [`Compilation`]; the [`Pipeline`] runs the
//! module-level cleanup stages after the frontend.

pub mod autodiff;
mod build_train_step;
mod compile;
pub mod cost;
mod eliminate_dead_code;
pub mod fuse;
pub mod lower;
mod merge_gemm_epilogues;
mod pipeline;
pub mod simplify;

pub use autodiff::{AutodiffError, Source, differentiate, differentiate_outputs};
pub use build_train_step::{TrainStepError, build_train_step};
pub use compile::{Compilation, CompileError, CompileOptions, Stage, compile, compile_plan};
pub use eliminate_dead_code::eliminate_dead_code;
pub use lower::{ConvLowering, GemmLowering, KernelOrigin, LowerError, LowerOptions};
pub use merge_gemm_epilogues::merge_gemm_epilogues;
pub use pipeline::{PassError, Pipeline, StageReport};
pub use simplify::{Limits, SimplifyReport, simplify, simplify_function};

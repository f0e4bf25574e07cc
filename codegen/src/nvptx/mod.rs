//! GPU code generation: kernel IR to LLVM IR through `inkwell`, then PTX
//! from LLVM 19's NVPTX backend (feature `ptx`).
//!
//! Each kernel of a plan becomes one or more launches ([`launch`]): parallel
//! loops to grid-stride loops, whole reductions to one block reducing with
//! warp shuffles and shared memory, GEMM calls to shared-memory tiled
//! kernels. The same LLVM IR is also built for the host ([`emulate`]), where
//! the thread and block indices, barriers and shuffles are supplied by a
//! small runtime that runs a block's threads as OS threads: what the GPU
//! would compute, checkable on a machine without one.
//!
//! A plan's sizes stay symbolic: every entry takes the values of the
//! plan's size symbols after its buffers and status word and computes
//! every extent, stride and length from them, so one module serves every
//! binding from the symbols' least values up; the manifest gives sizes as
//! the kernel IR's expressions (`784*N`).
//!
//! Guarantee: [`emit_ptx`] either returns PTX whose every `.entry` is one
//! launch of the manifest, in plan order, or an error naming the kernel and
//! what it could not map ([`PtxError::Unsupported`]); it never panics on a
//! verified plan.

#[cfg(feature = "cuda")]
pub mod cuda;
mod emit;
pub mod emulate;
mod expr;
mod gemm;
pub mod launch;
pub mod manifest;

use std::fmt;

use inkwell::OptimizationLevel;
use inkwell::context::Context;
use inkwell::targets::{CodeModel, FileType, InitializationConfig, RelocMode, Target, TargetMachine, TargetTriple};
use kiln_ir::kernel::Plan;

pub use emulate::{Emulator, emulate_plan, with_emulator};
pub use manifest::Manifest;

/// What can go wrong emitting PTX.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PtxError {
    #[error(
        "`{0}` is not a GPU architecture kiln emits PTX for: it emits for {known} (LLVM 19's NVPTX targets from sm_80 on)",
        known = SUPPORTED_SMS.join(", ")
    )]
    UnknownSm(String),
    #[error("kernel `{kernel}`: {what} is not supported by the PTX backend")]
    Unsupported { kernel: String, what: String },
    #[error("LLVM: {0}")]
    Llvm(String),
}

impl From<inkwell::builder::BuilderError> for PtxError {
    fn from(e: inkwell::builder::BuilderError) -> Self {
        PtxError::Llvm(e.to_string())
    }
}

/// The GPU architectures kiln emits PTX for: those LLVM 19 knows from
/// sm_80 on (the kernels use `max.NaN`, which needs sm_80).
pub const SUPPORTED_SMS: [&str; 6] = ["sm_80", "sm_86", "sm_87", "sm_89", "sm_90", "sm_90a"];

/// The PTX ISA version asked of LLVM: 8.5, the newest LLVM 19 writes.
const PTX_FEATURES: &str = "+ptx85";

/// A GPU architecture kiln can emit for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sm(&'static str);

impl Sm {
    /// Parses `sm_80`, `sm_90`, ...: an error names the ones supported.
    pub fn parse(name: &str) -> Result<Sm, PtxError> {
        SUPPORTED_SMS.iter().find(|s| **s == name).map(|s| Sm(s)).ok_or_else(|| PtxError::UnknownSm(name.to_string()))
    }

    pub fn name(self) -> &'static str {
        self.0
    }
}

impl fmt::Display for Sm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// A plan's PTX and how to launch it.
#[derive(Clone, Debug)]
pub struct PtxModule {
    pub ptx: String,
    pub manifest: Manifest,
}

fn nvptx_machine(sm: Sm) -> Result<TargetMachine, PtxError> {
    Target::initialize_nvptx(&InitializationConfig::default());
    let triple = TargetTriple::create("nvptx64-nvidia-cuda");
    let target = Target::from_triple(&triple).map_err(|e| PtxError::Llvm(e.to_string()))?;
    target
        .create_target_machine(
            &triple,
            sm.name(),
            PTX_FEATURES,
            OptimizationLevel::Aggressive,
            RelocMode::Default,
            CodeModel::Default,
        )
        .ok_or_else(|| PtxError::Llvm(format!("no NVPTX target machine for {sm}")))
}

/// Compiles a plan to PTX for `sm`, with its launch manifest: one module
/// for every binding of the plan's size symbols.
pub fn emit_ptx(plan: &Plan, sm: Sm) -> Result<PtxModule, PtxError> {
    let context = Context::create();
    let machine = nvptx_machine(sm)?;
    let module = emit::build_module(&context, plan, emit::Flavor::Device)?;
    Ok(PtxModule { ptx: ptx_of(&module, &machine)?, manifest: Manifest::of(plan, sm) })
}

/// The PTX of a built module, after LLVM's O3 pipeline.
fn ptx_of(module: &inkwell::module::Module<'_>, machine: &TargetMachine) -> Result<String, PtxError> {
    module.set_triple(&machine.get_triple());
    module.set_data_layout(&machine.get_target_data().get_data_layout());
    emit::optimize(module, machine)?;
    let buffer =
        machine.write_to_memory_buffer(module, FileType::Assembly).map_err(|e| PtxError::Llvm(e.to_string()))?;
    Ok(String::from_utf8_lossy(buffer.as_slice()).trim_end_matches('\0').to_string())
}

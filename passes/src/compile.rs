//! The compilation pipeline as a value: one function of a module becomes a
//! [`Compilation`] holding every stage's output and report, each stage run
//! once and checked after it, in the order `docs/ARCHITECTURE.md` draws:
//!
//! ```text
//! graph function ─simplify─▶ simplified function ─fuse─▶ Fusion
//!   ─lower─▶ kernel plan (+ each kernel's node) ─merge_gemm_epilogues─▶ plan
//! ```
//!
//! Guarantee: the simplified function verifies, and so do the lowered and
//! the final plan (an error names the stage that broke it); every backend
//! and every `kiln emit` reads what it needs from the one `Compilation`.

use std::time::{Duration, Instant};

use kiln_ir::kernel::{KernelVerifyError, Plan, verify_plan};
use kiln_ir::{Bindings, Function, Module, VerifyError};

use crate::cost::Machine;
use crate::fuse::Fusion;
use crate::lower::{KernelOrigin, LowerError, LowerOptions, Lowered, lower};
use crate::simplify::{Limits, SimplifyReport, simplify_function};

/// Which stages run, and the choices they make.
#[derive(Clone, Debug)]
pub struct CompileOptions {
    /// Optimize the graph by equality saturation first.
    pub simplify: bool,
    /// Compute elementwise producers inside the kernels that use them;
    /// without it, one kernel per op.
    pub fuse: bool,
    /// With `fuse`: merge each GEMM with the row-local loop after it.
    pub gemm_epilogues: bool,
    pub lower: LowerOptions,
    pub limits: Limits,
    /// The sizes at which size-dependent choices (extraction, fusion,
    /// merges: the cost model weighs work at a batch size) are taken; the
    /// bindings themselves when `None`.
    pub decide_at: Option<Bindings>,
}

impl Default for CompileOptions {
    fn default() -> CompileOptions {
        CompileOptions {
            simplify: true,
            fuse: true,
            gemm_epilogues: true,
            lower: LowerOptions::default(),
            limits: Limits::default(),
            decide_at: None,
        }
    }
}

impl CompileOptions {
    /// No optimization: the function as written, one kernel per op.
    pub fn unoptimized() -> CompileOptions {
        CompileOptions { simplify: false, fuse: false, gemm_epilogues: false, ..CompileOptions::default() }
    }
}

/// A stage of the pipeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    Simplify,
    Fuse,
    Lower,
    MergeGemmEpilogues,
}

impl Stage {
    pub fn name(self) -> &'static str {
        match self {
            Stage::Simplify => "simplify",
            Stage::Fuse => "fuse",
            Stage::Lower => "lower",
            Stage::MergeGemmEpilogues => "merge_gemm_epilogues",
        }
    }
}

/// Why a function did not compile.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum CompileError {
    #[error("no function named `{0}`")]
    UnknownFunction(String),
    #[error("{0}")]
    Lower(#[from] LowerError),
    #[error("internal error: the function after stage `{}` does not verify: {error}\n{rendered}", stage.name())]
    Graph { stage: Stage, error: VerifyError, rendered: String },
    #[error("internal error: the plan after stage `{}` does not verify: {error}\n{plan}", stage.name())]
    Plan { stage: Stage, error: KernelVerifyError, plan: String },
}

/// One function compiled: every stage's output, in pipeline order.
#[derive(Clone, Debug)]
pub struct Compilation {
    /// The function as given.
    pub source: Function,
    /// After equality saturation (the source again when `simplify` is off).
    pub simplified: Function,
    /// What saturation did (`None` when `simplify` is off).
    pub simplify_report: Option<SimplifyReport>,
    /// Where each node of `simplified` is computed.
    pub fusion: Fusion,
    /// The machine the cost model priced choices on (its bindings are the
    /// sizes the choices were taken at).
    pub machine: Machine,
    /// The sizes the plan is for.
    pub bindings: Bindings,
    /// The plan as lowering made it, and each kernel's node.
    pub lowered: Lowered,
    /// The positions in `lowered.plan` of GEMM kernels merged with the
    /// kernel after them.
    pub merged_gemms: Vec<usize>,
    /// The plan the backends compile.
    pub plan: Plan,
    /// How long each stage took.
    pub times: Vec<(Stage, Duration)>,
}

impl Compilation {
    /// The origins of kernel `k` of the final plan: one node, or a GEMM's
    /// and its epilogue's when they were merged.
    pub fn origins_of(&self, k: usize) -> Vec<KernelOrigin> {
        let mut lowered = 0;
        for current in 0..=k {
            if lowered >= self.lowered.origins.len() {
                break;
            }
            let merged = self.merged_gemms.contains(&lowered);
            if current == k {
                let end = if merged { lowered + 2 } else { lowered + 1 };
                return self.lowered.origins[lowered..end.min(self.lowered.origins.len())].to_vec();
            }
            lowered += if merged { 2 } else { 1 };
        }
        Vec::new()
    }
}

/// Runs the pipeline on `function` of `module` for `bindings`.
pub fn compile(
    module: &Module,
    function: &str,
    bindings: &Bindings,
    options: &CompileOptions,
) -> Result<Compilation, CompileError> {
    let source = module.function(function).ok_or_else(|| CompileError::UnknownFunction(function.to_string()))?;
    let decide = options.decide_at.clone().unwrap_or_else(|| bindings.clone());
    let machine = Machine { bindings: decide, ..Machine::default() };
    let mut times = Vec::new();
    let mut timed = |stage: Stage, start: Instant| times.push((stage, start.elapsed()));

    let start = Instant::now();
    let (simplified, simplify_report) = if options.simplify {
        let (f, report) = simplify_function(module, source, &options.limits, &machine);
        verify_function(module, &f, Stage::Simplify)?;
        (f, Some(report))
    } else {
        (source.clone(), None)
    };
    timed(Stage::Simplify, start);

    let start = Instant::now();
    let fusion = if options.fuse { Fusion::of(&simplified, &machine) } else { Fusion::none(&simplified) };
    timed(Stage::Fuse, start);

    let start = Instant::now();
    let lowered = lower(&simplified, &fusion, bindings, options.lower)?;
    verify(&lowered.plan, Stage::Lower)?;
    timed(Stage::Lower, start);

    let start = Instant::now();
    let (plan, merged_gemms) = if options.fuse && options.gemm_epilogues {
        let (plan, merged) = crate::merge_gemm_epilogues(lowered.plan.clone());
        verify(&plan, Stage::MergeGemmEpilogues)?;
        (plan, merged)
    } else {
        (lowered.plan.clone(), Vec::new())
    };
    timed(Stage::MergeGemmEpilogues, start);

    Ok(Compilation {
        source: source.clone(),
        simplified,
        simplify_report,
        fusion,
        machine,
        bindings: bindings.clone(),
        lowered,
        merged_gemms,
        plan,
        times,
    })
}

/// The plan of `function` for `bindings` with the default pipeline.
pub fn compile_plan(module: &Module, function: &str, bindings: &Bindings) -> Result<Plan, CompileError> {
    compile(module, function, bindings, &CompileOptions::default()).map(|c| c.plan)
}

fn verify_function(module: &Module, f: &Function, stage: Stage) -> Result<(), CompileError> {
    let alone = Module { params: module.params.clone(), functions: vec![f.clone()] };
    kiln_ir::verify_module(&alone).map_err(|error| CompileError::Graph {
        stage,
        rendered: kiln_ir::render_error(&alone, &error),
        error,
    })
}

fn verify(plan: &Plan, stage: Stage) -> Result<(), CompileError> {
    verify_plan(plan).map_err(|error| CompileError::Plan { stage, error, plan: plan.to_string() })
}

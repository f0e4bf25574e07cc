//! Kernel IR to machine code through Cranelift's JIT.
//!
//! Each kernel becomes one function per part (`parts.rs`: each top-level
//! parallel loop of a kernel of several statements is a part of its own),
//! `extern "C" fn(buffers: *const *mut u8, lo: i64, hi: i64) -> i32`, that reads the plan's buffer pointers from the array it is given
//! and returns a status: 0, 1 when a computed (gather or scatter) index fell
//! outside its bound (element 0 is used instead, so no access leaves the
//! buffer), or 2 when an integer was divided by zero (the quotient is 0).
//! The function also takes a range `[lo, hi)`: a part that is one parallel
//! loop runs only those iterations, so the runtime splits it across rayon's
//! threads (as many as the machine has) when it is big enough. Loops are
//! plain counted loops whose loop-invariant index parts are computed before
//! they start (`hoist.rs`); loops marked `vector 4` whose body is one f32
//! store are widened to f32x4, and f32 reductions to four f32x4
//! accumulators (`vector.rs`); `a * b + c` is a fused multiply-add where
//! the host has FMA. Random bits and vectorized `exp` are computed inline;
//! other transcendental functions and GEMM are calls into `runtime.rs`, registered as JIT
//! symbols, so no symbol is left for the dynamic loader to find.

mod expr;
mod hoist;
pub(crate) mod kernel;
mod parts;
mod runtime;
mod vector;

use cranelift_codegen::settings::{self, Configurable};
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{Linkage, Module};
use kiln_ir::kernel::{ArenaLayout, Plan, arena_layout};

use rayon::prelude::*;

use crate::buffer::{Arena, HostBuffer};

/// The buffer pointers handed to every kernel call.
struct Pointers(Vec<*mut u8>);

// SAFETY: the pointers are only dereferenced by kernel code, and concurrent
// calls of one kernel touch disjoint elements (see `CompiledPlan::run`).
unsafe impl Sync for Pointers {}

impl Pointers {
    fn array(&self) -> *const *mut u8 {
        self.0.as_ptr()
    }
}

/// Why a plan could not be compiled or run.
#[derive(Debug, thiserror::Error)]
pub enum CodegenError {
    #[error("this machine is not supported by Cranelift: {0}")]
    Host(String),
    #[error("code generation failed in kernel `{kernel}`: {message}")]
    Kernel { kernel: String, message: String },
    #[error("the plan needs {expected} buffers, {given} were given")]
    Buffers { expected: usize, given: usize },
    #[error("buffer b{index} must hold {expected}, it holds {given}")]
    BufferType { index: usize, expected: String, given: String },
    #[error("unsupported: {0}")]
    Unsupported(String),
    #[error("the arena was made for another plan")]
    Arena,
    #[error("kernel `{0}` computed an index outside its bound")]
    IndexOutOfRange(String),
    #[error("kernel `{0}` divided an integer by zero")]
    DivisionByZero(String),
}

type KernelFn = unsafe extern "C" fn(*const *mut u8, i64, i64) -> i32;

/// A kernel's status when a computed index fell outside its bound.
pub(crate) const STATUS_INDEX_OUT_OF_RANGE: i64 = 1;
/// A kernel's status when it divided an integer by zero.
pub(crate) const STATUS_DIVISION_BY_ZERO: i64 = 2;

/// One compiled part of a kernel (`parts`) and how it may be split across
/// threads.
struct CompiledKernel {
    name: String,
    /// The plan's kernel this is a part of.
    kernel: usize,
    function: KernelFn,
    /// How many parts the kernel may be split into (`kernel::split_extent`).
    split: Option<u64>,
    /// Operations of the whole kernel (`kernel::work`).
    work: u64,
}

/// Below this much work (`kernel::work`: operations times iterations) a
/// kernel runs on one thread: about 100 µs of scalar work, well above the
/// cost of handing chunks to rayon's threads.
const PARALLEL_WORK: u64 = 1 << 19;

/// A plan compiled to machine code, ready to run.
pub struct CompiledPlan {
    plan: Plan,
    /// Where each buffer lives when the plan runs on an [`Arena`].
    layout: ArenaLayout,
    kernels: Vec<CompiledKernel>,
    /// Owns the executable memory the kernels live in.
    _module: JITModule,
}

/// Compiles every kernel of a verified plan.
pub fn compile_plan(plan: &Plan) -> Result<CompiledPlan, CodegenError> {
    compile(plan, None, None)
}

/// The Cranelift IR of every kernel of a verified plan, as text (what
/// `kiln emit clif` prints), before Cranelift's own optimizations.
pub fn clif_text(plan: &Plan) -> Result<String, CodegenError> {
    let mut text = String::new();
    compile(plan, Some(&mut text), None)?;
    Ok(text)
}

/// The machine code of every kernel of a verified plan, as Cranelift's
/// disassembly of its final instructions (what `kiln emit asm` prints),
/// after its optimizations (including loop-invariant code motion).
pub fn asm_text(plan: &Plan) -> Result<String, CodegenError> {
    let mut text = String::new();
    compile(plan, None, Some(&mut text))?;
    Ok(text)
}

/// Compiles the plan, appending each kernel's Cranelift IR to `clif` and
/// its disassembly to `asm` if given.
fn compile(
    plan: &Plan,
    mut clif: Option<&mut String>,
    mut asm: Option<&mut String>,
) -> Result<CompiledPlan, CodegenError> {
    let mut flags = settings::builder();
    flags.set("opt_level", "speed").map_err(|e| CodegenError::Host(e.to_string()))?;
    // Cranelift's IR verifier runs in debug builds (the tests), not in the
    // release binary, where it was a fifth of compile time.
    let verify = if cfg!(debug_assertions) { "true" } else { "false" };
    flags.set("enable_verifier", verify).map_err(|e| CodegenError::Host(e.to_string()))?;
    flags.set("use_colocated_libcalls", "false").map_err(|e| CodegenError::Host(e.to_string()))?;
    flags.set("is_pic", "false").map_err(|e| CodegenError::Host(e.to_string()))?;
    let isa = cranelift_native::builder()
        .map_err(|e| CodegenError::Host(e.to_string()))?
        .finish(settings::Flags::new(flags))
        .map_err(|e| CodegenError::Host(e.to_string()))?;
    let mut builder = JITBuilder::with_isa(isa, cranelift_module::default_libcall_names());
    runtime::register(&mut builder);
    let mut module = JITModule::new(builder);
    let mut ids = Vec::new();
    for (k, whole) in plan.kernels.iter().enumerate() {
        let parts = parts::parts(whole);
        for (p, kernel) in parts.iter().enumerate() {
            let fail = |message: String| CodegenError::Kernel { kernel: kernel.name.clone(), message };
            let mut ctx = module.make_context();
            let mut signature = module.make_signature();
            let ptr = module.target_config().pointer_type();
            signature.params.push(cranelift_codegen::ir::AbiParam::new(ptr));
            signature.params.push(cranelift_codegen::ir::AbiParam::new(cranelift_codegen::ir::types::I64));
            signature.params.push(cranelift_codegen::ir::AbiParam::new(cranelift_codegen::ir::types::I64));
            signature.returns.push(cranelift_codegen::ir::AbiParam::new(cranelift_codegen::ir::types::I32));
            ctx.func.signature = signature.clone();
            let id = module
                .declare_function(&format!("kiln_kernel_{k}_{p}"), Linkage::Local, &signature)
                .map_err(|e| fail(e.to_string()))?;
            kernel::build(&mut module, &mut ctx.func, plan, kernel).map_err(fail)?;
            let label = match parts.len() {
                1 => kernel.name.clone(),
                n => format!("{} (part {} of {n})", kernel.name, p + 1),
            };
            if let Some(out) = clif.as_deref_mut() {
                out.push_str(&format!("; kernel {label}\n{}\n", ctx.func.display()));
            }
            ctx.set_disasm(asm.is_some());
            module.define_function(id, &mut ctx).map_err(|e| fail(format!("{e:?}")))?;
            if let Some(out) = asm.as_deref_mut() {
                let code = ctx.compiled_code().and_then(|c| c.vcode.clone()).unwrap_or_default();
                out.push_str(&format!("; kernel {label}\n{code}\n"));
            }
            module.clear_context(&mut ctx);
            let split = kernel::split_extent(kernel);
            ids.push((kernel.name.clone(), k, id, split, kernel::work(&kernel.body)));
        }
    }
    module.finalize_definitions().map_err(|e| CodegenError::Host(e.to_string()))?;
    let kernels = ids
        .into_iter()
        .map(|(name, kernel, id, split, work)| {
            let code = module.get_finalized_function(id);
            // SAFETY: the function was defined with exactly this signature.
            let function = unsafe { std::mem::transmute::<*const u8, KernelFn>(code) };
            CompiledKernel { name, kernel, function, split, work }
        })
        .collect();
    Ok(CompiledPlan { plan: plan.clone(), layout: arena_layout(plan), kernels, _module: module })
}

impl CompiledPlan {
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Runs every kernel in order on `buffers`, one per declared buffer,
    /// each of the declared dtype and length.
    pub fn run(&self, buffers: &mut [HostBuffer]) -> Result<(), CodegenError> {
        if buffers.len() != self.plan.buffers.len() {
            return Err(CodegenError::Buffers { expected: self.plan.buffers.len(), given: buffers.len() });
        }
        for (index, (decl, b)) in self.plan.buffers.iter().zip(buffers.iter()).enumerate() {
            if decl.dtype != b.dtype || decl.len != b.len as u64 {
                return Err(CodegenError::BufferType {
                    index,
                    expected: format!("{}[{}]", decl.dtype, decl.len),
                    given: format!("{}[{}]", b.dtype, b.len),
                });
            }
        }
        self.launch(&Pointers(buffers.iter_mut().map(HostBuffer::as_mut_ptr).collect()), None)
    }

    /// How the plan's buffers share memory by liveness.
    pub fn layout(&self) -> &ArenaLayout {
        &self.layout
    }

    /// A fresh arena for this plan: one allocation for all its buffers.
    pub fn arena(&self) -> Arena {
        Arena::new(&self.plan, &self.layout)
    }

    /// Runs every kernel in order on an arena made by [`CompiledPlan::arena`]
    /// (inputs and parameters written into it first, outputs read after).
    pub fn run_arena(&self, arena: &mut Arena) -> Result<(), CodegenError> {
        if !arena.fits(&self.plan, &self.layout) {
            return Err(CodegenError::Arena);
        }
        self.launch(&Pointers(arena.pointers()), None)
    }

    /// Like [`CompiledPlan::run_arena`], and returns each kernel's name and
    /// wall time, in launch order: what `kiln run --profile` prints.
    pub fn profile_arena(&self, arena: &mut Arena) -> Result<Vec<(String, std::time::Duration)>, CodegenError> {
        if !arena.fits(&self.plan, &self.layout) {
            return Err(CodegenError::Arena);
        }
        let mut times = Vec::with_capacity(self.kernels.len());
        self.launch(&Pointers(arena.pointers()), Some(&mut times))?;
        // Each kernel's time is the sum of its parts'.
        let mut totals: Vec<(String, std::time::Duration)> =
            self.plan.kernels.iter().map(|k| (k.name.clone(), std::time::Duration::ZERO)).collect();
        for (part, time) in self.kernels.iter().zip(times) {
            totals[part.kernel].1 += time;
        }
        Ok(totals)
    }

    /// Runs every kernel in order on buffers at `pointers`, checked to be
    /// the plan's, pushing each kernel's wall time to `times` if given.
    ///
    /// A plan with two or more kernels that split across threads runs on
    /// one of rayon's workers: each split is then a fork inside the pool,
    /// which the other workers, still awake from the kernel before, pick up
    /// at once. Called from outside the pool, every split would instead be
    /// handed to the pool from outside and the caller put to sleep until it
    /// finished (`docs/performance.md`: 4% of the MLP step).
    fn launch(&self, pointers: &Pointers, times: Option<&mut Vec<std::time::Duration>>) -> Result<(), CodegenError> {
        let threads = rayon::current_num_threads() as u64;
        let splits = self.kernels.iter().filter(|k| k.splits(threads)).count();
        if splits >= 2 && rayon::current_thread_index().is_none() {
            let kernels = &self.kernels;
            return rayon::scope(|_| launch_kernels(kernels, pointers, times));
        }
        launch_kernels(&self.kernels, pointers, times)
    }
}

impl CompiledKernel {
    /// Whether the kernel runs in parts on `threads` threads.
    fn splits(&self, threads: u64) -> bool {
        matches!(self.split, Some(extent) if threads > 1 && extent > 1 && self.work >= PARALLEL_WORK)
    }
}

/// Runs `kernels` in order (see [`CompiledPlan::launch`]).
fn launch_kernels(
    kernels: &[CompiledKernel],
    pointers: &Pointers,
    mut times: Option<&mut Vec<std::time::Duration>>,
) -> Result<(), CodegenError> {
    let threads = rayon::current_num_threads() as u64;
    for kernel in kernels {
        let start = std::time::Instant::now();
        let status = match kernel.split {
            Some(extent) if kernel.splits(threads) => {
                let chunks = threads.min(extent);
                (0..chunks)
                    .into_par_iter()
                    .map(|c| {
                        let (lo, hi) = (extent * c / chunks, extent * (c + 1) / chunks);
                        // SAFETY: as below; iterations of a parallel loop
                        // write disjoint elements, so the chunks do too.
                        unsafe { (kernel.function)(pointers.array(), lo as i64, hi as i64) }
                    })
                    .max()
                    .unwrap_or(0)
            }
            // SAFETY: the plan was verified, so every affine access is
            // within the buffers checked above; computed indices are
            // checked by the kernel itself.
            _ => unsafe { (kernel.function)(pointers.array(), 0, kernel.split.unwrap_or(0) as i64) },
        };
        if let Some(times) = times.as_deref_mut() {
            times.push(start.elapsed());
        }
        match i64::from(status) {
            0 => {}
            STATUS_DIVISION_BY_ZERO => return Err(CodegenError::DivisionByZero(kernel.name.clone())),
            _ => return Err(CodegenError::IndexOutOfRange(kernel.name.clone())),
        }
    }
    Ok(())
}

//! Kernel IR to machine code through Cranelift's JIT.
//!
//! A plan is compiled once and runs at every binding of its size symbols:
//! each kernel becomes one function per part (`parts.rs`: each top-level
//! parallel loop of a kernel of several statements is a part of its own),
//! `extern "C" fn(buffers: *const *mut u8, sizes: *const i64, lo: i64, hi: i64) -> i32`,
//! that reads the plan's buffer pointers and its sizes' values (in the
//! plan's symbol order) from the arrays it is given, and returns a status: 0, 1 when a computed (gather or scatter) index fell
//! outside its bound (element 0 is used instead, so no access leaves the
//! buffer), or 2 when an integer was divided by zero (the quotient is 0).
//! The function also takes a range `[lo, hi)`: a part that is one parallel
//! loop runs only those iterations, so the runtime splits it across rayon's
//! threads (as many as the machine has) when it is big enough at the sizes
//! of the call. The arena and the split are prepared once per binding
//! (`Prepared`) and kept. Loops are
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

pub use runtime::{product_f32, product_f64};
mod vector;

use cranelift_codegen::settings::{self, Configurable};
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{Linkage, Module};
use kiln_ir::Bindings;
use kiln_ir::kernel::{ArenaLayout, Kernel, Plan, Size, arena_layout};

use rayon::prelude::*;
use std::sync::{Arc, Mutex};

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

/// The size values handed to every kernel call (read only).
#[derive(Clone, Copy)]
struct SizeValues(*const i64);

// SAFETY: kernels only read the sizes, which outlive the launch.
unsafe impl Sync for SizeValues {}
unsafe impl Send for SizeValues {}

impl SizeValues {
    fn pointer(self) -> *const i64 {
        self.0
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
    #[error("{0}")]
    Sizes(String),
    #[error("kernel `{0}` computed an index outside its bound")]
    IndexOutOfRange(String),
    #[error("kernel `{0}` divided an integer by zero")]
    DivisionByZero(String),
}

type KernelFn = unsafe extern "C" fn(*const *mut u8, *const i64, i64, i64) -> i32;

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
    split: Option<Size>,
    /// The part itself, for its work at a binding (`kernel::work`).
    part: Kernel,
}

/// What running a plan at one binding needs: the sizes' values in the
/// plan's order, the arena layout, and each part's split and work.
struct Prepared {
    bindings: Bindings,
    sizes: Vec<i64>,
    layout: ArenaLayout,
    /// Per compiled part: how many parts it may be split into, and its work.
    launches: Vec<Launch>,
}

/// A part's split at one binding.
#[derive(Clone, Copy)]
struct Launch {
    split: Option<u64>,
    work: u64,
}

/// Bindings a compiled plan keeps prepared; the oldest is dropped beyond it.
const PREPARED: usize = 8;

/// Below this much work (`kernel::work`: operations times iterations) a
/// kernel runs on one thread: about 100 µs of scalar work, well above the
/// cost of handing chunks to rayon's threads.
const PARALLEL_WORK: u64 = 1 << 19;

/// A plan compiled to machine code, ready to run.
pub struct CompiledPlan {
    plan: Plan,
    kernels: Vec<CompiledKernel>,
    /// The bindings the plan last ran at, prepared.
    prepared: Mutex<Vec<Arc<Prepared>>>,
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
            ids.push((kernel.name.clone(), k, id, split, kernel.clone()));
        }
    }
    module.finalize_definitions().map_err(|e| CodegenError::Host(e.to_string()))?;
    let kernels = ids
        .into_iter()
        .map(|(name, kernel, id, split, part)| {
            let code = module.get_finalized_function(id);
            // SAFETY: the function was defined with exactly this signature.
            let function = unsafe { std::mem::transmute::<*const u8, KernelFn>(code) };
            CompiledKernel { name, kernel, function, split, part }
        })
        .collect();
    Ok(CompiledPlan { plan: plan.clone(), kernels, prepared: Mutex::new(Vec::new()), _module: module })
}

impl CompiledPlan {
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// The plan prepared at `bindings` (a value for each of its size
    /// symbols, at or above its least value), made on first use and kept.
    fn prepared(&self, bindings: &Bindings) -> Result<Arc<Prepared>, CodegenError> {
        let mut kept = self.prepared.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = kept.iter().find(|p| &p.bindings == bindings) {
            return Ok(p.clone());
        }
        self.plan.check_bindings(bindings).map_err(CodegenError::Sizes)?;
        let layout = arena_layout(&self.plan, bindings).map_err(CodegenError::Sizes)?;
        let mut sizes = Vec::with_capacity(self.plan.symbols.len());
        for s in &self.plan.symbols {
            let value = bindings.get(&s.symbol).and_then(|&v| i64::try_from(v).ok());
            sizes.push(value.ok_or_else(|| CodegenError::Sizes(format!("size {} has no value", s.symbol)))?);
        }
        let launches = self
            .kernels
            .iter()
            .map(|k| Launch {
                split: k.split.as_ref().map(|s| kernel::value_at(s, bindings)),
                work: kernel::work(&k.part.body, bindings),
            })
            .collect();
        let prepared = Arc::new(Prepared { bindings: bindings.clone(), sizes, layout, launches });
        if kept.len() >= PREPARED {
            kept.remove(0);
        }
        kept.push(prepared.clone());
        Ok(prepared)
    }

    /// Runs every kernel in order at `bindings` on `buffers`, one per
    /// declared buffer, each of the declared dtype and length there.
    pub fn run(&self, bindings: &Bindings, buffers: &mut [HostBuffer]) -> Result<(), CodegenError> {
        if buffers.len() != self.plan.buffers.len() {
            return Err(CodegenError::Buffers { expected: self.plan.buffers.len(), given: buffers.len() });
        }
        let prepared = self.prepared(bindings)?;
        for (index, (decl, b)) in self.plan.buffers.iter().zip(buffers.iter()).enumerate() {
            let len = self.plan.buffer_len(kiln_ir::kernel::BufferId(index as u32), bindings);
            if decl.dtype != b.dtype || len != Some(b.len as u64) {
                return Err(CodegenError::BufferType {
                    index,
                    expected: format!("{}[{}]", decl.dtype, decl.len),
                    given: format!("{}[{}]", b.dtype, b.len),
                });
            }
        }
        self.launch(&prepared, &Pointers(buffers.iter_mut().map(HostBuffer::as_mut_ptr).collect()), None)
    }

    /// How the plan's buffers share memory by liveness at `bindings`.
    pub fn layout(&self, bindings: &Bindings) -> Result<ArenaLayout, CodegenError> {
        Ok(self.prepared(bindings)?.layout.clone())
    }

    /// A fresh arena for this plan at `bindings`: one allocation for all
    /// its buffers.
    pub fn arena(&self, bindings: &Bindings) -> Result<Arena, CodegenError> {
        let prepared = self.prepared(bindings)?;
        Arena::new(&self.plan, bindings, &prepared.layout).map_err(CodegenError::Sizes)
    }

    /// The arena's prepared binding, checked to be this plan's.
    fn prepared_for(&self, arena: &Arena) -> Result<Arc<Prepared>, CodegenError> {
        let prepared = self.prepared(arena.bindings())?;
        if !arena.fits(&self.plan, &prepared.layout) {
            return Err(CodegenError::Arena);
        }
        Ok(prepared)
    }

    /// Runs every kernel in order on an arena made by [`CompiledPlan::arena`]
    /// (inputs and parameters written into it first, outputs read after),
    /// at the sizes the arena was made for.
    pub fn run_arena(&self, arena: &mut Arena) -> Result<(), CodegenError> {
        let prepared = self.prepared_for(arena)?;
        self.launch(&prepared, &Pointers(arena.pointers()), None)
    }

    /// Like [`CompiledPlan::run_arena`], and returns each kernel's name and
    /// wall time, in launch order: what `kiln run --profile` prints.
    pub fn profile_arena(&self, arena: &mut Arena) -> Result<Vec<(String, std::time::Duration)>, CodegenError> {
        let prepared = self.prepared_for(arena)?;
        let mut times = Vec::with_capacity(self.kernels.len());
        self.launch(&prepared, &Pointers(arena.pointers()), Some(&mut times))?;
        // Each kernel's time is the sum of its parts'.
        let mut totals: Vec<(String, std::time::Duration)> =
            self.plan.kernels.iter().map(|k| (k.name.clone(), std::time::Duration::ZERO)).collect();
        for (part, time) in self.kernels.iter().zip(times) {
            totals[part.kernel].1 += time;
        }
        Ok(totals)
    }

    /// Like [`CompiledPlan::profile_arena`], part by part: each part's
    /// kernel name, its kernel IR text and its wall time, in launch order
    /// (the bench's `profile-parts` prints them).
    pub fn profile_parts(&self, arena: &mut Arena) -> Result<Vec<(String, String, std::time::Duration)>, CodegenError> {
        let prepared = self.prepared_for(arena)?;
        let mut times = Vec::with_capacity(self.kernels.len());
        self.launch(&prepared, &Pointers(arena.pointers()), Some(&mut times))?;
        Ok(self
            .kernels
            .iter()
            .zip(times)
            .map(|(part, time)| (self.plan.kernels[part.kernel].name.clone(), part.part.to_string(), time))
            .collect())
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
    fn launch(
        &self,
        prepared: &Prepared,
        pointers: &Pointers,
        times: Option<&mut Vec<std::time::Duration>>,
    ) -> Result<(), CodegenError> {
        let threads = rayon::current_num_threads() as u64;
        let splits = prepared.launches.iter().filter(|l| l.splits(threads)).count();
        if splits >= 2 && rayon::current_thread_index().is_none() {
            let kernels = &self.kernels;
            return rayon::scope(|_| launch_kernels(kernels, prepared, pointers, times));
        }
        launch_kernels(&self.kernels, prepared, pointers, times)
    }
}

impl Launch {
    /// Whether the kernel runs in parts on `threads` threads.
    fn splits(&self, threads: u64) -> bool {
        matches!(self.split, Some(extent) if threads > 1 && extent > 1 && self.work >= PARALLEL_WORK)
    }
}

/// Runs `kernels` in order (see [`CompiledPlan::launch`]).
fn launch_kernels(
    kernels: &[CompiledKernel],
    prepared: &Prepared,
    pointers: &Pointers,
    mut times: Option<&mut Vec<std::time::Duration>>,
) -> Result<(), CodegenError> {
    let threads = rayon::current_num_threads() as u64;
    let sizes = SizeValues(prepared.sizes.as_ptr());
    for (kernel, launch) in kernels.iter().zip(&prepared.launches) {
        let start = std::time::Instant::now();
        let status = match launch.split {
            Some(extent) if launch.splits(threads) => {
                let chunks = threads.min(extent);
                (0..chunks)
                    .into_par_iter()
                    .map(|c| {
                        let (lo, hi) = (extent * c / chunks, extent * (c + 1) / chunks);
                        // SAFETY: as below; iterations of a parallel loop
                        // write disjoint elements, so the chunks do too.
                        unsafe { (kernel.function)(pointers.array(), sizes.pointer(), lo as i64, hi as i64) }
                    })
                    .max()
                    .unwrap_or(0)
            }
            // SAFETY: the plan was verified, so every affine access is
            // within the buffers checked above; computed indices are
            // checked by the kernel itself.
            _ => unsafe { (kernel.function)(pointers.array(), sizes.0, 0, launch.split.unwrap_or(0) as i64) },
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

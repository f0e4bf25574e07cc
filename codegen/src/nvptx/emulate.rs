//! Runs a plan's GPU launches on the host: the same LLVM IR as the PTX
//! (built with [`Flavor::Host`] leaves), compiled by LLVM's JIT for this
//! CPU and called once per GPU thread with that thread's indices.
//!
//! The launches run in plan order and their blocks one after another. In a
//! launch whose threads never synchronize (grid and single-thread launches)
//! a block's threads run one after another on the calling thread; in one
//! whose threads do (block reductions, GEMM tiles) each thread of the block
//! is an OS thread, so barriers and warp shuffles behave as on the GPU: a
//! barrier waits for the whole block, a shuffle exchanges values within a
//! warp of 32. What is checked this way is the real index mapping —
//! grid-stride loops, the decomposition of flat indices, the tree of a
//! block reduction, the staging of GEMM tiles — not only the arithmetic.

use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Barrier};

use inkwell::OptimizationLevel;
use inkwell::context::Context;
use inkwell::targets::{CodeModel, InitializationConfig, RelocMode, Target, TargetMachine};
use kiln_ir::kernel::{Plan, Storage};
use kiln_ir::{Bindings, DType};

use super::emit::{self, Flavor, Sreg};
use super::expr::{STATUS_DIVISION_BY_ZERO, STATUS_INDEX_OUT_OF_RANGE};
use super::launch::launches;

/// What one emulated GPU thread sees.
#[derive(Clone, Copy, Default)]
struct Indices {
    tid: [u32; 2],
    ntid: u32,
    ctaid: [u32; 3],
    nctaid: u32,
}

/// What the threads of one block share.
struct BlockSync {
    barrier: Barrier,
    warps: Vec<Barrier>,
    slots: Vec<AtomicI32>,
}

thread_local! {
    static THREAD: Cell<Indices> = Cell::new(Indices::default());
    static BLOCK: RefCell<Option<Arc<BlockSync>>> = const { RefCell::new(None) };
}

extern "C" fn kiln_emu_sreg(which: i32) -> i32 {
    let t = THREAD.with(|t| t.get());
    let v = match which {
        x if x == Sreg::TidX as i32 => t.tid[0],
        x if x == Sreg::TidY as i32 => t.tid[1],
        x if x == Sreg::NtidX as i32 => t.ntid,
        x if x == Sreg::CtaidX as i32 => t.ctaid[0],
        x if x == Sreg::CtaidY as i32 => t.ctaid[1],
        x if x == Sreg::CtaidZ as i32 => t.ctaid[2],
        _ => t.nctaid,
    };
    v as i32
}

fn linear_tid() -> usize {
    let t = THREAD.with(|t| t.get());
    (t.tid[1] * t.ntid + t.tid[0]) as usize
}

extern "C" fn kiln_emu_barrier() {
    BLOCK.with(|b| {
        if let Some(sync) = b.borrow().as_ref() {
            sync.barrier.wait();
        }
    });
}

/// Hands `v` to the warp and returns the value of lane `from(lane)` (this
/// lane's own when that is outside the warp): what a shuffle does.
fn exchange(v: i32, from: impl Fn(usize) -> usize) -> i32 {
    let tid = linear_tid();
    BLOCK.with(|b| {
        let guard = b.borrow();
        let Some(sync) = guard.as_ref() else { return v };
        let warp = &sync.warps[tid / 32];
        sync.slots[tid].store(v, Ordering::SeqCst);
        warp.wait();
        let lane = from(tid % 32);
        let other = (tid & !31) + lane;
        let r = if lane < 32 && other < sync.slots.len() { sync.slots[other].load(Ordering::SeqCst) } else { v };
        warp.wait();
        r
    })
}

extern "C" fn kiln_emu_shfl_down(v: i32, delta: i32) -> i32 {
    exchange(v, |lane| lane + delta as usize)
}

extern "C" fn kiln_emu_shfl_xor(v: i32, mask: i32) -> i32 {
    exchange(v, |lane| lane ^ (mask as usize & 31))
}

extern "C" fn kiln_emu_ex2(x: f32) -> f32 {
    x.exp2()
}

extern "C" fn kiln_emu_lg2(x: f32) -> f32 {
    x.log2()
}

extern "C" fn kiln_emu_sin(x: f32) -> f32 {
    x.sin()
}

extern "C" fn kiln_emu_cos(x: f32) -> f32 {
    x.cos()
}

/// One buffer's bytes, 16-byte aligned as the entries require, in the
/// layout the kernels use (f32, f64, i32, i64 little-endian; bools one
/// byte each, 0 or 1).
pub(crate) struct Memory {
    pub words: Vec<Chunk>,
}

/// 16 bytes, 16-byte aligned.
#[derive(Clone, Copy)]
#[repr(C, align(16))]
pub(crate) struct Chunk([u8; 16]);

impl Memory {
    /// `storage` as `dtype` elements; the bytes past them are 0xff.
    pub fn of(storage: &Storage, dtype: DType) -> Memory {
        let size = dtype.size_bytes();
        let mut words = vec![Chunk([0xff; 16]); (storage.len() * size).div_ceil(16).max(1)];
        let bytes = bytes_mut(&mut words);
        for i in 0..storage.len() {
            let at = &mut bytes[i * size..(i + 1) * size];
            match (storage, dtype) {
                (Storage::Float(v), DType::F32) => at.copy_from_slice(&(v[i] as f32).to_le_bytes()),
                (Storage::Float(v), _) => at.copy_from_slice(&v[i].to_le_bytes()),
                (Storage::Int(v), DType::I32) => at.copy_from_slice(&(v[i] as i32).to_le_bytes()),
                (Storage::Int(v), _) => at.copy_from_slice(&v[i].to_le_bytes()),
                (Storage::Bool(v), _) => at[0] = u8::from(v[i]),
            }
        }
        Memory { words }
    }

    /// The elements' bytes.
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    pub fn bytes(&mut self, elements: usize, dtype: DType) -> &mut [u8] {
        &mut bytes_mut(&mut self.words)[..elements * dtype.size_bytes()]
    }

    /// Reads the elements back into `storage`.
    pub fn read(&mut self, storage: &mut Storage, dtype: DType) {
        let size = dtype.size_bytes();
        let bytes = bytes_mut(&mut self.words);
        let at = |i: usize| &bytes[i * size..(i + 1) * size];
        match storage {
            Storage::Float(v) if dtype == DType::F32 => v
                .iter_mut()
                .enumerate()
                .for_each(|(i, x)| *x = f64::from(f32::from_le_bytes(at(i).try_into().unwrap()))),
            Storage::Float(v) => {
                v.iter_mut().enumerate().for_each(|(i, x)| *x = f64::from_le_bytes(at(i).try_into().unwrap()))
            }
            Storage::Int(v) if dtype == DType::I32 => v
                .iter_mut()
                .enumerate()
                .for_each(|(i, x)| *x = i64::from(i32::from_le_bytes(at(i).try_into().unwrap()))),
            Storage::Int(v) => {
                v.iter_mut().enumerate().for_each(|(i, x)| *x = i64::from_le_bytes(at(i).try_into().unwrap()))
            }
            Storage::Bool(v) => v.iter_mut().enumerate().for_each(|(i, x)| *x = at(i)[0] != 0),
        }
    }
}

fn bytes_mut(words: &mut [Chunk]) -> &mut [u8] {
    // SAFETY: a chunk is 16 bytes without padding; u8 has no alignment.
    unsafe { std::slice::from_raw_parts_mut(words.as_mut_ptr().cast::<u8>(), words.len() * 16) }
}

fn host_machine() -> Result<TargetMachine, String> {
    Target::initialize_native(&InitializationConfig::default())?;
    let triple = TargetMachine::get_default_triple();
    let target = Target::from_triple(&triple).map_err(|e| e.to_string())?;
    target
        .create_target_machine(
            &triple,
            &TargetMachine::get_host_cpu_name().to_string(),
            &TargetMachine::get_host_cpu_features().to_string(),
            OptimizationLevel::Default,
            RelocMode::Default,
            CodeModel::JITDefault,
        )
        .ok_or_else(|| "no target machine for this host".to_string())
}

/// Runs every launch of `plan` at `bindings` (a value for each of its size
/// symbols) on `buffers` (one per declared buffer, as long as the plan says
/// at `bindings`, inputs and parameters filled in), as the GPU would.
pub fn emulate_plan(plan: &Plan, bindings: &Bindings, buffers: &mut [Storage]) -> Result<(), String> {
    with_emulator(plan, |run| run(bindings, buffers))?
}

/// A runner of one plan's emulated module: runs it at the bindings given on
/// the buffers given (see [`emulate_plan`]).
pub type Emulator<'a> = &'a dyn Fn(&Bindings, &mut [Storage]) -> Result<(), String>;

/// Builds `plan`'s module for the host once and hands `f` a runner of it:
/// one build serves every binding `f` runs it at.
pub fn with_emulator<T>(plan: &Plan, f: impl FnOnce(Emulator<'_>) -> T) -> Result<T, String> {
    let context = Context::create();
    let module = emit::build_module(&context, plan, Flavor::Host).map_err(|e| e.to_string())?;
    let machine = host_machine()?;
    module.set_triple(&machine.get_triple());
    module.set_data_layout(&machine.get_target_data().get_data_layout());
    emit::optimize(&module, &machine).map_err(|e| e.to_string())?;
    let engine = module.create_jit_execution_engine(OptimizationLevel::Default).map_err(|e| e.to_string())?;
    let runtime: [(&str, usize); 8] = [
        ("kiln_emu_shfl_xor", kiln_emu_shfl_xor as *const () as usize),
        ("kiln_emu_sreg", kiln_emu_sreg as *const () as usize),
        ("kiln_emu_barrier", kiln_emu_barrier as *const () as usize),
        ("kiln_emu_shfl_down", kiln_emu_shfl_down as *const () as usize),
        ("kiln_emu_ex2", kiln_emu_ex2 as *const () as usize),
        ("kiln_emu_lg2", kiln_emu_lg2 as *const () as usize),
        ("kiln_emu_sin", kiln_emu_sin as *const () as usize),
        ("kiln_emu_cos", kiln_emu_cos as *const () as usize),
    ];
    for (name, address) in runtime {
        if let Some(f) = module.get_function(name) {
            engine.add_global_mapping(&f, address);
        }
    }
    let run = |bindings: &Bindings, buffers: &mut [Storage]| -> Result<(), String> {
        plan.check_bindings(bindings)?;
        if buffers.len() != plan.buffers.len() {
            return Err(format!("{} buffers for a plan of {}", buffers.len(), plan.buffers.len()));
        }
        for (i, (s, b)) in buffers.iter().zip(&plan.buffers).enumerate() {
            if b.len.eval(bindings) != Some(s.len() as i64) {
                return Err(format!("buffer b{i} has {} elements, the plan {} at these sizes", s.len(), b.len));
            }
        }
        let mut sizes: Vec<i64> =
            plan.symbols.iter().map(|s| bindings.get(&s.symbol).map_or(0, |&v| v as i64)).collect();
        let dtypes: Vec<DType> = plan.buffers.iter().map(|b| b.dtype).collect();
        let mut memory: Vec<Memory> = buffers.iter().zip(&dtypes).map(|(s, d)| Memory::of(s, *d)).collect();
        let mut status = [0i32; 2];
        for kernel in &plan.kernels {
            for l in launches(plan, kernel) {
                let grid = l.grid_u32(bindings).map_err(|what| format!("kernel {}: {what}", kernel.name))?;
                let address = engine.get_function_address(&format!("{}.call", l.name)).map_err(|e| e.to_string())?;
                // SAFETY: `NAME.call` was built as `void (ptr argv)`.
                let entry: extern "C" fn(*const *mut u8) = unsafe { std::mem::transmute(address) };
                let mut argv: Vec<*mut u8> =
                    l.buffers().iter().map(|b| memory[b.0 as usize].words.as_mut_ptr().cast::<u8>()).collect();
                argv.push(status.as_mut_ptr().cast::<u8>());
                argv.extend(sizes.iter_mut().map(|x| (x as *mut i64).cast::<u8>()));
                run_launch(entry, &argv, grid, l.block, l.cooperates());
                match status[0] {
                    0 => {}
                    STATUS_INDEX_OUT_OF_RANGE => {
                        return Err(format!("kernel {}: an index is out of range", kernel.name));
                    }
                    STATUS_DIVISION_BY_ZERO => return Err(format!("kernel {}: integer division by zero", kernel.name)),
                    code => return Err(format!("kernel {}: status {code}", kernel.name)),
                }
            }
        }
        for ((m, s), d) in memory.iter_mut().zip(buffers.iter_mut()).zip(&dtypes) {
            m.read(s, *d);
        }
        Ok(())
    };
    Ok(f(&run))
}

/// The pointers of a launch's arguments, sendable to the block's threads
/// (each thread only reads the array; the kernels write disjoint elements
/// or synchronize).
#[derive(Clone, Copy)]
struct Args(*const *mut u8);
// SAFETY: see above; the array outlives the scoped threads.
unsafe impl Send for Args {}
unsafe impl Sync for Args {}

fn run_launch(
    entry: extern "C" fn(*const *mut u8),
    argv: &[*mut u8],
    grid: [u32; 3],
    block: [u32; 3],
    cooperates: bool,
) {
    let args = Args(argv.as_ptr());
    let threads = (block[0] * block[1]) as usize;
    for z in 0..grid[2] {
        for y in 0..grid[1] {
            for x in 0..grid[0] {
                let at =
                    |tx: u32, ty: u32| Indices { tid: [tx, ty], ntid: block[0], ctaid: [x, y, z], nctaid: grid[0] };
                if !cooperates {
                    for ty in 0..block[1] {
                        for tx in 0..block[0] {
                            THREAD.with(|t| t.set(at(tx, ty)));
                            entry(args.0);
                        }
                    }
                    continue;
                }
                let sync = Arc::new(BlockSync {
                    barrier: Barrier::new(threads),
                    warps: (0..threads.div_ceil(32)).map(|w| Barrier::new((threads - 32 * w).min(32))).collect(),
                    slots: (0..threads).map(|_| AtomicI32::new(0)).collect(),
                });
                std::thread::scope(|scope| {
                    for ty in 0..block[1] {
                        for tx in 0..block[0] {
                            let (sync, indices) = (Arc::clone(&sync), at(tx, ty));
                            scope.spawn(move || {
                                let args = args;
                                THREAD.with(|t| t.set(indices));
                                BLOCK.with(|b| *b.borrow_mut() = Some(sync));
                                entry(args.0);
                            });
                        }
                    }
                });
            }
        }
    }
}

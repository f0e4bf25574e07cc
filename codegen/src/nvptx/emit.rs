//! Launches to LLVM IR functions, for the GPU or for the host emulation.
//!
//! Both flavors build the same instructions; they differ only in the
//! leaves: where a thread reads its indices, waits at a barrier, exchanges
//! a value with a lane of its warp, or calls an approximate transcendental,
//! the device flavor calls the NVPTX intrinsic and the host flavor calls
//! the emulation runtime (`kiln_emu_*`, see `emulate.rs`). Shared memory is
//! a global in address space 3 on the device and a plain global on the host,
//! where a block runs alone.
//!
//! Every function takes one pointer per buffer it touches (ascending buffer
//! ids), then a pointer to the plan's status word (an i32), where a
//! computed index out of range stores 1 and an integer division by zero 2,
//! then one i64 per size symbol of the plan, in the plan's order, from
//! which it computes every size (none for a plan of constant sizes): one
//! module serves every binding.
//! Loop counters and accumulators live in allocas that `mem2reg` promotes.

use std::collections::BTreeMap;

use inkwell::attributes::{Attribute, AttributeLoc};
use inkwell::basic_block::BasicBlock;
use inkwell::builder::Builder;
use inkwell::context::Context;
use inkwell::module::{Linkage, Module};
use inkwell::passes::PassBuilderOptions;
use inkwell::targets::TargetMachine;
use inkwell::types::{BasicMetadataTypeEnum, BasicType, BasicTypeEnum};
use inkwell::values::{BasicMetadataValueEnum, BasicValueEnum, FunctionValue, IntValue, PointerValue};
use inkwell::{AddressSpace, AtomicOrdering, AtomicRMWBinOp, FloatPredicate, IntPredicate};
use kiln_ir::kernel::{AccId, Affine, BufferId, KStmt, Plan, Size, VarId};
use kiln_ir::{Bindings, DType, ReduceKind, Symbol};

use super::PtxError;
use super::launch::{self, Launch, Mapping};

pub type E<T> = Result<T, PtxError>;

/// Which machine the IR is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    Device,
    Host,
}

/// The special registers a thread reads.
#[derive(Clone, Copy, Debug)]
pub enum Sreg {
    TidX = 0,
    TidY = 1,
    NtidX = 2,
    CtaidX = 3,
    CtaidY = 4,
    CtaidZ = 5,
    NctaidX = 6,
}

/// Which lane a shuffle reads.
#[derive(Clone, Copy, Debug)]
pub enum Shuffle {
    Down,
    Xor,
}

/// The loops of the perfect nest `s` (a `For`) starts, and its innermost body.
fn perfect_nest_of(s: &KStmt) -> (Vec<(VarId, Size)>, &[KStmt]) {
    let mut loops = Vec::new();
    let mut body = std::slice::from_ref(s);
    while let [KStmt::For { var, extent, body: inner, .. }] = body {
        loops.push((*var, extent.clone()));
        body = inner;
    }
    (loops, body)
}

/// `ptx_kernel`, the calling convention that makes a function an `.entry`.
const PTX_KERNEL: u32 = 71;
/// The shared address space of NVPTX.
pub const SHARED: u16 = 3;

/// Builds every launch of every kernel of the plan into one module. Each
/// entry takes an i64 argument per size symbol of the plan after the status
/// word, and computes every size from them. A grid too big for a GPU at the
/// plan's hints is an error here (at other sizes, when launched).
pub fn build_module<'c>(context: &'c Context, plan: &Plan, flavor: Flavor) -> E<Module<'c>> {
    let module = context.create_module(&plan.name);
    let symbols = plan.symbols.len();
    let hint: Bindings = kiln_ir::kernel::hints(&plan.symbols);
    for kernel in &plan.kernels {
        for l in launch::launches(plan, kernel) {
            if let Err(what) = l.grid_u32(&hint) {
                return Err(PtxError::Unsupported { kernel: kernel.name.clone(), what });
            }
            let mut e = Emitter::new(context, &module, plan, flavor, &l, &kernel.name, symbols)?;
            e.launch(&l)?;
            if flavor == Flavor::Host {
                e.trampoline(l.buffers().len() + 1, symbols)?;
            }
        }
    }
    module.verify().map_err(|e| PtxError::Llvm(e.to_string()))?;
    Ok(module)
}

/// LLVM's O3 pipeline for `machine`.
pub fn optimize(module: &Module<'_>, machine: &TargetMachine) -> E<()> {
    module.run_passes("default<O3>", machine, PassBuilderOptions::create()).map_err(|e| PtxError::Llvm(e.to_string()))
}

pub struct Emitter<'c, 'm> {
    pub cx: &'c Context,
    pub module: &'m Module<'c>,
    pub b: Builder<'c>,
    pub plan: &'m Plan,
    pub flavor: Flavor,
    pub kernel: String,
    pub function: FunctionValue<'c>,
    entry: BasicBlock<'c>,
    buffers: BTreeMap<BufferId, PointerValue<'c>>,
    pub status: PointerValue<'c>,
    pub vars: BTreeMap<VarId, IntValue<'c>>,
    pub accs: BTreeMap<AccId, (PointerValue<'c>, DType, ReduceKind)>,
    /// The value of each size symbol of the plan: the entry's last arguments.
    sizes: Vec<(Symbol, IntValue<'c>)>,
}

impl<'c, 'm> Emitter<'c, 'm> {
    fn new(
        cx: &'c Context,
        module: &'m Module<'c>,
        plan: &'m Plan,
        flavor: Flavor,
        l: &Launch<'_>,
        kernel: &str,
        symbols: usize,
    ) -> E<Self> {
        let ptr = cx.ptr_type(AddressSpace::default());
        let used = l.buffers();
        let mut params: Vec<BasicMetadataTypeEnum> = vec![ptr.into(); used.len() + 1];
        params.extend(std::iter::repeat_n(BasicMetadataTypeEnum::from(cx.i64_type()), symbols));
        let function = module.add_function(&l.name, cx.void_type().fn_type(&params, false), None);
        if flavor == Flavor::Device {
            function.set_call_conventions(PTX_KERNEL);
        }
        // Distinct buffers never share bytes while a kernel runs (the arena
        // layout's guarantee), so the buffer arguments do not alias; each
        // is 16-byte aligned (the manifest's contract), which lets LLVM
        // merge a thread's consecutive accesses into vector ones.
        let noalias = cx.create_enum_attribute(Attribute::get_named_enum_kind_id("noalias"), 0);
        let align = cx.create_enum_attribute(Attribute::get_named_enum_kind_id("align"), 16);
        for i in 0..=used.len() as u32 {
            function.add_attribute(AttributeLoc::Param(i), noalias);
            function.add_attribute(AttributeLoc::Param(i), align);
        }
        let entry = cx.append_basic_block(function, "entry");
        let b = cx.create_builder();
        b.position_at_end(entry);
        let buffers = used
            .iter()
            .enumerate()
            .map(|(i, id)| (*id, function.get_nth_param(i as u32).unwrap().into_pointer_value()))
            .collect();
        let status = function.get_nth_param(used.len() as u32).unwrap().into_pointer_value();
        let sizes = plan
            .symbols
            .iter()
            .enumerate()
            .map(|(k, s)| {
                (s.symbol.clone(), function.get_nth_param((used.len() + 1 + k) as u32).unwrap().into_int_value())
            })
            .collect();
        Ok(Emitter {
            cx,
            module,
            b,
            plan,
            flavor,
            kernel: kernel.to_string(),
            function,
            entry,
            buffers,
            status,
            vars: BTreeMap::new(),
            accs: BTreeMap::new(),
            sizes,
        })
    }

    /// `NAME.call(argv)`: calls the launch's function with the pointers of
    /// the array `argv`, then the i64 values its next `symbols` pointers
    /// point to, so the emulator calls every entry the same way.
    fn trampoline(&mut self, arguments: usize, symbols: usize) -> E<()> {
        let ptr = self.cx.ptr_type(AddressSpace::default());
        let name = format!("{}.call", self.function.get_name().to_string_lossy());
        let f = self.module.add_function(&name, self.cx.void_type().fn_type(&[ptr.into()], false), None);
        let entry = self.cx.append_basic_block(f, "entry");
        self.b.position_at_end(entry);
        let argv = f.get_nth_param(0).unwrap().into_pointer_value();
        let mut args = Vec::new();
        for i in 0..arguments {
            // SAFETY: `argv` holds `arguments` pointers.
            let at = unsafe { self.b.build_in_bounds_gep(ptr, argv, &[self.i64(i as i64)], "")? };
            args.push(self.b.build_load(ptr, at, "")?);
        }
        for i in arguments..arguments + symbols {
            // SAFETY: `argv` holds a pointer to an i64 per symbol after the pointers.
            let at = unsafe { self.b.build_in_bounds_gep(ptr, argv, &[self.i64(i as i64)], "")? };
            let value = self.b.build_load(ptr, at, "")?.into_pointer_value();
            args.push(self.b.build_load(self.cx.i64_type(), value, "")?);
        }
        self.call(self.function, &args)?;
        self.b.build_return(None)?;
        Ok(())
    }

    pub fn unsupported<T>(&self, what: impl Into<String>) -> E<T> {
        Err(PtxError::Unsupported { kernel: self.kernel.clone(), what: what.into() })
    }

    fn launch(&mut self, l: &Launch<'_>) -> E<()> {
        match &l.mapping {
            Mapping::Grid { loops, body, lanes } => {
                let tid = self.sreg(Sreg::TidX)?;
                let ntid = self.sreg(Sreg::NtidX)?;
                let ctaid = self.sreg(Sreg::CtaidX)?;
                let nctaid = self.sreg(Sreg::NctaidX)?;
                let first = self.b.build_int_add(self.b.build_int_mul(ctaid, ntid, "")?, tid, "first")?;
                let step = self.b.build_int_mul(nctaid, ntid, "step")?;
                let mut loops = loops.clone();
                let (var, extent) = loops.last_mut().expect("a grid launch has a loop");
                let (var, lanes) = (*var, i64::from(*lanes));
                // `launches` gives lanes only to an extent they divide at every size.
                let Some(divided) = extent.div_exact(lanes) else {
                    return self.unsupported(format!("{lanes} lanes on a loop of {extent} iterations"));
                };
                *extent = divided;
                self.strided(&loops, first, step, |e| {
                    if lanes == 1 {
                        return e.block(body);
                    }
                    let chunk = e.b.build_int_mul(e.vars[&var], e.i64(lanes), "")?;
                    for lane in 0..lanes {
                        let i = e.b.build_int_add(chunk, e.i64(lane), "")?;
                        e.vars.insert(var, i);
                        e.block(body)?;
                    }
                    Ok(())
                })?;
            }
            Mapping::WarpRows { loops, body } => {
                let tid = self.sreg(Sreg::TidX)?;
                let ntid = self.sreg(Sreg::NtidX)?;
                let ctaid = self.sreg(Sreg::CtaidX)?;
                let nctaid = self.sreg(Sreg::NctaidX)?;
                let global = self.b.build_int_add(self.b.build_int_mul(ctaid, ntid, "")?, tid, "")?;
                let warp = self.b.build_right_shift(global, self.i64(5), false, "warp")?;
                let warps =
                    self.b.build_right_shift(self.b.build_int_mul(nctaid, ntid, "")?, self.i64(5), false, "")?;
                let lane = self.b.build_and(tid, self.i64(31), "lane")?;
                self.strided(loops, warp, warps, |e| e.warp_row(body, lane))?;
            }
            Mapping::BlockReduce { accs, loops, body, tail } => self.block_reduce(accs, loops, body, tail)?,
            Mapping::Gemm(call) => self.gemm(call)?,
            Mapping::Single(body) => self.block(body)?,
        }
        self.b.build_return(None)?;
        Ok(())
    }

    // ----- types and memory -----

    pub fn i64(&self, v: i64) -> IntValue<'c> {
        self.cx.i64_type().const_int(v as u64, true)
    }

    /// The value of a size: a constant, or computed from the entry's size
    /// arguments (LLVM shares and hoists the arithmetic).
    pub fn size(&self, s: &Size) -> E<IntValue<'c>> {
        let mut sum = self.i64(s.constant_term());
        for (monomial, coefficient) in s.terms() {
            let mut product = self.i64(*coefficient);
            for symbol in monomial {
                let Some(&(_, value)) = self.sizes.iter().find(|(name, _)| name == symbol) else {
                    return self.unsupported(format!("size {s}, whose symbol {symbol} the plan does not declare"));
                };
                product = self.b.build_int_mul(product, value, "")?;
            }
            sum = self.b.build_int_add(sum, product, "")?;
        }
        Ok(sum)
    }

    pub fn i32(&self, v: i32) -> IntValue<'c> {
        self.cx.i32_type().const_int(v as u32 as u64, true)
    }

    /// The register type of a dtype's values (bools are `i1`).
    pub fn reg_type(&self, dtype: DType) -> BasicTypeEnum<'c> {
        match dtype {
            DType::F32 => self.cx.f32_type().into(),
            DType::F64 => self.cx.f64_type().into(),
            DType::I32 => self.cx.i32_type().into(),
            DType::I64 => self.cx.i64_type().into(),
            DType::Bool => self.cx.bool_type().into(),
        }
    }

    /// The memory type of a dtype's elements (bools are bytes 0 and 1).
    pub fn mem_type(&self, dtype: DType) -> BasicTypeEnum<'c> {
        match dtype {
            DType::Bool => self.cx.i8_type().into(),
            d => self.reg_type(d),
        }
    }

    pub fn dtype(&self, id: BufferId) -> E<DType> {
        match self.plan.buffer(id) {
            Some(b) => Ok(b.dtype),
            None => self.unsupported(format!("buffer {id}, which the plan does not declare,")),
        }
    }

    /// The address of element `index` (an i64) of a buffer.
    pub fn element(&self, id: BufferId, index: IntValue<'c>) -> E<PointerValue<'c>> {
        let dtype = self.dtype(id)?;
        let base = match self.buffers.get(&id) {
            Some(p) => *p,
            None => return self.unsupported(format!("buffer {id} outside the launch's arguments")),
        };
        // SAFETY: the verifier proved affine indices in bounds; computed
        // ones are clamped after a range check (`checked_index`).
        Ok(unsafe { self.b.build_in_bounds_gep(self.mem_type(dtype), base, &[index], "")? })
    }

    pub fn load_element(&self, id: BufferId, index: IntValue<'c>) -> E<BasicValueEnum<'c>> {
        let dtype = self.dtype(id)?;
        let address = self.element(id, index)?;
        let v = self.b.build_load(self.mem_type(dtype), address, "")?;
        Ok(if dtype == DType::Bool {
            self.b.build_int_compare(IntPredicate::NE, v.into_int_value(), self.cx.i8_type().const_zero(), "")?.into()
        } else {
            v
        })
    }

    /// A register value as its memory form.
    pub fn to_memory(&self, v: BasicValueEnum<'c>, dtype: DType) -> E<BasicValueEnum<'c>> {
        Ok(if dtype == DType::Bool {
            self.b.build_int_z_extend(v.into_int_value(), self.cx.i8_type(), "")?.into()
        } else {
            v
        })
    }

    pub fn store_element(&self, id: BufferId, index: IntValue<'c>, v: BasicValueEnum<'c>) -> E<()> {
        let dtype = self.dtype(id)?;
        let address = self.element(id, index)?;
        self.b.build_store(address, self.to_memory(v, dtype)?)?;
        Ok(())
    }

    /// An alloca in the entry block, where `mem2reg` finds it.
    pub fn alloca(&self, ty: BasicTypeEnum<'c>) -> E<PointerValue<'c>> {
        let at = self.cx.create_builder();
        match self.entry.get_first_instruction() {
            Some(first) => at.position_before(&first),
            None => at.position_at_end(self.entry),
        }
        Ok(at.build_alloca(ty, "")?)
    }

    pub fn affine(&self, a: &Affine) -> E<IntValue<'c>> {
        let mut sum = self.size(&a.constant)?;
        for (var, coefficient) in &a.terms {
            let v = match self.vars.get(var) {
                Some(v) => *v,
                None => return self.unsupported(format!("loop variable {var} outside its loop")),
            };
            let term = if coefficient.is(1) { v } else { self.b.build_int_mul(v, self.size(coefficient)?, "")? };
            sum = self.b.build_int_add(sum, term, "")?;
        }
        Ok(sum)
    }

    /// Stores `code` into the status word when `condition` holds.
    pub fn flag_if(&self, condition: IntValue<'c>, code: i32) -> E<()> {
        let old = self.b.build_load(self.cx.i32_type(), self.status, "")?.into_int_value();
        let new = self.b.build_select(condition, self.i32(code), old, "")?;
        self.b.build_store(self.status, new)?;
        Ok(())
    }

    // ----- control flow -----

    /// `for var in 0..extent` around what `body` emits.
    pub fn counted(&mut self, extent: IntValue<'c>, body: impl FnOnce(&mut Self, IntValue<'c>) -> E<()>) -> E<()> {
        self.range(self.i64(0), extent, self.i64(1), body)
    }

    /// `for i = first; i < end; i += step` around what `body` emits.
    pub fn range(
        &mut self,
        first: IntValue<'c>,
        end: IntValue<'c>,
        step: IntValue<'c>,
        body: impl FnOnce(&mut Self, IntValue<'c>) -> E<()>,
    ) -> E<()> {
        let counter = self.alloca(self.cx.i64_type().into())?;
        self.b.build_store(counter, first)?;
        let check = self.cx.append_basic_block(self.function, "check");
        let inside = self.cx.append_basic_block(self.function, "body");
        let exit = self.cx.append_basic_block(self.function, "exit");
        self.b.build_unconditional_branch(check)?;
        self.b.position_at_end(check);
        let i = self.b.build_load(self.cx.i64_type(), counter, "i")?.into_int_value();
        let more = self.b.build_int_compare(IntPredicate::SLT, i, end, "")?;
        self.b.build_conditional_branch(more, inside, exit)?;
        self.b.position_at_end(inside);
        body(self, i)?;
        let next = self.b.build_int_add(i, step, "")?;
        self.b.build_store(counter, next)?;
        self.b.build_unconditional_branch(check)?;
        self.b.position_at_end(exit);
        Ok(())
    }

    /// Runs what `then` emits when `condition` holds.
    pub fn when(&mut self, condition: IntValue<'c>, then: impl FnOnce(&mut Self) -> E<()>) -> E<()> {
        let inside = self.cx.append_basic_block(self.function, "then");
        let after = self.cx.append_basic_block(self.function, "after");
        self.b.build_conditional_branch(condition, inside, after)?;
        self.b.position_at_end(inside);
        then(self)?;
        self.b.build_unconditional_branch(after)?;
        self.b.position_at_end(after);
        Ok(())
    }

    /// The flat iterations `first, first + step, ...` of a loop nest, each
    /// decomposed into the nest's variables (row-major) before `body`.
    fn strided(
        &mut self,
        loops: &[(VarId, Size)],
        first: IntValue<'c>,
        step: IntValue<'c>,
        body: impl FnOnce(&mut Self) -> E<()>,
    ) -> E<()> {
        let total: Size = loops.iter().map(|l| l.1.clone()).product();
        let total = self.size(&total)?;
        let loops = loops.to_vec();
        self.range(first, total, step, |e, flat| {
            let mut rest = flat;
            for (k, (var, extent)) in loops.iter().enumerate().rev() {
                if k == 0 {
                    e.vars.insert(*var, rest);
                } else {
                    let extent = e.size(extent)?;
                    e.vars.insert(*var, e.b.build_int_unsigned_rem(rest, extent, "")?);
                    rest = e.b.build_int_unsigned_div(rest, extent, "")?;
                }
            }
            body(e)
        })
    }

    pub fn block(&mut self, body: &[KStmt]) -> E<()> {
        body.iter().try_for_each(|s| self.stmt(s))
    }

    fn stmt(&mut self, s: &KStmt) -> E<()> {
        match s {
            KStmt::For { var, extent, body, .. } => {
                let var = *var;
                self.counted(self.size(extent)?, |e, i| {
                    e.vars.insert(var, i);
                    e.block(body)
                })
            }
            KStmt::Store { buffer, index, value } => {
                let v = self.expr(value)?;
                let at = self.affine(index)?;
                self.store_element(*buffer, at, v)
            }
            KStmt::ScatterAdd { buffer, base, index, stride, bound, value } => {
                let at = self.checked_index(base, index, stride, bound)?;
                let v = self.expr(value)?;
                let address = self.element(*buffer, at)?;
                self.atomic_add(address, v, self.dtype(*buffer)?)
            }
            KStmt::AccInit { acc, dtype, kind } => {
                let slot = self.alloca(self.reg_type(*dtype))?;
                self.b.build_store(slot, self.identity(*dtype, *kind)?)?;
                self.accs.insert(*acc, (slot, *dtype, *kind));
                Ok(())
            }
            KStmt::AccUpdate { acc, value } => {
                let Some(&(slot, dtype, kind)) = self.accs.get(acc) else {
                    return self.unsupported(format!("accumulator {acc} used outside the launch that declares it"));
                };
                let v = self.expr(value)?;
                let old = self.b.build_load(self.reg_type(dtype), slot, "")?;
                let new = self.combine(kind, dtype, old, v)?;
                self.b.build_store(slot, new)?;
                Ok(())
            }
            KStmt::Call(_) => self.unsupported("a runtime call inside a loop"),
        }
    }

    /// `*address += v` atomically: an `atomicrmw add` for integers, a
    /// compare-and-swap loop on the bits for floats.
    fn atomic_add(&mut self, address: PointerValue<'c>, v: BasicValueEnum<'c>, dtype: DType) -> E<()> {
        match dtype {
            DType::I32 | DType::I64 => {
                self.b.build_atomicrmw(AtomicRMWBinOp::Add, address, v.into_int_value(), AtomicOrdering::Monotonic)?;
                Ok(())
            }
            DType::F32 | DType::F64 => {
                let bits = if dtype == DType::F32 { self.cx.i32_type() } else { self.cx.i64_type() };
                let float = self.reg_type(dtype);
                let seen = self.alloca(bits.into())?;
                let first = self.b.build_load(bits, address, "")?;
                self.b.build_store(seen, first)?;
                let retry = self.cx.append_basic_block(self.function, "cas");
                let done = self.cx.append_basic_block(self.function, "cas_done");
                self.b.build_unconditional_branch(retry)?;
                self.b.position_at_end(retry);
                let old = self.b.build_load(bits, seen, "")?.into_int_value();
                let old_float = self.b.build_bit_cast(old, float, "")?.into_float_value();
                let sum = self.b.build_float_add(old_float, v.into_float_value(), "")?;
                let new = self.b.build_bit_cast(sum, bits, "")?.into_int_value();
                let pair =
                    self.b.build_cmpxchg(address, old, new, AtomicOrdering::Monotonic, AtomicOrdering::Monotonic)?;
                let now = self.b.build_extract_value(pair, 0, "")?;
                let swapped = self.b.build_extract_value(pair, 1, "")?.into_int_value();
                self.b.build_store(seen, now)?;
                self.b.build_conditional_branch(swapped, done, retry)?;
                self.b.position_at_end(done);
                Ok(())
            }
            DType::Bool => self.unsupported("scatter-add into a bool buffer"),
        }
    }

    /// The identity of a reduction of `kind` in `dtype`.
    pub fn identity(&self, dtype: DType, kind: ReduceKind) -> E<BasicValueEnum<'c>> {
        Ok(match (kind, dtype) {
            (ReduceKind::Sum, DType::F32) => self.cx.f32_type().const_zero().into(),
            (ReduceKind::Sum, DType::F64) => self.cx.f64_type().const_zero().into(),
            (ReduceKind::Max, DType::F32) => self.cx.f32_type().const_float(f64::NEG_INFINITY).into(),
            (ReduceKind::Max, DType::F64) => self.cx.f64_type().const_float(f64::NEG_INFINITY).into(),
            (ReduceKind::Sum, DType::I32) => self.i32(0).into(),
            (ReduceKind::Sum, DType::I64) => self.i64(0).into(),
            (ReduceKind::Max, DType::I32) => self.i32(i32::MIN).into(),
            (ReduceKind::Max, DType::I64) => self.i64(i64::MIN).into(),
            (_, DType::Bool) => return self.unsupported("a reduction of bools"),
        })
    }

    /// One step of a reduction: `a + b` or the NaN-propagating maximum.
    pub fn combine(
        &self,
        kind: ReduceKind,
        dtype: DType,
        a: BasicValueEnum<'c>,
        b: BasicValueEnum<'c>,
    ) -> E<BasicValueEnum<'c>> {
        Ok(match (kind, dtype.is_float()) {
            (ReduceKind::Sum, true) => self.b.build_float_add(a.into_float_value(), b.into_float_value(), "")?.into(),
            (ReduceKind::Sum, false) => self.b.build_int_add(a.into_int_value(), b.into_int_value(), "")?.into(),
            (ReduceKind::Max, true) => self.intrinsic("llvm.maximum", &[self.reg_type(dtype)], &[a, b])?,
            (ReduceKind::Max, false) => self.intrinsic("llvm.smax", &[self.reg_type(dtype)], &[a, b])?,
        })
    }

    /// Calls an LLVM intrinsic overloaded on `types`.
    pub fn intrinsic(
        &self,
        name: &str,
        types: &[BasicTypeEnum<'c>],
        args: &[BasicValueEnum<'c>],
    ) -> E<BasicValueEnum<'c>> {
        let Some(intrinsic) = inkwell::intrinsics::Intrinsic::find(name) else {
            return Err(PtxError::Llvm(format!("LLVM 19 has no intrinsic {name}")));
        };
        let Some(f) = intrinsic.get_declaration(self.module, types) else {
            return Err(PtxError::Llvm(format!("no declaration of {name} for {types:?}")));
        };
        self.call(f, args)
    }

    pub fn call(&self, f: FunctionValue<'c>, args: &[BasicValueEnum<'c>]) -> E<BasicValueEnum<'c>> {
        let args: Vec<BasicMetadataValueEnum> = args.iter().map(|a| (*a).into()).collect();
        let site = self.b.build_call(f, &args, "")?;
        match site.try_as_basic_value() {
            inkwell::values::ValueKind::Basic(v) => Ok(v),
            inkwell::values::ValueKind::Instruction(_) => Ok(self.i32(0).into()),
        }
    }

    /// A function of the emulation runtime, declared on first use.
    pub fn runtime(
        &self,
        name: &str,
        ret: Option<BasicTypeEnum<'c>>,
        params: &[BasicTypeEnum<'c>],
    ) -> FunctionValue<'c> {
        if let Some(f) = self.module.get_function(name) {
            return f;
        }
        let params: Vec<BasicMetadataTypeEnum> = params.iter().map(|p| (*p).into()).collect();
        let ty = match ret {
            Some(r) => r.fn_type(&params, false),
            None => self.cx.void_type().fn_type(&params, false),
        };
        self.module.add_function(name, ty, Some(Linkage::External))
    }

    // ----- the leaves that differ between flavors -----

    /// A special register as an i64.
    pub fn sreg(&self, r: Sreg) -> E<IntValue<'c>> {
        let i32t = self.cx.i32_type();
        let v = match self.flavor {
            Flavor::Device => {
                let name = match r {
                    Sreg::TidX => "llvm.nvvm.read.ptx.sreg.tid.x",
                    Sreg::TidY => "llvm.nvvm.read.ptx.sreg.tid.y",
                    Sreg::NtidX => "llvm.nvvm.read.ptx.sreg.ntid.x",
                    Sreg::CtaidX => "llvm.nvvm.read.ptx.sreg.ctaid.x",
                    Sreg::CtaidY => "llvm.nvvm.read.ptx.sreg.ctaid.y",
                    Sreg::CtaidZ => "llvm.nvvm.read.ptx.sreg.ctaid.z",
                    Sreg::NctaidX => "llvm.nvvm.read.ptx.sreg.nctaid.x",
                };
                self.intrinsic(name, &[], &[])?
            }
            Flavor::Host => {
                let f = self.runtime("kiln_emu_sreg", Some(i32t.into()), &[i32t.into()]);
                self.call(f, &[self.i32(r as i32).into()])?
            }
        };
        Ok(self.b.build_int_z_extend(v.into_int_value(), self.cx.i64_type(), "")?)
    }

    /// Waits until every thread of the block arrives.
    pub fn barrier(&self) -> E<()> {
        match self.flavor {
            Flavor::Device => self.intrinsic("llvm.nvvm.barrier0", &[], &[])?,
            Flavor::Host => self.call(self.runtime("kiln_emu_barrier", None, &[]), &[])?,
        };
        Ok(())
    }

    /// The i32 `v` of another lane of the warp: `Down`, the lane `delta`
    /// above this one (this lane's own past the warp's end); `Xor`, the
    /// lane whose index differs from this one's by the bits of `delta`.
    pub fn shuffle_i32(&self, v: IntValue<'c>, delta: u32, how: Shuffle) -> E<IntValue<'c>> {
        let i32t = self.cx.i32_type();
        let (intrinsic, emulation) = match how {
            Shuffle::Down => ("llvm.nvvm.shfl.sync.down.i32", "kiln_emu_shfl_down"),
            Shuffle::Xor => ("llvm.nvvm.shfl.sync.bfly.i32", "kiln_emu_shfl_xor"),
        };
        let r = match self.flavor {
            Flavor::Device => self.intrinsic(
                intrinsic,
                &[],
                &[self.i32(-1).into(), v.into(), self.i32(delta as i32).into(), self.i32(0x1f).into()],
            )?,
            Flavor::Host => {
                let f = self.runtime(emulation, Some(i32t.into()), &[i32t.into(), i32t.into()]);
                self.call(f, &[v.into(), self.i32(delta as i32).into()])?
            }
        };
        Ok(r.into_int_value())
    }

    /// A shared-memory array of `len` elements of `ty` for this function.
    pub fn shared_array(&self, ty: BasicTypeEnum<'c>, len: u32) -> PointerValue<'c> {
        let array = ty.array_type(len);
        let space = match self.flavor {
            Flavor::Device => Some(AddressSpace::from(SHARED)),
            Flavor::Host => None,
        };
        let name =
            format!("{}_shared{}", self.function.get_name().to_string_lossy(), self.module.get_globals().count());
        let global = self.module.add_global(array, space, &name);
        global.set_linkage(Linkage::Internal);
        global.set_initializer(&array.get_undef());
        global.set_alignment(8);
        global.as_pointer_value()
    }

    /// An approximate f32 function of the GPU's special function unit:
    /// `ex2`, `lg2`, `sin` or `cos` (the host computes them exactly).
    pub fn special(&self, name: &str, x: BasicValueEnum<'c>) -> E<BasicValueEnum<'c>> {
        let f32t: BasicTypeEnum = self.cx.f32_type().into();
        match self.flavor {
            Flavor::Device => self.intrinsic(&format!("llvm.nvvm.{name}.approx.f"), &[], &[x]),
            Flavor::Host => self.call(self.runtime(&format!("kiln_emu_{name}"), Some(f32t), &[f32t]), &[x]),
        }
    }

    // ----- block reductions -----

    fn block_reduce(
        &mut self,
        accs: &[(AccId, DType, ReduceKind)],
        loops: &[(VarId, Size)],
        body: &[KStmt],
        tail: &[KStmt],
    ) -> E<()> {
        let warps = launch::BLOCK / 32;
        for (acc, dtype, kind) in accs {
            self.stmt(&KStmt::AccInit { acc: *acc, dtype: *dtype, kind: *kind })?;
        }
        let tid = self.sreg(Sreg::TidX)?;
        let ntid = self.sreg(Sreg::NtidX)?;
        self.strided(loops, tid, ntid, |e| e.block(body))?;
        let shared = self.shared_array(self.cx.i64_type().into(), warps * accs.len() as u32);
        let lane = self.b.build_and(tid, self.i64(31), "lane")?;
        let warp = self.b.build_right_shift(tid, self.i64(5), false, "warp")?;
        let lane0 = self.b.build_int_compare(IntPredicate::EQ, lane, self.i64(0), "")?;
        // Each warp's partials to lane 0, then to shared memory.
        for (k, (acc, dtype, kind)) in accs.iter().enumerate() {
            let (slot, ..) = self.accs[acc];
            let v = self.b.build_load(self.reg_type(*dtype), slot, "")?;
            let v = self.warp_reduce(v, *dtype, *kind)?;
            let (dtype, shared) = (*dtype, shared);
            let index = self.b.build_int_add(self.i64(i64::from(warps) * k as i64), warp, "")?;
            self.when(lane0, |e| {
                let at = unsafe { e.b.build_in_bounds_gep(e.cx.i64_type(), shared, &[index], "")? };
                e.b.build_store(at, e.to_memory(v, dtype)?)?;
                Ok(())
            })?;
        }
        self.barrier()?;
        // Warp 0 reduces the warps' partials; thread 0 runs the tail.
        let warp0 = self.b.build_int_compare(IntPredicate::EQ, warp, self.i64(0), "")?;
        let accs = accs.to_vec();
        let tail = tail.to_vec();
        self.when(warp0, |e| {
            let present = e.b.build_int_compare(IntPredicate::ULT, lane, e.i64(i64::from(warps)), "")?;
            for (k, (acc, dtype, kind)) in accs.iter().enumerate() {
                let index = e.b.build_int_add(e.i64(i64::from(warps) * k as i64), lane, "")?;
                let index = e.b.build_select(present, index, e.i64(0), "")?.into_int_value();
                let at = unsafe { e.b.build_in_bounds_gep(e.cx.i64_type(), shared, &[index], "")? };
                let partial = e.b.build_load(e.reg_type(*dtype), at, "")?;
                let v = e.b.build_select(present, partial, e.identity(*dtype, *kind)?, "")?;
                let v = e.warp_reduce(v, *dtype, *kind)?;
                e.b.build_store(e.accs[acc].0, v)?;
            }
            let thread0 = e.b.build_int_compare(IntPredicate::EQ, lane, e.i64(0), "")?;
            e.when(thread0, |e| e.block(&tail))
        })
    }

    /// One row's body run by a warp (see `Mapping::WarpRows`).
    fn warp_row(&mut self, body: &[KStmt], lane: IntValue<'c>) -> E<()> {
        let mut declared = Vec::new();
        for s in body {
            match s {
                KStmt::AccInit { acc, dtype, kind } => {
                    declared.push((*acc, *dtype, *kind));
                    self.stmt(s)?;
                }
                KStmt::For { var, extent, body: inner, .. } => {
                    let reduced = launch::reduced_accs(s, &declared);
                    if reduced.is_empty() {
                        let var = *var;
                        self.range(lane, self.size(extent)?, self.i64(32), |e, i| {
                            e.vars.insert(var, i);
                            e.block(inner)
                        })?;
                        continue;
                    }
                    let (loops, innermost) = perfect_nest_of(s);
                    self.strided(&loops, lane, self.i64(32), |e| e.block(innermost))?;
                    for (acc, dtype, kind) in reduced {
                        let slot = self.accs[&acc].0;
                        let v = self.b.build_load(self.reg_type(dtype), slot, "")?;
                        let v = self.warp_reduce_to_all(v, dtype, kind)?;
                        self.b.build_store(slot, v)?;
                    }
                }
                _ => {
                    let first = self.b.build_int_compare(IntPredicate::EQ, lane, self.i64(0), "")?;
                    self.when(first, |e| e.stmt(s))?;
                }
            }
        }
        Ok(())
    }

    /// The reduction of `v` over the warp, in every lane (butterfly).
    fn warp_reduce_to_all(&self, v: BasicValueEnum<'c>, dtype: DType, kind: ReduceKind) -> E<BasicValueEnum<'c>> {
        let mut v = v;
        for mask in [16, 8, 4, 2, 1] {
            let other = self.shuffle(v, dtype, mask, Shuffle::Xor)?;
            v = self.combine(kind, dtype, v, other)?;
        }
        Ok(v)
    }

    /// The reduction of `v` over the warp, valid in lane 0.
    fn warp_reduce(&self, v: BasicValueEnum<'c>, dtype: DType, kind: ReduceKind) -> E<BasicValueEnum<'c>> {
        let mut v = v;
        for delta in [16, 8, 4, 2, 1] {
            let other = self.shuffle(v, dtype, delta, Shuffle::Down)?;
            v = self.combine(kind, dtype, v, other)?;
        }
        Ok(v)
    }

    fn shuffle(&self, v: BasicValueEnum<'c>, dtype: DType, delta: u32, how: Shuffle) -> E<BasicValueEnum<'c>> {
        let (i32t, i64t) = (self.cx.i32_type(), self.cx.i64_type());
        match dtype {
            DType::I32 => Ok(self.shuffle_i32(v.into_int_value(), delta, how)?.into()),
            DType::F32 => {
                let bits = self.b.build_bit_cast(v, i32t, "")?.into_int_value();
                let r = self.shuffle_i32(bits, delta, how)?;
                Ok(self.b.build_bit_cast(r, self.cx.f32_type(), "")?)
            }
            DType::I64 | DType::F64 => {
                let bits = self.b.build_bit_cast(v, i64t, "")?.into_int_value();
                let low = self.b.build_int_truncate(bits, i32t, "")?;
                let high = self.b.build_right_shift(bits, self.i64(32), false, "")?;
                let high = self.b.build_int_truncate(high, i32t, "")?;
                let (low, high) = (self.shuffle_i32(low, delta, how)?, self.shuffle_i32(high, delta, how)?);
                let low = self.b.build_int_z_extend(low, i64t, "")?;
                let high = self.b.build_int_z_extend(high, i64t, "")?;
                let high = self.b.build_left_shift(high, self.i64(32), "")?;
                let r = self.b.build_or(low, high, "")?;
                Ok(self.b.build_bit_cast(r, self.reg_type(dtype), "")?)
            }
            DType::Bool => self.unsupported("a reduction of bools"),
        }
    }

    /// `a < b` on floats, ordered: used by the math routines.
    pub fn float_less(&self, a: BasicValueEnum<'c>, b: BasicValueEnum<'c>) -> E<IntValue<'c>> {
        Ok(self.b.build_float_compare(FloatPredicate::OLT, a.into_float_value(), b.into_float_value(), "")?)
    }
}

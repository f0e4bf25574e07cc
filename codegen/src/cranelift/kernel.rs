//! One kernel to one Cranelift function: the entry block loads the buffer
//! pointers, statements become counted loops, stores, accumulator updates and
//! runtime calls, and the function returns its status.

use std::collections::{BTreeMap, HashMap};

use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{
    AbiParam, Function, InstBuilder, MemFlagsData, StackSlot, StackSlotData, StackSlotKind, Type, Value, types,
};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext, Variable};

use cranelift_module::{Linkage, Module};
use kiln_ir::kernel::{
    AccId, Affine, BufferId, KExpr, KStmt, Kernel, MatrixRef, Plan, RuntimeCall, Size, VarId, gemm_epilogue,
};
use kiln_ir::{BinaryOp, Bindings, DType, ReduceKind, Symbol, UnaryOp};

/// The machine type of a dtype's values (bools are bytes, 0 or 1).
pub fn machine_type(dtype: DType) -> Type {
    match dtype {
        DType::F32 => types::F32,
        DType::F64 => types::F64,
        DType::I32 => types::I32,
        DType::I64 => types::I64,
        DType::Bool => types::I8,
    }
}

pub struct KernelBuilder<'a, 'f> {
    pub b: FunctionBuilder<'f>,
    pub module: &'a mut dyn Module,
    pub plan: &'a Plan,
    pub pointer: Type,
    /// The pointer of each buffer the kernel touches, by buffer id.
    buffers: Vec<Option<Value>>,
    /// The value of each of the plan's size symbols, loaded in the entry
    /// block from the sizes array the kernel is called with.
    sizes: Vec<(Symbol, Value)>,
    vars: BTreeMap<VarId, Variable>,
    accs: BTreeMap<AccId, (Variable, DType, ReduceKind)>,
    status: Variable,
    /// Index parts hoisted out of the running loops, innermost last.
    pub hoisted: Vec<super::hoist::Hoisted>,
    /// Whether the host has fused multiply-add (`a * b + c` becomes one
    /// instruction, rounded once).
    pub fma: bool,
    /// Whether the target is x86-64 (its truncating vector conversion is used).
    pub x86: bool,
    /// The 32-bit seeds of each random key the kernel cannot change, by key
    /// and stream (`invariant_keys`): computed once before the loops and
    /// kept in a stack slot, which the loops load (values would not do:
    /// Cranelift rematerializes the seeds' first exclusive-or with a
    /// constant, and the whole chain after it, at every use).
    pub seeds: HashMap<(KExpr, u64), StackSlot>,
    /// The accumulators a column reduction keeps in four lanes, and the
    /// variables holding them (`vector.rs`, `widened_columns`).
    pub wide_accs: Vec<(AccId, Variable)>,
}

pub type Gen<T> = Result<T, String>;

/// How far a loop runs: its whole extent, or the `[lo, hi)` range the
/// function was called with (the split outer loop).
#[derive(Clone, Copy)]
pub enum Bound<'a> {
    Extent(&'a Size),
    Range(Value, Value),
}

/// The loop a kernel's callers may split across threads: the kernel's only
/// statement, when it is a parallel loop.
pub fn split_loop(kernel: &Kernel) -> Option<(VarId, u32, &[KStmt])> {
    match kernel.body.as_slice() {
        [KStmt::For { var, parallel: true, vector, body, .. }] => Some((*var, *vector, body)),
        _ => None,
    }
}

/// How many parts the runtime may split a kernel into (each call runs
/// `[lo, hi)` of them): its parallel loop's iterations when it is one, the
/// product's rows when it is a GEMM with its epilogue (`gemm_epilogue`).
pub fn split_extent(kernel: &Kernel) -> Option<Size> {
    if let (Some(_), Some(KStmt::For { extent, .. })) = (split_loop(kernel), kernel.body.first()) {
        return Some(extent.clone());
    }
    gemm_epilogue(kernel).map(|e| e.m.clone())
}

/// A size's value at `bindings` (0 when it has none: no work, no split).
pub fn value_at(size: &Size, bindings: &Bindings) -> u64 {
    size.eval(bindings).and_then(|n| u64::try_from(n).ok()).unwrap_or(0)
}

/// The work a statement list does at `bindings`, for deciding whether to
/// split it across threads: each statement counts the operations of its
/// expressions (a transcendental function or random bits as 10, a GEMM's
/// multiply-adds as 1/64 each), times the iterations of the loops around it.
pub fn work(body: &[KStmt], bindings: &Bindings) -> u64 {
    let at = |s: &Size| value_at(s, bindings);
    body.iter()
        .map(|s| match s {
            KStmt::For { extent, body, .. } => at(extent).saturating_mul(work(body, bindings).max(1)),
            KStmt::Store { value, .. } | KStmt::AccUpdate { value, .. } => 1 + operations(value),
            KStmt::ScatterAdd { value, .. } => 2 + operations(value),
            // A GEMM's multiply-adds count 1/64 each: the runtime splits a
            // product across threads from 2^25 of them (`PARALLEL_GEMM`),
            // kernels from 2^19 operations (`PARALLEL_WORK`), so a GEMM with
            // its epilogue splits by rows exactly when the GEMM alone would.
            KStmt::Call(RuntimeCall::Gemm { batch, m, n, k, .. }) => {
                [batch, m, n, k].into_iter().fold(1u64, |w, s| w.saturating_mul(at(s))) / 64
            }
            _ => 1,
        })
        .fold(0u64, u64::saturating_add)
}

/// The operations an expression costs, roughly.
fn operations(e: &KExpr) -> u64 {
    match e {
        KExpr::Const { .. } | KExpr::Index { .. } | KExpr::Acc(_) => 0,
        KExpr::Load { .. } => 1,
        KExpr::Gather { index, .. } => 2 + operations(index),
        KExpr::RandomBits { key, .. } => 10 + operations(key),
        KExpr::Unary(op, x) => {
            let own = match op {
                UnaryOp::Exp | UnaryOp::Log | UnaryOp::Tanh | UnaryOp::Sin | UnaryOp::Cos => 10,
                _ => 1,
            };
            own + operations(x)
        }
        KExpr::Cast(_, x) => 1 + operations(x),
        KExpr::Binary(op, a, b) => (if *op == BinaryOp::Pow { 10 } else { 1 }) + operations(a) + operations(b),
        KExpr::Compare(_, a, b) => 1 + operations(a) + operations(b),
        KExpr::Select(c, a, b) => 1 + operations(c) + operations(a) + operations(b),
    }
}

/// The keys and streams of the 32-bit random bits in `kernel` whose key is
/// the same at every iteration: a constant, or an element at a fixed index
/// of a buffer the kernel does not write. Their seeds are computed once, in
/// the entry block, instead of at every element.
fn invariant_keys(kernel: &Kernel) -> Vec<(KExpr, u64)> {
    let mut stores = Vec::new();
    let mut found = Vec::new();
    for s in &kernel.body {
        s.walk(&mut |s| match s {
            KStmt::Store { buffer, .. } | KStmt::ScatterAdd { buffer, .. } => stores.push(*buffer),
            KStmt::Call(RuntimeCall::Gemm { c, .. }) => stores.push(c.buffer),
            KStmt::For { .. } | KStmt::AccInit { .. } | KStmt::AccUpdate { .. } => {}
        });
        s.walk_exprs(&mut |e| {
            if let KExpr::RandomBits { key, stream, dtype: DType::I32, .. } = e {
                found.push(((**key).clone(), *stream));
            }
        });
    }
    let mut invariant = Vec::new();
    for (key, stream) in found {
        let fixed = match &key {
            KExpr::Const { .. } => true,
            KExpr::Load { buffer, index } => index.terms.is_empty() && !stores.contains(buffer),
            _ => false,
        };
        if fixed && !invariant.contains(&(key.clone(), stream)) {
            invariant.push((key, stream));
        }
    }
    invariant
}

/// Builds the body of `func` from `kernel`.
pub fn build(module: &mut dyn Module, func: &mut Function, plan: &Plan, kernel: &Kernel) -> Gen<()> {
    let mut context = FunctionBuilderContext::new();
    let pointer = module.target_config().pointer_type();
    let config = module.target_config();
    let mut b = FunctionBuilder::new(func, &mut context);
    let entry = b.create_block();
    b.append_block_params_for_function_params(entry);
    b.switch_to_block(entry);
    b.seal_block(entry);
    let array = b.block_params(entry)[0];
    let size_array = b.block_params(entry)[1];
    let (lo, hi) = (b.block_params(entry)[2], b.block_params(entry)[3]);
    // Only the pointers of the buffers this kernel touches: a plan of
    // thousands of buffers (an unrolled recurrence) would otherwise load
    // them all in every kernel.
    let mut buffers = vec![None; plan.buffers.len()];
    for id in kiln_ir::kernel::buffers_of(&kernel.body) {
        let i = id.0 as usize;
        if i < buffers.len() {
            let offset = (i * pointer.bytes() as usize) as i32;
            buffers[i] = Some(b.ins().load(pointer, MemFlagsData::trusted(), array, offset));
        }
    }
    let sizes = plan
        .symbols
        .iter()
        .enumerate()
        .map(|(i, s)| (s.symbol.clone(), b.ins().load(types::I64, MemFlagsData::trusted(), size_array, (i * 8) as i32)))
        .collect();
    let status = b.declare_var(types::I32);
    let zero = b.ins().iconst(types::I32, 0);
    b.def_var(status, zero);
    let fma = module.isa().isa_flags().iter().any(|f| f.name == "has_fma" && f.as_bool() == Some(true));
    let x86 = module.isa().name() == "x64";
    let mut k = KernelBuilder {
        b,
        module,
        plan,
        pointer,
        buffers,
        sizes,
        vars: BTreeMap::new(),
        accs: BTreeMap::new(),
        status,
        hoisted: Vec::new(),
        fma,
        x86,
        seeds: HashMap::new(),
        wide_accs: Vec::new(),
    };
    for (key, stream) in invariant_keys(kernel) {
        let value = k.expr(&key)?;
        let (s1, s2) = k.seeds32(value, stream);
        let slot = k.b.create_sized_stack_slot(StackSlotData::new(StackSlotKind::ExplicitSlot, 8, 2));
        k.b.ins().stack_store(k.pointer, s1, slot, 0);
        k.b.ins().stack_store(k.pointer, s2, slot, 4);
        k.seeds.insert((key, stream), slot);
    }
    match (split_loop(kernel), gemm_epilogue(kernel)) {
        (Some((var, vector, body)), _) => k.any_loop(var, vector, true, Bound::Range(lo, hi), body)?,
        (None, Some(e)) => {
            // Rows [lo, hi) of the product, then their iterations of the loop.
            let RuntimeCall::Gemm { m, n, k: depth, a, b, c, .. } = e.call;
            k.gemm_call(&Size::constant(1), [m, n, depth], a, b, c, Some((lo, hi)))?;
            let first = k.scaled(lo, &e.per_row);
            let end = k.scaled(hi, &e.per_row);
            k.any_loop(e.var, e.vector, true, Bound::Range(first, end), e.body)?
        }
        _ => k.block(&kernel.body)?,
    }
    let result = k.b.use_var(k.status);
    k.b.ins().return_(&[result]);
    k.b.seal_all_blocks();
    k.b.finalize(config);
    Ok(())
}

impl KernelBuilder<'_, '_> {
    fn block(&mut self, body: &[KStmt]) -> Gen<()> {
        body.iter().try_for_each(|s| self.stmt(s))
    }

    fn stmt(&mut self, s: &KStmt) -> Gen<()> {
        match s {
            KStmt::For { var, extent, parallel, vector, body } => {
                self.any_loop(*var, *vector, *parallel, Bound::Extent(extent), body)
            }
            KStmt::Store { buffer, index, value } => {
                let v = self.expr(value)?;
                let address = self.address(*buffer, index)?;
                self.b.ins().store(MemFlagsData::trusted(), v, address, 0);
                Ok(())
            }
            KStmt::ScatterAdd { buffer, base, index, stride, bound, value } => {
                let v = self.expr(value)?;
                let at = self.checked_index(base, index, stride, bound)?;
                let dtype = self.dtype(*buffer)?;
                let address = self.element(*buffer, at)?;
                let old = self.b.ins().load(machine_type(dtype), MemFlagsData::trusted(), address, 0);
                let sum = if dtype.is_float() { self.b.ins().fadd(old, v) } else { self.b.ins().iadd(old, v) };
                self.b.ins().store(MemFlagsData::trusted(), sum, address, 0);
                Ok(())
            }
            KStmt::AccInit { acc, dtype, kind } => {
                let var = self.b.declare_var(machine_type(*dtype));
                let identity = match (kind, dtype) {
                    (ReduceKind::Sum, DType::F32) => self.b.ins().f32const(0.0),
                    (ReduceKind::Sum, DType::F64) => self.b.ins().f64const(0.0),
                    (ReduceKind::Max, DType::F32) => self.b.ins().f32const(f32::NEG_INFINITY),
                    (ReduceKind::Max, DType::F64) => self.b.ins().f64const(f64::NEG_INFINITY),
                    (ReduceKind::Sum, d) => self.b.ins().iconst(machine_type(*d), 0),
                    (ReduceKind::Max, DType::I32) => self.b.ins().iconst(types::I32, i64::from(i32::MIN)),
                    (ReduceKind::Max, d) => self.b.ins().iconst(machine_type(*d), i64::MIN),
                };
                self.b.def_var(var, identity);
                self.accs.insert(*acc, (var, *dtype, *kind));
                Ok(())
            }
            KStmt::AccUpdate { acc, value } => {
                let (var, dtype, kind) = *self.accs.get(acc).ok_or_else(|| format!("{acc} is not declared"))?;
                if let (ReduceKind::Sum, true, KExpr::Binary(BinaryOp::Mul, x, y)) = (kind, dtype.is_float(), value) {
                    let (x, y) = (self.expr(x)?, self.expr(y)?);
                    let old = self.b.use_var(var);
                    let new = self.multiply_add(x, y, old);
                    self.b.def_var(var, new);
                    return Ok(());
                }
                let v = self.expr(value)?;
                let old = self.b.use_var(var);
                let new = match (kind, dtype.is_float()) {
                    (ReduceKind::Sum, true) => self.b.ins().fadd(old, v),
                    (ReduceKind::Sum, false) => self.b.ins().iadd(old, v),
                    (ReduceKind::Max, true) => self.b.ins().fmax(old, v),
                    (ReduceKind::Max, false) => self.b.ins().smax(old, v),
                };
                self.b.def_var(var, new);
                Ok(())
            }
            KStmt::Call(RuntimeCall::Gemm { batch, m, n, k, a, b, c }) => {
                self.gemm_call(batch, [m, n, k], a, b, c, None)
            }
        }
    }

    /// `x * y + z` for floats (scalars or vectors): one fused instruction
    /// when the host has FMA, else a multiply and an add.
    pub fn multiply_add(&mut self, x: Value, y: Value, z: Value) -> Value {
        if self.fma {
            self.b.ins().fma(x, y, z)
        } else {
            let product = self.b.ins().fmul(x, y);
            self.b.ins().fadd(product, z)
        }
    }

    /// The dtype and kind of a declared accumulator.
    pub fn acc_kind(&self, acc: AccId) -> Option<(DType, ReduceKind)> {
        self.accs.get(&acc).map(|&(_, d, k)| (d, k))
    }

    /// The variable of a declared accumulator.
    pub fn acc_var(&self, acc: AccId) -> Option<Variable> {
        self.accs.get(&acc).map(|a| a.0)
    }

    /// A loop, widened to vectors when it asks for four lanes and can be.
    fn any_loop(&mut self, var: VarId, vector: u32, parallel: bool, bound: Bound, body: &[KStmt]) -> Gen<()> {
        if vector == 4 && self.widenable(var, body) {
            self.widened_loop(var, bound, body)
        } else if vector == 4 && self.widenable_reduction(var, body) {
            self.widened_reduction(var, bound, body)
        } else if (parallel || vector == 4) && self.widenable_columns(var, body) {
            self.widened_columns(var, bound, body)
        } else {
            self.counted_loop(var, bound, body)
        }
    }

    pub fn stmt_list(&mut self, body: &[KStmt]) -> Gen<()> {
        self.block(body)
    }

    pub fn bind_var(&mut self, var: VarId, counter: Variable) {
        self.vars.insert(var, counter);
    }

    pub fn unbind_var(&mut self, var: VarId) {
        self.vars.remove(&var);
    }

    fn counted_loop(&mut self, var: VarId, bound: Bound, body: &[KStmt]) -> Gen<()> {
        if let Bound::Extent(extent) = bound
            && let Some(trips) = extent.as_const().filter(|&t| unrollable(t, body))
        {
            return self.unrolled_loop(var, trips, body);
        }
        self.counted_loop_with(var, bound, body, |k| k.block(body))
    }

    /// A loop of `trips` iterations written out: the body once per value of
    /// `var`, a constant each time, so the index arithmetic folds and no
    /// counter, compare or branch is left (an im2row's 3x3 window).
    fn unrolled_loop(&mut self, var: VarId, trips: i64, body: &[KStmt]) -> Gen<()> {
        let counter = self.b.declare_var(types::I64);
        self.vars.insert(var, counter);
        for trip in 0..trips {
            let value = self.b.ins().iconst(types::I64, trip);
            self.b.def_var(counter, value);
            self.block(body)?;
        }
        self.vars.remove(&var);
        Ok(())
    }

    /// A scalar loop over `var` whose body `emit` generates; `body` is what
    /// it computes, for the index parts hoisted before the loop.
    pub fn counted_loop_with(
        &mut self,
        var: VarId,
        bound: Bound,
        body: &[KStmt],
        emit: impl FnOnce(&mut Self) -> Gen<()>,
    ) -> Gen<()> {
        let counter = self.b.declare_var(types::I64);
        let start = match bound {
            Bound::Extent(_) => self.b.ins().iconst(types::I64, 0),
            Bound::Range(lo, _) => lo,
        };
        self.b.def_var(counter, start);
        self.enter_loop(body)?;
        let (header, inside, exit) = (self.b.create_block(), self.b.create_block(), self.b.create_block());
        self.b.ins().jump(header, &[]);
        self.b.switch_to_block(header);
        let i = self.b.use_var(counter);
        let more = match bound {
            Bound::Extent(extent) => match extent.as_const() {
                Some(extent) => self.b.ins().icmp_imm_s(IntCC::SignedLessThan, i, extent),
                None => {
                    let extent = self.size(extent);
                    self.b.ins().icmp(IntCC::SignedLessThan, i, extent)
                }
            },
            Bound::Range(_, hi) => self.b.ins().icmp(IntCC::SignedLessThan, i, hi),
        };
        self.b.ins().brif(more, inside, &[], exit, &[]);
        self.b.switch_to_block(inside);
        self.b.seal_block(inside);
        self.vars.insert(var, counter);
        emit(self)?;
        self.vars.remove(&var);
        let i = self.b.use_var(counter);
        let next = self.b.ins().iadd_imm_s(i, 1);
        self.b.def_var(counter, next);
        self.b.ins().jump(header, &[]);
        self.b.seal_block(header);
        self.b.switch_to_block(exit);
        self.b.seal_block(exit);
        self.leave_loop();
        Ok(())
    }

    /// The variable holding the kernel's status.
    pub fn status(&self) -> Variable {
        self.status
    }

    pub fn dtype(&self, buffer: BufferId) -> Gen<DType> {
        self.plan.buffer(buffer).map(|b| b.dtype).ok_or_else(|| format!("{buffer} is not declared"))
    }

    /// The current value of a bound loop variable.
    pub fn var_value(&mut self, v: VarId) -> Gen<Value> {
        let var = *self.vars.get(&v).ok_or_else(|| format!("{v} is not in scope"))?;
        Ok(self.b.use_var(var))
    }

    /// The value of a size: a constant, or computed from the size symbols'
    /// values (Cranelift's optimizer shares and hoists the arithmetic).
    pub fn size(&mut self, s: &Size) -> Value {
        let mut sum = self.b.ins().iconst(types::I64, s.constant_term());
        for (monomial, coefficient) in s.terms() {
            let mut product = self.b.ins().iconst(types::I64, *coefficient);
            for symbol in monomial {
                // Every symbol of a verified plan is declared.
                let value = self.sizes.iter().find(|(name, _)| name == symbol).map(|(_, v)| *v);
                let value = value.unwrap_or_else(|| self.b.ins().iconst(types::I64, 0));
                product = self.b.ins().imul(product, value);
            }
            sum = self.b.ins().iadd(sum, product);
        }
        sum
    }

    /// `value * s`: a multiplication by an immediate when `s` is a constant
    /// (none when it is 1).
    pub fn scaled(&mut self, value: Value, s: &Size) -> Value {
        match s.as_const() {
            Some(1) => value,
            Some(c) => self.b.ins().imul_imm_s(value, c),
            None => {
                let factor = self.size(s);
                self.b.ins().imul(value, factor)
            }
        }
    }

    /// The loop variables bound here.
    pub fn bound_vars(&self) -> std::collections::BTreeSet<VarId> {
        self.vars.keys().copied().collect()
    }

    /// The address of element `index` (an i64 value) of `buffer`.
    pub fn element(&mut self, buffer: BufferId, index: Value) -> Gen<Value> {
        let size = self.dtype(buffer)?.size_bytes() as i64;
        let base = self
            .buffers
            .get(buffer.0 as usize)
            .copied()
            .flatten()
            .ok_or_else(|| format!("{buffer} is not declared"))?;
        let offset = self.b.ins().imul_imm_s(index, size);
        Ok(self.b.ins().iadd(base, offset))
    }

    pub fn address(&mut self, buffer: BufferId, index: &Affine) -> Gen<Value> {
        let i = self.affine(index)?;
        self.element(buffer, i)
    }

    /// `base + stride * index` with `index` computed; an index outside
    /// `0..bound` sets the status to 1 and is replaced by 0, so the access
    /// stays inside the buffer (the verifier proved `base + stride * 0..bound`).
    pub fn checked_index(&mut self, base: &Affine, index: &KExpr, stride: &Size, bound: &Size) -> Gen<Value> {
        let raw = self.expr(index)?;
        let i = if self.b.func.dfg.value_type(raw) == types::I64 { raw } else { self.b.ins().sextend(types::I64, raw) };
        let in_range = match bound.as_const() {
            Some(bound) => self.b.ins().icmp_imm_s(IntCC::UnsignedLessThan, i, bound),
            None => {
                let bound = self.size(bound);
                self.b.ins().icmp(IntCC::UnsignedLessThan, i, bound)
            }
        };
        let zero = self.b.ins().iconst(types::I64, 0);
        let safe = self.b.ins().select(in_range, i, zero);
        let status = self.b.use_var(self.status);
        let one = self.b.ins().iconst(types::I32, super::STATUS_INDEX_OUT_OF_RANGE);
        let flagged = self.b.ins().select(in_range, status, one);
        self.b.def_var(self.status, flagged);
        let scaled = self.scaled(safe, stride);
        let base = self.affine(base)?;
        Ok(self.b.ins().iadd(base, scaled))
    }

    pub fn accumulator(&mut self, acc: AccId) -> Gen<Value> {
        let (var, _, _) = *self.accs.get(&acc).ok_or_else(|| format!("{acc} is not declared"))?;
        Ok(self.b.use_var(var))
    }

    /// Calls a runtime helper by name with `args`, returning its result.
    pub fn call(&mut self, name: &str, params: &[Type], returns: &[Type], args: &[Value]) -> Gen<Option<Value>> {
        let mut signature = self.module.make_signature();
        signature.params.extend(params.iter().map(|&t| AbiParam::new(t)));
        signature.returns.extend(returns.iter().map(|&t| AbiParam::new(t)));
        let id = self.module.declare_function(name, Linkage::Import, &signature).map_err(|e| e.to_string())?;
        let callee = self.module.declare_func_in_func(id, self.b.func);
        let call = self.b.ins().call(callee, args);
        Ok(self.b.inst_results(call).first().copied())
    }

    /// The GEMM of one product's rows `[lo, hi)` (all rows for `None`;
    /// `batch` products only whole).
    #[allow(clippy::too_many_arguments)]
    fn gemm_call(
        &mut self,
        batch: &Size,
        [m, n, k]: [&Size; 3],
        a: &MatrixRef,
        b: &MatrixRef,
        c: &MatrixRef,
        rows: Option<(Value, Value)>,
    ) -> Gen<()> {
        let dtype = self.dtype(c.buffer)?;
        let name = if dtype == DType::F32 { "kiln_gemm_f32" } else { "kiln_gemm_f64" };
        let mut args = Vec::new();
        for (mat, moves) in [(a, true), (b, false), (c, true)] {
            let mut offset = self.size(&mat.offset);
            if let (Some((lo, _)), true) = (rows, moves) {
                let skip = self.scaled(lo, &mat.row_stride);
                offset = self.b.ins().iadd(offset, skip);
            }
            args.push(self.element(mat.buffer, offset)?);
        }
        let rows = match rows {
            Some((lo, hi)) => self.b.ins().isub(hi, lo),
            None => self.size(m),
        };
        let batch = self.size(batch);
        args.push(batch);
        args.push(rows);
        for v in [n, k, &a.row_stride, &a.batch_stride, &a.col_stride, &b.row_stride, &b.batch_stride, &b.col_stride]
            .into_iter()
            .chain([&c.row_stride, &c.batch_stride])
        {
            let v = self.size(v);
            args.push(v);
        }
        let mut params = vec![self.pointer; 3];
        params.extend([types::I64; 12]);
        self.call(name, &params, &[], &args)?;
        Ok(())
    }
}

/// The most iterations a scalar loop of constant extent is written out for.
const UNROLL_TRIPS: i64 = 4;
/// The most statements (counted through nested loops, each loop's body
/// once per iteration) a written-out loop may become.
const UNROLL_STATEMENTS: i64 = 32;

/// Whether a scalar loop of `trips` iterations over `body` is written out:
/// few iterations, a body of stores, accumulator updates (a pooling
/// window's) and nested loops of constant extent only (no declarations,
/// scatters or calls), and not too much code in all. Written out, the
/// statements still run in the loop's order.
fn unrollable(trips: i64, body: &[KStmt]) -> bool {
    fn statements(body: &[KStmt]) -> Option<i64> {
        body.iter().try_fold(0i64, |total, s| {
            let count = match s {
                KStmt::Store { .. } | KStmt::AccUpdate { .. } => 1,
                KStmt::For { extent, body, .. } => extent.as_const()?.checked_mul(statements(body)?)?,
                _ => return None,
            };
            total.checked_add(count)
        })
    }
    (1..=UNROLL_TRIPS).contains(&trips)
        && statements(body).and_then(|n| n.checked_mul(trips)).is_some_and(|n| n <= UNROLL_STATEMENTS)
}

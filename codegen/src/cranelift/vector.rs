//! Widening loops marked `vector 4` to f32x4 (Cranelift's x64 backend
//! supports 128-bit vectors only).
//!
//! A reduction loop (one update of an f32 accumulator by a widenable value)
//! is register-blocked: four independent f32x4 accumulators, sixteen
//! elements per iteration, a fused multiply-add for a sum of products.
//!
//! A loop is widened when its body is one store of an f32 expression whose
//! loads and store move along the loop (coefficient 1: a vector load) or
//! stand still (coefficient 0: a scalar load splatted to every lane), built
//! from arithmetic Cranelift has vector forms of and selects whose
//! condition is a comparison of such values or a load of bools (a lane
//! mask either way); `exp` is computed in the
//! vector unit (`vector_exp`, within 2 ulp of the interpreter), the other
//! transcendental functions are called lane by lane. Anything else runs as scalar code. The widened
//! loop takes four elements per iteration and a scalar loop finishes the
//! remaining ones.

use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{Block, InstBuilder, MemFlagsData, Value, types};
use cranelift_frontend::Variable;
use kiln_ir::kernel::{AccId, Affine, BufferId, KExpr, KStmt, Size, VarId};
use kiln_ir::{BinaryOp, DType, Literal, ReduceKind, UnaryOp};

use super::kernel::{Bound, Gen, KernelBuilder};

/// Lanes of an f32 vector.
const LANES: i64 = 4;

/// The most elements a widened store loop of constant extent is written
/// out for (four vectors and three scalars at most).
const WRITTEN_OUT: i64 = 19;
/// Independent vector accumulators of a widened reduction: enough to hide
/// the latency of a vector add (4 cycles) behind the loads.
const ACCUMULATORS: usize = 4;

/// Memory flags for reinterpreting vector lanes (the lane order is fixed).
fn little_endian() -> MemFlagsData {
    MemFlagsData::new().with_endianness(cranelift_codegen::ir::Endianness::Little)
}

/// Whether `e` has one value for every `var` (a constant, or a load at an
/// index without `var`).
fn invariant(e: &KExpr, var: VarId) -> bool {
    match e {
        KExpr::Const { .. } => true,
        KExpr::Load { index, .. } => index.coefficient_is(var, 0),
        _ => false,
    }
}

impl KernelBuilder<'_, '_> {
    /// Whether a loop over `var` with `body` can be widened.
    pub fn widenable(&self, var: VarId, body: &[KStmt]) -> bool {
        match body {
            [KStmt::Store { buffer, index, value }] => {
                self.dtype(*buffer) == Ok(DType::F32) && index.coefficient_is(var, 1) && self.widenable_expr(var, value)
            }
            _ => false,
        }
    }

    fn widenable_expr(&self, var: VarId, e: &KExpr) -> bool {
        match e {
            KExpr::Load { buffer, index } => {
                self.dtype(*buffer) == Ok(DType::F32) && (index.coefficient_is(var, 0) || index.coefficient_is(var, 1))
            }
            KExpr::Const { dtype: DType::F32, value: Literal::Float(_) } => true,
            KExpr::Unary(op, x) => !matches!(op, UnaryOp::Sign | UnaryOp::Not) && self.widenable_expr(var, x),
            KExpr::Binary(op, a, b) => {
                !matches!(op, BinaryOp::And | BinaryOp::Or)
                    && self.widenable_expr(var, a)
                    && self.widenable_expr(var, b)
            }
            KExpr::Select(c, a, b) => {
                self.widenable_mask(var, c) && self.widenable_expr(var, a) && self.widenable_expr(var, b)
            }
            KExpr::Cast(DType::F32, x) => matches!(&**x,
                KExpr::RandomBits { dtype: DType::I32, key, counter, .. }
                    if counter.coefficient_is(var, 1) && invariant(key, var)),
            _ => false,
        }
    }

    /// Whether a bool expression can be computed as a lane mask: a
    /// comparison of widenable f32 values, or a load of bools.
    fn widenable_mask(&self, var: VarId, e: &KExpr) -> bool {
        match e {
            KExpr::Compare(_, a, b) => self.widenable_expr(var, a) && self.widenable_expr(var, b),
            KExpr::Load { buffer, index } => {
                self.dtype(*buffer) == Ok(DType::Bool) && (index.coefficient_is(var, 0) || index.coefficient_is(var, 1))
            }
            _ => false,
        }
    }

    /// Emits the loop over `var` four elements at a time, then a scalar loop
    /// for the rest; the body is one widenable store. A loop of constant
    /// extent up to `WRITTEN_OUT` is written out instead, vectors then
    /// scalars, with no counter or branch.
    pub fn widened_loop(&mut self, var: VarId, bound: Bound, body: &[KStmt]) -> Gen<()> {
        let [KStmt::Store { buffer, index, value }] = body else {
            return Err("only a single store can be widened".into());
        };
        if let Bound::Extent(extent) = bound
            && let Some(trips) = extent.as_const().filter(|&t| (1..=WRITTEN_OUT).contains(&t))
        {
            // Written out: four lanes at a time while four fit, then one.
            let counter = self.b.declare_var(types::I64);
            self.bind_var(var, counter);
            let mut at = 0;
            while at < trips {
                let start = self.b.ins().iconst(types::I64, at);
                self.b.def_var(counter, start);
                if at + LANES <= trips {
                    self.store_lanes(var, *buffer, index, value)?;
                    at += LANES;
                } else {
                    self.stmt_list(body)?;
                    at += 1;
                }
            }
            self.unbind_var(var);
            return Ok(());
        }
        self.four_at_a_time(var, bound, body, |k| k.store_lanes(var, *buffer, index, value))
    }

    /// A loop over `var` that runs `wide` (which computes `body` for the
    /// four elements from the loop variable's value on) while four fit,
    /// then `body` one element at a time for the rest.
    fn four_at_a_time(
        &mut self,
        var: VarId,
        bound: Bound,
        body: &[KStmt],
        wide: impl FnOnce(&mut Self) -> Gen<()>,
    ) -> Gen<()> {
        let (counter, end) = self.counter(bound);
        self.enter_loop(body)?;
        self.bind_var(var, counter);
        let (header, tail_header) = self.wide_steps(counter, end, LANES);
        wide(self)?;
        let i = self.b.use_var(counter);
        let next = self.b.ins().iadd_imm_s(i, LANES);
        self.b.def_var(counter, next);
        self.b.ins().jump(header, &[]);
        self.b.seal_block(header);

        self.scalar_rest(tail_header, counter, end, body)?;
        self.unbind_var(var);
        self.leave_loop();
        Ok(())
    }

    /// Stores `value` widened along `var` at `buffer[index]`, four lanes.
    fn store_lanes(&mut self, var: VarId, buffer: BufferId, index: &Affine, value: &KExpr) -> Gen<()> {
        let v = self.vector_expr(var, value)?;
        let address = self.address(buffer, index)?;
        self.b.ins().store(MemFlagsData::new().with_notrap(), v, address, 0);
        Ok(())
    }

    /// A loop counter starting at the bound's start, and the bound's end.
    fn counter(&mut self, bound: Bound) -> (Variable, Value) {
        let counter = self.b.declare_var(types::I64);
        let (start, end) = match bound {
            Bound::Extent(extent) => (self.b.ins().iconst(types::I64, 0), self.size(extent)),
            Bound::Range(lo, hi) => (lo, hi),
        };
        self.b.def_var(counter, start);
        (counter, end)
    }

    /// Opens a loop taking `step` elements while they all fit below `end`:
    /// jumps to its header, leaves the builder in its body, and returns the
    /// header (the body jumps back to it, then seals it) and the block
    /// reached when fewer than `step` elements remain.
    fn wide_steps(&mut self, counter: Variable, end: Value, step: i64) -> (Block, Block) {
        let (header, wide, rest) = (self.b.create_block(), self.b.create_block(), self.b.create_block());
        self.b.ins().jump(header, &[]);
        self.b.switch_to_block(header);
        let i = self.b.use_var(counter);
        let next = self.b.ins().iadd_imm_s(i, step);
        let fits = self.b.ins().icmp(IntCC::SignedLessThanOrEqual, next, end);
        self.b.ins().brif(fits, wide, &[], rest, &[]);
        self.b.switch_to_block(wide);
        self.b.seal_block(wide);
        (header, rest)
    }

    /// The scalar loop finishing a widened one: `body` for each element
    /// from `counter` up to `end`, entered through `tail_header` (which the
    /// caller branches to); leaves the builder after the loop.
    fn scalar_rest(&mut self, tail_header: Block, counter: Variable, end: Value, body: &[KStmt]) -> Gen<()> {
        let (tail, exit) = (self.b.create_block(), self.b.create_block());
        self.b.switch_to_block(tail_header);
        let i = self.b.use_var(counter);
        let more = self.b.ins().icmp(IntCC::SignedLessThan, i, end);
        self.b.ins().brif(more, tail, &[], exit, &[]);
        self.b.switch_to_block(tail);
        self.b.seal_block(tail);
        self.stmt_list(body)?;
        let i = self.b.use_var(counter);
        let next = self.b.ins().iadd_imm_s(i, 1);
        self.b.def_var(counter, next);
        self.b.ins().jump(tail_header, &[]);
        self.b.seal_block(tail_header);
        self.b.switch_to_block(exit);
        self.b.seal_block(exit);
        Ok(())
    }

    fn vector_expr(&mut self, var: VarId, e: &KExpr) -> Gen<Value> {
        match e {
            KExpr::Load { buffer, index } if index.coefficient_is(var, 1) => {
                let address = self.address(*buffer, index)?;
                Ok(self.b.ins().load(types::F32X4, MemFlagsData::new().with_notrap(), address, 0))
            }
            KExpr::Load { .. } | KExpr::Const { .. } => {
                let scalar = self.expr(e)?;
                Ok(self.b.ins().splat(types::F32X4, scalar))
            }
            KExpr::Unary(op, x) => {
                let v = self.vector_expr(var, x)?;
                Ok(match op {
                    UnaryOp::Neg => self.b.ins().fneg(v),
                    UnaryOp::Abs => self.b.ins().fabs(v),
                    UnaryOp::Sqrt => self.b.ins().sqrt(v),
                    UnaryOp::Floor => self.b.ins().floor(v),
                    UnaryOp::Recip => {
                        let one = self.b.ins().f32const(1.0);
                        let ones = self.b.ins().splat(types::F32X4, one);
                        self.b.ins().fdiv(ones, v)
                    }
                    UnaryOp::Exp => self.vector_exp(v),
                    UnaryOp::Log => self.lanes("kiln_log_f32", &[v])?,
                    UnaryOp::Sin => self.lanes("kiln_sin_f32", &[v])?,
                    UnaryOp::Cos => self.lanes("kiln_cos_f32", &[v])?,
                    UnaryOp::Tanh => self.lanes("kiln_tanh_f32", &[v])?,
                    UnaryOp::Sign | UnaryOp::Not => return Err(format!("{op:?} is not widened")),
                })
            }
            KExpr::Binary(BinaryOp::Add, a, b)
                if self.fma
                    && matches!(
                        (&**a, &**b),
                        (KExpr::Binary(BinaryOp::Mul, ..), _) | (_, KExpr::Binary(BinaryOp::Mul, ..))
                    ) =>
            {
                let (product, addend) = match (&**a, &**b) {
                    (KExpr::Binary(BinaryOp::Mul, x, y), z) | (z, KExpr::Binary(BinaryOp::Mul, x, y)) => ((x, y), z),
                    _ => return Err("not a multiply-add".into()),
                };
                let (x, y) = (self.vector_expr(var, product.0)?, self.vector_expr(var, product.1)?);
                let z = self.vector_expr(var, addend)?;
                Ok(self.multiply_add(x, y, z))
            }
            KExpr::Binary(op, a, b) => {
                let (x, y) = (self.vector_expr(var, a)?, self.vector_expr(var, b)?);
                Ok(match op {
                    BinaryOp::Add => self.b.ins().fadd(x, y),
                    BinaryOp::Sub => self.b.ins().fsub(x, y),
                    BinaryOp::Mul => self.b.ins().fmul(x, y),
                    BinaryOp::Div => self.b.ins().fdiv(x, y),
                    BinaryOp::Max | BinaryOp::Min => {
                        let constant =
                            |e: &KExpr| matches!(e, KExpr::Const { value: Literal::Float(v), .. } if !v.get().is_nan());
                        match (constant(a), constant(b)) {
                            (false, true) => self.max_min_constant(*op, x, y),
                            (true, false) => self.max_min_constant(*op, y, x),
                            _ => self.max_min(*op, x, y),
                        }
                    }
                    BinaryOp::Pow => self.lanes("kiln_pow_f32", &[x, y])?,
                    BinaryOp::And | BinaryOp::Or => return Err(format!("{op:?} is not widened")),
                })
            }
            KExpr::Cast(DType::F32, x) => {
                let KExpr::RandomBits { key, stream, counter, dtype: DType::I32 } = &**x else {
                    return Err("only random bits are cast in vector code".into());
                };
                // Four consecutive counters: the first, plus 0, 1, 2, 3.
                let first = self.affine(counter)?;
                let first = self.b.ins().ireduce(types::I32, first);
                let first = self.b.ins().splat(types::I32X4, first);
                let steps: Vec<u8> = (0..LANES as u32).flat_map(|l| l.to_le_bytes()).collect();
                let steps = self.b.func.dfg.constants.insert(steps.into());
                let steps = self.b.ins().vconst(types::I32X4, steps);
                let counters = self.b.ins().iadd(first, steps);
                let bits = self.random_bits31(key, *stream, counters)?;
                Ok(self.b.ins().fcvt_from_sint(types::F32X4, bits))
            }
            KExpr::Select(c, a, b) => {
                let mask = self.vector_mask(var, c)?;
                let (x, y) = (self.vector_expr(var, a)?, self.vector_expr(var, b)?);
                let mask = self.b.ins().bitcast(types::F32X4, little_endian(), mask);
                Ok(self.b.ins().bitselect(mask, x, y))
            }
            KExpr::Acc(a) => {
                let &(_, lanes) = self.wide_accs.iter().find(|w| w.0 == *a).ok_or("an accumulator not in lanes")?;
                Ok(self.b.use_var(lanes))
            }
            _ => Err("this expression is not widened".into()),
        }
    }

    /// Whether a parallel loop over `var` with `body` is a column reduction
    /// that can run four iterations in the four lanes: each iteration
    /// declares f32 accumulators, updates them in one inner loop nest (a
    /// pooling window's loops, say) by values
    /// whose loads move along `var` with coefficient 1 (or not at all), and
    /// stores f32 expressions of them at indices moving along `var` with
    /// coefficient 1. Bias gradients (sums over the batch of each column)
    /// are such loops: scalar, each element is a dependent add on a load a
    /// row apart; in lanes, four columns are summed by contiguous loads.
    pub fn widenable_columns(&self, var: VarId, body: &[KStmt]) -> bool {
        let Some((accs, inner, stores)) = column_reduction(body) else {
            return false;
        };
        let Some((_, updates)) = update_nest(inner) else {
            return false;
        };
        // Results are checked with each accumulator standing for a
        // widenable value; they must not read any other.
        let placeholder = KExpr::Const { value: Literal::Float(kiln_ir::F64Bits::new(0.0)), dtype: DType::F32 };
        accs.iter().all(|(_, dtype, _)| *dtype == DType::F32)
            && updates.iter().all(|u| match u {
                KStmt::AccUpdate { acc, value } => {
                    accs.iter().any(|(a, _, _)| a == acc) && self.widenable_expr(var, value)
                }
                _ => false,
            })
            && stores.iter().all(|s| match s {
                KStmt::Store { buffer, index, value } => {
                    self.dtype(*buffer) == Ok(DType::F32)
                        && index.coefficient_is(var, 1)
                        && replace_accs(value, &accs.iter().map(|a| a.0).collect::<Vec<_>>(), &placeholder)
                            .is_some_and(|r| self.widenable_expr(var, &r))
                }
                _ => false,
            })
    }

    /// Emits a column reduction (see [`Self::widenable_columns`]) four
    /// iterations of `var` at a time: the lanes accumulate in the inner
    /// loop's order, so results are bit for bit the scalar loop's; a
    /// scalar loop finishes the remaining iterations.
    pub fn widened_columns(&mut self, var: VarId, bound: Bound, body: &[KStmt]) -> Gen<()> {
        let Some((accs, inner, stores)) = column_reduction(body) else {
            return Err("not a column reduction".into());
        };
        let (levels, updates) = update_nest(inner).ok_or("not a column reduction")?;
        self.four_at_a_time(var, bound, body, |k| {
            let mut lanes = Vec::new();
            for &(acc, _, kind) in &accs {
                let identity = match kind {
                    ReduceKind::Sum => k.b.ins().f32const(0.0),
                    ReduceKind::Max => k.b.ins().f32const(f32::NEG_INFINITY),
                };
                let identity = k.b.ins().splat(types::F32X4, identity);
                let v = k.b.declare_var(types::F32X4);
                k.b.def_var(v, identity);
                lanes.push((acc, v, kind));
            }
            k.column_updates(var, &levels, updates, &lanes)?;
            k.wide_accs = lanes.iter().map(|&(acc, v, _)| (acc, v)).collect();
            let stored = stores.iter().try_for_each(|s| match s {
                KStmt::Store { buffer, index, value } => k.store_lanes(var, *buffer, index, value),
                _ => Err("a column reduction ends in stores".into()),
            });
            k.wide_accs.clear();
            stored
        })
    }

    /// The loops `levels` (outermost first) around `updates`, which combine
    /// four lanes of values into the lanes' accumulators.
    fn column_updates(
        &mut self,
        var: VarId,
        levels: &[Level<'_>],
        updates: &[KStmt],
        lanes: &[(AccId, Variable, ReduceKind)],
    ) -> Gen<()> {
        let Some(&(inner, extent, body)) = levels.first() else {
            for update in updates {
                let KStmt::AccUpdate { acc, value } = update else {
                    return Err("a column reduction's inner loops only update accumulators".into());
                };
                let &(_, v, kind) = lanes.iter().find(|l| l.0 == *acc).ok_or("an undeclared accumulator")?;
                let old = self.b.use_var(v);
                let new = self.combine_lanes(var, kind, value, old)?;
                self.b.def_var(v, new);
            }
            return Ok(());
        };
        self.counted_loop_with(inner, Bound::Extent(extent), body, |k| {
            k.column_updates(var, &levels[1..], updates, lanes)
        })
    }

    /// A bool expression as four i32 lanes, all ones where true.
    fn vector_mask(&mut self, var: VarId, e: &KExpr) -> Gen<Value> {
        match e {
            KExpr::Compare(op, a, b) => {
                let (x, y) = (self.vector_expr(var, a)?, self.vector_expr(var, b)?);
                Ok(self.compare(*op, x, y))
            }
            KExpr::Load { buffer, index } if index.coefficient_is(var, 1) => {
                // Four bool bytes, widened to four i32 lanes.
                let address = self.address(*buffer, index)?;
                let word = self.b.ins().load(types::I32, MemFlagsData::new().with_notrap(), address, 0);
                let v = self.b.ins().scalar_to_vector(types::I32X4, word);
                let bytes = self.b.ins().bitcast(types::I8X16, little_endian(), v);
                let halves = self.b.ins().swiden_low(bytes);
                let words = self.b.ins().swiden_low(halves);
                // Bools are 0 or 1: negated, 0 or all ones.
                Ok(self.b.ins().ineg(words))
            }
            KExpr::Load { .. } => {
                let byte = self.expr(e)?;
                let word = self.b.ins().uextend(types::I32, byte);
                let all = self.b.ins().ineg(word);
                Ok(self.b.ins().splat(types::I32X4, all))
            }
            _ => Err("this condition is not widened".into()),
        }
    }

    /// Whether a loop over `var` with `body` is a reduction that can be
    /// widened: one update of an f32 accumulator by a widenable value.
    pub fn widenable_reduction(&self, var: VarId, body: &[KStmt]) -> bool {
        match body {
            [KStmt::AccUpdate { acc, value }] => {
                self.acc_kind(*acc).is_some_and(|(d, _)| d == DType::F32) && self.widenable_expr(var, value)
            }
            _ => false,
        }
    }

    /// Emits a reduction loop with [`ACCUMULATORS`] independent f32x4
    /// accumulators, `ACCUMULATORS * 4` elements per iteration, combined
    /// into the scalar accumulator after the loop; a scalar loop finishes
    /// the remaining elements. Sums are therefore reassociated (within
    /// rounding of the interpreter's order); maxima are exact.
    pub fn widened_reduction(&mut self, var: VarId, bound: Bound, body: &[KStmt]) -> Gen<()> {
        let [KStmt::AccUpdate { acc, value }] = body else {
            return Err("only a single accumulator update can be widened".into());
        };
        let (_, kind) = self.acc_kind(*acc).ok_or_else(|| format!("{acc} is not declared"))?;
        let scalar = self.acc_var(*acc).ok_or_else(|| format!("{acc} is not declared"))?;
        let step = LANES * ACCUMULATORS as i64;
        let (counter, end) = self.counter(bound);
        self.enter_loop(body)?;
        let identity = match kind {
            ReduceKind::Sum => self.b.ins().f32const(0.0),
            ReduceKind::Max => self.b.ins().f32const(f32::NEG_INFINITY),
        };
        let splat = self.b.ins().splat(types::F32X4, identity);
        let accs: Vec<Variable> = (0..ACCUMULATORS)
            .map(|_| {
                let v = self.b.declare_var(types::F32X4);
                self.b.def_var(v, splat);
                v
            })
            .collect();
        // The element the loop variable names inside one unrolled step.
        let element = self.b.declare_var(types::I64);
        self.bind_var(var, element);
        let (header, done) = self.wide_steps(counter, end, step);
        for (u, &a) in accs.iter().enumerate() {
            let i = self.b.use_var(counter);
            let at = self.b.ins().iadd_imm_s(i, LANES * u as i64);
            self.b.def_var(element, at);
            let old = self.b.use_var(a);
            let new = self.combine_lanes(var, kind, value, old)?;
            self.b.def_var(a, new);
        }
        let i = self.b.use_var(counter);
        let next = self.b.ins().iadd_imm_s(i, step);
        self.b.def_var(counter, next);
        self.b.ins().jump(header, &[]);
        self.b.seal_block(header);

        self.b.switch_to_block(done);
        self.b.seal_block(done);
        let combine = |k: &mut Self, x: Value, y: Value| match kind {
            ReduceKind::Sum => k.b.ins().fadd(x, y),
            ReduceKind::Max => k.b.ins().fmax(x, y),
        };
        let mut vectors: Vec<Value> = accs.iter().map(|&a| self.b.use_var(a)).collect();
        while vectors.len() > 1 {
            let pairs: Vec<Value> =
                vectors.chunks(2).map(|p| if p.len() == 2 { combine(self, p[0], p[1]) } else { p[0] }).collect();
            vectors = pairs;
        }
        let lanes: Vec<Value> = (0..LANES as u8).map(|l| self.b.ins().extractlane(vectors[0], l)).collect();
        let low = combine(self, lanes[0], lanes[1]);
        let high = combine(self, lanes[2], lanes[3]);
        let all = combine(self, low, high);
        let old = self.b.use_var(scalar);
        let merged = combine(self, old, all);
        self.b.def_var(scalar, merged);
        self.unbind_var(var);

        // The rest, one element at a time, continuing from the counter.
        let tail_header = self.b.create_block();
        self.bind_var(var, counter);
        self.b.ins().jump(tail_header, &[]);
        self.scalar_rest(tail_header, counter, end, body)?;
        self.unbind_var(var);
        self.leave_loop();
        Ok(())
    }

    /// Four lanes of an accumulator of `kind` updated by `value` widened
    /// along `var`: a fused multiply-add for a sum of products.
    fn combine_lanes(&mut self, var: VarId, kind: ReduceKind, value: &KExpr, old: Value) -> Gen<Value> {
        Ok(match (kind, value) {
            (ReduceKind::Sum, KExpr::Binary(BinaryOp::Mul, x, y)) => {
                let (x, y) = (self.vector_expr(var, x)?, self.vector_expr(var, y)?);
                self.multiply_add(x, y, old)
            }
            (ReduceKind::Sum, _) => {
                let v = self.vector_expr(var, value)?;
                self.b.ins().fadd(old, v)
            }
            (ReduceKind::Max, _) => {
                let v = self.vector_expr(var, value)?;
                self.b.ins().fmax(old, v)
            }
        })
    }

    /// The NaN-propagating max (or min) of four lanes: `x` where it is
    /// greater (less) or NaN, else `y`. Cranelift's `fmax` also orders -0
    /// below +0, which takes twice the instructions; kiln's max, like the
    /// interpreter's, leaves the sign of equal zeros unspecified.
    fn max_min(&mut self, op: BinaryOp, x: Value, y: Value) -> Value {
        let cc = if op == BinaryOp::Max { FloatCC::GreaterThan } else { FloatCC::LessThan };
        let better = self.b.ins().fcmp(cc, x, y);
        let x_nan = self.b.ins().fcmp(FloatCC::Unordered, x, x);
        let take_x = self.b.ins().bor(better, x_nan);
        let mask = self.b.ins().bitcast(types::F32X4, little_endian(), take_x);
        self.b.ins().bitselect(mask, x, y)
    }

    /// [`Self::max_min`] against `c`, lanes that are never NaN: one comparison
    /// (greater, or unordered, which only `x` can be) picks `x`.
    fn max_min_constant(&mut self, op: BinaryOp, x: Value, c: Value) -> Value {
        let cc = if op == BinaryOp::Max { FloatCC::UnorderedOrGreaterThan } else { FloatCC::UnorderedOrLessThan };
        let take_x = self.b.ins().fcmp(cc, x, c);
        let mask = self.b.ins().bitcast(types::F32X4, little_endian(), take_x);
        self.b.ins().bitselect(mask, x, c)
    }

    /// `x` clamped to `[low, high]` (constants, neither NaN nor zero), NaN
    /// lanes kept: `low < x ? ... ` in the operand order x86's `maxps` and
    /// `minps` implement (the second operand wins on NaN), which Cranelift
    /// matches to one instruction each.
    fn clamp(&mut self, x: Value, low: Value, high: Value) -> Value {
        let below = self.b.ins().fcmp(FloatCC::LessThan, x, low);
        let below = self.b.ins().bitcast(types::F32X4, little_endian(), below);
        let x = self.b.ins().bitselect(below, low, x);
        let above = self.b.ins().fcmp(FloatCC::LessThan, high, x);
        let above = self.b.ins().bitcast(types::F32X4, little_endian(), above);
        self.b.ins().bitselect(above, high, x)
    }

    /// `exp` of four f32 lanes without leaving the vector unit. With `n` the
    /// nearest integer to `x / ln 2` and `r = x - n ln 2` (Cody-Waite, two
    /// parts of ln 2), `e^r` comes from its Taylor polynomial to degree 7
    /// (|r| at most ln 2 / 2, truncation below 6e-9 relative) by Estrin's
    /// scheme (three multiply-add latencies after `r` instead of Horner's
    /// seven: the loops that call this are bound by latency, not issue),
    /// then is scaled by `2^n` in two factors so that results down to the
    /// subnormals round once. `x` is clamped to [-110, 89] first, past
    /// which the f32 result is 0 or infinity anyway; NaN stays NaN. Within
    /// 2 ulp of the interpreter's correctly rounded value (tested on a sweep).
    pub(super) fn vector_exp(&mut self, x: Value) -> Value {
        let splat = |k: &mut Self, c: f32| {
            let c = k.b.ins().f32const(c);
            k.b.ins().splat(types::F32X4, c)
        };
        let (low, high) = (splat(self, -110.0), splat(self, 89.0));
        let x = self.clamp(x, low, high);
        let log2e = splat(self, std::f32::consts::LOG2_E);
        let scaled = self.b.ins().fmul(x, log2e);
        let n = self.b.ins().nearest(scaled);
        let (ln2_hi, ln2_lo) = (splat(self, -0.693_359_4), splat(self, 2.121_944_4e-4));
        let r = self.multiply_add(n, ln2_hi, x);
        let r = self.multiply_add(n, ln2_lo, r);
        // Estrin's scheme: four independent pairs, then two levels.
        let pair = |k: &mut Self, high: f32, low: f32| {
            let (high, low) = (splat(k, high), splat(k, low));
            k.multiply_add(high, r, low)
        };
        let one = splat(self, 1.0);
        let p01 = self.b.ins().fadd(r, one);
        let p23 = pair(self, 1.0 / 6.0, 0.5);
        let p45 = pair(self, 1.0 / 120.0, 1.0 / 24.0);
        let p67 = pair(self, 1.0 / 5040.0, 1.0 / 720.0);
        let r2 = self.b.ins().fmul(r, r);
        let low = self.multiply_add(p23, r2, p01);
        let high = self.multiply_add(p67, r2, p45);
        let r4 = self.b.ins().fmul(r2, r2);
        // 2^n as 2^(n >> 1) * 2^(n - (n >> 1)), each a normal f32.
        // `n` is within ±160 (NaN aside, whose lanes stay NaN through `p`):
        // x86's plain truncating conversion is exact, without the
        // saturation fix-ups of `fcvt_to_sint_sat`.
        let n = if self.x86 {
            self.b.ins().x86_cvtt2dq(types::I32X4, n)
        } else {
            self.b.ins().fcvt_to_sint_sat(types::I32X4, n)
        };
        let half = self.b.ins().sshr_imm_s(n, 1);
        let rest = self.b.ins().isub(n, half);
        let bias = {
            let c = self.b.ins().iconst(types::I32, 127);
            self.b.ins().splat(types::I32X4, c)
        };
        let mut result = self.multiply_add(high, r4, low);
        for e in [half, rest] {
            let biased = self.b.ins().iadd(e, bias);
            let bits = self.b.ins().ishl_imm_u(biased, 23);
            let power = self.b.ins().bitcast(types::F32X4, little_endian(), bits);
            result = self.b.ins().fmul(result, power);
        }
        result
    }

    /// Applies a scalar runtime function to each lane.
    fn lanes(&mut self, name: &str, args: &[Value]) -> Gen<Value> {
        let mut result = args[0];
        for lane in 0..LANES as u8 {
            let scalars: Vec<Value> = args.iter().map(|&v| self.b.ins().extractlane(v, lane)).collect();
            let params = vec![types::F32; scalars.len()];
            let r = self.call(name, &params, &[types::F32], &scalars)?.ok_or("a lane function returns a value")?;
            result = self.b.ins().insertlane(result, r, lane);
        }
        Ok(result)
    }
}

/// The parts of a column reduction's body: its accumulators (id, dtype,
/// kind), the inner loop that updates them, and the stores after it.
type ColumnReduction<'a> = (Vec<(AccId, DType, ReduceKind)>, &'a KStmt, &'a [KStmt]);

/// `body` split as a column reduction, if it has that shape: accumulator
/// declarations, one loop, then stores.
fn column_reduction(body: &[KStmt]) -> Option<ColumnReduction<'_>> {
    let declared = body.iter().take_while(|s| matches!(s, KStmt::AccInit { .. })).count();
    let accs = body[..declared]
        .iter()
        .filter_map(|s| match s {
            KStmt::AccInit { acc, dtype, kind } => Some((*acc, *dtype, *kind)),
            _ => None,
        })
        .collect::<Vec<_>>();
    let (inner, stores) = body[declared..].split_first()?;
    let shaped = !accs.is_empty()
        && matches!(inner, KStmt::For { .. })
        && !stores.is_empty()
        && stores.iter().all(|s| matches!(s, KStmt::Store { .. }));
    shaped.then_some((accs, inner, stores))
}

/// A loop of a column reduction's inner nest: its variable, extent and body.
type Level<'a> = (VarId, &'a Size, &'a [KStmt]);

/// The loops of a column reduction's inner nest, outermost first (each
/// loop's variable, extent and body), and the accumulator updates inside
/// the innermost: a perfect nest of one or more loops.
fn update_nest(inner: &KStmt) -> Option<(Vec<Level<'_>>, &[KStmt])> {
    let mut levels = Vec::new();
    let mut at = inner;
    loop {
        let KStmt::For { var, extent, body, .. } = at else {
            return None;
        };
        levels.push((*var, extent, body.as_slice()));
        match body.as_slice() {
            [next @ KStmt::For { .. }] => at = next,
            updates if updates.iter().all(|u| matches!(u, KStmt::AccUpdate { .. })) => return Some((levels, updates)),
            _ => return None,
        }
    }
}

/// `e` with each accumulator of `accs` replaced by `by`; `None` if `e`
/// reads another accumulator.
fn replace_accs(e: &KExpr, accs: &[AccId], by: &KExpr) -> Option<KExpr> {
    let sub = |x: &KExpr| replace_accs(x, accs, by).map(Box::new);
    Some(match e {
        KExpr::Acc(a) if accs.contains(a) => by.clone(),
        KExpr::Acc(_) => return None,
        KExpr::Unary(op, x) => KExpr::Unary(*op, sub(x)?),
        KExpr::Cast(d, x) => KExpr::Cast(*d, sub(x)?),
        KExpr::Binary(op, a, b) => KExpr::Binary(*op, sub(a)?, sub(b)?),
        KExpr::Compare(op, a, b) => KExpr::Compare(*op, sub(a)?, sub(b)?),
        KExpr::Select(c, a, b) => KExpr::Select(sub(c)?, sub(a)?, sub(b)?),
        KExpr::Gather { buffer, base, index, stride, bound } => KExpr::Gather {
            buffer: *buffer,
            base: base.clone(),
            index: sub(index)?,
            stride: stride.clone(),
            bound: bound.clone(),
        },
        KExpr::RandomBits { key, stream, counter, dtype } => {
            KExpr::RandomBits { key: sub(key)?, stream: *stream, counter: counter.clone(), dtype: *dtype }
        }
        KExpr::Const { .. } | KExpr::Index { .. } | KExpr::Load { .. } => e.clone(),
    })
}

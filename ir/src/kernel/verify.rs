//! The kernel IR verifier. A plan that passes it satisfies:
//!
//! 1. Every buffer, loop variable and accumulator a kernel names exists and
//!    is in scope: variables inside their loop, accumulators after their
//!    declaration in the same or an enclosing block; no variable is bound
//!    twice in one nest.
//! 2. Every expression is well typed under the graph IR's rules for its op,
//!    stores and accumulator updates match their target's dtype, gathers and
//!    scatters index with integers.
//! 3. Every affine access is **proved** in bounds for every value of the
//!    plan's size symbols at or above their least values, not for one
//!    binding: its least and greatest value over the loop ranges (sizes of
//!    the symbols) lie in `0..len` of its buffer, which
//!    [`Size::is_nonnegative`] proves. For gathers and scatters the whole
//!    range `base + stride * (0..bound)` must lie in the buffer, and `base`
//!    itself (where a backend accesses when the computed index is outside
//!    `0..bound`, as it checks at run time), with a bound never negative. A
//!    coefficient whose sign cannot be proved is an error.
//! 4. GEMM calls, of sizes never negative, read and write inside their
//!    buffers, on float buffers of one dtype. Vector widths are powers of two
//!    up to 16.
//! 5. Every size names only declared symbols, each declared once with a
//!    least value of at least 1 and a hint at or above it; lengths and
//!    extents are never negative.

use std::collections::BTreeMap;

use super::{AccId, Affine, BufferId, KExpr, KStmt, MatrixRef, Plan, RuntimeCall, Size, VarId, lower_bounds};
use crate::op::{CompareOp, ReduceKind};
use crate::types::DType;

/// A broken invariant, with the kernel it is in.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", kernel_prefix(kernel))]
pub struct KernelVerifyError {
    pub kernel: String,
    pub message: String,
}

/// `kernel `k`: ` before a kernel's error; nothing before the plan's own.
fn kernel_prefix(kernel: &str) -> String {
    if kernel.is_empty() { String::new() } else { format!("kernel `{kernel}`: ") }
}

/// Checks every invariant of `plan`.
pub fn verify_plan(plan: &Plan) -> Result<(), KernelVerifyError> {
    let whole = |message: String| KernelVerifyError { kernel: String::new(), message };
    for (k, s) in plan.symbols.iter().enumerate() {
        if plan.symbols[..k].iter().any(|d| d.symbol == s.symbol) {
            return Err(whole(format!("size {} is declared twice", s.symbol)));
        }
        if s.min < 1 || s.hint < s.min {
            return Err(whole(format!(
                "size {} needs a least value of at least 1 and a hint at or above it (>= {} hint {})",
                s.symbol, s.min, s.hint
            )));
        }
    }
    let declared = |size: &Size| size.symbols().into_iter().find(|s| !plan.symbols.iter().any(|d| &d.symbol == s));
    let lower = lower_bounds(&plan.symbols);
    for (i, b) in plan.buffers.iter().enumerate() {
        if let Some(s) = declared(&b.len) {
            return Err(whole(format!("buffer b{i}'s length {} names {s}, which the plan does not declare", b.len)));
        }
        if !b.len.is_nonnegative(&lower) {
            return Err(whole(format!("buffer b{i}'s length {} may be negative", b.len)));
        }
    }
    for kernel in &plan.kernels {
        let mut undeclared = None;
        for s in &kernel.body {
            s.clone().for_each_size_mut(&mut |size| {
                if let Some(s) = declared(size) {
                    undeclared.get_or_insert((size.clone(), s));
                }
            });
        }
        if let Some((size, s)) = undeclared {
            return Err(KernelVerifyError {
                kernel: kernel.name.clone(),
                message: format!("size {size} names {s}, which the plan does not declare"),
            });
        }
        let mut scope = Scope { plan, vars: BTreeMap::new(), accs: vec![BTreeMap::new()] };
        scope.block(&kernel.body).map_err(|message| KernelVerifyError { kernel: kernel.name.clone(), message })?;
    }
    Ok(())
}

struct Scope<'a> {
    plan: &'a Plan,
    /// Loop variables in scope and their extents.
    vars: BTreeMap<VarId, Size>,
    /// Accumulators by block, innermost last.
    accs: Vec<BTreeMap<AccId, (DType, ReduceKind)>>,
}

type Check<T> = Result<T, String>;

impl Scope<'_> {
    fn block(&mut self, body: &[KStmt]) -> Check<()> {
        self.accs.push(BTreeMap::new());
        let result = body.iter().try_for_each(|s| self.stmt(s));
        self.accs.pop();
        result
    }

    fn stmt(&mut self, s: &KStmt) -> Check<()> {
        match s {
            KStmt::For { var, extent, vector, body, .. } => {
                if self.vars.contains_key(var) {
                    return Err(format!("loop variable {var} is bound twice"));
                }
                if !matches!(vector, 1 | 2 | 4 | 8 | 16) {
                    return Err(format!("loop {var}: {vector} lanes is not a power of two up to 16"));
                }
                if !self.nonnegative(extent) {
                    return Err(format!("loop {var}: its extent {extent} may be negative"));
                }
                self.vars.insert(*var, extent.clone());
                let result = self.block(body);
                self.vars.remove(var);
                result
            }
            KStmt::Store { buffer, index, value } => {
                let (dtype, len) = self.buffer(*buffer)?;
                self.in_bounds(*buffer, index, &len)?;
                let t = self.expr(value)?;
                if t != dtype {
                    return Err(format!("storing a {t} value into {buffer}, a {dtype} buffer"));
                }
                Ok(())
            }
            KStmt::ScatterAdd { buffer, base, index, stride, bound, value } => {
                let (dtype, len) = self.buffer(*buffer)?;
                if !dtype.is_numeric() {
                    return Err(format!("scatter_add into {buffer}, a {dtype} buffer"));
                }
                self.strided_in_bounds(*buffer, base, stride, bound, &len)?;
                self.integer_index(index)?;
                let t = self.expr(value)?;
                if t != dtype {
                    return Err(format!("adding a {t} value into {buffer}, a {dtype} buffer"));
                }
                Ok(())
            }
            KStmt::AccInit { acc, dtype, kind } => {
                if self.acc(*acc).is_some() {
                    return Err(format!("accumulator {acc} is declared twice"));
                }
                if !dtype.is_numeric() {
                    return Err(format!("accumulator {acc} of {dtype}: reductions need numbers"));
                }
                if let Some(innermost) = self.accs.last_mut() {
                    innermost.insert(*acc, (*dtype, *kind));
                }
                Ok(())
            }
            KStmt::AccUpdate { acc, value } => {
                let (dtype, _) = self.acc(*acc).ok_or_else(|| format!("accumulator {acc} is not declared here"))?;
                let t = self.expr(value)?;
                if t != dtype {
                    return Err(format!("updating {acc}, a {dtype} accumulator, with a {t} value"));
                }
                Ok(())
            }
            KStmt::Call(RuntimeCall::Gemm { batch, m, n, k, a, b, c }) => {
                for (name, size) in [("batch", batch), ("m", m), ("n", n), ("k", k)] {
                    if !self.nonnegative(size) {
                        return Err(format!("gemm {name} = {size} may be negative"));
                    }
                }
                let mut dtypes = Vec::new();
                for (what, mat, rows, cols) in [("a", a, m, k), ("b", b, k, n), ("c", c, m, n)] {
                    dtypes.push(self.matrix(what, mat, batch, rows, cols, what == "c")?);
                }
                if c.buffer == a.buffer || c.buffer == b.buffer {
                    return Err(format!("gemm result {} is also one of its operands", c.buffer));
                }
                if !dtypes.iter().all(|d| *d == dtypes[0] && d.is_float()) {
                    return Err(format!("gemm needs float buffers of one dtype, got {dtypes:?}"));
                }
                Ok(())
            }
        }
    }

    fn acc(&self, acc: AccId) -> Option<(DType, ReduceKind)> {
        self.accs.iter().rev().find_map(|s| s.get(&acc).copied())
    }

    fn buffer(&self, id: BufferId) -> Check<(DType, Size)> {
        self.plan.buffer(id).map(|b| (b.dtype, b.len.clone())).ok_or_else(|| format!("buffer {id} is not declared"))
    }

    /// Whether `s` is provably at least 0 for every value of the symbols.
    fn nonnegative(&self, s: &Size) -> bool {
        s.is_nonnegative(&lower_bounds(&self.plan.symbols))
    }

    /// Whether `a <= b` provably.
    fn le(&self, a: &Size, b: &Size) -> bool {
        self.nonnegative(&(b.clone() - a.clone()))
    }

    /// `(low, high)` moved by `c * (extent - 1)`, the reach of a term over
    /// its loop, on the side its sign puts it.
    fn reach(&self, (low, high): (Size, Size), c: &Size, extent: &Size) -> Check<(Size, Size)> {
        let last = c.clone() * (extent.clone() - Size::constant(1));
        if self.nonnegative(c) {
            Ok((low, high + last))
        } else if self.nonnegative(&-c.clone()) {
            Ok((low + last, high))
        } else {
            Err(format!("the sign of coefficient {c} is not known"))
        }
    }

    /// The least and greatest value of `a` over the loop ranges in scope,
    /// `None` when one of the loops is empty (no access happens).
    fn range(&self, a: &Affine) -> Check<Option<(Size, Size)>> {
        let mut bounds = (a.constant.clone(), a.constant.clone());
        for (v, c) in &a.terms {
            let extent = self.vars.get(v).ok_or_else(|| format!("loop variable {v} is not in scope"))?;
            if extent.is(0) {
                return Ok(None);
            }
            bounds = self.reach(bounds, c, extent)?;
        }
        Ok(Some(bounds))
    }

    /// Ok when `low..=high` lies in `0..len` for every value of the
    /// symbols, else an error saying that `access` reaches it.
    fn inside(&self, access: impl FnOnce() -> String, (low, high): &(Size, Size), len: &Size) -> Check<()> {
        if self.nonnegative(low) && self.le(high, &(len.clone() - Size::constant(1))) {
            return Ok(());
        }
        Err(format!("{} reaches {low}..={high}, not provably inside the buffer's {len} elements", access()))
    }

    fn in_bounds(&self, buffer: BufferId, index: &Affine, len: &Size) -> Check<()> {
        let Some(range) = self.range(index)? else { return Ok(()) };
        self.inside(|| format!("{buffer}[{}]", super::print::AffineText(index)), &range, len)
    }

    /// `base + stride * (0..bound)` inside the buffer; `base` itself too,
    /// since a backend reads or writes there when the computed index is
    /// outside `0..bound` (even when `bound` is 0).
    fn strided_in_bounds(&self, buffer: BufferId, base: &Affine, stride: &Size, bound: &Size, len: &Size) -> Check<()> {
        if !self.nonnegative(bound) {
            return Err(format!("the bound {bound} of an access to {buffer} may be negative"));
        }
        let Some(range) = self.range(base)? else { return Ok(()) };
        self.inside(|| format!("{buffer}[{}]", super::print::AffineText(base)), &range, len)?;
        if bound.is(0) {
            return Ok(());
        }
        let range = self.reach(range, stride, bound)?;
        let access = || format!("{buffer}[{} + {stride} * (0..{bound})]", super::print::AffineText(base));
        self.inside(access, &range, len)
    }

    /// Checks that a `batch x rows x cols` operand lies inside its buffer;
    /// the result (`writes`) must be row-major with rows that do not overlap.
    fn matrix(&self, what: &str, m: &MatrixRef, batch: &Size, rows: &Size, cols: &Size, writes: bool) -> Check<DType> {
        let (dtype, len) = self.buffer(m.buffer)?;
        if writes && !m.col_stride.is(1) {
            return Err(format!("gemm result {what} must have a column stride of 1, not {}", m.col_stride));
        }
        if batch.is(0) || rows.is(0) || cols.is(0) {
            return Ok(dtype);
        }
        let mut range = (m.offset.clone(), m.offset.clone());
        for (stride, count) in [(&m.batch_stride, batch), (&m.row_stride, rows), (&m.col_stride, cols)] {
            range = self.reach(range, stride, count)?;
        }
        let overlapping = writes && !rows.is(1) && !self.le(cols, &m.row_stride);
        if self.inside(String::new, &range, &len).is_err() || overlapping {
            return Err(format!(
                "gemm operand {what} ({batch} x {rows} x {cols} at {}[{}], rows {} apart, columns {} apart) does not provably fit the buffer's {len} elements",
                m.buffer, m.offset, m.row_stride, m.col_stride
            ));
        }
        Ok(dtype)
    }

    fn integer_index(&self, e: &KExpr) -> Check<()> {
        let t = self.expr(e)?;
        if !t.is_int() {
            return Err(format!("an index must be an integer, not {t}"));
        }
        Ok(())
    }

    fn expr(&self, e: &KExpr) -> Check<DType> {
        match e {
            KExpr::Const { value, dtype } => {
                if !value.fits(*dtype) {
                    return Err(format!("literal {value:?} is not a {dtype}"));
                }
                Ok(*dtype)
            }
            KExpr::Index { index, dtype } => {
                self.range(index)?;
                if !dtype.is_numeric() {
                    return Err(format!("an index value must be numeric, not {dtype}"));
                }
                Ok(*dtype)
            }
            KExpr::Load { buffer, index } => {
                let (dtype, len) = self.buffer(*buffer)?;
                self.in_bounds(*buffer, index, &len)?;
                Ok(dtype)
            }
            KExpr::Gather { buffer, base, index, stride, bound } => {
                let (dtype, len) = self.buffer(*buffer)?;
                self.strided_in_bounds(*buffer, base, stride, bound, &len)?;
                self.integer_index(index)?;
                Ok(dtype)
            }
            KExpr::Acc(acc) => {
                self.acc(*acc).map(|a| a.0).ok_or_else(|| format!("accumulator {acc} is not declared here"))
            }
            KExpr::Unary(op, x) => {
                let t = self.expr(x)?;
                if !op.accepts(t) {
                    return Err(format!("{op:?} is not defined on {t}"));
                }
                Ok(t)
            }
            KExpr::Binary(op, a, b) => {
                let (ta, tb) = (self.expr(a)?, self.expr(b)?);
                if ta != tb || !op.accepts(ta) {
                    return Err(format!("{op:?} of {ta} and {tb}"));
                }
                Ok(ta)
            }
            KExpr::Compare(op, a, b) => {
                let (ta, tb) = (self.expr(a)?, self.expr(b)?);
                if ta != tb || !op.accepts(ta) {
                    return Err(format!("{op:?} of {ta} and {tb}"));
                }
                let _: CompareOp = *op;
                Ok(DType::Bool)
            }
            KExpr::Select(c, a, b) => {
                let (tc, ta, tb) = (self.expr(c)?, self.expr(a)?, self.expr(b)?);
                if tc != DType::Bool || ta != tb {
                    return Err(format!("select with a {tc} condition between {ta} and {tb}"));
                }
                Ok(ta)
            }
            KExpr::Cast(to, x) => {
                self.expr(x)?;
                Ok(*to)
            }
            KExpr::RandomBits { key, counter, dtype, .. } => {
                if self.expr(key)? != DType::I64 || !dtype.is_int() {
                    return Err("random_bits needs an i64 key and an integer dtype".into());
                }
                self.range(counter)?;
                Ok(*dtype)
            }
        }
    }
}

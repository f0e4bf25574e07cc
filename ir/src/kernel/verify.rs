//! The kernel IR verifier. A plan that passes it satisfies:
//!
//! 1. Every buffer, loop variable and accumulator a kernel names exists and
//!    is in scope: variables inside their loop, accumulators after their
//!    declaration in the same or an enclosing block; no variable is bound
//!    twice in one nest.
//! 2. Every expression is well typed under the graph IR's rules for its op,
//!    stores and accumulator updates match their target's dtype, gathers and
//!    scatters index with integers.
//! 3. Every affine access is **proved** in bounds: its least and greatest
//!    value over the loop ranges lie in `0..len` of its buffer. For gathers
//!    and scatters the whole range `base + stride * (0..bound)` must lie in
//!    the buffer; the backend checks the computed index against `bound`.
//! 4. GEMM calls read and write inside their buffers, on float buffers of
//!    one dtype. Vector widths are powers of two up to 16.

use std::collections::BTreeMap;

use super::{AccId, Affine, BufferId, KExpr, KStmt, MatrixRef, Plan, RuntimeCall, VarId};
use crate::op::{CompareOp, ReduceKind};
use crate::types::DType;

/// A broken invariant, with the kernel it is in.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("kernel `{kernel}`: {message}")]
pub struct KernelVerifyError {
    pub kernel: String,
    pub message: String,
}

/// Checks every invariant of `plan`.
pub fn verify_plan(plan: &Plan) -> Result<(), KernelVerifyError> {
    for kernel in &plan.kernels {
        let mut scope = Scope { plan, vars: BTreeMap::new(), accs: vec![BTreeMap::new()] };
        scope.block(&kernel.body).map_err(|message| KernelVerifyError { kernel: kernel.name.clone(), message })?;
    }
    Ok(())
}

struct Scope<'a> {
    plan: &'a Plan,
    /// Loop variables in scope and their extents.
    vars: BTreeMap<VarId, u64>,
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
                self.vars.insert(*var, *extent);
                let result = self.block(body);
                self.vars.remove(var);
                result
            }
            KStmt::Store { buffer, index, value } => {
                let (dtype, len) = self.buffer(*buffer)?;
                self.in_bounds(*buffer, index, len)?;
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
                self.strided_in_bounds(*buffer, base, *stride, *bound, len)?;
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
                let mut dtypes = Vec::new();
                for (what, mat, rows, cols) in [("a", a, m, k), ("b", b, k, n), ("c", c, m, n)] {
                    dtypes.push(self.matrix(what, mat, *batch, *rows, *cols, what == "c")?);
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

    fn buffer(&self, id: BufferId) -> Check<(DType, u64)> {
        self.plan.buffer(id).map(|b| (b.dtype, b.len)).ok_or_else(|| format!("buffer {id} is not declared"))
    }

    /// The least and greatest value of `a` over the loop ranges in scope.
    fn range(&self, a: &Affine) -> Check<(i128, i128)> {
        let (mut low, mut high) = (i128::from(a.constant), i128::from(a.constant));
        for &(v, c) in &a.terms {
            let extent = *self.vars.get(&v).ok_or_else(|| format!("loop variable {v} is not in scope"))?;
            if extent == 0 {
                // An empty loop runs nothing: no access happens.
                return Ok((0, -1));
            }
            let last = i128::from(c) * i128::from(extent - 1);
            low += last.min(0);
            high += last.max(0);
        }
        Ok((low, high))
    }

    fn in_bounds(&self, buffer: BufferId, index: &Affine, len: u64) -> Check<()> {
        let (low, high) = self.range(index)?;
        if low > high {
            return Ok(());
        }
        if low < 0 || high >= i128::from(len) {
            return Err(format!(
                "{buffer}[{}] reaches {low}..={high}, outside the buffer's {len} elements",
                super::print::AffineText(index)
            ));
        }
        Ok(())
    }

    fn strided_in_bounds(&self, buffer: BufferId, base: &Affine, stride: i64, bound: u64, len: u64) -> Check<()> {
        if bound == 0 {
            return Ok(());
        }
        let (low, high) = self.range(base)?;
        if low > high {
            return Ok(());
        }
        let reach = i128::from(stride) * i128::from(bound - 1);
        let (low, high) = (low + reach.min(0), high + reach.max(0));
        if low < 0 || high >= i128::from(len) {
            return Err(format!(
                "{buffer}[{} + {stride} * (0..{bound})] reaches {low}..={high}, outside the buffer's {len} elements",
                super::print::AffineText(base)
            ));
        }
        Ok(())
    }

    /// Checks that a `batch x rows x cols` operand lies inside its buffer;
    /// the result (`writes`) must be row-major with rows that do not overlap.
    fn matrix(&self, what: &str, m: &MatrixRef, batch: u64, rows: u64, cols: u64, writes: bool) -> Check<DType> {
        let (dtype, len) = self.buffer(m.buffer)?;
        if writes && m.col_stride != 1 {
            return Err(format!("gemm result {what} must have a column stride of 1, not {}", m.col_stride));
        }
        if batch == 0 || rows == 0 || cols == 0 {
            return Ok(dtype);
        }
        let last = u128::from(m.offset)
            + u128::from(batch - 1) * u128::from(m.batch_stride)
            + u128::from(rows - 1) * u128::from(m.row_stride)
            + u128::from(cols - 1) * u128::from(m.col_stride);
        if last >= u128::from(len) || (writes && rows > 1 && m.row_stride < cols) {
            return Err(format!(
                "gemm operand {what} ({batch} x {rows} x {cols} at {}[{}], rows {} apart, columns {} apart) does not fit the buffer's {len} elements",
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
                self.in_bounds(*buffer, index, len)?;
                Ok(dtype)
            }
            KExpr::Gather { buffer, base, index, stride, bound } => {
                let (dtype, len) = self.buffer(*buffer)?;
                self.strided_in_bounds(*buffer, base, *stride, *bound, len)?;
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

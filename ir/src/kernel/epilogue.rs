//! GEMM epilogues: a kernel `[gemm(batch=1, m, ...); for v in 0..E parallel
//! { body }]` whose loop reads the product only in the rows its iteration
//! belongs to. Kernel IR runs the two statements one after the other; a
//! backend may instead run them by blocks of rows — the product's rows
//! `[lo, hi)`, then the loop's iterations of those rows, while they are in
//! cache — because every row of the product depends only on the same row
//! of `a` (and all of `b`), and [`gemm_epilogue`] checks that:
//!
//! - the loop runs `q` iterations per product row: `E = m` (a loop over
//!   rows, `q = 1`) or `E = m * n` over a product stored row after row (a
//!   flat loop, `q = n`);
//! - iteration `v` reads the product only inside row `v / q` (loads at
//!   affine indices whose range over the inner loops lies in that row; no
//!   gather);
//! - the loop writes neither the product nor the GEMM's operands.

use std::collections::BTreeMap;

use super::{Affine, BufferId, KExpr, KStmt, Kernel, MatrixRef, RuntimeCall, Size, VarId};
use crate::types::Symbol;

/// Every symbol is at least 1 (the verifier requires it of a plan's
/// declared least values), which is all the proofs here assume.
fn at_least_one(_: &Symbol) -> i64 {
    1
}

/// A kernel that is a GEMM and its epilogue loop.
#[derive(Clone, Debug)]
pub struct GemmEpilogue<'a> {
    pub call: &'a RuntimeCall,
    pub m: &'a Size,
    pub var: VarId,
    pub vector: u32,
    pub body: &'a [KStmt],
    /// Loop iterations per product row.
    pub per_row: Size,
}

/// The kernel's GEMM and epilogue loop, when it is one (see the module doc).
pub fn gemm_epilogue(kernel: &Kernel) -> Option<GemmEpilogue<'_>> {
    let [
        KStmt::Call(call @ RuntimeCall::Gemm { batch, m, n, a, b, c, .. }),
        KStmt::For { var, extent, parallel: true, vector, body },
    ] = kernel.body.as_slice()
    else {
        return None;
    };
    if !batch.is(1) {
        return None;
    }
    let per_row = if extent == m {
        Size::constant(1)
    } else if *extent == m.clone() * n.clone() && c.row_stride == *n && c.col_stride.is(1) {
        n.clone()
    } else {
        return None;
    };
    if !Size::constant(1).provably_le(m, &at_least_one)
        || body.iter().any(|s| writes(s, &[a.buffer, b.buffer, c.buffer]))
    {
        return None;
    }
    let mut extents = BTreeMap::new();
    let row = Row { c, n, var: *var, per_row: &per_row };
    let rows_local = body.iter().all(|s| row.reads_own_row(s, &mut extents));
    rows_local.then_some(GemmEpilogue { call, m, var: *var, vector: *vector, body, per_row })
}

fn writes(s: &KStmt, buffers: &[BufferId]) -> bool {
    let mut any = false;
    s.walk(&mut |s| match s {
        KStmt::Store { buffer, .. } | KStmt::ScatterAdd { buffer, .. } => any |= buffers.contains(buffer),
        KStmt::Call(_) => any = true,
        KStmt::For { .. } | KStmt::AccInit { .. } | KStmt::AccUpdate { .. } => {}
    });
    any
}

/// The product `c` (rows of `n` elements) an epilogue loop over `var`
/// reads, `per_row` of its iterations per row of `c`.
struct Row<'a> {
    c: &'a MatrixRef,
    n: &'a Size,
    var: VarId,
    per_row: &'a Size,
}

impl Row<'_> {
    /// Whether every read of the product in `s` stays in the row of the
    /// outer loop's iteration; `extents` holds the enclosing inner loops'.
    fn reads_own_row(&self, s: &KStmt, extents: &mut BTreeMap<VarId, Size>) -> bool {
        match s {
            KStmt::For { var: inner, extent, body, .. } => {
                extents.insert(*inner, extent.clone());
                let ok = body.iter().all(|s| self.reads_own_row(s, extents));
                extents.remove(inner);
                ok
            }
            KStmt::Store { value, .. } | KStmt::AccUpdate { value, .. } => self.expr_own_row(value, extents),
            KStmt::ScatterAdd { index, value, .. } => {
                self.expr_own_row(index, extents) && self.expr_own_row(value, extents)
            }
            KStmt::AccInit { .. } => true,
            KStmt::Call(_) => false,
        }
    }

    fn expr_own_row(&self, e: &KExpr, extents: &BTreeMap<VarId, Size>) -> bool {
        !e.any(&|e| match e {
            KExpr::Load { buffer, index } if *buffer == self.c.buffer => !self.index_in_row(index, extents),
            KExpr::Gather { buffer, .. } => *buffer == self.c.buffer,
            _ => false,
        })
    }

    /// Whether `index` lies in row `var / per_row` of the product for every
    /// value of the inner loops' variables and of the sizes.
    fn index_in_row(&self, index: &Affine, extents: &BTreeMap<VarId, Size>) -> bool {
        let (c, var) = (self.c, self.var);
        if !self.per_row.is(1) {
            // A flat loop: exactly element `var` of the product.
            return index.constant == c.offset
                && index.terms.len() == 1
                && index.terms[0].0 == var
                && index.terms[0].1.is(1);
        }
        let (mut low, mut high) = (index.constant.clone(), index.constant.clone());
        let mut row_coefficient = Size::constant(0);
        for (v, coefficient) in &index.terms {
            if *v == var {
                row_coefficient = coefficient.clone();
                continue;
            }
            let Some(extent) = extents.get(v) else { return false };
            let reach = coefficient.clone() * (extent.clone() - Size::constant(1));
            if coefficient.is_nonnegative(&at_least_one) {
                high = high + reach;
            } else if (-coefficient.clone()).is_nonnegative(&at_least_one) {
                low = low + reach;
            } else {
                return false;
            }
        }
        // offset <= low and high <= offset + n - 1
        row_coefficient == c.row_stride
            && c.offset.provably_le(&low, &at_least_one)
            && high.provably_le(&(c.offset.clone() + self.n.clone() - Size::constant(1)), &at_least_one)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::parse_plan;

    fn kernel(loop_body: &str, extent: u64) -> Kernel {
        let text = format!(
            "plan f {{
  b0: f32[12] input 0
  b1: f32[6] input 1
  b2: f32[9] temp
  b3: f32[8] output 0
  kernel k {{
    gemm(batch=1, m=4, n=2, k=3, a=b0[0, 3, 12], b=b1[0, 2, 6], c=b2[0, 2, 8])
    for i0 in 0..{extent} parallel {{
      {loop_body}
    }}
  }}
}}"
        );
        parse_plan(&text).unwrap_or_else(|e| panic!("{e}\n{text}")).kernels.remove(0)
    }

    #[test]
    fn a_loop_over_rows_or_elements_reading_its_own_row_is_an_epilogue() {
        let rows = kernel("for i1 in 0..2 {\n        b3[2*i0 + i1] = max(b2[2*i0 + i1], const(f32, 0.0))\n      }", 4);
        assert_eq!(gemm_epilogue(&rows).map(|e| e.per_row), Some(Size::constant(1)));
        let flat = kernel("b3[i0] = max(b2[i0], const(f32, 0.0))", 8);
        assert_eq!(gemm_epilogue(&flat).map(|e| e.per_row), Some(Size::constant(2)));
    }

    #[test]
    fn reading_another_row_or_writing_an_operand_is_not() {
        let next_row = kernel("for i1 in 0..2 {\n        b3[2*i0 + i1] = b2[i1]\n      }", 4);
        assert!(gemm_epilogue(&next_row).is_none(), "row 0 read by every row");
        let shifted = kernel("b3[i0] = b2[i0 + 1]", 8);
        assert!(gemm_epilogue(&shifted).is_none(), "element i0 + 1 is the next row's for odd i0");
        let writes_operand = kernel("b1[0] = const(f32, 1.0)", 8);
        assert!(gemm_epilogue(&writes_operand).is_none(), "the GEMM of a later row block reads b1");
        let other_extent = kernel("b3[0] = b2[0]", 3);
        assert!(gemm_epilogue(&other_extent).is_none());
    }
}

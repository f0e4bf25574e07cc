//! Loop nests and the lanes they ask for: the shapes every lowering builds.

use kiln_ir::DType;
use kiln_ir::kernel::{Affine, KExpr, KStmt, Size, VarId};

use super::Lowering;

impl Lowering<'_> {
    /// Loops over `extents` around `inner`, the outermost parallel. A loop
    /// of one iteration is left out and its variable read as 0, so that the
    /// parallel loop is one with iterations to share (a convolution's
    /// weight gradient has a batch of one).
    pub(super) fn nest(vars: &[VarId], extents: &[Size], inner: Vec<KStmt>) -> Vec<KStmt> {
        let mut body = inner;
        for (&var, _) in vars.iter().zip(extents).filter(|(_, e)| e.is(1)) {
            body.iter_mut().for_each(|s| without_var(s, var));
        }
        let kept: Vec<(VarId, Size)> =
            vars.iter().copied().zip(extents.iter().cloned()).filter(|(_, e)| !e.is(1)).collect();
        for (k, (var, extent)) in kept.into_iter().enumerate().rev() {
            body = vec![KStmt::For { var, extent, parallel: k == 0, vector: 1, body }];
        }
        body
    }

    /// Asks for four lanes on the innermost loop of `body`, a loop nest
    /// around one store of `dtype` values, when it is f32 and that loop has
    /// at least four iterations at the hints. The backend widens the loop
    /// where its accesses are contiguous along it and keeps it scalar
    /// otherwise.
    pub(super) fn ask_for_lanes(&self, mut body: Vec<KStmt>, dtype: DType) -> Vec<KStmt> {
        if dtype != DType::F32 {
            return body;
        }
        let mut level = &mut body;
        while let Some(KStmt::For { body: inner, vector, extent, .. }) = level.first_mut() {
            match inner.as_slice() {
                [KStmt::For { .. }] => level = inner,
                [KStmt::Store { .. }] if self.at_hint(extent) >= 4 => {
                    *vector = 4;
                    break;
                }
                _ => break,
            }
        }
        body
    }

    /// Asks for four lanes on the innermost loop of `body`, a loop nest
    /// around reductions (f32 accumulators declared, one loop updating
    /// them, stores of their results), when that loop has at least four
    /// iterations at the hints: neighbouring outputs, a pooling window's or
    /// a row sum's, reduce side by side. The backend widens the loop where
    /// its reads and stores are contiguous along it.
    pub(super) fn ask_for_column_lanes(&self, mut body: Vec<KStmt>) -> Vec<KStmt> {
        let mut level = &mut body;
        while let Some(KStmt::For { var, body: inner, vector, extent, .. }) = level.first_mut() {
            if let [KStmt::For { .. }] = inner.as_slice() {
                level = inner;
                continue;
            }
            let declared = inner.iter().take_while(|s| matches!(s, KStmt::AccInit { .. })).count();
            let f32_accs = inner[..declared].iter().all(|s| matches!(s, KStmt::AccInit { dtype: DType::F32, .. }));
            if declared > 0 && f32_accs && self.at_hint(extent) >= 4 && inner.iter().all(|s| moves_by_one(s, *var)) {
                *vector = 4;
            }
            break;
        }
        body
    }

    /// Loops without parallelism around one accumulator update; the
    /// innermost asks for four lanes when it is long enough at the hints
    /// (the backend widens it when its accesses are contiguous along it).
    pub(super) fn nest_serial(&self, vars: &[VarId], extents: &[Size], inner: Vec<KStmt>) -> Vec<KStmt> {
        let update = matches!(inner.as_slice(), [KStmt::AccUpdate { .. }]);
        let mut body = inner;
        for (k, (&var, extent)) in vars.iter().zip(extents).enumerate().rev() {
            let vector = if update && k == vars.len() - 1 && self.at_hint(extent) >= 16 { 4 } else { 1 };
            body = vec![KStmt::For { var, extent: extent.clone(), parallel: false, vector, body }];
        }
        body
    }
}

/// Whether every load and store in `s` moves along `v` by at most one
/// element per iteration, stores by exactly one: what four lanes of `v`
/// read and write contiguously.
fn moves_by_one(s: &KStmt, v: VarId) -> bool {
    let loads_ok = !s.any_expr(&|e| match e {
        KExpr::Load { index, .. } => !(index.coefficient_is(v, 0) || index.coefficient_is(v, 1)),
        KExpr::Gather { .. } | KExpr::RandomBits { .. } | KExpr::Index { .. } => true,
        _ => false,
    });
    let mut stores_ok = true;
    s.walk(&mut |s| match s {
        KStmt::Store { index, .. } => stores_ok &= index.coefficient_is(v, 1),
        KStmt::ScatterAdd { .. } | KStmt::Call(_) => stores_ok = false,
        KStmt::For { .. } | KStmt::AccInit { .. } | KStmt::AccUpdate { .. } => {}
    });
    loads_ok && stores_ok
}

/// `s` with loop variable `v` read as 0: its terms dropped from every index.
fn without_var(s: &mut KStmt, v: VarId) {
    s.for_each_affine_mut(&mut |a: &mut Affine| a.terms.retain(|(var, _)| *var != v));
}

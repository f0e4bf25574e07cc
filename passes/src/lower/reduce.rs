//! Reductions (with their sibling reductions and epilogues, `fuse::merges`)
//! and pooling windows.

use kiln_ir::kernel::{Affine, BufferId, KExpr, KStmt, Size, VarId};
use kiln_ir::{DType, Literal, NodeId, Op, ReduceKind};

use super::{At, LowerError, Lowering, load, row_major, strides, zero_of};
use crate::fuse::Merge;

impl Lowering<'_> {
    /// The reduction whose epilogue `id` is.
    pub(super) fn epilogue_of(&self, id: NodeId) -> Option<NodeId> {
        let is_host = |m: &Option<Merge>| matches!(m, Some(Merge::Epilogue { into, .. }) if *into == id);
        self.merge.iter().position(is_host).map(|r| NodeId(r as u32))
    }

    /// The kernel of reductions over the same rows (one, or a host and
    /// its siblings): each accumulates in the same loops and stores its
    /// result, or, with `epilogue`, the elementwise node applied to the one
    /// reduction's accumulator is stored instead.
    pub(super) fn reduce_many(
        &mut self,
        members: &[NodeId],
        epilogue: Option<NodeId>,
    ) -> Result<Vec<KStmt>, LowerError> {
        let first = self.f.graph.node(members[0]);
        let Op::Reduce { axes, keepdims, .. } = &first.op else {
            return Err(LowerError::Invalid(format!("{} is not a reduction", members[0])));
        };
        let (axes, keepdims) = (axes.clone(), *keepdims);
        let from = self.shapes[first.args[0].index()].clone();
        let kept: Vec<usize> = (0..from.len()).filter(|k| !axes.contains(k)).collect();
        let outer = self.vars(kept.len());
        let inner = self.vars(axes.len());
        let mut all = vec![VarId(0); from.len()];
        for (k, &axis) in kept.iter().enumerate() {
            all[axis] = outer[k];
        }
        for (k, &axis) in axes.iter().enumerate() {
            all[axis] = inner[k];
        }
        let at = At::Axes(all.iter().map(|&v| Affine::var(v)).collect());
        let kept_shape: Vec<Size> = kept.iter().map(|&k| from[k].clone()).collect();
        let reduced_shape: Vec<Size> = axes.iter().map(|&k| from[k].clone()).collect();
        let index = row_major(&outer, &strides(&kept_shape));
        let (mut body, mut updates, mut stores) = (Vec::new(), Vec::new(), Vec::new());
        for &m in members {
            let node = self.f.graph.node(m);
            let Op::Reduce { kind, .. } = node.op else {
                return Err(LowerError::Invalid(format!("{m} is not a reduction")));
            };
            let acc = self.acc();
            body.push(KStmt::AccInit { acc, dtype: node.ty.dtype, kind });
            updates.push(KStmt::AccUpdate { acc, value: self.value_of(node.args[0], &at)? });
            let (buffer, value) = match epilogue {
                Some(c) => {
                    // The epilogue's own indices: the kept axes, and 0 on kept dimensions of size 1.
                    let mut outer_vars = outer.iter();
                    let c_at: Vec<Affine> = (0..from.len())
                        .filter(|k| keepdims || !axes.contains(k))
                        .map(|k| {
                            if axes.contains(&k) {
                                Affine::constant(0)
                            } else {
                                outer_vars.next().map_or(Affine::constant(0), |&v| Affine::var(v))
                            }
                        })
                        .collect();
                    self.acc_of.insert(m, acc);
                    let value = self.expr_of(c, &At::Axes(c_at));
                    self.acc_of.remove(&m);
                    // Kept for later readers: stored as well.
                    if matches!(self.merge[m.index()], Some(Merge::Epilogue { keep: true, .. })) {
                        let buffer = self.node_buffer[m.index()];
                        stores.push(KStmt::Store { buffer, index: index.clone(), value: KExpr::Acc(acc) });
                    }
                    (self.node_buffer[c.index()], value?)
                }
                None => (self.node_buffer[m.index()], KExpr::Acc(acc)),
            };
            stores.push(KStmt::Store { buffer, index: index.clone(), value });
        }
        body.extend(self.nest_serial(&inner, &reduced_shape, updates));
        body.extend(stores);
        Ok(self.ask_for_column_lanes(Self::nest(&outer, &kept_shape, body)))
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn pool(
        &mut self,
        kind: ReduceKind,
        window: &[u64],
        stride: &[u64],
        padding: &[(u64, u64)],
        x: BufferId,
        xs: &[Size],
        out: BufferId,
        os: &[Size],
        dtype: DType,
    ) -> Vec<KStmt> {
        let identity = match (kind, dtype) {
            (ReduceKind::Sum, d) => zero_of(d),
            (ReduceKind::Max, DType::I32) => KExpr::Const { value: Literal::Int(i64::from(i32::MIN)), dtype },
            (ReduceKind::Max, d) if d.is_int() => KExpr::Const { value: Literal::Int(i64::MIN), dtype },
            (ReduceKind::Max, d) => KExpr::Const { value: Literal::float(f64::NEG_INFINITY), dtype: d },
        };
        let (xp, ps, mut body) = self.padded_copy(x, xs, padding, identity, dtype);
        let outs = self.vars(os.len());
        let ks = self.vars(window.len());
        let x_strides = strides(&ps);
        let index = (0..os.len()).fold(Affine::default(), |a, d| {
            a.plus_term(outs[d], x_strides[d].clone() * Size::from(stride[d])).plus_term(ks[d], x_strides[d].clone())
        });
        let acc = self.acc();
        let mut inner = vec![KStmt::AccInit { acc, dtype, kind }];
        let window: Vec<Size> = window.iter().map(|&w| Size::from(w)).collect();
        inner.extend(self.nest_serial(&ks, &window, vec![KStmt::AccUpdate { acc, value: load(xp, index) }]));
        inner.push(KStmt::Store { buffer: out, index: row_major(&outs, &strides(os)), value: KExpr::Acc(acc) });
        body.extend(self.ask_for_column_lanes(Self::nest(&outs, os, inner)));
        body
    }
}

//! Copies: permutes, slices, pads, concatenations, gathers and
//! scatter-adds, and the padded copies convolution and pooling read.

use kiln_ir::kernel::{Affine, BufferId, BufferRole, KExpr, KStmt, Size};
use kiln_ir::{DType, NodeId};

use super::{Lowering, load, numel, row_major, strides, zero_of};

impl Lowering<'_> {
    /// Copies `from` (shaped `from_shape`) into `to` (shaped `to_shape`) at
    /// offset `at` along each axis.
    pub(super) fn copy_into(
        &mut self,
        from: BufferId,
        from_shape: &[Size],
        to: BufferId,
        to_shape: &[Size],
        at: &[Size],
    ) -> Vec<KStmt> {
        let vars = self.vars(from_shape.len());
        let to_strides = strides(to_shape);
        let target = (0..to_shape.len()).fold(Affine::default(), |a, k| {
            a.plus_term(vars[k], to_strides[k].clone()).plus(at[k].clone() * to_strides[k].clone())
        });
        let store =
            KStmt::Store { buffer: to, index: target, value: load(from, row_major(&vars, &strides(from_shape))) };
        let dtype = self.buffers[to.0 as usize].dtype;
        self.ask_for_lanes(Self::nest(&vars, from_shape, vec![store]), dtype)
    }

    /// A zero-initialized (or `fill`-initialized) copy of `x` with `padding`
    /// around each axis, in a new buffer; returns it, its shape and the
    /// statements that fill it.
    pub(super) fn padded_copy(
        &mut self,
        x: BufferId,
        xs: &[Size],
        padding: &[(u64, u64)],
        fill: KExpr,
        dtype: DType,
    ) -> (BufferId, Vec<Size>, Vec<KStmt>) {
        if padding.iter().all(|&p| p == (0, 0)) {
            return (x, xs.to_vec(), Vec::new());
        }
        let shape: Vec<Size> = xs.iter().zip(padding).map(|(d, &(lo, hi))| d.clone() + Size::from(lo + hi)).collect();
        let padded = self.new_buffer(BufferRole::Temp, dtype, numel(&shape));
        let mut body = self.elementwise(padded, &shape, |_| fill);
        let at: Vec<Size> = padding.iter().map(|p| Size::from(p.0)).collect();
        body.extend(self.copy_into(x, xs, padded, &shape, &at));
        (padded, shape, body)
    }

    /// `out[v] = a[permuted v]`: output axis `k` is the operand's axis `perm[k]`.
    pub(super) fn permute(&mut self, id: NodeId, perm: &[usize]) -> Vec<KStmt> {
        let (a, from, out, shape) = self.unary_copy(id);
        let from_strides = strides(&from);
        self.elementwise(out, &shape, |v| {
            let index = perm
                .iter()
                .enumerate()
                .fold(Affine::default(), |acc, (k, &p)| acc.plus_term(v[k], from_strides[p].clone()));
            load(a, index)
        })
    }

    /// Every `step`-th element of `axis` from `start`.
    pub(super) fn slice(&mut self, id: NodeId, axis: usize, start: u64, step: u64) -> Vec<KStmt> {
        let (a, from, out, shape) = self.unary_copy(id);
        let from_strides = strides(&from);
        let (start, step) = (Size::from(start), Size::from(step));
        self.elementwise(out, &shape, |v| {
            let index = (0..from.len()).fold(Affine::default(), |acc, k| {
                let stride = from_strides[k].clone();
                if k == axis {
                    acc.plus_term(v[k], step.clone() * stride.clone()).plus(start.clone() * stride)
                } else {
                    acc.plus_term(v[k], stride)
                }
            });
            load(a, index)
        })
    }

    /// Zeros, then the operand copied in at the low padding of each axis.
    pub(super) fn pad(&mut self, id: NodeId, padding: &[(u64, u64)], dtype: DType) -> Vec<KStmt> {
        let (a, from, out, shape) = self.unary_copy(id);
        let mut body = self.elementwise(out, &shape, |_| zero_of(dtype));
        let at: Vec<Size> = padding.iter().map(|p| Size::from(p.0)).collect();
        body.extend(self.copy_into(a, &from, out, &shape, &at));
        body
    }

    /// Each operand copied in after the previous one along `axis`.
    pub(super) fn concat(&mut self, id: NodeId, axis: usize) -> Vec<KStmt> {
        let args = self.f.graph.node(id).args.clone();
        let (out, shape) = (self.node_buffer[id.index()], self.shapes[id.index()].clone());
        let mut body = Vec::new();
        let mut offset = Size::constant(0);
        for a in args {
            let (from_buffer, from) = (self.node_buffer[a.index()], self.shapes[a.index()].clone());
            let mut at = vec![Size::constant(0); shape.len()];
            at[axis] = offset.clone();
            body.extend(self.copy_into(from_buffer, &from, out, &shape, &at));
            offset = offset + from[axis].clone();
        }
        body
    }

    /// `out[.., i.., ..] = x[.., idx[i..], ..]`, each index checked against
    /// the length of `axis`.
    pub(super) fn gather(&mut self, id: NodeId, axis: usize) -> Vec<KStmt> {
        let args = self.f.graph.node(id).args.clone();
        let (out, shape) = (self.node_buffer[id.index()], self.shapes[id.index()].clone());
        let (x, xs) = (self.node_buffer[args[0].index()], self.shapes[args[0].index()].clone());
        let (idx, is) = (self.node_buffer[args[1].index()], self.shapes[args[1].index()].clone());
        let (x_strides, i_strides) = (strides(&xs), strides(&is));
        let ir = is.len();
        self.elementwise(out, &shape, |v| {
            let mut base = Affine::default();
            for k in 0..axis {
                base = base.plus_term(v[k], x_strides[k].clone());
            }
            for k in axis + 1..xs.len() {
                base = base.plus_term(v[k - 1 + ir], x_strides[k].clone());
            }
            let index = row_major(&v[axis..axis + ir], &i_strides);
            KExpr::Gather {
                buffer: x,
                base,
                index: Box::new(load(idx, index)),
                stride: x_strides[axis].clone(),
                bound: xs[axis].clone(),
            }
        })
    }

    /// A copy of the base, then each update added at its checked index, in
    /// order (repeated indices accumulate).
    pub(super) fn scatter_add(&mut self, id: NodeId, axis: usize) -> Vec<KStmt> {
        let args = self.f.graph.node(id).args.clone();
        let (out, shape) = (self.node_buffer[id.index()], self.shapes[id.index()].clone());
        let [base, idx, upd] = [0, 1, 2].map(|k| self.node_buffer[args[k].index()]);
        let (is, us) = (self.shapes[args[1].index()].clone(), self.shapes[args[2].index()].clone());
        let mut body = self.copy_into(base, &shape, out, &shape, &vec![Size::constant(0); shape.len()]);
        let vars = self.vars(us.len());
        let (o_strides, i_strides, u_strides) = (strides(&shape), strides(&is), strides(&us));
        let ir = is.len();
        let mut target = Affine::default();
        for k in 0..axis {
            target = target.plus_term(vars[k], o_strides[k].clone());
        }
        for k in axis + 1..shape.len() {
            target = target.plus_term(vars[k - 1 + ir], o_strides[k].clone());
        }
        let scatter = KStmt::ScatterAdd {
            buffer: out,
            base: target,
            index: load(idx, row_major(&vars[axis..axis + ir], &i_strides)),
            stride: o_strides[axis].clone(),
            bound: shape[axis].clone(),
            value: load(upd, row_major(&vars, &u_strides)),
        };
        let mut nest = Self::nest(&vars, &us, vec![scatter]);
        if let Some(KStmt::For { parallel, .. }) = nest.first_mut() {
            *parallel = false;
        }
        body.extend(nest);
        body
    }

    /// The operand's buffer and shape, and the node's, of a one-operand copy.
    fn unary_copy(&self, id: NodeId) -> (BufferId, Vec<Size>, BufferId, Vec<Size>) {
        let a = self.f.graph.node(id).args[0];
        (
            self.node_buffer[a.index()],
            self.shapes[a.index()].clone(),
            self.node_buffer[id.index()],
            self.shapes[id.index()].clone(),
        )
    }
}

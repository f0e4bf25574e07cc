//! Elementwise kernels: a node and everything inlined into it (`fuse`)
//! computed in one loop nest, each inlined value where it would have been
//! loaded.

use kiln_ir::kernel::{Affine, BufferId, KExpr, KStmt, Size, VarId};
use kiln_ir::{DType, NodeId, Op};

use super::{At, LowerError, Lowering, load, numel, row_major, strides};

impl Lowering<'_> {
    /// A kernel body storing `value(vars)` at every element of `out_shape`.
    pub(super) fn elementwise(
        &mut self,
        out: BufferId,
        out_shape: &[Size],
        value: impl FnOnce(&[VarId]) -> KExpr,
    ) -> Vec<KStmt> {
        let vars = self.vars(out_shape.len());
        let index = row_major(&vars, &strides(out_shape));
        let store = KStmt::Store { buffer: out, index, value: value(&vars) };
        let dtype = self.buffers[out.0 as usize].dtype;
        self.ask_for_lanes(Self::nest(&vars, out_shape, vec![store]), dtype)
    }

    /// The kernel of an elementwise node, computing it and every value
    /// inlined into it: one flat loop when all of them have its shape, a
    /// loop per axis (the innermost asking for four lanes) when a broadcast
    /// or an iota needs per-axis indices.
    pub(super) fn fused_elementwise(
        &mut self,
        id: NodeId,
        out: BufferId,
        shape: &[Size],
        dtype: DType,
    ) -> Result<Vec<KStmt>, LowerError> {
        if !self.needs_axes(id) {
            let i = self.vars(1)[0];
            let value = self.expr_of(id, &At::Flat(Affine::var(i)))?;
            let len = numel(shape);
            let vector = if dtype == DType::F32 && self.at_hint(&len) >= 4 { 4 } else { 1 };
            let store = KStmt::Store { buffer: out, index: Affine::var(i), value };
            return Ok(vec![KStmt::For { var: i, extent: len, parallel: true, vector, body: vec![store] }]);
        }
        let vars = self.vars(shape.len());
        let value = self.expr_of(id, &At::Axes(vars.iter().map(|&v| Affine::var(v)).collect()))?;
        let store = KStmt::Store { buffer: out, index: row_major(&vars, &strides(shape)), value };
        Ok(self.ask_for_lanes(Self::nest(&vars, shape, vec![store]), dtype))
    }

    /// Whether computing `id` with what is inlined into it needs per-axis
    /// indices (a broadcast or an iota among them).
    pub(super) fn needs_axes(&self, id: NodeId) -> bool {
        let node = self.f.graph.node(id);
        if matches!(node.op, Op::Reshape { .. }) {
            // Evaluated at a flat index (or its one element), whatever its operand is.
            return false;
        }
        matches!(node.op, Op::Broadcast { .. } | Op::Iota { .. } | Op::Permute { .. })
            || node.args.iter().any(|&a| self.inlined[a.index()] && self.needs_axes(a))
    }

    /// The value of `node` at `at`: loaded from its buffer, or computed
    /// inline when it is inlined.
    pub(super) fn value_of(&mut self, node: NodeId, at: &At) -> Result<KExpr, LowerError> {
        if let Some(&acc) = self.acc_of.get(&node) {
            return Ok(KExpr::Acc(acc));
        }
        if self.inlined[node.index()] {
            return self.expr_of(node, at);
        }
        let buffer = self.node_buffer[node.index()];
        Ok(load(buffer, self.element(node, at)))
    }

    /// The row-major element index of `at` in `node`'s shape.
    pub(super) fn element(&self, node: NodeId, at: &At) -> Affine {
        match at {
            At::Flat(i) => i.clone(),
            At::Axes(axes) => {
                let s = strides(&self.shapes[node.index()]);
                axes.iter().zip(&s).fold(Affine::default(), |acc, (a, st)| acc.add(&a.times(st)))
            }
        }
    }

    /// The expression computing elementwise `node` at `at`, its operands
    /// loaded or computed inline.
    pub(super) fn expr_of(&mut self, id: NodeId, at: &At) -> Result<KExpr, LowerError> {
        let node = self.f.graph.node(id);
        let args = node.args.clone();
        let operand = |l: &mut Self, k: usize| l.value_of(args[k], at).map(Box::new);
        Ok(match &node.op {
            Op::Constant { value, dtype, .. } => KExpr::Const { value: *value, dtype: *dtype },
            // The size's value where the plan runs.
            Op::DimValue { symbol } => {
                KExpr::Index { index: Affine::constant(Size::symbol(symbol.clone())), dtype: DType::I64 }
            }
            Op::Iota { axis, dtype, .. } => match at {
                At::Axes(axes) => KExpr::Index { index: axes[*axis].clone(), dtype: *dtype },
                At::Flat(_) => return Err(LowerError::Invalid("an iota needs per-axis indices".into())),
            },
            Op::RandomBits { stream, dtype, .. } => KExpr::RandomBits {
                key: Box::new(self.value_of(args[0], &At::Flat(Affine::constant(0)))?),
                stream: *stream,
                counter: self.element(id, at),
                dtype: *dtype,
            },
            Op::Unary(u) => KExpr::Unary(*u, operand(self, 0)?),
            Op::Binary(b) => KExpr::Binary(*b, operand(self, 0)?, operand(self, 1)?),
            Op::Compare(c) => KExpr::Compare(*c, operand(self, 0)?, operand(self, 1)?),
            Op::Select => KExpr::Select(operand(self, 0)?, operand(self, 1)?, operand(self, 2)?),
            Op::Cast { to } => KExpr::Cast(*to, operand(self, 0)?),
            Op::Broadcast { .. } => {
                let At::Axes(axes) = at else {
                    return Err(LowerError::Invalid("a broadcast needs per-axis indices".into()));
                };
                let from = self.shapes[args[0].index()].clone();
                let offset = axes.len() - from.len();
                let inner = (0..from.len())
                    .map(|j| if from[j].is(1) { Affine::constant(0) } else { axes[offset + j].clone() })
                    .collect();
                self.value_of(args[0], &At::Axes(inner))?
            }
            // Output axis `k` is the operand's axis `perm[k]`.
            Op::Permute { perm } => {
                let At::Axes(axes) = at else {
                    return Err(LowerError::Invalid("a permute needs per-axis indices".into()));
                };
                let mut inner = vec![Affine::constant(0); axes.len()];
                for (k, &p) in perm.iter().enumerate() {
                    inner[p] = axes[k].clone();
                }
                self.value_of(args[0], &At::Axes(inner))?
            }
            // Fusion inlines a reshape only where this is exact: the one
            // element, or an operand computed from a flat index.
            Op::Reshape { .. } if numel(&self.shapes[id.index()]).is(1) => {
                let zeros = vec![Affine::constant(0); self.shapes[args[0].index()].len()];
                self.value_of(args[0], &At::Axes(zeros))?
            }
            Op::Reshape { .. } => {
                let flat = self.element(id, at);
                self.value_of(args[0], &At::Flat(flat))?
            }
            op => return Err(LowerError::Invalid(format!("{} is not elementwise", kiln_ir::mnemonic(op)))),
        })
    }
}

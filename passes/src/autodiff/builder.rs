//! A small typed builder over one function's graph, for writing
//! vector-Jacobian rules as plain calls (`b.mul(g, y)`). Every node goes
//! through the IR's typing rules; a rule that builds an ill-typed node is a
//! bug in the rule, reported as an error rather than a panic.

use kiln_ir::{
    BinaryOp, CompareOp, DType, Dim, Function, Literal, NodeId, Op, ParamDecl, ReduceKind, Shape, TensorType, UnaryOp,
};

use super::AutodiffError;

pub struct Builder<'a> {
    pub f: Function,
    pub params: &'a [ParamDecl],
}

pub type Result<T> = std::result::Result<T, AutodiffError>;

impl Builder<'_> {
    pub fn ty(&self, id: NodeId) -> TensorType {
        self.f.graph.ty(id).clone()
    }

    pub fn add(&mut self, op: Op, args: &[NodeId]) -> Result<NodeId> {
        let ctx = kiln_ir::TypeContext { inputs: &self.f.inputs, params: self.params };
        let what = kiln_ir::mnemonic(&op);
        self.f.graph.add(&ctx, op, args).map_err(|message| AutodiffError::Internal(format!("{what}: {message}")))
    }

    /// A constant of `value` with the dtype and shape of `like`.
    pub fn splat(&mut self, value: f64, like: &TensorType) -> Result<NodeId> {
        self.add(Op::Constant { value: Literal::float(value), dtype: like.dtype, shape: like.shape.clone() }, &[])
    }

    pub fn splat_of(&mut self, value: f64, like: NodeId) -> Result<NodeId> {
        let ty = self.ty(like);
        self.splat(value, &ty)
    }

    pub fn unary(&mut self, op: UnaryOp, x: NodeId) -> Result<NodeId> {
        self.add(Op::Unary(op), &[x])
    }

    pub fn binary(&mut self, op: BinaryOp, a: NodeId, b: NodeId) -> Result<NodeId> {
        self.add(Op::Binary(op), &[a, b])
    }

    pub fn add_n(&mut self, a: NodeId, b: NodeId) -> Result<NodeId> {
        self.binary(BinaryOp::Add, a, b)
    }

    pub fn sub(&mut self, a: NodeId, b: NodeId) -> Result<NodeId> {
        self.binary(BinaryOp::Sub, a, b)
    }

    pub fn mul(&mut self, a: NodeId, b: NodeId) -> Result<NodeId> {
        self.binary(BinaryOp::Mul, a, b)
    }

    pub fn div(&mut self, a: NodeId, b: NodeId) -> Result<NodeId> {
        self.binary(BinaryOp::Div, a, b)
    }

    pub fn neg(&mut self, a: NodeId) -> Result<NodeId> {
        self.unary(UnaryOp::Neg, a)
    }

    pub fn compare(&mut self, op: CompareOp, a: NodeId, b: NodeId) -> Result<NodeId> {
        self.add(Op::Compare(op), &[a, b])
    }

    pub fn select(&mut self, c: NodeId, a: NodeId, b: NodeId) -> Result<NodeId> {
        self.add(Op::Select, &[c, a, b])
    }

    pub fn cast(&mut self, x: NodeId, to: DType) -> Result<NodeId> {
        if self.ty(x).dtype == to {
            return Ok(x);
        }
        self.add(Op::Cast { to }, &[x])
    }

    pub fn reshape(&mut self, x: NodeId, shape: Shape) -> Result<NodeId> {
        if self.ty(x).shape == shape {
            return Ok(x);
        }
        self.add(Op::Reshape { shape }, &[x])
    }

    pub fn broadcast(&mut self, x: NodeId, shape: Shape) -> Result<NodeId> {
        if self.ty(x).shape == shape {
            return Ok(x);
        }
        self.add(Op::Broadcast { shape }, &[x])
    }

    pub fn permute(&mut self, x: NodeId, perm: Vec<usize>) -> Result<NodeId> {
        if perm.iter().enumerate().all(|(i, &p)| i == p) {
            return Ok(x);
        }
        self.add(Op::Permute { perm }, &[x])
    }

    pub fn sum(&mut self, x: NodeId, axes: Vec<usize>, keepdims: bool) -> Result<NodeId> {
        if axes.is_empty() {
            return Ok(x);
        }
        self.add(Op::Reduce { kind: ReduceKind::Sum, axes, keepdims }, &[x])
    }

    /// Elements `start, start+step, ... < stop` of `axis`.
    pub fn slice(&mut self, x: NodeId, axis: usize, start: u64, stop: u64, step: u64) -> Result<NodeId> {
        if start == 0 && step == 1 && self.ty(x).shape.0[axis] == Dim::Const(stop) {
            return Ok(x);
        }
        self.add(Op::Slice { axis, start, stop, step }, &[x])
    }

    /// Pads (positive) or crops (negative) `axis` at both ends.
    pub fn pad_or_crop(&mut self, x: NodeId, axis: usize, before: i64, after: i64) -> Result<NodeId> {
        let size = self.const_dim(x, axis)? as i64;
        let start = (-before).max(0);
        let stop = size - (-after).max(0);
        let mut y = self.slice(x, axis, start as u64, stop.max(start) as u64, 1)?;
        if before > 0 || after > 0 {
            let rank = self.ty(y).rank();
            let mut padding = vec![(0, 0); rank];
            padding[axis] = (before.max(0) as u64, after.max(0) as u64);
            y = self.add(Op::Pad { padding }, &[y])?;
        }
        Ok(y)
    }

    /// Puts `step - 1` zeros after every element of `axis` (the last
    /// element's trailing zeros included): length `L` becomes `L * step`.
    pub fn dilate(&mut self, x: NodeId, axis: usize, step: u64) -> Result<NodeId> {
        self.widen_axis(x, axis, step, |b, y, rank| {
            let mut padding = vec![(0, 0); rank];
            padding[axis + 1] = (0, step - 1);
            b.add(Op::Pad { padding }, &[y])
        })
    }

    /// Repeats every element of `axis` `times` times in place: length `L`
    /// becomes `L * times` (a broadcast between two reshapes).
    pub fn repeat(&mut self, x: NodeId, axis: usize, times: u64) -> Result<NodeId> {
        self.widen_axis(x, axis, times, |b, y, _| {
            let mut shape = b.ty(y).shape.0;
            shape[axis + 1] = Dim::Const(times);
            b.broadcast(y, Shape(shape))
        })
    }

    /// `axis` of length `L` made `L * factor` long: a unit axis inserted
    /// after it, grown to `factor` by `grow` (given the rank with it), and
    /// merged back.
    fn widen_axis(
        &mut self,
        x: NodeId,
        axis: usize,
        factor: u64,
        grow: impl FnOnce(&mut Self, NodeId, usize) -> Result<NodeId>,
    ) -> Result<NodeId> {
        if factor == 1 {
            return Ok(x);
        }
        let ty = self.ty(x);
        let length = self.const_dim(x, axis)?;
        let mut split = ty.shape.0.clone();
        split.insert(axis + 1, Dim::Const(1));
        let y = self.reshape(x, Shape(split))?;
        let y = grow(self, y, ty.rank() + 1)?;
        let mut merged = ty.shape.0.clone();
        merged[axis] = Dim::Const(length * factor);
        self.reshape(y, Shape(merged))
    }

    /// Reverses `axis` (a gather with descending indices).
    pub fn reverse(&mut self, x: NodeId, axis: usize) -> Result<NodeId> {
        let n = self.const_dim(x, axis)?;
        if n <= 1 {
            return Ok(x);
        }
        let shape = Shape::of(&[n]);
        let iota = self.add(Op::Iota { axis: 0, dtype: DType::I64, shape: shape.clone() }, &[])?;
        let last = self.add(Op::Constant { value: Literal::Int(n as i64 - 1), dtype: DType::I64, shape }, &[])?;
        let indices = self.sub(last, iota)?;
        self.add(Op::Gather { axis }, &[x, indices])
    }

    pub fn const_dim(&self, x: NodeId, axis: usize) -> Result<u64> {
        let ty = self.ty(x);
        ty.shape.0[axis]
            .as_const()
            .ok_or_else(|| AutodiffError::Internal(format!("axis {axis} of {ty} must be constant here")))
    }
}

//! The vector-Jacobian rules: given a node `y = op(x..)` and the adjoint `g`
//! of `y`, the contribution to each operand's adjoint. Each rule's identity
//! is written above it; each is checked against central finite differences
//! in `passes/tests/gradients.rs`.

use kiln_ir::{BinaryOp, CompareOp, Dim, Node, NodeId, Op, ReduceKind, Shape, UnaryOp};

use super::builder::{Builder, Result};

/// The contributions to the adjoints of `node`'s operands (`None` where an
/// operand needs none), given `g`, the adjoint of `node` (which is `y`).
pub fn vjp(b: &mut Builder<'_>, node: &Node, y: NodeId, g: NodeId, needs: &[bool]) -> Result<Vec<Option<NodeId>>> {
    let args = &node.args;
    let one = |v: NodeId| Ok(vec![Some(v)]);
    match &node.op {
        Op::Unary(op) => {
            let x = args[0];
            match op {
                // d(-x) = -g
                UnaryOp::Neg => one(b.neg(g)?),
                // d|x| = g * sign(x)
                UnaryOp::Abs => {
                    let s = b.unary(UnaryOp::Sign, x)?;
                    one(b.mul(g, s)?)
                }
                // sign and floor are flat almost everywhere.
                UnaryOp::Sign | UnaryOp::Floor | UnaryOp::Not => Ok(vec![None]),
                // d exp(x) = g * y
                UnaryOp::Exp => one(b.mul(g, y)?),
                // d log(x) = g / x
                UnaryOp::Log => one(b.div(g, x)?),
                // d sqrt(x) = g / (2 y)
                UnaryOp::Sqrt => {
                    let two_y = b.add_n(y, y)?;
                    one(b.div(g, two_y)?)
                }
                // d (1/x) = -g y^2
                UnaryOp::Recip => {
                    let yy = b.mul(y, y)?;
                    let gyy = b.mul(g, yy)?;
                    one(b.neg(gyy)?)
                }
                // d sin(x) = g cos(x)
                UnaryOp::Sin => {
                    let c = b.unary(UnaryOp::Cos, x)?;
                    one(b.mul(g, c)?)
                }
                // d cos(x) = -g sin(x)
                UnaryOp::Cos => {
                    let s = b.unary(UnaryOp::Sin, x)?;
                    let gs = b.mul(g, s)?;
                    one(b.neg(gs)?)
                }
                // d tanh(x) = g (1 - y^2)
                UnaryOp::Tanh => {
                    let yy = b.mul(y, y)?;
                    let ones = b.splat_of(1.0, y)?;
                    let d = b.sub(ones, yy)?;
                    one(b.mul(g, d)?)
                }
            }
        }
        Op::Binary(op) => binary(b, *op, args[0], args[1], y, g, needs),
        // d select(c, a, b) = (select(c, g, 0), select(c, 0, g))
        Op::Select => {
            let zeros = b.splat_of(0.0, g)?;
            let ga = if needs[1] { Some(b.select(args[0], g, zeros)?) } else { None };
            let gb = if needs[2] { Some(b.select(args[0], zeros, g)?) } else { None };
            Ok(vec![None, ga, gb])
        }
        // A float-to-float cast passes the gradient back in the source dtype.
        Op::Cast { .. } => {
            let from = b.ty(args[0]).dtype;
            if from.is_float() { one(b.cast(g, from)?) } else { Ok(vec![None]) }
        }
        Op::StopGradient | Op::Compare(_) | Op::RandomBits { .. } => Ok(vec![None; args.len()]),
        Op::Reduce { kind, axes, keepdims } => reduce(b, *kind, axes, *keepdims, args[0], y, g),
        // d reshape(x) = reshape(g) to x's shape
        Op::Reshape { .. } => {
            let shape = b.ty(args[0]).shape;
            one(b.reshape(g, shape)?)
        }
        // d broadcast(x) = g summed over the broadcast axes
        Op::Broadcast { shape } => {
            let from = b.ty(args[0]).shape;
            let offset = shape.rank() - from.rank();
            let axes: Vec<usize> = (0..shape.rank())
                .filter(|&i| i < offset || (from.0[i - offset] == Dim::Const(1) && shape.0[i] != Dim::Const(1)))
                .collect();
            let summed = b.sum(g, axes, true)?;
            one(b.reshape(summed, from)?)
        }
        // d permute(x, p) = permute(g, p^-1)
        Op::Permute { perm } => {
            let mut inverse = vec![0; perm.len()];
            for (i, &p) in perm.iter().enumerate() {
                inverse[p] = i;
            }
            one(b.permute(g, inverse)?)
        }
        // d slice(x) = g spread back to its positions, zeros elsewhere
        Op::Slice { axis, start, step, .. } => {
            let size = b.const_dim(args[0], *axis)? as i64;
            let dilated = b.dilate(g, *axis, *step)?;
            let length = b.const_dim(dilated, *axis)? as i64;
            let after = size - *start as i64 - length;
            one(b.pad_or_crop(dilated, *axis, *start as i64, after)?)
        }
        // d pad(x) = g cropped back to x
        Op::Pad { padding } => {
            let mut r = g;
            for (axis, &(lo, hi)) in padding.iter().enumerate() {
                if (lo, hi) != (0, 0) {
                    r = b.pad_or_crop(r, axis, -(lo as i64), -(hi as i64))?;
                }
            }
            one(r)
        }
        // d concat(x_1, .., x_n) = the matching slices of g
        Op::Concat { axis } => {
            let mut offset = 0;
            let mut out = Vec::new();
            for (arg, needed) in args.iter().zip(needs) {
                let size = b.const_dim(*arg, *axis)?;
                out.push(if *needed { Some(b.slice(g, *axis, offset, offset + size, 1)?) } else { None });
                offset += size;
            }
            Ok(out)
        }
        // d (a @ b) = (g @ b^T, a^T @ g)
        Op::MatMul => {
            let (x, w) = (args[0], args[1]);
            let rank = b.ty(x).rank();
            let mut swap: Vec<usize> = (0..rank).collect();
            swap.swap(rank - 2, rank - 1);
            let ga = if needs[0] {
                let wt = b.permute(w, swap.clone())?;
                Some(b.add(Op::MatMul, &[g, wt])?)
            } else {
                None
            };
            let gb = if needs[1] {
                let xt = b.permute(x, swap)?;
                Some(b.add(Op::MatMul, &[xt, g])?)
            } else {
                None
            };
            Ok(vec![ga, gb])
        }
        Op::Conv(attrs) => super::window::conv(b, attrs, args[0], args[1], g, needs),
        Op::ConvTranspose { conv, .. } => super::window::conv_transpose(b, conv, args[0], args[1], g, needs),
        Op::ReduceWindow { kind, window, stride, padding } => {
            super::window::reduce_window(b, *kind, window, stride, padding, args[0], y, g).map(|v| vec![Some(v)])
        }
        // d gather(x, i) = scatter_add(0, i, g)
        Op::Gather { axis } => {
            let zeros = b.splat_of(0.0, args[0])?;
            Ok(vec![Some(b.add(Op::ScatterAdd { axis: *axis }, &[zeros, args[1], g])?), None])
        }
        // d scatter_add(base, i, u) = (g, _, gather(g, i))
        Op::ScatterAdd { axis } => {
            let gu = if needs[2] { Some(b.add(Op::Gather { axis: *axis }, &[g, args[1]])?) } else { None };
            Ok(vec![Some(g), None, gu])
        }
        Op::Input { .. } | Op::Param { .. } | Op::Constant { .. } | Op::DimValue { .. } | Op::Iota { .. } => {
            Ok(Vec::new())
        }
    }
}

fn binary(
    b: &mut Builder<'_>,
    op: BinaryOp,
    x: NodeId,
    w: NodeId,
    y: NodeId,
    g: NodeId,
    needs: &[bool],
) -> Result<Vec<Option<NodeId>>> {
    let (ga, gb) = match op {
        // d (a + b) = (g, g)
        BinaryOp::Add => (Some(g), Some(g)),
        // d (a - b) = (g, -g)
        BinaryOp::Sub => (Some(g), if needs[1] { Some(b.neg(g)?) } else { None }),
        // d (a * b) = (g b, g a)
        BinaryOp::Mul => {
            (if needs[0] { Some(b.mul(g, w)?) } else { None }, if needs[1] { Some(b.mul(g, x)?) } else { None })
        }
        // d (a / b) = (g / b, -g y / b)
        BinaryOp::Div => {
            let ga = if needs[0] { Some(b.div(g, w)?) } else { None };
            let gb = if needs[1] {
                let gy = b.mul(g, y)?;
                let q = b.div(gy, w)?;
                Some(b.neg(q)?)
            } else {
                None
            };
            (ga, gb)
        }
        // d max(a, b) = (g m, g (1 - m)) with m = 1 where a > b, 1/2 where a == b
        BinaryOp::Max | BinaryOp::Min => {
            let wins = if op == BinaryOp::Max { CompareOp::Gt } else { CompareOp::Lt };
            let strict = b.compare(wins, x, w)?;
            let tie = b.compare(CompareOp::Eq, x, w)?;
            let (one, half, zero) = (b.splat_of(1.0, g)?, b.splat_of(0.5, g)?, b.splat_of(0.0, g)?);
            let tie_share = b.select(tie, half, zero)?;
            let share = b.select(strict, one, tie_share)?;
            let ga = b.mul(g, share)?;
            (Some(ga), if needs[1] { Some(b.sub(g, ga)?) } else { None })
        }
        // d a^b = (g b a^(b-1), g y log a)
        BinaryOp::Pow => {
            let ga = if needs[0] {
                let ones = b.splat_of(1.0, w)?;
                let bm1 = b.sub(w, ones)?;
                let p = b.binary(BinaryOp::Pow, x, bm1)?;
                let bp = b.mul(w, p)?;
                Some(b.mul(g, bp)?)
            } else {
                None
            };
            let gb = if needs[1] {
                let l = b.unary(UnaryOp::Log, x)?;
                let yl = b.mul(y, l)?;
                Some(b.mul(g, yl)?)
            } else {
                None
            };
            (ga, gb)
        }
        BinaryOp::And | BinaryOp::Or => (None, None),
    };
    Ok(vec![ga, gb])
}

/// d sum(x) = g broadcast back; d max(x) = g shared among the maxima.
fn reduce(
    b: &mut Builder<'_>,
    kind: ReduceKind,
    axes: &[usize],
    keepdims: bool,
    x: NodeId,
    y: NodeId,
    g: NodeId,
) -> Result<Vec<Option<NodeId>>> {
    let xt = b.ty(x);
    let kept = Shape(
        xt.shape.0.iter().enumerate().map(|(i, d)| if axes.contains(&i) { Dim::Const(1) } else { d.clone() }).collect(),
    );
    let gk = if keepdims { g } else { b.reshape(g, kept.clone())? };
    let spread = b.broadcast(gk, xt.shape.clone())?;
    match kind {
        ReduceKind::Sum => Ok(vec![Some(spread)]),
        ReduceKind::Max => {
            let yk = if keepdims { y } else { b.reshape(y, kept)? };
            let ys = b.broadcast(yk, xt.shape.clone())?;
            let is_max = b.compare(CompareOp::Eq, x, ys)?;
            let mask = b.cast(is_max, xt.dtype)?;
            let count = b.sum(mask, axes.to_vec(), true)?;
            let count = b.broadcast(count, xt.shape.clone())?;
            let share = b.div(mask, count)?;
            Ok(vec![Some(b.mul(spread, share)?)])
        }
    }
}

//! Reductions: empty reductions vanish, nested reductions merge into one
//! (one kernel, one pass), negation and scalar factors move out of sums so
//! they apply to the smaller result.

use kiln_ir::{BinaryOp, Op, ReduceKind, Shape, UnaryOp};

use crate::simplify::analysis::KGraph;
use crate::simplify::lang::ENode;
use crate::simplify::rule::{Rule, Term, nodes_where};

pub fn rules() -> Vec<Rule> {
    vec![
        Rule { name: "reduce_no_axes", identity: "reduce(x, axes=[]) = x", apply: reduce_no_axes },
        Rule {
            name: "reduce_reduce",
            identity: "reduce_k(reduce_k(x, a), b) = reduce_k(x, a ∪ b') (b' = b in x's axes; sum and max)",
            apply: reduce_reduce,
        },
        Rule {
            name: "keepdims_then_reshape",
            identity: "reshape(reduce(x, a, keepdims), s) = reduce(x, a) when s is the shape without the kept axes",
            apply: keepdims_then_reshape,
        },
        Rule { name: "sum_of_neg", identity: "sum(-x, a) = -sum(x, a)", apply: sum_of_neg },
        Rule {
            name: "sum_of_scalar_multiple",
            identity: "sum(x * broadcast(c), a) = sum(x, a) * broadcast(c) for a scalar c",
            apply: sum_of_scalar_multiple,
        },
    ]
}

fn reduce_no_axes(_: &KGraph, n: &ENode) -> Option<Term> {
    matches!(&n.op, Op::Reduce { axes, .. } if axes.is_empty()).then(|| Term::Class(n.args[0]))
}

fn reduce_reduce(g: &KGraph, n: &ENode) -> Option<Term> {
    let Op::Reduce { kind, axes: outer, keepdims } = &n.op else { return None };
    if !matches!(kind, ReduceKind::Sum | ReduceKind::Max) {
        return None;
    }
    let inner = nodes_where(g, n.args[0], |op| matches!(op, Op::Reduce { kind: k, keepdims: false, .. } if k == kind))
        .next()?;
    let Op::Reduce { axes: inner_axes, .. } = &inner.op else { return None };
    let rank = g[inner.args[0]].data.ty.rank();
    // The axes of `x` that survive the inner reduction, in order.
    let surviving: Vec<usize> = (0..rank).filter(|a| !inner_axes.contains(a)).collect();
    let mut merged = inner_axes.clone();
    for &b in outer {
        merged.push(*surviving.get(b)?);
    }
    merged.sort_unstable();
    if *keepdims {
        return None;
    }
    Some(Term::op(Op::Reduce { kind: *kind, axes: merged, keepdims: false }, vec![Term::Class(inner.args[0])]))
}

fn keepdims_then_reshape(g: &KGraph, n: &ENode) -> Option<Term> {
    let Op::Reshape { shape } = &n.op else { return None };
    let r = nodes_where(g, n.args[0], |op| matches!(op, Op::Reduce { keepdims: true, .. })).next()?;
    let Op::Reduce { kind, axes, .. } = &r.op else { return None };
    let x_shape = &g[r.args[0]].data.ty.shape;
    let dropped =
        Shape(x_shape.0.iter().enumerate().filter(|(i, _)| !axes.contains(i)).map(|(_, d)| d.clone()).collect());
    (dropped == *shape).then(|| {
        Term::op(Op::Reduce { kind: *kind, axes: axes.clone(), keepdims: false }, vec![Term::Class(r.args[0])])
    })
}

fn sum_of_neg(g: &KGraph, n: &ENode) -> Option<Term> {
    if !matches!(n.op, Op::Reduce { kind: ReduceKind::Sum, .. }) {
        return None;
    }
    let neg = nodes_where(g, n.args[0], |op| *op == Op::Unary(UnaryOp::Neg)).next()?;
    let sum = Term::op(n.op.clone(), vec![Term::Class(neg.args[0])]);
    Some(Term::op(Op::Unary(UnaryOp::Neg), vec![sum]))
}

fn sum_of_scalar_multiple(g: &KGraph, n: &ENode) -> Option<Term> {
    if !matches!(n.op, Op::Reduce { kind: ReduceKind::Sum, .. }) {
        return None;
    }
    for m in nodes_where(g, n.args[0], |op| *op == Op::Binary(BinaryOp::Mul)) {
        for (x, c) in [(m.args[0], m.args[1]), (m.args[1], m.args[0])] {
            let Some(b) = nodes_where(g, c, |op| matches!(op, Op::Broadcast { .. })).next() else { continue };
            if g[b.args[0]].data.ty.rank() != 0 {
                continue;
            }
            let sum = Term::op(n.op.clone(), vec![Term::Class(x)]);
            return Some(Term::op(
                Op::Binary(BinaryOp::Mul),
                vec![sum, Term::op(Op::Broadcast { shape: out_shape(g, n)? }, vec![Term::Class(b.args[0])])],
            ));
        }
    }
    None
}

/// The shape of `n`'s class, as the reduction types it.
fn out_shape(g: &KGraph, n: &ENode) -> Option<Shape> {
    let arg = &g[n.args[0]].data.ty;
    g.analysis.infer(&n.op, &[arg]).map(|t| t.shape)
}

//! Broadcasting and layout: chains of broadcasts, reshapes and permutes
//! collapse, identities vanish, and elementwise ops move in front of
//! broadcasts so they run on the smaller tensor.

use kiln_ir::{Op, Shape, TensorType};

use crate::simplify::analysis::KGraph;
use crate::simplify::lang::ENode;
use crate::simplify::rule::{Rule, Term, nodes_where};

pub fn rules() -> Vec<Rule> {
    vec![
        Rule { name: "broadcast_identity", identity: "broadcast(x: T[s], s) = x", apply: broadcast_identity },
        Rule {
            name: "broadcast_broadcast",
            identity: "broadcast(broadcast(x, s), t) = broadcast(x, t)",
            apply: broadcast_broadcast,
        },
        Rule { name: "reshape_identity", identity: "reshape(x: T[s], s) = x", apply: reshape_identity },
        Rule { name: "reshape_reshape", identity: "reshape(reshape(x, s), t) = reshape(x, t)", apply: reshape_reshape },
        Rule { name: "permute_identity", identity: "permute(x, [0, 1, ..]) = x", apply: permute_identity },
        Rule {
            name: "permute_permute",
            identity: "permute(permute(x, p), q) = permute(x, p[q[i]])",
            apply: permute_permute,
        },
        Rule {
            name: "unary_before_broadcast",
            identity: "f(broadcast(x, s)) = broadcast(f(x), s) for an elementwise f of one operand",
            apply: unary_before_broadcast,
        },
        Rule {
            name: "unary_before_reshape",
            identity: "f(reshape(x, s)) = reshape(f(x), s) for an elementwise f of one operand",
            apply: unary_before_reshape,
        },
        Rule {
            name: "binary_before_broadcast",
            identity: "f(broadcast(x, s), broadcast(y, s)) = broadcast(f(x, y), s) when x and y have one type",
            apply: binary_before_broadcast,
        },
        Rule {
            name: "reshape_of_broadcast_scalar",
            identity: "reshape(broadcast(x, s), t) = broadcast(reshape(x, []), t) when x has one element",
            apply: reshape_of_broadcast_scalar,
        },
    ]
}

fn shape_of(g: &KGraph, id: egg::Id) -> &Shape {
    &g[id].data.ty.shape
}

/// The target shape of a broadcast or a reshape.
fn target(op: &Op) -> Option<&Shape> {
    match op {
        Op::Broadcast { shape } | Op::Reshape { shape } => Some(shape),
        _ => None,
    }
}

/// `op(x, s) = x` when `x` already has shape `s`.
fn to_own_shape(g: &KGraph, n: &ENode, is_op: fn(&Op) -> bool) -> Option<Term> {
    (is_op(&n.op) && target(&n.op)? == shape_of(g, n.args[0])).then(|| Term::Class(n.args[0]))
}

/// `op(op(x, s), t) = op(x, t)`.
fn collapse(g: &KGraph, n: &ENode, is_op: fn(&Op) -> bool) -> Option<Term> {
    if !is_op(&n.op) {
        return None;
    }
    let inner = nodes_where(g, n.args[0], is_op).next()?;
    Some(Term::op(n.op.clone(), vec![Term::Class(inner.args[0])]))
}

fn is_broadcast(op: &Op) -> bool {
    matches!(op, Op::Broadcast { .. })
}

fn is_reshape(op: &Op) -> bool {
    matches!(op, Op::Reshape { .. })
}

fn broadcast_identity(g: &KGraph, n: &ENode) -> Option<Term> {
    to_own_shape(g, n, is_broadcast)
}

fn broadcast_broadcast(g: &KGraph, n: &ENode) -> Option<Term> {
    collapse(g, n, is_broadcast)
}

fn reshape_identity(g: &KGraph, n: &ENode) -> Option<Term> {
    to_own_shape(g, n, is_reshape)
}

fn reshape_reshape(g: &KGraph, n: &ENode) -> Option<Term> {
    collapse(g, n, is_reshape)
}

fn permute_identity(_: &KGraph, n: &ENode) -> Option<Term> {
    let Op::Permute { perm } = &n.op else { return None };
    perm.iter().enumerate().all(|(i, &p)| i == p).then(|| Term::Class(n.args[0]))
}

fn permute_permute(g: &KGraph, n: &ENode) -> Option<Term> {
    let Op::Permute { perm: q } = &n.op else { return None };
    let inner = nodes_where(g, n.args[0], |op| matches!(op, Op::Permute { .. })).next()?;
    let Op::Permute { perm: p } = &inner.op else { return None };
    let composed = q.iter().map(|&i| p.get(i).copied()).collect::<Option<Vec<usize>>>()?;
    Some(Term::op(Op::Permute { perm: composed }, vec![Term::Class(inner.args[0])]))
}

fn elementwise_unary(op: &Op) -> bool {
    matches!(op, Op::Unary(_) | Op::Cast { .. })
}

/// `f(op(x)) = op(f(x))` for an elementwise `f` of one operand.
fn unary_before(g: &KGraph, n: &ENode, is_op: fn(&Op) -> bool) -> Option<Term> {
    if !elementwise_unary(&n.op) {
        return None;
    }
    let layout = nodes_where(g, n.args[0], is_op).next()?;
    let inner = Term::op(n.op.clone(), vec![Term::Class(layout.args[0])]);
    Some(Term::op(layout.op.clone(), vec![inner]))
}

fn unary_before_broadcast(g: &KGraph, n: &ENode) -> Option<Term> {
    unary_before(g, n, is_broadcast)
}

fn unary_before_reshape(g: &KGraph, n: &ENode) -> Option<Term> {
    unary_before(g, n, is_reshape)
}

fn binary_before_broadcast(g: &KGraph, n: &ENode) -> Option<Term> {
    if !matches!(n.op, Op::Binary(_) | Op::Compare(_)) {
        return None;
    }
    let broadcasts = |id| nodes_where(g, id, |op| matches!(op, Op::Broadcast { .. }));
    for x in broadcasts(n.args[0]) {
        for y in broadcasts(n.args[1]) {
            let (tx, ty): (&TensorType, &TensorType) = (&g[x.args[0]].data.ty, &g[y.args[0]].data.ty);
            if tx == ty {
                let inner = Term::op(n.op.clone(), vec![Term::Class(x.args[0]), Term::Class(y.args[0])]);
                return Some(Term::op(x.op.clone(), vec![inner]));
            }
        }
    }
    None
}

fn reshape_of_broadcast_scalar(g: &KGraph, n: &ENode) -> Option<Term> {
    let Op::Reshape { shape } = &n.op else { return None };
    let b = nodes_where(g, n.args[0], |op| matches!(op, Op::Broadcast { .. })).next()?;
    let x = b.args[0];
    let one_element = shape_of(g, x).0.iter().all(|d| *d == kiln_ir::Dim::Const(1));
    if !one_element {
        return None;
    }
    let scalar = Term::op(Op::Reshape { shape: Shape::scalar() }, vec![Term::Class(x)]);
    Some(Term::op(Op::Broadcast { shape: shape.clone() }, vec![scalar]))
}

//! Algebraic identities of elementwise arithmetic.
//!
//! Only identities that hold for every finite and non-finite input up to
//! rounding (the sign of a zero aside) are here: `x * 0 = 0` is not (it is
//! NaN for an infinite `x`), nor is `x - x = 0`.

use kiln_ir::{BinaryOp, Literal, Op, UnaryOp};

use crate::simplify::analysis::KGraph;
use crate::simplify::lang::ENode;
use crate::simplify::rule::{Rule, Term, node_where, splat_float};

pub fn rules() -> Vec<Rule> {
    vec![
        Rule { name: "add_zero", identity: "x + 0 = 0 + x = x", apply: add_zero },
        Rule { name: "sub_zero", identity: "x - 0 = x", apply: sub_zero },
        Rule { name: "mul_one", identity: "x * 1 = 1 * x = x", apply: mul_one },
        Rule { name: "div_one", identity: "x / 1 = x", apply: div_one },
        Rule { name: "div_by_constant", identity: "x / c = x * (1/c) for a float constant c", apply: div_by_constant },
        Rule {
            name: "mul_reciprocal",
            identity: "x * (1 / y) = x * recip(y) = x / y for floats",
            apply: mul_reciprocal,
        },
        Rule { name: "neg_neg", identity: "-(-x) = x", apply: neg_neg },
        Rule { name: "add_neg", identity: "x + (-y) = x - y", apply: add_neg },
        Rule { name: "sub_neg", identity: "x - (-y) = x + y", apply: sub_neg },
        Rule { name: "add_commute", identity: "x + y = y + x", apply: commute_add },
        Rule { name: "mul_commute", identity: "x * y = y * x", apply: commute_mul },
        Rule { name: "factor_mul", identity: "a * b + a * c = a * (b + c)", apply: factor_mul },
        Rule { name: "select_same", identity: "select(c, x, x) = x", apply: select_same },
        Rule {
            name: "stop_gradient_identity",
            identity: "stop_gradient(x) = x (after differentiation)",
            apply: stop_gradient,
        },
    ]
}

fn binary(node: &ENode, op: BinaryOp) -> Option<(egg::Id, egg::Id)> {
    (node.op == Op::Binary(op)).then(|| (node.args[0], node.args[1]))
}

fn is_float_splat(egraph: &KGraph, id: egg::Id, value: f64) -> bool {
    splat_float(egraph, id) == Some(value)
}

/// Whether class `id` is a splat of `value` (as a float or an integer).
fn is_splat(g: &KGraph, id: egg::Id, value: i64) -> bool {
    is_float_splat(g, id, value as f64) || g[id].data.splat == Some(Literal::Int(value))
}

/// `x op e = e op x = x` for the neutral element `e` of a commutative `op`.
fn neutral_either_side(g: &KGraph, n: &ENode, op: BinaryOp, e: i64) -> Option<Term> {
    let (x, y) = binary(n, op)?;
    if is_splat(g, y, e) { Some(Term::Class(x)) } else { is_splat(g, x, e).then_some(Term::Class(y)) }
}

/// `x op e = x` for the right neutral element `e` of `op`.
fn neutral_right(g: &KGraph, n: &ENode, op: BinaryOp, e: i64) -> Option<Term> {
    let (x, y) = binary(n, op)?;
    is_splat(g, y, e).then_some(Term::Class(x))
}

fn add_zero(g: &KGraph, n: &ENode) -> Option<Term> {
    neutral_either_side(g, n, BinaryOp::Add, 0)
}

fn sub_zero(g: &KGraph, n: &ENode) -> Option<Term> {
    neutral_right(g, n, BinaryOp::Sub, 0)
}

fn mul_one(g: &KGraph, n: &ENode) -> Option<Term> {
    neutral_either_side(g, n, BinaryOp::Mul, 1)
}

fn div_one(g: &KGraph, n: &ENode) -> Option<Term> {
    neutral_right(g, n, BinaryOp::Div, 1)
}

fn div_by_constant(g: &KGraph, n: &ENode) -> Option<Term> {
    let (x, y) = binary(n, BinaryOp::Div)?;
    let c = splat_float(g, y)?;
    let recip = 1.0 / c;
    if c == 0.0 || !recip.is_finite() || !g[y].data.ty.dtype.is_float() {
        return None;
    }
    let ty = &g[y].data.ty;
    Some(Term::op(Op::Binary(BinaryOp::Mul), vec![Term::Class(x), Term::constant(Literal::float(recip), ty)]))
}

/// One division instead of a reciprocal and a product (a sigmoid's
/// `1 / (1 + e^-x)` scaling another value), and one rounding fewer.
/// Zeros and infinities agree: `x * (1/0)` and `x / 0` are both ±inf, or
/// NaN for `x = 0`; `x * (1/inf)` and `x / inf` both 0, or NaN for an
/// infinite `x`.
fn mul_reciprocal(g: &KGraph, n: &ENode) -> Option<Term> {
    let (x, r) = binary(n, BinaryOp::Mul)?;
    if !g[r].data.ty.dtype.is_float() {
        return None;
    }
    let y = g[r].nodes.iter().find_map(|m| match binary(m, BinaryOp::Div) {
        Some((one, y)) => is_float_splat(g, one, 1.0).then_some(y),
        None => (m.op == Op::Unary(UnaryOp::Recip)).then(|| m.args[0]),
    })?;
    Some(Term::op(Op::Binary(BinaryOp::Div), vec![Term::Class(x), Term::Class(y)]))
}

fn neg_neg(g: &KGraph, n: &ENode) -> Option<Term> {
    if n.op != Op::Unary(UnaryOp::Neg) {
        return None;
    }
    let inner = node_where(g, n.args[0], |op| *op == Op::Unary(UnaryOp::Neg))?;
    Some(Term::Class(inner.args[0]))
}

fn add_neg(g: &KGraph, n: &ENode) -> Option<Term> {
    let (x, y) = binary(n, BinaryOp::Add)?;
    let neg = node_where(g, y, |op| *op == Op::Unary(UnaryOp::Neg))?;
    Some(Term::op(Op::Binary(BinaryOp::Sub), vec![Term::Class(x), Term::Class(neg.args[0])]))
}

fn sub_neg(g: &KGraph, n: &ENode) -> Option<Term> {
    let (x, y) = binary(n, BinaryOp::Sub)?;
    let neg = node_where(g, y, |op| *op == Op::Unary(UnaryOp::Neg))?;
    Some(Term::op(Op::Binary(BinaryOp::Add), vec![Term::Class(x), Term::Class(neg.args[0])]))
}

fn commute(n: &ENode, op: BinaryOp) -> Option<Term> {
    let (x, y) = binary(n, op)?;
    (x != y).then(|| Term::op(Op::Binary(op), vec![Term::Class(y), Term::Class(x)]))
}

fn commute_add(_: &KGraph, n: &ENode) -> Option<Term> {
    commute(n, BinaryOp::Add)
}

fn commute_mul(_: &KGraph, n: &ENode) -> Option<Term> {
    commute(n, BinaryOp::Mul)
}

fn factor_mul(g: &KGraph, n: &ENode) -> Option<Term> {
    let (l, r) = binary(n, BinaryOp::Add)?;
    let muls = |id| g[id].nodes.iter().filter_map(|m| binary(m, BinaryOp::Mul));
    for (a, b) in muls(l) {
        for (a2, c) in muls(r) {
            if a == a2 {
                let sum = Term::op(Op::Binary(BinaryOp::Add), vec![Term::Class(b), Term::Class(c)]);
                return Some(Term::op(Op::Binary(BinaryOp::Mul), vec![Term::Class(a), sum]));
            }
        }
    }
    None
}

fn select_same(_: &KGraph, n: &ENode) -> Option<Term> {
    (n.op == Op::Select && n.args[1] == n.args[2]).then(|| Term::Class(n.args[1]))
}

fn stop_gradient(_: &KGraph, n: &ENode) -> Option<Term> {
    (n.op == Op::StopGradient).then(|| Term::Class(n.args[0]))
}

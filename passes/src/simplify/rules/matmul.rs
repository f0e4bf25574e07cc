//! Matrix products: negation and scalar factors move to whichever side of
//! a product is smaller, and chains of products re-associate so the cost
//! model can pick the order with fewer flops.

use kiln_ir::{BinaryOp, Op, UnaryOp};

use crate::simplify::analysis::KGraph;
use crate::simplify::lang::ENode;
use crate::simplify::rule::{Rule, Term, nodes_where};

pub fn rules() -> Vec<Rule> {
    vec![
        Rule { name: "matmul_neg", identity: "(-a) @ b = a @ (-b) = -(a @ b)", apply: matmul_neg },
        Rule {
            name: "matmul_scalar_multiple",
            identity: "(a * broadcast(c)) @ b = (a @ b) * broadcast(c) for a scalar c",
            apply: matmul_scalar_multiple,
        },
        Rule { name: "matmul_reassociate_left", identity: "(a @ b) @ c = a @ (b @ c)", apply: reassociate_left },
        Rule { name: "matmul_reassociate_right", identity: "a @ (b @ c) = (a @ b) @ c", apply: reassociate_right },
    ]
}

fn matmul(a: Term, b: Term) -> Term {
    Term::op(Op::MatMul, vec![a, b])
}

fn matmul_neg(g: &KGraph, n: &ENode) -> Option<Term> {
    if n.op != Op::MatMul {
        return None;
    }
    let neg = |id| nodes_where(g, id, |op| *op == Op::Unary(UnaryOp::Neg)).next().map(|m| m.args[0]);
    let product = if let Some(a) = neg(n.args[0]) {
        matmul(Term::Class(a), Term::Class(n.args[1]))
    } else {
        matmul(Term::Class(n.args[0]), Term::Class(neg(n.args[1])?))
    };
    Some(Term::op(Op::Unary(UnaryOp::Neg), vec![product]))
}

fn matmul_scalar_multiple(g: &KGraph, n: &ENode) -> Option<Term> {
    if n.op != Op::MatMul {
        return None;
    }
    let out = g.analysis.infer(&n.op, &[&g[n.args[0]].data.ty, &g[n.args[1]].data.ty])?;
    for m in nodes_where(g, n.args[0], |op| *op == Op::Binary(BinaryOp::Mul)) {
        for (a, c) in [(m.args[0], m.args[1]), (m.args[1], m.args[0])] {
            let Some(b) = nodes_where(g, c, |op| matches!(op, Op::Broadcast { .. })).next() else { continue };
            if g[b.args[0]].data.ty.rank() != 0 {
                continue;
            }
            let scale = Term::op(Op::Broadcast { shape: out.shape.clone() }, vec![Term::Class(b.args[0])]);
            let product = matmul(Term::Class(a), Term::Class(n.args[1]));
            return Some(Term::op(Op::Binary(BinaryOp::Mul), vec![product, scale]));
        }
    }
    None
}

fn reassociate_left(g: &KGraph, n: &ENode) -> Option<Term> {
    if n.op != Op::MatMul {
        return None;
    }
    let ab = nodes_where(g, n.args[0], |op| *op == Op::MatMul).next()?;
    let bc = matmul(Term::Class(ab.args[1]), Term::Class(n.args[1]));
    Some(matmul(Term::Class(ab.args[0]), bc))
}

fn reassociate_right(g: &KGraph, n: &ENode) -> Option<Term> {
    if n.op != Op::MatMul {
        return None;
    }
    let bc = nodes_where(g, n.args[1], |op| *op == Op::MatMul).next()?;
    let ab = matmul(Term::Class(n.args[0]), Term::Class(bc.args[0]));
    Some(matmul(ab, Term::Class(bc.args[1])))
}

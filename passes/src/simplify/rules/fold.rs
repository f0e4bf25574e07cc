//! Constant folding: an op whose operands are splat constants is a splat
//! constant. Float results are computed in f64 with the interpreter's own
//! scalar functions and rounded to f32 for f32 tensors, as the interpreter
//! rounds each f32 op.

use kiln_ir::scalar::{binary_float, binary_int, unary_float, unary_int};
use kiln_ir::{DType, Literal, Op};

use crate::simplify::analysis::KGraph;
use crate::simplify::lang::ENode;
use crate::simplify::rule::{Rule, Term};

pub fn rules() -> Vec<Rule> {
    vec![
        Rule { name: "fold_unary", identity: "f(splat a) = splat f(a)", apply: fold_unary },
        Rule { name: "fold_binary", identity: "f(splat a, splat b) = splat f(a, b)", apply: fold_binary },
        Rule { name: "fold_cast", identity: "cast(splat a) = splat cast(a) (to a float)", apply: fold_cast },
        Rule {
            name: "fold_layout",
            identity: "broadcast / reshape / permute (splat a) = splat a of the new shape",
            apply: fold_layout,
        },
    ]
}

/// `v` as a value of a float `dtype`.
fn round_to(dtype: DType, v: f64) -> f64 {
    if dtype == DType::F32 { v as f32 as f64 } else { v }
}

fn result(g: &KGraph, n: &ENode, value: Literal) -> Option<Term> {
    let types: Vec<_> = n.args.iter().map(|&a| &g[a].data.ty).collect();
    let ty = g.analysis.infer(&n.op, &types)?;
    Some(Term::constant(value, &ty))
}

fn fold_unary(g: &KGraph, n: &ENode) -> Option<Term> {
    let Op::Unary(op) = n.op else { return None };
    let dtype = g[n.args[0]].data.ty.dtype;
    let value = match g[n.args[0]].data.splat? {
        Literal::Float(a) => Literal::float(round_to(dtype, unary_float(op, a.get()))),
        Literal::Int(a) if dtype == DType::I64 => Literal::Int(unary_int(op, a)),
        _ => return None,
    };
    result(g, n, value)
}

fn fold_binary(g: &KGraph, n: &ENode) -> Option<Term> {
    let Op::Binary(op) = n.op else { return None };
    let dtype = g[n.args[0]].data.ty.dtype;
    let value = match (g[n.args[0]].data.splat?, g[n.args[1]].data.splat?) {
        (Literal::Float(a), Literal::Float(b)) => Literal::float(round_to(dtype, binary_float(op, a.get(), b.get()))),
        (Literal::Int(a), Literal::Int(b)) if dtype == DType::I64 => Literal::Int(binary_int(op, a, b)?),
        _ => return None,
    };
    result(g, n, value)
}

fn fold_cast(g: &KGraph, n: &ENode) -> Option<Term> {
    let Op::Cast { to } = n.op else { return None };
    if !to.is_float() {
        return None;
    }
    let value = match g[n.args[0]].data.splat? {
        Literal::Float(a) => a.get(),
        Literal::Int(a) => a as f64,
        Literal::Bool(b) => f64::from(u8::from(b)),
    };
    result(g, n, Literal::float(round_to(to, value)))
}

fn fold_layout(g: &KGraph, n: &ENode) -> Option<Term> {
    if !matches!(n.op, Op::Broadcast { .. } | Op::Reshape { .. } | Op::Permute { .. }) {
        return None;
    }
    result(g, n, g[n.args[0]].data.splat?)
}

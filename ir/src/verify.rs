//! The graph IR verifier. A module that passes it satisfies these invariants:
//!
//! 1. Parameter names are unique and parameter shapes are static.
//! 2. Function names are unique; each function's input names are unique.
//! 3. Every operand of a node is a node defined before it (so the graph is a
//!    DAG in topological order) and every output is a defined node.
//! 4. Every node's type is exactly what [`crate::typing::infer`] gives for
//!    its op and operand types: dtypes, shapes, axes, permutations, element
//!    counts of reshapes, broadcasting, slice and window bounds all check.
//! 5. Every symbol in a node's type or payload appears in the function's
//!    input types, so binding the inputs' shapes fixes every shape.
//! 6. A function returns at least one value.
//!
//! It runs after the frontend, after parsing IR text, and after every pass in
//! tests and debug builds.

use std::collections::BTreeSet;
use std::fmt::Write;

use crate::graph::{Function, Module, NodeId};
use crate::op::Op;
use crate::print::NodeText;
use crate::types::{Shape, Symbol, TensorType};
use crate::typing;

/// A broken invariant and where: the function's index and, when the fault is
/// a node's, that node.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct VerifyError {
    pub location: Option<(usize, Option<NodeId>)>,
    pub message: String,
}

/// Checks every invariant of the module.
pub fn verify_module(module: &Module) -> Result<(), VerifyError> {
    let fail = |message: String| Err(VerifyError { location: None, message });
    let mut names = BTreeSet::new();
    for p in &module.params {
        if !names.insert(p.name.as_str()) {
            return fail(format!("parameter `{}` is declared twice", p.name));
        }
        if !p.ty.shape.is_static() {
            return fail(format!("parameter `{}` has a symbolic shape {}", p.name, p.ty.shape));
        }
        if let Some(why) = p.ty.too_large() {
            return fail(format!("parameter `{}`: {why}", p.name));
        }
    }
    let mut funcs = BTreeSet::new();
    for (index, f) in module.functions.iter().enumerate() {
        if !funcs.insert(f.name.as_str()) {
            return Err(VerifyError {
                location: Some((index, None)),
                message: format!("function `{}` is defined twice", f.name),
            });
        }
        verify_function(module, f).map_err(|(node, message)| VerifyError { location: Some((index, node)), message })?;
    }
    Ok(())
}

fn verify_function(module: &Module, f: &Function) -> Result<(), (Option<NodeId>, String)> {
    let mut input_names = BTreeSet::new();
    let mut bound = BTreeSet::new();
    for input in &f.inputs {
        if !input_names.insert(input.name.as_str()) {
            return Err((None, format!("input `{}` is declared twice", input.name)));
        }
        bound.extend(symbols(&input.ty.shape));
        if let Some(why) = input.ty.too_large() {
            return Err((None, format!("input `{}`: {why}", input.name)));
        }
    }
    let ctx = module.context(f);
    for (id, node) in f.graph.nodes() {
        let at = |m: String| (Some(id), m);
        if let Some(bad) = node.args.iter().find(|a| a.index() >= id.index()) {
            return Err(at(format!("operand {bad} is not defined before {id}")));
        }
        let arg_types: Vec<&TensorType> = node.args.iter().map(|&a| f.graph.ty(a)).collect();
        let ty = typing::infer(&node.op, &arg_types, &ctx)
            .map_err(|m| at(format!("{}: {m}", crate::print::mnemonic(&node.op))))?;
        if ty != node.ty {
            return Err(at(format!("type is {}, but the op gives {ty}", node.ty)));
        }
        if let Some(why) = ty.too_large() {
            return Err(at(why));
        }
        let mut used = symbols(&node.ty.shape);
        if let Op::DimValue { symbol } = &node.op {
            used.insert(symbol.clone());
        }
        if let Some(s) = used.iter().find(|s| !bound.contains(*s)) {
            return Err(at(format!("symbol {s} does not appear in the function's input types")));
        }
    }
    if f.outputs.is_empty() {
        return Err((None, format!("function `{}` returns nothing", f.name)));
    }
    if let Some(bad) = f.outputs.iter().find(|o| o.index() >= f.graph.len()) {
        return Err((None, format!("output {bad} is not defined")));
    }
    Ok(())
}

fn symbols(shape: &Shape) -> BTreeSet<Symbol> {
    shape.0.iter().filter_map(|d| if let crate::Dim::Sym(s) = d { Some(s.clone()) } else { None }).collect()
}

/// The module's text with the error written next to the offending line, as
/// verifier failures are shown to people.
pub fn render_error(module: &Module, error: &VerifyError) -> String {
    let Some((func_index, node)) = error.location else {
        return format!("{module}\n; error: {}\n", error.message);
    };
    let mut out = String::new();
    for (i, f) in module.functions.iter().enumerate() {
        if i != func_index {
            continue;
        }
        let _ = writeln!(out, "func {} ...", f.name);
        if node.is_none() {
            let _ = writeln!(out, "; error: {}", error.message);
        }
        for (id, n) in f.graph.nodes() {
            let _ = writeln!(out, "  {id}: {} = {}", n.ty, NodeText(n));
            if Some(id) == node {
                let _ = writeln!(out, "  ; error: {}", error.message);
            }
        }
    }
    out
}

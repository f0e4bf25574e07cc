//! Reverse-mode automatic differentiation on graph IR.
//!
//! Needs: a verified module. Guarantees: `differentiate` returns an ordinary
//! function named `<f>_grad` with `f`'s inputs whose outputs are `f`'s
//! outputs followed by the gradient of the sum of all of `f`'s output
//! elements with respect to each requested source (a parameter or a float
//! input), in the order requested. Non-scalar outputs are differentiated as
//! the sum of their elements, as in the book. The forward nodes are kept as
//! they are (same numbering), the backward nodes follow them, and the result
//! verifies. A source that the outputs do not depend on gets a zero gradient.
//!
//! One vector-Jacobian rule per primitive lives in `rules.rs` (elementwise,
//! reductions, movement, matmul, gather and scatter) and `window.rs`
//! (convolution and pooling). Only nodes on a path from a source to an
//! output get adjoints ("active" nodes): integer and bool values, constants,
//! comparisons, `stop_gradient` and random bits carry no gradient.
//!
//! Ties: `max`/`min` of two operands split the gradient evenly between equal
//! operands (as PyTorch's `maximum` does); a `reduce_max` splits it evenly
//! among the maxima of each reduced group (as `amax` does); max pooling
//! splits it evenly among the maxima of each window.
//!
//! It does not simplify what it builds; `simplify` and `fuse` do that.

mod builder;
mod rules;
mod window;

use kiln_ir::{Function, Literal, Module, NodeId, Op};

use builder::Builder;

/// What to differentiate with respect to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A parameter of the module, by name.
    Param(String),
    /// An input of the function, by position.
    Input(usize),
}

/// Why a gradient could not be built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AutodiffError {
    #[error("no function named `{0}`")]
    UnknownFunction(String),
    #[error("no parameter named `{0}`")]
    UnknownParam(String),
    #[error("`{function}` has no input {index}")]
    UnknownInput { function: String, index: usize },
    #[error("cannot differentiate with respect to `{name}`: it is {ty}, not a float tensor")]
    NotFloat { name: String, ty: String },
    #[error("differentiating `{op}` is not supported: {reason}")]
    Unsupported { op: String, reason: String },
    #[error("internal error while differentiating: {0}")]
    Internal(String),
}

/// Builds the gradient function of `function` with respect to `sources`
/// (of the sum of its outputs).
pub fn differentiate(module: &Module, function: &str, sources: &[Source]) -> Result<Function, AutodiffError> {
    differentiate_outputs(module, function, sources, usize::MAX)
}

/// [`differentiate`], seeding only the first `seeded` outputs: the others
/// are returned as they are, before the gradients, and contribute none.
pub fn differentiate_outputs(
    module: &Module,
    function: &str,
    sources: &[Source],
    seeded: usize,
) -> Result<Function, AutodiffError> {
    let original = module.function(function).ok_or_else(|| AutodiffError::UnknownFunction(function.to_string()))?;
    for s in sources {
        let (name, ty) = match s {
            Source::Param(p) => {
                let decl = module.param(p).ok_or_else(|| AutodiffError::UnknownParam(p.clone()))?;
                (p.clone(), decl.ty.clone())
            }
            Source::Input(i) => {
                let decl = original
                    .inputs
                    .get(*i)
                    .ok_or_else(|| AutodiffError::UnknownInput { function: function.to_string(), index: *i })?;
                (decl.name.clone(), decl.ty.clone())
            }
        };
        if !ty.dtype.is_float() {
            return Err(AutodiffError::NotFloat { name, ty: ty.to_string() });
        }
    }
    let is_source = |op: &Op| match op {
        Op::Param { name } => sources.contains(&Source::Param(name.clone())),
        Op::Input { index } => sources.contains(&Source::Input(*index as usize)),
        _ => false,
    };
    let n = original.graph.len();
    let mut active = vec![false; n];
    for (id, node) in original.graph.nodes() {
        let differentiable = node.ty.dtype.is_float() && !matches!(node.op, Op::StopGradient);
        active[id.index()] = differentiable && (is_source(&node.op) || node.args.iter().any(|a| active[a.index()]));
    }

    let mut b = Builder { f: original.clone(), params: &module.params };
    b.f.name = format!("{function}_grad");
    let mut adjoint: Vec<Option<NodeId>> = vec![None; n];
    for &o in original.outputs.iter().take(seeded) {
        if active[o.index()] {
            let ones = b.splat_of(1.0, o)?;
            accumulate(&mut b, &mut adjoint, o, ones)?;
        }
    }
    for index in (0..n).rev() {
        let id = NodeId(index as u32);
        let Some(g) = adjoint[index] else { continue };
        let node = original.graph.node(id).clone();
        if !active[index] || node.args.is_empty() {
            continue;
        }
        let needs: Vec<bool> = node.args.iter().map(|a| active[a.index()]).collect();
        // Gradient nodes carry the source line of the node they differentiate.
        b.f.graph.set_line(node.line);
        let contributions = rules::vjp(&mut b, &node, id, g, &needs)?;
        for ((arg, needed), contribution) in node.args.iter().zip(&needs).zip(contributions) {
            if let (true, Some(c)) = (needed, contribution) {
                accumulate(&mut b, &mut adjoint, *arg, c)?;
            }
        }
    }

    let mut outputs = original.outputs.clone();
    for s in sources {
        let mut total: Option<NodeId> = None;
        for (id, node) in original.graph.nodes() {
            if let (true, Some(g)) = (matches_source(&node.op, s), adjoint[id.index()]) {
                total = Some(match total {
                    None => g,
                    Some(t) => b.add_n(t, g)?,
                });
            }
        }
        let gradient = match total {
            Some(g) => g,
            None => zero_gradient(&mut b, module, original, s)?,
        };
        outputs.push(gradient);
    }
    b.f.outputs = outputs;
    b.f.graph.set_line(None);
    Ok(b.f)
}

fn matches_source(op: &Op, s: &Source) -> bool {
    match (op, s) {
        (Op::Param { name }, Source::Param(p)) => name == p,
        (Op::Input { index }, Source::Input(i)) => *index as usize == *i,
        _ => false,
    }
}

fn zero_gradient(b: &mut Builder<'_>, module: &Module, f: &Function, s: &Source) -> Result<NodeId, AutodiffError> {
    let ty = match s {
        Source::Param(p) => module.param(p).map(|d| d.ty.clone()),
        Source::Input(i) => f.inputs.get(*i).map(|d| d.ty.clone()),
    }
    .ok_or_else(|| AutodiffError::Internal("a checked source has a type".into()))?;
    b.add(Op::Constant { value: Literal::float(0.0), dtype: ty.dtype, shape: ty.shape }, &[])
}

/// Adds `g` to the adjoint of `id`.
fn accumulate(b: &mut Builder<'_>, adjoint: &mut [Option<NodeId>], id: NodeId, g: NodeId) -> Result<(), AutodiffError> {
    adjoint[id.index()] = Some(match adjoint[id.index()] {
        None => g,
        Some(previous) => b.add_n(previous, g)?,
    });
    Ok(())
}

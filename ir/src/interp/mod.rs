//! The reference interpreter: the executable meaning of graph IR and the
//! oracle every pass and backend is tested against.
//!
//! It evaluates one node at a time in graph order, simply and slowly, on
//! ndarray arrays. [`Precision::Native`] computes in each node's dtype (f32
//! results are the f64 result rounded to f32, which for +, -, *, / and sqrt is
//! exactly f32 arithmetic); [`Precision::F64`] computes every float in f64,
//! for finite-difference checks; [`Precision::Perturbed`] computes in f64
//! with a small error made on purpose in every float result, to measure
//! how far rounding can move an output. Bad inputs (wrong shapes or dtypes, a missing
//! parameter, an index out of range, integer division by zero) are errors,
//! never panics.

mod ops;
mod tensor;

use std::collections::BTreeMap;

pub use tensor::{Data, Tensor};

use crate::graph::{Function, Module};
use crate::op::Op;
use crate::types::{Bindings, DType, Dim, TensorType};

/// The float precision the interpreter computes in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Precision {
    /// f32 nodes are rounded to f32 after every op.
    #[default]
    Native,
    /// Every float is kept in f64.
    F64,
    /// Every float is kept in f64, and every element of every float
    /// node's result is multiplied by `1 + 2^-22 * u`, `u` uniform in
    /// [-1, 1) drawn from `seed`, the node and the element: errors a few
    /// times f32's rounding, made on purpose (Monte Carlo arithmetic). How
    /// far that moves an output from the `F64` one measures how far f32
    /// rounding in another order can: a sum that cancels moves a lot.
    Perturbed { seed: u64 },
}

/// Parameter values by name.
pub type Params = BTreeMap<String, Tensor>;

/// Evaluation settings.
#[derive(Clone, Copy, Debug, Default)]
pub struct EvalOptions {
    pub precision: Precision,
}

/// Why an evaluation failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EvalError {
    #[error("no function named `{0}` in the module")]
    UnknownFunction(String),
    #[error("`{function}` takes {expected} inputs, got {got}")]
    InputCount { function: String, expected: usize, got: usize },
    #[error("input `{name}` must be {expected}, got {got}{detail}")]
    InputType { name: String, expected: TensorType, got: TensorType, detail: String },
    #[error("parameter `{0}` has no value")]
    MissingParam(String),
    #[error("parameter `{name}` must be {expected}, got {got}")]
    ParamType { name: String, expected: TensorType, got: TensorType },
    #[error("node {node}: {message}")]
    Node { node: String, message: String },
}

/// Evaluates `function` of `module` on `inputs` with parameter values `params`.
pub fn evaluate(
    module: &Module,
    function: &str,
    inputs: &[Tensor],
    params: &Params,
    options: EvalOptions,
) -> Result<Vec<Tensor>, EvalError> {
    let f = module.function(function).ok_or_else(|| EvalError::UnknownFunction(function.to_string()))?;
    let bindings = bind_inputs(f, inputs)?;
    let mut values: Vec<Tensor> = Vec::with_capacity(f.graph.len());
    for (id, node) in f.graph.nodes() {
        let node_error = |message: String| EvalError::Node { node: id.to_string(), message };
        let shape = node.ty.shape.resolve(&bindings).map_err(|s| node_error(format!("symbol {s} is unbound")))?;
        let value = match &node.op {
            Op::Input { index } => inputs
                .get(*index as usize)
                .cloned()
                .ok_or_else(|| node_error(format!("input {index} does not exist")))?,
            Op::Param { name } => param_value(module, params, name)?,
            _ => {
                let args: Vec<&Tensor> = node.args.iter().map(|a| &values[a.index()]).collect();
                ops::apply(&node.op, &args, &shape, &bindings).map_err(node_error)?
            }
        };
        values.push(round(value, node.ty.dtype, options.precision, id.index() as u64));
    }
    Ok(f.outputs.iter().map(|o| values[o.index()].clone()).collect())
}

/// Checks each input against its declared type and binds the symbols.
pub fn bind_inputs(f: &Function, inputs: &[Tensor]) -> Result<Bindings, EvalError> {
    let types: Vec<(DType, &[usize])> = inputs.iter().map(|t| (t.dtype, t.shape())).collect();
    bind_shapes(f, &types)
}

/// [`bind_inputs`] for inputs given by dtype and shape.
pub fn bind_shapes(f: &Function, inputs: &[(DType, &[usize])]) -> Result<Bindings, EvalError> {
    if inputs.len() != f.inputs.len() {
        return Err(EvalError::InputCount { function: f.name.clone(), expected: f.inputs.len(), got: inputs.len() });
    }
    let mut bindings = Bindings::new();
    for (decl, &(dtype, shape)) in f.inputs.iter().zip(inputs) {
        let mismatch = |detail: String| EvalError::InputType {
            name: decl.name.clone(),
            expected: decl.ty.clone(),
            got: TensorType::new(dtype, crate::types::Shape::of(&shape.iter().map(|&d| d as u64).collect::<Vec<_>>())),
            detail,
        };
        if dtype != decl.ty.dtype || shape.len() != decl.ty.rank() {
            return Err(mismatch(String::new()));
        }
        for (axis, (dim, &size)) in decl.ty.shape.0.iter().zip(shape).enumerate() {
            let size = size as u64;
            match dim {
                Dim::Const(n) if *n != size => return Err(mismatch(format!(" (dimension {axis} is {size}, not {n})"))),
                Dim::Sym(s) => match bindings.get(s) {
                    Some(&bound) if bound != size => {
                        return Err(mismatch(format!(
                            " (dimension {axis} is {size}, but {s} = {bound} from an earlier input)"
                        )));
                    }
                    _ => {
                        bindings.insert(s.clone(), size);
                    }
                },
                _ => {}
            }
        }
    }
    Ok(bindings)
}

fn param_value(module: &Module, params: &Params, name: &str) -> Result<Tensor, EvalError> {
    let value = params.get(name).ok_or_else(|| EvalError::MissingParam(name.to_string()))?;
    let decl = module.param(name).ok_or_else(|| EvalError::MissingParam(name.to_string()))?;
    if value.tensor_type() != decl.ty {
        return Err(EvalError::ParamType {
            name: name.to_string(),
            expected: decl.ty.clone(),
            got: value.tensor_type(),
        });
    }
    Ok(value.clone())
}

/// Rounds a value of node `node` to its dtype: f32 to f32 precision
/// (unless computing in f64), i32 to 32-bit two's complement; perturbs
/// floats when asked to.
fn round(t: Tensor, dtype: DType, precision: Precision, node: u64) -> Tensor {
    match (t.data, dtype) {
        (Data::Float(a), DType::F32) if precision == Precision::Native => Tensor::float(DType::F32, a),
        (Data::Float(mut a), _) if let Precision::Perturbed { seed } = precision => {
            for (i, v) in a.iter_mut().enumerate() {
                let u = 2.0 * crate::random::uniform(seed, node, i as u64) - 1.0;
                *v *= 1.0 + u * 2f64.powi(-22);
            }
            Tensor { dtype, data: Data::Float(a) }
        }
        (Data::Int(a), DType::I32) => Tensor::int(DType::I32, a),
        (data, _) => Tensor { dtype, data },
    }
}

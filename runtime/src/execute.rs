//! The interface between training loops and whatever runs a module's
//! functions: the reference interpreter here, compiled code in the `kiln`
//! crate (which can lower and compile, as the runtime does not depend on
//! the passes).
//!
//! A training loop runs on a [`Session`]: the parameters live inside it
//! between calls, so an executor with memory of its own (the JIT's f32
//! arenas, a GPU) keeps them there instead of converting every parameter
//! into and out of tensors at every step, as PyTorch and JAX keep theirs.

use kiln_ir::interp::{EvalError, EvalOptions, Params, Tensor, evaluate};
use kiln_ir::{DType, Module};
use ndarray::{ArrayD, IxDyn};

/// Why a call of an executor or a session failed.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("no function named `{0}`")]
    NoFunction(String),
    /// The interpreter's error, or inputs that do not fit the function.
    #[error(transparent)]
    Eval(#[from] EvalError),
    #[error("input {0} is missing")]
    MissingInput(u32),
    #[error("symbol {0} has no value")]
    Unbound(String),
    #[error("a host tensor of shape {shape:?} holds {elements} elements")]
    HostShape { shape: Vec<usize>, elements: usize },
    #[error("parameter `{0}` has no value")]
    MissingParam(String),
    #[error("parameter `{name}` must be {expected}, got {got}")]
    ParamType { name: String, expected: String, got: String },
    #[error("`{function}` returns {outputs} outputs, fewer than the {updates} parameters it should update")]
    TooFewOutputs { function: String, outputs: usize, updates: usize },
    #[error("`{function}` updates `{name}`, not a parameter")]
    NotAParam { function: String, name: String },
    #[error("output {output} of `{function}` is {got} but updates parameter `{name}`, which is {expected}")]
    UpdateType { function: String, output: u32, got: String, name: String, expected: String },
    /// The function could not be compiled for these sizes (an executor of
    /// compiled code: its compiler's error).
    #[error("cannot compile `{function}`: {source}")]
    Compile { function: String, source: Box<dyn std::error::Error + Send + Sync> },
    /// The compiled code stopped with an error (an index out of range, a
    /// division by zero) or its memory did not hold the values.
    #[error("running `{function}`: {message}")]
    Run { function: String, message: String },
    /// The device could not be used or failed.
    #[error("{0}")]
    Device(String),
}

/// What a call returns: the function's outputs, or why it failed.
pub type Outputs = Result<Vec<Tensor>, ExecError>;

/// Elements of a [`HostTensor`], in their own type.
#[derive(Clone, Debug, PartialEq)]
pub enum HostData {
    F32(Vec<f32>),
    I32(Vec<i32>),
    I64(Vec<i64>),
}

/// A tensor as a data loader makes it: row-major elements in their dtype,
/// which an executor with an arena copies in as they are (a [`Tensor`]
/// holds floats as f64 and would be converted twice).
#[derive(Clone, Debug, PartialEq)]
pub struct HostTensor {
    pub shape: Vec<usize>,
    pub data: HostData,
}

impl HostTensor {
    /// An f32 tensor; `values` must hold the product of `shape` elements.
    pub fn f32(shape: Vec<usize>, values: Vec<f32>) -> HostTensor {
        HostTensor { shape, data: HostData::F32(values) }
    }

    /// An i32 tensor; `values` must hold the product of `shape` elements.
    pub fn i32(shape: Vec<usize>, values: Vec<i32>) -> HostTensor {
        HostTensor { shape, data: HostData::I32(values) }
    }

    pub fn dtype(&self) -> DType {
        match self.data {
            HostData::F32(_) => DType::F32,
            HostData::I32(_) => DType::I32,
            HostData::I64(_) => DType::I64,
        }
    }

    pub fn len(&self) -> usize {
        match &self.data {
            HostData::F32(v) => v.len(),
            HostData::I32(v) => v.len(),
            HostData::I64(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The same values as a [`Tensor`]; an error if the shape does not
    /// hold exactly its elements.
    pub fn to_tensor(&self) -> Result<Tensor, ExecError> {
        let shape = IxDyn(&self.shape);
        let wrong = |_| ExecError::HostShape { shape: self.shape.clone(), elements: self.len() };
        Ok(match &self.data {
            HostData::F32(v) => Tensor::float(
                DType::F32,
                ArrayD::from_shape_vec(shape, v.iter().map(|&x| f64::from(x)).collect()).map_err(wrong)?,
            ),
            HostData::I32(v) => Tensor::int(
                DType::I32,
                ArrayD::from_shape_vec(shape, v.iter().map(|&x| i64::from(x)).collect()).map_err(wrong)?,
            ),
            HostData::I64(v) => Tensor::int(DType::I64, ArrayD::from_shape_vec(shape, v.clone()).map_err(wrong)?),
        })
    }
}

/// Host tensors as tensors.
pub fn to_tensors(inputs: &[HostTensor]) -> Outputs {
    inputs.iter().map(HostTensor::to_tensor).collect()
}

/// Runs functions of one module.
pub trait Execute {
    /// Runs `function` on `inputs` with parameter values `params`.
    fn run(&self, function: &str, inputs: &[Tensor], params: &Params) -> Outputs;

    /// A session that starts from `params`. The default keeps them as
    /// tensors and passes them to [`Execute::run`] at every call.
    fn session<'s>(&'s self, params: Params) -> Box<dyn Session + 's> {
        Box::new(TensorSession { executor: self, params })
    }
}

/// Parameters held between calls, and the functions that read and update
/// them: the state of a training run.
pub trait Session {
    /// Runs `function` on `inputs` with the current parameters.
    fn run(&self, function: &str, inputs: &[Tensor]) -> Outputs;

    /// Runs `function`, whose last `updates.len()` outputs are the new values
    /// of the parameters `updates` names, in order; keeps those and returns
    /// the outputs before them.
    fn run_updating(&mut self, function: &str, inputs: &[Tensor], updates: &[String]) -> Outputs;

    /// The current value of every parameter.
    fn params(&self) -> Result<Params, ExecError>;

    /// [`Session::run`] on host tensors. The default converts them.
    fn run_host(&self, function: &str, inputs: &[HostTensor]) -> Outputs {
        self.run(function, &to_tensors(inputs)?)
    }

    /// [`Session::run_updating`] on host tensors (a training batch). The
    /// default converts them; the JIT's session copies them into its arena.
    fn run_updating_host(&mut self, function: &str, inputs: &[HostTensor], updates: &[String]) -> Outputs {
        self.run_updating(function, &to_tensors(inputs)?, updates)
    }
}

/// A session that holds its parameters as tensors.
struct TensorSession<'s, E: Execute + ?Sized> {
    executor: &'s E,
    params: Params,
}

impl<E: Execute + ?Sized> Session for TensorSession<'_, E> {
    fn run(&self, function: &str, inputs: &[Tensor]) -> Outputs {
        self.executor.run(function, inputs, &self.params)
    }

    fn run_updating(&mut self, function: &str, inputs: &[Tensor], updates: &[String]) -> Outputs {
        let mut outputs = self.executor.run(function, inputs, &self.params)?;
        let kept = updated_outputs(function, outputs.len(), updates)?;
        for (name, value) in updates.iter().zip(outputs.drain(kept..)) {
            self.params.insert(name.clone(), value);
        }
        Ok(outputs)
    }

    fn params(&self) -> Result<Params, ExecError> {
        Ok(self.params.clone())
    }
}

/// How many outputs of `function` come before its `updates.len()` parameter
/// updates; an error if it has fewer outputs than that.
pub fn updated_outputs(function: &str, outputs: usize, updates: &[String]) -> Result<usize, ExecError> {
    outputs.checked_sub(updates.len()).ok_or_else(|| ExecError::TooFewOutputs {
        function: function.to_string(),
        outputs,
        updates: updates.len(),
    })
}

/// The reference interpreter as an executor.
pub struct Interpreter<'m> {
    pub module: &'m Module,
}

impl Execute for Interpreter<'_> {
    fn run(&self, function: &str, inputs: &[Tensor], params: &Params) -> Outputs {
        Ok(evaluate(self.module, function, inputs, params, EvalOptions::default())?)
    }
}

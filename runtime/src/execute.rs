//! The interface between training loops and whatever runs a module's
//! functions: the reference interpreter here, compiled code in the `kiln`
//! crate (which can lower and compile, as the runtime does not depend on
//! the passes).
//!
//! A training loop runs on a [`Session`]: the parameters live inside it
//! between calls, so an executor with memory of its own (the JIT's f32
//! arenas, a GPU) keeps them there instead of converting every parameter
//! into and out of tensors at every step, as PyTorch and JAX keep theirs.

use kiln_ir::Module;
use kiln_ir::interp::{EvalOptions, Params, Tensor, evaluate};

/// Runs functions of one module.
pub trait Execute {
    /// Runs `function` on `inputs` with parameter values `params`.
    fn run(&self, function: &str, inputs: &[Tensor], params: &Params) -> Result<Vec<Tensor>, String>;

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
    fn run(&self, function: &str, inputs: &[Tensor]) -> Result<Vec<Tensor>, String>;

    /// Runs `function`, whose last `updates.len()` outputs are the new values
    /// of the parameters `updates` names, in order; keeps those and returns
    /// the outputs before them.
    fn run_updating(&mut self, function: &str, inputs: &[Tensor], updates: &[String]) -> Result<Vec<Tensor>, String>;

    /// The current value of every parameter.
    fn params(&self) -> Result<Params, String>;
}

/// A session that holds its parameters as tensors.
struct TensorSession<'s, E: Execute + ?Sized> {
    executor: &'s E,
    params: Params,
}

impl<E: Execute + ?Sized> Session for TensorSession<'_, E> {
    fn run(&self, function: &str, inputs: &[Tensor]) -> Result<Vec<Tensor>, String> {
        self.executor.run(function, inputs, &self.params)
    }

    fn run_updating(&mut self, function: &str, inputs: &[Tensor], updates: &[String]) -> Result<Vec<Tensor>, String> {
        let mut outputs = self.executor.run(function, inputs, &self.params)?;
        let kept = updated_outputs(function, outputs.len(), updates)?;
        for (name, value) in updates.iter().zip(outputs.drain(kept..)) {
            self.params.insert(name.clone(), value);
        }
        Ok(outputs)
    }

    fn params(&self) -> Result<Params, String> {
        Ok(self.params.clone())
    }
}

/// How many outputs of `function` come before its `updates.len()` parameter
/// updates; an error if it has fewer outputs than that.
pub fn updated_outputs(function: &str, outputs: usize, updates: &[String]) -> Result<usize, String> {
    outputs.checked_sub(updates.len()).ok_or_else(|| {
        format!("`{function}` returns {outputs} outputs, fewer than the {} parameters it should update", updates.len())
    })
}

/// The reference interpreter as an executor.
pub struct Interpreter<'m> {
    pub module: &'m Module,
}

impl Execute for Interpreter<'_> {
    fn run(&self, function: &str, inputs: &[Tensor], params: &Params) -> Result<Vec<Tensor>, String> {
        evaluate(self.module, function, inputs, params, EvalOptions::default()).map_err(|e| e.to_string())
    }
}

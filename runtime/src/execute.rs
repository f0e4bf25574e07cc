//! The interface between training loops and whatever runs a module's
//! functions: the reference interpreter here, compiled code in the `kiln`
//! crate (which can lower and compile, as the runtime does not depend on
//! the passes).

use kiln_ir::Module;
use kiln_ir::interp::{EvalOptions, Params, Tensor, evaluate};

/// Runs functions of one module.
pub trait Execute {
    /// Runs `function` on `inputs` with parameter values `params`.
    fn run(&self, function: &str, inputs: &[Tensor], params: &Params) -> Result<Vec<Tensor>, String>;
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

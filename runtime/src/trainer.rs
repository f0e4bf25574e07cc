//! Running a compiled training step: runs `train_step` on a batch in a
//! [`Session`] of any executor, which keeps the parameters the step's
//! outputs update, and draws a fresh random key for every step.

use kiln_ir::interp::{Params, Tensor};
use kiln_ir::{DType, Module};
use ndarray::{ArrayD, IxDyn};

use crate::execute::{Execute, Session};

/// The state of a training run.
pub struct Trainer<'m> {
    session: Box<dyn Session + 'm>,
    /// The parameter each output of `train_step` after the loss replaces.
    updates: Vec<String>,
    /// How many inputs `train_step` takes: one more than a batch's when
    /// it also takes a random key.
    step_inputs: Option<usize>,
    seed: u64,
    steps: u64,
}

impl<'m> Trainer<'m> {
    /// `module` must contain `train_step`; `params` holds every parameter
    /// (model and optimizer state).
    pub fn new(
        module: &'m Module,
        executor: &'m dyn Execute,
        updates: Vec<String>,
        params: Params,
        seed: u64,
    ) -> Trainer<'m> {
        let step_inputs = module.function("train_step").map(|f| f.inputs.len());
        Trainer { session: executor.session(params), updates, step_inputs, seed, steps: 0 }
    }

    /// One optimization step on a batch (the loss's inputs, without the key);
    /// returns the loss before the update.
    pub fn step(&mut self, mut inputs: Vec<Tensor>) -> Result<f64, String> {
        if self.step_inputs == Some(inputs.len() + 1) {
            let key = self.seed.wrapping_mul(0x9e37_79b9).wrapping_add(self.steps) as i64;
            inputs.push(Tensor::int(DType::I64, ArrayD::from_elem(IxDyn(&[]), key)));
        }
        let outputs = self.session.run_updating("train_step", &inputs, &self.updates)?;
        self.steps += 1;
        Ok(outputs.first().and_then(|l| l.to_f64_vec().first().copied()).unwrap_or(f64::NAN))
    }

    /// Runs another function of the module with the current parameters.
    pub fn run(&self, function: &str, inputs: &[Tensor]) -> Result<Vec<Tensor>, String> {
        self.session.run(function, inputs)
    }

    /// The current value of every parameter (model and optimizer state).
    pub fn params(&self) -> Result<Params, String> {
        self.session.params()
    }
}

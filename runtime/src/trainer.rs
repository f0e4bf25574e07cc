//! Running a compiled training step: runs `train_step` on a batch (with
//! any executor), writes its outputs back into the parameters they update,
//! and draws a fresh random key for every step.

use kiln_ir::interp::{Params, Tensor};
use kiln_ir::{DType, Module};
use ndarray::{ArrayD, IxDyn};

use crate::execute::Execute;

/// The state of a training run.
pub struct Trainer<'m> {
    module: &'m Module,
    executor: &'m dyn Execute,
    /// The parameter each output of `train_step` after the loss replaces.
    updates: Vec<String>,
    pub params: Params,
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
        Trainer { module, executor, updates, params, seed, steps: 0 }
    }

    /// One optimization step on a batch (the loss's inputs, without the key);
    /// returns the loss before the update.
    pub fn step(&mut self, mut inputs: Vec<Tensor>) -> Result<f64, String> {
        let wants_key = self.module.function("train_step").is_some_and(|f| f.inputs.len() == inputs.len() + 1);
        if wants_key {
            let key = self.seed.wrapping_mul(0x9e37_79b9).wrapping_add(self.steps) as i64;
            inputs.push(Tensor::int(DType::I64, ArrayD::from_elem(IxDyn(&[]), key)));
        }
        let outputs = self.executor.run("train_step", &inputs, &self.params)?;
        self.steps += 1;
        let loss = outputs[0].to_f64_vec().first().copied().unwrap_or(f64::NAN);
        for (name, value) in self.updates.iter().zip(outputs.into_iter().skip(1)) {
            self.params.insert(name.clone(), value);
        }
        Ok(loss)
    }

    /// Runs another function of the module with the current parameters.
    pub fn run(&self, function: &str, inputs: &[Tensor]) -> Result<Vec<Tensor>, String> {
        self.executor.run(function, inputs, &self.params)
    }
}

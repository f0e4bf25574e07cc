//! Running a compiled training step: runs `train_step` on a batch in a
//! [`Session`] of any executor, which keeps the parameters the step's
//! outputs update, and draws a fresh random key for every step.

use kiln_ir::interp::{Params, Tensor};
use kiln_ir::{DType, Module};
use ndarray::{ArrayD, IxDyn};

use crate::execute::{ExecError, Execute, HostTensor, Outputs, Session};

/// The state of a training run.
pub struct Trainer<'m> {
    session: Box<dyn Session + 'm>,
    /// The parameter each of the last `updates.len()` outputs of
    /// `train_step` replaces (the loss, and the logits where the step
    /// returns them, come before).
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

    /// Continues a run that had done `steps` steps: the next step draws the
    /// random key that step of an uninterrupted run would have drawn.
    pub fn resume_at(&mut self, steps: u64) {
        self.steps = steps;
    }

    /// Steps done so far (counting those of a run resumed from).
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// One optimization step on a batch (the loss's inputs, without the key);
    /// returns the loss before the update.
    pub fn step(&mut self, mut inputs: Vec<Tensor>) -> Result<f64, ExecError> {
        if self.step_inputs == Some(inputs.len() + 1) {
            inputs.push(self.key());
        }
        let outputs = self.session.run_updating("train_step", &inputs, &self.updates)?;
        self.steps += 1;
        Ok(Self::loss_of(&outputs))
    }

    /// [`Trainer::step`] on a batch of host tensors, returning the loss and
    /// the step's other outputs before the updates (the logits the loss was
    /// computed from, when the step returns them).
    pub fn step_host(&mut self, mut inputs: Vec<HostTensor>) -> Result<(f64, Vec<Tensor>), ExecError> {
        if self.step_inputs == Some(inputs.len() + 1) {
            inputs.push(HostTensor { shape: Vec::new(), data: crate::execute::HostData::I64(vec![self.key_value()]) });
        }
        let mut outputs = self.session.run_updating_host("train_step", &inputs, &self.updates)?;
        self.steps += 1;
        let loss = Self::loss_of(&outputs);
        let rest = if outputs.is_empty() { Vec::new() } else { outputs.split_off(1) };
        Ok((loss, rest))
    }

    /// This step's random key.
    fn key(&self) -> Tensor {
        Tensor::int(DType::I64, ArrayD::from_elem(IxDyn(&[]), self.key_value()))
    }

    fn key_value(&self) -> i64 {
        self.seed.wrapping_mul(0x9e37_79b9).wrapping_add(self.steps) as i64
    }

    fn loss_of(outputs: &[Tensor]) -> f64 {
        outputs.first().and_then(|l| l.to_f64_vec().first().copied()).unwrap_or(f64::NAN)
    }

    /// Runs another function of the module on host tensors.
    pub fn run_host(&self, function: &str, inputs: &[HostTensor]) -> Outputs {
        self.session.run_host(function, inputs)
    }

    /// Runs another function of the module with the current parameters.
    pub fn run(&self, function: &str, inputs: &[Tensor]) -> Outputs {
        self.session.run(function, inputs)
    }

    /// The current value of every parameter (model and optimizer state).
    pub fn params(&self) -> Result<Params, ExecError> {
        self.session.params()
    }
}

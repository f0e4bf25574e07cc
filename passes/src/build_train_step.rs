//! Building a training step: one function that computes the loss, its
//! gradient with respect to every trained parameter, and the optimizer's
//! update, as a single graph.
//!
//! Needs: a verified module with the loss function, and an update function
//! (the frontend's `apply_gradients`) taking one gradient per trained
//! parameter, in order, and reading parameters and optimizer state as
//! `param` nodes. Guarantees: the returned function `train_step` has the
//! loss function's inputs, and its outputs are the loss function's (the
//! loss, then any it returns beside it) followed by the update function's
//! outputs (the new values the caller writes back); it
//! verifies. It does not decide where values are written back: the caller
//! pairs outputs with parameter names.

use kiln_ir::{Function, Module, Node, NodeId, Op};

use crate::autodiff::{AutodiffError, Source, differentiate_outputs};

/// Why a training step could not be built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TrainStepError {
    #[error(transparent)]
    Autodiff(#[from] AutodiffError),
    #[error("no update function named `{0}`")]
    UnknownUpdate(String),
    #[error("`{function}` takes {takes} gradients, but {given} parameters are trained")]
    Arity { function: String, takes: usize, given: usize },
    #[error("the training step does not verify: {0}")]
    Invalid(String),
}

/// The function `train_step` of `module`: the first output of `loss`,
/// differentiated with respect to `params`, followed by `update` applied to
/// the gradients. Further outputs of `loss` (the logits a loss was computed
/// from) are returned after the loss, before the updates.
pub fn build_train_step(
    module: &Module,
    loss: &str,
    params: &[String],
    update: &str,
) -> Result<Function, TrainStepError> {
    let sources: Vec<Source> = params.iter().cloned().map(Source::Param).collect();
    let mut step = differentiate_outputs(module, loss, &sources, 1)?;
    step.name = "train_step".into();
    let update_fn = module.function(update).ok_or_else(|| TrainStepError::UnknownUpdate(update.to_string()))?;
    if update_fn.inputs.len() != params.len() {
        return Err(TrainStepError::Arity {
            function: update.to_string(),
            takes: update_fn.inputs.len(),
            given: params.len(),
        });
    }
    let loss_outputs = module.function(loss).map_or(1, |f| f.outputs.len());
    let gradients: Vec<NodeId> = step.outputs[loss_outputs..].to_vec();
    let mut outputs = step.outputs[..loss_outputs].to_vec();
    let mapped = inline(&mut step, update_fn, &gradients);
    outputs.extend(update_fn.outputs.iter().map(|o| mapped[o.index()]));
    step.outputs = outputs;
    let mut check = Module { params: module.params.clone(), functions: vec![step.clone()] };
    check.functions.retain(|f| f.name == "train_step");
    kiln_ir::verify_module(&check).map_err(|e| TrainStepError::Invalid(kiln_ir::render_error(&check, &e)))?;
    Ok(step)
}

/// Copies `callee`'s nodes into `caller`, its inputs replaced by `args`;
/// returns where each callee node went.
fn inline(caller: &mut Function, callee: &Function, args: &[NodeId]) -> Vec<NodeId> {
    let mut mapped = Vec::with_capacity(callee.graph.len());
    for (_, node) in callee.graph.nodes() {
        let id = match node.op {
            Op::Input { index } => args[index as usize],
            _ => {
                let args = node.args.iter().map(|a| mapped[a.index()]).collect();
                caller.graph.push_unchecked(Node { op: node.op.clone(), args, ty: node.ty.clone(), line: node.line })
            }
        };
        mapped.push(id);
    }
    mapped
}

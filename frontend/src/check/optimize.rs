//! Lowering a `train` block's optimizer to the IR function
//! `apply_gradients`: given the gradient of every trained parameter (inputs
//! named `grad.<param>`), it returns the new value of every parameter and of
//! the optimizer's state (velocities, moments, the step count), which are
//! declared as parameters named `opt.<param>.<what>` with zero initializers.
//! The update rules are the prelude's kiln functions (`sgd_step`,
//! `adam_step`, ...), so a user reads them there, and may replace them.
//! With `clip`, the gradients are first scaled to a global norm of at most
//! `clip` by the prelude's `squared_norm`, `clip_factor` and `clipped`.

use kiln_ir::{Init, InputDecl, Literal, NodeId, Op, ParamDecl, Shape, TensorType};

use super::Checker;
use super::env::Value;
use super::expr::ActualArg;
use crate::diag::{Code, Diagnostic};
use crate::source::Span;
use crate::train::Optimizer;

/// The lowered update: which parameters are trained, and which parameter
/// each output of `apply_gradients` replaces.
pub struct Update {
    pub params: Vec<String>,
    pub updates: Vec<String>,
}

impl Checker<'_> {
    pub fn lower_apply_gradients(&mut self, optimizer: &Optimizer, span: Span) -> Option<Update> {
        let trained: Vec<ParamDecl> = self
            .module
            .params
            .iter()
            .filter(|p| p.ty.dtype.is_float() && !self.states.contains(&p.name))
            .cloned()
            .collect();
        let state = |p: &ParamDecl, what: &str| ParamDecl {
            name: format!("opt.{}.{what}", p.name),
            ty: p.ty.clone(),
            init: Init::Zeros,
        };
        let step =
            ParamDecl { name: "opt.step".into(), ty: TensorType::scalar(kiln_ir::DType::F32), init: Init::Zeros };
        match optimizer {
            Optimizer::Sgd { momentum, .. } if *momentum > 0.0 => {
                self.module.params.extend(trained.iter().map(|p| state(p, "velocity")));
            }
            Optimizer::Sgd { .. } => {}
            Optimizer::Adam { .. } => {
                self.module.params.extend(trained.iter().map(|p| state(p, "m")));
                self.module.params.extend(trained.iter().map(|p| state(p, "v")));
                self.module.params.push(step.clone());
            }
        }
        self.begin_function("apply_gradients", false);
        self.func.inputs =
            trained.iter().map(|p| InputDecl { name: format!("grad.{}", p.name), ty: p.ty.clone() }).collect();
        let errors_before = self.diags.len();
        let mut outputs = Vec::new();
        let mut updates = Vec::new();
        let step_count = match optimizer {
            Optimizer::Adam { .. } => {
                let t = self.param_value(&step.name, span)?;
                let one = self.emit(
                    Op::Constant { value: Literal::float(1.0), dtype: step.ty.dtype, shape: Shape::scalar() },
                    &[],
                    span,
                );
                let Value::Tensor(one) = one else { return None };
                let Value::Tensor(next) = self.emit(Op::Binary(kiln_ir::BinaryOp::Add), &[t, one], span) else {
                    return None;
                };
                Some(next)
            }
            Optimizer::Sgd { .. } => None,
        };
        let mut gradients = Vec::with_capacity(trained.len());
        for index in 0..trained.len() {
            let Value::Tensor(g) = self.emit(Op::Input { index: index as u32 }, &[], span) else { return None };
            gradients.push(g);
        }
        if let Some(clip) = optimizer.clip() {
            gradients = self.clip_by_global_norm(&gradients, clip, span)?;
        }
        for (p, &g) in trained.iter().zip(&gradients) {
            let value = self.param_value(&p.name, span)?;
            let t = Value::Tensor;
            let f = Value::Float;
            match *optimizer {
                Optimizer::Sgd { lr, momentum, weight_decay, .. } if momentum > 0.0 => {
                    let velocity = self.param_value(&state(p, "velocity").name, span)?;
                    let v = self.call_rule(
                        "sgd_velocity",
                        vec![t(value), t(g), t(velocity), f(momentum), f(weight_decay)],
                        span,
                    );
                    let new = self.call_rule("sgd_momentum_step", vec![t(value), v.clone(), f(lr)], span);
                    outputs.extend([new, v]);
                    updates.extend([p.name.clone(), state(p, "velocity").name]);
                }
                Optimizer::Sgd { lr, weight_decay, .. } => {
                    outputs.push(self.call_rule("sgd_step", vec![t(value), t(g), f(lr), f(weight_decay)], span));
                    updates.push(p.name.clone());
                }
                Optimizer::Adam { lr, beta1, beta2, eps, weight_decay, .. } => {
                    let m = self.param_value(&state(p, "m").name, span)?;
                    let v = self.param_value(&state(p, "v").name, span)?;
                    let m = self.call_rule(
                        "adam_first_moment",
                        vec![t(value), t(g), t(m), f(beta1), f(weight_decay)],
                        span,
                    );
                    let v = self.call_rule(
                        "adam_second_moment",
                        vec![t(value), t(g), t(v), f(beta2), f(weight_decay)],
                        span,
                    );
                    let count = t(step_count?);
                    let args = vec![t(value), m.clone(), v.clone(), count, f(lr), f(beta1), f(beta2), f(eps)];
                    let new = self.call_rule("adam_step", args, span);
                    outputs.extend([new, m, v]);
                    updates.extend([p.name.clone(), state(p, "m").name, state(p, "v").name]);
                }
            }
        }
        if let Some(next) = step_count {
            outputs.push(Value::Tensor(next));
            updates.push(step.name);
        }
        let nodes: Vec<NodeId> =
            outputs.iter().filter_map(|v| if let Value::Tensor(id) = v { Some(*id) } else { None }).collect();
        if self.diags.len() > errors_before || nodes.len() != outputs.len() {
            return None;
        }
        self.finish_function(nodes);
        Some(Update { params: trained.into_iter().map(|p| p.name).collect(), updates })
    }

    /// Every gradient scaled by the prelude's `clip_factor` of their
    /// squared global norm (the sum of `squared_norm` over the gradients).
    fn clip_by_global_norm(&mut self, gradients: &[NodeId], clip: f64, span: Span) -> Option<Vec<NodeId>> {
        let tensor = |v: Value| if let Value::Tensor(id) = v { Some(id) } else { None };
        let mut total: Option<NodeId> = None;
        for &g in gradients {
            let squares = tensor(self.call_rule("squared_norm", vec![Value::Tensor(g)], span))?;
            total = Some(match total {
                None => squares,
                Some(sum) => tensor(self.emit(Op::Binary(kiln_ir::BinaryOp::Add), &[sum, squares], span))?,
            });
        }
        let Some(total) = total else { return Some(Vec::new()) };
        let factor = tensor(self.call_rule("clip_factor", vec![Value::Tensor(total), Value::Float(clip)], span))?;
        gradients
            .iter()
            .map(|&g| tensor(self.call_rule("clipped", vec![Value::Tensor(g), Value::Tensor(factor)], span)))
            .collect()
    }

    fn param_value(&mut self, name: &str, span: Span) -> Option<NodeId> {
        match self.emit(Op::Param { name: name.to_string() }, &[], span) {
            Value::Tensor(id) => Some(id),
            _ => None,
        }
    }

    /// Calls an update rule of the prelude (or the user's replacement).
    fn call_rule(&mut self, name: &str, args: Vec<Value>, span: Span) -> Value {
        let Some(f) = self.items.fns.get(name).cloned() else {
            return self.error(
                Diagnostic::new(
                    Code("E0606"),
                    span,
                    format!("the optimizer needs the function `{name}`, which is not defined"),
                )
                .label("this optimizer"),
            );
        };
        let args = args.into_iter().map(|value| ActualArg { name: None, value, span }).collect();
        self.inline(&f, None, args, span)
    }
}

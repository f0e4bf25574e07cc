//! What a `train` block asks for: the loss function and the optimizer with
//! its hyperparameters. The autodiff and training passes consume this.

use crate::ast::Ident;
use crate::source::Span;

/// A checked `train` block.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainSpec {
    /// The model whose parameters are trained.
    pub model: String,
    /// The module function that computes the scalar loss.
    pub loss: String,
    /// A module function returning the loss and the logits it was computed
    /// from (the model's `forward` as the loss called it), when the loss
    /// calls `forward` directly: what a training step differentiates so
    /// that it returns both.
    pub loss_and_logits: Option<String>,
    pub optimizer: Optimizer,
    /// The trained parameters, in the order `apply` takes their gradients.
    pub params: Vec<String>,
    /// The module function that takes one gradient per trained parameter and
    /// returns the new values of the parameters named in `updates`.
    pub apply: String,
    /// The parameter each of the training step's last outputs replaces: the
    /// model state the loss updated (`state`, which the loss function
    /// returns after the loss, in this order), then `apply`'s outputs.
    pub updates: Vec<String>,
    /// The `state` members the loss assigns, in the order it returns them.
    pub state: Vec<String>,
}

/// An optimizer and its hyperparameters, with the defaults of the book's
/// frameworks where an argument is left out. `clip` > 0 scales every
/// gradient by `min(1, clip / norm)` first, `norm` being the gradients'
/// global L2 norm (the book's `clip_gradients`); 0 leaves them as they are.
#[derive(Clone, Debug, PartialEq)]
pub enum Optimizer {
    /// `sgd(lr, momentum = 0, weight_decay = 0, clip = 0)`
    Sgd { lr: f64, momentum: f64, weight_decay: f64, clip: f64 },
    /// `adam(lr = 0.001, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0, clip = 0)`
    Adam { lr: f64, beta1: f64, beta2: f64, eps: f64, weight_decay: f64, clip: f64 },
}

type ArgError = (Option<Span>, String, String);

impl Optimizer {
    /// The global-norm bound on the gradients, when there is one.
    pub fn clip(&self) -> Option<f64> {
        let (Optimizer::Sgd { clip, .. } | Optimizer::Adam { clip, .. }) = self;
        (*clip > 0.0).then_some(*clip)
    }

    /// Builds an optimizer from its name and named arguments.
    pub fn from_args(name: &str, args: &[(Ident, f64)]) -> Result<Optimizer, ArgError> {
        let (known, defaults): (&[&str], &[Option<f64>]) = match name {
            "sgd" => (&["lr", "momentum", "weight_decay", "clip"], &[None, Some(0.0), Some(0.0), Some(0.0)]),
            "adam" => (
                &["lr", "beta1", "beta2", "eps", "weight_decay", "clip"],
                &[Some(0.001), Some(0.9), Some(0.999), Some(1e-8), Some(0.0), Some(0.0)],
            ),
            other => {
                return Err((None, format!("unknown optimizer `{other}`"), "kiln has `sgd` and `adam`".into()));
            }
        };
        let mut values: Vec<Option<f64>> = defaults.to_vec();
        for (arg, value) in args {
            let Some(i) = known.iter().position(|k| *k == arg.name) else {
                return Err((
                    Some(arg.span),
                    format!("`{name}` has no argument `{}`", arg.name),
                    format!("its arguments are {}", known.join(", ")),
                ));
            };
            if !value.is_finite() || *value < 0.0 {
                return Err((
                    Some(arg.span),
                    format!("`{}` must be a finite non-negative number, not {value}", arg.name),
                    String::new(),
                ));
            }
            values[i] = Some(*value);
        }
        if let Some(i) = values.iter().position(Option::is_none) {
            return Err((
                None,
                format!("`{name}` needs `{}`", known[i]),
                format!("write for example `{name}({} = 0.1)`", known[i]),
            ));
        }
        let v: Vec<f64> = values.into_iter().map(|v| v.unwrap_or(0.0)).collect();
        Ok(match name {
            "sgd" => Optimizer::Sgd { lr: v[0], momentum: v[1], weight_decay: v[2], clip: v[3] },
            _ => Optimizer::Adam { lr: v[0], beta1: v[1], beta2: v[2], eps: v[3], weight_decay: v[4], clip: v[5] },
        })
    }
}

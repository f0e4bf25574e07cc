//! Language models in `kiln train` and `kiln generate`: the shape a model
//! must have (a loss over `[N, steps]` tokens and their targets, `forward`
//! returning `[N, steps, vocab]` logits), perplexity measured on held-out
//! text, and text generated greedily by a host loop over the model's
//! one-token step `next(token, state...) -> [logits, state...]`, compiled
//! once and run once per token.

use kiln_ir::interp::Tensor;
use kiln_ir::{DType, Dim, Module, TensorType};
use kiln_runtime::execute::{HostData, HostTensor, Outputs};
use kiln_runtime::text::{Sequences, Vocab};

use crate::Error;

/// The prefix the book continues after training a language model.
pub const PREFIX: &str = "time traveller";
/// How many tokens `kiln train` generates after the prefix.
pub const SAMPLE_TOKENS: usize = 50;

/// The function that runs one token through a language model.
pub const NEXT: &str = "next";

/// Whether the loss's inputs are a language model's: integer tokens
/// `[N, steps]` and integer targets of the same shape.
pub fn is_language_model(x: &TensorType, y: &TensorType) -> bool {
    x.dtype.is_int() && y.dtype.is_int() && x.rank() == 2 && y.rank() == 2
}

/// Checks the model against the vocabulary; returns the number of steps
/// of a training example.
pub fn check_model(module: &Module, x: &TensorType, y: &TensorType, vocab: &Vocab) -> Result<usize, Error> {
    let steps = match (&x.shape.0[..], &y.shape.0[..]) {
        ([Dim::Sym(_), Dim::Const(t)], [Dim::Sym(_), Dim::Const(u)]) if t == u && *t > 0 => *t as usize,
        _ => {
            return Err(Error::Usage(format!(
                "a language model's loss takes tokens [N, steps] and targets [N, steps] with a constant number \
                 of steps, not {x} and {y}"
            )));
        }
    };
    let forward = module
        .function("forward")
        .ok_or_else(|| Error::Usage("a language model needs a `forward` function for perplexity".into()))?;
    let out = forward.output_types()[0].clone();
    match &out.shape.0[..] {
        [_, Dim::Const(t), Dim::Const(v)] if *t as usize == steps && *v as usize == vocab.len() => Ok(steps),
        [_, Dim::Const(t), Dim::Const(v)] if *t as usize == steps => Err(Error::Usage(format!(
            "`forward` predicts {v} tokens, but the corpus has a vocabulary of {}: set the model's vocabulary \
             size to {}",
            vocab.len(),
            vocab.len()
        ))),
        _ => Err(Error::Usage(format!(
            "`forward` returns {out}; a language model returns logits [N, {steps}, vocabulary]"
        ))),
    }
}

/// Checks a language model's recurrent states: inputs of the loss after
/// the tokens and targets, each f32 `[N, ...]` with constant sizes after
/// `N`, returned by the loss after the loss itself in the same order and
/// types (what the next batch starts from).
pub fn check_states(loss: &kiln_ir::Function, states: &[&TensorType]) -> Result<Vec<TensorType>, Error> {
    let outputs = loss.output_types();
    for (k, ty) in states.iter().enumerate() {
        let shaped = ty.dtype == DType::F32
            && matches!(ty.shape.0.first(), Some(Dim::Sym(_)))
            && ty.shape.0[1..].iter().all(|d| d.as_const().is_some());
        if !shaped {
            return Err(Error::Usage(format!(
                "the loss's input {} is {ty}: a recurrent state is f32 [N, ...] with constant sizes after N",
                k + 3
            )));
        }
        if outputs.get(k + 1).map(|o| &**o) != Some(*ty) {
            return Err(Error::Usage(format!(
                "the loss takes a recurrent state {ty} after the targets, so it returns [loss, new state...] \
                 with the new state {ty} as output {}",
                k + 2
            )));
        }
    }
    Ok(states.iter().map(|t| (*t).clone()).collect())
}

/// A state of type `ty` for a batch of `rows`, all zeros.
pub fn zeros(ty: &TensorType, rows: usize) -> HostTensor {
    let shape: Vec<usize> =
        std::iter::once(rows).chain(ty.shape.0[1..].iter().map(|d| d.as_const().unwrap_or(1) as usize)).collect();
    HostTensor::f32(shape.clone(), vec![0.0; shape.iter().product()])
}

/// A state a step returned, as the next step's input.
pub fn to_host(t: &Tensor) -> HostTensor {
    HostTensor::f32(t.shape().to_vec(), t.to_f64_vec().into_iter().map(|v| v as f32).collect())
}

/// Integer values as a host tensor of `dtype` (i64, else i32).
pub fn int_tensor(values: Vec<i32>, shape: Vec<usize>, dtype: DType) -> HostTensor {
    let data = match dtype {
        DType::I64 => HostData::I64(values.into_iter().map(i64::from).collect()),
        _ => HostData::I32(values),
    };
    HostTensor { shape, data }
}

/// The cross-entropy of one row of logits against the token `target`.
pub fn token_loss(logits: &[f64], target: usize) -> f64 {
    let top = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let log_sum = logits.iter().map(|v| (v - top).exp()).sum::<f64>().ln() + top;
    log_sum - logits[target]
}

/// The index of the largest value (the first of equals).
pub fn argmax(row: &[f64]) -> usize {
    row.iter().enumerate().fold(0, |b, (k, v)| if *v > row[b] { k } else { b })
}

/// The tokens and targets of the examples at `indices`, in the dtypes the
/// loss declares.
pub fn batch(seqs: &Sequences, indices: &[usize], x: &TensorType, y: &TensorType) -> (HostTensor, HostTensor) {
    let (inputs, targets) = seqs.gather(indices);
    let shape = vec![indices.len(), seqs.steps];
    (int_tensor(inputs, shape.clone(), x.dtype), int_tensor(targets, shape, y.dtype))
}

/// `exp` of the mean cross-entropy of `forward`'s logits against the
/// targets, over every token of `seqs`: the book's perplexity.
pub fn perplexity(
    run: &dyn Fn(&str, &[HostTensor]) -> Outputs,
    seqs: &Sequences,
    batch_size: usize,
    x: &TensorType,
    y: &TensorType,
) -> Result<f64, Error> {
    let all: Vec<usize> = (0..seqs.len()).collect();
    let (mut total, mut count) = (0.0, 0usize);
    for chunk in all.chunks(batch_size.max(1)) {
        let (tokens, targets) = batch(seqs, chunk, x, y);
        let logits = run("forward", &[tokens]).map_err(Error::from)?;
        let values = logits.first().map(Tensor::to_f64_vec).unwrap_or_default();
        let targets: Vec<usize> = match targets.data {
            HostData::I64(v) => v.into_iter().map(|t| t as usize).collect(),
            HostData::I32(v) => v.into_iter().map(|t| t as usize).collect(),
            HostData::F32(_) => Vec::new(),
        };
        let vocab = values.len() / targets.len().max(1);
        for (k, &target) in targets.iter().enumerate() {
            total += token_loss(&values[k * vocab..(k + 1) * vocab], target);
        }
        count += targets.len();
    }
    Ok((total / count.max(1) as f64).exp())
}

/// The input types of `next`: a token `[N]`, then each state `[N, ...]`.
pub fn step_inputs(module: &Module) -> Result<Vec<TensorType>, Error> {
    let f = module.function(NEXT).ok_or_else(|| {
        Error::Usage(format!(
            "the model has no `{NEXT}(token, state...)` returning [logits, state...]: it cannot generate"
        ))
    })?;
    let inputs: Vec<TensorType> = f.inputs.iter().map(|i| i.ty.clone()).collect();
    let outputs = f.output_types();
    let shaped = inputs.first().is_some_and(|t| t.dtype.is_int() && t.rank() == 1)
        && outputs.len() == inputs.len()
        && inputs[1..].iter().zip(&outputs[1..]).all(|(a, b)| a == *b);
    if !shaped {
        return Err(Error::Usage(format!(
            "`{NEXT}` takes ({}) and returns ({}); it should take a token [N] and states, and return the \
             logits and the new states of the same types",
            inputs.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "),
            outputs.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
        )));
    }
    Ok(inputs)
}

/// `prefix` continued by `tokens` tokens, each the most likely after the
/// ones before (the book's `predict`): the states start at zero, the
/// prefix warms them up, and `next` runs once per token.
pub fn generate(
    run: &dyn Fn(&str, &[HostTensor]) -> Outputs,
    module: &Module,
    vocab: &Vocab,
    prefix: &str,
    tokens: usize,
) -> Result<String, Error> {
    let inputs = step_inputs(module)?;
    let encoded: Vec<usize> = kiln_runtime::text::encode(vocab, prefix).into_iter().map(|t| t as usize).collect();
    let Some(&first) = encoded.first() else {
        return Err(Error::Usage("the prefix is empty: give at least one character to continue".into()));
    };
    let one =
        |ty: &TensorType| -> Vec<usize> { ty.shape.0.iter().map(|d| d.as_const().map_or(1, |n| n as usize)).collect() };
    let mut states: Vec<HostTensor> = inputs[1..]
        .iter()
        .map(|ty| {
            let shape = one(ty);
            HostTensor::f32(shape.clone(), vec![0.0; shape.iter().product()])
        })
        .collect();
    let token = |t: usize| int_tensor(vec![t as i32], vec![1], inputs[0].dtype);
    let mut out = vec![first];
    for i in 0..encoded.len() + tokens - 1 {
        let mut args = vec![token(out[out.len() - 1])];
        args.extend(states.iter().cloned());
        let outputs = run(NEXT, &args).map_err(Error::from)?;
        states = outputs[1..]
            .iter()
            .zip(&inputs[1..])
            .map(|(t, ty)| HostTensor::f32(one(ty), t.to_f64_vec().iter().map(|&v| v as f32).collect()))
            .collect();
        if i + 1 < encoded.len() {
            out.push(encoded[i + 1]);
        } else {
            out.push(argmax(&outputs[0].to_f64_vec()));
        }
    }
    Ok(out.iter().map(|&t| vocab.token(t)).collect())
}

/// What `kiln generate` was asked for.
#[derive(Clone, Debug)]
pub struct GenerateOptions {
    /// The text the model was trained on: its vocabulary is rebuilt from it.
    pub data: std::path::PathBuf,
    /// Trained parameters (`kiln train --save`); fresh ones from `seed` if absent.
    pub params: Option<std::path::PathBuf>,
    /// The text to continue (preprocessed as the training text was).
    pub prefix: String,
    /// How many tokens to add after the prefix.
    pub tokens: usize,
    /// Seeds fresh parameters (and the optimizer state a checkpoint leaves out).
    pub seed: u64,
    /// The model to use, when the file has several.
    pub model: Option<String>,
    /// Values for the root model's arguments (`--set hiddens=64`).
    pub args: Vec<(String, String)>,
    /// What runs the step.
    pub backend: crate::Backend,
}

/// Compiles `file`, loads its parameters and continues the prefix.
pub fn generate_file(file: &std::path::Path, o: &GenerateOptions) -> Result<String, Error> {
    let options = kiln_frontend::Options { model: o.model.clone(), args: o.args.clone(), ..Default::default() };
    let compiled = crate::compile_file(file, &options)?;
    let module = &compiled.module;
    let corpus = kiln_runtime::text::load_char_corpus(&o.data).map_err(|e| Error::Usage(e.to_string()))?;
    step_inputs(module)?;
    let logits = module.function(NEXT).map(|f| f.output_types()[0].clone());
    if let Some(Dim::Const(v)) = logits.as_ref().and_then(|t| t.shape.0.last())
        && *v as usize != corpus.vocab.len()
    {
        return Err(Error::Usage(format!(
            "`{NEXT}` predicts {v} tokens, but {} has a vocabulary of {}: give the text the model was trained on",
            o.data.display(),
            corpus.vocab.len()
        )));
    }
    let params = crate::inference_params(module, o.params.as_deref(), o.seed)?;
    crate::with_session(module, o.backend, params, |run| generate(run, module, &corpus.vocab, &o.prefix, o.tokens))
}

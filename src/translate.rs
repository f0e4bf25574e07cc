//! Encoder-decoder translation in `kiln train`: the shape a model must
//! have (a loss over source tokens, source valid lengths, decoder inputs,
//! targets and target valid lengths; `forward(source, source_valid,
//! decoder_input)` returning `[N, steps, target vocabulary]` logits), the
//! validation loss (cross-entropy over the targets' valid tokens), greedy
//! translation as a host loop over the compiled `forward`, and BLEU as the
//! book computes it (D2L sections 10.5-10.7).

use kiln_ir::interp::Tensor;
use kiln_ir::{Dim, Module, TensorType};
use kiln_runtime::execute::{HostTensor, Outputs};
use kiln_runtime::translation::{BOS, EOS, Pairs};

use crate::Error;

/// The book's test sentences and their references; the shipped pairs lack
/// the book's "he's calm .", so "i'm calm ." stands in for it.
pub const TEST_SENTENCES: [(&str, &str); 4] = [
    ("go .", "va !"),
    ("i lost .", "j'ai perdu ."),
    ("i'm home .", "je suis chez moi ."),
    ("i'm calm .", "je suis calme ."),
];

/// Whether a loss's data inputs are a translation model's: source tokens
/// `[N, steps]`, source valid lengths `[N]`, decoder inputs and targets
/// `[N, steps]`, target valid lengths `[N]`, all integers.
pub fn is_translation(inputs: &[&TensorType]) -> bool {
    let ranks: Vec<usize> = inputs.iter().map(|t| t.rank()).collect();
    inputs.len() == 5 && inputs.iter().all(|t| t.dtype.is_int()) && ranks == [2, 1, 2, 2, 1]
}

/// The number of steps of the loss's sequences, checked against `forward`.
pub fn check_model(module: &Module, inputs: &[&TensorType]) -> Result<usize, Error> {
    let steps = match &inputs[0].shape.0[..] {
        [Dim::Sym(_), Dim::Const(t)] if *t > 0 => *t as usize,
        _ => {
            return Err(Error::Usage(format!(
                "a translation loss takes source tokens [N, steps] with a constant number of steps, not {}",
                inputs[0]
            )));
        }
    };
    for ty in [inputs[2], inputs[3]] {
        if ty.shape.0.get(1).and_then(Dim::as_const) != Some(steps as u64) {
            return Err(Error::Usage(format!(
                "the loss's decoder inputs and targets are {ty}, but its sources have {steps} steps: give both \
                 the same number of steps"
            )));
        }
    }
    let forward = module.function("forward").ok_or_else(|| {
        Error::Usage("a translation model needs `forward(source, source_valid, decoder_input)`".into())
    })?;
    let takes: Vec<usize> = forward.inputs.iter().filter(|i| i.name != "key").map(|i| i.ty.rank()).collect();
    if takes != [2, 1, 2] {
        return Err(Error::Usage(format!(
            "`forward` takes ({}); a translation model's takes (source [N, steps], source_valid [N], \
             decoder_input [N, steps])",
            forward.inputs.iter().map(|i| i.ty.to_string()).collect::<Vec<_>>().join(", ")
        )));
    }
    Ok(steps)
}

/// Checks that `forward` predicts the target vocabulary.
pub fn check_vocab(module: &Module, pairs: &Pairs) -> Result<(), Error> {
    let out = module.function("forward").map(|f| f.output_types()[0].clone());
    match out.as_ref().map(|t| &t.shape.0[..]) {
        Some([_, Dim::Const(t), Dim::Const(v)])
            if *t as usize == pairs.steps && *v as usize == pairs.target_vocab.len() =>
        {
            Ok(())
        }
        Some([_, Dim::Const(t), Dim::Const(v)]) if *t as usize == pairs.steps => Err(Error::Usage(format!(
            "`forward` predicts {v} tokens, but the target vocabulary has {}: set the model's target \
             vocabulary size to {} (and the source's to {})",
            pairs.target_vocab.len(),
            pairs.target_vocab.len(),
            pairs.source_vocab.len()
        ))),
        _ => Err(Error::Usage(format!(
            "`forward` returns {}; a translation model returns logits [N, {}, target vocabulary]",
            out.map_or_else(|| "nothing".into(), |t| t.to_string()),
            pairs.steps
        ))),
    }
}

fn ints(values: Vec<i32>, shape: Vec<usize>, ty: &TensorType) -> HostTensor {
    crate::language::int_tensor(values, shape, ty.dtype)
}

/// The loss's five inputs for the pairs at `indices`, in the dtypes it
/// declares.
pub fn batch(pairs: &Pairs, indices: &[usize], types: &[&TensorType]) -> Vec<HostTensor> {
    let p = pairs.select(indices);
    let (n, grid) = (indices.len(), vec![indices.len(), pairs.steps]);
    vec![
        ints(p.source, grid.clone(), types[0]),
        ints(p.source_valid, vec![n], types[1]),
        ints(p.target_in, grid.clone(), types[2]),
        ints(p.target_out, grid, types[3]),
        ints(p.target_valid, vec![n], types[4]),
    ]
}

/// The mean cross-entropy of `forward`'s logits over the targets' valid
/// tokens (the book's loss, masked by `<pad>`), teacher-forced, in
/// evaluation mode.
pub fn valid_loss(
    run: &dyn Fn(&str, &[HostTensor]) -> Outputs,
    pairs: &Pairs,
    batch_size: usize,
    types: &[&TensorType],
) -> Result<f64, Error> {
    let all: Vec<usize> = (0..pairs.len()).collect();
    let (mut total, mut count) = (0.0, 0usize);
    for chunk in all.chunks(batch_size.max(1)) {
        let inputs = batch(pairs, chunk, types);
        let logits = run("forward", &inputs[..3]).map_err(Error::from)?;
        let values = logits.first().map(Tensor::to_f64_vec).unwrap_or_default();
        let vocab = pairs.target_vocab.len();
        if values.len() != chunk.len() * pairs.steps * vocab {
            return Err(Error::Internal(format!(
                "`forward` returned {} logits, not {}",
                values.len(),
                chunk.len() * pairs.steps * vocab
            )));
        }
        for (row, &i) in chunk.iter().enumerate() {
            for s in 0..(pairs.target_valid[i] as usize).min(pairs.steps) {
                let at = (row * pairs.steps + s) * vocab;
                total += crate::language::token_loss(
                    &values[at..at + vocab],
                    pairs.target_out[i * pairs.steps + s] as usize,
                );
                count += 1;
            }
        }
    }
    Ok(total / count.max(1) as f64)
}

/// `sentence` translated greedily: the decoder input starts as `<bos>`,
/// and at each step `forward` runs on the tokens chosen so far and the
/// most likely next token is appended, until `<eos>` or `steps` tokens.
pub fn translate(
    run: &dyn Fn(&str, &[HostTensor]) -> Outputs,
    pairs: &Pairs,
    sentence: &str,
    types: &[&TensorType],
) -> Result<Vec<String>, Error> {
    let t = pairs.steps;
    let (source, valid) = pairs.encode_source(sentence);
    let pad = pairs.target_vocab.index(kiln_runtime::translation::PAD) as i32;
    let mut decoder = vec![pad; t];
    decoder[0] = pairs.target_vocab.index(BOS) as i32;
    let mut out = Vec::new();
    for step in 0..t {
        let inputs = [
            ints(source.clone(), vec![1, t], types[0]),
            ints(vec![valid], vec![1], types[1]),
            ints(decoder.clone(), vec![1, t], types[2]),
        ];
        let logits = run("forward", &inputs).map_err(Error::from)?;
        let values = logits.first().map(Tensor::to_f64_vec).unwrap_or_default();
        let vocab = pairs.target_vocab.len();
        if values.len() != t * vocab {
            return Err(Error::Internal(format!("`forward` returned {} logits, not {}", values.len(), t * vocab)));
        }
        let best = crate::language::argmax(&values[step * vocab..(step + 1) * vocab]);
        let token = pairs.target_vocab.token(best);
        if token == EOS {
            break;
        }
        out.push(token.to_string());
        if step + 1 < t {
            decoder[step + 1] = best as i32;
        }
    }
    Ok(out)
}

/// The book's BLEU of a predicted sentence against one reference, over
/// n-grams up to `k`: a brevity penalty times each n-gram precision to the
/// power 1/2^n.
pub fn bleu(predicted: &str, reference: &str, k: usize) -> f64 {
    let pred: Vec<&str> = predicted.split(' ').collect();
    let label: Vec<&str> = reference.split(' ').collect();
    let (len_pred, len_label) = (pred.len() as f64, label.len() as f64);
    let mut score = (1.0 - len_label / len_pred).min(0.0).exp();
    for n in 1..=k.min(pred.len()) {
        let mut counts: std::collections::HashMap<String, i64> = std::collections::HashMap::new();
        for w in label.windows(n) {
            *counts.entry(w.join(" ")).or_default() += 1;
        }
        let mut matches = 0;
        for w in pred.windows(n) {
            if let Some(c) = counts.get_mut(&w.join(" "))
                && *c > 0
            {
                matches += 1;
                *c -= 1;
            }
        }
        score *= (f64::from(matches) / (pred.len() - n + 1) as f64).powf(0.5f64.powi(n as i32));
    }
    score
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bleu_as_the_book_computes_it() {
        assert_eq!(bleu("va !", "va !", 2), 1.0);
        assert_eq!(bleu("je suis chez moi .", "je suis chez moi .", 2), 1.0);
        // Two of three unigrams and one of two bigrams.
        let b = bleu("il est mouillé", "il est calme .", 2);
        let expected = (1.0f64 - 4.0 / 3.0).exp() * (2.0f64 / 3.0).powf(0.5) * 0.5f64.powf(0.25);
        assert!((b - expected).abs() < 1e-12, "{b} against {expected}");
        assert_eq!(bleu("chat", "va !", 2), 0.0);
        let b = bleu("je suis .", "je suis calme .", 2);
        // Brevity exp(1 - 4/3), unigrams 3/3, bigrams 1/2 to the power 1/4.
        let expected = (1.0f64 - 4.0 / 3.0).exp() * 0.5f64.powf(0.25);
        assert!((b - expected).abs() < 1e-12, "{b} against {expected}");
        assert_eq!(bleu("perdu", "j'ai perdu .", 2), (1.0f64 - 3.0).exp());
    }
}

/// What `kiln translate` was asked for.
#[derive(Clone, Debug)]
pub struct TranslateOptions {
    /// The sentence pairs the model was trained on: its vocabularies are
    /// rebuilt from them as `kiln train` built them.
    pub data: std::path::PathBuf,
    /// Trained parameters (`kiln train --save`); fresh ones from `seed` if absent.
    pub params: Option<std::path::PathBuf>,
    /// The sentences to translate; the book's test sentences if empty.
    pub sentences: Vec<String>,
    /// Seeds fresh parameters.
    pub seed: u64,
    /// The model to use, when the file has several.
    pub model: Option<String>,
    /// Values for the root model's arguments.
    pub args: Vec<(String, String)>,
    /// What runs `forward`.
    pub backend: crate::Backend,
}

/// Compiles `file`, loads its parameters and translates each sentence
/// greedily; with no sentences given, the book's test sentences, each
/// with its BLEU against the book's reference.
pub fn translate_file(
    file: &std::path::Path,
    o: &TranslateOptions,
) -> Result<Vec<(String, String, Option<f64>)>, Error> {
    let options = kiln_frontend::Options { model: o.model.clone(), args: o.args.clone(), ..Default::default() };
    let compiled = crate::compile_file(file, &options)?;
    let module = &compiled.module;
    let forward = module.function("forward").ok_or_else(|| {
        Error::Usage("a translation model needs `forward(source, source_valid, decoder_input)`".into())
    })?;
    let types: Vec<TensorType> = forward.inputs.iter().filter(|i| i.name != "key").map(|i| i.ty.clone()).collect();
    let ranks: Vec<usize> = types.iter().map(TensorType::rank).collect();
    if ranks != [2, 1, 2] || !types.iter().all(|t| t.dtype.is_int()) {
        return Err(Error::Usage(format!(
            "`forward` takes ({}); a translation model's takes integer (source [N, steps], source_valid [N], \
             decoder_input [N, steps])",
            types.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
        )));
    }
    let steps = types[0].shape.0.get(1).and_then(Dim::as_const).unwrap_or(0) as usize;
    let pairs = kiln_runtime::translation::load_pairs(&o.data, steps, kiln_runtime::translation::BOOK_LINES)
        .map_err(|e| Error::Usage(e.to_string()))?;
    check_vocab(module, &pairs)?;
    let sentences: Vec<(String, Option<&str>)> = if o.sentences.is_empty() {
        TEST_SENTENCES.iter().map(|(s, r)| (s.to_string(), Some(*r))).collect()
    } else {
        o.sentences.iter().map(|s| (s.clone(), None)).collect()
    };
    let params = crate::inference_params(module, o.params.as_deref(), o.seed)?;
    let refs: Vec<&TensorType> = types.iter().collect();
    crate::with_session(module, o.backend, params, |run| {
        sentences
            .iter()
            .map(|(sentence, reference)| {
                let translation = translate(run, &pairs, sentence, &refs)?.join(" ");
                let score = reference.map(|r| bleu(&translation, r, 2));
                Ok((sentence.clone(), translation, score))
            })
            .collect()
    })
}

//! The book's character language models on "The Time Machine" through
//! `kiln train` and `kiln generate`: perplexity falls, the trained model
//! continues a prefix one token at a time, and misuse is a clear error.
//! Reduced runs (8 steps, 512 subsequences) that fit in CI; the book's
//! full runs are in docs/performance.md.

use std::path::{Path, PathBuf};

use kiln::language::{GenerateOptions, generate_file};
use kiln::train::{TrainOptions, TrainReport, train};

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples").join(name)
}

fn time_machine() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/timemachine")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kiln-language-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn options(epochs: usize) -> TrainOptions {
    TrainOptions {
        data: Some(time_machine()),
        epochs,
        batch: 64,
        limit: Some(512),
        test_limit: Some(256),
        args: vec![("steps".into(), "8".into())],
        ..TrainOptions::default()
    }
}

fn run(name: &str, o: &TrainOptions) -> Result<TrainReport, kiln::Error> {
    train(&example(name), o, |_, _| {}, |_| {})
}

/// Each model's perplexity (the RNN, GRU, LSTM and two-layer RNN) falls well below the 28 of a uniform guess
/// over the vocabulary, on the text it trains on and on the text after it,
/// and the sample continues "time traveller" by 50 characters.
#[test]
fn rnn_gru_and_lstm_learn_the_time_machine() {
    for (name, epochs) in [("rnn_lm.kiln", 4), ("gru_lm.kiln", 4), ("lstm_lm.kiln", 4), ("deep_rnn.kiln", 4)] {
        let report = run(name, &options(epochs)).unwrap();
        let first = &report.epochs[0];
        let last = &report.epochs[epochs - 1];
        let (train, valid) = (last.train_perplexity.unwrap(), last.valid_perplexity.unwrap());
        assert!(train < first.train_perplexity.unwrap() && train < 20.0, "{name}: {:?}", report.epochs);
        assert!(valid < 20.0, "{name}: valid perplexity {valid}");
        let sample = report.sample.unwrap();
        assert!(sample.starts_with("time traveller"), "{name}: {sample}");
        assert_eq!(sample.chars().count(), "time traveller".len() + 50, "{name}: {sample}");
    }
}

/// `kiln generate` on a checkpoint continues the prefix exactly as the run
/// that saved it did, whatever backend runs the step.
#[test]
fn generate_continues_a_prefix_from_saved_parameters() {
    let saved = scratch("gru.safetensors");
    let report = run("gru_lm.kiln", &TrainOptions { save: Some(saved.clone()), ..options(2) }).unwrap();
    let mut o = GenerateOptions {
        data: time_machine(),
        params: Some(saved),
        prefix: "time traveller".into(),
        tokens: 50,
        seed: 0,
        model: None,
        args: vec![("steps".into(), "8".into())],
        backend: kiln::Backend::Jit,
    };
    let text = generate_file(&example("gru_lm.kiln"), &o).unwrap();
    assert_eq!(Some(&text), report.sample.as_ref());
    o.backend = kiln::Backend::Interp;
    o.tokens = 10;
    let short = generate_file(&example("gru_lm.kiln"), &o).unwrap();
    assert_eq!(short, text[..short.len()], "the interpreter picks the same tokens");
}

/// With `--partition sequential` each batch starts from the state the one
/// before returned (here the state counts the batches, and the loss reads
/// it), from zero in each epoch; with random partitioning every batch
/// starts from zero.
#[test]
fn sequential_partitioning_carries_the_state_from_batch_to_batch() {
    let path = scratch("counter.kiln");
    std::fs::write(
        &path,
        "model Counter(steps: int = 4) {\n    param w: f32[28, 28] = zeros\n    \
         fn forward(x: i32[N, steps]) -> f32[N, steps, 28] { w[x] }\n}\n\
         train Counter {\n    fn loss(x: i32[N, steps], y: i32[N, steps], h: f32[N, 2]) {\n        \
         [mean(h) + 0.0 * sum(forward(x)), h + 1.0]\n    }\n    optimizer sgd(lr = 0.1)\n}\n",
    )
    .unwrap();
    let o = TrainOptions { epochs: 2, batch: 8, limit: Some(200), args: Vec::new(), ..options(2) };
    let sequential =
        train(&path, &TrainOptions { partition: kiln::train::Partition::Sequential, ..o.clone() }, |_, _| {}, |_| {})
            .unwrap();
    for epoch in &sequential.epochs {
        let expected: Vec<f64> = (0..epoch.batch_losses.len()).map(|b| b as f64).collect();
        assert_eq!(epoch.batch_losses, expected, "epoch {}", epoch.epoch);
        assert_eq!(epoch.batch_losses.len(), 6, "204 tokens in 8 rows of 24 or 25: 6 batches of 4 steps");
    }
    let random = train(&path, &o, |_, _| {}, |_| {}).unwrap();
    assert!(random.epochs.iter().all(|e| e.batch_losses.iter().all(|l| *l == 0.0)));
    let e = train(
        &path,
        &TrainOptions { batch: 100, partition: kiln::train::Partition::Sequential, ..o },
        |_, _| {},
        |_| {},
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("leaves fewer than 4 tokens a row"), "{e}");
}

#[test]
fn misuse_is_a_clear_error() {
    let e = run("rnn_lm.kiln", &TrainOptions { data: None, ..options(1) }).unwrap_err().to_string();
    assert!(e.contains("a language model trains on a text: give --data"), "{e}");
    let mut wrong_vocab = options(1);
    wrong_vocab.args.push(("vocab".into(), "30".into()));
    let e = run("rnn_lm.kiln", &wrong_vocab).unwrap_err().to_string();
    assert!(e.contains("`forward` predicts 30 tokens, but the corpus has a vocabulary of 28"), "{e}");
    let e = run("rnn_lm.kiln", &TrainOptions { test_limit: Some(0), ..options(1) }).unwrap_err().to_string();
    assert!(e.contains("no text left to measure perplexity on"), "{e}");

    // A loss that takes a state must return the state it ends in.
    let path = scratch("stateless.kiln");
    std::fs::write(
        &path,
        "model M(steps: int = 4) {\n    param w: f32[28, 28] = zeros\n    \
         fn forward(x: i32[N, steps]) -> f32[N, steps, 28] { w[x] }\n}\n\
         train M {\n    fn loss(x: i32[N, steps], y: i32[N, steps], h: f32[N, 2]) -> f32 {\n        \
         mean(cross_entropy(forward(x), y)) + mean(h)\n    }\n    optimizer sgd(lr = 0.1)\n}\n",
    )
    .unwrap();
    let e = train(&path, &TrainOptions { args: Vec::new(), ..options(1) }, |_, _| {}, |_| {}).unwrap_err().to_string();
    assert!(e.contains("so it returns [loss, new state...] with the new state f32[N, 2] as output 2"), "{e}");

    let generate = |file: &str, prefix: &str| {
        let o = GenerateOptions {
            data: time_machine(),
            params: None,
            prefix: prefix.into(),
            tokens: 5,
            seed: 0,
            model: None,
            args: Vec::new(),
            backend: kiln::Backend::Jit,
        };
        generate_file(&example(file), &o).unwrap_err().to_string()
    };
    let e = generate("rnn_lm.kiln", "");
    assert!(e.contains("the prefix is empty"), "{e}");
    let e = generate("mlp.kiln", "time");
    assert!(e.contains("has no `next(token, state...)`"), "{e}");
}

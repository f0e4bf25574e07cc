//! The book's English-French encoder-decoder through `kiln train`: the
//! pairs as the book prepares them, teacher-forced training on the masked
//! loss, the validation loss, and greedy translations of the test
//! sentences scored by BLEU; misuse is a clear error. Reduced runs (states
//! of 32, 128 pairs) that fit in CI; the book's run is in
//! docs/performance.md.

use std::path::{Path, PathBuf};

use kiln::train::{TrainOptions, TrainReport, train};

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples").join(name)
}

fn pairs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/fra-eng/fra.txt")
}

fn options(epochs: usize) -> TrainOptions {
    TrainOptions {
        data: Some(pairs()),
        epochs,
        batch: 32,
        limit: Some(128),
        test_limit: Some(32),
        args: vec![("embed".into(), "32".into()), ("hiddens".into(), "32".into())],
        ..TrainOptions::default()
    }
}

fn run(name: &str, o: &TrainOptions) -> Result<TrainReport, kiln::Error> {
    train(&example(name), o, |_, _| {}, |_| {})
}

/// The loss falls, the validation loss is measured after every epoch, and
/// the four test sentences are translated and scored.
fn trains_and_translates(name: &str, args: &[(&str, &str)]) {
    let o = TrainOptions { args: args.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(), ..options(4) };
    let report = run(name, &o).unwrap();
    let (first, last) = (&report.epochs[0], &report.epochs[3]);
    assert!(last.train_loss < first.train_loss, "{name}: {:?}", report.epochs);
    assert!(last.valid_loss < first.valid_loss, "{name}: the validation loss falls too: {:?}", report.epochs);
    assert!(report.epochs.iter().all(|e| e.valid_loss.is_some_and(f64::is_finite)));
    assert_eq!(report.translations.len(), 4);
    for t in &report.translations {
        assert!((0.0..=1.0).contains(&t.bleu), "{name}: {t:?}");
        assert!(t.translation.split(' ').count() <= 9, "at most 9 tokens: {t:?}");
        assert!(!t.translation.contains("<eos>") && !t.translation.contains("<bos>"), "{t:?}");
    }
    assert_eq!(report.translations[0].source, "go .");
}

#[test]
fn seq2seq_trains_and_translates() {
    trains_and_translates("seq2seq.kiln", &[("embed", "32"), ("hiddens", "32")]);
}

#[test]
fn bahdanau_attention_trains_and_translates() {
    trains_and_translates("bahdanau.kiln", &[("embed", "32"), ("hiddens", "32")]);
}

#[test]
fn the_transformer_trains_and_translates() {
    trains_and_translates("transformer.kiln", &[("hiddens", "32"), ("inner", "16"), ("heads", "2")]);
}

/// `kiln translate` on a checkpoint writes what the run that saved it
/// wrote, on the JIT and on the interpreter, and scores the book's
/// sentences; a sentence of its own gets no score.
#[test]
fn translate_from_saved_parameters() {
    let saved = std::env::temp_dir().join(format!("kiln-translate-{}.safetensors", std::process::id()));
    let report = run("seq2seq.kiln", &TrainOptions { save: Some(saved.clone()), ..options(2) }).unwrap();
    let mut o = kiln::translate::TranslateOptions {
        data: pairs(),
        params: Some(saved),
        sentences: Vec::new(),
        seed: 0,
        model: None,
        args: options(1).args,
        backend: kiln::Backend::Jit,
    };
    let translated = kiln::translate::translate_file(&example("seq2seq.kiln"), &o).unwrap();
    assert_eq!(translated.len(), 4);
    for ((source, translation, bleu), t) in translated.iter().zip(&report.translations) {
        assert_eq!((source, translation), (&t.source, &t.translation));
        assert_eq!(*bleu, Some(t.bleu));
    }
    o.backend = kiln::Backend::Interp;
    o.sentences = vec!["go .".into()];
    let one = kiln::translate::translate_file(&example("seq2seq.kiln"), &o).unwrap();
    assert_eq!(one, [(translated[0].0.clone(), translated[0].1.clone(), None)]);
    o.data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/timemachine/timemachine.txt");
    let e = kiln::translate::translate_file(&example("seq2seq.kiln"), &o).unwrap_err().to_string();
    assert!(e.contains("no `source<TAB>target` line"), "{e}");
}

#[test]
fn misuse_is_a_clear_error() {
    let e = run("seq2seq.kiln", &TrainOptions { data: None, ..options(1) }).unwrap_err().to_string();
    assert!(e.contains("a translation model trains on sentence pairs: give --data"), "{e}");
    let mut wrong = options(1);
    wrong.args.push(("target_vocab".into(), "200".into()));
    let e = run("seq2seq.kiln", &wrong).unwrap_err().to_string();
    assert!(e.contains("`forward` predicts 200 tokens, but the target vocabulary has 212"), "{e}");
    let time_machine = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/timemachine/timemachine.txt");
    let e = run("seq2seq.kiln", &TrainOptions { data: Some(time_machine), ..options(1) }).unwrap_err().to_string();
    assert!(e.contains("no `source<TAB>target` line"), "{e}");
}

//! `kiln train`: compiles a file's `train` block into a training step and
//! runs it over a data set for some epochs, reporting loss and accuracy per
//! epoch, and optionally saving the parameters and plotting the curves.
//!
//! The data follow from the loss's signature: integer labels mean image
//! classification from an MNIST-style directory (Fashion-MNIST by default);
//! float targets mean the book's synthetic linear-regression data.

use std::path::{Path, PathBuf};
use std::time::Instant;

use kiln_frontend::Options;
use kiln_ir::interp::{Params, Tensor};
use kiln_ir::{DType, Dim, Module, TensorType};
use kiln_runtime::checkpoint::TrainState;
use kiln_runtime::dataset::{Dataset, Split, load_image_classification, shuffled_batches, synthetic_linear};
use kiln_runtime::execute::{HostData, HostTensor};
use kiln_runtime::text::{Corpus, Sequences, TRAIN_SEQUENCES, VALID_SEQUENCES, load_char_corpus};
use kiln_runtime::trainer::Trainer;
use kiln_runtime::translation::{BOOK_LINES, BOOK_TRAIN_PAIRS, Pairs, load_pairs};

use crate::{Error, compile_file, with_train_step};

/// Where `kiln train` looks for data when `--data` is not given: the
/// Debian package `dataset-fashion-mnist`.
pub const DEFAULT_DATA: &str = "/usr/share/datasets/fashion-mnist";

/// How many synthetic examples linear regression trains on (the book's 1000).
const SYNTHETIC_EXAMPLES: usize = 1000;

/// What `kiln train` was asked to do.
#[derive(Clone, Debug)]
pub struct TrainOptions {
    /// An MNIST-style directory for a classifier (`DEFAULT_DATA` when
    /// absent); a regression trains on the book's synthetic data.
    pub data: Option<PathBuf>,
    /// How many passes over the training data.
    pub epochs: usize,
    /// Examples per step (the last batch of an epoch may be smaller).
    pub batch: usize,
    /// A learning rate that replaces the `train` block's.
    pub lr: Option<f64>,
    /// Seeds initialization, shuffling and dropout.
    pub seed: u64,
    /// Train on the first this many examples only (for quick runs).
    pub limit: Option<usize>,
    /// Evaluate on the first this many test examples only.
    pub test_limit: Option<usize>,
    /// The model to train, when the file has several.
    pub model: Option<String>,
    /// What runs the step.
    pub backend: crate::Backend,
    /// Where the trained parameters go (with the optimizer's state and
    /// where training stood, so the run can be resumed from them).
    pub save: Option<PathBuf>,
    /// Also save to `save` after every this many epochs.
    pub checkpoint_every: Option<usize>,
    /// Continue the run saved in this checkpoint, up to `epochs` in all.
    pub resume: Option<PathBuf>,
    /// Where the curves are drawn (SVG) after training.
    pub plot: Option<PathBuf>,
    /// Resize the images to this height and width before the model sees
    /// them, bilinearly as the book's `Resize` (`kiln train --resize 96`).
    pub resize: Option<[usize; 2]>,
    /// Values for the root model's arguments (`--set size=96`).
    pub args: Vec<(String, String)>,
    /// K-fold cross-validation of a table's regression (`--folds 5`): K
    /// models, each trained on all but one K-th of the training rows and
    /// measured on that K-th, as the book's `k_fold` does.
    pub folds: Option<usize>,
    /// Where a table's regression writes its predictions for the test rows
    /// (`Id,label` lines; with folds, the mean of the K models').
    pub submission: Option<PathBuf>,
    /// How a language model's text is cut into batches.
    pub partition: Partition,
}

/// How a language model's training text becomes batches (D2L 9.3).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Partition {
    /// The subsequences at every offset, shuffled each epoch (the book's
    /// `TimeMachine`); recurrent states start at zero in every batch.
    #[default]
    Random,
    /// Each epoch from a random offset, the text laid out in `batch` rows
    /// read `steps` tokens at a time (the book's `seq_data_iter_sequential`),
    /// so that each batch continues the one before: recurrent states are
    /// carried from batch to batch (their gradient stopped there), starting
    /// at zero in each epoch.
    Sequential,
}

impl Default for TrainOptions {
    /// The book's MLP run: 10 epochs of batch 256 on the default data, the
    /// `train` block's learning rate, seed 0, the JIT.
    fn default() -> TrainOptions {
        TrainOptions {
            data: None,
            epochs: 10,
            batch: 256,
            lr: None,
            seed: 0,
            limit: None,
            test_limit: None,
            model: None,
            backend: crate::Backend::Jit,
            save: None,
            checkpoint_every: None,
            resume: None,
            plot: None,
            resize: None,
            args: Vec::new(),
            folds: None,
            submission: None,
            partition: Partition::Random,
        }
    }
}

/// The figures of one epoch.
#[derive(Clone, Debug)]
pub struct EpochReport {
    /// Counted from 1.
    pub epoch: usize,
    /// The cross-validation fold this epoch trained, counted from 1.
    pub fold: Option<usize>,
    /// The mean of the batches' losses, weighted by their sizes.
    pub train_loss: f64,
    /// Accuracy of the predictions made on each batch before its update
    /// (the logits the step's loss was computed from).
    pub train_accuracy: Option<f64>,
    /// Accuracy of `forward` on the test set after the epoch.
    pub test_accuracy: Option<f64>,
    /// A table regression's root-mean-square error of the logarithms
    /// (predictions below 1 count as 1, as in the book) on the rows it
    /// trained on, after the epoch.
    pub train_log_rmse: Option<f64>,
    /// The same on the fold held out, when cross-validating.
    pub valid_log_rmse: Option<f64>,
    /// A language model's perplexity on its training tokens (`exp` of the
    /// epoch's mean loss).
    pub train_perplexity: Option<f64>,
    /// A language model's perplexity on the held-out text (of `forward`,
    /// after the epoch).
    pub valid_perplexity: Option<f64>,
    /// A translation model's loss on the validation pairs (of `forward`,
    /// teacher-forced, after the epoch).
    pub valid_loss: Option<f64>,
    /// The epoch's wall time.
    pub seconds: f64,
    /// Of which in training steps (the compiled step's calls, from batch in
    /// to loss out).
    pub step_seconds: f64,
    /// Each batch's mean loss, in order: the curve within the epoch.
    pub batch_losses: Vec<f64>,
}

/// The outcome of a run: the epochs and the trained parameters.
#[derive(Debug)]
pub struct TrainReport {
    /// The trained model's name.
    pub model: String,
    /// Each epoch's figures.
    pub epochs: Vec<EpochReport>,
    /// Every parameter's value after training (optimizer state included).
    pub params: Params,
    /// The model's parameters (not the optimizer's state).
    pub model_params: Vec<String>,
    /// The epochs a resumed run had done before this one.
    pub resumed_after: Option<u64>,
    /// The height and width the images were resized to, when they were
    /// (asked for with `resize`, or the model's input size).
    pub resized_to: Option<[usize; 2]>,
    /// How many functions the JIT compiled (each once, whatever the batch
    /// sizes: the last, partial batch runs the same code); 0 on another
    /// backend.
    pub compilations: usize,
    /// With folds, the mean over the folds of the held-out log-RMSE after
    /// the last epoch (the book's "average validation log rmse").
    pub cross_validation: Option<f64>,
    /// A language model's continuation of "time traveller" after
    /// training, when it has a `next` step to generate with.
    pub sample: Option<String>,
    /// A translation model's greedy translations of the book's test
    /// sentences after training.
    pub translations: Vec<Translation>,
}

/// One test sentence translated after training.
#[derive(Clone, Debug)]
pub struct Translation {
    /// The English sentence, as the book writes it.
    pub source: String,
    /// The French the book expects.
    pub reference: String,
    /// What the model wrote, up to `<eos>`.
    pub translation: String,
    /// The book's BLEU with n-grams up to 2.
    pub bleu: f64,
}

enum Task {
    Classification {
        classes: usize,
    },
    /// The book's synthetic linear-regression data.
    Regression,
    /// A table's regression: the training rows of `table`, measured by
    /// log-RMSE, predicting its test rows.
    Table(Box<kiln_runtime::table::Table>),
    /// A language model on a character corpus: subsequences of `steps`
    /// tokens, measured by perplexity.
    Language {
        corpus: Box<Corpus>,
        steps: usize,
    },
    /// An encoder-decoder on sentence pairs: measured by the validation
    /// loss, and by BLEU on the book's test sentences after training.
    Translation {
        train: Box<Pairs>,
        valid: Box<Pairs>,
    },
}

/// The examples one epoch trains on or one evaluation measures.
#[derive(Clone, Copy)]
enum Examples<'a> {
    Rows(&'a Dataset),
    Text(&'a Sequences),
    /// The tokens of `corpus` before `end`, partitioned sequentially anew
    /// each epoch.
    Sequential {
        corpus: &'a Corpus,
        steps: usize,
        end: usize,
    },
    Pairs(&'a Pairs),
}

impl Examples<'_> {
    fn len(&self) -> usize {
        match self {
            Examples::Rows(d) => d.len(),
            Examples::Text(s) => s.len(),
            Examples::Sequential { end, steps, .. } => end.saturating_sub(*steps),
            Examples::Pairs(p) => p.len(),
        }
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The loss's data inputs for the examples at `indices`: inputs and
    /// targets, or a translation model's five.
    fn batch(
        &self,
        indices: &[usize],
        feed: &InputFeed<'_>,
        y: &TensorType,
        all: &[&TensorType],
    ) -> Result<Vec<HostTensor>, Error> {
        match self {
            Examples::Rows(d) => Ok(vec![batch_inputs(d, indices, feed)?, batch_targets(d, indices, y)?]),
            Examples::Text(s) => {
                let (x, y) = crate::language::batch(s, indices, feed.ty, y);
                Ok(vec![x, y])
            }
            Examples::Pairs(p) => Ok(crate::translate::batch(p, indices, all)),
            Examples::Sequential { .. } => Err(Error::Internal("sequential text is batched per epoch".into())),
        }
    }
}

/// Trains the model of `path`; `on_epoch` sees each epoch's report as it
/// ends and `on_batch` each finished batch (for a progress bar).
pub fn train(
    path: &Path,
    options: &TrainOptions,
    mut on_batch: impl FnMut(usize, usize),
    mut on_epoch: impl FnMut(&EpochReport),
) -> Result<TrainReport, Error> {
    check_outputs(path, options)?;
    if let Some(lr) = options.lr
        && !(lr.is_finite() && lr > 0.0)
    {
        return Err(Error::Usage(format!("the learning rate must be a positive number, not {lr}")));
    }
    let compiled = compile_file(
        path,
        &Options { model: options.model.clone(), lr: options.lr, args: options.args.clone(), ..Options::default() },
    )?;
    let spec =
        compiled.train.clone().ok_or_else(|| Error::Usage(format!("{} has no `train` block", path.display())))?;
    let module = with_train_step(&compiled)?;
    let loss = module.function(&spec.loss).ok_or_else(|| Error::Usage("the loss function is missing".into()))?;
    let data_inputs: Vec<&TensorType> = loss.inputs.iter().filter(|i| i.name != "key").map(|i| &i.ty).collect();
    let (x_type, y_type, state_types) = match data_inputs.as_slice() {
        [x, y] => (*x, *y, Vec::new()),
        inputs if crate::translate::is_translation(inputs) => (inputs[0], inputs[3], Vec::new()),
        [x, y, states @ ..] if crate::language::is_language_model(x, y) => {
            (*x, *y, crate::language::check_states(loss, states)?)
        }
        _ => {
            return Err(Error::Usage(format!(
                "`{}` takes {} data inputs; `kiln train` feeds two (inputs and labels or targets), or a language \
                 model's tokens, targets and recurrent states",
                spec.loss,
                data_inputs.len()
            )));
        }
    };
    let task = if crate::translate::is_translation(&data_inputs) {
        let Some(path) = &options.data else {
            return Err(Error::Usage(
                "a translation model trains on sentence pairs: give --data, such as ../shared/data/fra-eng/fra.txt"
                    .into(),
            ));
        };
        let steps = crate::translate::check_model(&module, &data_inputs)?;
        // The vocabularies come from the book's 641 lines (or more, when
        // the limits ask for more pairs), whatever the limits train on.
        let train_count = options.limit.unwrap_or(BOOK_TRAIN_PAIRS);
        let valid_count = options.test_limit.unwrap_or(BOOK_LINES - BOOK_TRAIN_PAIRS);
        let lines = BOOK_LINES.max(train_count.saturating_add(valid_count));
        let pairs = load_pairs(path, steps, lines).map_err(|e| Error::Usage(e.to_string()))?;
        crate::translate::check_vocab(&module, &pairs)?;
        let train_count = train_count.min(pairs.len());
        let valid_end = train_count.saturating_add(valid_count).min(pairs.len());
        let train_part = pairs.select(&(0..train_count).collect::<Vec<_>>());
        let valid_part = pairs.select(&(train_count..valid_end).collect::<Vec<_>>());
        Task::Translation { train: Box::new(train_part), valid: Box::new(valid_part) }
    } else if crate::language::is_language_model(x_type, y_type) {
        let Some(path) = &options.data else {
            return Err(Error::Usage(
                "a language model trains on a text: give --data, such as ../shared/data/timemachine".into(),
            ));
        };
        let corpus = load_char_corpus(path).map_err(|e| Error::Usage(e.to_string()))?;
        let steps = crate::language::check_model(&module, x_type, y_type, &corpus.vocab)?;
        Task::Language { corpus: Box::new(corpus), steps }
    } else if y_type.dtype.is_int() {
        Task::Classification { classes: classes(&module)? }
    } else {
        match &options.data {
            None => Task::Regression,
            Some(dir) if kiln_runtime::table::is_table_dir(dir) => {
                let table = kiln_runtime::table::load_table(dir).map_err(|e| Error::Usage(e.to_string()))?;
                Task::Table(Box::new(table))
            }
            Some(dir) => {
                return Err(Error::Usage(format!(
                    "{}: a regression loss trains on a table (a directory with `*train.csv` and `*test.csv`) \
                     or, without --data, on the book's synthetic data",
                    dir.display()
                )));
            }
        }
    };
    let Split { train: mut train_set, test: mut test_set } = match &task {
        Task::Regression => {
            Split { train: synthetic_linear(SYNTHETIC_EXAMPLES, options.seed), test: Dataset::default() }
        }
        Task::Table(table) => Split { train: table.train.clone(), test: table.test.clone() },
        Task::Language { .. } | Task::Translation { .. } => {
            Split { train: Dataset::default(), test: Dataset::default() }
        }
        Task::Classification { .. } => {
            let dir = options.data.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_DATA));
            if !dir.exists() {
                return Err(Error::NoData { dir });
            }
            load_image_classification(&dir).map_err(|e| Error::Usage(e.to_string()))?
        }
    };
    if let Some(n) = options.limit {
        train_set = train_set.take(n);
    }
    if let Some(n) = options.test_limit {
        test_set = test_set.take(n);
    }
    if let Task::Classification { classes } = task {
        check_labels(&train_set, classes, "training")?;
        check_labels(&test_set, classes, "test")?;
    }
    if let Task::Table(table) = &task
        && let Some((i, y)) = train_set.targets.iter().enumerate().find(|(_, y)| y.is_nan() || **y <= 0.0)
    {
        return Err(Error::Usage(format!(
            "`{}` of training row {} is {y}: log-RMSE needs positive labels",
            table.label,
            i + 1
        )));
    }
    // A language model's examples: the book's 10,000 subsequences to train
    // on and the next 5,000 to validate on (or as many as the limits say).
    // Sequential partitioning cuts the same text: the tokens before `end`.
    let text_end = |corpus: &Corpus, steps: usize| {
        options.limit.unwrap_or(TRAIN_SEQUENCES).saturating_add(steps).min(corpus.tokens.len())
    };
    let text = match &task {
        Task::Language { corpus, steps } => {
            let train_count = options.limit.unwrap_or(TRAIN_SEQUENCES);
            let valid_count = options.test_limit.unwrap_or(VALID_SEQUENCES);
            let train_part = corpus.subsequences(*steps, 0, train_count);
            let valid_part = corpus.subsequences(*steps, train_count, train_count.saturating_add(valid_count));
            if options.partition == Partition::Sequential {
                // Even from the last offset an epoch must fill one batch.
                let end = text_end(corpus, *steps);
                if state_types.is_empty() {
                    return Err(Error::Usage(
                        "--partition sequential carries recurrent states from batch to batch, but the loss takes \
                         none: give it the states after the targets and return them after the loss"
                            .into(),
                    ));
                }
                if corpus.sequential(options.batch, *steps, *steps, end).1.is_empty() {
                    return Err(Error::Usage(format!(
                        "sequential partitioning of {end} training tokens into {} rows leaves fewer than {steps} \
                         tokens a row: use a smaller --batch, or more text with --limit",
                        options.batch
                    )));
                }
            }
            Some((train_part, valid_part))
        }
        _ => None,
    };
    let (train_examples, test_examples) = match (&text, &task) {
        (Some((_, v)), Task::Language { corpus, steps }) if options.partition == Partition::Sequential => {
            (Examples::Sequential { corpus, steps: *steps, end: text_end(corpus, *steps) }, Examples::Text(v))
        }
        (Some((t, v)), _) => (Examples::Text(t), Examples::Text(v)),
        (None, Task::Translation { train, valid }) => (Examples::Pairs(train), Examples::Pairs(valid)),
        (None, _) => (Examples::Rows(&train_set), Examples::Rows(&test_set)),
    };
    if options.partition == Partition::Sequential && !matches!(task, Task::Language { .. }) {
        return Err(Error::Usage("--partition cuts a language model's text: this model is not one".into()));
    }
    check_folds(options, &task, train_set.len())?;
    let resize = match options.resize {
        Some([h, w]) if h == 0 || w == 0 => {
            return Err(Error::Usage(format!("cannot resize images to {h}x{w}: both sizes must be at least 1")));
        }
        Some(to) if train_set.image.is_none() || text.is_some() => {
            return Err(Error::Usage(format!("--resize {}x{}: the training data are not images", to[0], to[1])));
        }
        Some(to) => Some(to),
        // The model says its image size: a one-channel input [N, 1, H, W]
        // of another size than the data's images gets them resized to it.
        None => match (train_set.image, &x_type.shape.0[..]) {
            (Some(from), [_, Dim::Const(1), Dim::Const(h), Dim::Const(w)]) if [*h as usize, *w as usize] != from => {
                Some([*h as usize, *w as usize])
            }
            _ => None,
        },
    };
    let features = resize.map_or(train_set.features, |[h, w]| h * w);
    let rows = if text.is_some() || matches!(task, Task::Translation { .. }) {
        Ok(Vec::new())
    } else {
        input_shape(x_type, 1, features)
    };
    rows.map_err(|e| match (e, train_set.image, resize) {
        (Error::Usage(m), Some([h, w]), None) => Error::Usage(format!("{m} ({h}x{w} images)")),
        (Error::Usage(m), None, None) if matches!(task, Task::Table(_)) => {
            Error::Usage(format!("{m} (the table's preprocessing; set the model's feature count to {features})"))
        }
        (e, ..) => e,
    })?;
    let x_input = InputFeed { ty: x_type, resize };
    if options.batch == 0 {
        return Err(Error::Usage("the batch size must be at least 1".into()));
    }
    if options.epochs == 0 {
        return Err(Error::Usage("0 epochs would train nothing: ask for at least 1".into()));
    }
    if train_examples.is_empty() {
        return Err(Error::Usage("there are no training examples (is the limit 0?)".into()));
    }
    if let (Task::Language { .. }, true) = (&task, test_examples.is_empty()) {
        return Err(Error::Usage(
            "there is no text left to measure perplexity on (is the test limit 0, or the corpus short?)".into(),
        ));
    }
    if let (Task::Translation { .. }, true) = (&task, test_examples.is_empty()) {
        return Err(Error::Usage(
            "there are no pairs left to validate on (is the test limit 0, or the file short?)".into(),
        ));
    }
    if let (Task::Classification { .. }, true) = (&task, test_set.is_empty()) {
        return Err(Error::Usage("there are no test examples to measure accuracy on (is the test limit 0?)".into()));
    }

    let all_params: Vec<String> = module.params.iter().map(|p| p.name.clone()).collect();
    let model_params: Vec<String> =
        compiled.module.params.iter().map(|p| p.name.clone()).filter(|n| !n.starts_with("opt.")).collect();
    let interpreter = kiln_runtime::execute::Interpreter { module: &module };
    let jit = crate::jit::Jit::new(&module);
    let gpu = match options.backend {
        crate::Backend::Cuda => Some(crate::gpu::Gpu::new(&module)?),
        _ => None,
    };
    let executor: &dyn kiln_runtime::execute::Execute = match (&options.backend, &gpu) {
        (_, Some(gpu)) => gpu,
        (crate::Backend::Interp, _) => &interpreter,
        _ => &jit,
    };
    let fit = Fit {
        options,
        all_params: &all_params,
        task: &task,
        x_input,
        y_type,
        // Whether the step returns the logits its loss was computed from.
        step_logits: spec.loss_and_logits.is_some(),
        states: &state_types,
        inputs: &data_inputs,
    };
    let mut epochs = Vec::new();
    let mut sample = None;
    let mut translations = Vec::new();
    let (params, resumed_after, cross_validation) = if let Some(k) = options.folds {
        // The book's `k_fold`: a fresh model per fold; the submission is
        // the mean of their predictions.
        let (mut held_out, mut predictions) = (Vec::new(), Vec::new());
        let mut last = None;
        for fold in 0..k {
            let (train_part, valid_part) = train_set.k_fold(k, fold);
            let params = kiln_ir::try_initialize_params(&module, options.seed).map_err(Error::Allocation)?;
            let mut trainer = Trainer::new(&module, executor, spec.updates.clone(), params, options.seed);
            let (train_part, valid_part) = (Examples::Rows(&train_part), Examples::Rows(&valid_part));
            let reports =
                fit.epochs(&mut trainer, train_part, valid_part, 0, Some(fold + 1), &mut on_batch, &mut on_epoch)?;
            held_out.push(reports.last().and_then(|r| r.valid_log_rmse).unwrap_or(f64::NAN));
            epochs.extend(reports);
            if options.submission.is_some() {
                predictions.push(predict(&trainer, &test_set, &x_input, options.batch)?);
            }
            last = Some(trainer.params()?);
        }
        if let (Some(path), Task::Table(table)) = (&options.submission, &task) {
            let mean: Vec<f64> =
                (0..test_set.len()).map(|i| predictions.iter().map(|p| p[i]).sum::<f64>() / k as f64).collect();
            kiln_runtime::table::write_submission(path, table, &mean).map_err(|e| Error::Usage(e.to_string()))?;
        }
        let params = last.ok_or_else(|| Error::Internal("no fold was trained".into()))?;
        (params, None, Some(held_out.iter().sum::<f64>() / k as f64))
    } else {
        let (params, resumed) = match &options.resume {
            None => (kiln_ir::try_initialize_params(&module, options.seed).map_err(Error::Allocation)?, None),
            Some(from) => {
                let state = resume_state(from, options)?;
                (kiln_runtime::checkpoint::load(from, &module, |_| true)?, Some(state))
            }
        };
        let mut trainer = Trainer::new(&module, executor, spec.updates.clone(), params, options.seed);
        if let Some(state) = resumed {
            trainer.resume_at(state.steps);
        }
        let first_epoch = resumed.map_or(0, |s| s.epoch as usize);
        let nothing = Dataset::default();
        let evaluate_on = if matches!(task, Task::Table(_)) { Examples::Rows(&nothing) } else { test_examples };
        epochs =
            fit.epochs(&mut trainer, train_examples, evaluate_on, first_epoch, None, &mut on_batch, &mut on_epoch)?;
        if let Task::Translation { train, .. } = &task {
            let run = |f: &str, inputs: &[HostTensor]| trainer.run_host(f, inputs);
            for (source, reference) in crate::translate::TEST_SENTENCES {
                let translation = crate::translate::translate(&run, train, source, &data_inputs)?.join(" ");
                let bleu = crate::translate::bleu(&translation, reference, 2);
                translations.push(Translation {
                    source: source.into(),
                    reference: reference.into(),
                    translation,
                    bleu,
                });
            }
        }
        if let (Task::Language { corpus, .. }, true) = (&task, module.function(crate::language::NEXT).is_some()) {
            let run = |f: &str, inputs: &[HostTensor]| trainer.run_host(f, inputs);
            sample = Some(crate::language::generate(
                &run,
                &module,
                &corpus.vocab,
                crate::language::PREFIX,
                crate::language::SAMPLE_TOKENS,
            )?);
        }
        if let (Some(path), Task::Table(table)) = (&options.submission, &task) {
            let predictions = predict(&trainer, &test_set, &x_input, options.batch)?;
            kiln_runtime::table::write_submission(path, table, &predictions)
                .map_err(|e| Error::Usage(e.to_string()))?;
        }
        (trainer.params().map_err(Error::from)?, resumed.map(|s| s.epoch), None)
    };
    if let Some(plot_path) = &options.plot {
        let backend = match options.backend {
            crate::Backend::Jit => "JIT",
            crate::Backend::Interp => "interpreter",
            crate::Backend::Cuda => "CUDA",
        };
        // With folds, the first fold's curves, as the book draws them.
        let shown: Vec<EpochReport> = epochs.iter().filter(|e| e.fold.unwrap_or(1) == 1).cloned().collect();
        let title = match options.folds {
            Some(k) => format!("{} ({backend}, fold 1 of {k})", spec.model),
            None => format!("{} ({backend})", spec.model),
        };
        plot(plot_path, &title, &shown)?;
    }
    Ok(TrainReport {
        model: spec.model.clone(),
        epochs,
        params,
        model_params,
        resumed_after,
        resized_to: resize,
        compilations: jit.compilations(),
        cross_validation,
        sample,
        translations,
    })
}

/// The checkpoint a run resumes from, checked against this run's options.
fn resume_state(from: &Path, options: &TrainOptions) -> Result<TrainState, Error> {
    let state = kiln_runtime::checkpoint::train_state(from)?;
    if state.seed != options.seed {
        return Err(Error::Usage(format!(
            "{} was saved by a run with seed {}, not {}: resume with the same seed",
            from.display(),
            state.seed,
            options.seed
        )));
    }
    if state.batch != options.batch as u64 {
        return Err(Error::Usage(format!(
            "{} was saved by a run with batches of {}, not {}: resume with the same batch size",
            from.display(),
            state.batch,
            options.batch
        )));
    }
    if state.epoch >= options.epochs as u64 {
        return Err(Error::Usage(format!(
            "{} has trained {} epochs already: ask for more than {} in all",
            from.display(),
            state.epoch,
            state.epoch
        )));
    }
    Ok(state)
}

/// Folds and submissions go with a table's regression, and folds train K
/// models, so they do not mix with saving or resuming one.
fn check_folds(options: &TrainOptions, task: &Task, rows: usize) -> Result<(), Error> {
    let table = matches!(task, Task::Table(_));
    if options.submission.is_some() && !table {
        return Err(Error::Usage("--submission writes predictions for a table's test rows: give --data DIR".into()));
    }
    if options.submission.is_some() && options.test_limit.is_some() {
        return Err(Error::Usage("--submission predicts every test row: leave out --test-limit".into()));
    }
    let Some(k) = options.folds else { return Ok(()) };
    if !table {
        return Err(Error::Usage("--folds cross-validates a regression on a table: give --data DIR".into()));
    }
    if k < 2 || k > rows {
        return Err(Error::Usage(format!("--folds {k}: give between 2 and the {rows} training rows")));
    }
    if options.save.is_some() || options.resume.is_some() || options.checkpoint_every.is_some() {
        return Err(Error::Usage(
            "--folds trains K models, and checkpoints keep one: train without --folds to save or resume".into(),
        ));
    }
    Ok(())
}

/// What every epoch of a run needs, whichever fold it trains.
struct Fit<'a> {
    options: &'a TrainOptions,
    all_params: &'a [String],
    task: &'a Task,
    x_input: InputFeed<'a>,
    y_type: &'a TensorType,
    step_logits: bool,
    /// A language model's recurrent states, inputs of the loss after the
    /// tokens and targets (and outputs after the loss).
    states: &'a [TensorType],
    /// The types of all the loss's data inputs.
    inputs: &'a [&'a TensorType],
}

impl Fit<'_> {
    /// Trains from `first_epoch` to the options' last epoch on `train_set`,
    /// measuring on `held_out` (the test set of a classifier, the held-out
    /// fold of a table) after each; saves checkpoints as asked.
    #[allow(clippy::too_many_arguments)]
    fn epochs(
        &self,
        trainer: &mut Trainer<'_>,
        train_set: Examples<'_>,
        held_out: Examples<'_>,
        first_epoch: usize,
        fold: Option<usize>,
        on_batch: &mut impl FnMut(usize, usize),
        on_epoch: &mut impl FnMut(&EpochReport),
    ) -> Result<Vec<EpochReport>, Error> {
        let (options, task, x_input, y_type) = (self.options, self.task, self.x_input, self.y_type);
        let mut epochs = Vec::new();
        for epoch in first_epoch..options.epochs {
            let start = Instant::now();
            // Sequential text is laid out anew each epoch, from a random offset.
            let (laid_out, batches) = match train_set {
                Examples::Sequential { corpus, steps, end } => {
                    let offset = (kiln_ir::random::bits(options.seed, 0x0ff5_e700 + epoch as u64, 0)
                        % (steps as u64 + 1)) as usize;
                    let (seqs, batches) = corpus.sequential(options.batch, steps, offset, end);
                    (Some(seqs), batches)
                }
                _ => (None, shuffled_batches(train_set.len(), options.batch, options.seed, epoch as u64)),
            };
            let epoch_set = laid_out.as_ref().map_or(train_set, Examples::Text);
            let carry = laid_out.is_some();
            let mut carried: Vec<HostTensor> = Vec::new();
            let (mut loss_sum, mut seen, mut correct) = (0.0, 0usize, 0usize);
            let mut step_seconds = 0.0;
            let mut batch_losses = Vec::with_capacity(batches.len());
            // The next batches are gathered on another thread while a step runs.
            std::thread::scope(|scope| -> Result<(), Error> {
                let (send, receive) = std::sync::mpsc::sync_channel(2);
                let (data, order, inputs_of_loss) = (epoch_set, &batches, self.inputs);
                let producer = scope.spawn(move || {
                    for indices in order {
                        let batch = data.batch(indices, &x_input, y_type, inputs_of_loss);
                        if send.send(batch).is_err() {
                            break; // the loop below stopped early
                        }
                    }
                });
                for (b, indices) in batches.iter().enumerate() {
                    let mut inputs =
                        receive.recv().map_err(|_| Error::Internal("the batch loader stopped".into()))??;
                    if let (Task::Classification { .. }, false, Examples::Rows(rows)) =
                        (task, self.step_logits, train_set)
                    {
                        let logits = trainer.run_host("forward", &inputs[..1]).map_err(Error::from)?;
                        correct += count_correct(&logits[0], &rows.labels, indices);
                    }
                    if !self.states.is_empty() {
                        if !carry || carried.is_empty() {
                            carried = self.states.iter().map(|ty| crate::language::zeros(ty, indices.len())).collect();
                        }
                        inputs.append(&mut carried);
                    }
                    let step_start = Instant::now();
                    let (loss, outputs) = trainer.step_host(inputs).map_err(Error::from)?;
                    step_seconds += step_start.elapsed().as_secs_f64();
                    if carry {
                        carried = outputs.iter().take(self.states.len()).map(crate::language::to_host).collect();
                    }
                    if let (Task::Classification { .. }, true, Some(logits), Examples::Rows(rows)) =
                        (task, self.step_logits, outputs.first(), train_set)
                    {
                        correct += count_correct(logits, &rows.labels, indices);
                    }
                    if !loss.is_finite() {
                        let at = fold.map_or_else(String::new, |f| format!("fold {f} "));
                        return Err(Error::Usage(format!(
                            "the loss became {loss} in {at}epoch {} batch {}: lower the learning rate",
                            epoch + 1,
                            b + 1
                        )));
                    }
                    loss_sum += loss * indices.len() as f64;
                    batch_losses.push(loss);
                    seen += indices.len();
                    on_batch(b + 1, batches.len());
                }
                drop(receive);
                producer.join().map_err(|_| Error::Internal("the batch loader panicked".into()))
            })?;
            let (mut train_accuracy, mut test_accuracy) = (None, None);
            let (mut train_log_rmse, mut valid_log_rmse) = (None, None);
            let (mut train_perplexity, mut valid_perplexity) = (None, None);
            let mut valid_loss = None;
            let train_loss = loss_sum / seen.max(1) as f64;
            match (task, train_set, held_out) {
                (Task::Classification { .. }, _, Examples::Rows(held_out)) => {
                    test_accuracy = Some(accuracy(trainer, held_out, &x_input, options.batch)?);
                    train_accuracy = Some(correct as f64 / seen.max(1) as f64);
                }
                (Task::Table(_), Examples::Rows(train_set), Examples::Rows(held_out)) => {
                    train_log_rmse = Some(log_rmse(trainer, train_set, &x_input, options.batch)?);
                    if !held_out.is_empty() {
                        valid_log_rmse = Some(log_rmse(trainer, held_out, &x_input, options.batch)?);
                    }
                }
                (Task::Translation { .. }, _, Examples::Pairs(held_out)) if !held_out.is_empty() => {
                    let run = |f: &str, inputs: &[HostTensor]| trainer.run_host(f, inputs);
                    valid_loss = Some(crate::translate::valid_loss(&run, held_out, options.batch, self.inputs)?);
                }
                (Task::Language { .. }, _, Examples::Text(held_out)) => {
                    train_perplexity = Some(train_loss.exp());
                    let run = |f: &str, inputs: &[HostTensor]| trainer.run_host(f, inputs);
                    valid_perplexity =
                        Some(crate::language::perplexity(&run, held_out, options.batch, x_input.ty, y_type)?);
                }
                _ => {}
            }
            let report = EpochReport {
                epoch: epoch + 1,
                fold,
                train_loss,
                train_accuracy,
                test_accuracy,
                train_log_rmse,
                valid_log_rmse,
                train_perplexity,
                valid_perplexity,
                valid_loss,
                seconds: start.elapsed().as_secs_f64(),
                step_seconds,
                batch_losses,
            };
            on_epoch(&report);
            epochs.push(report);
            let due = options.checkpoint_every.is_some_and(|k| (epoch + 1) % k == 0);
            if let (Some(save), true) = (&options.save, due || epoch + 1 == options.epochs) {
                let state = TrainState {
                    epoch: epoch as u64 + 1,
                    steps: trainer.steps(),
                    seed: options.seed,
                    batch: options.batch as u64,
                };
                kiln_runtime::checkpoint::save_training(save, &trainer.params()?, self.all_params, state)?;
            }
        }
        Ok(epochs)
    }
}

/// The checkpoint and plot paths are usable before any training is done:
/// distinct, neither the model's source, each in a directory that takes new
/// files; checkpoints every so many epochs have a file to go to.
fn check_outputs(source: &Path, options: &TrainOptions) -> Result<(), Error> {
    let same = |a: &Path, b: &Path| a == b || matches!((a.canonicalize(), b.canonicalize()), (Ok(x), Ok(y)) if x == y);
    let targets = [("checkpoint", &options.save), ("plot", &options.plot), ("submission", &options.submission)];
    for (i, (first, a)) in targets.iter().enumerate() {
        for (second, b) in &targets[i + 1..] {
            if let (Some(a), Some(b)) = (a, b)
                && same(a, b)
            {
                return Err(Error::Usage(format!(
                    "the {first} and the {second} would both be written to {}",
                    a.display()
                )));
            }
        }
    }
    for (what, target) in targets {
        let Some(target) = target else { continue };
        if same(target, source) {
            return Err(Error::Usage(format!("the {what} would overwrite the model's source {}", source.display())));
        }
        if options.resume.as_deref().is_some_and(|r| same(target, r)) && what != "checkpoint" {
            return Err(Error::Usage(format!("the {what} would overwrite the checkpoint {}", target.display())));
        }
        kiln_runtime::checkpoint::check_target(target)?;
    }
    match (options.checkpoint_every, &options.save) {
        (Some(0), _) => Err(Error::Usage("checkpoints every 0 epochs: give at least 1".into())),
        (Some(k), None) => Err(Error::Usage(format!("checkpoints every {k} epochs need a file to save to"))),
        _ => Ok(()),
    }
}

/// The number of classes: the last dimension of `forward`'s output.
fn classes(module: &Module) -> Result<usize, Error> {
    let forward = module
        .function("forward")
        .ok_or_else(|| Error::Usage("a classifier needs a `forward` function to measure accuracy".into()))?;
    let out = forward.output_types()[0].clone();
    match out.shape.0.last() {
        Some(Dim::Const(c)) if out.rank() == 2 => Ok(*c as usize),
        _ => Err(Error::Usage(format!(
            "`forward` returns {out}; a classifier returns [N, classes] with a constant class count"
        ))),
    }
}

fn check_labels(data: &Dataset, classes: usize, which: &str) -> Result<(), Error> {
    if let Some((i, l)) = data.labels.iter().enumerate().find(|(_, l)| **l < 0 || **l as usize >= classes) {
        return Err(Error::Usage(format!(
            "label {l} of {which} example {i} is out of range for a model with {classes} classes (0..{})",
            classes - 1
        )));
    }
    Ok(())
}

/// The concrete input shape for a batch of `rows`: the declared type with
/// its symbolic dimension set to `rows`; the other dimensions must hold
/// exactly the data's features.
fn input_shape(ty: &TensorType, rows: usize, features: usize) -> Result<Vec<usize>, Error> {
    let mut shape = Vec::new();
    let mut per_row = 1u64;
    for (axis, d) in ty.shape.0.iter().enumerate() {
        match d {
            Dim::Sym(_) if axis == 0 => shape.push(rows),
            Dim::Const(n) if axis > 0 => {
                per_row *= n;
                shape.push(*n as usize);
            }
            _ => {
                return Err(Error::Usage(format!(
                    "the model's input {ty} should be [N, ...] with constant sizes after N"
                )));
            }
        }
    }
    if ty.dtype != DType::F32 || per_row as usize != features {
        return Err(Error::Usage(format!(
            "the model's input {ty} does not fit the data: examples have {features} f32 features"
        )));
    }
    Ok(shape)
}

/// How examples become the model's input: its type, and the size images
/// are resized to first, if any.
#[derive(Clone, Copy)]
struct InputFeed<'a> {
    ty: &'a TensorType,
    resize: Option<[usize; 2]>,
}

/// The rows `indices` of the data's inputs, in f32 as the arena holds them
/// (resized first when asked).
fn batch_inputs(data: &Dataset, indices: &[usize], feed: &InputFeed<'_>) -> Result<HostTensor, Error> {
    match feed.resize {
        Some(to) => {
            let shape = input_shape(feed.ty, indices.len(), to[0] * to[1])?;
            Ok(HostTensor::f32(shape, data.gather_resized(indices, to)))
        }
        None => {
            let shape = input_shape(feed.ty, indices.len(), data.features)?;
            Ok(HostTensor::f32(shape, data.gather_inputs(indices)))
        }
    }
}

/// The labels (i32 or i64) or targets (f32) of the rows `indices`, as the
/// loss's input type `ty` declares them.
fn batch_targets(data: &Dataset, indices: &[usize], ty: &TensorType) -> Result<HostTensor, Error> {
    let mut shape = vec![indices.len()];
    shape.extend(ty.shape.0.iter().skip(1).map(|d| d.as_const().unwrap_or(1) as usize));
    let data = match ty.dtype {
        DType::I32 => HostData::I32(indices.iter().map(|&i| data.labels[i]).collect()),
        DType::I64 => HostData::I64(indices.iter().map(|&i| i64::from(data.labels[i])).collect()),
        DType::F32 => HostData::F32(indices.iter().map(|&i| data.targets[i]).collect()),
        other => {
            return Err(Error::Usage(format!(
                "the loss's targets are {other}; `kiln train` feeds i32 or i64 labels or f32 targets"
            )));
        }
    };
    Ok(HostTensor { shape, data })
}

fn count_correct(logits: &Tensor, labels: &[i32], indices: &[usize]) -> usize {
    let values = logits.to_f64_vec();
    let classes = logits.shape().last().copied().unwrap_or(1).max(1);
    indices
        .iter()
        .take(values.len() / classes)
        .enumerate()
        .filter(|(row, i)| {
            let r = &values[row * classes..(row + 1) * classes];
            let best = r.iter().enumerate().fold(0, |b, (k, v)| if *v > r[b] { k } else { b });
            best as i32 == labels[**i]
        })
        .count()
}

/// Accuracy of `forward` on a data set, in batches of 1000.
fn accuracy(trainer: &Trainer<'_>, data: &Dataset, feed: &InputFeed<'_>, batch: usize) -> Result<f64, Error> {
    if data.is_empty() {
        return Ok(0.0);
    }
    let mut correct = 0;
    let all: Vec<usize> = (0..data.len()).collect();
    // In batches of the training step's size: what fits in memory for it
    // fits for the forward pass.
    for chunk in all.chunks(batch.max(1)) {
        let x = batch_inputs(data, chunk, feed)?;
        let logits = trainer.run_host("forward", &[x]).map_err(Error::from)?;
        correct += count_correct(&logits[0], &data.labels, chunk);
    }
    Ok(correct as f64 / data.len() as f64)
}

/// `forward`'s prediction for each example of a data set (one number
/// each), in batches of the training step's size.
fn predict(trainer: &Trainer<'_>, data: &Dataset, feed: &InputFeed<'_>, batch: usize) -> Result<Vec<f64>, Error> {
    let all: Vec<usize> = (0..data.len()).collect();
    let mut predictions = Vec::with_capacity(data.len());
    for chunk in all.chunks(batch.max(1)) {
        let x = batch_inputs(data, chunk, feed)?;
        let out = trainer.run_host("forward", &[x]).map_err(Error::from)?;
        let values = out.first().map(Tensor::to_f64_vec).unwrap_or_default();
        if values.len() != chunk.len() {
            return Err(Error::Usage(format!(
                "`forward` returns {} numbers for {} examples; a regression predicts one per example ([N] or [N, 1])",
                values.len(),
                chunk.len()
            )));
        }
        predictions.extend(values);
    }
    Ok(predictions)
}

/// The root-mean-square error between the logarithms of `forward`'s
/// predictions and of the targets, predictions below 1 counting as 1: the
/// book's `log_rmse`, which makes an error of 10% count the same on a cheap
/// house and a dear one.
fn log_rmse(trainer: &Trainer<'_>, data: &Dataset, feed: &InputFeed<'_>, batch: usize) -> Result<f64, Error> {
    let predictions = predict(trainer, data, feed, batch)?;
    let squares: f64 =
        // A NaN prediction stays NaN (`max` would make it 1).
        predictions.iter().zip(&data.targets).map(|(p, y)| (clamp_below(*p).ln() - f64::from(*y).ln()).powi(2)).sum();
    Ok((squares / predictions.len().max(1) as f64).sqrt())
}

/// A prediction below 1 counted as 1, as the book's `log_rmse` clamps it;
/// NaN stays NaN.
fn clamp_below(p: f64) -> f64 {
    if p.is_nan() { p } else { p.max(1.0) }
}

/// One curve of the plot: a figure of each epoch, if it has one.
type Metric = fn(&EpochReport) -> Option<f64>;

/// Draws train loss and accuracies against epochs as an SVG, like the
/// book's figures.
pub fn plot(path: &Path, title: &str, epochs: &[EpochReport]) -> Result<(), Error> {
    use plotters::prelude::*;
    let fail = |e: String| Error::Io { path: path.to_path_buf(), message: e };
    let root = SVGBackend::new(path, (640, 420)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| fail(e.to_string()))?;
    let last = epochs.last().map_or(1, |e| e.epoch) as f64;
    let first = epochs.first().map_or(1, |e| e.epoch) as f64 - 1.0;
    // The loss within each epoch, as the book's boards draw it: batch
    // losses averaged in up to 50 groups an epoch, at fractional epochs.
    let curve: Vec<(f64, f64)> = epochs
        .iter()
        .flat_map(|e| {
            let n = e.batch_losses.len();
            let group = n.div_ceil(50).max(1);
            e.batch_losses.chunks(group).enumerate().map(move |(k, c)| {
                let x = e.epoch as f64 - 1.0 + ((k * group + c.len()) as f64 / n as f64);
                (x, c.iter().sum::<f64>() / c.len() as f64)
            })
        })
        .filter(|(_, y)| y.is_finite())
        .collect();
    let top = epochs.iter().map(|e| e.train_loss).chain(curve.iter().map(|p| p.1)).fold(1.0f64, f64::max) * 1.05;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(44)
        .build_cartesian_2d(first..last.max(first + 1.0), 0.0..top)
        .map_err(|e| fail(e.to_string()))?;
    chart.configure_mesh().x_desc("epoch").draw().map_err(|e| fail(e.to_string()))?;
    let light = RGBColor(120, 160, 230);
    chart
        .draw_series(LineSeries::new(curve, light.stroke_width(1)))
        .map_err(|e| fail(e.to_string()))?
        .label("train loss, within epochs")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], light.stroke_width(1)));
    let series: [(&str, RGBColor, Metric); 8] = [
        ("train loss", BLUE, |e| Some(e.train_loss)),
        ("train acc", MAGENTA, |e| e.train_accuracy),
        ("test acc", GREEN, |e| e.test_accuracy),
        ("train log rmse", MAGENTA, |e| e.train_log_rmse),
        ("valid log rmse", GREEN, |e| e.valid_log_rmse),
        ("train perplexity", MAGENTA, |e| e.train_perplexity),
        ("valid perplexity", GREEN, |e| e.valid_perplexity),
        ("valid loss", GREEN, |e| e.valid_loss),
    ];
    for (name, color, value) in series {
        let points: Vec<(f64, f64)> = epochs.iter().filter_map(|e| value(e).map(|v| (e.epoch as f64, v))).collect();
        if points.is_empty() {
            continue;
        }
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
            .map_err(|e| fail(e.to_string()))?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2)));
        chart
            .draw_series(points.into_iter().map(|p| Circle::new(p, 3, color.filled())))
            .map_err(|e| fail(e.to_string()))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::MiddleRight)
        .draw()
        .map_err(|e| fail(e.to_string()))?;
    root.present().map_err(|e| fail(e.to_string()))?;
    Ok(())
}

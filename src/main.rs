//! The `kiln` command line: check, inspect and run models.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use kiln::emit::Emit;
use kiln::{Error, compile_file};
use kiln_frontend::{Options, Style};
use kiln_ir::interp::{Precision, Tensor};

#[derive(Parser)]
#[command(name = "kiln", version, about = "A compiler for deep-learning models")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// How `kiln generate` and `kiln translate` run a trained model.
#[derive(Args)]
struct Trained {
    /// Seeds fresh parameters when no checkpoint is given.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, value_enum, default_value_t = BackendArg::Jit)]
    backend: BackendArg,
    #[arg(long, value_enum, default_value_t = DeviceArg::Cpu)]
    device: DeviceArg,
    #[arg(long)]
    model: Option<String>,
    /// Give the root model's argument ARG this value instead of its default.
    #[arg(long = "set", value_name = "ARG=VALUE")]
    set: Vec<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Parse and type-check a .kiln file (or verify a .ir file) and report errors.
    Check {
        file: PathBuf,
        /// The model to compile, when the file has several.
        #[arg(long)]
        model: Option<String>,
        /// Give the root model's argument ARG this value instead of its
        /// default (an integer, a number, true or false); repeatable.
        #[arg(long = "set", value_name = "ARG=VALUE")]
        set: Vec<String>,
    },
    /// Print an intermediate stage of a file.
    Emit {
        #[arg(value_enum)]
        stage: Stage,
        file: PathBuf,
        /// Print only this function.
        #[arg(long = "fn")]
        function: Option<String>,
        /// A value for a symbolic dimension, as SYMBOL=VALUE (for `kernels`).
        #[arg(long = "bind", value_name = "SYMBOL=VALUE")]
        binds: Vec<String>,
        /// With `opt`: say for each kernel where it came from, which rules
        /// made it, and why its result is materialized.
        #[arg(long)]
        explain: bool,
        /// With `opt`: print kernels, bytes moved and flops before and after
        /// optimization, and what the e-graph did, instead of the graph.
        #[arg(long)]
        stats: bool,
        /// With `ptx`: the GPU architecture (sm_80, sm_86, sm_87, sm_89,
        /// sm_90, sm_90a).
        #[arg(long, default_value = "sm_80")]
        sm: String,
        /// With `ptx`: write FN.ptx and its launch manifest FN.json here,
        /// for `--fn` or else every function, instead of printing the PTX.
        #[arg(short = 'o', long = "out")]
        out: Option<PathBuf>,
        #[arg(long)]
        model: Option<String>,
        /// Give the root model's argument ARG this value instead of its
        /// default (an integer, a number, true or false); repeatable.
        #[arg(long = "set", value_name = "ARG=VALUE")]
        set: Vec<String>,
    },
    /// Run a function on the reference interpreter.
    Run {
        file: PathBuf,
        /// The function to run.
        #[arg(long = "fn")]
        function: String,
        /// An input as NAME=PATH.npy; repeat for each input.
        #[arg(long = "input", value_name = "NAME=PATH")]
        inputs: Vec<String>,
        /// Write an output to this .npy file; repeat, in order, for a
        /// function with several outputs (give one per output or none).
        #[arg(long = "output")]
        outputs: Vec<PathBuf>,
        /// Seed for parameter initialization and the random key.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Compute f32 tensors in f32 (native) or every float in f64 (the
        /// interpreter only: f64 inputs are then accepted for f32 ones and
        /// outputs written as f64).
        #[arg(long, value_enum, default_value_t = PrecisionArg::Native)]
        precision: PrecisionArg,
        /// Parameters saved by `kiln train --save` (instead of fresh ones).
        #[arg(long)]
        params: Option<PathBuf>,
        /// What runs the function: native code or the reference interpreter.
        #[arg(long, value_enum, default_value_t = BackendArg::Jit)]
        backend: BackendArg,
        /// Where it runs: this CPU, or GPU 0 through CUDA (feature `cuda`).
        #[arg(long, value_enum, default_value_t = DeviceArg::Cpu)]
        device: DeviceArg,
        #[arg(long)]
        model: Option<String>,
        /// Give the root model's argument ARG this value instead of its
        /// default (an integer, a number, true or false); repeatable.
        #[arg(long = "set", value_name = "ARG=VALUE")]
        set: Vec<String>,
        /// The model's functions in evaluation mode (batch norm on its running
        /// statistics, no dropout) or in training mode (batch statistics,
        /// dropout drawn from the key; state updates are not kept).
        #[arg(long, value_enum, default_value_t = ModeArg::Eval)]
        mode: ModeArg,
    },
    /// Train the model of a file's `train` block.
    Train {
        file: PathBuf,
        /// An MNIST-style directory for a classifier (default:
        /// /usr/share/datasets/fashion-mnist), or a table (`*train.csv` and
        /// `*test.csv`) for a regression.
        #[arg(long)]
        data: Option<PathBuf>,
        #[arg(long, default_value_t = 10)]
        epochs: usize,
        #[arg(long, default_value_t = 256)]
        batch: usize,
        /// Replace the train block's learning rate (a positive number).
        #[arg(long, allow_negative_numbers = true)]
        lr: Option<f64>,
        /// Seed for initialization, shuffling and dropout.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Save the trained parameters as safetensors (with the optimizer's
        /// state and where training stood, for `--resume`). The file is
        /// replaced whole or not at all; its directory is checked first.
        #[arg(long)]
        save: Option<PathBuf>,
        /// Also save to `--save` after every K epochs.
        #[arg(long, value_name = "K")]
        checkpoint_every: Option<usize>,
        /// Continue the run saved in this checkpoint, up to `--epochs` in all
        /// (same seed and batch size, checked; same data and learning rate):
        /// the same parameters as a run never interrupted.
        #[arg(long, value_name = "P")]
        resume: Option<PathBuf>,
        /// Draw loss and accuracy against epoch as SVG.
        #[arg(long)]
        plot: Option<PathBuf>,
        /// Train on the first N examples only.
        #[arg(long)]
        limit: Option<usize>,
        /// Measure test accuracy on the first N test examples only.
        #[arg(long)]
        test_limit: Option<usize>,
        /// Resize the images to H (square) or HxW before the model sees them,
        /// bilinearly as the book's `Resize` does (for example 96 for ResNet).
        #[arg(long, value_name = "H[xW]", value_parser = parse_size)]
        resize: Option<[usize; 2]>,
        /// What runs the training step: native code or the reference interpreter.
        #[arg(long, value_enum, default_value_t = BackendArg::Jit)]
        backend: BackendArg,
        /// Where it runs: this CPU, or GPU 0 through CUDA (feature `cuda`).
        #[arg(long, value_enum, default_value_t = DeviceArg::Cpu)]
        device: DeviceArg,
        #[arg(long)]
        model: Option<String>,
        /// Give the root model's argument ARG this value instead of its
        /// default (an integer, a number, true or false); repeatable.
        #[arg(long = "set", value_name = "ARG=VALUE")]
        set: Vec<String>,
        /// Cross-validate a table's regression on K folds (the book uses 5):
        /// K fresh models, each measured on the rows it did not train on.
        #[arg(long, value_name = "K")]
        folds: Option<usize>,
        /// Write the predictions for a table's test rows to this CSV
        /// (`Id,SalePrice`; with --folds, the mean of the K models').
        #[arg(long, value_name = "CSV")]
        submission: Option<PathBuf>,
        /// How a language model's text is cut into batches (D2L 9.3):
        /// sequential carries the recurrent states from batch to batch.
        #[arg(long, value_enum, default_value_t = PartitionArg::Random)]
        partition: PartitionArg,
    },
    /// Continue a text with a trained language model: its `next(token,
    /// state...)` step runs once per token, compiled once.
    Generate {
        file: PathBuf,
        /// The text the model was trained on (its vocabulary is rebuilt from it).
        #[arg(long)]
        data: PathBuf,
        /// Parameters saved by `kiln train --save` (fresh ones if absent).
        #[arg(long)]
        params: Option<PathBuf>,
        #[arg(long, default_value = kiln::language::PREFIX)]
        prefix: String,
        /// How many tokens to add after the prefix.
        #[arg(long, default_value_t = kiln::language::SAMPLE_TOKENS)]
        tokens: usize,
        #[command(flatten)]
        with: Trained,
    },
    /// Translate sentences greedily with a trained encoder-decoder: its
    /// `forward` runs once per token, compiled once.
    Translate {
        file: PathBuf,
        /// The sentence pairs the model was trained on (its vocabularies
        /// are rebuilt from them).
        #[arg(long)]
        data: PathBuf,
        /// Parameters saved by `kiln train --save` (fresh ones if absent).
        #[arg(long)]
        params: Option<PathBuf>,
        /// A sentence to translate; repeatable (default: the book's test
        /// sentences, each with its BLEU).
        #[arg(long = "sentence")]
        sentences: Vec<String>,
        #[command(flatten)]
        with: Trained,
    },
    /// Compile functions ahead of time into a static library and a C header.
    Build {
        file: PathBuf,
        /// A function to export; repeat for several.
        #[arg(long = "fn", required = true)]
        functions: Vec<String>,
        /// Bake these parameters (saved by `kiln train --save`) into the
        /// library; without it, callers pass them in a struct.
        #[arg(long)]
        params: Option<PathBuf>,
        /// The size to compile a symbolic dimension for, as SYMBOL=VALUE
        /// (callers may pass smaller batches where rows are independent).
        #[arg(long = "bind", value_name = "SYMBOL=VALUE")]
        binds: Vec<String>,
        /// Where to write lib<NAME>.a and <NAME>.h.
        #[arg(short = 'o', long = "out")]
        out: PathBuf,
        /// The library's name (default: the file's stem).
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        model: Option<String>,
        /// Give the root model's argument ARG this value instead of its
        /// default (an integer, a number, true or false); repeatable.
        #[arg(long = "set", value_name = "ARG=VALUE")]
        set: Vec<String>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Stage {
    /// The graph IR after lowering and dead-code elimination.
    Ir,
    /// The gradient function of `--fn` (default `loss`) with respect to
    /// every parameter (or, without parameters, every float input).
    Grad,
    /// The training step: loss, gradients and optimizer update in one graph.
    Step,
    /// The kernel IR plan of `--fn` (default `forward`), elementwise chains
    /// fused, its sizes symbolic; `--bind` values are the hint its choices
    /// are taken at (symbols not given are 1).
    Kernels,
    /// The Cranelift IR the JIT generates for that plan, kernel by kernel.
    Clif,
    /// The machine code the JIT makes of it, kernel by kernel (Cranelift's
    /// disassembly, after its optimizations).
    Asm,
    /// The graph of `--fn` (default `train_step` when the file trains, else
    /// `forward`) after equality saturation and fusion, kernel by kernel;
    /// symbols not given with `--bind` are 256.
    Opt,
    /// Graphviz of that graph before and after optimization.
    Dot,
    /// PTX for an NVIDIA GPU (`--sm`) of `--fn` (default `train_step` when
    /// the file trains, else `forward`), or of every function with `-o`;
    /// symbols not given with `--bind` are 256. Needs the `ptx` feature.
    Ptx,
}

#[derive(Clone, Copy, ValueEnum)]
enum BackendArg {
    /// Native code from the Cranelift JIT.
    Jit,
    /// The reference interpreter.
    Interp,
}

impl From<BackendArg> for kiln::Backend {
    fn from(b: BackendArg) -> kiln::Backend {
        match b {
            BackendArg::Jit => kiln::Backend::Jit,
            BackendArg::Interp => kiln::Backend::Interp,
        }
    }
}

#[derive(Clone, Copy, PartialEq, ValueEnum)]
enum DeviceArg {
    /// This machine's CPU (with `--backend`).
    Cpu,
    /// GPU 0 through the CUDA driver.
    Cuda,
}

/// The backend a `--backend` and `--device` pair asks for.
fn backend_of(backend: BackendArg, device: DeviceArg) -> Result<kiln::Backend, Error> {
    match (device, backend) {
        (DeviceArg::Cpu, b) => Ok(b.into()),
        (DeviceArg::Cuda, BackendArg::Jit) => Ok(kiln::Backend::Cuda),
        (DeviceArg::Cuda, BackendArg::Interp) => {
            Err(Error::Usage("--backend interp runs on the CPU: leave out --device cuda".into()))
        }
    }
}

/// `--set ARG=VALUE` pairs, split.
fn model_args(set: &[String]) -> Result<Vec<(String, String)>, Error> {
    set.iter()
        .map(|item| match item.split_once('=') {
            Some((name, value)) if !name.trim().is_empty() => Ok((name.trim().to_string(), value.to_string())),
            _ => Err(Error::Usage(format!("--set `{item}` must be ARG=VALUE, for example --set size=96"))),
        })
        .collect()
}

/// `96` or `96x128`: an image height and width.
fn parse_size(text: &str) -> Result<[usize; 2], String> {
    let number = |s: &str| s.trim().parse::<usize>().map_err(|_| format!("`{s}` is not a size: write 96 or 96x96"));
    match text.split_once(['x', 'X']) {
        Some((h, w)) => Ok([number(h)?, number(w)?]),
        None => number(text).map(|n| [n, n]),
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum ModeArg {
    /// Evaluation: running statistics, no dropout.
    Eval,
    /// Training: batch statistics and dropout.
    Train,
}

#[derive(Clone, Copy, ValueEnum)]
enum PartitionArg {
    /// The subsequences at every offset, shuffled; states start at zero.
    Random,
    /// Consecutive batches continue each other; states are carried.
    Sequential,
}

#[derive(Clone, Copy, ValueEnum)]
enum PrecisionArg {
    Native,
    F64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let style = if std::io::stderr().is_terminal() { Style::Color } else { Style::Plain };
    match execute(cli.command) {
        Ok(()) => match OUT_FAILED.lock().map(|e| e.clone()) {
            // What the command did is done; only its report was lost.
            Ok(Some(why)) => {
                eprintln!("error: cannot write to standard output: {why}");
                ExitCode::FAILURE
            }
            _ => ExitCode::SUCCESS,
        },
        Err(Error::Diagnostics(d)) => {
            let count = d.diagnostics.len();
            eprint!("{}", d.render(style));
            eprintln!("error: {count} error{} found", if count == 1 { "" } else { "s" });
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {e}");
            if let Some(hint) = hint(&e) {
                eprintln!("hint: {hint}");
            }
            ExitCode::FAILURE
        }
    }
}

/// What to type to fix an error: the flags that give what was missing.
/// The library's errors say what was expected; only the command line
/// knows its flags.
fn hint(e: &Error) -> Option<String> {
    Some(match e {
        Error::MissingInput { name, .. } => format!("pass --input {name}=PATH.npy"),
        Error::MissingSize { symbol, .. } => format!("give it with --bind {symbol}=VALUE"),
        Error::NoData { .. } => {
            "pass --data DIR, or install the Debian package dataset-fashion-mnist for the default".into()
        }
        Error::NoDevice(_) => "leave out --device cuda to run on the CPU".into(),
        Error::F64NeedsInterpreter => "add --backend interp to compute in f64".into(),
        _ => return None,
    })
}

fn execute(command: Command) -> Result<(), Error> {
    match command {
        Command::Check { file, model, set } => {
            let compiled = compile_file(&file, &Options { model, args: model_args(&set)?, ..Options::default() })?;
            let m = &compiled.module;
            out(&format!(
                "{}: ok ({} function{}, {} parameter{})\n",
                file.display(),
                m.functions.len(),
                if m.functions.len() == 1 { "" } else { "s" },
                m.params.len(),
                if m.params.len() == 1 { "" } else { "s" }
            ));
            Ok(())
        }
        Command::Emit { stage, file, function, binds, explain, stats, sm, out: dir, model, set } => {
            if (explain || stats) && !matches!(stage, Stage::Opt) {
                return Err(Error::Usage("--explain and --stats go with `kiln emit opt`".into()));
            }
            if dir.is_some() && !matches!(stage, Stage::Ptx) {
                return Err(Error::Usage("-o goes with `kiln emit ptx`".into()));
            }
            let compiled = compile_file(&file, &Options { model, args: model_args(&set)?, ..Options::default() })?;
            let sizes = parse_binds(&binds)?;
            let source = file.display().to_string();
            let what = match stage {
                Stage::Ir => Emit::Ir,
                Stage::Grad => Emit::Grad,
                Stage::Step => Emit::Step,
                Stage::Opt => Emit::Opt { explain, stats },
                Stage::Dot => Emit::Dot,
                Stage::Kernels => Emit::Kernels,
                Stage::Clif => Emit::Clif,
                Stage::Asm => Emit::Asm,
                Stage::Ptx => {
                    let (module, default) = kiln::emit::with_default(&compiled, None)?;
                    let functions: Vec<String> = match (&function, &dir) {
                        (Some(name), _) => vec![name.clone()],
                        (None, Some(_)) => module.functions.iter().map(|f| f.name.clone()).collect(),
                        (None, None) => vec![default],
                    };
                    let bind = |f: &kiln_ir::Function| kiln::emit::sizes_of(f, &sizes, 256);
                    let emitted = kiln::ptx::emit(&module, &functions, &bind, &sm, dir.as_deref())?;
                    let mut text = String::new();
                    for e in emitted {
                        match (e.ptx, &dir) {
                            (Some(ptx), _) => text.push_str(&ptx),
                            (None, Some(dir)) => text.push_str(&format!(
                                "wrote {0}/{1}.ptx and {0}/{1}.json: {2} kernel{3}, {4} launch{5} for {sm}, for every size\n",
                                dir.display(),
                                e.function,
                                e.kernels,
                                if e.kernels == 1 { "" } else { "s" },
                                e.entries,
                                if e.entries == 1 { "" } else { "es" },
                            )),
                            (None, None) => {}
                        }
                    }
                    out(&text);
                    return Ok(());
                }
            };
            let text = kiln::emit::emit(&compiled, what, function.as_deref(), &sizes, &source)?;
            out(&text);
            Ok(())
        }
        Command::Build { file, functions, params, binds, out: dir, name, model, set } => {
            let sizes = parse_binds(&binds)?;
            let report = kiln::aot::build(&kiln::aot::BuildOptions {
                file: &file,
                functions: &functions,
                params: params.as_deref(),
                sizes: &sizes,
                out_dir: &dir,
                name: name.as_deref(),
                model,
                args: model_args(&set)?,
            })?;
            out(&format!(
                "wrote {} ({} bytes) and {}\n",
                report.archive.display(),
                report.archive_bytes,
                report.header.display()
            ));
            Ok(())
        }
        Command::Train {
            file,
            data,
            epochs,
            batch,
            lr,
            seed,
            save,
            checkpoint_every,
            resume,
            plot,
            limit,
            test_limit,
            resize,
            backend,
            device,
            model,
            set,
            folds,
            submission,
            partition,
        } => {
            let options = kiln::train::TrainOptions {
                data,
                epochs,
                batch,
                lr,
                seed,
                limit,
                test_limit,
                model,
                backend: backend_of(backend, device)?,
                save,
                checkpoint_every,
                resume,
                plot,
                resize,
                args: model_args(&set)?,
                folds,
                submission,
                partition: match partition {
                    PartitionArg::Random => kiln::train::Partition::Random,
                    PartitionArg::Sequential => kiln::train::Partition::Sequential,
                },
            };
            train(&file, &options)
        }
        Command::Generate { file, data, params, prefix, tokens, with } => {
            let options = kiln::language::GenerateOptions {
                data,
                params,
                prefix,
                tokens,
                seed: with.seed,
                args: model_args(&with.set)?,
                backend: backend_of(with.backend, with.device)?,
                model: with.model,
            };
            out(&format!("{}\n", kiln::language::generate_file(&file, &options)?));
            Ok(())
        }
        Command::Translate { file, data, params, sentences, with } => {
            let options = kiln::translate::TranslateOptions {
                data,
                params,
                sentences,
                seed: with.seed,
                args: model_args(&with.set)?,
                backend: backend_of(with.backend, with.device)?,
                model: with.model,
            };
            for (source, translation, score) in kiln::translate::translate_file(&file, &options)? {
                match score {
                    Some(b) => out(&format!("{source} => {translation}, bleu {b:.3}\n")),
                    None => out(&format!("{source} => {translation}\n")),
                }
            }
            Ok(())
        }
        Command::Run {
            file,
            function,
            inputs,
            outputs: files,
            seed,
            precision,
            params,
            backend,
            device,
            model,
            mode,
            set,
        } => {
            let backend = backend_of(backend, device)?;
            let training = matches!(mode, ModeArg::Train);
            let compiled =
                compile_file(&file, &Options { model, training, args: model_args(&set)?, ..Options::default() })?;
            let mut named = Vec::new();
            for spec in &inputs {
                let Some((name, path)) = spec.split_once('=') else {
                    return Err(Error::Usage(format!("--input `{spec}` must be NAME=PATH.npy")));
                };
                if named.iter().any(|(n, _): &(String, _)| n == name) {
                    return Err(Error::Usage(format!("--input gives `{name}` twice")));
                }
                named.push((name.to_string(), kiln_runtime::npy::read(std::path::Path::new(path))?));
            }
            let params = kiln::inference_params(&compiled.module, params.as_deref(), seed)?;
            let precision = match precision {
                PrecisionArg::Native => Precision::Native,
                PrecisionArg::F64 => Precision::F64,
            };
            let returns = compiled
                .signature(&function)
                .ok_or_else(|| kiln::no_function(&compiled.module, &function))?
                .outputs
                .len();
            if !files.is_empty() && files.len() != returns {
                return Err(Error::Usage(format!(
                    "`{function}` returns {returns} output{}: give --output once for each, in order, or not at all",
                    if returns == 1 { "" } else { "s" }
                )));
            }
            let options = kiln::RunOptions { params: Some(params), seed, backend, precision };
            let outputs = kiln::run(&compiled.module, &function, &named, &options)?;
            for (i, t) in outputs.iter().enumerate() {
                out(&format!("output {i}: {}\n", summarize(t)));
            }
            for (path, t) in files.iter().zip(&outputs) {
                kiln_runtime::npy::write(path, t)?;
                out(&format!("wrote {}\n", path.display()));
            }
            Ok(())
        }
    }
}

fn train(file: &std::path::Path, options: &kiln::train::TrainOptions) -> Result<(), Error> {
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("epoch {prefix} [{bar:30}] {pos}/{len} batches {elapsed}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_prefix("1");
    let report = kiln::train::train(
        file,
        options,
        |done, total| {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        },
        |e| {
            bar.finish_and_clear();
            bar.reset();
            bar.set_prefix((e.epoch + 1).to_string());
            let mut metrics = match (e.train_accuracy, e.test_accuracy) {
                (Some(train), Some(test)) => format!(", train acc {train:.4}, test acc {test:.4}"),
                _ => String::new(),
            };
            if let Some(v) = e.train_log_rmse {
                metrics.push_str(&format!(", train log rmse {v:.4}"));
            }
            if let Some(v) = e.valid_log_rmse {
                metrics.push_str(&format!(", valid log rmse {v:.4}"));
            }
            if let Some(v) = e.valid_loss {
                metrics.push_str(&format!(", valid loss {v:.4}"));
            }
            if let (Some(train), Some(valid)) = (e.train_perplexity, e.valid_perplexity) {
                metrics.push_str(&format!(", train perplexity {train:.3}, valid perplexity {valid:.3}"));
            }
            let fold = e.fold.map_or_else(String::new, |f| format!("fold {f} "));
            out(&format!(
                "{fold}epoch {}: train loss {:.4}{metrics} ({:.3} s, steps {:.3} s)\n",
                e.epoch, e.train_loss, e.seconds, e.step_seconds
            ));
        },
    )?;
    bar.finish_and_clear();
    let total: f64 = report.epochs.iter().map(|e| e.seconds).sum();
    let n = report.epochs.len();
    let resumed = match report.resumed_after {
        Some(done) => format!(" after the {done} of the checkpoint resumed from"),
        None => String::new(),
    };
    let compiled = match report.compilations {
        0 => String::new(),
        1 => ", 1 function compiled once".to_string(),
        k => format!(", {k} functions compiled once each"),
    };
    let resized = match report.resized_to {
        Some([h, w]) => format!(", images resized to {h}x{w}"),
        None => String::new(),
    };
    let trained = match options.folds {
        Some(k) => format!("{k} folds of {} epoch{}", n / k.max(1), if n / k.max(1) == 1 { "" } else { "s" }),
        None => format!("{n} epoch{}", if n == 1 { "" } else { "s" }),
    };
    out(&format!("trained {trained}{resumed} in {total:.1} s{compiled}{resized}\n"));
    for name in &report.model_params {
        let values = report.params[name].to_f64_vec();
        if values.len() <= 4 {
            let shown: Vec<String> = values.iter().map(|v| format!("{v:.4}")).collect();
            out(&format!("{name} = [{}]\n", shown.join(", ")));
        }
    }
    for t in &report.translations {
        out(&format!("{} => {} (reference: {}), bleu {:.3}\n", t.source, t.translation, t.reference, t.bleu));
    }
    if let Some(text) = &report.sample {
        out(&format!("{text}\n"));
    }
    if let (Some(k), Some(mean)) = (options.folds, report.cross_validation) {
        out(&format!("{k}-fold validation: mean log rmse {mean:.4}\n"));
    }
    if let Some(path) = &options.save {
        out(&format!("saved {}\n", path.display()));
    }
    if let Some(path) = &options.submission {
        out(&format!("wrote {}\n", path.display()));
    }
    if let Some(path) = &options.plot {
        out(&format!("plotted {}\n", path.display()));
    }
    Ok(())
}

/// The sizes of `--bind SYMBOL=VALUE` flags; a symbol bound twice is an
/// error.
fn parse_binds(binds: &[String]) -> Result<Vec<(String, u64)>, Error> {
    let mut sizes: Vec<(String, u64)> = Vec::new();
    for spec in binds {
        let (symbol, value) = spec
            .split_once('=')
            .and_then(|(s, v)| v.trim().parse::<u64>().ok().map(|v| (s.trim().to_string(), v)))
            .ok_or_else(|| Error::Usage(format!("--bind `{spec}` must be SYMBOL=VALUE, such as N=256")))?;
        if sizes.iter().any(|(s, _)| *s == symbol) {
            return Err(Error::Usage(format!("--bind gives {symbol} twice")));
        }
        sizes.push((symbol, value));
    }
    Ok(sizes)
}

/// The first failure to write to standard output other than a closed pipe
/// (`kiln emit ir f | head` stops reading, and that is fine): a full disk
/// makes the command fail after it has done its work.
static OUT_FAILED: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// Writes to standard output and flushes; a failure is kept for `main`.
fn out(text: &str) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush())
        && e.kind() != std::io::ErrorKind::BrokenPipe
        && let Ok(mut failed) = OUT_FAILED.lock()
    {
        failed.get_or_insert_with(|| e.to_string());
    }
}

/// The type and the first values of a tensor.
fn summarize(t: &Tensor) -> String {
    let values = t.to_f64_vec();
    let shown: Vec<String> = values.iter().take(8).map(|v| format!("{v:.6}")).collect();
    let more = if values.len() > 8 { ", ..." } else { "" };
    format!("{} [{}{more}]", t.tensor_type(), shown.join(", "))
}

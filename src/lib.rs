//! kiln, the facade: compile a `.kiln` source or a textual `.ir` file to a
//! verified graph IR module; build gradients and the training step; run
//! functions on the reference interpreter, the Cranelift JIT (`jit`) or a
//! GPU (`gpu`); train (`train`); build static libraries (`aot`); emit PTX
//! (`ptx`) and the optimizer's view of a function (`opt`). Plans come from
//! `passes::compile`. The `kiln` binary is the command line over this.

#![warn(missing_docs)]

pub mod aot;
pub mod differential;
pub mod emit;
pub mod gpu;
pub mod jit;
pub mod language;
pub mod opt;
pub mod ptx;
pub mod train;
pub mod translate;

use std::path::{Path, PathBuf};

pub use kiln_frontend as frontend;
pub use kiln_ir as ir;
pub use kiln_passes as passes;
pub use kiln_runtime as runtime;

pub use kiln_frontend::{Diagnostic, Options, SourceMap, Style, TrainSpec};
use kiln_ir::interp::{EvalOptions, Params, Precision, Tensor};
use kiln_ir::{DType, Module};

/// Everything that can go wrong, each with a message for people.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The program has errors: each a value (code, message, spans), with
    /// the sources they point into; [`Diagnostics::render`] shows them.
    #[error("{}", .0.render(Style::Plain))]
    Diagnostics(Diagnostics),
    /// A `.ir` file that does not parse or verify, with the line.
    #[error("{path}:{error}")]
    IrText {
        /// The file.
        path: PathBuf,
        /// Where and what.
        error: kiln_ir::ParseError,
    },
    /// A file that cannot be read.
    #[error("cannot read `{path}`: {message}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The system's reason.
        message: String,
    },
    /// The interpreter's error (or inputs that do not fit a function).
    #[error("{0}")]
    Eval(#[from] kiln_ir::interp::EvalError),
    /// A NumPy file that cannot be read or written.
    #[error("{0}")]
    Npy(#[from] kiln_runtime::npy::NpyError),
    /// A module-level pass broke an invariant (an internal error).
    #[error("{0}")]
    Pass(#[from] kiln_passes::PassError),
    /// The compilation pipeline failed (naming the stage).
    #[error("{0}")]
    Compile(#[from] kiln_passes::CompileError),
    /// A checkpoint that does not fit the model.
    #[error("{0}")]
    Checkpoint(#[from] kiln_runtime::checkpoint::CheckpointError),
    /// A gradient that cannot be built.
    #[error("{0}")]
    Autodiff(#[from] kiln_passes::AutodiffError),
    /// A training step that cannot be built.
    #[error("{0}")]
    TrainStep(#[from] kiln_passes::TrainStepError),
    /// No function of that name.
    #[error("no function `{name}`; this module has: {}", .available.join(", "))]
    NoFunction {
        /// The name asked for.
        name: String,
        /// The module's functions.
        available: Vec<String>,
    },
    /// An input given by a name the function does not have.
    #[error("`{function}` has no input `{name}`; its inputs are: {}", .inputs.join(", "))]
    UnknownInput {
        /// The function.
        function: String,
        /// The name given.
        name: String,
        /// Its inputs' names.
        inputs: Vec<String>,
    },
    /// An input the function needs was not given.
    #[error("missing input `{name}` ({ty}) of `{function}`")]
    MissingInput {
        /// The function.
        function: String,
        /// The input.
        name: String,
        /// Its type.
        ty: String,
    },
    /// A size given for a symbol the function does not have.
    #[error("`{function}` has no symbolic dimension `{symbol}`")]
    UnknownSize {
        /// The function.
        function: String,
        /// The symbol given.
        symbol: String,
    },
    /// A size to compile for was not given (or is 0).
    #[error("`{function}` has the size {symbol}: give a value of at least 1 to compile for")]
    MissingSize {
        /// The function.
        function: String,
        /// The size without a value.
        symbol: String,
    },
    /// No data set where training looked for one.
    #[error(
        "no training data: looked for Fashion-MNIST in `{}` (a directory with train-images-idx3-ubyte.gz, \
         train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz)",
        .dir.display()
    )]
    NoData {
        /// Where it looked.
        dir: PathBuf,
    },
    /// No GPU to run on, and why.
    #[error("no CUDA device: {0}")]
    NoDevice(String),
    /// f64 precision asked of compiled code, which computes f32 in f32.
    #[error("compiled code computes f32 in f32: f64 precision is the reference interpreter's")]
    F64NeedsInterpreter,
    /// Memory for the parameters cannot be had.
    #[error("{0}")]
    Allocation(String),
    /// A request that does not fit the program or the data (the message
    /// says what was expected).
    #[error("{0}")]
    Usage(String),
    /// Running a function failed (typed by the executor).
    #[error("{0}")]
    Execution(#[from] kiln_runtime::execute::ExecError),
    /// Cranelift could not build a plan's code (a JIT listing or a library).
    #[error("{0}")]
    Codegen(#[from] kiln_codegen::CodegenError),
    /// The PTX backend failed.
    #[cfg(feature = "ptx")]
    #[error("{0}")]
    Ptx(#[from] kiln_codegen::nvptx::PtxError),
    /// A bug in kiln, not in the program or the data.
    #[error("internal error: {0}")]
    Internal(String),
}

/// What runs a module's functions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Backend {
    /// Native code from the Cranelift JIT (the default).
    #[default]
    Jit,
    /// The reference interpreter.
    Interp,
    /// PTX on GPU 0 through the CUDA driver (feature `cuda`).
    Cuda,
}

/// A program's errors as values, with the sources their spans point into.
#[derive(Clone, Debug)]
pub struct Diagnostics {
    /// Each error: code, message, spans with labels, hint and notes.
    pub diagnostics: Vec<Diagnostic>,
    /// The files the spans point into.
    pub sources: SourceMap,
}

impl Diagnostics {
    /// The diagnostics with their source lines, as `kiln check` prints them.
    pub fn render(&self, style: Style) -> String {
        kiln_frontend::render(&self.diagnostics, &self.sources, style)
    }
}

/// A compiled file: its module and, for a `.kiln` source with a `train`
/// block, what to train.
#[derive(Clone, Debug)]
pub struct Compiled {
    /// The verified graph IR module.
    pub module: Module,
    /// The `train` block: loss, optimizer, trained parameters, updates.
    pub train: Option<TrainSpec>,
}

/// Compiles a `.kiln` source (lowered, then cleaned up by the pass
/// pipeline) or parses a `.ir` file (verified), by the file's extension.
///
/// ```
/// let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/mlp.kiln");
/// let compiled = kiln::compile_file(&path, &kiln::Options::default()).unwrap();
/// assert!(compiled.module.function("forward").is_some());
/// ```
pub fn compile_file(path: &Path, options: &Options) -> Result<Compiled, Error> {
    if let Err(e) = std::fs::metadata(path) {
        return Err(Error::Io { path: path.to_path_buf(), message: e.to_string() });
    }
    if path.extension().is_some_and(|e| e == "ir") {
        let text = kiln_frontend::read_source(path)
            .map_err(|e| Error::Io { path: path.to_path_buf(), message: e.to_string() })?;
        let module = kiln_ir::parse_module(&text).map_err(|error| Error::IrText { path: path.to_path_buf(), error })?;
        return Ok(Compiled { module, train: None });
    }
    let (sources, result) = kiln_frontend::compile_path(path, options);
    finish(sources, result)
}

/// Compiles kiln source text; `name` names it in diagnostics. A source
/// that `use`s other files finds them relative to the working directory.
///
/// ```
/// let source = "model Scale() { fn forward(x: f32[N, 4]) -> f32[N, 4] { relu(x) * 2.0 } }";
/// let compiled = kiln::compile_source("scale.kiln", source, &kiln::Options::default()).unwrap();
/// let f = compiled.signature("forward").unwrap();
/// assert_eq!(f.to_string(), "forward(x: f32[N, 4]) -> (f32[N, 4])");
///
/// // Errors are values: a code, a message and spans, rendered when asked.
/// let error = kiln::compile_source("bad.kiln", "model M() { fn forward(x: f32[N]) -> f32[N] { y } }", &kiln::Options::default()).unwrap_err();
/// let kiln::Error::Diagnostics(d) = error else { panic!("diagnostics") };
/// assert_eq!(d.diagnostics[0].code.0, "E0201");
/// assert!(d.render(kiln::Style::Plain).contains("bad.kiln"));
/// ```
pub fn compile_source(name: &str, text: &str, options: &Options) -> Result<Compiled, Error> {
    let mut sources = SourceMap::new();
    let root = sources.add(name.to_string(), None, text.to_string());
    let result = kiln_frontend::compile(&mut sources, root, options);
    finish(sources, result)
}

/// The cleanup pipeline after the frontend, or its diagnostics as values.
fn finish(sources: SourceMap, result: Result<kiln_frontend::Program, Vec<Diagnostic>>) -> Result<Compiled, Error> {
    match result {
        Ok(program) => {
            let (module, _) = kiln_passes::Pipeline::cleanup().run(&program.module)?;
            Ok(Compiled { module, train: program.train })
        }
        Err(diagnostics) => Err(Error::Diagnostics(Diagnostics { diagnostics, sources })),
    }
}

/// A function's name, inputs and output types, as `kiln emit ir` heads it.
#[derive(Clone, Debug, PartialEq)]
pub struct Signature {
    /// The function's name.
    pub name: String,
    /// Each input's name and type.
    pub inputs: Vec<(String, kiln_ir::TensorType)>,
    /// Each output's type.
    pub outputs: Vec<kiln_ir::TensorType>,
}

impl std::fmt::Display for Signature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inputs: Vec<String> = self.inputs.iter().map(|(n, t)| format!("{n}: {t}")).collect();
        let outputs: Vec<String> = self.outputs.iter().map(|t| t.to_string()).collect();
        write!(f, "{}({}) -> ({})", self.name, inputs.join(", "), outputs.join(", "))
    }
}

impl Compiled {
    /// Every function of the module with its signature, in module order.
    pub fn functions(&self) -> Vec<Signature> {
        self.module.functions.iter().map(signature_of).collect()
    }

    /// The signature of `function`, if the module has it.
    pub fn signature(&self, function: &str) -> Option<Signature> {
        self.module.function(function).map(signature_of)
    }
}

fn signature_of(f: &kiln_ir::Function) -> Signature {
    Signature {
        name: f.name.clone(),
        inputs: f.inputs.iter().map(|i| (i.name.clone(), i.ty.clone())).collect(),
        outputs: f.output_types().into_iter().cloned().collect(),
    }
}

/// How [`run`] runs a function.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// The parameters' values; `None` initializes them from `seed`.
    pub params: Option<Params>,
    /// The seed of initialization and of a random `key` input not given.
    pub seed: u64,
    /// What runs the function.
    pub backend: Backend,
    /// The interpreter's float precision (f32 computed as f32, or all in
    /// f64: an f32 input may then be an f64 tensor, and f32 outputs come
    /// back as f64 tensors of the values computed).
    pub precision: Precision,
}

/// Runs `function` with inputs given by name, on the JIT, the interpreter
/// or a GPU. An implicit random `key` input, if the function has one and
/// it is not given, is the seed.
///
/// ```
/// use kiln::ir::interp::Tensor;
/// let source = "model Scale() { fn forward(x: f32[N, 2]) -> f32[N, 2] { relu(x) * 2.0 } }";
/// let compiled = kiln::compile_source("scale.kiln", source, &kiln::Options::default()).unwrap();
/// let x = Tensor::from_f32(&[1, 2], &[-1.0, 3.0]);
/// let y = kiln::run(&compiled.module, "forward", &[("x".into(), x)], &kiln::RunOptions::default()).unwrap();
/// assert_eq!(y[0].to_f64_vec(), [0.0, 6.0]);
/// ```
pub fn run(
    module: &Module,
    function: &str,
    named_inputs: &[(String, Tensor)],
    options: &RunOptions,
) -> Result<Vec<Tensor>, Error> {
    let initialized;
    let params = match &options.params {
        Some(p) => p,
        None => {
            initialized = kiln_ir::try_initialize_params(module, options.seed).map_err(Error::Allocation)?;
            &initialized
        }
    };
    let (seed, backend, precision) = (options.seed, options.backend, options.precision);
    if precision == Precision::F64 && backend != Backend::Interp {
        return Err(Error::F64NeedsInterpreter);
    }
    let Some(f) = module.function(function) else {
        return Err(no_function(module, function));
    };
    // Without a GPU to run on, say so before asking for inputs.
    let gpu = if backend == Backend::Cuda { Some(gpu::Gpu::new(module)?) } else { None };
    for (name, _) in named_inputs {
        if !f.inputs.iter().any(|i| &i.name == name) {
            let names: Vec<&str> = f.inputs.iter().map(|i| i.name.as_str()).collect();
            return Err(Error::UnknownInput {
                function: function.into(),
                name: name.clone(),
                inputs: names.iter().map(|n| n.to_string()).collect(),
            });
        }
    }
    let mut inputs = Vec::new();
    for decl in &f.inputs {
        match named_inputs.iter().find(|(n, _)| n == &decl.name) {
            // In f64 precision an f32 input may be given in f64, and keeps its
            // f64 values: the interpreter computes with them as they are.
            Some((_, t)) if precision == Precision::F64 && t.dtype == DType::F64 && decl.ty.dtype == DType::F32 => {
                inputs.push(Tensor { dtype: DType::F32, ..t.clone() });
            }
            Some((_, t)) => inputs.push(t.clone()),
            None if decl.name == "key" && decl.ty.dtype == DType::I64 && decl.ty.rank() == 0 => {
                inputs.push(Tensor::int(DType::I64, ndarray::arr0(seed as i64).into_dyn()));
            }
            None => {
                return Err(Error::MissingInput {
                    function: function.into(),
                    name: decl.name.clone(),
                    ty: decl.ty.to_string(),
                });
            }
        }
    }
    match backend {
        Backend::Interp => {
            let outputs = kiln_ir::interp::evaluate(module, function, &inputs, params, EvalOptions { precision })?;
            // In f64 precision the f32 outputs hold f64 values: said as f64.
            Ok(match precision {
                Precision::F64 | Precision::Perturbed { .. } => outputs
                    .into_iter()
                    .map(|t| if t.dtype == DType::F32 { Tensor { dtype: DType::F64, ..t } } else { t })
                    .collect(),
                Precision::Native => outputs,
            })
        }
        Backend::Jit => {
            // Check the inputs with the interpreter's messages before compiling.
            kiln_ir::interp::bind_inputs(f, &inputs)?;
            use kiln_runtime::execute::Execute;
            Ok(jit::Jit::new(module).run(function, &inputs, params)?)
        }
        Backend::Cuda => {
            kiln_ir::interp::bind_inputs(f, &inputs)?;
            use kiln_runtime::execute::Execute;
            let gpu = match gpu {
                Some(gpu) => gpu,
                None => gpu::Gpu::new(module)?,
            };
            Ok(gpu.run(function, &inputs, params)?)
        }
    }
}

/// The gradient function of `function`: with respect to every float
/// parameter of the module, or, for a module without parameters, every
/// float input. Dead code is removed.
pub fn gradient(module: &Module, function: &str) -> Result<kiln_ir::Function, Error> {
    let f = module.function(function).ok_or_else(|| no_function(module, function))?;
    let mut sources: Vec<kiln_passes::Source> = module
        .params
        .iter()
        .filter(|p| p.ty.dtype.is_float() && !p.name.starts_with("opt."))
        .map(|p| kiln_passes::Source::Param(p.name.clone()))
        .collect();
    if sources.is_empty() {
        sources = f
            .inputs
            .iter()
            .enumerate()
            .filter(|(_, i)| i.ty.dtype.is_float())
            .map(|(i, _)| kiln_passes::Source::Input(i))
            .collect();
    }
    let grad = kiln_passes::differentiate(module, function, &sources)?;
    let cleaned = kiln_passes::eliminate_dead_code(&Module { params: module.params.clone(), functions: vec![grad] });
    Ok(cleaned.functions.into_iter().next().expect("one function in, one out"))
}

/// The module with its `train_step` function added, built from the `train`
/// block's loss and update.
pub fn with_train_step(compiled: &Compiled) -> Result<Module, Error> {
    let spec = compiled.train.as_ref().ok_or_else(|| Error::Usage("this file has no `train` block".into()))?;
    // The step returns the logits beside the loss where the loss has them.
    let loss = spec.loss_and_logits.as_deref().unwrap_or(&spec.loss);
    let step = kiln_passes::build_train_step(&compiled.module, loss, &spec.params, &spec.apply)?;
    let mut module = compiled.module.clone();
    module.functions.push(step);
    Ok(kiln_passes::eliminate_dead_code(&module))
}

/// A usage error naming the functions a module has.
pub fn no_function(module: &Module, name: &str) -> Error {
    let names: Vec<&str> = module.functions.iter().map(|f| f.name.as_str()).collect();
    Error::NoFunction { name: name.into(), available: names.iter().map(|n| n.to_string()).collect() }
}

/// The parameters to run a trained model with: those of a checkpoint saved
/// by `kiln train --save` (its optimizer state left out, so a checkpoint of
/// another optimizer loads too), or fresh ones drawn from `seed`.
pub fn inference_params(module: &Module, checkpoint: Option<&Path>, seed: u64) -> Result<Params, Error> {
    match checkpoint {
        Some(path) => {
            let mut loaded = kiln_runtime::checkpoint::load(path, module, |n| !n.starts_with("opt."))?;
            for p in module.params.iter().filter(|p| p.name.starts_with("opt.")) {
                loaded.insert(p.name.clone(), kiln_ir::initialize(p, seed));
            }
            Ok(loaded)
        }
        None => kiln_ir::try_initialize_params(module, seed).map_err(Error::Allocation),
    }
}

/// Runs `body` with a function that runs `module`'s functions on `backend`
/// in one session holding `params` (each function compiled once, on its
/// first call): what host loops such as generation and translation call.
pub fn with_session<T>(
    module: &Module,
    backend: Backend,
    params: Params,
    body: impl FnOnce(
        &dyn Fn(&str, &[kiln_runtime::execute::HostTensor]) -> kiln_runtime::execute::Outputs,
    ) -> Result<T, Error>,
) -> Result<T, Error> {
    let interpreter = kiln_runtime::execute::Interpreter { module };
    let jit = jit::Jit::new(module);
    let gpu = match backend {
        Backend::Cuda => Some(gpu::Gpu::new(module)?),
        _ => None,
    };
    let executor: &dyn kiln_runtime::execute::Execute = match (&backend, &gpu) {
        (_, Some(gpu)) => gpu,
        (Backend::Interp, _) => &interpreter,
        _ => &jit,
    };
    let session = executor.session(params);
    body(&|f: &str, inputs: &[kiln_runtime::execute::HostTensor]| session.run_host(f, inputs))
}

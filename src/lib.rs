//! kiln, the facade: compile a `.kiln` source or a textual `.ir` file to a
//! verified graph IR module, and run its functions on the reference
//! interpreter. The `kiln` binary is a thin command line over this.

pub mod aot;
pub mod gpu;
pub mod jit;
pub mod opt;
pub mod ptx;
pub mod train;

use std::path::{Path, PathBuf};

pub use kiln_frontend as frontend;
pub use kiln_ir as ir;
pub use kiln_passes as passes;
pub use kiln_runtime as runtime;

use kiln_frontend::{Options, Style, TrainSpec};
use kiln_ir::interp::{EvalOptions, Params, Precision, Tensor};
use kiln_ir::{DType, Module};

/// Everything that can go wrong, each with a message for people.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The program has errors; `rendered` shows them with their source.
    #[error("{rendered}")]
    Diagnostics { rendered: String, count: usize },
    #[error("{path}:{error}")]
    IrText { path: PathBuf, error: kiln_ir::ParseError },
    #[error("cannot read `{path}`: {message}")]
    Io { path: PathBuf, message: String },
    #[error("{0}")]
    Eval(#[from] kiln_ir::interp::EvalError),
    #[error("{0}")]
    Npy(#[from] kiln_runtime::npy::NpyError),
    #[error("{0}")]
    Pass(#[from] kiln_passes::PassError),
    #[error("{0}")]
    Checkpoint(#[from] kiln_runtime::checkpoint::CheckpointError),
    #[error("{0}")]
    Autodiff(#[from] kiln_passes::AutodiffError),
    #[error("{0}")]
    TrainStep(#[from] kiln_passes::TrainStepError),
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Execution(String),
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

/// A compiled file: its module and, for a `.kiln` source with a `train`
/// block, what to train.
#[derive(Clone, Debug)]
pub struct Compiled {
    pub module: Module,
    pub train: Option<TrainSpec>,
}

/// Compiles a `.kiln` source (lowered, then cleaned up by the pass
/// pipeline) or parses a `.ir` file (verified), by the file's extension.
pub fn compile_file(path: &Path, options: &Options, style: Style) -> Result<Compiled, Error> {
    if let Err(e) = std::fs::metadata(path) {
        return Err(Error::Io { path: path.to_path_buf(), message: e.to_string() });
    }
    if path.extension().is_some_and(|e| e == "ir") {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Io { path: path.to_path_buf(), message: e.to_string() })?;
        let module = kiln_ir::parse_module(&text).map_err(|error| Error::IrText { path: path.to_path_buf(), error })?;
        return Ok(Compiled { module, train: None });
    }
    let (sources, result) = kiln_frontend::compile_path(path, options);
    match result {
        Ok(program) => {
            let (module, _) = kiln_passes::Pipeline::cleanup().run(&program.module)?;
            Ok(Compiled { module, train: program.train })
        }
        Err(diagnostics) => Err(Error::Diagnostics {
            rendered: kiln_frontend::render(&diagnostics, &sources, style),
            count: diagnostics.len(),
        }),
    }
}

/// Runs `function` with inputs given by name, on the JIT or the
/// interpreter. An implicit random `key` input, if the function has one and
/// it is not given, is `seed`. `precision` applies to the interpreter.
pub fn run_function(
    module: &Module,
    function: &str,
    named_inputs: &[(String, Tensor)],
    params: &Params,
    seed: u64,
    backend: Backend,
    precision: Precision,
) -> Result<Vec<Tensor>, Error> {
    let Some(f) = module.function(function) else {
        return Err(no_function(module, function));
    };
    // Without a GPU to run on, say so before asking for inputs.
    let gpu = if backend == Backend::Cuda { Some(gpu::Gpu::new(module)?) } else { None };
    for (name, _) in named_inputs {
        if !f.inputs.iter().any(|i| &i.name == name) {
            let names: Vec<&str> = f.inputs.iter().map(|i| i.name.as_str()).collect();
            return Err(Error::Usage(format!(
                "`{function}` has no input `{name}`; its inputs are: {}",
                names.join(", ")
            )));
        }
    }
    let mut inputs = Vec::new();
    for decl in &f.inputs {
        match named_inputs.iter().find(|(n, _)| n == &decl.name) {
            Some((_, t)) => inputs.push(t.clone()),
            None if decl.name == "key" && decl.ty.dtype == DType::I64 && decl.ty.rank() == 0 => {
                inputs.push(Tensor::int(DType::I64, ndarray::arr0(seed as i64).into_dyn()));
            }
            None => {
                return Err(Error::Usage(format!(
                    "missing input `{}` ({}): pass --input {}=PATH.npy",
                    decl.name, decl.ty, decl.name
                )));
            }
        }
    }
    match backend {
        Backend::Interp => Ok(kiln_ir::interp::evaluate(module, function, &inputs, params, EvalOptions { precision })?),
        Backend::Jit => {
            // Check the inputs with the interpreter's messages before compiling.
            kiln_ir::interp::bind_inputs(f, &inputs)?;
            use kiln_runtime::execute::Execute;
            jit::Jit::new(module).run(function, &inputs, params).map_err(Error::Execution)
        }
        Backend::Cuda => {
            kiln_ir::interp::bind_inputs(f, &inputs)?;
            use kiln_runtime::execute::Execute;
            let gpu = match gpu {
                Some(gpu) => gpu,
                None => gpu::Gpu::new(module)?,
            };
            gpu.run(function, &inputs, params).map_err(Error::Execution)
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
    let step = kiln_passes::build_train_step(&compiled.module, &spec.loss, &spec.params, &spec.apply)?;
    let mut module = compiled.module.clone();
    module.functions.push(step);
    Ok(kiln_passes::eliminate_dead_code(&module))
}

/// A usage error naming the functions a module has.
pub fn no_function(module: &Module, name: &str) -> Error {
    let names: Vec<&str> = module.functions.iter().map(|f| f.name.as_str()).collect();
    Error::Usage(format!("no function `{name}`; this module has: {}", names.join(", ")))
}

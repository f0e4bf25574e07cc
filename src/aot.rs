//! `kiln build`: functions of a module compiled ahead of time into a static
//! library and a C header (`kiln_codegen::aot` does the code generation).
//!
//! Each function is lowered once with its sizes symbolic (GEMM as loop
//! nests, so the library needs only libc and libm); the sizes given with
//! `--bind` are the hint and the maximum. A size stays a run-time argument:
//! the caller may pass any value from 1 to the maximum, and the entry point
//! lays out the arena for it, whether or not the function computes rows
//! independently (a loss averages over the batch it is given).
//! Parameters are baked in from a checkpoint (`--params`) or passed by the
//! caller in a struct.

use std::path::{Path, PathBuf};

use kiln_codegen::aot::{self, Arg, ArgDim, Export, LibParam, Library, Size};
use kiln_frontend::Options;
use kiln_ir::kernel::BufferRole;
use kiln_ir::{Bindings, Dim, Module, Symbol};

use crate::Error;

/// What `kiln build` was asked for.
pub struct BuildOptions<'a> {
    /// The `.kiln` or `.ir` file.
    pub file: &'a Path,
    /// The functions to export (at least one).
    pub functions: &'a [String],
    /// A checkpoint whose parameters are baked into the library; without
    /// it the caller passes them.
    pub params: Option<&'a Path>,
    /// The compiled value of each size (`--bind N=256`).
    pub sizes: &'a [(String, u64)],
    /// Where the archive and the header are written.
    pub out_dir: &'a Path,
    /// The library's name; the file's stem when absent.
    pub name: Option<&'a str>,
    /// The model to compile, when the file has several.
    pub model: Option<String>,
    /// Values for the root model's arguments (`--set size=96`).
    pub args: Vec<(String, String)>,
}

/// What `kiln build` wrote.
pub struct BuildReport {
    /// The static library.
    pub archive: PathBuf,
    /// The C header.
    pub header: PathBuf,
    /// The library's size.
    pub archive_bytes: usize,
}

/// Compiles the functions and writes `lib<name>.a` and `<name>.h`.
pub fn build(o: &BuildOptions) -> Result<BuildReport, Error> {
    let options = Options { model: o.model.clone(), args: o.args.clone(), ..Options::default() };
    let compiled = crate::compile_file(o.file, &options)?;
    let module = match compiled.train {
        Some(_) => crate::with_train_step(&compiled)?,
        None => compiled.module.clone(),
    };
    let name = match o.name {
        Some(n) => n.to_string(),
        None => o.file.file_stem().and_then(|s| s.to_str()).unwrap_or("kiln").to_string(),
    };
    let name = c_identifier(&name)?;
    if o.functions.is_empty() {
        return Err(Error::Usage("name at least one function to export".into()));
    }
    if let Some(twice) = o.functions.iter().enumerate().find(|(k, f)| o.functions[..*k].contains(f)).map(|x| x.1) {
        return Err(Error::Usage(format!("function `{twice}` is named twice: each function is exported once")));
    }
    let params = library_params(&module, o.params)?;
    let mut exports = Vec::new();
    for function in o.functions {
        exports.push(export(&module, function, o.sizes, &name, compiled.train.as_ref())?);
    }
    let lib = Library { name: name.clone(), source: o.file.display().to_string(), params, exports };
    let built = aot::build_library(&lib)?;
    std::fs::create_dir_all(o.out_dir)
        .map_err(|e| Error::Io { path: o.out_dir.to_path_buf(), message: e.to_string() })?;
    let archive = o.out_dir.join(format!("lib{name}.a"));
    let header = o.out_dir.join(format!("{name}.h"));
    for (path, bytes) in [(&archive, built.archive.as_slice()), (&header, built.header.as_bytes())] {
        std::fs::write(path, bytes).map_err(|e| Error::Io { path: path.clone(), message: e.to_string() })?;
    }
    Ok(BuildReport { archive, header, archive_bytes: built.archive.len() })
}

fn c_identifier(name: &str) -> Result<String, Error> {
    let id: String = name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
    match id.chars().next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => Ok(id),
        _ => Err(Error::Usage(format!("`{name}` cannot name a C library: give the library another name"))),
    }
}

/// Every parameter of the module, baked from `checkpoint` when given (the
/// optimizer's state, which checkpoints do not hold, from its initializers).
fn library_params(module: &Module, checkpoint: Option<&Path>) -> Result<Vec<LibParam>, Error> {
    let baked = match checkpoint {
        Some(path) => {
            let mut values = kiln_runtime::checkpoint::load(path, module, |n| !n.starts_with("opt."))?;
            for (k, v) in kiln_ir::try_initialize_params(module, 0).map_err(Error::Allocation)? {
                values.entry(k).or_insert(v);
            }
            Some(values)
        }
        None => None,
    };
    Ok(module
        .params
        .iter()
        .map(|p| LibParam {
            name: p.name.clone(),
            dtype: p.ty.dtype,
            shape: p.ty.shape.0.iter().map(|d| d.as_const().unwrap_or(0)).collect(),
            baked: baked
                .as_ref()
                .and_then(|b| b.get(&p.name))
                .map(|t| kiln_codegen::HostBuffer::from_tensor(t).bytes().to_vec()),
        })
        .collect())
}

fn export(
    module: &Module,
    function: &str,
    sizes: &[(String, u64)],
    lib: &str,
    train: Option<&kiln_frontend::TrainSpec>,
) -> Result<Export, Error> {
    let f = module.function(function).ok_or_else(|| crate::no_function(module, function))?;
    let mut symbols: Vec<String> = Vec::new();
    for input in &f.inputs {
        for d in &input.ty.shape.0 {
            if let Dim::Sym(s) = d
                && !symbols.contains(&s.0)
            {
                symbols.push(s.0.clone());
            }
        }
    }
    let mut bindings = Bindings::new();
    let mut size_args = Vec::new();
    for s in &symbols {
        let missing = || Error::MissingSize { function: function.into(), symbol: s.clone() };
        let value = sizes.iter().find(|(n, _)| n == s).map(|(_, v)| *v).ok_or_else(missing)?;
        if value == 0 {
            return Err(missing());
        }
        bindings.insert(Symbol::new(s.clone()), value);
        size_args.push(Size { name: s.clone(), compiled: value });
    }
    let lower = kiln_passes::LowerOptions { gemm: kiln_passes::GemmLowering::Loops, ..Default::default() };
    let options = kiln_passes::CompileOptions { lower, ..Default::default() };
    let plan = kiln_passes::compile(module, function, &bindings, &options)?.plan;
    let dims = |ty: &kiln_ir::TensorType| -> Vec<ArgDim> {
        ty.shape
            .0
            .iter()
            .map(|d| match d {
                Dim::Const(c) => ArgDim::Const(*c),
                Dim::Sym(s) => ArgDim::Size(s.0.clone()),
            })
            .collect()
    };
    let buffer_of = |role: &BufferRole| plan.buffers.iter().position(|b| &b.role == role).map(|b| b as u32);
    let mut inputs = Vec::new();
    for (k, input) in f.inputs.iter().enumerate() {
        // An input no output depends on has no buffer: it is accepted and ignored.
        let buffer = buffer_of(&BufferRole::Input(k as u32));
        inputs.push((
            Arg {
                name: input.name.clone(),
                dtype: input.ty.dtype,
                dims: dims(&input.ty),
                buffer: buffer.unwrap_or(u32::MAX),
            },
            buffer.is_some(),
        ));
    }
    let outputs: Vec<Arg> = f
        .output_types()
        .iter()
        .enumerate()
        .map(|(k, ty)| {
            let buffer = buffer_of(&BufferRole::Output(k as u32)).unwrap_or(u32::MAX);
            Arg {
                name: if f.outputs.len() == 1 { "out".into() } else { format!("out{k}") },
                dtype: ty.dtype,
                dims: dims(ty),
                buffer,
            }
        })
        .collect();
    let output_notes = (0..outputs.len())
        .map(|k| match (function, train) {
            ("train_step", Some(_)) if k == 0 => "the loss before the update".to_string(),
            ("train_step", Some(spec)) => {
                format!("the new value of {}", spec.updates.get(k - 1).map_or("?", |s| s.as_str()))
            }
            _ => "the result".to_string(),
        })
        .collect();
    Ok(Export {
        function: function.to_string(),
        symbol: format!("{lib}_{function}"),
        plan,
        inputs: inputs.into_iter().map(|(a, _)| a).collect(),
        sizes: size_args,
        outputs,
        output_notes,
    })
}

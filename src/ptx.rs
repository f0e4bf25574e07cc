//! `kiln emit ptx`: a file's functions compiled to PTX for an NVIDIA GPU,
//! one `.ptx` and one launch manifest (`.json`, see `docs/gpu.md`) per
//! function. Each function is lowered once with its sizes symbolic (the
//! sizes bound are the hint), so its PTX serves every size from 1 up: the
//! entries take the sizes as arguments, and the manifest states every size
//! as the kernel IR's expression of them.

use std::path::Path;

use kiln_ir::{Bindings, Module};

use crate::Error;

/// What `emit` wrote (or printed) for one function.
pub struct Emitted {
    /// The function.
    pub function: String,
    /// Its plan's kernels.
    pub kernels: usize,
    /// The launches (entry points) of its PTX.
    pub entries: usize,
    /// The PTX, when no directory was given.
    pub ptx: Option<String>,
}

/// Compiles `functions` of `module` to PTX for `sm`, each with the bindings
/// `bind` gives it; writes `DIR/FN.ptx` and `DIR/FN.json` when `out` is a
/// directory, else returns the PTX.
#[cfg(feature = "ptx")]
pub fn emit(
    module: &Module,
    functions: &[String],
    bind: &dyn Fn(&kiln_ir::Function) -> Result<Bindings, Error>,
    sm: &str,
    out: Option<&Path>,
) -> Result<Vec<Emitted>, Error> {
    use kiln_codegen::nvptx::{Sm, emit_ptx};
    let sm = Sm::parse(sm).map_err(|e| Error::Usage(e.to_string()))?;
    if let Some(dir) = out {
        std::fs::create_dir_all(dir).map_err(|e| Error::Io { path: dir.to_path_buf(), message: e.to_string() })?;
    }
    let mut emitted = Vec::new();
    for name in functions {
        let f = module.function(name).ok_or_else(|| crate::no_function(module, name))?;
        let bindings = bind(f)?;
        let plan = kiln_passes::compile_plan(module, name, &bindings)?;
        let compiled = emit_ptx(&plan, sm)?;
        let kernels = plan.kernels.len();
        let manifest = &compiled.manifest;
        let entries = manifest.entries().len();
        let ptx = match out {
            Some(dir) => {
                let write = |file: String, text: &str| {
                    let path = dir.join(file);
                    std::fs::write(&path, text).map_err(|e| Error::Io { path, message: e.to_string() })
                };
                write(format!("{name}.ptx"), &compiled.ptx)?;
                write(format!("{name}.json"), &manifest.to_json())?;
                None
            }
            None => Some(compiled.ptx),
        };
        emitted.push(Emitted { function: name.clone(), kernels, entries, ptx });
    }
    Ok(emitted)
}

/// Without the `ptx` feature: an error that says how to get it.
#[cfg(not(feature = "ptx"))]
pub fn emit(
    _: &Module,
    _: &[String],
    _: &dyn Fn(&kiln_ir::Function) -> Result<Bindings, Error>,
    _: &str,
    _: Option<&Path>,
) -> Result<Vec<Emitted>, Error> {
    Err(Error::Usage(
        "this kiln was built without PTX support: build it with `cargo build --release --features ptx` \
         (needs LLVM 19: `apt-get install llvm-19-dev`)"
            .into(),
    ))
}

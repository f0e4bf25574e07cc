//! `kiln emit ptx`: a file's functions compiled to PTX for an NVIDIA GPU,
//! one `.ptx` and one launch manifest (`.json`, see `docs/gpu.md`) per
//! function. The PTX is generic in the function's symbolic dimensions
//! (valid for every size congruent to the one bound, modulo 4), its
//! manifest giving every size as a formula; a function with more than
//! three symbols, or whose numbers vary with a size in a way no formula
//! computes, gets PTX for the sizes bound, and its manifest says why.

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
    /// Why the PTX is specialized to the sizes bound rather than generic.
    pub specialized: Option<String>,
}

/// The plan of `function` generic in its symbols, from lowerings at the
/// grid of probe sizes for the values `bindings` gives them, every
/// size-dependent choice taken at those values; `Err` with the reason when
/// it has no generic form.
#[cfg(feature = "ptx")]
pub fn generic_plan(
    module: &Module,
    function: &str,
    bindings: &Bindings,
) -> Result<kiln_codegen::nvptx::GenericPlan, String> {
    use kiln_codegen::nvptx::{GenericPlan, MAX_SYMBOLS, probe_grid};
    let lower = |at: &Bindings| {
        let options = kiln_passes::CompileOptions { decide_at: Some(bindings.clone()), ..Default::default() };
        kiln_passes::compile(module, function, at, &options).map(|c| c.plan.specialize(at)).map_err(|e| e.to_string())
    };
    let symbols: Vec<(String, u64)> = bindings.iter().map(|(s, v)| (s.to_string(), *v)).collect();
    if symbols.len() > MAX_SYMBOLS {
        return Err(format!(
            "it has {} symbolic dimensions ({}); generic PTX handles at most {MAX_SYMBOLS}",
            symbols.len(),
            symbols.iter().map(|s| s.0.as_str()).collect::<Vec<_>>().join(", ")
        ));
    }
    let asked: Vec<u64> = symbols.iter().map(|s| s.1).collect();
    let mut probes = Vec::new();
    for point in probe_grid(&asked) {
        let at: Bindings = symbols.iter().zip(point).map(|((s, _), p)| (kiln_ir::Symbol::new(s), p)).collect();
        probes.push(lower(&at)?);
    }
    GenericPlan::new(symbols, probes).map_err(|e| e.to_string())
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
    use kiln_codegen::nvptx::{Sm, emit_generic_ptx, emit_ptx};
    let sm = Sm::parse(sm).map_err(|e| Error::Usage(e.to_string()))?;
    if let Some(dir) = out {
        std::fs::create_dir_all(dir).map_err(|e| Error::Io { path: dir.to_path_buf(), message: e.to_string() })?;
    }
    let mut emitted = Vec::new();
    for name in functions {
        let f = module.function(name).ok_or_else(|| crate::no_function(module, name))?;
        let bindings = bind(f)?;
        let names: Vec<(String, u64)> = bindings.iter().map(|(s, v)| (s.to_string(), *v)).collect();
        let generic = generic_plan(module, name, &bindings)
            .and_then(|g| emit_generic_ptx(&g, sm).map_err(|e| e.to_string()).map(|c| (g, c)));
        let (kernels, compiled, specialized) = match generic {
            Ok((plan, compiled)) => (plan.kernels(), compiled, None),
            Err(why) => {
                let plan = kiln_passes::compile_plan(module, name, &bindings)?.specialize(&bindings);
                let mut compiled = emit_ptx(&plan, sm)?;
                compiled.manifest = compiled
                    .manifest
                    .with_bindings(names.iter().map(|(s, v)| (s.as_str(), *v)))
                    .specialized_because(&why);
                (plan.kernels.len(), compiled, Some(why))
            }
        };
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
        emitted.push(Emitted { function: name.clone(), kernels, entries, ptx, specialized });
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

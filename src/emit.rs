//! Any stage of a compiled file as text: what `kiln emit` prints.
//!
//! The graph IR, a gradient, the training step, the optimized graph kernel
//! by kernel (with `explain` or as statistics), Graphviz, the kernel plan,
//! and the Cranelift IR and machine code of that plan. Sizes are given by
//! symbol name; a symbol not given takes the stage's default (256 where
//! the cost model prices choices, 1 for plans). PTX is `crate::ptx::emit`.

use kiln_ir::{Bindings, Function, Module, Symbol};

use crate::{Compiled, Error};

/// A stage to print.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Emit {
    /// The graph IR after lowering and dead-code elimination.
    Ir,
    /// The gradient function (default `loss`), with the parameter
    /// declarations it reads: a module `kiln run` runs as it is.
    Grad,
    /// The training step: loss, gradients and update in one graph, with
    /// the parameter declarations.
    Step,
    /// The optimized graph, kernel by kernel; `explain` says where each
    /// kernel came from and why its result is materialized, `stats` prints
    /// kernels, bytes and flops before and after instead.
    Opt {
        /// Say where each kernel came from and why it is materialized.
        explain: bool,
        /// Kernels, bytes and flops before and after, instead of the graph.
        stats: bool,
    },
    /// Graphviz of the graph before and after optimization.
    Dot,
    /// The kernel IR plan.
    Kernels,
    /// The Cranelift IR of the plan, kernel by kernel.
    Clif,
    /// The machine code of the plan, kernel by kernel.
    Asm,
}

/// `what` of `function` (or the stage's default function) of `compiled`,
/// at `sizes`; `source` names the file in `--explain`'s source lines. The
/// kernel plan and the code the JIT makes of it keep the sizes symbolic:
/// `sizes` are the hint their size-dependent choices are taken at.
///
/// ```
/// let source = "model Scale() { fn forward(x: f32[N, 4]) -> f32[N, 4] { relu(x) * 2.0 } }";
/// let compiled = kiln::compile_source("scale.kiln", source, &kiln::Options::default()).unwrap();
/// let plan = kiln::emit::emit(&compiled, kiln::emit::Emit::Kernels, None, &[("N".into(), 8)], "scale.kiln").unwrap();
/// assert!(plan.contains("size N >= 1 hint 8"), "{plan}");
/// assert!(plan.contains("for i0 in 0..4*N parallel vector 4"), "{plan}");
/// ```
pub fn emit(
    compiled: &Compiled,
    what: Emit,
    function: Option<&str>,
    sizes: &[(String, u64)],
    source: &str,
) -> Result<String, Error> {
    Ok(match what {
        Emit::Ir => match function {
            None => compiled.module.to_string(),
            Some(name) => function_of(&compiled.module, name)?.to_string(),
        },
        // With the parameters it reads declared, so the text runs as it is.
        Emit::Grad => {
            let grad = crate::gradient(&compiled.module, function.unwrap_or("loss"))?;
            Module { params: compiled.module.params.clone(), functions: vec![grad] }.to_string()
        }
        Emit::Step => {
            let module = crate::with_train_step(compiled)?;
            let step = function_of(&module, "train_step")?.clone();
            Module { params: module.params, functions: vec![step] }.to_string()
        }
        Emit::Opt { .. } | Emit::Dot => {
            let (module, name) = with_default(compiled, function)?;
            let bindings = sizes_of(function_of(&module, &name)?, sizes, 256)?;
            let optimized = crate::opt::optimize(&module, &name, &bindings)?;
            match what {
                Emit::Dot => crate::opt::render_dot(&optimized),
                Emit::Opt { stats: true, .. } => crate::opt::render_stats(&optimized),
                Emit::Opt { explain, .. } => crate::opt::render(&optimized, explain, source),
                _ => unreachable!("matched above"),
            }
        }
        Emit::Kernels | Emit::Clif | Emit::Asm => {
            let module = match compiled.train {
                Some(_) => crate::with_train_step(compiled)?,
                None => compiled.module.clone(),
            };
            let name = function.unwrap_or("forward");
            let bindings = sizes_of(function_of(&module, name)?, sizes, 1)?;
            let shown: Vec<String> = bindings.iter().map(|(s, v)| format!("{s} = {v}")).collect();
            let plan = kiln_passes::compile_plan(&module, name, &bindings)?;
            let comment = if what == Emit::Kernels { "//" } else { ";" };
            let header = if shown.is_empty() { String::new() } else { format!("{comment} {}\n", shown.join(", ")) };
            let body = match what {
                Emit::Clif => kiln_codegen::clif_text(&plan)?,
                Emit::Asm => kiln_codegen::asm_text(&plan)?,
                _ => plan.to_string(),
            };
            format!("{header}{body}")
        }
    })
}

/// The module with its training step when the file trains, and the
/// function to show: `function`, else `train_step` or `forward`.
pub fn with_default(compiled: &Compiled, function: Option<&str>) -> Result<(Module, String), Error> {
    let module = match compiled.train {
        Some(_) => crate::with_train_step(compiled)?,
        None => compiled.module.clone(),
    };
    let default = if compiled.train.is_some() { "train_step" } else { "forward" };
    Ok((module, function.unwrap_or(default).to_string()))
}

fn function_of<'m>(module: &'m Module, name: &str) -> Result<&'m Function, Error> {
    module.function(name).ok_or_else(|| crate::no_function(module, name))
}

/// Values for `f`'s symbolic dimensions: those of `sizes`, and `default`
/// for the others; a size `f` does not have is an error.
pub fn sizes_of(f: &Function, sizes: &[(String, u64)], default: u64) -> Result<Bindings, Error> {
    let mut bindings = Bindings::new();
    for input in &f.inputs {
        for d in &input.ty.shape.0 {
            if let kiln_ir::Dim::Sym(s) = d {
                bindings.insert(s.clone(), default);
            }
        }
    }
    for (symbol, value) in sizes {
        let key = Symbol::new(symbol.clone());
        if !bindings.contains_key(&key) {
            return Err(Error::UnknownSize { function: f.name.clone(), symbol: symbol.clone() });
        }
        bindings.insert(key, *value);
    }
    Ok(bindings)
}

//! Differential execution of graph IR text: every function of a module run
//! on the reference interpreter and through the JIT (lowering, the symbolic
//! plan, Cranelift) from one compilation at two batch sizes, and the
//! results compared. The IR differential test and the `ir_run` fuzz target
//! both run IR text through here, so "runs alike" means one thing.
//!
//! Neither backend may panic. Where both succeed they agree within 1e-3
//! relative to max(1, |interpreted|) (NaN and infinities alike); a badly
//! conditioned program is decided by the f64 interpreter (see [`agree`]).
//! The JIT may fail where the interpreter does not only on an integer
//! division by zero, which compiled code reports and the interpreter
//! computes as 0.

use kiln_ir::interp::{EvalOptions, Precision, Tensor, evaluate};
use kiln_ir::{Bindings, DType, Dim, Module, TensorType};
use kiln_runtime::execute::Execute;
use ndarray::{ArrayD, Dimension, IxDyn};

use crate::jit::Jit;

/// The batch sizes each function runs at: the JIT compiles at the first
/// and reuses that compilation at the second.
pub const BATCHES: [u64; 2] = [2, 5];

/// The most elements any value may have for a function to be run.
pub const MOST_ELEMENTS: u64 = 1 << 20;

/// What running one text came to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Whether the text parsed and verified.
    pub parsed: bool,
    /// Runs of a function on both backends.
    pub runs: usize,
    /// Of which both succeeded and were compared.
    pub compared: usize,
}

/// Deterministic inputs of `function` with every symbolic dimension
/// `batch`: floats uniform in [-1, 1), integers in 0..3, alternating bools.
/// `None` when `function` is not in `module` or an input's size overflows.
pub fn sample_inputs(module: &Module, function: &str, batch: u64) -> Option<Vec<Tensor>> {
    let f = module.function(function)?;
    let sizes = bindings_at(module, function, batch);
    let mut inputs = Vec::with_capacity(f.inputs.len());
    for (k, decl) in f.inputs.iter().enumerate() {
        let len = usize::try_from(decl.ty.checked_len(&sizes).ok()?).ok()?;
        let shape: Vec<usize> = decl.ty.shape.0.iter().map(|d| d.as_const().unwrap_or(batch) as usize).collect();
        let tensor = match decl.ty.dtype {
            d if d.is_float() => {
                let v = (0..len).map(|i| 2.0 * kiln_ir::random::uniform(k as u64, 1, i as u64) - 1.0).collect();
                Tensor::float(d, ArrayD::from_shape_vec(IxDyn(&shape), v).ok()?)
            }
            DType::Bool => {
                Tensor::bool(ArrayD::from_shape_fn(IxDyn(&shape), |i| i.slice().iter().sum::<usize>() % 2 == 0))
            }
            d => {
                let v = (0..len).map(|i| (kiln_ir::random::bits(k as u64, 2, i as u64) % 3) as i64).collect();
                Tensor::int(d, ArrayD::from_shape_vec(IxDyn(&shape), v).ok()?)
            }
        };
        inputs.push(tensor);
    }
    Some(inputs)
}

/// Every size symbol in `function`'s inputs bound to `batch`.
pub fn bindings_at(module: &Module, function: &str, batch: u64) -> Bindings {
    let mut bindings = Bindings::new();
    let Some(f) = module.function(function) else { return bindings };
    for input in &f.inputs {
        for d in &input.ty.shape.0 {
            if let Dim::Sym(s) = d {
                bindings.insert(s.clone(), batch);
            }
        }
    }
    bindings
}

/// Whether every value of `function` and every parameter at `bindings` has
/// at most [`MOST_ELEMENTS`] elements.
pub fn small(module: &Module, function: &str, bindings: &Bindings) -> bool {
    let Some(f) = module.function(function) else { return false };
    let sized = |ty: &TensorType| ty.checked_len(bindings).is_ok_and(|n| n <= MOST_ELEMENTS);
    f.graph.nodes().all(|(_, n)| sized(&n.ty)) && module.params.iter().all(|p| sized(&p.ty))
}

/// Whether two values are alike: both NaN, equal (infinities included),
/// or within `tolerance`.
fn close(x: f64, y: f64, tolerance: f64) -> bool {
    (x.is_nan() && y.is_nan()) || x == y || (x - y).abs() <= tolerance
}

/// Both results of `function`, compared: the same values where both
/// succeed, within 1e-3 relative to max(1, |interpreted|). A mutated
/// program can be badly conditioned (a sum that cancels, values grown to
/// 1e5), where two f32 computations in different orders differ by more:
/// then the f64 interpreter decides. `exact` gives its results, and its
/// results again with a relative error of 2^-22 or less made in every
/// float value it computes (`Precision::Perturbed`), which measures how
/// far rounding can move each output. The JIT passes when its distance to the exact
/// results is within 16 times the larger of that movement and the f32
/// interpreter's own error on that output (each the largest over the
/// tensor), plus 1e-3 relative. The error names the function, output and
/// element.
pub fn agree(
    function: &str,
    interpreted: &[Tensor],
    jitted: &[Tensor],
    exact: impl FnOnce() -> Option<(Vec<Tensor>, Vec<Tensor>)>,
) -> Result<(), String> {
    if interpreted.len() != jitted.len() {
        return Err(format!("{function}: {} outputs interpreted, {} compiled", interpreted.len(), jitted.len()));
    }
    let mut first_difference = None;
    for (k, (a, b)) in interpreted.iter().zip(jitted).enumerate() {
        if a.shape() != b.shape() {
            return Err(format!("{function} output {k}: shapes {:?} and {:?}", a.shape(), b.shape()));
        }
        let found = a.to_f64_vec().iter().zip(b.to_f64_vec()).position(|(x, y)| !close(*x, y, 1e-3 * x.abs().max(1.0)));
        if let Some(i) = found {
            first_difference.get_or_insert((k, i));
        }
    }
    let Some((k, i)) = first_difference else { return Ok(()) };
    let message = |k: usize, i: usize| {
        let (x, y) = (interpreted[k].to_f64_vec()[i], jitted[k].to_f64_vec()[i]);
        format!("{function} output {k}[{i}]: interpreter {x}, JIT {y}")
    };
    let Some((exact, moved)) = exact() else { return Err(message(k, i)) };
    let largest_distance = |x: &[f64], y: &[f64]| {
        x.iter().zip(y).filter(|(p, q)| p.is_finite() && q.is_finite()).map(|(p, q)| (p - q).abs()).fold(0.0, f64::max)
    };
    for (k, (((a, b), r), m)) in interpreted.iter().zip(jitted).zip(&exact).zip(&moved).enumerate() {
        let (a, b, r, m) = (a.to_f64_vec(), b.to_f64_vec(), r.to_f64_vec(), m.to_f64_vec());
        let f32_error = largest_distance(&a, &r);
        let rounding = largest_distance(&m, &r).max(f32_error);
        for (i, (y, e)) in b.iter().zip(&r).enumerate() {
            if !close(*y, *e, 16.0 * rounding + 1e-3 * e.abs().max(1.0)) && !close(a[i], *y, 1e-3 * a[i].abs().max(1.0))
            {
                return Err(format!(
                    "{} (f64: {e}; the interpreter's f32 error up to {f32_error}, rounding moves it up to {rounding})",
                    message(k, i)
                ));
            }
        }
    }
    Ok(())
}

/// Parses `text` and runs each function that verifies and is
/// [`small`] on both backends at each of [`BATCHES`]. Text that does not
/// parse, or whose parameters cannot be initialized, is an outcome with
/// nothing run; a disagreement, or a failure of the JIT alone, is the
/// error.
pub fn run_text(text: &str) -> Result<Outcome, String> {
    let mut outcome = Outcome::default();
    let Ok(module) = kiln_ir::parse_module(text) else { return Ok(outcome) };
    outcome.parsed = true;
    let Ok(params) = kiln_ir::try_initialize_params(&module, 1) else { return Ok(outcome) };
    let jit = Jit::new(&module);
    for f in &module.functions {
        for batch in BATCHES {
            let bindings = bindings_at(&module, &f.name, batch);
            if !small(&module, &f.name, &bindings) {
                break;
            }
            let Some(inputs) = sample_inputs(&module, &f.name, batch) else { break };
            let interpreted = evaluate(&module, &f.name, &inputs, &params, EvalOptions::default());
            let jitted = jit.run(&f.name, &inputs, &params);
            outcome.runs += 1;
            match (&interpreted, &jitted) {
                (Ok(a), Ok(b)) => {
                    let exact = || {
                        let options = EvalOptions { precision: Precision::F64 };
                        let exact = evaluate(&module, &f.name, &inputs, &params, options).ok()?;
                        let options = EvalOptions { precision: Precision::Perturbed { seed: 3 } };
                        let moved = evaluate(&module, &f.name, &inputs, &params, options).ok()?;
                        Some((exact, moved))
                    };
                    agree(&f.name, a, b, exact)?;
                    outcome.compared += 1;
                }
                (Ok(_), Err(e)) if !e.to_string().contains("divided an integer by zero") => {
                    return Err(format!("{}: the JIT fails alone: {e}", f.name));
                }
                _ => {}
            }
        }
    }
    Ok(outcome)
}

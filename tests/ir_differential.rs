//! IR text run end to end, differentially: the graph IR of every example
//! (forward passes, losses, training steps) mutated at random (a number
//! changed, an op renamed, a dtype swapped, a line dropped or repeated),
//! parsed, and every function that verifies run on the interpreter and
//! through the JIT (lowering, the symbolic plan, Cranelift) at a batch size
//! other than the hint's. Neither may panic; where both succeed they agree
//! (1e-3 relative to max(1, |expected|), NaN and infinities alike), and
//! the JIT fails where the interpreter does not only on an integer
//! division by zero (which compiled code reports).
//!
//! CI runs 64 cases; `KILN_FUZZ_CASES` raises it (`docs/testing.md`).

mod support;

use kiln_ir::interp::{EvalOptions, Tensor, evaluate};
use kiln_ir::{Bindings, Module};
use kiln_runtime::execute::Execute;
use proptest::prelude::*;
use proptest::test_runner::Config;

/// The printed IR of each example with its training step.
fn seeds() -> &'static [String] {
    static SEEDS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    SEEDS.get_or_init(|| {
        ["linear_regression", "softmax_regression", "mlp", "lenet"]
            .iter()
            .map(|name| support::with_step(&format!("examples/{name}.kiln")).to_string())
            .collect()
    })
}

/// Cases to run: `KILN_FUZZ_CASES`, else 64.
fn cases() -> u32 {
    std::env::var("KILN_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(64)
}

/// Op names a mutation may put in place of another.
const OPS: [&str; 16] = [
    "add",
    "sub",
    "mul",
    "div",
    "max",
    "exp",
    "log",
    "neg",
    "tanh",
    "relu",
    "matmul",
    "reduce_sum",
    "reduce_max",
    "broadcast",
    "reshape",
    "permute",
];

/// Numbers a mutation may put in place of another.
const NUMBERS: [&str; 9] = ["0", "1", "2", "3", "-1", "7", "10", "256", "4096"];

/// One edit: `(kind, line, token, choice)`, each taken modulo what it picks from.
type Edit = (u8, usize, usize, usize);

fn mutate(text: &str, edits: &[Edit]) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    for &(kind, line, token, choice) in edits {
        if lines.is_empty() {
            break;
        }
        let at = line % lines.len();
        let mut words: Vec<String> = lines[at].split(' ').map(str::to_string).collect();
        let w = token % words.len().max(1);
        match kind % 6 {
            0 => {
                if let Some(word) = words.get_mut(w) {
                    let digits: String = word.chars().filter(|c| c.is_ascii_digit()).collect();
                    if !digits.is_empty() {
                        *word = word.replacen(&digits, NUMBERS[choice % NUMBERS.len()], 1);
                    }
                }
            }
            1 => {
                if let Some(word) = words.iter_mut().find(|w| OPS.contains(&w.as_str())) {
                    *word = OPS[choice % OPS.len()].to_string();
                }
            }
            2 => {
                let (from, to) = if choice % 2 == 0 { ("f32", "i32") } else { ("i32", "f32") };
                if let Some(word) = words.get_mut(w) {
                    *word = word.replacen(from, to, 1);
                }
            }
            3 => {
                lines.remove(at);
                continue;
            }
            4 => {
                let copy = lines[at].clone();
                lines.insert(at, copy);
                continue;
            }
            _ => {
                if let Some(word) = words.get_mut(w) {
                    word.truncate(choice % (word.len() + 1));
                }
            }
        }
        lines[at] = words.join(" ");
    }
    lines.join("\n") + "\n"
}

/// Whether every value of `f` at `bindings` is small enough to compute in
/// a test (at most a million elements).
fn small(module: &Module, function: &str, bindings: &Bindings) -> bool {
    let Some(f) = module.function(function) else { return false };
    let sized = |ty: &kiln_ir::TensorType| ty.checked_len(bindings).is_ok_and(|n| n <= 1 << 20);
    f.graph.nodes().all(|(_, n)| sized(&n.ty)) && module.params.iter().all(|p| sized(&p.ty))
}

/// Whether two values are alike: both NaN, equal (infinities included),
/// or within `tolerance`.
fn close(x: f64, y: f64, tolerance: f64) -> bool {
    (x.is_nan() && y.is_nan()) || x == y || (x - y).abs() <= tolerance
}

/// Both results, compared: the same values where both succeed, within
/// 1e-3 relative to max(1, |interpreted|). A mutated program can be badly
/// conditioned (a sum that cancels, values grown to 1e5), where two f32
/// computations in different orders differ by more: then the f64
/// interpreter's results (`exact`) decide, and the JIT passes when its
/// distance to them is within 16 times the interpreter's own f32 error on
/// that output (its largest over the tensor) plus 1e-3 relative.
fn agree(
    function: &str,
    interpreted: &[Tensor],
    jitted: &[Tensor],
    exact: impl FnOnce() -> Option<Vec<Tensor>>,
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
    let Some(exact) = exact() else { return Err(message(k, i)) };
    for (k, ((a, b), r)) in interpreted.iter().zip(jitted).zip(&exact).enumerate() {
        let (a, b, r) = (a.to_f64_vec(), b.to_f64_vec(), r.to_f64_vec());
        let f32_error = a
            .iter()
            .zip(&r)
            .filter(|(x, e)| x.is_finite() && e.is_finite())
            .map(|(x, e)| (x - e).abs())
            .fold(0.0, f64::max);
        for (i, (y, e)) in b.iter().zip(&r).enumerate() {
            if !close(*y, *e, 16.0 * f32_error + 1e-3 * e.abs().max(1.0))
                && !close(a[i], *y, 1e-3 * a[i].abs().max(1.0))
            {
                return Err(format!("{} (f64: {e}, the interpreter's f32 error up to {f32_error})", message(k, i)));
            }
        }
    }
    Ok(())
}

/// What one mutated text came to.
#[derive(Default)]
struct Outcome {
    parsed: bool,
    /// Runs of a function on both backends (each function at two sizes).
    runs: usize,
    /// Of which both succeeded and were compared.
    compared: usize,
}

/// Parses `text`; runs each function that verifies and is small on both.
fn run_both(text: &str) -> Result<Outcome, TestCaseError> {
    let mut outcome = Outcome::default();
    let Ok(module) = kiln_ir::parse_module(text) else { return Ok(outcome) };
    outcome.parsed = true;
    let Ok(params) = kiln_ir::try_initialize_params(&module, 1) else { return Ok(outcome) };
    let jit = kiln::jit::Jit::new(&module);
    for f in &module.functions {
        // The JIT compiles at the first call's sizes; run at 2, then 5.
        for batch in [2, 5] {
            let bindings = support::bindings_at(&module, &f.name, batch);
            if !small(&module, &f.name, &bindings) {
                break;
            }
            let inputs = support::inputs_at(&module, &f.name, batch);
            let interpreted = evaluate(&module, &f.name, &inputs, &params, EvalOptions::default());
            let jitted = jit.run(&f.name, &inputs, &params);
            outcome.runs += 1;
            match (&interpreted, &jitted) {
                (Ok(a), Ok(b)) => {
                    let exact = || {
                        let options = EvalOptions { precision: kiln_ir::interp::Precision::F64 };
                        evaluate(&module, &f.name, &inputs, &params, options).ok()
                    };
                    agree(&f.name, a, b, exact).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
                    outcome.compared += 1;
                }
                // Compiled code reports an integer division by zero, which
                // the interpreter computes as 0; any other failure of the
                // JIT alone is a bug.
                (Ok(_), Err(e)) if !e.to_string().contains("divided an integer by zero") => {
                    return Err(TestCaseError::fail(format!("{}: the JIT fails alone: {e}\n{text}", f.name)));
                }
                _ => {}
            }
        }
    }
    Ok(outcome)
}

proptest! {
    #![proptest_config(Config { cases: cases(), ..Config::default() })]

    #[test]
    fn mutated_ir_runs_alike_on_the_interpreter_and_the_jit(
        seed in 0usize..4,
        edits in prop::collection::vec((any::<u8>(), any::<usize>(), any::<usize>(), any::<usize>()), 1..4),
    ) {
        run_both(&mutate(&seeds()[seed], &edits))?;
    }
}

/// The unmutated seeds agree too (what the mutations start from), and a
/// fixed campaign of mutations reaches both backends often enough for the
/// property above to mean something; it prints its counts.
#[test]
fn the_seeds_and_a_fixed_campaign_run_alike() {
    for text in seeds() {
        assert!(run_both(text).unwrap().compared > 0);
    }
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state as usize
    };
    let (mut parsed, mut runs, mut compared) = (0, 0, 0);
    let total = cases();
    for _ in 0..total {
        let seed = next() % 4;
        let edits: Vec<Edit> = (0..1 + next() % 3).map(|_| (next() as u8, next(), next(), next())).collect();
        let outcome = run_both(&mutate(&seeds()[seed], &edits)).unwrap_or_else(|e| panic!("{e}"));
        parsed += usize::from(outcome.parsed);
        runs += outcome.runs;
        compared += outcome.compared;
    }
    println!("{total} mutated texts: {parsed} parsed and verified, {runs} runs on both backends, {compared} compared");
    assert!(parsed * 10 >= total as usize, "only {parsed} of {total} mutations parse");
    assert!(compared >= parsed / 2, "only {compared} comparisons from {parsed} parsed texts");
}

//! The frontend never panics: random token soups and random mutations of
//! real programs either compile to verified IR or produce diagnostics, none
//! of them internal errors.

use kiln_frontend::{Options, SourceMap, compile, render};
use proptest::prelude::*;

/// Real programs to mutate: the examples, the ok corpus and the prelude.
const SEEDS: &[&str] = &[
    include_str!("../../examples/mlp.kiln"),
    include_str!("../../examples/linear_regression.kiln"),
    include_str!("../../examples/softmax_regression.kiln"),
    include_str!("../../tests/filetests/ok/features.kiln"),
    include_str!("../../tests/filetests/ok/gru_unrolled.kiln"),
    include_str!("../../tests/filetests/ok/lenet.kiln"),
    include_str!("../../tests/filetests/ok/adam_training.kiln"),
    kiln_frontend::PRELUDE,
];

const TOKENS: &[&str] = &[
    "fn",
    "model",
    "train",
    "param",
    "let",
    "for",
    "in",
    "if",
    "else",
    "use",
    "optimizer",
    "true",
    "false",
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
    ",",
    ":",
    ".",
    "..",
    "...",
    "->",
    "=",
    "+",
    "-",
    "*",
    "**",
    "/",
    "%",
    "@",
    "==",
    "!=",
    "<",
    "<=",
    ">",
    ">=",
    "&&",
    "||",
    "!",
    "x",
    "N",
    "f32",
    "i32",
    "bool",
    "int",
    "float",
    "relu",
    "sum",
    "axis",
    "reshape",
    "Linear",
    "forward",
    "0",
    "1",
    "-1",
    "2.5",
    "1e-3",
    "\"a.kiln\"",
    "\n",
    "//c\n",
    "$",
    "99999999999999999999",
    "training",
    "w",
    "zeros",
    "normal",
    "sgd",
    "loss",
];

/// Compiles `text` and checks the outcome is well-formed.
fn check_no_panic(text: &str) -> Result<(), TestCaseError> {
    let mut sources = SourceMap::new();
    let root = sources.add("input.kiln", None, text);
    match compile(&mut sources, root, &Options::default()) {
        Ok(program) => {
            prop_assert!(
                kiln_ir::verify_module(&program.module).is_ok(),
                "accepted program lowers to invalid IR:\n{text}"
            );
        }
        Err(diagnostics) => {
            prop_assert!(!diagnostics.is_empty());
            for d in &diagnostics {
                prop_assert!(!d.code.0.starts_with("E08"), "internal error {}: {}\n{text}", d.code, d.message);
            }
            // Rendering must not panic either, whatever the spans.
            let _ = render(&diagnostics, &sources, kiln_frontend::Style::Plain);
        }
    }
    Ok(())
}

fn mutate(text: &str, edits: &[(usize, usize, usize)]) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for &(kind, at, token) in edits {
        if chars.is_empty() {
            break;
        }
        let at = at % chars.len();
        match kind % 4 {
            0 => {
                let end = (at + 1 + token % 12).min(chars.len());
                chars.drain(at..end);
            }
            1 => {
                let t: Vec<char> = format!(" {} ", TOKENS[token % TOKENS.len()]).chars().collect();
                chars.splice(at..at, t);
            }
            2 => {
                let end = (at + 1 + token % 40).min(chars.len());
                let copy: Vec<char> = chars[at..end].to_vec();
                chars.splice(at..at, copy);
            }
            _ => {
                let other = token % chars.len();
                chars.swap(at, other);
            }
        }
    }
    chars.into_iter().collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn token_soup_never_panics(tokens in proptest::collection::vec(0..TOKENS.len(), 0..120)) {
        let text: Vec<&str> = tokens.iter().map(|&i| TOKENS[i]).collect();
        check_no_panic(&text.join(" "))?;
    }

    #[test]
    fn mutated_programs_never_panic(
        seed in 0..SEEDS.len(),
        edits in proptest::collection::vec((0usize..4, any::<usize>(), any::<usize>()), 1..6),
    ) {
        check_no_panic(&mutate(SEEDS[seed], &edits))?;
    }

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
        check_no_panic(&text)?;
    }
}

#[test]
fn deep_nesting_and_long_chains_are_errors_not_stack_overflows() {
    for text in [
        format!("fn f(x: f32[3]) -> f32[3] {{ {}x{} }}", "(".repeat(5000), ")".repeat(5000)),
        format!("fn f(x: f32[3]) -> f32[3] {{ {}x }}", "-".repeat(5000)),
        format!("fn f(x: f32[3]) -> f32[3] {{ x{} }}", " + x".repeat(5000)),
        format!("fn f(x: f32[3]) -> f32[3] {{ x{} }}", "[0]".repeat(5000)),
        format!("fn f(x: f32[3]) -> f32[3] {{ {}x{} }}", "{ ".repeat(5000), " }".repeat(5000)),
    ] {
        let mut sources = SourceMap::new();
        let root = sources.add("deep.kiln", None, text);
        let errors = compile(&mut sources, root, &Options::default()).expect_err("too deep");
        assert!(
            errors.iter().any(|d| d.code.0 == "E0102"),
            "{:?}",
            errors.iter().map(|d| &d.message).collect::<Vec<_>>()
        );
    }
}

/// Deep but within the limit: a flat sum of 1500 terms (a chain counts a
/// level per operator), 900 parentheses, 1900 negations and 600 blocks
/// compile, on whatever stack the caller's thread has (the compiler runs on
/// a thread of its own with room for the deepest program it accepts).
#[test]
fn deep_programs_within_the_limit_compile() {
    let texts = [
        format!("fn f(x: f32[3]) -> f32[3] {{ x{} }}", " + x".repeat(1499)),
        format!("fn f(x: f32[3]) -> f32[3] {{ {}x{} }}", "(".repeat(900), ")".repeat(900)),
        format!("fn f(x: f32[3]) -> f32[3] {{ {}x }}", "-".repeat(1900)),
        format!("fn f(x: f32[3]) -> f32[3] {{ {}x{} }}", "{ ".repeat(600), " }".repeat(600)),
    ];
    // A small stack for the caller, as a library user's thread may have.
    std::thread::Builder::new()
        .stack_size(256 << 10)
        .spawn(move || {
            for text in texts {
                let mut sources = SourceMap::new();
                let root = sources.add("deep.kiln", None, text.clone());
                if let Err(errors) = compile(&mut sources, root, &Options::default()) {
                    let messages: Vec<&String> = errors.iter().map(|d| &d.message).collect();
                    panic!("{messages:?} for {}...", &text[..80]);
                }
            }
        })
        .unwrap()
        .join()
        .unwrap();
}

//! The file-driven tests: every program in `filetests/ok/` compiles and its
//! lowered IR is snapshotted; every program in `filetests/err/` fails and its
//! rendered diagnostics are snapshotted; every `.ir` file in
//! `filetests/ir_err/` fails to parse or verify on the line marked
//! `// error: <text>` with a message containing that text.

use std::path::Path;

use kiln_frontend::{Options, SourceMap, Style};

mod support;

/// Compiles one file as the CLI does, naming it by its file name only so
/// that snapshots do not depend on where the repository is checked out.
fn compile(path: &Path) -> (SourceMap, Result<kiln_frontend::Program, Vec<kiln_frontend::Diagnostic>>) {
    let mut sources = SourceMap::new();
    let text = std::fs::read_to_string(path).expect("a filetest is readable");
    let name = path.file_name().expect("a file name").to_string_lossy().to_string();
    let root = sources.add(name, Some(std::fs::canonicalize(path).expect("a real path")), text);
    let result = kiln_frontend::compile(&mut sources, root, &Options::default());
    (sources, result)
}

#[test]
fn ok_programs_lower_to_verified_ir() {
    insta::glob!("filetests/ok/*.kiln", |path| {
        let (sources, result) = compile(path);
        let program = match result {
            Ok(p) => p,
            Err(d) => {
                panic!("{} should compile:\n{}", path.display(), kiln_frontend::render(&d, &sources, Style::Plain))
            }
        };
        kiln_ir::verify_module(&program.module).expect("lowered IR verifies");
        let (cleaned, _) = kiln_passes::Pipeline::cleanup().run(&program.module).expect("cleanup verifies");
        let text = cleaned.to_string();
        assert_eq!(kiln_ir::parse_module(&text).expect("printed IR parses"), cleaned, "IR text round-trips");
        insta::assert_snapshot!(text);
    });
}

#[test]
fn err_programs_report_diagnostics() {
    let mut count = 0;
    insta::glob!("filetests/err/*.kiln", |path| {
        count += 1;
        let (sources, result) = compile(path);
        let diagnostics = match result {
            Ok(_) => panic!("{} should fail to compile", path.display()),
            Err(d) => d,
        };
        for d in &diagnostics {
            assert!(d.code.0.starts_with('E') && d.code.0.len() == 5, "stable code: {}", d.code);
            assert!(!d.message.is_empty() && !d.label.is_empty(), "message and label in {}", path.display());
            assert!(!d.code.0.starts_with("E08"), "internal error in {}: {}", path.display(), d.message);
        }
        insta::assert_snapshot!(kiln_frontend::render(&diagnostics, &sources, Style::Plain));
    });
    assert!(count >= 40, "the error corpus has {count} programs, fewer than 40");
}

#[test]
fn ir_errors_point_at_the_marked_line() {
    insta::glob!("filetests/ir_err/*.ir", |path| {
        let text = std::fs::read_to_string(path).unwrap();
        let (line, expected) = text
            .lines()
            .enumerate()
            .find_map(|(i, l)| l.split_once("// error: ").map(|(_, e)| (i + 1, e.trim().to_string())))
            .expect("an `// error:` marker");
        let error = kiln_ir::parse_module(&text).expect_err("the IR is invalid");
        assert_eq!(error.line, line, "{}: error on the wrong line: {error}", path.display());
        assert!(
            error.message.contains(&expected),
            "{}: `{}` does not contain `{expected}`",
            path.display(),
            error.message
        );
    });
}

/// What a pass filetest asks for: the stage whose output it checks, the
/// sizes to lower at, and the lines that output must contain, in order
/// (`// check: TEXT`), or must not contain (`// not: TEXT`).
struct PassTest {
    stage: String,
    bindings: kiln_ir::Bindings,
    checks: Vec<(bool, String)>,
}

fn pass_test(path: &Path, text: &str) -> PassTest {
    let mut test = PassTest { stage: String::new(), bindings: kiln_ir::Bindings::new(), checks: Vec::new() };
    for line in text.lines().filter_map(|l| l.trim().strip_prefix("//")).map(str::trim) {
        if let Some(stage) = line.strip_prefix("stage:") {
            test.stage = stage.trim().to_string();
        } else if let Some(binds) = line.strip_prefix("bind:") {
            for b in binds.split_whitespace() {
                let (s, v) = b.split_once('=').unwrap_or_else(|| panic!("{}: `bind: N=4`", path.display()));
                test.bindings.insert(kiln_ir::Symbol::new(s), v.parse().expect("a size"));
            }
        } else if let Some(check) = line.strip_prefix("check:") {
            test.checks.push((true, check.trim().to_string()));
        } else if let Some(check) = line.strip_prefix("not:") {
            test.checks.push((false, check.trim().to_string()));
        }
    }
    test
}

/// The text of `stage` of the compilation: the simplified function, the
/// fusion (one line per kernel: its node, what is inlined into it and what
/// it reads; merged reductions), or the final plan.
fn stage_text(c: &kiln_passes::Compilation, stage: &str) -> String {
    use std::fmt::Write;
    match stage {
        "simplify" => kiln_ir::print_function(&c.simplified),
        "fuse" => {
            let mut out = String::new();
            let ids = |v: &[kiln_ir::NodeId]| v.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(" ");
            for g in &c.fusion.groups {
                let _ = write!(out, "kernel {}", g.root);
                if !g.inlined.is_empty() {
                    let _ = write!(out, " inlines {}", ids(&g.inlined));
                }
                let _ = writeln!(out, " reads {}", ids(&g.reads));
            }
            for (n, m) in c.fusion.merges.iter().enumerate() {
                match m {
                    Some(kiln_passes::fuse::Merge::Epilogue { into, keep }) => {
                        let _ = writeln!(out, "merge %{n} into {into} keep={keep}");
                    }
                    Some(kiln_passes::fuse::Merge::Sibling { with }) => {
                        let _ = writeln!(out, "merge %{n} beside {with}");
                    }
                    None => {}
                }
            }
            out
        }
        "lower" => c.plan.to_string(),
        other => panic!("unknown stage `{other}`: simplify, fuse or lower"),
    }
}

/// Runs the compiled plan on the kernel executor (within 1e-5) and on the
/// JIT, twice on one arena poisoned with NaN bytes (within 1e-4), against
/// the interpreter, on inputs with every symbol at its bound size.
fn agrees_with_the_interpreter(
    path: &Path,
    module: &kiln_ir::Module,
    function: &str,
    plan: &kiln_ir::kernel::Plan,
    bindings: &kiln_ir::Bindings,
) {
    let mut sizes: Vec<u64> = bindings.values().copied().collect();
    sizes.dedup();
    assert!(sizes.len() <= 1, "{}: bind every symbol to one size", path.display());
    let inputs = support::inputs_at(module, function, sizes.first().copied().unwrap_or(1));
    let params = kiln_ir::initialize_params(module, 1);
    let options = kiln_ir::interp::EvalOptions::default();
    let expected = kiln_ir::interp::evaluate(module, function, &inputs, &params, options).unwrap();
    let text = plan.to_string();
    let executed = kiln_ir::kernel::execute(plan, bindings, &inputs, &params).unwrap_or_else(|e| panic!("{e}\n{text}"));
    support::compare(function, "executor", &executed, &expected, 1e-5, &text);
    let compiled = kiln_codegen::compile_plan(plan).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let mut arena = compiled.arena(bindings).unwrap_or_else(|e| panic!("{e}\n{text}"));
    arena.fill(0xff);
    for run in ["JIT", "JIT again"] {
        let jitted = kiln::jit::execute(&compiled, &mut arena, &inputs, &params, |_, _| Ok(())).unwrap();
        support::compare(function, run, &jitted, &expected, 1e-4, &text);
    }
}

/// Every `.ir` file in `filetests/passes/` names a stage of the pipeline
/// (`// stage: simplify|fuse|lower`), the sizes to compile at (`// bind:
/// N=8`; 4 for a symbol it leaves out), and what the stage's output of its first function must contain,
/// in order (`// check:`) or not at all (`// not:`); the plan then runs on
/// the kernel executor and the JIT against the interpreter.
#[test]
fn pass_stages_match_their_checks() {
    let mut count = 0;
    insta::glob!("filetests/passes/*.ir", |path| {
        count += 1;
        let text = std::fs::read_to_string(path).unwrap();
        let test = pass_test(path, &text);
        assert!(!test.checks.is_empty(), "{}: no `// check:` line", path.display());
        let module = kiln_ir::parse_module(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let function = &module.functions[0].name;
        let mut bindings = test.bindings.clone();
        for input in &module.functions[0].inputs {
            for d in &input.ty.shape.0 {
                if let kiln_ir::Dim::Sym(s) = d {
                    bindings.entry(s.clone()).or_insert(4);
                }
            }
        }
        let compiled = kiln_passes::compile(&module, function, &bindings, &kiln_passes::CompileOptions::default())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let output = stage_text(&compiled, &test.stage);
        // The plan is made at the bound sizes (the hint) and holds at others.
        agrees_with_the_interpreter(path, &module, function, &compiled.plan, &bindings);
        let other: kiln_ir::Bindings = bindings.iter().map(|(s, v)| (s.clone(), v + 3)).collect();
        agrees_with_the_interpreter(path, &module, function, &compiled.plan, &other);
        let mut rest = output.as_str();
        for (wanted, check) in &test.checks {
            match (wanted, rest.find(check.as_str())) {
                (true, Some(at)) => rest = &rest[at + check.len()..],
                (true, None) => panic!(
                    "{}: `{check}` not found after the previous check in the {} output:\n{output}",
                    path.display(),
                    test.stage
                ),
                (false, _) => assert!(
                    !output.contains(check.as_str()),
                    "{}: `{check}` is in the {} output:\n{output}",
                    path.display(),
                    test.stage
                ),
            }
        }
    });
    assert!(count >= 8, "the pass corpus has {count} files, fewer than 8");
}

/// The symbolic verifier, file by file: every plan in `filetests/plans/`
/// says `// verify: ok` (it parses, verifies, prints back to the same text
/// and runs at the sizes of its `// run:` lines without an access out of
/// bounds) or `// error: <text>` (the verifier refuses it with a message
/// containing the text).
#[test]
fn plans_verify_or_fail_as_marked() {
    insta::glob!("filetests/plans/*.plan", |path| {
        let text = std::fs::read_to_string(path).unwrap();
        let expected_error = text.lines().find_map(|l| l.trim().strip_prefix("// error:")).map(str::trim);
        let ok = text.lines().any(|l| l.trim() == "// verify: ok");
        assert!(ok != expected_error.is_some(), "{}: say `// verify: ok` or `// error: ...`", path.display());
        match (kiln_ir::kernel::parse_plan(&text), expected_error) {
            (Ok(plan), None) => {
                let body: String = text.lines().filter(|l| !l.starts_with("//")).map(|l| format!("{l}\n")).collect();
                assert_eq!(plan.to_string(), body, "{}: the plan prints back as written", path.display());
                for sizes in text.lines().filter_map(|l| l.trim().strip_prefix("// run:")) {
                    let bindings: kiln_ir::Bindings = sizes
                        .split(',')
                        .map(|b| {
                            let (s, v) = b.trim().split_once('=').expect("`// run: N=3, T=5`");
                            (kiln_ir::Symbol::new(s.trim()), v.trim().parse().expect("a size"))
                        })
                        .collect();
                    let mut buffers: Vec<kiln_ir::kernel::Storage> = plan
                        .buffers
                        .iter()
                        .map(|b| kiln_ir::kernel::Storage::zeros(b.dtype, b.len.eval(&bindings).unwrap() as usize))
                        .collect();
                    kiln_ir::kernel::run_plan(&plan, &bindings, &mut buffers)
                        .unwrap_or_else(|e| panic!("{} at {sizes}: {e}", path.display()));
                }
            }
            (Ok(_), Some(e)) => panic!("{}: verifies, but should fail with `{e}`", path.display()),
            (Err(e), None) => panic!("{}: {e}", path.display()),
            (Err(e), Some(wanted)) => {
                assert!(e.message.contains(wanted), "{}: `{}` does not contain `{wanted}`", path.display(), e.message)
            }
        }
    });
}

//! The `kiln` command line, run as a user runs it: exit codes, output, and
//! error messages for bad files and bad arguments.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kiln_ir::interp::Tensor;

fn kiln(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("kiln runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kiln-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn write_npy(name: &str, t: &Tensor) -> String {
    let path = scratch(name);
    kiln_runtime::npy::write(&path, t).unwrap();
    path.display().to_string()
}

#[test]
fn check_accepts_every_example() {
    for example in ["examples/linear_regression.kiln", "examples/softmax_regression.kiln", "examples/mlp.kiln"] {
        let o = kiln(&["check", example]);
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(stdout(&o).contains(": ok ("), "{}", stdout(&o));
    }
}

#[test]
fn check_reports_errors_plainly_with_a_nonzero_exit() {
    let o = kiln(&["check", "tests/filetests/err/several_type_errors.kiln"]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("[E0401] Error: dtype mismatch") && err.contains("[E0405]") && err.contains("[E0404]"),
        "{err}"
    );
    assert!(err.ends_with("error: 3 errors found\n"), "{err}");
    assert!(!err.contains('\u{1b}'), "no colour codes when stderr is not a terminal");
}

#[test]
fn emit_ir_prints_a_module_that_parses_back() {
    let o = kiln(&["emit", "ir", "examples/mlp.kiln"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.starts_with("param fc1.w: f32[784, 256] = xavier_uniform\n"), "{text}");
    kiln_ir::parse_module(&text).expect("the printed module parses");

    let path = scratch("mlp.ir");
    std::fs::write(&path, &text).unwrap();
    let again = kiln(&["emit", "ir", path.to_str().unwrap()]);
    assert_eq!(stdout(&again), text, "an .ir file goes through every command too");

    let one = kiln(&["emit", "ir", "examples/mlp.kiln", "--fn", "forward"]);
    assert!(stdout(&one).starts_with("func forward(x: f32[N, 784]) -> (f32[N, 10]) {"), "{}", stdout(&one));
    let missing = kiln(&["emit", "ir", "examples/mlp.kiln", "--fn", "backward"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        stderr(&missing).contains("no function `backward`; this module has: forward, loss"),
        "{}",
        stderr(&missing)
    );
}

#[test]
fn run_reads_npy_inputs_and_writes_the_output() {
    let x = write_npy("x.npy", &Tensor::from_f32(&[2, 2], &[1.0, 2.0, 3.0, 4.0]));
    let out = scratch("y.npy");
    let o = kiln(&[
        "run",
        "examples/linear_regression.kiln",
        "--fn",
        "forward",
        "--input",
        &format!("x={x}"),
        "--output",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).starts_with("output 0: f32[2, 1] ["), "{}", stdout(&o));
    let y = kiln_runtime::npy::read(&out).unwrap();
    assert_eq!(y.shape(), &[2, 1]);

    // The same run through the IR text gives the same numbers.
    let ir = scratch("lr.ir");
    std::fs::write(&ir, stdout(&kiln(&["emit", "ir", "examples/linear_regression.kiln"]))).unwrap();
    let again = kiln(&["run", ir.to_str().unwrap(), "--fn", "forward", "--input", &format!("x={x}")]);
    assert_eq!(stdout(&again).lines().next(), stdout(&o).lines().next());
}

#[test]
fn run_explains_bad_inputs() {
    let wrong = write_npy("wrong.npy", &Tensor::from_f32(&[2, 3], &[0.0; 6]));
    let o = kiln(&["run", "examples/linear_regression.kiln", "--fn", "forward", "--input", &format!("x={wrong}")]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("input `x` must be f32[N, 2], got f32[2, 3] (dimension 1 is 3, not 2)"),
        "{}",
        stderr(&o)
    );

    let o = kiln(&["run", "examples/linear_regression.kiln", "--fn", "forward"]);
    assert!(stderr(&o).contains("missing input `x` (f32[N, 2]) of `forward`"), "{}", stderr(&o));
    assert!(stderr(&o).contains("hint: pass --input x=PATH.npy"), "{}", stderr(&o));

    let o = kiln(&["run", "examples/linear_regression.kiln", "--fn", "forward", "--input", "x"]);
    assert!(stderr(&o).contains("must be NAME=PATH.npy"), "{}", stderr(&o));

    let o = kiln(&["run", "examples/linear_regression.kiln", "--fn", "forward", "--input", "z=/nonexistent.npy"]);
    assert!(stderr(&o).contains("cannot read `/nonexistent.npy`"), "{}", stderr(&o));

    let corrupt = scratch("corrupt.npy");
    std::fs::write(&corrupt, b"\x93NUMPY garbage").unwrap();
    let o = kiln(&[
        "run",
        "examples/linear_regression.kiln",
        "--fn",
        "forward",
        "--input",
        &format!("x={}", corrupt.display()),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("cannot read"), "{}", stderr(&o));
}

#[test]
fn missing_files_and_bad_ir_are_clear_errors() {
    let o = kiln(&["check", "no/such/model.kiln"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("cannot read `no/such/model.kiln`"), "{}", stderr(&o));

    let bad = scratch("bad.ir");
    std::fs::write(
        &bad,
        "func f(x: f32[3]) -> (f32[2]) {\n  %0: f32[3] = input 0\n  %1: f32[2] = exp %0\n  return %1\n}\n",
    )
    .unwrap();
    let o = kiln(&["check", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("bad.ir:3:3: type is f32[2], but the op gives f32[3]"), "{err}");
}

#[test]
fn the_model_flag_picks_among_several() {
    let o = kiln(&["check", "tests/filetests/err/ambiguous_root.kiln"]);
    assert!(stderr(&o).contains("choose one with `--model NAME`"), "{}", stderr(&o));
    let o = kiln(&["check", "tests/filetests/err/ambiguous_root.kiln", "--model", "B"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = kiln(&["check", "tests/filetests/err/ambiguous_root.kiln", "--model", "C"]);
    assert!(stderr(&o).contains("no model named `C`"), "{}", stderr(&o));
}

#[test]
fn every_source_file_opens_with_a_doc_comment() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut missing = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            if path.is_dir() {
                if !matches!(name.as_str(), "target" | ".git" | "snapshots" | "corpus" | "artifacts") {
                    stack.push(path);
                }
            } else if name.ends_with(".rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                if !text.starts_with("//!") {
                    missing.push(path.strip_prefix(root).unwrap().display().to_string());
                }
            }
        }
    }
    assert!(missing.is_empty(), "these files do not open with a `//!` doc comment: {missing:?}");
}

#[test]
fn emit_grad_and_step_print_verified_functions() {
    let o = kiln(&["emit", "grad", "examples/linear_regression.kiln"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.starts_with("param w: f32[2, 1]"), "the parameters it reads come first: {text}");
    assert!(text.contains("\nfunc loss_grad(x: f32[N, 2], y: f32[N, 1]) -> (f32[], f32[2, 1], f32[1]) {"), "{text}");
    // It runs as it is.
    let grad = scratch("grad.ir");
    std::fs::write(&grad, &text).unwrap();
    let x = write_npy("gx.npy", &Tensor::from_f32(&[2, 2], &[1.0, 2.0, 3.0, 4.0]));
    let y = write_npy("gy.npy", &Tensor::from_f32(&[2, 1], &[1.0, 2.0]));
    let (xi, yi) = (format!("x={x}"), format!("y={y}"));
    let o = kiln(&["run", grad.to_str().unwrap(), "--fn", "loss_grad", "--input", &xi, "--input", &yi]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("output 1: f32[2, 1]"), "{}", stdout(&o));

    let o = kiln(&["emit", "grad", "examples/mlp.kiln", "--fn", "forward"]);
    assert!(
        stdout(&o).contains(
            "\nfunc forward_grad(x: f32[N, 784]) -> (f32[N, 10], f32[784, 256], f32[256], f32[256, 10], f32[10])"
        ),
        "{}",
        stdout(&o)
    );

    let o = kiln(&["emit", "step", "examples/mlp.kiln"]);
    let text = stdout(&o);
    assert!(text.contains("\nfunc train_step(x: f32[N, 784], y: i32[N], key: i64[]) -> (f32[], f32[N, 10], f32[784, 256], f32[256], f32[256, 10], f32[10])"), "{text}");
    // The step with its parameters is a complete module that verifies.
    let module = kiln_ir::parse_module(&text).expect("the training step parses and verifies");
    assert_eq!(module.functions.len(), 1);

    let o = kiln(&["emit", "step", "tests/filetests/ok/lenet.kiln"]);
    assert!(!o.status.success() && stderr(&o).contains("no `train` block"), "{}", stderr(&o));
    let o = kiln(&["emit", "grad", "tests/filetests/ok/lenet.kiln"]);
    assert!(stderr(&o).contains("no function `loss`; this module has: forward"), "{}", stderr(&o));
}

#[test]
fn emit_kernels_prints_a_plan_that_parses_back() {
    let o = kiln(&["emit", "kernels", "examples/mlp.kiln", "--bind", "N=8"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    // Sizes stay symbolic; N = 8 is the hint the plan's choices were taken at.
    assert!(text.starts_with("// N = 8\nplan forward {\n  size N >= 1 hint 8\n  b0: f32[784*N] input 0\n"), "{text}");
    assert!(text.contains("gemm(batch=1, m=N, n=256, k=784"), "{text}");
    kiln_ir::kernel::parse_plan(&text).expect("the plan parses and verifies");

    let o = kiln(&["emit", "kernels", "examples/mlp.kiln", "--fn", "train_step", "--bind", "M=8"]);
    assert!(stderr(&o).contains("`train_step` has no symbolic dimension `M`"), "{}", stderr(&o));
    let o = kiln(&["emit", "kernels", "examples/mlp.kiln", "--bind", "N"]);
    assert!(stderr(&o).contains("must be SYMBOL=VALUE"), "{}", stderr(&o));
}

#[test]
fn run_on_either_backend_gives_the_same_output() {
    let x = write_npy("xb.npy", &Tensor::from_f32(&[3, 784], &[0.25; 3 * 784]));
    let input = format!("x={x}");
    let jit = kiln(&["run", "examples/mlp.kiln", "--fn", "forward", "--input", &input]);
    let interp = kiln(&["run", "examples/mlp.kiln", "--fn", "forward", "--input", &input, "--backend", "interp"]);
    assert!(jit.status.success() && interp.status.success(), "{}{}", stderr(&jit), stderr(&interp));
    let numbers = |o: &Output| -> Vec<f64> {
        let text = stdout(o);
        let inside = text.split_once("] [").map_or("", |(_, rest)| rest);
        inside.split(", ").filter_map(|v| v.trim_end_matches(|c: char| !c.is_ascii_digit()).parse().ok()).collect()
    };
    let (a, b) = (numbers(&jit), numbers(&interp));
    assert_eq!(a.len(), 8, "{}", stdout(&jit));
    assert!(a.iter().zip(&b).all(|(x, y)| (x - y).abs() <= 2e-6), "{a:?} vs {b:?}");
    let wrong = write_npy("xw.npy", &Tensor::from_f32(&[3, 5], &[0.0; 15]));
    let o = kiln(&["run", "examples/mlp.kiln", "--fn", "forward", "--input", &format!("x={wrong}")]);
    assert!(stderr(&o).contains("input `x` must be f32[N, 784], got f32[3, 5]"), "{}", stderr(&o));
}

#[test]
fn emit_clif_prints_each_kernels_cranelift_ir() {
    let o = kiln(&["emit", "clif", "examples/mlp.kiln", "--bind", "N=4"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    // The product and its bias and relu: one kernel (a GEMM epilogue).
    // Buffers, sizes, and the range of the split loop.
    assert!(
        text.starts_with("; N = 4\n; kernel k7_max\nfunction u0:0(i64, i64, i64, i64) -> i32 system_v {"),
        "{text}"
    );
    assert!(text.contains("f32x4"), "the elementwise kernels are widened:\n{text}");
    assert_eq!(text.matches("; kernel ").count(), text.matches("\nfunction ").count(), "one function per kernel");
}

#[test]
fn emit_asm_prints_each_kernels_machine_code() {
    let o = kiln(&["emit", "asm", "examples/mlp.kiln", "--bind", "N=4"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    let clif = stdout(&kiln(&["emit", "clif", "examples/mlp.kiln", "--bind", "N=4"]));
    assert!(text.starts_with("; N = 4\n; kernel k7_max\n"), "{text}");
    assert_eq!(text.matches("; kernel ").count(), clif.matches("; kernel ").count(), "every kernel is shown");
    // Every kernel returns; the code is the host's (x86-64 or AArch64 spellings).
    assert_eq!(text.matches("; kernel ").count(), text.matches("\n  ret").count(), "{text}");
}

#[test]
fn emit_opt_shows_kernels_rules_and_costs() {
    let o = kiln(&["emit", "opt", "examples/mlp.kiln", "--bind", "N=256"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    let kernels = text.matches("\n  kernel k").count();
    assert!(text.starts_with(&format!("// train_step: {kernels} kernels (unoptimized: 92)\n")), "{text}");
    assert!(text.contains("    %4: f32[N, 256] = matmul %1, %3  // GEMM, by blocks of rows\n"), "{text}");
    assert!(text.contains("// inlined"), "{text}");

    let o = kiln(&["emit", "opt", "examples/mlp.kiln", "--explain"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert_eq!(text.matches("// source: examples/mlp.kiln line").count(), kernels, "{text}");
    assert!(text.contains("// rules: div_by_constant"), "1/0.8 is a multiplication by 1.25:\n{text}");
    assert!(text.contains("result materialized: read by `matmul`"), "{text}");
    assert!(text.contains("(a reduction epilogue: %40 is never stored)"), "the loss mean:\n{text}");
    assert!(text.contains("(a sibling reduction)"), "{text}");
    assert!(text.contains("(a GEMM epilogue: run by blocks of rows"), "{text}");
    let o = kiln(&["emit", "opt", "examples/lenet.kiln", "--explain"]);
    assert!(stdout(&o).contains("result materialized: computed 2 times per element if inlined"), "{}", stdout(&o));

    let o = kiln(&["emit", "opt", "examples/mlp.kiln", "--stats"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.starts_with("train_step (N = 256)\n"), "{text}");
    for row in ["kernels", "bytes moved", "flops", "e-graph:", "stopped: saturated", "rules applied: "] {
        assert!(text.contains(row), "no `{row}` in:\n{text}");
    }

    // Simplified to its input, a function's only kernel copies it out.
    let ir = scratch("negneg.ir");
    std::fs::write(&ir, "func f(x: f32[3]) -> (f32[3]) {\n  %0: f32[3] = input 0\n  %1: f32[3] = neg %0\n  %2: f32[3] = neg %1\n  return %2\n}\n").unwrap();
    let o = kiln(&["emit", "opt", ir.to_str().unwrap(), "--fn", "f"]);
    let text = stdout(&o);
    assert!(text.starts_with("// f: 1 kernel (unoptimized: 2)\n") && text.contains("kernel copy_output_0"), "{text}");
    let o = kiln(&["emit", "opt", "examples/mlp.kiln", "--fn", "forward"]);
    assert!(stdout(&o).starts_with("// forward: "), "{}", stdout(&o));
    let o = kiln(&["emit", "kernels", "examples/mlp.kiln", "--stats"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--explain and --stats go with `kiln emit opt`"), "{}", stderr(&o));
    let o = kiln(&["emit", "opt", "examples/mlp.kiln", "--bind", "M=3"]);
    assert!(stderr(&o).contains("`train_step` has no symbolic dimension `M`"), "{}", stderr(&o));
    let o = kiln(&["emit", "dot", "examples/mlp.kiln", "--bind", "N"]);
    assert!(stderr(&o).contains("must be SYMBOL=VALUE"), "{}", stderr(&o));
    let o = kiln(&["emit", "opt", "examples/mlp.kiln", "--fn", "nope"]);
    assert!(stderr(&o).contains("no function `nope`"), "{}", stderr(&o));
}

#[test]
fn emit_dot_writes_graphviz_before_and_after() {
    let o = kiln(&["emit", "dot", "examples/softmax_regression.kiln"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.starts_with("digraph kiln {\n"), "{text}");
    assert!(text.contains("subgraph cluster_before") && text.contains("subgraph cluster_after"), "{text}");
    assert!(text.contains("subgraph cluster_k"), "kernels are clusters:\n{text}");
    assert_eq!(text.matches('{').count(), text.matches('}').count(), "balanced braces:\n{text}");
    assert!(text.trim_end().ends_with('}'));
}

#[cfg(feature = "ptx")]
#[test]
fn emit_ptx_writes_ptx_and_a_manifest_per_function() {
    let dir = std::env::temp_dir().join(format!("kiln-emit-ptx-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let o = kiln(&["emit", "ptx", "examples/softmax_regression.kiln", "--sm", "sm_90", "-o", dir.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    for f in ["forward", "loss", "train_step"] {
        assert!(text.contains(&format!("/{f}.ptx and ")), "{text}");
        assert!(text.contains("for every size"), "{text}");
        let ptx = std::fs::read_to_string(dir.join(format!("{f}.ptx"))).unwrap();
        assert!(ptx.contains(".target sm_90"), "{ptx}");
        let manifest = std::fs::read_to_string(dir.join(format!("{f}.json"))).unwrap();
        assert!(manifest.contains("\"N\": 256") && manifest.contains("\"sm\": \"sm_90\""), "{manifest}");
        assert_eq!(manifest.matches("\"entry\":").count(), ptx.matches(".entry ").count(), "{manifest}");
        assert!(manifest.contains("\"elements\": \"784*N\""), "the input's length as an expression: {manifest}");
        assert!(manifest.contains("\"at_least\": 1"), "{manifest}");
    }
    let o = kiln(&["emit", "ptx", "examples/mlp.kiln", "--fn", "forward", "--bind", "N=8"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains(".target sm_80") && stdout(&o).contains(".entry k"), "{}", stdout(&o));

    let o = kiln(&["emit", "ptx", "examples/mlp.kiln", "--sm", "sm_70"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("`sm_70` is not a GPU architecture kiln emits PTX for"), "{}", stderr(&o));
    let o = kiln(&["emit", "kernels", "examples/mlp.kiln", "-o", dir.to_str().unwrap()]);
    assert!(!o.status.success() && stderr(&o).contains("-o goes with `kiln emit ptx`"), "{}", stderr(&o));
}

#[cfg(not(feature = "ptx"))]
#[test]
fn emit_ptx_without_the_feature_says_how_to_get_it() {
    let o = kiln(&["emit", "ptx", "examples/mlp.kiln"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("built without PTX support") && stderr(&o).contains("--features ptx"),
        "{}",
        stderr(&o)
    );
}

#[cfg(not(feature = "cuda"))]
#[test]
fn device_cuda_without_the_feature_says_how_to_get_it() {
    for args in [
        &["run", "examples/linear_regression.kiln", "--fn", "forward", "--device", "cuda"][..],
        &["train", "examples/linear_regression.kiln", "--device", "cuda", "--epochs", "1"][..],
    ] {
        let o = kiln(args);
        assert!(!o.status.success());
        assert!(stderr(&o).contains("no CUDA device: this kiln was built without CUDA support"), "{}", stderr(&o));
        assert!(stderr(&o).contains("hint: leave out --device cuda"), "{}", stderr(&o));
    }
    let o =
        kiln(&["run", "examples/linear_regression.kiln", "--fn", "forward", "--device", "cuda", "--backend", "interp"]);
    assert!(stderr(&o).contains("--backend interp runs on the CPU"), "{}", stderr(&o));
}

/// Standard output that cannot be written (a full disk) fails the command
/// with a message; a reader that stops early (`| head`) does not; neither
/// panics.
#[test]
fn standard_output_failures_are_reported_not_panics() {
    if std::path::Path::new("/dev/full").exists() {
        let full = std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap();
        let o = Command::new(env!("CARGO_BIN_EXE_kiln"))
            .args(["emit", "ir", "examples/mlp.kiln"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdout(full)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
        assert!(stderr(&o).contains("cannot write to standard output"), "{}", stderr(&o));
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["emit", "ir", "examples/lenet.kiln"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // the reader goes away before kiln writes
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
}

/// A flag given twice for one name, zero epochs and a zero test limit are
/// errors, not silent choices or empty runs.
#[test]
fn repeated_flags_and_empty_runs_are_errors() {
    let o = kiln(&["emit", "kernels", "examples/mlp.kiln", "--bind", "N=4", "--bind", "N=8"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--bind gives N twice"), "{}", stderr(&o));
    let x = scratch("twice.npy");
    kiln_runtime::npy::write(&x, &Tensor::from_f32(&[1, 2], &[1.0, 2.0])).unwrap();
    let input = format!("x={}", x.display());
    let o = kiln(&["run", "examples/linear_regression.kiln", "--fn", "forward", "--input", &input, "--input", &input]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--input gives `x` twice"), "{}", stderr(&o));
    let o = kiln(&["train", "examples/linear_regression.kiln", "--epochs", "0"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("0 epochs would train nothing"), "{}", stderr(&o));
    let o = kiln(&["train", "examples/linear_regression.kiln", "--limit", "0"]);
    assert!(stderr(&o).contains("no training examples"), "{}", stderr(&o));
}

/// Files that never end (`/dev/zero`) are refused before reading, as a
/// source, a `.ir` file, a checkpoint or an input.
#[test]
fn endless_files_are_refused_before_reading() {
    if !Path::new("/dev/zero").exists() {
        return;
    }
    let o = kiln(&["check", "/dev/zero"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("cannot read `/dev/zero`: not a regular file"), "{}", stderr(&o));
    let o = kiln(&["run", "examples/mlp.kiln", "--fn", "forward", "--params", "/dev/zero"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("/dev/zero: cannot read: not a regular file"), "{}", stderr(&o));
    let o = kiln(&["run", "examples/linear_regression.kiln", "--fn", "forward", "--input", "x=/dev/zero"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("not a regular file"), "{}", stderr(&o));
}

/// Sizes never wrap: a batch whose tensors would hold more than a tensor
/// may is refused where it is bound (`kiln build --bind`), and parameters
/// the machine cannot hold are a clear error, not an abort.
#[test]
fn sizes_that_overflow_or_exceed_memory_are_errors() {
    let ew = scratch("ew.kiln");
    std::fs::write(&ew, "model Ew() { fn forward(x: f32[N, 4]) -> f32[N, 4] { relu(x) * 2.0 } }\n").unwrap();
    let out = scratch("ewlib");
    let (ew, out) = (ew.to_str().unwrap(), out.to_str().unwrap());
    let o = kiln(&["build", ew, "--fn", "forward", "--bind", "N=4611686018427387905", "-o", out]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("f32[N, 4] at N = 4611686018427387905 holds"), "{}", stderr(&o));
    let o = kiln(&["build", "examples/mlp.kiln", "--fn", "forward", "--bind", "N=100000000000", "-o", out]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("more than a tensor may"), "{}", stderr(&o));
    let big = scratch("big.kiln");
    let source =
        "model Big() {\n    param w: f32[100000000000] = zeros\n    fn forward(x: f32[N, 4]) -> f32[N, 4] { x }\n}\n";
    std::fs::write(&big, source).unwrap();
    let o = kiln(&["run", big.to_str().unwrap(), "--fn", "forward"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("parameter `w` (f32[100000000000]) needs 800000000000 bytes"), "{}", stderr(&o));
}

/// `--output` once per output writes every output; a count that does not
/// match is an error; f64 precision on compiled code says it is the
/// interpreter's.
#[test]
fn every_output_is_written_and_precision_is_plain() {
    let x = write_npy("xo.npy", &Tensor::from_f32(&[3, 784], &[0.5; 3 * 784]));
    let y = write_npy("yo.npy", &Tensor::int(kiln_ir::DType::I32, ndarray::ArrayD::zeros(ndarray::IxDyn(&[3]))));
    let (a, b) = (scratch("loss.npy"), scratch("logits.npy"));
    let args = |outs: &[&std::path::Path]| -> Output {
        let (xi, yi) = (format!("x={x}"), format!("y={y}"));
        let mut v = vec!["run", "examples/softmax_regression.kiln", "--fn", "loss_and_logits", "--input", &xi];
        v.extend(["--input", &yi]);
        let outs: Vec<String> = outs.iter().map(|p| p.display().to_string()).collect();
        for o in &outs {
            v.extend(["--output", o.as_str()]);
        }
        kiln(&v)
    };
    let o = args(&[&a, &b]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(kiln_runtime::npy::read(&a).unwrap().shape(), &[] as &[usize]);
    assert_eq!(kiln_runtime::npy::read(&b).unwrap().shape(), &[3, 10]);
    let o = args(&[&a]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("returns 2 outputs: give --output once for each"), "{}", stderr(&o));
    let xi = format!("x={x}");
    let o = kiln(&["run", "examples/softmax_regression.kiln", "--fn", "forward", "--input", &xi, "--precision", "f64"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("f64 precision is the reference interpreter's"), "{}", stderr(&o));
    assert!(stderr(&o).contains("hint: add --backend interp"), "{}", stderr(&o));
    // On the interpreter, f64 precision reads an f64 input for an f32 one
    // and writes the f64 values it computed.
    let x64 = write_npy(
        "x64.npy",
        &Tensor::float(kiln_ir::DType::F64, ndarray::ArrayD::from_elem(ndarray::IxDyn(&[2, 784]), 0.1)),
    );
    let out = scratch("out64.npy");
    let o = kiln(&[
        "run",
        "examples/softmax_regression.kiln",
        "--fn",
        "forward",
        "--input",
        &format!("x={x64}"),
        "--backend",
        "interp",
        "--precision",
        "f64",
        "--output",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let written = kiln_runtime::npy::read(&out).unwrap();
    assert_eq!((written.dtype, written.shape()), (kiln_ir::DType::F64, &[2usize, 10][..]));
    let o = kiln(&["run", "examples/softmax_regression.kiln", "--fn", "forward", "--input", &format!("x={x64}")]);
    assert!(stderr(&o).contains("input `x` must be f32[N, 784], got f64[2, 784]"), "{}", stderr(&o));
}

/// A label out of range is an error on the interpreter and the JIT (the
/// one-hot rows are gathered, with the index checked), never a loss in
/// which that row counts for nothing.
#[test]
fn labels_out_of_range_are_errors() {
    let x = write_npy("lx.npy", &Tensor::from_f32(&[2, 784], &[0.0; 2 * 784]));
    for (name, labels) in [("l200.npy", [1i64, 200]), ("lneg.npy", [-5, 1])] {
        let y = write_npy(
            name,
            &Tensor::int(
                kiln_ir::DType::I32,
                ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&[2]), labels.to_vec()).unwrap(),
            ),
        );
        let (xi, yi) = (format!("x={x}"), format!("y={y}"));
        for backend in ["jit", "interp"] {
            let o = kiln(&[
                "run",
                "examples/mlp.kiln",
                "--fn",
                "loss",
                "--input",
                &xi,
                "--input",
                &yi,
                "--backend",
                backend,
            ]);
            assert_eq!(o.status.code(), Some(1), "{backend} {labels:?}: {}", stdout(&o));
            assert!(stderr(&o).contains("out of") || stderr(&o).contains("outside its bound"), "{}", stderr(&o));
        }
    }
}

/// Sharp edges a user met, each with a message that says what it is: a
/// negative learning rate reaches kiln (not the argument parser) and is
/// refused; invisible characters are named; a file that is not NPY says
/// so; a function exported twice is named.
#[test]
fn sharp_edges_have_clear_messages() {
    let o = kiln(&["train", "examples/linear_regression.kiln", "--lr", "-0.1", "--epochs", "1"]);
    assert!(stderr(&o).contains("the learning rate must be a positive number, not -0.1"), "{}", stderr(&o));
    let dir = scratch("sharp");
    std::fs::create_dir_all(&dir).unwrap();
    let source = "model Ew() { fn forward(x: f32[N, 4]) -> f32[N, 4] { relu(x) * 2.0 } }\n";
    let bom = dir.join("bom.kiln");
    std::fs::write(&bom, [&[0xef, 0xbb, 0xbf][..], source.as_bytes()].concat()).unwrap();
    let o = kiln(&["check", bom.to_str().unwrap()]);
    assert!(stderr(&o).contains("unexpected character U+FEFF (a byte-order mark)"), "{}", stderr(&o));
    let nul = dir.join("nul.kiln");
    std::fs::write(&nul, source.replace("relu", "re\0lu")).unwrap();
    let o = kiln(&["check", nul.to_str().unwrap()]);
    assert!(stderr(&o).contains("unexpected character U+0000 (a NUL byte)"), "{}", stderr(&o));
    for (name, bytes, says) in
        [("empty.npy", &b""[..], "(the file is empty)"), ("text.npy", &b"hello, not npy"[..], "(14 bytes)")]
    {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        let o = kiln(&["run", "examples/mlp.kiln", "--fn", "forward", "--input", &format!("x={}", path.display())]);
        let e = stderr(&o);
        assert!(e.contains("not an NPY file: it does not start with the NPY magic") && e.contains(says), "{e}");
    }
    let out = dir.join("dup");
    let o = kiln(&[
        "build",
        "examples/mlp.kiln",
        "--fn",
        "forward",
        "--fn",
        "forward",
        "--bind",
        "N=4",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(stderr(&o).contains("function `forward` is named twice"), "{}", stderr(&o));
}

/// `kiln run` runs a model in evaluation mode (batch norm on its running
/// statistics: mean 0 and variance 1 when fresh) unless `--mode train` asks
/// for batch statistics (every feature then has mean 0 over the batch).
#[test]
fn run_chooses_evaluation_or_training_mode() {
    let file = scratch("bn.kiln");
    std::fs::write(&file, "model M {\n    bn = BatchNorm(2)\n    fn forward(x: f32[N, 2]) -> f32[N, 2] { bn(x) }\n}\n")
        .unwrap();
    let x = write_npy("bn_x.npy", &Tensor::from_f32(&[3, 2], &[1.0, 10.0, 2.0, 20.0, 6.0, 60.0]));
    let run = |mode: Option<&str>| {
        let out = scratch(&format!("bn_{}.npy", mode.unwrap_or("default")));
        let (file, input, out_path) = (file.to_str().unwrap(), format!("x={x}"), out.to_str().unwrap().to_string());
        let mut args = vec!["run", file, "--fn", "forward", "--input", &input, "--output", &out_path];
        if let Some(m) = mode {
            args.extend(["--mode", m]);
        }
        let o = kiln(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        kiln_runtime::npy::read(&out).unwrap().to_f64_vec()
    };
    let eval = run(None);
    assert_eq!(eval, run(Some("eval")));
    for (got, x) in eval.iter().zip([1.0, 10.0, 2.0, 20.0, 6.0, 60.0]) {
        assert!((got - x / (1.0f64 + 1e-5).sqrt()).abs() < 1e-4, "{eval:?}");
    }
    let train = run(Some("train"));
    for feature in 0..2 {
        let column: Vec<f64> = (0..3).map(|r| train[r * 2 + feature]).collect();
        let mean = column.iter().sum::<f64>() / 3.0;
        let var = column.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / 3.0;
        assert!(mean.abs() < 1e-5 && (var - 1.0).abs() < 1e-3, "feature {feature}: {column:?}");
    }
}

/// `kiln generate` continues a prefix through the command line, and says
/// what is missing when the text or the step is.
#[test]
fn generate_continues_a_prefix() {
    let o = kiln(&["generate", "examples/rnn_lm.kiln", "--data", "../shared/data/timemachine", "--tokens", "5"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.starts_with("time traveller") && text.trim_end_matches('\n').chars().count() == 19, "{text}");
    let o = kiln(&["generate", "examples/rnn_lm.kiln", "--data", "/nonexistent"]);
    assert!(!o.status.success() && stderr(&o).contains("/nonexistent"), "{}", stderr(&o));
    let o = kiln(&["generate", "examples/mlp.kiln", "--data", "../shared/data/timemachine"]);
    assert!(stderr(&o).contains("has no `next(token, state...)`"), "{}", stderr(&o));
    let o = kiln(&["train", "examples/rnn_lm.kiln", "--data", "../shared/data/timemachine", "--partition", "sideways"]);
    assert!(!o.status.success() && stderr(&o).contains("sideways"), "{}", stderr(&o));
}

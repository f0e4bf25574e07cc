//! Ahead-of-time libraries: `kiln build` output linked into C programs with
//! `cc`, run, and compared with the JIT on every function of every example;
//! smaller batches where rows are independent; the documented status codes
//! for bad arguments; and the C and Rust example applications.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kiln_frontend::Options;
use kiln_ir::interp::Tensor;
use kiln_ir::{DType, Dim, Module};
use kiln_runtime::execute::Execute;
use ndarray::{ArrayD, IxDyn};

/// Relative tolerance between the library and the JIT: the same kernels,
/// except that GEMM is a loop nest here and `matrixmultiply` there, so sums
/// are taken in another order.
const TOLERANCE: f64 = 1e-4;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn kiln(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kiln")).args(args).current_dir(root()).output().expect("kiln runs")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kiln-aot-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn ok(o: &Output, what: &str) -> String {
    assert!(
        o.status.success(),
        "{what} failed ({}):\n{}\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Compiles and links C sources in `dir` with the library: `cc ARGS -lm -lpthread`.
fn cc(dir: &Path, args: &[&str]) {
    let o = Command::new("cc").args(args).args(["-lm", "-lpthread"]).current_dir(dir).output().expect("cc runs");
    ok(&o, "cc");
}

fn module_of(path: &str) -> Module {
    let compiled = kiln::compile_file(&root().join(path), &Options::default()).unwrap();
    if compiled.train.is_some() { kiln::with_train_step(&compiled).unwrap() } else { compiled.module }
}

fn c_type(d: DType) -> &'static str {
    kiln_codegen::aot::c_type(d)
}

fn bytes(t: &Tensor) -> Vec<u8> {
    kiln_codegen::HostBuffer::from_tensor(t).bytes().to_vec()
}

/// Deterministic inputs of `function` at batch `n`: floats in [-1, 1),
/// integer labels below 10, the key 7.
fn inputs(module: &Module, function: &str, n: u64) -> Vec<Tensor> {
    let f = module.function(function).unwrap();
    f.inputs
        .iter()
        .enumerate()
        .map(|(k, i)| {
            let shape: Vec<usize> = i.ty.shape.0.iter().map(|d| d.as_const().unwrap_or(n) as usize).collect();
            let len: usize = shape.iter().product();
            match i.ty.dtype {
                DType::I64 if shape.is_empty() => Tensor::int(DType::I64, ArrayD::from_elem(IxDyn(&[]), 7)),
                d if d.is_int() => {
                    Tensor::int(d, ArrayD::from_shape_fn(IxDyn(&shape), |ix| ((ix[0] * 7 + k) % 10) as i64))
                }
                d => {
                    let v = (0..len).map(|j| kiln_ir::random::uniform(k as u64, 9, j as u64) * 2.0 - 1.0).collect();
                    Tensor::float(d, ArrayD::from_shape_vec(IxDyn(&shape), v).unwrap())
                }
            }
        })
        .collect()
}

/// A C program that reads each parameter and input from a file, calls the
/// library's `function` with size `n`, and writes each output to a file
/// (or exits with 10 + the status).
fn harness(lib: &str, module: &Module, function: &str, n: u64) -> String {
    let f = module.function(function).unwrap();
    let size = |ty: &kiln_ir::TensorType| -> usize {
        ty.shape.0.iter().map(|d| d.as_const().unwrap_or(n) as usize).product::<usize>() * ty.dtype.size_bytes()
    };
    let mut c = format!(
        "#include <stdio.h>\n#include <stdlib.h>\n#include \"{lib}.h\"\n\
         static void *load(const char *path, size_t n) {{ FILE *f = fopen(path, \"rb\"); void *p = malloc(n ? n : 1); \
         if (!f || fread(p, 1, n, f) != n) exit(3); fclose(f); return p; }}\n\
         static void save(const char *path, const void *p, size_t n) {{ FILE *f = fopen(path, \"wb\"); fwrite(p, 1, n, f); fclose(f); }}\n\
         int main(void) {{\n"
    );
    let mut args = Vec::new();
    if !module.params.is_empty() {
        let fields: Vec<String> =
            module.params.iter().enumerate().map(|(k, p)| format!("load(\"p{k}.bin\", {})", size(&p.ty))).collect();
        c += &format!("    {lib}_params params = {{ {} }};\n", fields.join(", "));
        args.push("&params".to_string());
    }
    for (k, i) in f.inputs.iter().enumerate() {
        c += &format!("    {} *in{k} = load(\"in{k}.bin\", {});\n", c_type(i.ty.dtype), size(&i.ty));
        args.push(format!("in{k}"));
    }
    let mut symbols = Vec::new();
    for i in &f.inputs {
        for d in &i.ty.shape.0 {
            if let Dim::Sym(s) = d
                && !symbols.contains(&s.0)
            {
                symbols.push(s.0.clone());
            }
        }
    }
    args.extend(symbols.iter().map(|_| n.to_string()));
    let outputs = f.output_types();
    for (k, t) in outputs.iter().enumerate() {
        c += &format!("    {} *out{k} = malloc({} + 1);\n", c_type(t.dtype), size(t));
        args.push(format!("out{k}"));
    }
    c += &format!("    int s = {lib}_{function}({});\n    if (s) return 10 + s;\n", args.join(", "));
    for (k, t) in outputs.iter().enumerate() {
        c += &format!("    save(\"out{k}.bin\", out{k}, {});\n", size(t));
    }
    c + "    return 0;\n}\n"
}

/// Builds `path`'s `function` for batch `compiled`, runs it at batch `n`
/// from C, and compares every output with the JIT's at batch `n`.
fn compare_with_jit(path: &str, function: &str, compiled: u64, n: u64) {
    let module = module_of(path);
    let dir = scratch(&format!("{}-{function}-{n}", Path::new(path).file_stem().unwrap().to_str().unwrap()));
    let lib = "lib_under_test";
    let bind = format!("N={compiled}");
    let d = dir.display().to_string();
    ok(&kiln(&["build", path, "--fn", function, "--bind", &bind, "-o", &d, "--name", lib]), "kiln build");
    std::fs::write(dir.join("main.c"), harness(lib, &module, function, n)).unwrap();
    let params = kiln_ir::initialize_params(&module, 3);
    for (k, p) in module.params.iter().enumerate() {
        std::fs::write(dir.join(format!("p{k}.bin")), bytes(&params[&p.name])).unwrap();
    }
    let inputs = inputs(&module, function, n);
    for (k, t) in inputs.iter().enumerate() {
        std::fs::write(dir.join(format!("in{k}.bin")), bytes(t)).unwrap();
    }
    cc(&dir, &["-O1", "main.c", &format!("lib{lib}.a"), "-o", "main"]);
    ok(&Command::new(dir.join("main")).current_dir(&dir).output().unwrap(), &format!("{path} {function}"));
    let jit = kiln::jit::Jit::new(&module);
    let expected = jit.run(function, &inputs, &params).unwrap();
    for (k, e) in expected.iter().enumerate() {
        let got = std::fs::read(dir.join(format!("out{k}.bin"))).unwrap();
        let e = e.to_f64_vec();
        let size = got.len() / e.len().max(1);
        for (i, (chunk, want)) in got.chunks_exact(size.max(1)).zip(&e).enumerate() {
            let value = match size {
                4 if matches!(module.function(function).unwrap().output_types()[k].dtype, DType::I32) => {
                    f64::from(i32::from_ne_bytes(chunk.try_into().unwrap()))
                }
                4 => f64::from(f32::from_ne_bytes(chunk.try_into().unwrap())),
                8 => f64::from_ne_bytes(chunk.try_into().unwrap()),
                _ => f64::from(chunk[0]),
            };
            let error = (value - want).abs() / want.abs().max(1.0);
            assert!(error <= TOLERANCE, "{path} {function} output {k}[{i}]: library {value}, JIT {want}");
        }
    }
}

#[test]
fn libraries_agree_with_the_jit_on_every_example() {
    for path in ["examples/linear_regression.kiln", "examples/softmax_regression.kiln", "examples/mlp.kiln"] {
        let module = module_of(path);
        for f in &module.functions {
            compare_with_jit(path, &f.name, 6, 6);
        }
    }
    for path in ["examples/lenet.kiln", "examples/batchnorm_lenet.kiln"] {
        for f in &module_of(path).functions {
            compare_with_jit(path, &f.name, 2, 2);
        }
    }
}

/// The modern networks' forward passes (batch norm in evaluation mode,
/// residual and dense blocks, Inception's concatenated branches) at their
/// book input size of 96, as libraries, agree with the JIT.
#[test]
fn libraries_agree_with_the_jit_on_the_modern_cnns() {
    for path in ["examples/resnet.kiln", "examples/densenet.kiln", "examples/googlenet.kiln"] {
        compare_with_jit(path, "forward", 2, 2);
    }
}

/// One library, built with `--bind N=1000`, classifies at N = 1, 7 and
/// 1000 as the JIT does; a training step (whose loss averages over the
/// batch) runs at a smaller batch too.
#[test]
fn one_library_serves_every_size_up_to_its_maximum() {
    for n in [1, 7, 1000] {
        compare_with_jit("examples/mlp.kiln", "forward", 1000, n);
    }
    compare_with_jit("examples/softmax_regression.kiln", "predict", 8, 1);
    compare_with_jit("examples/mlp.kiln", "train_step", 8, 5);
}

/// The header's status codes, from a C program calling the library wrongly.
#[test]
fn bad_arguments_return_their_status() {
    let dir = scratch("status");
    let d = dir.display().to_string();
    ok(
        &kiln(&["build", "examples/mlp.kiln", "--fn", "forward", "--fn", "train_step", "--bind", "N=4", "-o", &d]),
        "build",
    );
    let header = std::fs::read_to_string(dir.join("mlp.h")).unwrap();
    assert!(header.contains("N: any size from 1 to 4 (MLP_TRAIN_STEP_MAX_N)."), "{header}");
    assert!(header.contains("N: any size from 1 to 4 (MLP_FORWARD_MAX_N)."), "{header}");
    // Sizes as the kernel IR states them.
    assert!(header.contains(" * in  x: f32[N, 784], 784*N elements\n"), "{header}");
    let program = r#"#include <stdio.h>
#include <stdlib.h>
#include "mlp.h"
int main(void) {
    float *w1 = calloc(784 * 256, 4), *b1 = calloc(256, 4), *w2 = calloc(2560, 4), *b2 = calloc(10, 4);
    mlp_params p = { w1, b1, w2, b2 }, missing = { w1, NULL, w2, b2 };
    float x[5 * 784] = { 0 }, out[5 * 10], loss, logits[4 * 10], nw1[784 * 256], nb1[256], nw2[2560], nb2[10];
    int32_t y[5] = { 0 }, bad[4] = { 1, 200, 3, 4 };
    int64_t key = 1;
    printf("%d %d %d %d %d %d %d %d %d %d\n",
        mlp_forward(&p, x, 4, out),
        mlp_forward(NULL, x, 4, out),
        mlp_forward(&p, NULL, 4, out),
        mlp_forward(&missing, x, 4, out),
        mlp_forward(&p, x, 5, out),
        mlp_forward(&p, x, -1, out),
        mlp_forward(&p, x, 0, out),
        mlp_train_step(&p, x, y, &key, 3, &loss, logits, nw1, nb1, nw2, nb2),
        mlp_train_step(&p, x, y, &key, 4, &loss, logits, nw1, nb1, nw2, nb2),
        mlp_train_step(&p, x, bad, &key, 4, &loss, logits, nw1, nb1, nw2, nb2));
    return 0;
}
"#;
    std::fs::write(dir.join("main.c"), program).unwrap();
    cc(&dir, &["main.c", "libmlp.a", "-o", "main"]);
    let printed = ok(&Command::new(dir.join("main")).output().unwrap(), "main");
    assert_eq!(
        printed.trim(),
        "0 1 1 1 2 2 2 0 0 4",
        "OK, NULL_ARGUMENT x3, BAD_SIZE x3 (5, -1, 0), OK at 3 and 4, INDEX_OUT_OF_RANGE"
    );
}

/// Two threads calling one function at once get what one thread gets.
#[test]
fn calls_from_several_threads_agree() {
    let dir = scratch("threads");
    let d = dir.display().to_string();
    ok(&kiln(&["build", "examples/mlp.kiln", "--fn", "forward", "--bind", "N=16", "-o", &d]), "build");
    let program = r#"#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "mlp.h"
static mlp_params p;
static float x[16 * 784], expected[16 * 10];
static void *work(void *arg) {
    float out[16 * 10];
    for (int i = 0; i < 200; i++) {
        if (mlp_forward(&p, x, 16, out) != MLP_OK || memcmp(out, expected, sizeof out) != 0) return (void *)1;
    }
    return NULL;
}
int main(void) {
    float *w1 = malloc(784 * 256 * 4), *b1 = malloc(256 * 4), *w2 = malloc(2560 * 4), *b2 = malloc(40);
    for (int i = 0; i < 784 * 256; i++) w1[i] = (float)((i * 37) % 101) / 1000.0f - 0.05f;
    for (int i = 0; i < 256; i++) b1[i] = 0.01f * (i % 3);
    for (int i = 0; i < 2560; i++) w2[i] = (float)((i * 11) % 17) / 100.0f - 0.08f;
    for (int i = 0; i < 10; i++) b2[i] = 0.1f * i;
    for (int i = 0; i < 16 * 784; i++) x[i] = (float)(i % 255) / 255.0f;
    p = (mlp_params){ w1, b1, w2, b2 };
    if (mlp_forward(&p, x, 16, expected) != MLP_OK) return 3;
    pthread_t a, b;
    void *ra, *rb;
    pthread_create(&a, NULL, work, NULL);
    pthread_create(&b, NULL, work, NULL);
    pthread_join(a, &ra);
    pthread_join(b, &rb);
    printf("%s\n", ra == NULL && rb == NULL ? "same" : "different");
    return 0;
}
"#;
    std::fs::write(dir.join("main.c"), program).unwrap();
    cc(&dir, &["main.c", "libmlp.a", "-o", "main"]);
    assert_eq!(ok(&Command::new(dir.join("main")).output().unwrap(), "main").trim(), "same");
}

#[test]
fn build_errors_are_clear() {
    let dir = scratch("errors").display().to_string();
    let fails_with = |args: &[&str], message: &str| {
        let o = kiln(args);
        assert!(!o.status.success(), "{args:?} succeeded");
        assert!(String::from_utf8_lossy(&o.stderr).contains(message), "{args:?}: {o:?}");
    };
    let mlp = ["build", "examples/mlp.kiln", "--fn", "forward", "-o", &dir];
    fails_with(&[&mlp[..], &["--bind", "N=0"]].concat(), "has the size N: give a value of at least 1");
    fails_with(&[&mlp[..], &["--bind", "N"]].concat(), "--bind `N` must be SYMBOL=VALUE, such as N=256");
    fails_with(&[&mlp[..], &["--bind", "N=4", "--name", "9lives"]].concat(), "`9lives` cannot name a C library");
    fails_with(
        &["build", "examples/bad.kiln", "--fn", "forward", "--bind", "N=4", "-o", &dir],
        "cannot read `examples/bad.kiln`",
    );
    // A program with errors is reported with its source, as `kiln check` does.
    fails_with(
        &["build", "tests/filetests/err/broadcast_mismatch.kiln", "--fn", "forward", "--bind", "N=4", "-o", &dir],
        "broadcast_mismatch.kiln:4:47",
    );
    let o = kiln(&["build", "examples/mlp.kiln", "--fn", "forward", "-o", &dir]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("`forward` has the size N: give a value of at least 1 to compile for"), "{o:?}");
    assert!(err.contains("hint: give it with --bind N=VALUE"), "{o:?}");
    let o = kiln(&["build", "examples/mlp.kiln", "--fn", "backward", "--bind", "N=4", "-o", &dir]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("no function `backward`"), "{o:?}");
    let o = kiln(&[
        "build",
        "examples/mlp.kiln",
        "--fn",
        "forward",
        "--bind",
        "N=4",
        "-o",
        &dir,
        "--params",
        "missing.safetensors",
    ]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("missing.safetensors"), "{o:?}");
    assert!(!o.status.success());
}

/// Compiles `examples/c` against a library with trained parameters baked
/// in; returns the directory holding `mlp.h`, `libmlp.a` and `classify`,
/// and the test accuracy `kiln train` printed.
fn trained_library() -> (PathBuf, String) {
    let dir = scratch("trained");
    let data = root().join("../shared/data/fashion-mnist");
    let checkpoint = dir.join("mlp.safetensors").display().to_string();
    let trained = ok(
        &kiln(&[
            "train",
            "examples/mlp.kiln",
            "--data",
            &data.display().to_string(),
            "--epochs",
            "1",
            "--limit",
            "6000",
            "--save",
            &checkpoint,
        ]),
        "kiln train",
    );
    let accuracy = trained.rsplit("test acc ").next().unwrap().split([' ', ')']).next().unwrap().to_string();
    let d = dir.display().to_string();
    ok(
        &kiln(&[
            "build",
            "examples/mlp.kiln",
            "--fn",
            "forward",
            "--params",
            &checkpoint,
            "--bind",
            "N=1000",
            "-o",
            &d,
        ]),
        "build",
    );
    let classify = dir.join("classify").display().to_string();
    cc(root(), &["-O2", "-I", &d, "examples/c/classify.c", &format!("{d}/libmlp.a"), "-o", &classify]);
    (dir, accuracy)
}

#[test]
fn the_c_example_reports_kiln_trains_accuracy() {
    let data = root().join("../shared/data/fashion-mnist");
    if !data.exists() {
        panic!("the Fashion-MNIST files are expected in {}", data.display());
    }
    let (dir, accuracy) = trained_library();
    let printed = ok(&Command::new(dir.join("classify")).arg(&data).output().unwrap(), "classify");
    assert!(
        printed.contains(&format!("test accuracy {accuracy}")),
        "kiln train said {accuracy}; the C program printed:\n{printed}"
    );

    // The Rust application links the same library through its build script.
    let app = root().join("examples/rust-app");
    let target = scratch("rust-app-target");
    let built = Command::new(env!("CARGO"))
        .args(["run", "--quiet", "--offline", "--manifest-path"])
        .arg(app.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target)
        .arg("--")
        .arg(&data)
        .env("KILN_LIB_DIR", &dir)
        .output()
        .expect("cargo runs");
    let printed = ok(&built, "examples/rust-app");
    assert!(
        printed.contains(&format!("test accuracy {accuracy}")),
        "kiln train said {accuracy}; the Rust app printed:\n{printed}"
    );
}

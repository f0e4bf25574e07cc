//! The PTX backend (feature `ptx`): every function of every example and
//! `ok` program lowered to kernel IR, compiled to PTX for sm_80 and sm_90
//! and assembled by `ptxas`; the same launches emulated on the host (the
//! LLVM IR built for this CPU, each GPU thread called with its indices,
//! blocks that synchronize run as OS threads) against the interpreter,
//! tolerance 1e-4 relative to max(1, |expected|) as for the CPU JIT.
//!
//! `ptxas` comes from the `nvidia-cuda-nvcc-cu12` wheel, which `.ci/run`
//! installs into a virtual environment and names in `KILN_PTXAS`; without
//! it these tests fail and say how to get it.
#![cfg(feature = "ptx")]

mod support;

use std::path::PathBuf;
use std::process::Command;

use kiln_codegen::nvptx::{PtxError, Sm, emit_generic_ptx, emit_ptx, emulate_generic, emulate_plan};
use kiln_ir::Module;
use kiln_ir::interp::{EvalOptions, Tensor, evaluate};
use kiln_ir::kernel::{execute_with, parse_plan};
use kiln_passes::CompileOptions;
use support::{BATCH, bindings_for, compare, inputs_at, inputs_for, with_step};

const TOLERANCE: f64 = 1e-4;

const PROGRAMS: [&str; 9] = [
    "examples/linear_regression.kiln",
    "examples/softmax_regression.kiln",
    "examples/mlp.kiln",
    "examples/lenet.kiln",
    "tests/filetests/ok/features.kiln",
    "tests/filetests/ok/lenet.kiln",
    "tests/filetests/ok/gru_unrolled.kiln",
    "tests/filetests/ok/adam_training.kiln",
    "tests/filetests/ok/uses_file.kiln",
];

fn ptxas() -> PathBuf {
    if let Some(path) = std::env::var_os("KILN_PTXAS") {
        return PathBuf::from(path);
    }
    let on_path = Command::new("ptxas").arg("--version").output().is_ok_and(|o| o.status.success());
    assert!(
        on_path,
        "ptxas is needed to validate PTX: `python3 -m venv /tmp/ptx && /tmp/ptx/bin/pip install nvidia-cuda-nvcc-cu12`, \
         then KILN_PTXAS=/tmp/ptx/lib/python3.*/site-packages/nvidia/cuda_nvcc/bin/ptxas (what .ci/run does)"
    );
    PathBuf::from("ptxas")
}

/// The plan of `function` at the test size, specialized to it (the PTX
/// backend compiles plans at one binding).
fn plan_of(module: &Module, function: &str) -> kiln_ir::kernel::Plan {
    let bindings = bindings_for(module, function);
    kiln_passes::compile_plan(module, function, &bindings)
        .unwrap_or_else(|e| panic!("{function}: {e}"))
        .specialize(&bindings)
}

/// Assembles `ptx` for `sm` with ptxas; panics with its message if it fails.
fn assemble(ptxas: &PathBuf, ptx: &str, sm: Sm, what: &str) {
    let dir = std::env::temp_dir().join(format!("kiln-ptx-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let name = what.replace(['/', ' ', '.'], "_");
    let source = dir.join(format!("{name}_{sm}.ptx"));
    std::fs::write(&source, ptx).unwrap();
    let out = Command::new(ptxas)
        .arg(format!("-arch={sm}"))
        .arg(&source)
        .arg("-o")
        .arg(dir.join(format!("{name}_{sm}.cubin")))
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", ptxas.display()));
    assert!(out.status.success(), "ptxas -arch={sm} rejects {what}:\n{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn every_function_assembles_for_sm80_and_sm90() {
    let ptxas = ptxas();
    for path in PROGRAMS {
        let module = with_step(path);
        for f in &module.functions {
            let plan = plan_of(&module, &f.name);
            for sm in ["sm_80", "sm_90"] {
                let sm = Sm::parse(sm).unwrap();
                let out = emit_ptx(&plan, sm).unwrap_or_else(|e| panic!("{path} {}: {e}", f.name));
                let entries = out.manifest.entries();
                assert_eq!(out.ptx.matches(".entry").count(), entries.len(), "one .entry per launch");
                for entry in &entries {
                    assert!(out.ptx.contains(&format!(".entry {entry}(")), "{entry} is in the PTX");
                }
                assemble(&ptxas, &out.ptx, sm, &format!("{path} {}", f.name));
                // The PTX generic in the batch size `kiln emit ptx` writes.
                let generic = kiln::ptx::generic_plan(&module, &f.name, &bindings_for(&module, &f.name))
                    .unwrap_or_else(|e| panic!("{path} {}: no generic plan: {e}", f.name));
                let generic = emit_generic_ptx(&generic, sm).unwrap_or_else(|e| panic!("{path} {}: {e}", f.name));
                assert_eq!(generic.ptx.matches(".entry").count(), generic.manifest.entries().len());
                assemble(&ptxas, &generic.ptx, sm, &format!("{path} {} generic", f.name));
                println!(
                    "{path} {}: {} kernels, {} entries assembled for {sm}; generic: {} entries assembled",
                    f.name,
                    plan.kernels.len(),
                    entries.len(),
                    generic.manifest.entries().len()
                );
            }
        }
    }
}

#[test]
fn emulated_launches_agree_with_the_interpreter() {
    for path in PROGRAMS {
        let module = with_step(path);
        for f in &module.functions {
            let plan = plan_of(&module, &f.name);
            let inputs = inputs_for(&module, &f.name);
            let params = kiln_ir::initialize_params(&module, 1);
            let expected = evaluate(&module, &f.name, &inputs, &params, EvalOptions::default()).unwrap();
            let emulated = execute_with(&plan, &kiln_ir::Bindings::new(), &inputs, &params, emulate_plan)
                .unwrap_or_else(|e| panic!("{path} {}: {e}", f.name));
            compare(&f.name, "PTX emulation", &emulated, &expected, TOLERANCE, &plan.to_string());
        }
    }
}

/// The module generic in the batch size, built from probe sizes for
/// N = 3, run at N = 3 and at N = 7 (the same residue modulo 4) against the
/// interpreter at each: what `kiln emit ptx` writes serves every such size.
#[test]
fn generic_modules_agree_with_the_interpreter_at_two_sizes() {
    let mut generic_functions = 0;
    for path in PROGRAMS {
        let module = with_step(path);
        for f in &module.functions {
            let decide = bindings_for(&module, &f.name);
            let generic = kiln::ptx::generic_plan(&module, &f.name, &decide)
                .unwrap_or_else(|e| panic!("{path} {}: no generic plan: {e}", f.name));
            let sizes = if decide.is_empty() { vec![BATCH] } else { vec![BATCH, BATCH + 4] };
            for n in sizes {
                let at: kiln_ir::Bindings = decide.keys().map(|s| (s.clone(), n)).collect();
                let options = CompileOptions { decide_at: Some(decide.clone()), ..CompileOptions::default() };
                let plan = kiln_passes::compile(&module, &f.name, &at, &options).unwrap().plan.specialize(&at);
                let inputs = inputs_at(&module, &f.name, n);
                let params = kiln_ir::initialize_params(&module, 1);
                let expected = evaluate(&module, &f.name, &inputs, &params, EvalOptions::default()).unwrap();
                let ns = vec![n; decide.len()];
                let emulated = execute_with(&plan, &kiln_ir::Bindings::new(), &inputs, &params, |_, buffers| {
                    emulate_generic(&generic, &ns, buffers)
                })
                .unwrap_or_else(|e| panic!("{path} {} at N = {n}: {e}", f.name));
                compare(&f.name, &format!("generic PTX emulation at N = {n}"), &emulated, &expected, TOLERANCE, "");
            }
            generic_functions += usize::from(!decide.is_empty());
        }
    }
    assert!(generic_functions >= 20, "only {generic_functions} functions have a symbol");
}

/// A generic module run at a size outside its residue class, or with
/// buffers of the wrong length, is an error, not a wrong answer.
#[test]
fn a_generic_module_refuses_sizes_it_is_not_valid_for() {
    let module = with_step("examples/mlp.kiln");
    let decide = bindings_for(&module, "forward");
    let generic = kiln::ptx::generic_plan(&module, "forward", &decide).unwrap();
    assert!(generic.valid_at(&[BATCH + 8]) && !generic.valid_at(&[BATCH + 1]) && !generic.valid_at(&[0]));
    let plan = plan_of(&module, "forward");
    let inputs = inputs_for(&module, "forward");
    let params = kiln_ir::initialize_params(&module, 1);
    let e = execute_with(&plan, &kiln_ir::Bindings::new(), &inputs, &params, |_, b| {
        emulate_generic(&generic, &[BATCH + 1], b)
    })
    .unwrap_err();
    assert!(e.contains("not valid at sizes [4]"), "{e}");
    let e = execute_with(&plan, &kiln_ir::Bindings::new(), &inputs, &params, |_, b| {
        emulate_generic(&generic, &[BATCH + 4], b)
    })
    .unwrap_err();
    assert!(e.contains("elements"), "{e}");
}

/// Two symbolic dimensions: the probes are a grid, the formulas are in
/// both, and the module agrees with the interpreter at sizes of the same
/// residues; four symbols are more than the grid takes, and say so.
#[test]
fn a_function_of_two_symbols_is_generic_in_both() {
    let module = kiln_ir::parse_module(
        "func f(a: f32[N, T, 6], w: f32[6, 5]) -> (f32[N, T, 6], f32[N, 5]) {
  %0: f32[N, T, 6] = input 0
  %1: f32[6, 5] = input 1
  %2: f32[N, T, 6] = tanh %0
  %3: f32[N, 6] = reduce_sum %0 axes=[1] keepdims=false
  %4: f32[N, 5] = matmul %3, %1
  return %2, %4
}
",
    )
    .unwrap();
    let bind = |n: u64, t: u64| -> kiln_ir::Bindings {
        [("N", n), ("T", t)].into_iter().map(|(s, v)| (kiln_ir::Symbol::new(s), v)).collect()
    };
    let generic = kiln::ptx::generic_plan(&module, "f", &bind(3, 5)).unwrap();
    let out = emit_generic_ptx(&generic, Sm::parse("sm_80").unwrap()).unwrap();
    let m = &out.manifest.0;
    assert_eq!(m["buffers"][0]["elements_formula"], "6*N*T", "{}", out.manifest.to_json());
    assert_eq!(m["valid_for"]["T"]["residue"], 1);
    for (n, t) in [(3, 5), (7, 9), (3, 13)] {
        let inputs = float_inputs(&[vec![n, t, 6], vec![6, 5]]);
        let params = kiln_ir::interp::Params::new();
        let expected = evaluate(&module, "f", &inputs, &params, EvalOptions::default()).unwrap();
        let options = CompileOptions { decide_at: Some(bind(3, 5)), ..CompileOptions::default() };
        let plan = kiln_passes::compile(&module, "f", &bind(n, t), &options).unwrap().plan.specialize(&bind(n, t));
        let emulated = execute_with(&plan, &kiln_ir::Bindings::new(), &inputs, &params, |_, b| {
            emulate_generic(&generic, &[n, t], b)
        })
        .unwrap();
        compare("f", &format!("generic PTX emulation at N = {n}, T = {t}"), &emulated, &expected, TOLERANCE, "");
    }
    let four: kiln_ir::Bindings = ["A", "B", "C", "D"].iter().map(|s| (kiln_ir::Symbol::new(*s), 4)).collect();
    let e = kiln::ptx::generic_plan(&module, "f", &four).unwrap_err();
    assert!(e.contains("4 symbolic dimensions (A, B, C, D); generic PTX handles at most 3"), "{e}");
}

/// `kiln emit ptx` on a function of four symbols: PTX for the sizes bound,
/// with the reason it is not generic.
#[test]
fn four_symbols_fall_back_to_ptx_for_the_sizes_bound() {
    let module = kiln_ir::parse_module(
        "func f(a: f32[A, B, C, D]) -> (f32[A, B, C, D]) {
  %0: f32[A, B, C, D] = input 0
  %1: f32[A, B, C, D] = exp %0
  return %1
}
",
    )
    .unwrap();
    let bind = |_: &kiln_ir::Function| -> Result<kiln_ir::Bindings, kiln::Error> {
        Ok(["A", "B", "C", "D"].iter().map(|s| (kiln_ir::Symbol::new(*s), 2)).collect())
    };
    let emitted = kiln::ptx::emit(&module, &["f".to_string()], &bind, "sm_80", None).unwrap();
    let why = emitted[0].specialized.as_deref().expect("not generic");
    assert!(why.contains("generic PTX handles at most 3"), "{why}");
    assert!(emitted[0].ptx.as_deref().is_some_and(|p| p.contains(".entry k1_exp")));
}

/// Deterministic f32 inputs of the given shapes.
fn float_inputs(shapes: &[Vec<u64>]) -> Vec<Tensor> {
    shapes
        .iter()
        .enumerate()
        .map(|(k, shape)| {
            let len: u64 = shape.iter().product();
            let v: Vec<f64> = (0..len).map(|i| 2.0 * kiln_ir::random::uniform(k as u64, 1, i) - 1.0).collect();
            let shape: Vec<usize> = shape.iter().map(|d| *d as usize).collect();
            Tensor::float(kiln_ir::DType::F32, ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&shape), v).unwrap())
        })
        .collect()
}

/// The manifest of a generic module: sizes as formulas of N.
#[test]
fn a_generic_manifest_gives_sizes_as_formulas() {
    let module = kiln_ir::parse_module(
        "func f(a: f32[N, 10], b: f32[10, 3]) -> (f32[N, 3], f32[]) {
  %0: f32[N, 10] = input 0
  %1: f32[10, 3] = input 1
  %2: f32[N, 3] = matmul %0, %1
  %3: f32[] = reduce_sum %0 axes=[0, 1] keepdims=false
  return %2, %3
}
",
    )
    .unwrap();
    let bindings: kiln_ir::Bindings = [(kiln_ir::Symbol::new("N"), 64)].into_iter().collect();
    let generic = kiln::ptx::generic_plan(&module, "f", &bindings).unwrap();
    let out = emit_generic_ptx(&generic, Sm::parse("sm_80").unwrap()).unwrap();
    let m = &out.manifest.0;
    assert_eq!(m["valid_for"]["N"]["modulus"], 4);
    assert_eq!(m["buffers"][0]["elements_formula"], "10*N");
    assert_eq!(m["buffers"][0]["elements"], 640);
    assert_eq!(m["buffers"][0]["bytes_formula"], "40*N");
    let gemm = &m["launches"][0];
    assert_eq!(gemm["threads_formula"][1], "N");
    assert_eq!(gemm["grid_formula"][1], "ceil(N/16)");
    assert_eq!(gemm["grid"][1], 4);
    assert_eq!(gemm["args"].as_array().unwrap().last().unwrap(), "N");
    insta::assert_snapshot!("generic_manifest", out.manifest.to_json());
}

#[test]
fn an_unknown_architecture_is_an_error_naming_the_supported_ones() {
    let e = Sm::parse("sm_100").unwrap_err();
    assert_eq!(e, PtxError::UnknownSm("sm_100".into()));
    let message = e.to_string();
    assert!(message.contains("sm_100") && message.contains("sm_80") && message.contains("sm_90"), "{message}");
}

#[test]
fn an_unsupported_op_is_an_error_naming_it() {
    let plan = parse_plan(
        "plan f {
  b0: f64[8] input 0
  b1: f64[8] output 0
  kernel k1_exp {
    for i0 in 0..8 parallel {
      b1[i0] = exp(b0[i0])
    }
  }
}",
    )
    .unwrap();
    let e = emit_ptx(&plan, Sm::parse("sm_80").unwrap()).unwrap_err();
    assert_eq!(e, PtxError::Unsupported { kernel: "k1_exp".into(), what: "exp on f64".into() });
    assert!(e.to_string().contains("kernel `k1_exp`: exp on f64 is not supported"), "{e}");
    let mut buffers = vec![kiln_ir::kernel::Storage::Float(vec![0.0; 8]); 2];
    assert!(emulate_plan(&plan, &mut buffers).unwrap_err().contains("exp on f64"));
}

#[test]
fn a_grid_past_the_hardware_limits_is_an_error() {
    // 70 000 products: the GEMM grid's z would pass 65 535 blocks.
    let plan = parse_plan(
        "plan f {
  b0: f32[70000] input 0
  b1: f32[70000] input 1
  b2: f32[70000] output 0
  kernel k1_matmul {
    gemm(batch=70000, m=1, n=1, k=1, a=b0[0, 1, 1], b=b1[0, 1, 1], c=b2[0, 1, 1])
  }
}",
    )
    .unwrap();
    let e = emit_ptx(&plan, Sm::parse("sm_80").unwrap()).unwrap_err();
    assert!(
        matches!(&e, PtxError::Unsupported { kernel, what } if kernel == "k1_matmul" && what.contains("[1, 1, 70000] blocks")),
        "{e}"
    );
}

#[test]
fn an_index_out_of_range_is_reported_by_the_emulation() {
    let module = kiln_ir::parse_module(
        "func f(x: f32[4], i: i32[3]) -> (f32[3]) {
  %0: f32[4] = input 0
  %1: i32[3] = input 1
  %2: f32[3] = gather %0, %1 axis=0
  return %2
}
",
    )
    .unwrap();
    let plan = plan_of(&module, "f");
    let inputs = vec![
        Tensor::from_f32(&[4], &[1.0, 2.0, 3.0, 4.0]),
        Tensor::int(kiln_ir::DType::I32, ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&[3]), vec![0, 7, 1]).unwrap()),
    ];
    let e = execute_with(&plan, &kiln_ir::Bindings::new(), &inputs, &kiln_ir::interp::Params::new(), emulate_plan)
        .unwrap_err();
    assert!(e.contains("out of range"), "{e}");
}

/// Lowers `f` of `module`, emulates it and compares it with the interpreter.
fn emulate_against_the_interpreter(module: &Module) -> kiln_ir::kernel::Plan {
    let plan = plan_of(module, "f");
    let inputs = inputs_for(module, "f");
    let params = kiln_ir::interp::Params::new();
    let expected = evaluate(module, "f", &inputs, &params, EvalOptions::default()).unwrap();
    let emulated = execute_with(&plan, &kiln_ir::Bindings::new(), &inputs, &params, emulate_plan).unwrap();
    compare("f", "PTX emulation", &emulated, &expected, TOLERANCE, &plan.to_string());
    plan
}

/// A whole reduction to one block (warp shuffles and shared memory) and a
/// GEMM with ragged tiles, on shapes that leave partial warps and tiles.
#[test]
fn block_reductions_and_tiled_gemm_agree_on_ragged_shapes() {
    let module = kiln_ir::parse_module(
        "func f(a: f32[37, 45], b: f32[45, 19]) -> (f32[37, 19], f32[], f32[]) {
  %0: f32[37, 45] = input 0
  %1: f32[45, 19] = input 1
  %2: f32[37, 19] = matmul %0, %1
  %3: f32[] = reduce_sum %0 axes=[0, 1] keepdims=false
  %4: f32[] = reduce_max %2 axes=[0, 1] keepdims=false
  return %2, %3, %4
}
",
    )
    .unwrap();
    let plan = emulate_against_the_interpreter(&module);
    let out = emit_ptx(&plan, Sm::parse("sm_90").unwrap()).unwrap();
    assert!(out.ptx.contains("shfl.sync.down"), "the reduction shuffles");
    assert!(out.ptx.contains(".shared"), "the GEMM and the reduction stage in shared memory");
    assert!(out.ptx.contains("bar.sync"), "and wait at barriers");
}

/// Rows long enough for a warp each (softmax over rows of 45, column sums
/// over 70 rows): lanes share each row, partials meet by butterfly shuffles.
#[test]
fn warp_per_row_reductions_agree() {
    let module = kiln_ir::parse_module(
        "func f(x: f32[37, 45], y: f32[70, 9]) -> (f32[37, 45], f32[9]) {
  %0: f32[37, 45] = input 0
  %1: f32[70, 9] = input 1
  %2: f32[37, 1] = reduce_max %0 axes=[1] keepdims=true
  %3: f32[37, 45] = broadcast %2
  %4: f32[37, 45] = sub %0, %3
  %5: f32[37, 45] = exp %4
  %6: f32[37, 1] = reduce_sum %5 axes=[1] keepdims=true
  %7: f32[37, 45] = broadcast %6
  %8: f32[37, 45] = div %5, %7
  %9: f32[9] = reduce_sum %1 axes=[0] keepdims=false
  return %8, %9
}
",
    )
    .unwrap();
    let plan = emulate_against_the_interpreter(&module);
    let out = emit_ptx(&plan, Sm::parse("sm_80").unwrap()).unwrap();
    assert!(out.ptx.contains("shfl.sync.bfly"), "rows reduce by butterfly shuffles:\n{}", out.ptx);
}

#[test]
fn the_ptx_of_a_small_fused_kernel() {
    let plan = parse_plan(
        "plan f {
  b0: f32[1000] input 0
  b1: f32[1000] input 1
  b2: f32[1000] output 0
  kernel k3_mul {
    for i0 in 0..1000 parallel vector 4 {
      b2[i0] = mul(max(add(mul(b0[i0], const(f32, 2.0)), b1[i0]), const(f32, 0.0)), b1[i0])
    }
  }
}",
    )
    .unwrap();
    let out = emit_ptx(&plan, Sm::parse("sm_80").unwrap()).unwrap();
    assert!(out.ptx.contains("ld.global.nc.v4.f32") && out.ptx.contains("st.global.v4.f32"), "16-byte accesses");
    insta::assert_snapshot!("fused_kernel_sm80_ptx", out.ptx);
    insta::assert_snapshot!("fused_kernel_sm80_manifest", out.manifest.to_json());
}

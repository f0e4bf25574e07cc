//! The PTX backend (feature `ptx`): every function of every example and
//! `ok` program lowered once to kernel IR with its sizes symbolic, compiled
//! to PTX for sm_80 and sm_90 and assembled by `ptxas`; the same module
//! emulated on the host (the LLVM IR built for this CPU, each GPU thread
//! called with its indices, blocks that synchronize run as OS threads) at
//! three batch sizes against the interpreter, tolerance 1e-4 relative to
//! max(1, |expected|) as for the CPU JIT.
//!
//! `ptxas` comes from the `nvidia-cuda-nvcc-cu12` wheel, which `.ci/run`
//! installs into a virtual environment and names in `KILN_PTXAS`; without
//! it these tests fail and say how to get it.
#![cfg(feature = "ptx")]

mod support;

use std::path::PathBuf;
use std::process::Command;

use kiln_codegen::nvptx::{PtxError, Sm, emit_ptx, emulate_plan, with_emulator};
use kiln_ir::interp::{EvalOptions, Tensor, evaluate};
use kiln_ir::kernel::{Plan, execute_with, parse_plan};
use kiln_ir::{Bindings, Module};
use support::{BATCH, bindings_at, bindings_for, compare, inputs_at, inputs_for, with_step};

const TOLERANCE: f64 = 1e-4;

/// Programs assembled only: emulating their every kernel at three sizes
/// takes longer than CI allows (over 9 minutes for these two).
const ASSEMBLED_ONLY: [&str; 2] = ["examples/batchnorm_lenet.kiln", "tests/filetests/ok/blocks_and_state.kiln"];

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

/// The plan of `function`, its sizes symbolic, the test size its hint.
fn plan_of(module: &Module, function: &str) -> Plan {
    kiln_passes::compile_plan(module, function, &bindings_for(module, function))
        .unwrap_or_else(|e| panic!("{function}: {e}"))
}

/// Runs the symbolic `plan`'s module, emulated, at `bindings` on `inputs`.
fn emulate(
    plan: &Plan,
    bindings: &Bindings,
    inputs: &[Tensor],
    params: &kiln_ir::interp::Params,
) -> Result<Vec<kiln_ir::kernel::Storage>, String> {
    execute_with(plan, bindings, inputs, params, |_, buffers| emulate_plan(plan, bindings, buffers))
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
    for path in PROGRAMS.into_iter().chain(ASSEMBLED_ONLY) {
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
                println!(
                    "{path} {}: {} kernels, {} entries assembled for {sm}",
                    f.name,
                    plan.kernels.len(),
                    entries.len()
                );
            }
        }
    }
}

/// The modern networks (every function, training steps included) lower
/// to PTX that ptxas assembles for sm_80.
#[test]
fn the_modern_cnns_assemble() {
    let ptxas = ptxas();
    let sm = Sm::parse("sm_80").unwrap();
    for path in [
        "examples/resnet.kiln",
        "examples/densenet.kiln",
        "examples/googlenet.kiln",
        "examples/vgg.kiln",
        "examples/nin.kiln",
        "examples/alexnet.kiln",
    ] {
        let module = with_step(path);
        for f in &module.functions {
            let plan = plan_of(&module, &f.name);
            let out = emit_ptx(&plan, sm).unwrap_or_else(|e| panic!("{path} {}: {e}", f.name));
            assemble(&ptxas, &out.ptx, sm, &format!("{path} {}", f.name));
        }
    }
}

/// Each function's one module, emulated at the hint (3) and at 1 and 8
/// (neither congruent to the hint modulo 4), against the interpreter.
#[test]
fn emulated_launches_agree_with_the_interpreter_at_three_sizes() {
    let mut symbolic = 0;
    for path in PROGRAMS {
        let module = with_step(path);
        for f in &module.functions {
            let plan = plan_of(&module, &f.name);
            let params = kiln_ir::initialize_params(&module, 1);
            let sizes: &[u64] = if plan.symbols.is_empty() { &[BATCH] } else { &[BATCH, 1, 8] };
            // One module, built once, run at every size.
            with_emulator(&plan, |run| {
                for &n in sizes {
                    let inputs = inputs_at(&module, &f.name, n);
                    let expected = evaluate(&module, &f.name, &inputs, &params, EvalOptions::default()).unwrap();
                    let bindings = bindings_at(&module, &f.name, n);
                    let emulated = execute_with(&plan, &bindings, &inputs, &params, |_, b| run(&bindings, b))
                        .unwrap_or_else(|e| panic!("{path} {} at N = {n}: {e}", f.name));
                    compare(&f.name, &format!("PTX emulation at N = {n}"), &emulated, &expected, TOLERANCE, "");
                }
            })
            .unwrap_or_else(|e| panic!("{path} {}: {e}", f.name));
            symbolic += usize::from(!plan.symbols.is_empty());
        }
    }
    assert!(symbolic >= 20, "only {symbolic} functions have a symbol");
}

/// A module refuses sizes below its symbols' least values and buffers of
/// the wrong length: an error, not a wrong answer.
#[test]
fn a_module_refuses_sizes_it_is_not_valid_for() {
    let module = with_step("examples/mlp.kiln");
    let plan = plan_of(&module, "forward");
    let mut buffers: Vec<kiln_ir::kernel::Storage> =
        plan.buffers.iter().map(|b| kiln_ir::kernel::Storage::zeros(b.dtype, 0)).collect();
    let zero = bindings_at(&module, "forward", 0);
    let e = emulate_plan(&plan, &zero, &mut buffers).unwrap_err();
    assert!(e.contains("size N = 0 is below its least value 1"), "{e}");
    let e = emulate_plan(&plan, &bindings_at(&module, "forward", 4), &mut buffers).unwrap_err();
    assert!(e.contains("buffer b0 has 0 elements, the plan 784*N"), "{e}");
}

/// Two symbolic dimensions: the sizes are polynomials in both, and the
/// module agrees with the interpreter at sizes of every residue; four
/// symbols are as fine.
#[test]
fn a_function_of_several_symbols_serves_every_size_of_each() {
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
    let bind = |n: u64, t: u64| -> Bindings {
        [("N", n), ("T", t)].into_iter().map(|(s, v)| (kiln_ir::Symbol::new(s), v)).collect()
    };
    let plan = kiln_passes::compile_plan(&module, "f", &bind(3, 5)).unwrap();
    let out = emit_ptx(&plan, Sm::parse("sm_80").unwrap()).unwrap();
    let m = &out.manifest.0;
    assert_eq!(m["buffers"][0]["elements"], "6*N*T", "{}", out.manifest.to_json());
    assert_eq!(m["symbols"][1]["name"], "T");
    for (n, t) in [(3, 5), (7, 9), (1, 2), (4, 12)] {
        let inputs = float_inputs(&[vec![n, t, 6], vec![6, 5]]);
        let params = kiln_ir::interp::Params::new();
        let expected = evaluate(&module, "f", &inputs, &params, EvalOptions::default()).unwrap();
        let emulated = emulate(&plan, &bind(n, t), &inputs, &params).unwrap();
        compare("f", &format!("PTX emulation at N = {n}, T = {t}"), &emulated, &expected, TOLERANCE, "");
    }
    let four = kiln_ir::parse_module(
        "func f(a: f32[A, B, C, D]) -> (f32[A, B, C, D]) {
  %0: f32[A, B, C, D] = input 0
  %1: f32[A, B, C, D] = exp %0
  return %1
}
",
    )
    .unwrap();
    let at = |v: u64| -> Bindings { ["A", "B", "C", "D"].iter().map(|s| (kiln_ir::Symbol::new(*s), v)).collect() };
    let plan = kiln_passes::compile_plan(&four, "f", &at(2)).unwrap();
    for v in [1, 3] {
        let inputs = float_inputs(&[vec![v, v, v, v]]);
        let params = kiln_ir::interp::Params::new();
        let expected = evaluate(&four, "f", &inputs, &params, EvalOptions::default()).unwrap();
        compare("f", "four symbols", &emulate(&plan, &at(v), &inputs, &params).unwrap(), &expected, TOLERANCE, "");
    }
    let bind = |_: &kiln_ir::Function| -> Result<Bindings, kiln::Error> { Ok(at(2)) };
    let emitted = kiln::ptx::emit(&four, &["f".to_string()], &bind, "sm_80", None).unwrap();
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

/// The manifest states sizes as the kernel IR's expressions of N, with
/// their values at the hint.
#[test]
fn the_manifest_gives_sizes_as_expressions_of_the_symbols() {
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
    let bindings: Bindings = [(kiln_ir::Symbol::new("N"), 64)].into_iter().collect();
    let plan = kiln_passes::compile_plan(&module, "f", &bindings).unwrap();
    let out = emit_ptx(&plan, Sm::parse("sm_80").unwrap()).unwrap();
    let m = &out.manifest.0;
    assert_eq!(m["symbols"][0]["at_least"], 1);
    assert_eq!(m["symbols"][0]["hint"], 64);
    assert_eq!(m["buffers"][0]["elements"], "10*N");
    assert_eq!(m["buffers"][0]["elements_at_hint"], 640);
    assert_eq!(m["buffers"][0]["bytes"], "40*N");
    let gemm = &m["launches"][0];
    assert_eq!(gemm["threads"][1], "N");
    assert_eq!(gemm["grid"][1], "max(ceil((N)/16), 1)");
    assert_eq!(gemm["grid_at_hint"][1], 4);
    assert_eq!(gemm["args"].as_array().unwrap().last().unwrap(), "N");
    insta::assert_snapshot!("symbolic_manifest", out.manifest.to_json());
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
    assert!(emulate_plan(&plan, &Bindings::new(), &mut buffers).unwrap_err().contains("exp on f64"));
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
    let e = emulate(&plan, &Bindings::new(), &inputs, &kiln_ir::interp::Params::new()).unwrap_err();
    assert!(e.contains("out of range"), "{e}");
}

/// Lowers `f` of `module`, emulates it and compares it with the interpreter.
fn emulate_against_the_interpreter(module: &Module) -> kiln_ir::kernel::Plan {
    let plan = plan_of(module, "f");
    let inputs = inputs_for(module, "f");
    let params = kiln_ir::interp::Params::new();
    let expected = evaluate(module, "f", &inputs, &params, EvalOptions::default()).unwrap();
    let emulated = emulate(&plan, &Bindings::new(), &inputs, &params).unwrap();
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

//! Differential tests of the lowering to kernel IR and of the Cranelift JIT:
//! every function of every example and `ok` program (training steps
//! included), lowered one kernel per op, run by the kernel IR executor and
//! compiled to machine code, against the graph interpreter. Tolerance: 1e-5
//! relative to max(1, |expected|) for the executor (summation order only),
//! 1e-4 for the JIT (which also accumulates f32 sums in f32).

mod support;

use kiln_ir::interp::{EvalOptions, Tensor, evaluate};
use kiln_ir::kernel::{Storage, execute};
use kiln_ir::{Bindings, DType, Module, Symbol};
use kiln_passes::{CompileOptions, ConvLowering, GemmLowering, LowerOptions};
use ndarray::{ArrayD, IxDyn};
use support::{bindings_for, compare, inputs_for, values, with_step};

const TOLERANCE: f64 = 1e-5;
const JIT_TOLERANCE: f64 = 1e-4;

/// Lowers and runs `function`, compares with the interpreter; returns the
/// number of kernels.
fn check(module: &Module, function: &str) -> usize {
    check_with(module, function, CompileOptions::default())
}

/// The default pipeline with other lowering choices.
fn lowering(lower: LowerOptions) -> CompileOptions {
    CompileOptions { lower, ..CompileOptions::default() }
}

/// [`check`] with explicit pipeline choices.
fn check_with(module: &Module, function: &str, options: CompileOptions) -> usize {
    let plan = kiln_passes::compile(module, function, &bindings_for(module, function), &options)
        .unwrap_or_else(|e| panic!("{function}: {e}"))
        .plan;
    let text = plan.to_string();
    assert_eq!(kiln_ir::kernel::parse_plan(&text).as_ref(), Ok(&plan), "the plan's text round-trips");
    let params = kiln_ir::initialize_params(module, 1);
    // The plan was made at the hint (BATCH); it must hold at other sizes
    // too, one of them not congruent to the hint modulo 4.
    let sizes: &[u64] = if plan.symbols.is_empty() { &[support::BATCH] } else { &[support::BATCH, 1, 8] };
    for &size in sizes {
        let inputs = support::inputs_at(module, function, size);
        let bindings = support::bindings_at(module, function, size);
        let expected = evaluate(module, function, &inputs, &params, EvalOptions::default()).unwrap();
        let what = |backend: &str| format!("{backend} at size {size}");
        let executed =
            execute(&plan, &bindings, &inputs, &params).unwrap_or_else(|e| panic!("{function}: {e}\n{text}"));
        compare(function, &what("executor"), &executed, &expected, TOLERANCE, &text);
        let jitted = run_jit(&plan, &bindings, &inputs, &params).unwrap_or_else(|e| panic!("{function}: {e}\n{text}"));
        compare(function, &what("JIT"), &jitted, &expected, JIT_TOLERANCE, &text);
    }
    plan.kernels.len()
}

/// Compiles the plan with Cranelift and runs it on an arena whose bytes all
/// start as 0xff (NaN as a float), so that a kernel reading memory nothing
/// wrote gives a wrong answer instead of a lucky zero; runs it twice, as the
/// JIT reuses an arena across calls.
fn run_jit(
    plan: &kiln_ir::kernel::Plan,
    bindings: &Bindings,
    inputs: &[Tensor],
    params: &kiln_ir::interp::Params,
) -> Result<Vec<Storage>, String> {
    let compiled = kiln_codegen::compile_plan(plan).map_err(|e| e.to_string())?;
    let mut arena = compiled.arena(bindings).map_err(|e| e.to_string())?;
    arena.fill(0xff);
    let first = kiln::jit::execute(&compiled, &mut arena, inputs, params, |_, _| Ok(())).map_err(|e| e.to_string())?;
    let second = kiln::jit::execute(&compiled, &mut arena, inputs, params, |_, _| Ok(())).map_err(|e| e.to_string())?;
    let same =
        |a: &Storage, b: &Storage| values(a).iter().zip(values(b)).all(|(x, y)| *x == y || (x.is_nan() && y.is_nan()));
    assert!(
        first.len() == second.len() && first.iter().zip(&second).all(|(a, b)| same(a, b)),
        "a second call on the same arena gives the same outputs"
    );
    Ok(second)
}

fn check_all(path: &str) {
    let module = with_step(path);
    for f in &module.functions {
        check(&module, &f.name);
    }
}

#[test]
fn examples_forward_loss_and_training_step() {
    for path in [
        "examples/linear_regression.kiln",
        "examples/softmax_regression.kiln",
        "examples/mlp.kiln",
        "examples/lenet.kiln",
        "examples/batchnorm_lenet.kiln",
        "examples/kaggle_house.kiln",
        "examples/rnn_lm.kiln",
        "examples/gru_lm.kiln",
        "examples/lstm_lm.kiln",
        "examples/deep_rnn.kiln",
    ] {
        check_all(path);
    }
}

/// Deep networks against the f64 interpreter: the executor and the JIT
/// compute in f32 through tens of layers (batch norm divides by the batch's
/// spread, which amplifies rounding), so each is held to 1e-3 of the exact
/// value, relative to max(1, |value|), at a batch of 3 and of 1.
fn check_deep(module: &Module, function: &str) {
    const DEEP_TOLERANCE: f64 = 1e-3;
    let plan = kiln_passes::compile(module, function, &bindings_for(module, function), &CompileOptions::default())
        .unwrap_or_else(|e| panic!("{function}: {e}"))
        .plan;
    let params = kiln_ir::initialize_params(module, 1);
    let options = EvalOptions { precision: kiln_ir::interp::Precision::F64 };
    for size in [support::BATCH, 1] {
        let inputs = support::inputs_at(module, function, size);
        let bindings = support::bindings_at(module, function, size);
        let expected = evaluate(module, function, &inputs, &params, options).unwrap();
        let what = |backend: &str| format!("{backend} at size {size}");
        let executed = execute(&plan, &bindings, &inputs, &params).unwrap_or_else(|e| panic!("{function}: {e}"));
        compare(function, &what("executor"), &executed, &expected, DEEP_TOLERANCE, "");
        let jitted = run_jit(&plan, &bindings, &inputs, &params).unwrap_or_else(|e| panic!("{function}: {e}"));
        compare(function, &what("JIT"), &jitted, &expected, DEEP_TOLERANCE, "");
    }
}

/// The book's modern convolutional networks, at the smallest input size
/// each takes (`--set size=...`): the training step and the forward pass
/// compiled agree with the interpreter at several batch sizes.
#[test]
fn modern_cnns_agree_with_the_interpreter() {
    for (path, size) in [
        ("examples/resnet.kiln", "28"),
        ("examples/densenet.kiln", "64"),
        ("examples/googlenet.kiln", "32"),
        ("examples/vgg.kiln", "32"),
        ("examples/nin.kiln", "67"),
        ("examples/alexnet.kiln", "67"),
    ] {
        let start = std::time::Instant::now();
        let module = support::with_step_set(path, &[("size", size)]);
        for function in ["forward", "train_step"] {
            check_deep(&module, function);
        }
        eprintln!("{path} at {size}: {:.1} s", start.elapsed().as_secs_f64());
    }
}

/// The encoder-decoder (two-layer GRUs, embeddings, dropout, the masked
/// loss), at states of 16: the training step and the forward pass compiled
/// agree with the interpreter.
#[test]
fn seq2seq_agrees_with_the_interpreter() {
    let module = support::with_step_set("examples/seq2seq.kiln", &[("embed", "16"), ("hiddens", "16")]);
    for function in ["forward", "train_step"] {
        check_deep(&module, function);
    }
}

/// Additive attention (masked softmax, batched products) and the
/// Transformer (multi-head attention on [N, heads, steps, d], layer norm,
/// positional encoding) at reduced sizes: compiled against the interpreter.
#[test]
fn attention_models_agree_with_the_interpreter() {
    let bahdanau = support::with_step_set("examples/bahdanau.kiln", &[("embed", "16"), ("hiddens", "16")]);
    let transformer =
        support::with_step_set("examples/transformer.kiln", &[("hiddens", "16"), ("inner", "8"), ("heads", "2")]);
    for module in [&bahdanau, &transformer] {
        for function in ["forward", "train_step"] {
            check_deep(module, function);
        }
    }
}

#[test]
fn the_ok_corpus() {
    for path in [
        "tests/filetests/ok/features.kiln",
        "tests/filetests/ok/lenet.kiln",
        "tests/filetests/ok/gru_unrolled.kiln",
        "tests/filetests/ok/adam_training.kiln",
        "tests/filetests/ok/uses_file.kiln",
        "tests/filetests/ok/blocks_and_state.kiln",
    ] {
        check_all(path);
    }
}

#[test]
fn ops_the_language_does_not_reach_directly() {
    let text = "func f(t: f32[4, 3], i: i32[2, 2], a: i64[2, 3], b: i64[3, 2], m: f32[2, 5]) -> (f32[2, 2, 3], f32[4, 3], i64[2, 2], f32[2, 3], f32[2, 9], bool[2, 5], f32[2, 8]) {
  %0: f32[4, 3] = input 0
  %1: i32[2, 2] = input 1
  %2: f32[2, 2, 3] = gather %0, %1 axis=0
  %3: f32[2, 2, 3] = const 1.5
  %4: i32[4] = reshape %1
  %5: f32[4, 3] = reshape %2
  %6: f32[4, 3] = scatter_add %0, %4, %5 axis=0
  %7: i64[2, 3] = input 2
  %8: i64[3, 2] = input 3
  %9: i64[2, 2] = matmul %7, %8
  %10: f32[2, 5] = input 4
  %11: f32[2, 3] = slice %10 axis=1 start=0 stop=5 step=2
  %12: f32[2, 9] = pad %10 padding=[(0, 0), (3, 1)]
  %13: bool[2, 5] = gt %10, %10
  %14: f32[2, 8] = concat %10, %11 axis=1
  %15: f32[2, 8] = stop_gradient %14
  return %2, %6, %9, %11, %12, %13, %15
}
";
    let module = kiln_ir::parse_module(text).unwrap();
    check(&module, "f");
}

/// Reductions along a contiguous axis long enough for the register-blocked
/// f32x4 loop (16 elements per iteration) plus a scalar tail: sums, maxima
/// (with a NaN and infinities in the input) and a 1-D convolution whose
/// window is a sum of products (fused multiply-adds).
#[test]
fn widened_reductions_agree() {
    let text =
        "func f(x: f32[3, 53], w: f32[2, 1, 19], s: f32[1, 1, 40]) -> (f32[3], f32[3, 1], f32[], f32[1, 2, 22]) {
  %0: f32[3, 53] = input 0
  %1: f32[3] = reduce_sum %0 axes=[1] keepdims=false
  %2: f32[3, 1] = reduce_max %0 axes=[1] keepdims=true
  %3: f32[] = reduce_sum %0 axes=[0, 1] keepdims=false
  %4: f32[2, 1, 19] = input 1
  %5: f32[1, 1, 40] = input 2
  %6: f32[1, 2, 22] = conv %5, %4 stride=[1] padding=[(0, 0)] dilation=[1] groups=1
  return %1, %2, %3, %6
}
";
    let module = kiln_ir::parse_module(text).unwrap();
    let direct = lowering(LowerOptions { conv: ConvLowering::Direct, ..LowerOptions::default() });
    let plan = kiln_passes::compile(&module, "f", &Bindings::new(), &direct).unwrap().plan;
    let widened = plan.to_string().matches("vector 4 {\n        a").count();
    assert!(widened >= 3, "the reduction loops ask for four lanes:\n{plan}");
    let clif = kiln_codegen::clif_text(&plan).unwrap();
    let vector_kernels = clif.split("; kernel ").filter(|k| k.contains("f32x4")).count();
    assert!(vector_kernels >= 4, "every reduction kernel is widened:\n{clif}");
    check_with(&module, "f", direct);
    // Special values: the NaN row's sum and max are NaN, the others exact.
    let mut values: Vec<f32> = (0..3 * 53).map(|i| (i as f32 * 0.37).sin()).collect();
    values[20] = f32::NAN;
    values[53 + 40] = f32::INFINITY;
    values[106 + 7] = f32::NEG_INFINITY;
    let inputs = vec![
        Tensor::from_f32(&[3, 53], &values),
        Tensor::from_f32(&[2, 1, 19], &[0.5; 38]),
        Tensor::from_f32(&[1, 1, 40], &[1.0; 40]),
    ];
    let params = kiln_ir::interp::Params::new();
    let expected = evaluate(&module, "f", &inputs, &params, EvalOptions::default()).unwrap();
    let jitted = run_jit(&plan, &Bindings::new(), &inputs, &params).unwrap();
    compare("f", "JIT", &jitted, &expected, JIT_TOLERANCE, &plan.to_string());
}

/// Every way of lowering a convolution, and both of its transpose, on
/// strides, padding, dilation, one and two spatial axes, several channels,
/// and the convolutions the gradients of a convolution are made of
/// (LeNet's training step).
#[test]
fn both_convolution_lowerings_agree() {
    let convs = [
        (
            "f32[2, 3, 9, 8]",
            "f32[4, 3, 3, 2]",
            "f32[2, 4, 7, 7]",
            "stride=[1, 1] padding=[(0, 0), (0, 0)] dilation=[1, 1]",
        ),
        (
            "f32[2, 3, 9, 8]",
            "f32[4, 3, 3, 2]",
            "f32[2, 4, 5, 5]",
            "stride=[2, 2] padding=[(1, 1), (2, 0)] dilation=[1, 1]",
        ),
        (
            "f32[1, 2, 10, 10]",
            "f32[3, 2, 3, 3]",
            "f32[1, 3, 6, 6]",
            "stride=[1, 1] padding=[(0, 0), (0, 0)] dilation=[2, 2]",
        ),
        ("f32[3, 2, 17]", "f32[5, 2, 4]", "f32[3, 5, 9]", "stride=[2] padding=[(1, 2)] dilation=[1]"),
    ];
    for (x, w, o, attrs) in convs {
        let text = format!(
            "func f(x: {x}, w: {w}) -> ({o}) {{\n  %0: {x} = input 0\n  %1: {w} = input 1\n  %2: {o} = conv %0, %1 {attrs} groups=1\n  return %2\n}}\n"
        );
        let module = kiln_ir::parse_module(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        for conv in [ConvLowering::Direct, ConvLowering::Im2col, ConvLowering::Im2row, ConvLowering::Auto] {
            check_with(&module, "f", lowering(LowerOptions { conv, ..LowerOptions::default() }));
        }
        // Its transpose (the input gradient): GEMM and col2im, or the
        // products added in place.
        let dims: Vec<&str> = x.trim_start_matches("f32[").trim_end_matches(']').split(", ").collect();
        let size = dims[2..].join(", ");
        let text = format!(
            "func t(g: {o}, w: {w}) -> ({x}) {{\n  %0: {o} = input 0\n  %1: {w} = input 1\n  %2: {x} = conv_transpose %0, %1 {attrs} groups=1 size=[{size}]\n  return %2\n}}\n"
        );
        let module = kiln_ir::parse_module(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        for conv in [ConvLowering::Direct, ConvLowering::Auto] {
            check_with(&module, "t", lowering(LowerOptions { conv, ..LowerOptions::default() }));
        }
    }
    let lenet = with_step("examples/lenet.kiln");
    for f in &lenet.functions {
        check_with(&lenet, &f.name, lowering(LowerOptions { conv: ConvLowering::Direct, ..LowerOptions::default() }));
    }
}

/// Matrix products of transposed operands read them in place (no permute
/// kernel), batched or not, and agree with the interpreter; a permute that
/// something else also reads is still materialized.
#[test]
fn transposed_operands_are_read_in_place() {
    let text =
        "func f(a: f32[2, 5, 3], b: f32[2, 5, 4], c: f32[4, 6]) -> (f32[2, 3, 4], f32[2, 4, 3], f32[6, 6], f32[4, 6]) {
  %0: f32[2, 5, 3] = input 0
  %1: f32[2, 5, 4] = input 1
  %2: f32[2, 3, 5] = permute %0 perm=[0, 2, 1]
  %3: f32[2, 3, 4] = matmul %2, %1
  %4: f32[2, 4, 5] = permute %1 perm=[0, 2, 1]
  %5: f32[2, 4, 3] = matmul %4, %0
  %6: f32[4, 6] = input 2
  %7: f32[6, 4] = permute %6 perm=[1, 0]
  %8: f32[6, 6] = matmul %7, %6
  %9: f32[4, 6] = permute %7 perm=[1, 0]
  return %3, %5, %8, %9
}
";
    let module = kiln_ir::parse_module(text).unwrap();
    let unsimplified = CompileOptions { simplify: false, ..CompileOptions::default() };
    let plan = kiln_passes::compile(&module, "f", &Bindings::new(), &unsimplified).unwrap().plan;
    let text = plan.to_string();
    assert_eq!(text.matches("_permute {").count(), 2, "only %7 (also read by %9) and %9 are kernels:\n{text}");
    assert!(text.contains("a=b0[0, 1, 15, 3]"), "a is read transposed:\n{text}");
    // Simplified, %9 = permute(permute(%6)) is %6 itself, so %7 is read by
    // the product only and no permute is left.
    let plan = kiln_passes::compile_plan(&module, "f", &Bindings::new()).unwrap().to_string();
    assert_eq!(plan.matches("_permute {").count(), 0, "no permute is left:\n{plan}");
    check(&module, "f");
    let step = with_step("examples/mlp.kiln");
    let mut n = Bindings::new();
    n.insert(Symbol::new("N"), 8);
    let plan = kiln_passes::compile_plan(&step, "train_step", &n).unwrap().to_string();
    assert!(!plan.contains("_permute {"), "the MLP step transposes nothing:\n{plan}");
}

/// Matrix products as loop nests (what ahead-of-time libraries use, having
/// no runtime GEMM to call): every example's functions, convolutions
/// through im2col, and transposed operands.
#[test]
fn gemm_as_loops_agrees() {
    let loops = lowering(LowerOptions { gemm: GemmLowering::Loops, ..LowerOptions::default() });
    for path in ["examples/softmax_regression.kiln", "examples/mlp.kiln", "examples/lenet.kiln"] {
        let module = with_step(path);
        for f in &module.functions {
            check_with(&module, &f.name, loops.clone());
        }
    }
    let text = "func f(a: f32[2, 5, 3], b: f32[2, 5, 7]) -> (f32[2, 3, 7]) {
  %0: f32[2, 5, 3] = input 0
  %1: f32[2, 5, 7] = input 1
  %2: f32[2, 3, 5] = permute %0 perm=[0, 2, 1]
  %3: f32[2, 3, 7] = matmul %2, %1
  return %3
}
";
    let module = kiln_ir::parse_module(text).unwrap();
    let plan = kiln_passes::compile(&module, "f", &Bindings::new(), &loops).unwrap().plan;
    assert!(!plan.to_string().contains("gemm("), "no runtime call is left:\n{plan}");
    check_with(&module, "f", loops.clone());
}

/// Elementwise chains are one kernel, broadcasts are never materialized,
/// and producers are computed inside reductions; without fusion every op
/// is a kernel, and both agree with the interpreter.
#[test]
fn elementwise_fusion() {
    let text = "func f(x: f32[6, 37], b: f32[37]) -> (f32[6, 37], f32[6]) {
  %0: f32[6, 37] = input 0
  %1: f32[37] = input 1
  %2: f32[6, 37] = broadcast %1
  %3: f32[6, 37] = const 1.5
  %4: f32[6, 37] = mul %3, %0
  %5: f32[6, 37] = add %4, %2
  %6: f32[6, 37] = const 0.0
  %7: f32[6, 37] = max %5, %6
  %8: f32[6, 37] = neg %0
  %9: f32[6, 37] = exp %8
  %10: f32[6, 37] = const 1.0
  %11: f32[6, 37] = add %10, %9
  %12: f32[6, 37] = div %10, %11
  %13: f32[6, 37] = mul %7, %12
  %14: f32[6, 37] = exp %13
  %15: f32[6] = reduce_sum %14 axes=[1] keepdims=false
  return %13, %15
}
";
    let module = kiln_ir::parse_module(text).unwrap();
    let plan = kiln_passes::compile_plan(&module, "f", &Bindings::new()).unwrap();
    assert_eq!(plan.kernels.len(), 2, "the chain and the reduction with its exp:\n{plan}");
    check(&module, "f");
    // Unoptimized: neither simplified nor fused.
    let unfused = CompileOptions::unoptimized();
    assert_eq!(check_with(&module, "f", unfused.clone()), 14, "one kernel per op but the inputs");
    for path in ["examples/softmax_regression.kiln", "examples/mlp.kiln", "examples/lenet.kiln"] {
        let module = with_step(path);
        for f in &module.functions {
            check_with(&module, &f.name, unfused.clone());
        }
    }
}

/// The vectorized `exp` against the correctly rounded f32 of f64's `exp`:
/// within 2 ulp over a sweep of [-120, 100] (subnormal results within 2
/// units of the smallest subnormal), and exact on NaN, infinities and zero.
#[test]
fn vector_exp_is_within_two_ulp() {
    let mut xs: Vec<f32> = (0..220_000).map(|i| -120.0 + i as f32 * 0.001).collect();
    xs.extend([f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 0.0, -0.0, 1e-30, -1e-30, 88.72, 88.73, -103.9, -104.0]);
    let n = xs.len() - xs.len() % 4;
    xs.truncate(n);
    let text = format!(
        "func f(x: f32[{n}]) -> (f32[{n}]) {{\n  %0: f32[{n}] = input 0\n  %1: f32[{n}] = exp %0\n  return %1\n}}\n"
    );
    let module = kiln_ir::parse_module(&text).unwrap();
    let plan = kiln_passes::compile_plan(&module, "f", &Bindings::new()).unwrap();
    let inputs = vec![Tensor::from_f32(&[n], &xs)];
    let out = run_jit(&plan, &Bindings::new(), &inputs, &kiln_ir::interp::Params::new()).unwrap();
    let got = values(&out[0]);
    for (x, y) in xs.iter().zip(got) {
        let want = f64::from(*x).exp() as f32;
        let y = y as f32;
        if want.is_nan() {
            assert!(y.is_nan(), "exp({x}) = {y}, not NaN");
        } else if want == 0.0 || want.is_infinite() {
            assert_eq!(y, want, "exp({x})");
        } else if want < f32::MIN_POSITIVE {
            assert!((y - want).abs() <= 2.0 * 1.4e-45, "exp({x}) = {y:e}, want {want:e}");
        } else {
            let ulps = (y.to_bits() as i64 - want.to_bits() as i64).abs();
            assert!(ulps <= 2, "exp({x}) = {y:e}, want {want:e}: {ulps} ulp");
        }
    }
}

/// Selects widened to f32x4: conditions loaded as bools (moving along the
/// loop or broadcast across it) and every comparison computed as a lane
/// mask, with NaNs, on a length with a scalar tail.
#[test]
fn widened_selects_agree() {
    let mut ops = String::new();
    let mut outputs = vec!["%4".to_string(), "%7".to_string()];
    for (k, cmp) in ["eq", "ne", "lt", "le", "gt", "ge"].iter().enumerate() {
        let (c, r) = (8 + 2 * k, 9 + 2 * k);
        ops += &format!("  %{c}: bool[3, 37] = {cmp} %0, %1\n  %{r}: f32[3, 37] = select %{c}, %0, %1\n");
        outputs.push(format!("%{r}"));
    }
    let types = vec!["f32[3, 37]"; outputs.len()].join(", ");
    let text = format!(
        "func f(x: f32[3, 37], y: f32[3, 37], c: bool[3, 37], s: bool[3, 1]) -> ({types}) {{
  %0: f32[3, 37] = input 0
  %1: f32[3, 37] = input 1
  %2: bool[3, 37] = input 2
  %3: bool[3, 1] = input 3
  %4: f32[3, 37] = select %2, %0, %1
  %5: bool[3, 37] = broadcast %3
  %6: f32[3, 37] = neg %0
  %7: f32[3, 37] = select %5, %6, %1
{ops}  return {}
}}
",
        outputs.join(", ")
    );
    let module = kiln_ir::parse_module(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let plan = kiln_passes::compile_plan(&module, "f", &Bindings::new()).unwrap();
    let clif = kiln_codegen::clif_text(&plan).unwrap();
    assert_eq!(clif.matches("bitselect").count(), 8, "every select is widened:\n{clif}");
    let xs: Vec<f32> = (0..111).map(|i| if i % 13 == 0 { f32::NAN } else { (i as f32 * 0.7).sin() }).collect();
    let ys: Vec<f32> = (0..111).map(|i| if i % 17 == 0 { f32::NAN } else { (i as f32 * 0.3).cos() * 0.9 }).collect();
    let inputs = vec![
        Tensor::from_f32(&[3, 37], &xs),
        Tensor::from_f32(&[3, 37], &ys),
        Tensor::bool(ArrayD::from_shape_fn(IxDyn(&[3, 37]), |i| (i[0] + i[1]) % 3 == 0)),
        Tensor::bool(ArrayD::from_shape_fn(IxDyn(&[3, 1]), |i| i[0] == 1)),
    ];
    let params = kiln_ir::interp::Params::new();
    let expected = evaluate(&module, "f", &inputs, &params, EvalOptions::default()).unwrap();
    let jitted = run_jit(&plan, &Bindings::new(), &inputs, &params).unwrap();
    compare("f", "JIT", &jitted, &expected, 0.0, &plan.to_string());
}

#[test]
fn unbound_symbols_are_an_error() {
    let module = with_step("examples/mlp.kiln");
    let e = kiln_passes::compile_plan(&module, "forward", &Bindings::new()).unwrap_err();
    assert_eq!(e.to_string(), "symbol N has no value: give every symbolic dimension of the inputs a size hint");
    let mut b = Bindings::new();
    b.insert(Symbol::new("N"), 2);
    assert!(kiln_passes::compile_plan(&module, "backward", &b).is_err());
}

/// Kernels big enough to be split across threads give the same results.
#[test]
fn kernels_split_across_threads_agree() {
    let text = "func f(x: f32[N, 600]) -> (f32[N, 600], f32[N]) {
  %0: f32[N, 600] = input 0
  %1: f32[N, 600] = exp %0
  %2: f32[N, 600] = mul %1, %0
  %3: f32[N] = reduce_sum %2 axes=[1] keepdims=false
  return %2, %3
}
";
    let module = kiln_ir::parse_module(text).unwrap();
    let inputs = vec![Tensor::float(
        DType::F32,
        ArrayD::from_shape_fn(IxDyn(&[1024, 600]), |i| ((i[0] * 600 + i[1]) as f64 * 0.001).sin()),
    )];
    let params = kiln_ir::interp::Params::new();
    let mut bindings = Bindings::new();
    bindings.insert(Symbol::new("N"), 1024);
    let plan = kiln_passes::compile_plan(&module, "f", &bindings).unwrap();
    let expected = evaluate(&module, "f", &inputs, &params, EvalOptions::default()).unwrap();
    let jitted = run_jit(&plan, &bindings, &inputs, &params).unwrap();
    compare("f", "JIT, threaded", &jitted, &expected, JIT_TOLERANCE, &plan.to_string());
}

/// GEMM epilogues run by blocks of rows across threads: a product with a
/// bias added (4 threads, 101 rows: uneven blocks), one with a row maximum
/// (loops over rows), and one with `tanh` as a flat loop, against the
/// interpreter.
#[test]
fn gemm_epilogues_agree_by_row_blocks() {
    let text = "func f(x: f32[N, 300], w: f32[300, 200], b: f32[200], v: f32[200, 50], u: f32[200, 200]) -> (f32[N, 200], f32[N], f32[N, 200]) {
  %0: f32[N, 300] = input 0
  %1: f32[300, 200] = input 1
  %2: f32[200] = input 2
  %3: f32[200, 50] = input 3
  %4: f32[200, 200] = input 4
  %5: f32[N, 200] = matmul %0, %1
  %6: f32[N, 200] = broadcast %2
  %7: f32[N, 200] = add %5, %6
  %8: f32[N, 50] = matmul %7, %3
  %9: f32[N] = reduce_max %8 axes=[1] keepdims=false
  %10: f32[N, 200] = matmul %7, %4
  %11: f32[N, 200] = tanh %10
  return %7, %9, %11
}
";
    let module = kiln_ir::parse_module(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let wave = |d: &[usize], k: f64| {
        let n: usize = d.iter().product();
        let v = (0..n).map(|i| (i as f64 * k).sin()).collect();
        Tensor::float(DType::F32, ArrayD::from_shape_vec(IxDyn(d), v).unwrap())
    };
    let inputs = vec![
        wave(&[101, 300], 0.013),
        wave(&[300, 200], 0.007),
        wave(&[200], 0.3),
        wave(&[200, 50], 0.011),
        wave(&[200, 200], 0.005),
    ];
    let params = kiln_ir::interp::Params::new();
    let mut bindings = Bindings::new();
    bindings.insert(Symbol::new("N"), 101);
    let plan = kiln_passes::compile_plan(&module, "f", &bindings).unwrap();
    let merged: Vec<i64> = plan
        .kernels
        .iter()
        .filter_map(|k| kiln_ir::kernel::gemm_epilogue(k).and_then(|e| e.per_row.as_const()))
        .collect();
    assert_eq!(merged, [1, 1, 200], "two row epilogues and a flat one:\n{plan}");
    let expected = evaluate(&module, "f", &inputs, &params, EvalOptions::default()).unwrap();
    let pool = rayon::ThreadPoolBuilder::new().num_threads(4).build().unwrap();
    let jitted = pool.install(|| run_jit(&plan, &bindings, &inputs, &params)).unwrap();
    compare("f", "JIT, row blocks", &jitted, &expected, JIT_TOLERANCE, &plan.to_string());
    let executed = execute(&plan, &bindings, &inputs, &params).unwrap();
    compare("f", "executor", &executed, &expected, TOLERANCE, &plan.to_string());
}

/// Column reductions (a sum, a sum of products and a max over the rows of
/// each column, and an expression of the sum stored per column, as a bias
/// update is) run four columns in the four lanes: the same bits as the
/// scalar loop, within rounding of the interpreter, with NaNs, a ragged
/// column count (a scalar tail) and, on 4 threads, ranges of columns split
/// at any point.
#[test]
fn column_reductions_run_in_lanes() {
    let text = "func f(x: f32[R, 1003], b: f32[1003]) -> (f32[1003], f32[1003], f32[1003]) {
  %0: f32[R, 1003] = input 0
  %1: f32[1003] = input 1
  %2: f32[1003] = reduce_sum %0 axes=[0] keepdims=false
  %3: f32[1003] = const 0.1
  %4: f32[1003] = mul %2, %3
  %5: f32[1003] = sub %1, %4
  %6: f32[R, 1003] = mul %0, %0
  %7: f32[1003] = reduce_sum %6 axes=[0] keepdims=false
  %8: f32[1003] = reduce_max %0 axes=[0] keepdims=false
  return %5, %7, %8
}
";
    let module = kiln_ir::parse_module(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let params = kiln_ir::interp::Params::new();
    for rows in [1usize, 7, 300] {
        let x: Vec<f32> =
            (0..rows * 1003).map(|i| if i % 997 == 5 { f32::NAN } else { (i as f32 * 0.37).sin() }).collect();
        let b: Vec<f32> = (0..1003).map(|i| (i as f32 * 0.11).cos()).collect();
        let inputs = vec![Tensor::from_f32(&[rows, 1003], &x), Tensor::from_f32(&[1003], &b)];
        let mut bindings = Bindings::new();
        bindings.insert(Symbol::new("R"), rows as u64);
        let plan = kiln_passes::compile_plan(&module, "f", &bindings).unwrap();
        let clif = kiln_codegen::clif_text(&plan).unwrap();
        assert!(clif.contains("fadd.f32x4") && clif.contains("fmax.f32x4"), "columns in lanes:\n{plan}\n{clif}");
        let expected = evaluate(&module, "f", &inputs, &params, EvalOptions::default()).unwrap();
        let pool = rayon::ThreadPoolBuilder::new().num_threads(4).build().unwrap();
        let jitted = pool.install(|| run_jit(&plan, &bindings, &inputs, &params)).unwrap();
        compare("f", "JIT, columns in lanes", &jitted, &expected, JIT_TOLERANCE, &plan.to_string());
        let executed = execute(&plan, &bindings, &inputs, &params).unwrap();
        compare("f", "executor", &executed, &expected, TOLERANCE, &plan.to_string());
        // The same loops marked neither parallel nor vector run one column
        // at a time: the lanes give their bits exactly.
        let mut scalar = plan.clone();
        for kernel in &mut scalar.kernels {
            for s in &mut kernel.body {
                if let kiln_ir::kernel::KStmt::For { parallel, vector, .. } = s {
                    *parallel = false;
                    *vector = 1;
                }
            }
        }
        assert!(!kiln_codegen::clif_text(&scalar).unwrap().contains("fadd.f32x4"), "scalar:\n{scalar}");
        let one_at_a_time = run_jit(&scalar, &bindings, &inputs, &params).unwrap();
        for (k, (a, e)) in jitted.iter().zip(&one_at_a_time).enumerate() {
            let bits = |v: &Storage| {
                values(v).iter().map(|x| if x.is_nan() { u64::MAX } else { x.to_bits() }).collect::<Vec<_>>()
            };
            assert_eq!(bits(a), bits(e), "output {k} for {rows} rows: lanes and the scalar loop differ");
        }
    }
}

/// Widened max and min, of two arrays and against constants, exact against
/// the interpreter with NaNs (either side, both), infinities and zeros of
/// both signs, on a length with a scalar tail.
#[test]
fn widened_max_and_min_agree() {
    let text = "func f(x: f32[3, 37], y: f32[3, 37]) -> (f32[3, 37], f32[3, 37], f32[3, 37], f32[3, 37], f32[3, 37]) {
  %0: f32[3, 37] = input 0
  %1: f32[3, 37] = input 1
  %2: f32[3, 37] = max %0, %1
  %3: f32[3, 37] = min %1, %0
  %4: f32[3, 37] = const 0.25
  %5: f32[3, 37] = max %0, %4
  %6: f32[3, 37] = min %4, %1
  %7: f32[3, 37] = const -0.5
  %8: f32[3, 37] = max %7, %1
  return %2, %3, %5, %6, %8
}
";
    let module = kiln_ir::parse_module(text).unwrap();
    let plan = kiln_passes::compile_plan(&module, "f", &Bindings::new()).unwrap();
    let clif = kiln_codegen::clif_text(&plan).unwrap();
    assert_eq!(clif.matches("bitselect").count(), 5, "each widened max and min is compare-and-select:\n{clif}");
    let special = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 0.0, -0.0, 0.25, -0.5];
    let xs: Vec<f32> = (0..111).map(|i| if i % 5 == 0 { special[i / 5 % 7] } else { (i as f32 * 0.7).sin() }).collect();
    let ys: Vec<f32> =
        (0..111).map(|i| if i % 3 == 0 { special[i / 3 % 7] } else { (i as f32 * 0.3).cos() * 0.9 }).collect();
    let inputs = vec![Tensor::from_f32(&[3, 37], &xs), Tensor::from_f32(&[3, 37], &ys)];
    let params = kiln_ir::interp::Params::new();
    let expected = evaluate(&module, "f", &inputs, &params, EvalOptions::default()).unwrap();
    let jitted = run_jit(&plan, &Bindings::new(), &inputs, &params).unwrap();
    compare("f", "JIT", &jitted, &expected, 0.0, &plan.to_string());
}

/// Random bits of dtype i32 are computed four lanes at a time (32-bit
/// arithmetic, `random::bits31`): exact against the interpreter, scalar
/// tail included, under two keys and two streams, with the key's seeds
/// computed once per call, and a dropout-style mask recomputed in two
/// kernels agrees with itself.
#[test]
fn widened_random_bits_agree() {
    let text = "func f(x: f32[3, 37], key: i64[]) -> (f32[3, 37], f32[3, 37], i32[3, 37]) {
  %0: f32[3, 37] = input 0
  %1: i64[] = input 1
  %2: i32[3, 37] = random_bits %1 stream=0
  %3: f32[3, 37] = cast %2
  %4: i32[3, 37] = random_bits %1 stream=1
  %5: f32[3, 37] = cast %4
  %6: f32[3, 37] = const 4.656612873077393e-10
  %7: f32[3, 37] = mul %5, %6
  %8: f32[3, 37] = const 0.5
  %9: bool[3, 37] = ge %7, %8
  %10: f32[3, 37] = const 0.0
  %11: f32[3, 37] = select %9, %0, %10
  return %3, %11, %2
}
";
    let module = kiln_ir::parse_module(text).unwrap();
    let plan = kiln_passes::compile_plan(&module, "f", &Bindings::new()).unwrap();
    let clif = kiln_codegen::clif_text(&plan).unwrap();
    assert!(clif.contains("fcvt_from_sint.f32x4"), "random bits are widened:\n{clif}");
    // The key's seeds are computed once per kernel call, kept in a stack
    // slot, and loaded by the loops.
    assert!(clif.contains("explicit_slot 8") && clif.contains("stack_addr"), "seeds hoisted:\n{clif}");
    let params = kiln_ir::interp::Params::new();
    for key in [0i64, 123_456_789_012] {
        let x: Vec<f32> = (0..111).map(|i| i as f32 - 50.0).collect();
        let key = Tensor::int(DType::I64, ArrayD::from_elem(IxDyn(&[]), key));
        let inputs = vec![Tensor::from_f32(&[3, 37], &x), key];
        let expected = evaluate(&module, "f", &inputs, &params, EvalOptions::default()).unwrap();
        let jitted = run_jit(&plan, &Bindings::new(), &inputs, &params).unwrap();
        compare("f", "JIT", &jitted, &expected, 0.0, &plan.to_string());
    }
    check_all("examples/mlp.kiln");
}

/// Softmax cross-entropy, forward and backward, in at most six kernels:
/// between the softmax regression step's forward product and its weight
/// gradient product there are the row maxima (with the one-hot row sums as
/// a sibling), the sums of exponentials, the loss (with its mean as an
/// epilogue) and the gradient of the logits. The logits (the bias added,
/// an output of the step for the training accuracy) are the first
/// product's GEMM epilogue; the one-hot rows are gathered from the identity
/// (two kernels: a label out of range is an error), so six kernels lie
/// between the products.
#[test]
fn softmax_cross_entropy_is_four_kernels() {
    let step = with_step("examples/softmax_regression.kiln");
    let mut n = Bindings::new();
    n.insert(Symbol::new("N"), 256);
    let plan = kiln_passes::compile_plan(&step, "train_step", &n).unwrap();
    let names: Vec<&str> = plan.kernels.iter().map(|k| k.name.as_str()).collect();
    let gemm = |k: &kiln_ir::kernel::Kernel| matches!(k.body.first(), Some(kiln_ir::kernel::KStmt::Call(_)));
    let products: Vec<usize> = (0..names.len()).filter(|&i| gemm(&plan.kernels[i])).collect();
    assert_eq!(products.len(), 2, "{names:?}");
    assert!(kiln_ir::kernel::gemm_epilogue(&plan.kernels[products[0]]).is_some(), "{}", plan);
    assert!(products[1] - products[0] - 1 <= 6, "cross-entropy kernels: {names:?}");
    check(&step, "train_step");
}

/// Every function of every example and `ok` program, simplified by
/// equality saturation, against the unsimplified function on the
/// interpreter (within `TOLERANCE`: rules only reassociate sums and fold
/// constants); the JIT runs the simplified graphs in every `check` above.
#[test]
fn simplified_graphs_agree_on_the_interpreter() {
    for path in [
        "examples/linear_regression.kiln",
        "examples/softmax_regression.kiln",
        "examples/mlp.kiln",
        "examples/lenet.kiln",
        "tests/filetests/ok/features.kiln",
        "tests/filetests/ok/gru_unrolled.kiln",
        "tests/filetests/ok/adam_training.kiln",
    ] {
        let module = with_step(path);
        let simplified = kiln_passes::simplify(&module);
        kiln_ir::verify_module(&simplified).unwrap_or_else(|e| panic!("{path}: {e:?}"));
        let params = kiln_ir::initialize_params(&module, 1);
        for f in &module.functions {
            let inputs = inputs_for(&module, &f.name);
            let expected = evaluate(&module, &f.name, &inputs, &params, EvalOptions::default()).unwrap();
            let got = evaluate(&simplified, &f.name, &inputs, &params, EvalOptions::default()).unwrap();
            for (k, (g, e)) in got.iter().zip(&expected).enumerate() {
                let error = g.max_relative_error(e).expect("same types");
                assert!(error <= TOLERANCE, "{path} {} output {k}: relative error {error}", f.name);
            }
        }
    }
}

/// The MLP training step: fusion and simplification cut its kernels more
/// than 4x, and every optimized plan agrees with the interpreter (above).
#[test]
fn the_mlp_step_has_few_kernels() {
    let step = with_step("examples/mlp.kiln");
    let mut n = Bindings::new();
    n.insert(Symbol::new("N"), 256);
    let unoptimized = CompileOptions::unoptimized();
    let before = kiln_passes::compile(&step, "train_step", &n, &unoptimized).unwrap().plan.kernels.len();
    let after = kiln_passes::compile_plan(&step, "train_step", &n).unwrap();
    assert!(after.kernels.len() * 4 <= before, "{before} -> {} kernels:\n{after}", after.kernels.len());
}

/// Every loop nest around one f32 store (elementwise kernels, and the
/// copies of pads, slices, permutes, concatenations, im2col and outputs)
/// asks for four lanes on its innermost loop when that has four or more
/// iterations. LeNet's training step has all of them; the JIT's results
/// are checked against the interpreter by `examples_forward_loss_and_training_step`.
#[test]
fn single_store_nests_ask_for_lanes() {
    use kiln_ir::kernel::{KStmt, Plan};
    fn innermost<'a>(stmts: &'a [KStmt], out: &mut Vec<&'a KStmt>) {
        for s in stmts {
            if let KStmt::For { body, .. } = s {
                match body.as_slice() {
                    [KStmt::Store { .. }] => out.push(s),
                    _ => innermost(body, out),
                }
            }
        }
    }
    let step = with_step("examples/lenet.kiln");
    let mut n = Bindings::new();
    n.insert(Symbol::new("N"), 4);
    let plan: Plan = kiln_passes::compile_plan(&step, "train_step", &n).unwrap();
    let mut loops = Vec::new();
    plan.kernels.iter().for_each(|k| innermost(&k.body, &mut loops));
    let f32_store = |s: &KStmt| match s {
        KStmt::For { body, .. } => matches!(&body[0], KStmt::Store { buffer, .. }
            if plan.buffer(*buffer).is_some_and(|b| b.dtype == DType::F32)),
        _ => false,
    };
    let eligible: Vec<_> = loops.into_iter().filter(|s| f32_store(s)).collect();
    assert!(eligible.len() >= 20, "LeNet's step has many copy and elementwise nests: {}", eligible.len());
    for s in eligible {
        let KStmt::For { extent, vector, .. } = s else { unreachable!() };
        let at_hint = extent.eval(&n).unwrap();
        assert_eq!(*vector, if at_hint >= 4 { 4 } else { 1 }, "{s:?}");
    }
}

/// Pooling windows with stride 1 (the gradient of an average pool) reduce
/// four neighbouring outputs in four lanes, through the window's nest of
/// loops, with the bits of one output at a time; with stride 2 the reads
/// are not contiguous and the loop stays scalar. Ragged widths (13, 11)
/// leave a scalar tail; max pools keep NaN.
#[test]
fn pooling_windows_run_in_lanes() {
    let text = "func f(x: f32[2, 3, 14, 15]) -> (f32[2, 3, 13, 13], f32[2, 3, 14, 11], f32[2, 3, 7, 7]) {
  %0: f32[2, 3, 14, 15] = input 0
  %1: f32[2, 3, 13, 13] = reduce_window_sum %0 window=[1, 1, 2, 3] stride=[1, 1, 1, 1] padding=[(0, 0), (0, 0), (0, 0), (0, 0)]
  %2: f32[2, 3, 14, 11] = reduce_window_max %0 window=[1, 1, 1, 5] stride=[1, 1, 1, 1] padding=[(0, 0), (0, 0), (0, 0), (0, 0)]
  %3: f32[2, 3, 7, 7] = reduce_window_sum %0 window=[1, 1, 2, 2] stride=[1, 1, 2, 2] padding=[(0, 0), (0, 0), (0, 0), (0, 0)]
  return %1, %2, %3
}
";
    let module = kiln_ir::parse_module(text).unwrap();
    let plan = kiln_passes::compile_plan(&module, "f", &Bindings::new()).unwrap();
    let plan_text = plan.to_string();
    assert_eq!(plan_text.matches("vector 4").count(), 2, "the stride-1 pools ask for lanes:\n{plan_text}");
    let clif = kiln_codegen::clif_text(&plan).unwrap();
    assert!(clif.contains("fadd.f32x4") && clif.contains("fmax.f32x4"), "windows in lanes:\n{plan_text}");
    let mut xs: Vec<f32> = (0..2 * 3 * 14 * 15).map(|i| ((i * 37) % 101) as f32 * 0.25 - 12.0).collect();
    xs[40] = f32::NAN;
    let inputs = vec![Tensor::from_f32(&[2, 3, 14, 15], &xs)];
    let params = kiln_ir::interp::Params::new();
    let expected = evaluate(&module, "f", &inputs, &params, EvalOptions::default()).unwrap();
    let jitted = run_jit(&plan, &Bindings::new(), &inputs, &params).unwrap();
    compare("f", "JIT, windows in lanes", &jitted, &expected, JIT_TOLERANCE, &plan_text);
    let mut scalar = plan.clone();
    fn no_lanes(stmts: &mut [kiln_ir::kernel::KStmt]) {
        for s in stmts {
            if let kiln_ir::kernel::KStmt::For { vector, body, .. } = s {
                *vector = 1;
                no_lanes(body);
            }
        }
    }
    scalar.kernels.iter_mut().for_each(|k| no_lanes(&mut k.body));
    let one_at_a_time = run_jit(&scalar, &Bindings::new(), &inputs, &params).unwrap();
    let bits =
        |v: &Storage| values(v).iter().map(|x| if x.is_nan() { u64::MAX } else { x.to_bits() }).collect::<Vec<_>>();
    for (k, (a, e)) in jitted.iter().zip(&one_at_a_time).enumerate() {
        assert_eq!(bits(a), bits(e), "output {k}: lanes and the scalar loop differ");
    }
}

/// A small product with a long `k` (a convolution's weight gradient) is
/// computed as partial products over fixed chunks of `k` shared by the
/// threads and added in chunk order: within the JIT's tolerance of the
/// interpreter, transposed operand included, and the same bits on one
/// thread as on several.
#[test]
fn long_small_products_split_along_k() {
    let (m, k, n) = (3, 40_000 + 7, 5);
    let text = format!(
        "func f(a: f32[{k}, {m}], b: f32[{k}, {n}]) -> (f32[{m}, {n}]) {{
  %0: f32[{k}, {m}] = input 0
  %1: f32[{k}, {n}] = input 1
  %2: f32[{m}, {k}] = permute %0 perm=[1, 0]
  %3: f32[{m}, {n}] = matmul %2, %1
  return %3
}}
"
    );
    let module = kiln_ir::parse_module(&text).unwrap();
    let plan = kiln_passes::compile_plan(&module, "f", &Bindings::new()).unwrap();
    let plan_text = plan.to_string();
    assert!(plan_text.contains(&format!("gemm(batch=1, m={m}, n={n}, k={k}")), "one product:\n{plan_text}");
    let inputs = vec![
        Tensor::from_f32(&[k, m], &(0..k * m).map(|i| ((i * 31) % 17) as f32 / 17.0 - 0.5).collect::<Vec<_>>()),
        Tensor::from_f32(&[k, n], &(0..k * n).map(|i| ((i * 13) % 23) as f32 / 23.0 - 0.4).collect::<Vec<_>>()),
    ];
    let params = kiln_ir::interp::Params::new();
    let expected = evaluate(&module, "f", &inputs, &params, EvalOptions::default()).unwrap();
    let jitted = run_jit(&plan, &Bindings::new(), &inputs, &params).unwrap();
    compare("f", "JIT, split along k", &jitted, &expected, JIT_TOLERANCE, &plan_text);
    let one_thread = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap()
        .install(|| run_jit(&plan, &Bindings::new(), &inputs, &params));
    let bits = |v: &[Storage]| v.iter().flat_map(values).map(f64::to_bits).collect::<Vec<_>>();
    assert_eq!(bits(&jitted), bits(&one_thread.unwrap()), "the same bits on one thread");
}

/// A plan with several kernels (or kernel parts) that split across threads
/// runs on one of rayon's workers when called from outside the pool; called
/// from a worker it runs there. Both give the same bits, and the same as
/// one thread, and agree with the interpreter: the MLP step, and LeNet's
/// forward pass, whose convolution and pad kernels run as several parts
/// (fill, copy, im2col, GEMM) that are each split across threads.
#[test]
fn plans_run_alike_inside_and_outside_the_thread_pool() {
    for (path, function, batch) in [("examples/mlp.kiln", "train_step", 256), ("examples/lenet.kiln", "forward", 64)] {
        let module = with_step(path);
        let mut n = Bindings::new();
        n.insert(Symbol::new("N"), batch);
        let plan = kiln_passes::compile_plan(&module, function, &n).unwrap();
        let inputs = support::inputs_at(&module, function, batch);
        let params = kiln_ir::initialize_params(&module, 1);
        // Compiled where it runs: compiled code is not shared between threads.
        let run = || {
            let compiled = kiln_codegen::compile_plan(&plan).unwrap();
            let mut arena = compiled.arena(&n).unwrap();
            kiln::jit::execute(&compiled, &mut arena, &inputs, &params, |_, _| Ok(())).unwrap()
        };
        let bits = |outputs: &[Storage]| outputs.iter().flat_map(values).map(f64::to_bits).collect::<Vec<_>>();
        let outputs = run();
        let outside = bits(&outputs);
        assert!(rayon::current_thread_index().is_none(), "the test thread is not a worker");
        let inside = rayon::scope(|_| bits(&run()));
        let one_thread = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap().install(|| bits(&run()));
        assert_eq!(outside, inside, "{path}: outside the pool and on a worker");
        assert_eq!(outside, one_thread, "{path}: and on one thread");
        let expected = evaluate(&module, function, &inputs, &params, EvalOptions::default()).unwrap();
        compare(function, "JIT", &outputs, &expected, JIT_TOLERANCE, &plan.to_string());
    }
}

mod random_graphs {
    //! Random graphs of primitives on `f32[4, 6]` values: the simplified
    //! graph on the interpreter and its optimized plan on the JIT against
    //! the graph as built, on the interpreter.

    use super::*;
    use kiln_ir::{BinaryOp, Function, InputDecl, Literal, NodeId, Op, ReduceKind, Shape, TensorType, UnaryOp};
    use proptest::prelude::*;

    /// One step of a random program: an op over earlier values (indices
    /// taken modulo the number of values so far).
    #[derive(Clone, Debug)]
    enum Step {
        Unary(u8, usize),
        Binary(u8, usize, usize),
        Constant(u8, usize),
        RowBroadcast(u8, usize),
        ReduceBack(bool, usize),
        ReshapeRoundTrip(usize),
        TransposeTwice(usize),
        NegNeg(usize),
        MatMul(usize),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            (0u8..5, any::<usize>()).prop_map(|(o, a)| Step::Unary(o, a)),
            (0u8..5, any::<usize>(), any::<usize>()).prop_map(|(o, a, b)| Step::Binary(o, a, b)),
            (0u8..6, any::<usize>()).prop_map(|(c, a)| Step::Constant(c, a)),
            (0u8..3, any::<usize>()).prop_map(|(o, a)| Step::RowBroadcast(o, a)),
            (any::<bool>(), any::<usize>()).prop_map(|(m, a)| Step::ReduceBack(m, a)),
            any::<usize>().prop_map(Step::ReshapeRoundTrip),
            any::<usize>().prop_map(Step::TransposeTwice),
            any::<usize>().prop_map(Step::NegNeg),
            any::<usize>().prop_map(Step::MatMul),
        ]
    }

    fn build(steps: &[Step]) -> Module {
        let f32s = |dims: &[u64]| TensorType::new(DType::F32, Shape::of(dims));
        let inputs = vec![
            InputDecl { name: "x".into(), ty: f32s(&[4, 6]) },
            InputDecl { name: "y".into(), ty: f32s(&[4, 6]) },
            InputDecl { name: "r".into(), ty: f32s(&[6]) },
            InputDecl { name: "w".into(), ty: f32s(&[6, 6]) },
        ];
        let mut f = Function::new("f", inputs);
        let decls = f.inputs.clone();
        let ctx = kiln_ir::TypeContext { inputs: &decls, params: &[] };
        let add = |f: &mut Function, op: Op, args: &[NodeId]| f.graph.add(&ctx, op, args).unwrap();
        let ins: Vec<NodeId> = (0..4).map(|i| add(&mut f, Op::Input { index: i }, &[])).collect();
        let mut values = vec![ins[0], ins[1]];
        let full = Shape::of(&[4, 6]);
        for s in steps {
            let pick = |k: usize| values[k % values.len()];
            let v = match *s {
                Step::Unary(o, a) => {
                    let u = [UnaryOp::Neg, UnaryOp::Tanh, UnaryOp::Abs, UnaryOp::Sin, UnaryOp::Exp][o as usize];
                    let x = pick(a);
                    let x = if u == UnaryOp::Exp { add(&mut f, Op::Unary(UnaryOp::Tanh), &[x]) } else { x };
                    add(&mut f, Op::Unary(u), &[x])
                }
                Step::Binary(o, a, b) => {
                    let op = [BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Max, BinaryOp::Min][o as usize];
                    add(&mut f, Op::Binary(op), &[pick(a), pick(b)])
                }
                Step::Constant(c, a) => {
                    let (value, op) = [
                        (0.0, BinaryOp::Add),
                        (1.0, BinaryOp::Mul),
                        (0.8, BinaryOp::Div),
                        (1.0, BinaryOp::Div),
                        (0.0, BinaryOp::Sub),
                        (2.5, BinaryOp::Mul),
                    ][c as usize];
                    let k = add(
                        &mut f,
                        Op::Constant { value: Literal::float(value), dtype: DType::F32, shape: full.clone() },
                        &[],
                    );
                    add(&mut f, Op::Binary(op), &[pick(a), k])
                }
                Step::RowBroadcast(o, a) => {
                    let row = add(&mut f, Op::Broadcast { shape: full.clone() }, &[ins[2]]);
                    let row = if o == 2 { add(&mut f, Op::Unary(UnaryOp::Neg), &[row]) } else { row };
                    let op = [BinaryOp::Add, BinaryOp::Mul, BinaryOp::Sub][o as usize];
                    add(&mut f, Op::Binary(op), &[pick(a), row])
                }
                Step::ReduceBack(max, a) => {
                    let kind = if max { ReduceKind::Max } else { ReduceKind::Sum };
                    let r = add(&mut f, Op::Reduce { kind, axes: vec![1], keepdims: true }, &[pick(a)]);
                    let r = add(&mut f, Op::Reduce { kind, axes: vec![], keepdims: false }, &[r]);
                    add(&mut f, Op::Broadcast { shape: full.clone() }, &[r])
                }
                Step::ReshapeRoundTrip(a) => {
                    let flat = add(&mut f, Op::Reshape { shape: Shape::of(&[24]) }, &[pick(a)]);
                    let flat = add(&mut f, Op::Unary(UnaryOp::Tanh), &[flat]);
                    add(&mut f, Op::Reshape { shape: full.clone() }, &[flat])
                }
                Step::TransposeTwice(a) => {
                    let t = add(&mut f, Op::Permute { perm: vec![1, 0] }, &[pick(a)]);
                    add(&mut f, Op::Permute { perm: vec![1, 0] }, &[t])
                }
                Step::NegNeg(a) => {
                    let n = add(&mut f, Op::Unary(UnaryOp::Neg), &[pick(a)]);
                    let n = add(&mut f, Op::StopGradient, &[n]);
                    add(&mut f, Op::Unary(UnaryOp::Neg), &[n])
                }
                Step::MatMul(a) => {
                    let p = add(&mut f, Op::MatMul, &[pick(a), ins[3]]);
                    add(&mut f, Op::Unary(UnaryOp::Tanh), &[p])
                }
            };
            values.push(v);
        }
        let last = *values.last().unwrap();
        let sum = add(&mut f, Op::Reduce { kind: ReduceKind::Sum, axes: vec![0, 1], keepdims: false }, &[last]);
        f.outputs = vec![last, sum];
        let module = Module { params: Vec::new(), functions: vec![f] };
        kiln_ir::verify_module(&module).unwrap();
        module
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
        #[test]
        fn optimized_random_graphs_agree(steps in proptest::collection::vec(step(), 1..14)) {
            let module = build(&steps);
            let simplified = kiln_passes::simplify(&module);
            kiln_ir::verify_module(&simplified).unwrap();
            let inputs = inputs_for(&module, "f");
            let params = kiln_ir::interp::Params::new();
            let expected = evaluate(&module, "f", &inputs, &params, EvalOptions::default()).unwrap();
            let got = evaluate(&simplified, "f", &inputs, &params, EvalOptions::default()).unwrap();
            for (g, e) in got.iter().zip(&expected) {
                let error = g.max_relative_error(e).unwrap();
                prop_assert!(error <= TOLERANCE, "interpreter: relative error {}", error);
            }
            check(&module, "f");
        }
    }
}

/// `passes::compile` keeps every stage's output: the simplified function,
/// the fusion of its nodes, the lowered plan with the node of each kernel,
/// the GEMMs merged with their epilogues, and the final plan, which is
/// what `compile_plan` returns; an unknown function is a typed error.
#[test]
fn a_compilation_holds_every_stage() {
    use kiln_passes::{KernelOrigin, Stage};
    let step = with_step("examples/mlp.kiln");
    let mut n = Bindings::new();
    n.insert(Symbol::new("N"), 256);
    let c = kiln_passes::compile(&step, "train_step", &n, &CompileOptions::default()).unwrap();
    assert_eq!(c.plan, kiln_passes::compile_plan(&step, "train_step", &n).unwrap());
    assert_eq!(c.lowered.origins.len(), c.lowered.plan.kernels.len());
    assert_eq!(c.fusion.placement.len(), c.simplified.graph.len());
    assert!(c.simplify_report.is_some());
    let stages: Vec<Stage> = c.times.iter().map(|t| t.0).collect();
    assert_eq!(stages, [Stage::Simplify, Stage::Fuse, Stage::Lower, Stage::MergeGemmEpilogues]);
    assert!(!c.merged_gemms.is_empty(), "the MLP's products merge with their bias adds");
    for &k in &c.merged_gemms {
        let KernelOrigin::Node(gemm) = c.lowered.origins[k] else { panic!("kernel {k} is not a node's") };
        assert!(matches!(c.simplified.graph.node(gemm).op, kiln_ir::Op::MatMul), "kernel {k} is a product");
    }
    assert_eq!(c.plan.kernels.len(), c.lowered.plan.kernels.len() - c.merged_gemms.len());
    let all: usize = (0..c.plan.kernels.len()).map(|k| c.origins_of(k).len()).sum();
    assert_eq!(all, c.lowered.plan.kernels.len(), "every lowered kernel is in one final kernel");
    let e = kiln_passes::compile(&step, "nope", &n, &CompileOptions::default()).unwrap_err();
    assert_eq!(e, kiln_passes::CompileError::UnknownFunction("nope".into()));
}

/// A weight shared by every batch (`[N, T, K] @ [K, M]`, and its transpose
/// in the input gradient) is read in place: no broadcast is written out,
/// the forward product is one GEMM over all `N * T` rows, and the step
/// agrees with the interpreter, with GEMM calls and as loop nests.
#[test]
fn shared_weights_are_read_in_place() {
    let source = "model M {\n    param w: f32[8, 4] = xavier_uniform\n    \
                  fn forward(x: f32[N, 3, 8]) -> f32[N, 3, 4] { x @ w }\n}\n\
                  train M {\n    fn loss(x: f32[N, 3, 8], y: f32[N, 3, 4]) -> f32 { mean((forward(x) - y) ** 2) }\n    \
                  optimizer sgd(lr = 0.1)\n}\n";
    let path = std::env::temp_dir().join(format!("kiln-shared-weight-{}.kiln", std::process::id()));
    std::fs::write(&path, source).unwrap();
    let step = with_step(path.to_str().unwrap());
    let mut n = Bindings::new();
    n.insert(Symbol::new("N"), 8);
    let plan = kiln_passes::compile_plan(&step, "train_step", &n).unwrap().to_string();
    assert!(!plan.contains("_broadcast {"), "no broadcast is written out:\n{plan}");
    assert!(plan.contains("gemm(batch=1, m=3*N, n=4, k=8"), "one product over the N x 3 rows:\n{plan}");
    check(&step, "train_step");
    check(&step, "forward");
    let loops = lowering(LowerOptions { gemm: GemmLowering::Loops, ..LowerOptions::default() });
    check_with(&step, "train_step", loops);
}

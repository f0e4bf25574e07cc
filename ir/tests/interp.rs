//! The reference interpreter against hand-computed values, one op at a time,
//! with broadcasting and keepdims, and its errors on bad inputs.

use kiln_ir::interp::{EvalError, EvalOptions, Params, Precision, Tensor, evaluate};
use kiln_ir::{DType, parse_module};
use ndarray::{ArrayD, IxDyn};

fn f32s(shape: &[usize], values: &[f32]) -> Tensor {
    Tensor::from_f32(shape, values)
}

fn ints(dtype: DType, shape: &[usize], values: &[i64]) -> Tensor {
    Tensor::int(dtype, ArrayD::from_shape_vec(IxDyn(shape), values.to_vec()).unwrap())
}

fn bools(shape: &[usize], values: &[bool]) -> Tensor {
    Tensor::bool(ArrayD::from_shape_vec(IxDyn(shape), values.to_vec()).unwrap())
}

/// Runs the body (node lines and `return`) of a function with `inputs`
/// declared by `signature`, and compares the single output with `expected`
/// exactly (hand-computed values are exact in f32 here unless noted).
fn check(signature: &str, body: &str, inputs: &[Tensor], expected: Tensor) {
    let text = format!("func f({signature}) -> ({}) {{\n{body}\n}}\n", expected_type(&expected, body));
    let module = parse_module(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let out = evaluate(&module, "f", inputs, &Params::new(), EvalOptions::default())
        .unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(out[0], expected, "\n{text}");
}

/// The declared output type: the type on the returned node's line.
fn expected_type(_expected: &Tensor, body: &str) -> String {
    let ret = body.lines().last().unwrap().trim().trim_start_matches("return ").to_string();
    let line = body.lines().find(|l| l.trim_start().starts_with(&format!("{ret}:"))).unwrap();
    line.split_once(':').unwrap().1.split_once('=').unwrap().0.trim().to_string()
}

#[test]
fn elementwise_unary() {
    let x = f32s(&[4], &[-2.0, -0.5, 0.0, 4.0]);
    let sig = "x: f32[4]";
    let run = |op: &str, expected: &[f32]| {
        check(
            sig,
            &format!("  %0: f32[4] = input 0\n  %1: f32[4] = {op} %0\n  return %1"),
            std::slice::from_ref(&x),
            f32s(&[4], expected),
        );
    };
    run("neg", &[2.0, 0.5, -0.0, -4.0]);
    run("abs", &[2.0, 0.5, 0.0, 4.0]);
    run("sign", &[-1.0, -1.0, 0.0, 1.0]);
    run("floor", &[-2.0, -1.0, 0.0, 4.0]);
    run("recip", &[-0.5, -2.0, f32::INFINITY, 0.25]);
    run("exp", &[(-2.0f32).exp(), (-0.5f32).exp(), 1.0, 4.0f32.exp()]);
    run("tanh", &[(-2.0f32).tanh(), (-0.5f32).tanh(), 0.0, 4.0f32.tanh()]);
    let y = f32s(&[3], &[1.0, 4.0, 0.25]);
    check(
        "x: f32[3]",
        "  %0: f32[3] = input 0\n  %1: f32[3] = sqrt %0\n  return %1",
        std::slice::from_ref(&y),
        f32s(&[3], &[1.0, 2.0, 0.5]),
    );
    check(
        "x: f32[3]",
        "  %0: f32[3] = input 0\n  %1: f32[3] = log %0\n  return %1",
        &[y],
        f32s(&[3], &[0.0, 4.0f32.ln(), 0.25f32.ln()]),
    );
    let b = bools(&[2], &[true, false]);
    check(
        "x: bool[2]",
        "  %0: bool[2] = input 0\n  %1: bool[2] = not %0\n  return %1",
        &[b],
        bools(&[2], &[false, true]),
    );
}

#[test]
fn elementwise_binary_and_compare() {
    let a = f32s(&[3], &[1.0, -2.0, 3.0]);
    let b = f32s(&[3], &[2.0, 2.0, -1.0]);
    let sig = "a: f32[3], b: f32[3]";
    let run = |op: &str, expected: &[f32]| {
        let body = format!("  %0: f32[3] = input 0\n  %1: f32[3] = input 1\n  %2: f32[3] = {op} %0, %1\n  return %2");
        check(sig, &body, &[a.clone(), b.clone()], f32s(&[3], expected));
    };
    run("add", &[3.0, 0.0, 2.0]);
    run("sub", &[-1.0, -4.0, 4.0]);
    run("mul", &[2.0, -4.0, -3.0]);
    run("div", &[0.5, -1.0, -3.0]);
    run("max", &[2.0, 2.0, 3.0]);
    run("min", &[1.0, -2.0, -1.0]);
    run("pow", &[1.0, 4.0, 1.0 / 3.0]);
    let body = "  %0: f32[3] = input 0\n  %1: f32[3] = input 1\n  %2: bool[3] = lt %0, %1\n  return %2";
    check(sig, body, &[a.clone(), b.clone()], bools(&[3], &[true, true, false]));
    let body = "  %0: f32[3] = input 0\n  %1: f32[3] = input 1\n  %2: bool[3] = ge %0, %1\n  %3: f32[3] = select %2, %0, %1\n  return %3";
    check(sig, body, &[a, b], f32s(&[3], &[2.0, 2.0, 3.0]));
}

#[test]
fn integer_arithmetic_wraps_and_division_truncates() {
    let a = ints(DType::I32, &[3], &[7, -7, 2147483647]);
    let b = ints(DType::I32, &[3], &[2, 2, 1]);
    let body = "  %0: i32[3] = input 0\n  %1: i32[3] = input 1\n  %2: i32[3] = div %0, %1\n  return %2";
    check("a: i32[3], b: i32[3]", body, &[a.clone(), b.clone()], ints(DType::I32, &[3], &[3, -3, 2147483647]));
    let body = "  %0: i32[3] = input 0\n  %1: i32[3] = input 1\n  %2: i32[3] = add %0, %1\n  return %2";
    check("a: i32[3], b: i32[3]", body, &[a, b], ints(DType::I32, &[3], &[9, -5, -2147483648]));
}

#[test]
fn broadcasting_follows_numpy() {
    let x = f32s(&[3], &[1.0, 2.0, 3.0]);
    let body = "  %0: f32[3] = input 0\n  %1: f32[2, 3] = broadcast %0\n  return %1";
    check("x: f32[3]", body, &[x], f32s(&[2, 3], &[1.0, 2.0, 3.0, 1.0, 2.0, 3.0]));
    let col = f32s(&[2, 1], &[10.0, 20.0]);
    let body = "  %0: f32[2, 1] = input 0\n  %1: f32[2, 3] = broadcast %0\n  return %1";
    check("x: f32[2, 1]", body, &[col], f32s(&[2, 3], &[10.0, 10.0, 10.0, 20.0, 20.0, 20.0]));
}

#[test]
fn reductions_with_and_without_keepdims() {
    let x = f32s(&[2, 3], &[1.0, 5.0, 3.0, -4.0, 2.0, 0.5]);
    let sig = "x: f32[2, 3]";
    check(
        sig,
        "  %0: f32[2, 3] = input 0\n  %1: f32[2] = reduce_sum %0 axes=[1] keepdims=false\n  return %1",
        std::slice::from_ref(&x),
        f32s(&[2], &[9.0, -1.5]),
    );
    check(
        sig,
        "  %0: f32[2, 3] = input 0\n  %1: f32[1, 3] = reduce_sum %0 axes=[0] keepdims=true\n  return %1",
        std::slice::from_ref(&x),
        f32s(&[1, 3], &[-3.0, 7.0, 3.5]),
    );
    check(
        sig,
        "  %0: f32[2, 3] = input 0\n  %1: f32[2, 1] = reduce_max %0 axes=[1] keepdims=true\n  return %1",
        std::slice::from_ref(&x),
        f32s(&[2, 1], &[5.0, 2.0]),
    );
    check(
        sig,
        "  %0: f32[2, 3] = input 0\n  %1: f32[] = reduce_max %0 axes=[0, 1] keepdims=false\n  return %1",
        std::slice::from_ref(&x),
        f32s(&[], &[5.0]),
    );
    check(
        sig,
        "  %0: f32[2, 3] = input 0\n  %1: f32[2, 3] = reduce_sum %0 axes=[] keepdims=false\n  return %1",
        std::slice::from_ref(&x),
        x.clone(),
    );
}

#[test]
fn movement_ops() {
    let x = f32s(&[2, 3], &[0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
    let sig = "x: f32[2, 3]";
    check(
        sig,
        "  %0: f32[2, 3] = input 0\n  %1: f32[3, 2] = permute %0 perm=[1, 0]\n  return %1",
        std::slice::from_ref(&x),
        f32s(&[3, 2], &[0.0, 3.0, 1.0, 4.0, 2.0, 5.0]),
    );
    check(
        sig,
        "  %0: f32[2, 3] = input 0\n  %1: f32[3, 2] = reshape %0\n  return %1",
        std::slice::from_ref(&x),
        f32s(&[3, 2], &[0.0, 1.0, 2.0, 3.0, 4.0, 5.0]),
    );
    check(
        sig,
        "  %0: f32[2, 3] = input 0\n  %1: f32[2, 2] = slice %0 axis=1 start=0 stop=3 step=2\n  return %1",
        std::slice::from_ref(&x),
        f32s(&[2, 2], &[0.0, 2.0, 3.0, 5.0]),
    );
    check(
        sig,
        "  %0: f32[2, 3] = input 0\n  %1: f32[3, 4] = pad %0 padding=[(1, 0), (0, 1)]\n  return %1",
        std::slice::from_ref(&x),
        f32s(&[3, 4], &[0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 2.0, 0.0, 3.0, 4.0, 5.0, 0.0]),
    );
    check(
        sig,
        "  %0: f32[2, 3] = input 0\n  %1: f32[2, 6] = concat %0, %0 axis=1\n  return %1",
        &[x],
        f32s(&[2, 6], &[0.0, 1.0, 2.0, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 3.0, 4.0, 5.0]),
    );
}

#[test]
fn matmul_plain_and_batched() {
    let a = f32s(&[2, 2], &[1.0, 2.0, 3.0, 4.0]);
    let b = f32s(&[2, 2], &[5.0, 6.0, 7.0, 8.0]);
    let body = "  %0: f32[2, 2] = input 0\n  %1: f32[2, 2] = input 1\n  %2: f32[2, 2] = matmul %0, %1\n  return %2";
    check("a: f32[2, 2], b: f32[2, 2]", body, &[a, b], f32s(&[2, 2], &[19.0, 22.0, 43.0, 50.0]));
    let a = f32s(&[2, 1, 2], &[1.0, 1.0, 2.0, -1.0]);
    let b = f32s(&[2, 2, 1], &[3.0, 4.0, 5.0, 6.0]);
    let body =
        "  %0: f32[2, 1, 2] = input 0\n  %1: f32[2, 2, 1] = input 1\n  %2: f32[2, 1, 1] = matmul %0, %1\n  return %2";
    check("a: f32[2, 1, 2], b: f32[2, 2, 1]", body, &[a, b], f32s(&[2, 1, 1], &[7.0, 4.0]));
}

#[test]
fn convolution_with_padding_stride_and_groups() {
    // 1x1x3x3 input, 1x1x2x2 kernel of ones: sums of 2x2 windows.
    let x = f32s(&[1, 1, 3, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]);
    let w = f32s(&[1, 1, 2, 2], &[1.0, 1.0, 1.0, 1.0]);
    let sig = "x: f32[1, 1, 3, 3], w: f32[1, 1, 2, 2]";
    let body = "  %0: f32[1, 1, 3, 3] = input 0\n  %1: f32[1, 1, 2, 2] = input 1\n  %2: f32[1, 1, 2, 2] = conv %0, %1 stride=[1, 1] padding=[(0, 0), (0, 0)] dilation=[1, 1] groups=1\n  return %2";
    check(sig, body, &[x.clone(), w.clone()], f32s(&[1, 1, 2, 2], &[12.0, 16.0, 24.0, 28.0]));
    // Padding 1 and stride 2: windows at (-1,-1), (-1,1), (1,-1), (1,1).
    let body = "  %0: f32[1, 1, 3, 3] = input 0\n  %1: f32[1, 1, 2, 2] = input 1\n  %2: f32[1, 1, 2, 2] = conv %0, %1 stride=[2, 2] padding=[(1, 1), (1, 1)] dilation=[1, 1] groups=1\n  return %2";
    check(sig, body, &[x, w], f32s(&[1, 1, 2, 2], &[1.0, 5.0, 11.0, 28.0]));
    // Two groups of one channel each: each output channel sees its own input.
    let x = f32s(&[1, 2, 1, 2], &[1.0, 2.0, 10.0, 20.0]);
    let w = f32s(&[2, 1, 1, 1], &[3.0, -1.0]);
    let body = "  %0: f32[1, 2, 1, 2] = input 0\n  %1: f32[2, 1, 1, 1] = input 1\n  %2: f32[1, 2, 1, 2] = conv %0, %1 stride=[1, 1] padding=[(0, 0), (0, 0)] dilation=[1, 1] groups=2\n  return %2";
    check("x: f32[1, 2, 1, 2], w: f32[2, 1, 1, 1]", body, &[x, w], f32s(&[1, 2, 1, 2], &[3.0, 6.0, -10.0, -20.0]));
}

/// The transposed convolution adds `g * w` at every position a window
/// reads: with stride 1 the windows overlap and their products add up; with
/// stride 2 and padding 1 the first window's first row and column fall in
/// the padding, and the result pairs with the convolution above as its
/// adjoint (`<conv(x, w), g> = <x, conv_transpose(g, w)>` = 156 here). The
/// text prints back as it was written.
#[test]
fn transposed_convolution_adds_each_window_back() {
    let g = f32s(&[1, 1, 2, 2], &[1.0, 2.0, 3.0, 4.0]);
    let w = f32s(&[1, 1, 2, 2], &[1.0, 1.0, 1.0, 1.0]);
    let sig = "g: f32[1, 1, 2, 2], w: f32[1, 1, 2, 2]";
    let body = "  %0: f32[1, 1, 2, 2] = input 0\n  %1: f32[1, 1, 2, 2] = input 1\n  %2: f32[1, 1, 3, 3] = conv_transpose %0, %1 stride=[1, 1] padding=[(0, 0), (0, 0)] dilation=[1, 1] groups=1 size=[3, 3]\n  return %2";
    let overlapping = f32s(&[1, 1, 3, 3], &[1.0, 3.0, 2.0, 4.0, 10.0, 6.0, 3.0, 7.0, 4.0]);
    check(sig, body, &[g.clone(), w.clone()], overlapping);
    let body = "  %0: f32[1, 1, 2, 2] = input 0\n  %1: f32[1, 1, 2, 2] = input 1\n  %2: f32[1, 1, 3, 3] = conv_transpose %0, %1 stride=[2, 2] padding=[(1, 1), (1, 1)] dilation=[1, 1] groups=1 size=[3, 3]\n  return %2";
    check(sig, body, &[g, w], f32s(&[1, 1, 3, 3], &[1.0, 2.0, 2.0, 3.0, 4.0, 4.0, 3.0, 4.0, 4.0]));
    let text = format!("func f({sig}) -> (f32[1, 1, 3, 3]) {{\n{body}\n}}\n");
    assert_eq!(parse_module(&text).unwrap().to_string(), text);
}

#[test]
fn pooling_by_reduce_window() {
    let x = f32s(&[1, 1, 2, 4], &[1.0, 5.0, 2.0, 0.0, -1.0, 3.0, 8.0, 4.0]);
    let sig = "x: f32[1, 1, 2, 4]";
    let body = "  %0: f32[1, 1, 2, 4] = input 0\n  %1: f32[1, 1, 1, 2] = reduce_window_max %0 window=[1, 1, 2, 2] stride=[1, 1, 2, 2] padding=[(0, 0), (0, 0), (0, 0), (0, 0)]\n  return %1";
    check(sig, body, std::slice::from_ref(&x), f32s(&[1, 1, 1, 2], &[5.0, 8.0]));
    let body = "  %0: f32[1, 1, 2, 4] = input 0\n  %1: f32[1, 1, 1, 2] = reduce_window_sum %0 window=[1, 1, 2, 2] stride=[1, 1, 2, 2] padding=[(0, 0), (0, 0), (0, 0), (0, 0)]\n  return %1";
    check(sig, body, std::slice::from_ref(&x), f32s(&[1, 1, 1, 2], &[8.0, 14.0]));
    // Max padding holds -inf, so a padded border never wins.
    let body = "  %0: f32[1, 1, 2, 4] = input 0\n  %1: f32[1, 1, 1, 5] = reduce_window_max %0 window=[1, 1, 2, 1] stride=[1, 1, 1, 1] padding=[(0, 0), (0, 0), (0, 0), (1, 0)]\n  return %1";
    check(sig, body, &[x], f32s(&[1, 1, 1, 5], &[f32::NEG_INFINITY, 1.0, 5.0, 8.0, 4.0]));
}

#[test]
fn gather_and_scatter_add() {
    let table = f32s(&[3, 2], &[0.0, 1.0, 10.0, 11.0, 20.0, 21.0]);
    let ids = ints(DType::I32, &[2, 2], &[2, 0, 1, 2]);
    let body =
        "  %0: f32[3, 2] = input 0\n  %1: i32[2, 2] = input 1\n  %2: f32[2, 2, 2] = gather %0, %1 axis=0\n  return %2";
    check(
        "t: f32[3, 2], i: i32[2, 2]",
        body,
        &[table.clone(), ids],
        f32s(&[2, 2, 2], &[20.0, 21.0, 0.0, 1.0, 10.0, 11.0, 20.0, 21.0]),
    );
    let idx = ints(DType::I32, &[3], &[1, 1, 0]);
    let updates = f32s(&[3, 2], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    let body = "  %0: f32[3, 2] = input 0\n  %1: i32[3] = input 1\n  %2: f32[3, 2] = input 2\n  %3: f32[3, 2] = scatter_add %0, %1, %2 axis=0\n  return %3";
    check(
        "t: f32[3, 2], i: i32[3], u: f32[3, 2]",
        body,
        &[table, idx, updates],
        f32s(&[3, 2], &[5.0, 7.0, 14.0, 17.0, 20.0, 21.0]),
    );
}

#[test]
fn sources_constants_iota_dims_and_casts() {
    let x = f32s(&[2, 3], &[0.0; 6]);
    let body = "  %0: f32[N, 3] = input 0\n  %1: i64[] = dim N\n  %2: f32[] = cast %1\n  return %2";
    check("x: f32[N, 3]", body, std::slice::from_ref(&x), f32s(&[], &[2.0]));
    let body = "  %0: f32[N, 3] = input 0\n  %1: i32[N, 3] = iota axis=1\n  return %1";
    check("x: f32[N, 3]", body, std::slice::from_ref(&x), ints(DType::I32, &[2, 3], &[0, 1, 2, 0, 1, 2]));
    let body = "  %0: f32[N, 3] = input 0\n  %1: f32[N, 3] = const 0.5\n  return %1";
    check("x: f32[N, 3]", body, &[x], f32s(&[2, 3], &[0.5; 6]));
    let y = f32s(&[3], &[-1.7, 0.0, 2.9]);
    check(
        "x: f32[3]",
        "  %0: f32[3] = input 0\n  %1: i32[3] = cast %0\n  return %1",
        std::slice::from_ref(&y),
        ints(DType::I32, &[3], &[-1, 0, 2]),
    );
    check(
        "x: f32[3]",
        "  %0: f32[3] = input 0\n  %1: bool[3] = cast %0\n  return %1",
        &[y],
        bools(&[3], &[true, false, true]),
    );
}

#[test]
fn random_bits_are_deterministic_per_key_and_stream() {
    let text = "func f(key: i64[]) -> (i32[1000], i32[1000]) {
  %0: i64[] = input 0
  %1: i32[1000] = random_bits %0 stream=0
  %2: i32[1000] = random_bits %0 stream=1
  return %1, %2
}
";
    let module = parse_module(text).unwrap();
    let key = |k: i64| ints(DType::I64, &[], &[k]);
    let run = |k| evaluate(&module, "f", &[key(k)], &Params::new(), EvalOptions::default()).unwrap();
    let (a, b) = (run(7), run(7));
    assert_eq!(a, b, "same key, same bits");
    assert_ne!(a[0], a[1], "streams differ");
    assert_ne!(a[0], run(8)[0], "keys differ");
    let values = a[0].to_f64_vec();
    assert!(values.iter().all(|&v| (0.0..2147483648.0).contains(&v)), "31 non-negative bits");
    let mean = values.iter().sum::<f64>() / values.len() as f64 / 2147483648.0;
    assert!((mean - 0.5).abs() < 0.05, "uniform: mean {mean}");
}

#[test]
fn f64_precision_keeps_what_f32_rounds_away() {
    let text = "func f(x: f32[]) -> (f32[]) {\n  %0: f32[] = input 0\n  %1: f32[] = const 1e-9\n  %2: f32[] = add %0, %1\n  return %2\n}\n";
    let module = parse_module(text).unwrap();
    let one = f32s(&[], &[1.0]);
    let native = evaluate(
        &module,
        "f",
        std::slice::from_ref(&one),
        &Params::new(),
        EvalOptions { precision: Precision::Native },
    )
    .unwrap();
    let wide = evaluate(&module, "f", &[one], &Params::new(), EvalOptions { precision: Precision::F64 }).unwrap();
    assert_eq!(native[0].to_f64_vec(), vec![1.0]);
    assert_eq!(wide[0].to_f64_vec(), vec![1.0 + 1e-9]);
}

#[test]
fn bad_inputs_are_errors_not_panics() {
    let text = "param w: f32[3] = zeros\n\nfunc f(x: f32[N, 3], y: f32[N]) -> (f32[N, 3]) {
  %0: f32[N, 3] = input 0
  %1: f32[3] = param w
  %2: f32[N, 3] = broadcast %1
  %3: f32[N, 3] = mul %0, %2
  return %3
}
";
    let module = parse_module(text).unwrap();
    let mut params = Params::new();
    let x = f32s(&[2, 3], &[0.0; 6]);
    let err = |inputs: &[Tensor], params: &Params| {
        evaluate(&module, "f", inputs, params, EvalOptions::default()).unwrap_err()
    };
    assert!(matches!(err(&[x.clone(), f32s(&[2], &[0.0; 2])], &params), EvalError::MissingParam(_)));
    params.insert("w".into(), f32s(&[4], &[0.0; 4]));
    assert!(matches!(err(&[x.clone(), f32s(&[2], &[0.0; 2])], &params), EvalError::ParamType { .. }));
    params.insert("w".into(), f32s(&[3], &[1.0; 3]));
    let e = err(&[x.clone(), f32s(&[5], &[0.0; 5])], &params);
    assert_eq!(
        e.to_string(),
        "input `y` must be f32[N], got f32[5] (dimension 0 is 5, but N = 2 from an earlier input)"
    );
    let e = err(&[f32s(&[2, 4], &[0.0; 8]), f32s(&[2], &[0.0; 2])], &params);
    assert!(e.to_string().contains("dimension 1 is 4, not 3"), "{e}");
    assert!(matches!(err(std::slice::from_ref(&x), &params), EvalError::InputCount { .. }));
    assert!(matches!(evaluate(&module, "g", &[], &params, EvalOptions::default()), Err(EvalError::UnknownFunction(_))));

    let gather = parse_module("func g(t: f32[3], i: i32[2]) -> (f32[2]) {\n  %0: f32[3] = input 0\n  %1: i32[2] = input 1\n  %2: f32[2] = gather %0, %1 axis=0\n  return %2\n}\n").unwrap();
    let e = evaluate(
        &gather,
        "g",
        &[f32s(&[3], &[0.0; 3]), ints(DType::I32, &[2], &[0, 3])],
        &params,
        EvalOptions::default(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("index 3 is out of range 0..3"), "{e}");
    let div = parse_module("func d(a: i64[1]) -> (i64[1]) {\n  %0: i64[1] = input 0\n  %1: i64[1] = const 0\n  %2: i64[1] = div %0, %1\n  return %2\n}\n").unwrap();
    let e = evaluate(&div, "d", &[ints(DType::I64, &[1], &[5])], &params, EvalOptions::default()).unwrap_err();
    assert!(e.to_string().contains("division by zero"), "{e}");
}

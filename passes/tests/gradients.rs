//! Every vector-Jacobian rule against central finite differences, in f64 on
//! the reference interpreter: fixed cases for every primitive and attribute
//! combination, and property tests over random shapes with broadcasting.

use kiln_ir::interp::{EvalOptions, Params, Precision, Tensor, evaluate};
use kiln_ir::{
    BinaryOp, ConvAttrs, DType, Dim, Function, InputDecl, Literal, Module, NodeId, Op, ReduceKind, Shape, TensorType,
    UnaryOp,
};
use kiln_passes::{Source, differentiate};
use ndarray::{ArrayD, IxDyn};
use proptest::prelude::*;

/// Builds a one-function module of f64 inputs op by op.
struct Case {
    module: Module,
}

impl Case {
    fn new(inputs: &[&[u64]]) -> Case {
        let decls = inputs
            .iter()
            .enumerate()
            .map(|(i, s)| InputDecl { name: format!("x{i}"), ty: TensorType::new(DType::F64, Shape::of(s)) })
            .collect();
        let mut f = Function::new("f", decls);
        let ctx_inputs = f.inputs.clone();
        for i in 0..inputs.len() {
            let ctx = kiln_ir::TypeContext { inputs: &ctx_inputs, params: &[] };
            f.graph.add(&ctx, Op::Input { index: i as u32 }, &[]).unwrap();
        }
        Case { module: Module { params: Vec::new(), functions: vec![f] } }
    }

    fn f(&mut self) -> &mut Function {
        &mut self.module.functions[0]
    }

    fn add(&mut self, op: Op, args: &[NodeId]) -> NodeId {
        let f = &mut self.module.functions[0];
        let ctx = kiln_ir::TypeContext { inputs: &f.inputs, params: &[] };
        let what = format!("{op:?}");
        f.graph.add(&ctx, op, args).unwrap_or_else(|e| panic!("{what}: {e}"))
    }

    fn input(&self, i: u32) -> NodeId {
        NodeId(i)
    }

    fn finish(mut self, output: NodeId) -> Module {
        self.f().outputs = vec![output];
        kiln_ir::verify_module(&self.module).unwrap();
        self.module
    }
}

/// Deterministic pseudo-random values in `[low, high)`.
fn values(shape: &[u64], seed: u64, low: f64, high: f64) -> Tensor {
    let dims: Vec<usize> = shape.iter().map(|&d| d as usize).collect();
    let n: usize = dims.iter().product();
    let data = (0..n).map(|i| low + (high - low) * kiln_ir::random::uniform(seed, 0, i as u64)).collect();
    Tensor::float(DType::F64, ArrayD::from_shape_vec(IxDyn(&dims), data).unwrap())
}

fn sum_of_outputs(module: &Module, inputs: &[Tensor]) -> f64 {
    let out = evaluate(module, "f", inputs, &Params::new(), EvalOptions { precision: Precision::F64 }).unwrap();
    out.iter().flat_map(|t| t.to_f64_vec()).sum()
}

/// Compares the gradient of the sum of `f`'s outputs with respect to every
/// input against central differences; returns the worst relative error.
fn check(module: &Module, inputs: &[Tensor]) -> f64 {
    check_with_step(module, inputs, 1e-6)
}

fn check_with_step(module: &Module, inputs: &[Tensor], h: f64) -> f64 {
    let sources: Vec<Source> = (0..inputs.len()).map(Source::Input).collect();
    let grad = differentiate(module, "f", &sources).expect("differentiates");
    let mut with_grad = module.clone();
    with_grad.functions.push(grad);
    kiln_ir::verify_module(&with_grad).unwrap_or_else(|e| panic!("{e}\n{}", kiln_ir::render_error(&with_grad, &e)));
    let analytic =
        evaluate(&with_grad, "f_grad", inputs, &Params::new(), EvalOptions { precision: Precision::F64 }).unwrap();
    let outputs = module.functions[0].outputs.len();
    let mut worst = 0.0f64;
    for (k, input) in inputs.iter().enumerate() {
        let base = input.to_f64_vec();
        let a = analytic[outputs + k].to_f64_vec();
        assert_eq!(a.len(), base.len(), "gradient shape of input {k}");
        for i in 0..base.len() {
            let at = |delta: f64| {
                let mut v = base.clone();
                v[i] += delta;
                let mut perturbed = inputs.to_vec();
                perturbed[k] = Tensor::float(DType::F64, ArrayD::from_shape_vec(IxDyn(input.shape()), v).unwrap());
                sum_of_outputs(module, &perturbed)
            };
            let numeric = (at(h) - at(-h)) / (2.0 * h);
            let error = (numeric - a[i]).abs() / numeric.abs().max(1.0);
            worst = worst.max(error);
        }
    }
    worst
}

const TOLERANCE: f64 = 1e-5;

fn assert_gradient(module: &Module, inputs: &[Tensor]) {
    let error = check(module, inputs);
    assert!(error < TOLERANCE, "worst relative error {error} for\n{}", module);
}

/// A unary op on one input with values in `[low, high)`.
fn unary_case(op: UnaryOp, low: f64, high: f64) {
    let mut c = Case::new(&[&[2, 3]]);
    let x = c.input(0);
    let y = c.add(Op::Unary(op), &[x]);
    let m = c.finish(y);
    assert_gradient(&m, &[values(&[2, 3], 1, low, high)]);
}

#[test]
fn unary_rules() {
    unary_case(UnaryOp::Neg, -2.0, 2.0);
    unary_case(UnaryOp::Abs, 0.1, 2.0);
    unary_case(UnaryOp::Abs, -2.0, -0.1);
    unary_case(UnaryOp::Exp, -2.0, 2.0);
    unary_case(UnaryOp::Log, 0.5, 3.0);
    unary_case(UnaryOp::Sqrt, 0.5, 3.0);
    unary_case(UnaryOp::Recip, 0.5, 3.0);
    unary_case(UnaryOp::Sin, -3.0, 3.0);
    unary_case(UnaryOp::Cos, -3.0, 3.0);
    unary_case(UnaryOp::Tanh, -2.0, 2.0);
    unary_case(UnaryOp::Floor, 0.1, 0.9);
    unary_case(UnaryOp::Sign, 0.1, 0.9);
}

fn binary_case(op: BinaryOp, a_shape: &[u64], b_shape: &[u64], out: &[u64], low: f64, high: f64, seed: u64) {
    let mut c = Case::new(&[a_shape, b_shape]);
    let (a, b) = (c.input(0), c.input(1));
    let shape = Shape::of(out);
    let a = if a_shape == out { a } else { c.add(Op::Broadcast { shape: shape.clone() }, &[a]) };
    let b = if b_shape == out { b } else { c.add(Op::Broadcast { shape }, &[b]) };
    let y = c.add(Op::Binary(op), &[a, b]);
    let m = c.finish(y);
    assert_gradient(&m, &[values(a_shape, seed, low, high), values(b_shape, seed + 7, low, high)]);
}

#[test]
fn binary_rules() {
    for op in [BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div, BinaryOp::Max, BinaryOp::Min, BinaryOp::Pow]
    {
        binary_case(op, &[2, 3], &[2, 3], &[2, 3], 0.5, 2.0, 3);
        binary_case(op, &[3], &[2, 1], &[2, 3], 0.5, 2.0, 4);
    }
}

#[test]
fn max_ties_split_the_gradient_evenly() {
    let mut c = Case::new(&[&[3], &[3]]);
    let (a, b) = (c.input(0), c.input(1));
    let y = c.add(Op::Binary(BinaryOp::Max), &[a, b]);
    let m = c.finish(y);
    let grad = differentiate(&m, "f", &[Source::Input(0), Source::Input(1)]).unwrap();
    let mut with = m.clone();
    with.functions.push(grad);
    let t = |v: &[f64]| Tensor::float(DType::F64, ArrayD::from_shape_vec(IxDyn(&[3]), v.to_vec()).unwrap());
    let out =
        evaluate(&with, "f_grad", &[t(&[1.0, 2.0, 3.0]), t(&[1.0, 5.0, 0.0])], &Params::new(), EvalOptions::default())
            .unwrap();
    assert_eq!(out[1].to_f64_vec(), vec![0.5, 0.0, 1.0]);
    assert_eq!(out[2].to_f64_vec(), vec![0.5, 1.0, 0.0]);
}

#[test]
fn select_and_casts() {
    let mut c = Case::new(&[&[2, 3], &[2, 3]]);
    let (a, b) = (c.input(0), c.input(1));
    let cond = c.add(Op::Compare(kiln_ir::CompareOp::Gt), &[a, b]);
    let s = c.add(Op::Select, &[cond, a, b]);
    let narrow = c.add(Op::Cast { to: DType::F32 }, &[s]);
    let wide = c.add(Op::Cast { to: DType::F64 }, &[narrow]);
    let y = c.add(Op::Binary(BinaryOp::Mul), &[wide, wide]);
    let m = c.finish(y);
    // The f32 round trip needs a step far above f32 rounding.
    let error = check_with_step(&m, &[values(&[2, 3], 5, -1.0, 1.0), values(&[2, 3], 6, -1.0, 1.0)], 1e-3);
    assert!(error < 1e-3, "{error}");
}

#[test]
fn stop_gradient_blocks_the_gradient() {
    // d/dx (x * stop_gradient(x)) = stop_gradient(x) = x, not 2x.
    let mut c = Case::new(&[&[3]]);
    let x = c.input(0);
    let stopped = c.add(Op::StopGradient, &[x]);
    let y = c.add(Op::Binary(BinaryOp::Mul), &[x, stopped]);
    let m = c.finish(y);
    let mut with = m.clone();
    with.functions.push(differentiate(&m, "f", &[Source::Input(0)]).unwrap());
    let x = values(&[3], 2, -1.0, 1.0);
    let out = evaluate(&with, "f_grad", std::slice::from_ref(&x), &Params::new(), EvalOptions::default()).unwrap();
    assert_eq!(out[1].to_f64_vec(), x.to_f64_vec());
}

#[test]
fn reductions_with_and_without_keepdims() {
    for kind in [ReduceKind::Sum, ReduceKind::Max] {
        for (axes, keepdims) in
            [(vec![0], false), (vec![1], true), (vec![0, 2], false), (vec![0, 1, 2], true), (vec![], false)]
        {
            let mut c = Case::new(&[&[2, 3, 4]]);
            let x = c.input(0);
            let r = c.add(Op::Reduce { kind, axes, keepdims }, &[x]);
            let y = c.add(Op::Binary(BinaryOp::Mul), &[r, r]);
            let m = c.finish(y);
            assert_gradient(&m, &[values(&[2, 3, 4], 9, -2.0, 2.0)]);
        }
    }
}

#[test]
fn reduce_max_splits_ties_among_the_maxima() {
    let mut c = Case::new(&[&[4]]);
    let x = c.input(0);
    let y = c.add(Op::Reduce { kind: ReduceKind::Max, axes: vec![0], keepdims: false }, &[x]);
    let m = c.finish(y);
    let mut with = m.clone();
    with.functions.push(differentiate(&m, "f", &[Source::Input(0)]).unwrap());
    let x = Tensor::float(DType::F64, ArrayD::from_shape_vec(IxDyn(&[4]), vec![3.0, 1.0, 3.0, 2.0]).unwrap());
    let out = evaluate(&with, "f_grad", &[x], &Params::new(), EvalOptions::default()).unwrap();
    assert_eq!(out[1].to_f64_vec(), vec![0.5, 0.0, 0.5, 0.0]);
}

#[test]
fn movement_rules() {
    let cases: Vec<(Vec<u64>, Op)> = vec![
        (vec![2, 3, 4], Op::Reshape { shape: Shape::of(&[6, 4]) }),
        (vec![3, 1], Op::Broadcast { shape: Shape::of(&[2, 3, 5]) }),
        (vec![2, 3, 4], Op::Permute { perm: vec![2, 0, 1] }),
        (vec![5, 3], Op::Slice { axis: 0, start: 1, stop: 4, step: 1 }),
        (vec![7, 3], Op::Slice { axis: 0, start: 1, stop: 7, step: 2 }),
        (vec![3, 8], Op::Slice { axis: 1, start: 0, stop: 7, step: 3 }),
        (vec![3, 4], Op::Slice { axis: 1, start: 2, stop: 2, step: 1 }),
        (vec![2, 3], Op::Pad { padding: vec![(1, 2), (0, 1)] }),
    ];
    for (shape, op) in cases {
        let mut c = Case::new(&[&shape]);
        let x = c.input(0);
        let r = c.add(op, &[x]);
        let y = c.add(Op::Binary(BinaryOp::Mul), &[r, r]);
        let m = c.finish(y);
        assert_gradient(&m, &[values(&shape, 11, -1.0, 1.0)]);
    }
    let mut c = Case::new(&[&[2, 3], &[2, 1], &[2, 2]]);
    let args = [c.input(0), c.input(1), c.input(2)];
    let r = c.add(Op::Concat { axis: 1 }, &args);
    let y = c.add(Op::Binary(BinaryOp::Mul), &[r, r]);
    let m = c.finish(y);
    assert_gradient(&m, &[values(&[2, 3], 1, -1.0, 1.0), values(&[2, 1], 2, -1.0, 1.0), values(&[2, 2], 3, -1.0, 1.0)]);
}

#[test]
fn matmul_plain_and_batched() {
    for (a, b) in [(vec![3, 4], vec![4, 2]), (vec![2, 3, 4], vec![2, 4, 5])] {
        let mut c = Case::new(&[&a, &b]);
        let (x, w) = (c.input(0), c.input(1));
        let p = c.add(Op::MatMul, &[x, w]);
        let y = c.add(Op::Unary(UnaryOp::Sin), &[p]);
        let m = c.finish(y);
        assert_gradient(&m, &[values(&a, 1, -1.0, 1.0), values(&b, 2, -1.0, 1.0)]);
    }
}

fn conv_case(x: &[u64], w: &[u64], attrs: ConvAttrs) {
    let mut c = Case::new(&[x, w]);
    let (i, k) = (c.input(0), c.input(1));
    let p = c.add(Op::Conv(attrs), &[i, k]);
    let y = c.add(Op::Unary(UnaryOp::Sin), &[p]);
    let m = c.finish(y);
    assert_gradient(&m, &[values(x, 1, -1.0, 1.0), values(w, 2, -1.0, 1.0)]);
}

/// The rule of the transposed convolution (the input gradient of a
/// one-group convolution), on `g` and `w` shaped as a convolution of an
/// input of spatial `size` would give and take.
fn conv_transpose_case(g: &[u64], w: &[u64], attrs: ConvAttrs, size: &[u64]) {
    let mut c = Case::new(&[g, w]);
    let (i, k) = (c.input(0), c.input(1));
    let p = c.add(Op::ConvTranspose { conv: attrs, size: size.to_vec() }, &[i, k]);
    let y = c.add(Op::Unary(UnaryOp::Sin), &[p]);
    let m = c.finish(y);
    assert_gradient(&m, &[values(g, 1, -1.0, 1.0), values(w, 2, -1.0, 1.0)]);
}

#[test]
fn transposed_convolution_rules() {
    let plain = |n| ConvAttrs { stride: vec![1; n], padding: vec![(0, 0); n], dilation: vec![1; n], groups: 1 };
    conv_transpose_case(&[2, 4, 3, 3], &[4, 3, 3, 3], plain(2), &[5, 5]);
    let strided = ConvAttrs { stride: vec![2], padding: vec![(1, 2)], dilation: vec![1], groups: 1 };
    conv_transpose_case(&[1, 3, 4], &[3, 2, 3], strided, &[7]);
    let mixed = ConvAttrs { stride: vec![3, 2], padding: vec![(0, 1), (2, 0)], dilation: vec![1, 2], groups: 1 };
    conv_transpose_case(&[1, 2, 2, 3], &[2, 1, 2, 3], mixed, &[6, 7]);
}

#[test]
fn convolution_rules() {
    let plain = |n| ConvAttrs { stride: vec![1; n], padding: vec![(0, 0); n], dilation: vec![1; n], groups: 1 };
    conv_case(&[2, 3, 5, 5], &[4, 3, 3, 3], plain(2));
    conv_case(
        &[1, 2, 7],
        &[3, 2, 3],
        ConvAttrs { stride: vec![2], padding: vec![(1, 2)], dilation: vec![1], groups: 1 },
    );
    conv_case(
        &[1, 1, 6, 7],
        &[2, 1, 2, 3],
        ConvAttrs { stride: vec![3, 2], padding: vec![(0, 1), (2, 0)], dilation: vec![1, 2], groups: 1 },
    );
    conv_case(
        &[2, 4, 5],
        &[6, 2, 2],
        ConvAttrs { stride: vec![1], padding: vec![(1, 1)], dilation: vec![2], groups: 2 },
    );
    // Padding larger than the kernel's reach crops the spread gradient.
    conv_case(
        &[1, 1, 4],
        &[1, 1, 2],
        ConvAttrs { stride: vec![1], padding: vec![(3, 3)], dilation: vec![1], groups: 1 },
    );
    // A stride that skips the input's tail.
    conv_case(
        &[1, 1, 8],
        &[1, 1, 3],
        ConvAttrs { stride: vec![3], padding: vec![(0, 0)], dilation: vec![1], groups: 1 },
    );
}

fn pool_case(kind: ReduceKind, shape: &[u64], window: &[u64], stride: &[u64], padding: &[(u64, u64)]) {
    let mut c = Case::new(&[shape]);
    let x = c.input(0);
    let p = c.add(
        Op::ReduceWindow { kind, window: window.to_vec(), stride: stride.to_vec(), padding: padding.to_vec() },
        &[x],
    );
    let y = c.add(Op::Binary(BinaryOp::Mul), &[p, p]);
    let m = c.finish(y);
    assert_gradient(&m, &[values(shape, 4, -1.0, 1.0)]);
}

#[test]
fn pooling_rules() {
    for kind in [ReduceKind::Sum, ReduceKind::Max] {
        pool_case(kind, &[2, 1, 4, 4], &[1, 1, 2, 2], &[1, 1, 2, 2], &[(0, 0); 4]);
        pool_case(kind, &[1, 2, 5, 5], &[1, 1, 3, 3], &[1, 1, 2, 2], &[(0, 0), (0, 0), (1, 1), (1, 1)]);
        pool_case(kind, &[1, 1, 6], &[1, 1, 2], &[1, 1, 1], &[(0, 0), (0, 0), (0, 1)]);
        pool_case(kind, &[1, 1, 7], &[1, 1, 3], &[1, 1, 3], &[(0, 0); 3]);
    }
}

#[test]
fn gather_and_scatter_add() {
    let indices = Tensor::int(DType::I64, ArrayD::from_shape_vec(IxDyn(&[4]), vec![2, 0, 2, 1]).unwrap());
    let idx_ty = TensorType::new(DType::I64, Shape::of(&[4]));
    let mut c = Case::new(&[&[3, 2]]);
    c.f().inputs.push(InputDecl { name: "i".into(), ty: idx_ty.clone() });
    let x = c.input(0);
    let i = c.add(Op::Input { index: 1 }, &[]);
    let g = c.add(Op::Gather { axis: 0 }, &[x, i]);
    let y = c.add(Op::Binary(BinaryOp::Mul), &[g, g]);
    let m = c.finish(y);
    let grad = differentiate(&m, "f", &[Source::Input(0)]).unwrap();
    let mut with = m.clone();
    with.functions.push(grad);
    kiln_ir::verify_module(&with).unwrap();
    let x_val = values(&[3, 2], 3, -1.0, 1.0);
    let analytic = evaluate(
        &with,
        "f_grad",
        &[x_val.clone(), indices.clone()],
        &Params::new(),
        EvalOptions { precision: Precision::F64 },
    )
    .unwrap()[1]
        .to_f64_vec();
    // Row 2 is gathered twice: its gradient is 2 * (2 x) per element.
    let x = x_val.to_f64_vec();
    let expected: Vec<f64> = (0..6).map(|k| [1.0, 1.0, 2.0][k / 2] * 2.0 * x[k]).collect();
    for (a, e) in analytic.iter().zip(&expected) {
        assert!((a - e).abs() < 1e-12, "{analytic:?} vs {expected:?}");
    }

    let mut c = Case::new(&[&[3, 2], &[4, 2]]);
    c.f().inputs.push(InputDecl { name: "i".into(), ty: idx_ty });
    let (base, updates) = (c.input(0), c.input(1));
    let i = c.add(Op::Input { index: 2 }, &[]);
    let s = c.add(Op::ScatterAdd { axis: 0 }, &[base, i, updates]);
    let y = c.add(Op::Unary(UnaryOp::Sin), &[s]);
    let m = c.finish(y);
    let grad = differentiate(&m, "f", &[Source::Input(0), Source::Input(1)]).unwrap();
    assert_eq!(grad.outputs.len(), 3);
}

#[test]
fn integer_inputs_and_unused_sources() {
    let mut c = Case::new(&[&[3]]);
    c.f().inputs.push(InputDecl { name: "n".into(), ty: TensorType::new(DType::I32, Shape::of(&[3])) });
    let x = c.input(0);
    let n = c.add(Op::Input { index: 1 }, &[]);
    let nf = c.add(Op::Cast { to: DType::F64 }, &[n]);
    let y = c.add(Op::Binary(BinaryOp::Mul), &[x, nf]);
    let m = c.finish(y);
    let err = differentiate(&m, "f", &[Source::Input(1)]).unwrap_err();
    assert!(err.to_string().contains("not a float tensor"), "{err}");
    assert!(matches!(differentiate(&m, "g", &[]), Err(kiln_passes::AutodiffError::UnknownFunction(_))));
    assert!(matches!(
        differentiate(&m, "f", &[Source::Param("w".into())]),
        Err(kiln_passes::AutodiffError::UnknownParam(_))
    ));

    let mut c = Case::new(&[&[3], &[3]]);
    let x = c.input(0);
    let y = c.add(Op::Unary(UnaryOp::Exp), &[x]);
    let m = c.finish(y);
    let grad = differentiate(&m, "f", &[Source::Input(1)]).unwrap();
    let mut with = m.clone();
    with.functions.push(grad);
    let out = evaluate(
        &with,
        "f_grad",
        &[values(&[3], 1, 0.0, 1.0), values(&[3], 2, 0.0, 1.0)],
        &Params::new(),
        EvalOptions::default(),
    )
    .unwrap();
    assert_eq!(out[1].to_f64_vec(), vec![0.0; 3], "an unused source has a zero gradient");
}

/// A random shape of rank 1 to 3 with dimensions 1 to 4, and a shape that
/// broadcasts to it (a suffix with some dimensions set to 1).
fn broadcast_pair() -> impl Strategy<Value = (Vec<u64>, Vec<u64>)> {
    proptest::collection::vec(1u64..5, 1..4)
        .prop_flat_map(|out| {
            let rank = out.len();
            (Just(out), 0..=rank, proptest::collection::vec(any::<bool>(), rank))
        })
        .prop_map(|(out, keep, ones)| {
            let offset = out.len() - keep;
            let operand = (0..keep).map(|i| if ones[i] { 1 } else { out[offset + i] }).collect();
            (out, operand)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn binary_rules_with_random_broadcasting(
        (out, a) in broadcast_pair(),
        b_ones in proptest::collection::vec(any::<bool>(), 3),
        op in 0usize..7,
        seed in 0u64..1000,
    ) {
        let b: Vec<u64> = out.iter().enumerate().map(|(i, &d)| if b_ones[i % 3] { 1 } else { d }).collect();
        let op = [BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div, BinaryOp::Max, BinaryOp::Min, BinaryOp::Pow][op];
        binary_case(op, &a, &b, &out, 0.5, 2.0, seed);
    }

    #[test]
    fn reductions_over_random_axes(
        shape in proptest::collection::vec(1u64..5, 1..4),
        mask in proptest::collection::vec(any::<bool>(), 3),
        keepdims in any::<bool>(),
        max in any::<bool>(),
        seed in 0u64..1000,
    ) {
        let axes: Vec<usize> = (0..shape.len()).filter(|&i| mask[i]).collect();
        let kind = if max { ReduceKind::Max } else { ReduceKind::Sum };
        let mut c = Case::new(&[&shape]);
        let x = c.input(0);
        let r = c.add(Op::Reduce { kind, axes, keepdims }, &[x]);
        let y = c.add(Op::Unary(UnaryOp::Exp), &[r]);
        let m = c.finish(y);
        let error = check(&m, &[values(&shape, seed, -1.0, 1.0)]);
        prop_assert!(error < TOLERANCE, "{error}\n{m}");
    }
}

#[test]
fn literal_constants_have_no_adjoint() {
    let mut c = Case::new(&[&[2]]);
    let x = c.input(0);
    let k =
        c.add(Op::Constant { value: Literal::float(3.0), dtype: DType::F64, shape: Shape(vec![Dim::Const(2)]) }, &[]);
    let y = c.add(Op::Binary(BinaryOp::Mul), &[x, k]);
    let m = c.finish(y);
    assert_gradient(&m, &[values(&[2], 1, -1.0, 1.0)]);
}

/// A random elementwise unary op with a safe input range.
fn unary_strategy() -> impl Strategy<Value = (UnaryOp, f64, f64)> {
    prop_oneof![
        Just((UnaryOp::Neg, -2.0, 2.0)),
        Just((UnaryOp::Abs, 0.2, 2.0)),
        Just((UnaryOp::Exp, -2.0, 2.0)),
        Just((UnaryOp::Log, 0.5, 3.0)),
        Just((UnaryOp::Sqrt, 0.5, 3.0)),
        Just((UnaryOp::Recip, 0.5, 3.0)),
        Just((UnaryOp::Sin, -3.0, 3.0)),
        Just((UnaryOp::Cos, -3.0, 3.0)),
        Just((UnaryOp::Tanh, -2.0, 2.0)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn unary_rules_on_random_shapes(
        shape in proptest::collection::vec(1u64..5, 0..4),
        (op, low, high) in unary_strategy(),
        seed in 0u64..1000,
    ) {
        let mut c = Case::new(&[&shape]);
        let x = c.input(0);
        let y = c.add(Op::Unary(op), &[x]);
        let m = c.finish(y);
        let error = check(&m, &[values(&shape, seed, low, high)]);
        prop_assert!(error < TOLERANCE, "{op:?} on {shape:?}: {error}");
    }

    #[test]
    fn batched_matmul_with_random_sizes(
        batch in proptest::collection::vec(1u64..3, 0..2),
        (m, k, n) in (1u64..5, 1u64..5, 1u64..5),
        seed in 0u64..1000,
    ) {
        let a: Vec<u64> = batch.iter().copied().chain([m, k]).collect();
        let b: Vec<u64> = batch.iter().copied().chain([k, n]).collect();
        let mut c = Case::new(&[&a, &b]);
        let (x, w) = (c.input(0), c.input(1));
        let p = c.add(Op::MatMul, &[x, w]);
        let y = c.add(Op::Unary(UnaryOp::Tanh), &[p]);
        let module = c.finish(y);
        let error = check(&module, &[values(&a, seed, -1.0, 1.0), values(&b, seed + 1, -1.0, 1.0)]);
        prop_assert!(error < TOLERANCE, "{a:?} @ {b:?}: {error}");
    }

    #[test]
    fn movement_on_random_shapes(
        shape in proptest::collection::vec(1u64..6, 1..4),
        choice in 0usize..4,
        axis_pick in 0usize..3,
        (lo, hi, start, step) in (0u64..3, 0u64..3, 0u64..3, 1u64..4),
        seed in 0u64..1000,
    ) {
        let rank = shape.len();
        let axis = axis_pick % rank;
        let size = shape[axis];
        let op = match choice {
            0 => Op::Permute { perm: (0..rank).rev().collect() },
            1 => {
                let start = start.min(size);
                Op::Slice { axis, start, stop: size, step }
            }
            2 => {
                let mut padding = vec![(0, 0); rank];
                padding[axis] = (lo, hi);
                Op::Pad { padding }
            }
            _ => {
                let mut to: Vec<u64> = shape.clone();
                to.insert(0, 2);
                Op::Broadcast { shape: Shape::of(&to) }
            }
        };
        let mut c = Case::new(&[&shape]);
        let x = c.input(0);
        let r = c.add(op.clone(), &[x]);
        let y = c.add(Op::Unary(UnaryOp::Sin), &[r]);
        let module = c.finish(y);
        let error = check(&module, &[values(&shape, seed, -1.0, 1.0)]);
        prop_assert!(error < TOLERANCE, "{op:?} on {shape:?}: {error}");
    }

    #[test]
    fn convolution_with_random_attributes(
        (size, k) in (3u64..7, 1u64..4),
        (stride, dilation, lo, hi) in (1u64..3, 1u64..3, 0u64..3, 0u64..3),
        (c_in, c_out, grouped) in (1u64..3, 1u64..3, any::<bool>()),
        seed in 0u64..1000,
    ) {
        let groups = if grouped { 2 } else { 1 };
        let (c_in, c_out) = (c_in * groups, c_out * groups);
        prop_assume!(size + lo + hi > dilation * (k - 1));
        let x = [2, c_in, size];
        let w = [c_out, c_in / groups, k];
        let attrs = ConvAttrs { stride: vec![stride], padding: vec![(lo, hi)], dilation: vec![dilation], groups };
        let mut c = Case::new(&[&x, &w]);
        let (i, kernel) = (c.input(0), c.input(1));
        let p = c.add(Op::Conv(attrs.clone()), &[i, kernel]);
        let y = c.add(Op::Unary(UnaryOp::Sin), &[p]);
        let module = c.finish(y);
        let error = check(&module, &[values(&x, seed, -1.0, 1.0), values(&w, seed + 1, -1.0, 1.0)]);
        prop_assert!(error < TOLERANCE, "{attrs:?} on {x:?} with {w:?}: {error}");
    }

    #[test]
    fn pooling_with_random_windows(
        size in 2u64..7,
        (window, stride, lo, hi) in (1u64..4, 1u64..3, 0u64..2, 0u64..2),
        max in any::<bool>(),
        seed in 0u64..1000,
    ) {
        prop_assume!(size + lo + hi >= window);
        let kind = if max { ReduceKind::Max } else { ReduceKind::Sum };
        let shape = [2, 1, size];
        let op = Op::ReduceWindow { kind, window: vec![1, 1, window], stride: vec![1, 1, stride], padding: vec![(0, 0), (0, 0), (lo, hi)] };
        let mut c = Case::new(&[&shape]);
        let x = c.input(0);
        let p = c.add(op.clone(), &[x]);
        let y = c.add(Op::Binary(BinaryOp::Mul), &[p, p]);
        let module = c.finish(y);
        let error = check(&module, &[values(&shape, seed, -1.0, 1.0)]);
        prop_assert!(error < TOLERANCE, "{op:?}: {error}");
    }
}

//! The example models: each is checked, lowered (its IR snapshotted) and run
//! on the reference interpreter, and the results are compared with the same
//! model written directly against ndarray.

use std::path::Path;

use kiln::compile_file;
use kiln_frontend::Options;
use kiln_ir::interp::{EvalOptions, Params, Precision, Tensor, evaluate};
use kiln_ir::{DType, Module};
use ndarray::{Array1, Array2, ArrayD, Axis, Ix1, Ix2, IxDyn};

/// Tolerance of the interpreter (f32) against an f64 reference.
const TOLERANCE: f64 = 1e-5;

fn compiled(name: &str) -> kiln::Compiled {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples").join(name);
    compile_file(&path, &Options::default()).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Deterministic inputs: a smooth function of the index.
fn input(rows: usize, cols: usize, phase: f64) -> Array2<f64> {
    Array2::from_shape_fn((rows, cols), |(i, j)| ((i * cols + j) as f64 * 0.37 + phase).sin())
}

fn f32_tensor(a: &Array2<f64>) -> Tensor {
    Tensor::float(DType::F32, a.clone().into_dyn())
}

fn matrix(params: &Params, name: &str) -> Array2<f64> {
    let t = &params[name];
    let kiln_ir::interp::Data::Float(a) = &t.data else { panic!("{name} is a float parameter") };
    a.clone().into_dimensionality::<Ix2>().expect("a matrix")
}

fn vector(params: &Params, name: &str) -> Array1<f64> {
    let kiln_ir::interp::Data::Float(a) = &params[name].data else { panic!("{name} is a float parameter") };
    a.clone().into_dimensionality::<Ix1>().expect("a vector")
}

fn run(module: &Module, function: &str, inputs: &[Tensor], params: &Params) -> Tensor {
    evaluate(module, function, inputs, params, EvalOptions { precision: Precision::Native }).expect("runs").remove(0)
}

fn assert_close(actual: &Tensor, expected: &ArrayD<f64>) {
    let expected = Tensor::float(DType::F32, expected.clone());
    let error = actual.max_relative_error(&expected).expect("same dtype and shape");
    assert!(error <= TOLERANCE, "relative error {error} > {TOLERANCE}");
}

#[test]
fn every_example_lowers_to_the_snapshotted_ir() {
    for name in ["linear_regression.kiln", "softmax_regression.kiln", "mlp.kiln"] {
        let module = compiled(name).module;
        insta::assert_snapshot!(name, module.to_string());
    }
}

#[test]
fn linear_regression_forward_and_loss() {
    let c = compiled("linear_regression.kiln");
    assert!(c.train.is_some(), "the example has a train block");
    let params = kiln_ir::initialize_params(&c.module, 3);
    let x = input(5, 2, 0.0);
    let (w, b) = (matrix(&params, "w"), vector(&params, "b"));
    let expected = x.dot(&w) + &b;
    assert_close(&run(&c.module, "forward", &[f32_tensor(&x)], &params), &expected.clone().into_dyn());

    let y = input(5, 1, 1.0);
    let loss = (&expected - &y).mapv(|d| 0.5 * d * d).mean().unwrap();
    let actual = run(&c.module, "loss", &[f32_tensor(&x), f32_tensor(&y)], &params);
    assert_close(&actual, &ArrayD::from_elem(IxDyn(&[]), loss));
}

fn log_softmax_rows(z: &Array2<f64>) -> Array2<f64> {
    let mut out = z.clone();
    for mut row in out.rows_mut() {
        let m = row.fold(f64::NEG_INFINITY, |a, &b| a.max(b));
        let lse = row.mapv(|v| (v - m).exp()).sum().ln() + m;
        row.mapv_inplace(|v| v - lse);
    }
    out
}

#[test]
fn softmax_regression_forward_predict_and_loss() {
    let c = compiled("softmax_regression.kiln");
    let params = kiln_ir::initialize_params(&c.module, 11);
    let x = input(6, 784, 0.5);
    let logits = x.dot(&matrix(&params, "w")) + &vector(&params, "b");
    assert_close(&run(&c.module, "forward", &[f32_tensor(&x)], &params), &logits.clone().into_dyn());

    let probabilities = log_softmax_rows(&logits).mapv(f64::exp);
    let predicted = run(&c.module, "predict", &[f32_tensor(&x)], &params);
    assert_close(&predicted, &probabilities.clone().into_dyn());

    let labels = [3i64, 0, 9, 9, 1, 4];
    let label_tensor = Tensor::int(DType::I32, ArrayD::from_shape_vec(IxDyn(&[6]), labels.to_vec()).unwrap());
    let log_p = log_softmax_rows(&logits);
    let loss = -labels.iter().enumerate().map(|(i, &l)| log_p[[i, l as usize]]).sum::<f64>() / 6.0;
    let actual = run(&c.module, "loss", &[f32_tensor(&x), label_tensor], &params);
    assert_close(&actual, &ArrayD::from_elem(IxDyn(&[]), loss));
}

#[test]
fn mlp_forward_matches_a_hand_written_mlp_and_dropout_acts_only_in_training() {
    let c = compiled("mlp.kiln");
    let params = kiln_ir::initialize_params(&c.module, 5);
    let x = input(4, 784, 0.25);
    let hidden = (x.dot(&matrix(&params, "fc1.w")) + &vector(&params, "fc1.b")).mapv(|v| v.max(0.0));
    let logits = hidden.dot(&matrix(&params, "fc2.w")) + &vector(&params, "fc2.b");
    assert_close(&run(&c.module, "forward", &[f32_tensor(&x)], &params), &logits.into_dyn());

    // The training loss takes a random key; different keys drop different units.
    let f = c.module.function("loss").expect("the train block's loss");
    assert_eq!(f.inputs.last().map(|i| i.name.as_str()), Some("key"));
    let labels = Tensor::int(DType::I32, ArrayD::from_shape_vec(IxDyn(&[4]), vec![1, 2, 3, 4]).unwrap());
    let key = |k: i64| Tensor::int(DType::I64, ArrayD::from_elem(IxDyn(&[]), k));
    let loss = |k| run(&c.module, "loss", &[f32_tensor(&x), labels.clone(), key(k)], &params).to_f64_vec()[0];
    assert_eq!(loss(1), loss(1), "one key, one loss");
    assert_ne!(loss(1), loss(2), "dropout depends on the key");
    assert!(loss(1).is_finite() && loss(1) > 0.0);
}

#[test]
fn parameters_follow_the_model_structure_and_their_initializers() {
    let c = compiled("mlp.kiln");
    let names: Vec<&str> = c.module.params.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["fc1.w", "fc1.b", "fc2.w", "fc2.b"]);
    let params = kiln_ir::initialize_params(&c.module, 0);
    let w = matrix(&params, "fc1.w");
    let bound = (6.0f64 / (784.0 + 256.0)).sqrt();
    assert!(w.iter().all(|v| v.abs() <= bound), "xavier_uniform stays within ±{bound}");
    let std = (w.iter().map(|v| v * v).sum::<f64>() / w.len() as f64).sqrt();
    assert!((std - bound / 3f64.sqrt()).abs() < 0.002, "uniform std {std}");
    assert!(vector(&params, "fc1.b").iter().all(|&v| v == 0.0));
    assert_eq!(kiln_ir::initialize_params(&c.module, 0), params, "a seed reproduces the values");
    assert_ne!(kiln_ir::initialize_params(&c.module, 1)["fc1.w"], params["fc1.w"]);
    let mean = w.mean_axis(Axis(0)).unwrap().mean().unwrap();
    assert!(mean.abs() < 0.01, "centred: {mean}");
}

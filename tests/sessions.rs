//! Training sessions: the JIT's resident session (parameters kept in f32
//! host buffers between steps) against a session that passes every
//! parameter through tensors at every call, and the errors of a session.

use std::path::Path;

use kiln::jit::Jit;
use kiln_frontend::Options;
use kiln_ir::interp::{Params, Tensor};
use kiln_ir::{DType, Module};
use kiln_runtime::execute::{ExecError, Execute, Outputs};
use kiln_runtime::trainer::Trainer;
use ndarray::{ArrayD, IxDyn};

/// An example's module with its training step, and the parameters the
/// step's outputs update.
fn training(name: &str) -> (Module, Vec<String>) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples").join(name);
    let compiled = kiln::compile_file(&path, &Options::default()).expect("compiles");
    let updates = compiled.train.clone().expect("a train block").updates;
    (kiln::with_train_step(&compiled).expect("a training step"), updates)
}

/// The JIT seen only through `Execute::run`: its session is the default
/// one, which keeps parameters as tensors.
struct ThroughTensors<'a, 'm>(&'a Jit<'m>);

impl Execute for ThroughTensors<'_, '_> {
    fn run(&self, function: &str, inputs: &[Tensor], params: &Params) -> Outputs {
        self.0.run(function, inputs, params)
    }
}

/// A batch of 32 MLP inputs and labels, different for each `step`.
fn batch(step: usize) -> Vec<Tensor> {
    let x = ArrayD::from_shape_fn(IxDyn(&[32, 784]), |i| ((i[0] * 784 + i[1] + 7 * step) as f64 * 0.01).sin());
    let y = ArrayD::from_shape_fn(IxDyn(&[32]), |i| ((i[0] + step) % 10) as i64);
    vec![Tensor::float(DType::F32, x), Tensor::int(DType::I32, y)]
}

/// A batch of `rows` MLP inputs and labels.
fn batch_of(rows: usize, step: usize) -> Vec<Tensor> {
    let x = ArrayD::from_shape_fn(IxDyn(&[rows, 784]), |i| ((i[0] * 784 + i[1] + 7 * step) as f64 * 0.01).sin());
    let y = ArrayD::from_shape_fn(IxDyn(&[rows]), |i| ((i[0] + step) % 10) as i64);
    vec![Tensor::float(DType::F32, x), Tensor::int(DType::I32, y)]
}

/// An epoch of 107 examples in batches of 32: three full batches and a
/// last one of 11. The JIT compiles the training step and the forward
/// pass once each, and runs both at 32 and at 11 with the interpreter's
/// results.
#[test]
fn one_compilation_per_function_across_an_epoch_with_a_partial_last_batch() {
    let (module, updates) = training("mlp.kiln");
    let params = kiln_ir::initialize_params(&module, 4);
    let jit = Jit::new(&module);
    let interpreter = kiln_runtime::execute::Interpreter { module: &module };
    let mut compiled = Trainer::new(&module, &jit, updates.clone(), params.clone(), 9);
    let mut reference = Trainer::new(&module, &interpreter, updates.clone(), params.clone(), 9);
    for (step, rows) in [32, 32, 32, 11].into_iter().enumerate() {
        let (a, b) = (compiled.step(batch_of(rows, step)).unwrap(), reference.step(batch_of(rows, step)).unwrap());
        assert!((a - b).abs() <= 1e-4 * b.abs().max(1.0), "step {step} of {rows} rows: losses {a} and {b}");
    }
    for rows in [32, 11, 1] {
        let x = &batch_of(rows, 0)[..1];
        let (a, b) = (compiled.run("forward", x).unwrap(), reference.run("forward", x).unwrap());
        assert_eq!(a[0].shape(), b[0].shape());
        let (a, b) = (a[0].to_f64_vec(), b[0].to_f64_vec());
        assert!(a.iter().zip(&b).all(|(x, y)| (x - y).abs() <= 1e-3 * y.abs().max(1.0)), "forward at {rows}");
    }
    assert_eq!(jit.compilations(), 2, "train_step and forward, each compiled once");
}

#[test]
fn resident_parameters_train_bit_for_bit_like_tensors() {
    let (module, updates) = training("mlp.kiln");
    let params = kiln_ir::initialize_params(&module, 4);
    let jit = Jit::new(&module);
    let through_tensors = ThroughTensors(&jit);
    let mut resident = Trainer::new(&module, &jit, updates.clone(), params.clone(), 9);
    let mut tensors = Trainer::new(&module, &through_tensors, updates.clone(), params.clone(), 9);
    for step in 0..4 {
        let (a, b) = (resident.step(batch(step)).unwrap(), tensors.step(batch(step)).unwrap());
        assert_eq!(a.to_bits(), b.to_bits(), "step {step}: losses {a} and {b}");
        let x = &batch(step)[..1];
        assert_eq!(resident.run("forward", x).unwrap(), tensors.run("forward", x).unwrap(), "step {step}");
    }
    let (a, b) = (resident.params().unwrap(), tensors.params().unwrap());
    assert_eq!(a.len(), params.len());
    for (name, value) in &b {
        assert_eq!(&a[name], value, "parameter {name}");
        if updates.contains(name) {
            assert_ne!(&params[name], value, "{name} was trained");
        }
    }
}

/// A batch given as host tensors (f32 images, i32 labels: what `kiln
/// train` feeds) trains bit for bit like the same batch as tensors, in the
/// resident session and in the tensor one; the step returns the logits its
/// loss was computed from, and they are `forward`'s logits under the same
/// dropout draw, since both come from one graph.
#[test]
fn host_batches_train_like_tensors_and_return_the_logits() {
    use kiln_runtime::execute::{HostData, HostTensor};
    let (module, updates) = training("mlp.kiln");
    let step_outputs = module.function("train_step").unwrap().outputs.len();
    assert_eq!(step_outputs, 2 + updates.len(), "the loss, the logits, then the updates");
    let params = kiln_ir::initialize_params(&module, 4);
    let jit = Jit::new(&module);
    let through_tensors = ThroughTensors(&jit);
    let mut host = Trainer::new(&module, &jit, updates.clone(), params.clone(), 9);
    let mut host_tensors = Trainer::new(&module, &through_tensors, updates.clone(), params.clone(), 9);
    let mut tensors = Trainer::new(&module, &jit, updates.clone(), params.clone(), 9);
    let as_host = |b: &[Tensor]| -> Vec<HostTensor> {
        let x: Vec<f32> = b[0].to_f64_vec().iter().map(|&v| v as f32).collect();
        let y: Vec<i32> = b[1].to_f64_vec().iter().map(|&v| v as i32).collect();
        vec![
            HostTensor::f32(b[0].shape().to_vec(), x),
            HostTensor { shape: b[1].shape().to_vec(), data: HostData::I32(y) },
        ]
    };
    for step in 0..3 {
        let (a, logits) = host.step_host(as_host(&batch(step))).unwrap();
        let (b, logits_b) = host_tensors.step_host(as_host(&batch(step))).unwrap();
        let c = tensors.step(batch(step)).unwrap();
        assert_eq!([a.to_bits(), b.to_bits()], [c.to_bits(), c.to_bits()], "step {step}: losses {a}, {b}, {c}");
        assert_eq!(logits, logits_b, "step {step}: the logits");
        assert_eq!(logits.len(), 1);
        assert_eq!(logits[0].shape(), &[32, 10]);
    }
    assert_eq!(host.params().unwrap(), tensors.params().unwrap());
    // A host tensor whose shape does not hold its elements is a clear error.
    let bad = vec![HostTensor::f32(vec![32, 784], vec![0.0; 10]), as_host(&batch(0)).remove(1)];
    let e = host.step_host(bad).unwrap_err();
    assert!(matches!(e, ExecError::HostShape { elements: 10, .. }), "{e}");
    assert_eq!(e.to_string(), "a host tensor of shape [32, 784] holds 10 elements");
}

#[test]
fn session_errors_name_the_function_and_the_parameter() {
    let (module, updates) = training("softmax_regression.kiln");
    let params = kiln_ir::initialize_params(&module, 0);
    let jit = Jit::new(&module);
    let x = Tensor::float(DType::F32, ArrayD::zeros(IxDyn(&[2, 784])));
    let y = Tensor::int(DType::I32, ArrayD::zeros(IxDyn(&[2])));
    let step = [x.clone(), y];

    let mut session = jit.session(params.clone());
    let too_many: Vec<String> = updates.iter().chain(&updates).chain(&updates).cloned().collect();
    let e = session.run_updating("train_step", &step, &too_many).unwrap_err();
    assert!(matches!(e, ExecError::TooFewOutputs { .. }), "{e}");
    let e = e.to_string();
    assert!(e.contains("`train_step` returns") && e.contains("fewer than"), "{e}");

    let swapped: Vec<String> = updates.iter().rev().cloned().collect();
    let e = session.run_updating("train_step", &step, &swapped).unwrap_err();
    assert!(matches!(e, ExecError::UpdateType { .. }), "{e}");
    let e = e.to_string();
    assert!(e.contains("updates parameter") && e.contains(&updates[1]), "{e}");
    // A failed step changes no parameter.
    let mut half_wrong = updates.clone();
    half_wrong[1] = updates[0].clone();
    let e = session.run_updating("train_step", &step, &half_wrong).unwrap_err().to_string();
    assert!(e.contains("updates parameter"), "{e}");
    assert_eq!(session.params().unwrap(), params, "parameters after failed steps");

    let mut unknown = updates.clone();
    unknown[0] = "nope".into();
    let e = session.run_updating("train_step", &step, &unknown).unwrap_err();
    assert!(matches!(&e, ExecError::NotAParam { name, .. } if name == "nope"), "{e}");
    let e = e.to_string();
    assert!(e.contains("`nope`, not a parameter"), "{e}");

    let mut missing = params.clone();
    missing.remove(&updates[0]);
    let e = jit.session(missing).run("forward", std::slice::from_ref(&x)).unwrap_err();
    assert!(matches!(&e, ExecError::MissingParam(name) if *name == updates[0]), "{e}");
    let e = e.to_string();
    assert!(e.contains(&format!("parameter `{}` has no value", updates[0])), "{e}");

    let mut wrong = params;
    wrong.insert(updates[0].clone(), Tensor::float(DType::F32, ArrayD::zeros(IxDyn(&[3]))));
    let e = jit.session(wrong).run("forward", &[x]).unwrap_err();
    assert!(matches!(e, ExecError::ParamType { .. }), "{e}");
    let e = e.to_string();
    assert!(e.contains(&format!("parameter `{}` must be", updates[0])), "{e}");
}

/// An input no output depends on may have a size of its own: the plan has
/// no such size, and the JIT runs the function all the same.
#[test]
fn an_unused_input_with_its_own_size_runs() {
    let module = kiln_ir::parse_module(
        "func f(x: f32[N, 4], y: f32[M]) -> (f32[N, 4]) {
  %0: f32[N, 4] = input 0
  %1: f32[M] = input 1
  %2: f32[N, 4] = exp %0
  return %2
}
",
    )
    .unwrap();
    let jit = Jit::new(&module);
    let x = Tensor::from_f32(&[2, 4], &[0.5; 8]);
    let y = Tensor::from_f32(&[3], &[1.0; 3]);
    let out = jit.run("f", &[x.clone(), y], &Params::new()).unwrap();
    let expected = evaluate_f(&module, &[x, Tensor::from_f32(&[3], &[1.0; 3])]);
    assert_eq!(out[0].to_f64_vec(), expected);
}

fn evaluate_f(module: &Module, inputs: &[Tensor]) -> Vec<f64> {
    let options = kiln_ir::interp::EvalOptions::default();
    kiln_ir::interp::evaluate(module, "f", inputs, &Params::new(), options).unwrap()[0].to_f64_vec()
}

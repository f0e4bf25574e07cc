//! Training sessions: the JIT's resident session (parameters kept in f32
//! host buffers between steps) against a session that passes every
//! parameter through tensors at every call, and the errors of a session.

use std::path::Path;

use kiln::jit::Jit;
use kiln_frontend::{Options, Style};
use kiln_ir::interp::{Params, Tensor};
use kiln_ir::{DType, Module};
use kiln_runtime::execute::Execute;
use kiln_runtime::trainer::Trainer;
use ndarray::{ArrayD, IxDyn};

/// An example's module with its training step, and the parameters the
/// step's outputs update.
fn training(name: &str) -> (Module, Vec<String>) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples").join(name);
    let compiled = kiln::compile_file(&path, &Options::default(), Style::Plain).expect("compiles");
    let updates = compiled.train.clone().expect("a train block").updates;
    (kiln::with_train_step(&compiled).expect("a training step"), updates)
}

/// The JIT seen only through `Execute::run`: its session is the default
/// one, which keeps parameters as tensors.
struct ThroughTensors<'a, 'm>(&'a Jit<'m>);

impl Execute for ThroughTensors<'_, '_> {
    fn run(&self, function: &str, inputs: &[Tensor], params: &Params) -> Result<Vec<Tensor>, String> {
        self.0.run(function, inputs, params)
    }
}

/// A batch of 32 MLP inputs and labels, different for each `step`.
fn batch(step: usize) -> Vec<Tensor> {
    let x = ArrayD::from_shape_fn(IxDyn(&[32, 784]), |i| ((i[0] * 784 + i[1] + 7 * step) as f64 * 0.01).sin());
    let y = ArrayD::from_shape_fn(IxDyn(&[32]), |i| ((i[0] + step) % 10) as i64);
    vec![Tensor::float(DType::F32, x), Tensor::int(DType::I32, y)]
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
    assert!(e.contains("`train_step` returns") && e.contains("fewer than"), "{e}");

    let swapped: Vec<String> = updates.iter().rev().cloned().collect();
    let e = session.run_updating("train_step", &step, &swapped).unwrap_err();
    assert!(e.contains("updates parameter") && e.contains(&updates[1]), "{e}");
    // A failed step changes no parameter.
    let mut half_wrong = updates.clone();
    half_wrong[1] = updates[0].clone();
    let e = session.run_updating("train_step", &step, &half_wrong).unwrap_err();
    assert!(e.contains("updates parameter"), "{e}");
    assert_eq!(session.params().unwrap(), params, "parameters after failed steps");

    let mut unknown = updates.clone();
    unknown[0] = "nope".into();
    let e = session.run_updating("train_step", &step, &unknown).unwrap_err();
    assert!(e.contains("`nope`, not a parameter"), "{e}");

    let mut missing = params.clone();
    missing.remove(&updates[0]);
    let e = jit.session(missing).run("forward", std::slice::from_ref(&x)).unwrap_err();
    assert!(e.contains(&format!("parameter `{}` has no value", updates[0])), "{e}");

    let mut wrong = params;
    wrong.insert(updates[0].clone(), Tensor::float(DType::F32, ArrayD::zeros(IxDyn(&[3]))));
    let e = jit.session(wrong).run("forward", &[x]).unwrap_err();
    assert!(e.contains(&format!("parameter `{}` must be", updates[0])), "{e}");
}

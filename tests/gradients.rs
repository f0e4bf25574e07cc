//! Whole-model gradient checks: every entry function of every example and
//! of the `ok` corpus, differentiated with respect to its parameters (or, for
//! parameter-free functions, its float inputs), against central finite
//! differences computed by the interpreter in f64.

use std::path::Path;

use kiln::compile_file;
use kiln_frontend::Options;
use kiln_ir::interp::{Data, EvalOptions, Params, Precision, Tensor, evaluate};
use kiln_ir::{DType, Module, TensorType};
use ndarray::{ArrayD, IxDyn};

/// Elements checked per source (spread over the tensor).
const SAMPLES: usize = 12;
const STEP: f64 = 1e-6;
const TOLERANCE: f64 = 1e-4;

fn module(path: &str) -> Module {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    compile_file(&path, &Options::default()).unwrap_or_else(|e| panic!("{}: {e}", path.display())).module
}

/// A tensor of `dtype` holding `values` exactly (no rounding to f32), so
/// that finite differences see the perturbation.
fn exact(dtype: DType, shape: &[usize], values: Vec<f64>) -> Tensor {
    Tensor { dtype, data: Data::Float(ArrayD::from_shape_vec(IxDyn(shape), values).unwrap()) }
}

/// Deterministic inputs for a function: floats in [-1, 1), integers in 0..3,
/// symbolic dimensions bound to 3.
fn inputs_for(module: &Module, function: &str, seed: u64) -> Vec<Tensor> {
    let f = module.function(function).unwrap();
    f.inputs
        .iter()
        .enumerate()
        .map(|(k, decl)| {
            let shape: Vec<usize> = decl.ty.shape.0.iter().map(|d| d.as_const().unwrap_or(3) as usize).collect();
            let n: usize = shape.iter().product();
            let stream = seed * 100 + k as u64;
            if decl.ty.dtype.is_float() {
                let v = (0..n).map(|i| 2.0 * kiln_ir::random::uniform(stream, 1, i as u64) - 1.0).collect();
                exact(decl.ty.dtype, &shape, v)
            } else {
                let v = (0..n).map(|i| (kiln_ir::random::bits(stream, 2, i as u64) % 3) as i64).collect();
                Tensor::int(decl.ty.dtype, ArrayD::from_shape_vec(IxDyn(&shape), v).unwrap())
            }
        })
        .collect()
}

fn total(module: &Module, function: &str, inputs: &[Tensor], params: &Params) -> f64 {
    let out = evaluate(module, function, inputs, params, EvalOptions { precision: Precision::F64 }).unwrap();
    out.iter().flat_map(|t| t.to_f64_vec()).sum()
}

/// Checks one function; returns how many elements were compared.
fn check_function(module: &Module, function: &str) -> usize {
    let mut params = kiln_ir::initialize_params(module, 7);
    for p in module.params.iter().filter(|p| p.ty.dtype.is_float()) {
        // Non-zero values everywhere, so that no bias sits at a kink.
        let t = &params[&p.name];
        let v: Vec<f64> = t
            .to_f64_vec()
            .iter()
            .enumerate()
            .map(|(i, x)| x + 0.1 * kiln_ir::random::uniform(9, 3, i as u64))
            .collect();
        params.insert(p.name.clone(), exact(p.ty.dtype, t.shape(), v));
    }
    let f = module.function(function).unwrap();
    let uses_param = f.graph.nodes().any(|(_, n)| matches!(n.op, kiln_ir::Op::Param { .. }));
    let sources: Vec<(kiln_passes::Source, TensorType)> = if uses_param {
        module
            .params
            .iter()
            .filter(|p| p.ty.dtype.is_float())
            .map(|p| (kiln_passes::Source::Param(p.name.clone()), p.ty.clone()))
            .collect()
    } else {
        f.inputs
            .iter()
            .enumerate()
            .filter(|(_, i)| i.ty.dtype.is_float())
            .map(|(k, i)| (kiln_passes::Source::Input(k), i.ty.clone()))
            .collect()
    };
    let grad = kiln_passes::differentiate(module, function, &sources.iter().map(|s| s.0.clone()).collect::<Vec<_>>())
        .unwrap_or_else(|e| panic!("{function}: {e}"));
    let mut with = module.clone();
    let grad_name = grad.name.clone();
    with.functions.push(grad);
    kiln_ir::verify_module(&with).unwrap();
    let inputs = inputs_for(module, function, 5);
    let analytic = evaluate(&with, &grad_name, &inputs, &params, EvalOptions { precision: Precision::F64 }).unwrap();
    let outputs = f.outputs.len();
    let mut compared = 0;
    for (k, (source, _)) in sources.iter().enumerate() {
        let a = analytic[outputs + k].to_f64_vec();
        let base = match source {
            kiln_passes::Source::Param(name) => params[name].clone(),
            kiln_passes::Source::Input(i) => inputs[*i].clone(),
        };
        let values = base.to_f64_vec();
        let count = values.len().min(SAMPLES);
        for s in 0..count {
            let i = s * values.len() / count;
            let at = |delta: f64| {
                let mut v = values.clone();
                v[i] += delta;
                let t = exact(base.dtype, base.shape(), v);
                match source {
                    kiln_passes::Source::Param(name) => {
                        let mut p = params.clone();
                        p.insert(name.clone(), t);
                        total(module, function, &inputs, &p)
                    }
                    kiln_passes::Source::Input(j) => {
                        let mut x = inputs.clone();
                        x[*j] = t;
                        total(module, function, &x, &params)
                    }
                }
            };
            let numeric = (at(STEP) - at(-STEP)) / (2.0 * STEP);
            let error = (numeric - a[i]).abs() / numeric.abs().max(1.0);
            assert!(
                error < TOLERANCE,
                "{function}, {source:?}[{i}]: analytic {} numeric {numeric} (error {error})",
                a[i]
            );
            compared += 1;
        }
    }
    compared
}

fn check_file(path: &str, functions: &[&str]) {
    let m = module(path);
    for f in functions {
        let compared = check_function(&m, f);
        assert!(compared > 0, "{path}: nothing compared for `{f}`");
    }
}

#[test]
fn linear_regression() {
    check_file("examples/linear_regression.kiln", &["forward", "loss"]);
}

#[test]
fn softmax_regression() {
    check_file("examples/softmax_regression.kiln", &["forward", "predict", "loss"]);
}

#[test]
fn mlp_with_dropout() {
    check_file("examples/mlp.kiln", &["forward", "loss"]);
}

#[test]
fn lenet_convolutions_and_pooling() {
    check_file("tests/filetests/ok/lenet.kiln", &["forward"]);
}

/// Batch norm in evaluation mode (`forward`) and in training mode (`loss`,
/// whose batch statistics and running-statistic updates are differentiated
/// too), residual blocks with strided 1x1 shortcuts, padded max pooling.
#[test]
fn residual_blocks_with_batch_norm() {
    check_file("tests/filetests/ok/blocks_and_state.kiln", &["forward", "loss"]);
}

#[test]
fn batch_norm_lenet() {
    check_file("examples/batchnorm_lenet.kiln", &["loss"]);
}

/// The book's recurrent language models, unrolled over 32 steps: the
/// gathered input rows, the recurrences and the gates, and the loss over
/// every step's logits.
#[test]
fn recurrent_language_models() {
    for path in ["examples/rnn_lm.kiln", "examples/gru_lm.kiln", "examples/lstm_lm.kiln", "examples/deep_rnn.kiln"] {
        check_file(path, &["loss"]);
    }
}

#[test]
fn gru_unrolled_over_steps() {
    check_file("tests/filetests/ok/gru_unrolled.kiln", &["forward"]);
}

#[test]
fn adam_trained_net() {
    check_file("tests/filetests/ok/adam_training.kiln", &["forward", "loss"]);
}

#[test]
fn every_prelude_feature() {
    let m = module("tests/filetests/ok/features.kiln");
    for f in &m.functions {
        check_function(&m, &f.name);
    }
}

//! Helpers shared by the differential tests: inputs for a function at a
//! fixed batch size, the bindings of its symbols, and comparison against the
//! interpreter with a tolerance relative to max(1, |expected|).

#![allow(dead_code)]

use std::path::Path;

use kiln::compile_file;
use kiln_frontend::Options;
use kiln_ir::interp::Tensor;
use kiln_ir::kernel::Storage;
use kiln_ir::{Bindings, Module};

/// The size every symbolic dimension is bound to.
pub const BATCH: u64 = 3;

pub fn inputs_for(module: &Module, function: &str) -> Vec<Tensor> {
    inputs_at(module, function, BATCH)
}

/// Inputs of `function` with every symbolic dimension `batch`
/// ([`kiln::differential::sample_inputs`]).
pub fn inputs_at(module: &Module, function: &str, batch: u64) -> Vec<Tensor> {
    kiln::differential::sample_inputs(module, function, batch).expect("a known function with inputs of a testable size")
}

pub fn bindings_for(module: &Module, function: &str) -> Bindings {
    bindings_at(module, function, BATCH)
}

/// Every symbolic dimension of `function`'s inputs bound to `batch`.
pub fn bindings_at(module: &Module, function: &str, batch: u64) -> Bindings {
    kiln::differential::bindings_at(module, function, batch)
}

pub fn values(s: &Storage) -> Vec<f64> {
    match s {
        Storage::Float(v) => v.clone(),
        Storage::Int(v) => v.iter().map(|&x| x as f64).collect(),
        Storage::Bool(v) => v.iter().map(|&x| f64::from(u8::from(x))).collect(),
    }
}

pub fn compare(function: &str, what: &str, actual: &[Storage], expected: &[Tensor], tolerance: f64, text: &str) {
    assert_eq!(actual.len(), expected.len(), "{function}: output count");
    for (k, (a, e)) in actual.iter().zip(expected).enumerate() {
        let (a, e) = (values(a), e.to_f64_vec());
        assert_eq!(a.len(), e.len(), "{function}: output {k} length");
        for (i, (x, y)) in a.iter().zip(&e).enumerate() {
            let error = if x == y || (x.is_nan() && y.is_nan()) { 0.0 } else { (x - y).abs() / y.abs().max(1.0) };
            assert!(
                error <= tolerance,
                "{function} ({what}): output {k}[{i}] is {x}, the interpreter says {y}\n{text}"
            );
        }
    }
}

pub fn with_step(path: &str) -> Module {
    with_step_set(path, &[])
}

/// [`with_step`] with values for the root model's arguments (`--set`).
#[allow(dead_code)]
pub fn with_step_set(path: &str, args: &[(&str, &str)]) -> Module {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    let args = args.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let compiled = compile_file(&path, &Options { args, ..Options::default() }).unwrap();
    if compiled.train.is_some() { kiln::with_train_step(&compiled).unwrap() } else { compiled.module }
}

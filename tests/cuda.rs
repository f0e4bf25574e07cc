//! The CUDA runtime (feature `cuda`): every function of every example run
//! on GPU 0 against the interpreter (tolerance 1e-4 relative to
//! max(1, |expected|)), and `kiln train --device cuda`. On a machine without
//! a driver or a GPU the runs are skipped, saying why, and what is checked
//! instead is that `--device cuda` fails with that reason.
#![cfg(feature = "cuda")]

mod support;

use std::process::Command;

use kiln_codegen::nvptx::cuda::{CudaPlan, driver_status};
use kiln_ir::interp::{EvalOptions, evaluate};
use kiln_ir::kernel::execute_with;
use support::{bindings_for, compare, inputs_for, with_step};

const TOLERANCE: f64 = 1e-4;

fn kiln(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_kiln")).args(args).current_dir(env!("CARGO_MANIFEST_DIR")).output().unwrap()
}

#[test]
fn examples_on_the_gpu_agree_with_the_interpreter() {
    let gpu = match driver_status() {
        Ok(gpu) => gpu,
        Err(why) => {
            println!("skipping the GPU runs: {why}");
            let o = kiln(&["run", "examples/linear_regression.kiln", "--fn", "forward", "--device", "cuda"]);
            let stderr = String::from_utf8_lossy(&o.stderr);
            assert!(!o.status.success() && stderr.contains(&format!("no CUDA device: {why}")), "{stderr}");
            assert!(CudaPlan::new(&kiln_ir::kernel::parse_plan("plan f {\n}").unwrap()).is_err_and(|e| e == why));
            return;
        }
    };
    println!("running on {gpu}");
    for path in [
        "examples/linear_regression.kiln",
        "examples/softmax_regression.kiln",
        "examples/mlp.kiln",
        "examples/lenet.kiln",
    ] {
        let module = with_step(path);
        for f in &module.functions {
            let bindings = bindings_for(&module, &f.name);
            let plan = kiln_passes::compile_plan(&module, &f.name, &bindings).unwrap().specialize(&bindings);
            let inputs = inputs_for(&module, &f.name);
            let params = kiln_ir::initialize_params(&module, 1);
            let expected = evaluate(&module, &f.name, &inputs, &params, EvalOptions::default()).unwrap();
            let mut gpu = CudaPlan::new(&plan).unwrap_or_else(|e| panic!("{path} {}: {e}", f.name));
            let actual = execute_with(&plan, &kiln_ir::Bindings::new(), &inputs, &params, |_, b| gpu.run(b))
                .unwrap_or_else(|e| panic!("{path} {}: {e}", f.name));
            compare(&f.name, "CUDA", &actual, &expected, TOLERANCE, &plan.to_string());
        }
    }
    let o = kiln(&["train", "examples/linear_regression.kiln", "--device", "cuda", "--epochs", "3", "--batch", "10"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("w = [2.0"), "the book's w = [2, -3.4]:\n{text}");
}

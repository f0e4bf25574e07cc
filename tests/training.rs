//! Training on the reference interpreter: the book's models learn (reduced
//! runs that fit in CI), seeded runs reproduce bit for bit, and bad data
//! and bad checkpoints are clear errors.

use std::path::{Path, PathBuf};
use std::process::Command;

use kiln::train::{TrainOptions, TrainReport, train};

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples").join(name)
}

fn fashion_mnist() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/fashion-mnist")
}

fn options(data: Option<PathBuf>, epochs: usize, batch: usize, limit: Option<usize>) -> TrainOptions {
    TrainOptions { data, epochs, batch, lr: None, seed: 0, limit, test_limit: Some(2000), ..TrainOptions::default() }
}

fn run(file: &str, o: &TrainOptions) -> Result<TrainReport, kiln::Error> {
    train(&example(file), o, |_, _| {}, |_| {})
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kiln-training-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[test]
fn linear_regression_recovers_w_and_b() {
    let report = run("linear_regression.kiln", &options(None, 3, 10, None)).unwrap();
    let w = report.params["w"].to_f64_vec();
    let b = report.params["b"].to_f64_vec();
    assert!((w[0] - 2.0).abs() < 0.01 && (w[1] + 3.4).abs() < 0.01, "w = {w:?}");
    assert!((b[0] - 4.2).abs() < 0.01, "b = {b:?}");
    assert!(report.epochs[2].train_loss < 0.001, "{:?}", report.epochs);
}

/// A reduced Fashion-MNIST run: 8000 training images, 2 epochs. The loss
/// falls and test accuracy on 2000 test images passes 0.70 (the full run
/// reaches 0.83; see the README).
#[test]
fn softmax_regression_learns_fashion_mnist() {
    let report = run("softmax_regression.kiln", &options(Some(fashion_mnist()), 2, 256, Some(8000))).unwrap();
    let (first, last) = (&report.epochs[0], &report.epochs[1]);
    assert!(last.train_loss < first.train_loss, "{:?}", report.epochs);
    let accuracy = last.test_accuracy.unwrap();
    assert!(accuracy > 0.70, "test accuracy {accuracy}");
}

/// The MLP on 4000 images for 2 epochs: loss falls, test accuracy > 0.65.
/// Each epoch ends with a partial batch (4000 = 15 x 256 + 160), and so
/// does the test set (2000 = 7 x 256 + 208): the JIT still compiles the
/// training step and the forward pass once each.
#[test]
fn mlp_learns_fashion_mnist() {
    let report = run("mlp.kiln", &options(Some(fashion_mnist()), 2, 256, Some(4000))).unwrap();
    assert!(report.epochs[1].train_loss < report.epochs[0].train_loss, "{:?}", report.epochs);
    let accuracy = report.epochs[1].test_accuracy.unwrap();
    assert!(accuracy > 0.65, "test accuracy {accuracy}");
    assert_eq!(report.compilations, 2, "train_step and forward, each compiled once");
}

#[test]
fn a_seed_reproduces_a_run_bit_for_bit() {
    let mut o = options(Some(fashion_mnist()), 1, 64, Some(500));
    o.seed = 3;
    let (a, b) = (run("mlp.kiln", &o).unwrap(), run("mlp.kiln", &o).unwrap());
    assert_eq!(a.params, b.params);
    o.seed = 4;
    assert_ne!(run("mlp.kiln", &o).unwrap().params, a.params);
}

#[test]
fn adam_and_momentum_train_too() {
    let dir = scratch("optimizers");
    std::fs::create_dir_all(&dir).unwrap();
    for optimizer in ["adam(lr = 0.05)", "sgd(lr = 0.03, momentum = 0.9)"] {
        let source =
            std::fs::read_to_string(example("linear_regression.kiln")).unwrap().replace("sgd(lr = 0.03)", optimizer);
        let path = dir.join("lr.kiln");
        std::fs::write(&path, source).unwrap();
        let report = train(&path, &options(None, 5, 10, None), |_, _| {}, |_| {}).unwrap();
        let w = report.params["w"].to_f64_vec();
        assert!((w[0] - 2.0).abs() < 0.05 && (w[1] + 3.4).abs() < 0.05, "{optimizer}: w = {w:?}");
    }
}

/// `clip`: the gradients are scaled together so that their global norm is
/// at most `clip`; smaller or zero gradients are left as they are.
#[test]
fn clipping_bounds_the_gradients_global_norm() {
    use kiln_ir::interp::{EvalOptions, Tensor, evaluate};
    let path = scratch("clip.kiln");
    std::fs::write(
        &path,
        "model M {\n    param a: f32[2] = zeros\n    param b: f32[3] = zeros\n    \
         fn forward(x: f32[N, 2]) -> f32[N] { sum(x * a, 1) + sum(b) }\n}\n\
         train M {\n    fn loss(x: f32[N, 2], y: f32[N]) -> f32 { mean((forward(x) - y) ** 2) }\n    \
         optimizer sgd(lr = 1, clip = 0.5)\n}\n",
    )
    .unwrap();
    let module = kiln::compile_file(&path, &kiln_frontend::Options::default()).unwrap().module;
    let params = kiln_ir::initialize_params(&module, 0);
    let vector = |v: &[f64]| {
        Tensor::float(kiln_ir::DType::F32, ndarray::ArrayD::from_shape_vec(vec![v.len()], v.to_vec()).unwrap())
    };
    let step = |a: &[f64], b: &[f64]| -> (Vec<f64>, Vec<f64>) {
        let out =
            evaluate(&module, "apply_gradients", &[vector(a), vector(b)], &params, EvalOptions::default()).unwrap();
        (out[0].to_f64_vec(), out[1].to_f64_vec())
    };
    // Norm 5: scaled by 0.5 / 5.
    let (a, b) = step(&[3.0, 0.0], &[0.0, 4.0, 0.0]);
    assert!((a[0] + 0.3).abs() < 1e-6 && (b[1] + 0.4).abs() < 1e-6, "{a:?} {b:?}");
    // Norm 0.1: as it is.
    let (a, _) = step(&[0.1, 0.0], &[0.0, 0.0, 0.0]);
    assert!((a[0] + 0.1).abs() < 1e-6, "{a:?}");
    let (a, b) = step(&[0.0, 0.0], &[0.0, 0.0, 0.0]);
    assert!(a.iter().chain(&b).all(|v| *v == 0.0), "a zero norm moves nothing: {a:?} {b:?}");
}

fn idx(magic: u32, dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut b = magic.to_be_bytes().to_vec();
    for d in dims {
        b.extend(d.to_be_bytes());
    }
    b.extend_from_slice(data);
    b
}

/// A tiny MNIST-style directory with `labels` as the training labels.
fn tiny_dataset(name: &str, labels: &[u8]) -> PathBuf {
    let dir = scratch(name);
    std::fs::create_dir_all(&dir).unwrap();
    let n = labels.len() as u32;
    let pixels = vec![7u8; labels.len() * 784];
    std::fs::write(dir.join("train-images-idx3-ubyte"), idx(0x803, &[n, 28, 28], &pixels)).unwrap();
    std::fs::write(dir.join("train-labels-idx1-ubyte"), idx(0x801, &[n], labels)).unwrap();
    std::fs::write(dir.join("t10k-images-idx3-ubyte"), idx(0x803, &[n, 28, 28], &pixels)).unwrap();
    std::fs::write(dir.join("t10k-labels-idx1-ubyte"), idx(0x801, &[n], labels)).unwrap();
    dir
}

fn error_of(file: &str, o: &TrainOptions) -> String {
    match run(file, o) {
        Ok(_) => panic!("training {file} should fail"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn bad_data_is_a_clear_error() {
    let missing = error_of("mlp.kiln", &options(Some(PathBuf::from("/no/such/dir")), 1, 8, None));
    assert!(missing.contains("looked for Fashion-MNIST in `/no/such/dir`"), "{missing}");

    let out_of_range = tiny_dataset("labels", &[1, 2, 12, 3]);
    let e = error_of("mlp.kiln", &options(Some(out_of_range), 1, 8, None));
    assert_eq!(e, "label 12 of training example 2 is out of range for a model with 10 classes (0..9)");

    let truncated = tiny_dataset("truncated", &[1, 2, 3]);
    let images = truncated.join("train-images-idx3-ubyte");
    let bytes = std::fs::read(&images).unwrap();
    std::fs::write(&images, &bytes[..bytes.len() - 100]).unwrap();
    let e = error_of("mlp.kiln", &options(Some(truncated), 1, 8, None));
    assert!(e.contains("train-images-idx3-ubyte: truncated or padded"), "{e}");

    let wrong_magic = tiny_dataset("magic", &[1, 2, 3]);
    std::fs::copy(wrong_magic.join("train-labels-idx1-ubyte"), wrong_magic.join("train-images-idx3-ubyte")).unwrap();
    let e = error_of("mlp.kiln", &options(Some(wrong_magic), 1, 8, None));
    assert!(e.contains("wrong magic number 0x00000801: expected 0x00000803"), "{e}");

    let missing_file = tiny_dataset("partial", &[1, 2, 3]);
    std::fs::remove_file(missing_file.join("t10k-labels-idx1-ubyte")).unwrap();
    let e = error_of("mlp.kiln", &options(Some(missing_file), 1, 8, None));
    assert!(e.contains("missing: expected `t10k-labels-idx1-ubyte.gz` or `t10k-labels-idx1-ubyte`"), "{e}");

    // Test images of another size than the training images: refused before
    // any training, naming both files.
    let other_size = tiny_dataset("other_size", &[1, 2, 3]);
    let pixels = vec![7u8; 3 * 56 * 14];
    std::fs::write(other_size.join("t10k-images-idx3-ubyte"), idx(0x803, &[3, 56, 14], &pixels)).unwrap();
    let e = error_of("mlp.kiln", &options(Some(other_size), 1, 8, None));
    assert!(e.contains("t10k-images-idx3-ubyte: images of 56x14, but the training images in"), "{e}");
    assert!(e.contains("train-images-idx3-ubyte are 28x28"), "{e}");

    // A learning rate that is not a positive number.
    for lr in [-0.1, 0.0, f64::NAN] {
        let o = TrainOptions { lr: Some(lr), ..options(None, 1, 8, None) };
        let e = error_of("linear_regression.kiln", &o);
        assert!(e.contains("the learning rate must be a positive number"), "{e}");
    }
}

fn kiln(args: &[&str]) -> (bool, String, String) {
    let o =
        Command::new(env!("CARGO_BIN_EXE_kiln")).args(args).current_dir(env!("CARGO_MANIFEST_DIR")).output().unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn train_saves_a_checkpoint_that_run_loads_and_checks() {
    let data = tiny_dataset("checkpoint", &[0, 1, 2, 3, 4, 5, 6, 7]);
    let (saved, plot) = (scratch("mlp.safetensors"), scratch("mlp.svg"));
    let (ok, out, err) = kiln(&[
        "train",
        "examples/softmax_regression.kiln",
        "--data",
        data.to_str().unwrap(),
        "--epochs",
        "2",
        "--batch",
        "4",
        "--save",
        saved.to_str().unwrap(),
        "--plot",
        plot.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("epoch 2: train loss") && out.contains("saved "), "{out}");
    assert!(std::fs::read_to_string(&plot).unwrap().contains("<svg"), "an SVG plot");

    let params = kiln_runtime::checkpoint::load(&saved, &compiled_module(), |n| !n.starts_with("opt.")).unwrap();
    assert_eq!(params.keys().cloned().collect::<Vec<_>>(), ["b", "w"]);

    let x = scratch("x.npy");
    kiln_runtime::npy::write(&x, &kiln_ir::interp::Tensor::from_f32(&[1, 784], &[0.5; 784])).unwrap();
    let input = format!("x={}", x.display());
    let (ok, out, err) = run_softmax(&input, &saved);
    assert!(ok, "{err}");
    assert!(out.starts_with("output 0: f32[1, 10]"), "{out}");

    // Checkpoints of another model: a missing tensor, a wrong shape or
    // dtype, a tensor the model does not have, a file that is no checkpoint.
    let module = compiled_module();
    let (w, b) = ("w".to_string(), "b".to_string());
    let run_with = |name: &str, change: &dyn Fn(&mut kiln_ir::interp::Params), saved: &[String]| -> String {
        let mut params = kiln_ir::initialize_params(&module, 0);
        change(&mut params);
        let path = scratch(name);
        kiln_runtime::checkpoint::save(&path, &params, saved).unwrap();
        let (ok, _, err) = run_softmax(&input, &path);
        assert!(!ok, "{name} should be rejected");
        err
    };
    let err = run_with("missing.safetensors", &|_| {}, std::slice::from_ref(&w));
    assert!(err.contains("missing tensor `b` (f32[10])"), "{err}");
    let err = run_with(
        "shape.safetensors",
        &|p| drop(p.insert("b".into(), kiln_ir::interp::Tensor::from_f32(&[11], &[0.0; 11]))),
        &[w.clone(), b.clone()],
    );
    assert!(err.contains("tensor `b` has shape [11], the model declares f32[10]"), "{err}");
    let int_b = kiln_ir::interp::Tensor::int(kiln_ir::DType::I32, ndarray::ArrayD::zeros(ndarray::IxDyn(&[10])));
    let err = run_with("dtype.safetensors", &|p| drop(p.insert("b".into(), int_b.clone())), &[w.clone(), b.clone()]);
    assert!(err.contains("tensor `b` is I32, the model declares f32[10]"), "{err}");
    let err = run_with(
        "extra.safetensors",
        &|p| drop(p.insert("fc9.w".into(), kiln_ir::interp::Tensor::from_f32(&[1], &[0.0]))),
        &[w.clone(), b.clone(), "fc9.w".to_string()],
    );
    assert!(err.contains("tensor `fc9.w` is not a parameter of this model (its parameters: `b`, `w`)"), "{err}");
    // Several unknown tensors: all of them, sorted, the same on every run.
    let err = run_with(
        "extras.safetensors",
        &|p| {
            for name in ["zz.w", "fc9.w", "aa.b"] {
                p.insert(name.into(), kiln_ir::interp::Tensor::from_f32(&[1], &[0.0]));
            }
        },
        &[w.clone(), b.clone(), "aa.b".to_string(), "fc9.w".to_string(), "zz.w".to_string()],
    );
    assert!(err.contains("tensors `aa.b`, `fc9.w`, `zz.w` are not parameters"), "{err}");

    let garbage = scratch("garbage.safetensors");
    std::fs::write(&garbage, b"not safetensors").unwrap();
    let (_, _, err) = run_softmax(&input, &garbage);
    assert!(err.contains("not a safetensors file"), "{err}");
}

/// `kiln run` of the softmax regression's forward on `input` with the
/// checkpoint at `params`.
fn run_softmax(input: &str, params: &Path) -> (bool, String, String) {
    let params = params.to_str().unwrap();
    kiln(&["run", "examples/softmax_regression.kiln", "--fn", "forward", "--input", input, "--params", params])
}

fn compiled_module() -> kiln_ir::Module {
    kiln::compile_file(&example("softmax_regression.kiln"), &kiln_frontend::Options::default()).unwrap().module
}

#[test]
fn train_needs_a_train_block() {
    let (ok, _, err) = kiln(&["train", "tests/filetests/ok/lenet.kiln", "--epochs", "1"]);
    assert!(!ok && err.contains("has no `train` block"), "{err}");
}

#[test]
fn the_jit_and_the_interpreter_train_alike() {
    let mut o = options(Some(fashion_mnist()), 1, 100, Some(1000));
    let jit = run("mlp.kiln", &o).unwrap();
    o.backend = kiln::Backend::Interp;
    let interp = run("mlp.kiln", &o).unwrap();
    for (name, a) in &jit.params {
        let error = a.max_relative_error(&interp.params[name]).unwrap();
        assert!(error < 1e-4, "{name}: relative difference {error}");
    }
    let (a, b) = (jit.epochs[0].train_loss, interp.epochs[0].train_loss);
    assert!((a - b).abs() < 1e-4 * b.abs().max(1.0), "losses {a} and {b}");
}

/// `examples/embed` (built by `cargo test` with the other examples)
/// compiles the MLP, trains one epoch on 6000 images and classifies test
/// images through the library's API alone.
#[test]
fn the_embedding_example_trains_and_classifies() {
    let exe = std::env::current_exe().unwrap();
    let embed = exe.parent().and_then(Path::parent).unwrap().join("examples").join("embed");
    assert!(embed.exists(), "{} is built by `cargo test`", embed.display());
    let o = std::process::Command::new(&embed).arg(fashion_mnist()).output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{out}{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.contains("forward(x: f32[N, 784]) -> (f32[N, 10])"), "{out}");
    let accuracy: f64 = out
        .lines()
        .find_map(|l| l.strip_prefix("epoch 1: ").and_then(|l| l.rsplit("test accuracy ").next()))
        .and_then(|a| a.trim().parse().ok())
        .unwrap_or_else(|| panic!("no epoch line: {out}"));
    assert!(accuracy > 0.6, "{out}");
    let correct: usize = out
        .lines()
        .find_map(|l| l.strip_suffix(" of 8 classified correctly"))
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no classification: {out}"));
    assert!(correct >= 4, "{out}");
}

/// A run saved after 2 epochs and resumed for 2 more ends with the same
/// parameters, bit for bit, as one run of 4 epochs (the optimizer's state,
/// the step count and the seed travel in the checkpoint); the checkpoint
/// says where training stood and `kiln run` loads it as the model's.
#[test]
fn a_resumed_run_ends_where_an_uninterrupted_one_does() {
    let data = tiny_dataset("resume", &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]);
    let base = TrainOptions { data: Some(data), epochs: 4, batch: 4, test_limit: Some(12), ..TrainOptions::default() };
    let whole = run("mlp.kiln", &base).unwrap();
    let half = scratch("half.safetensors");
    let first = TrainOptions { epochs: 2, save: Some(half.clone()), ..base.clone() };
    run("mlp.kiln", &first).unwrap();
    let state = kiln_runtime::checkpoint::train_state(&half).unwrap();
    assert_eq!(state, kiln_runtime::checkpoint::TrainState { epoch: 2, steps: 6, seed: 0, batch: 4 });
    let rest = run("mlp.kiln", &TrainOptions { resume: Some(half.clone()), ..base.clone() }).unwrap();
    assert_eq!(rest.resumed_after, Some(2));
    assert_eq!(rest.epochs.iter().map(|e| e.epoch).collect::<Vec<_>>(), [3, 4]);
    assert_eq!(rest.params, whole.params, "4 epochs, and 2 + 2 resumed, bit for bit");
    assert_eq!(rest.epochs[1].train_loss.to_bits(), whole.epochs[3].train_loss.to_bits());

    // Resuming asks for the same seed and for epochs still to do.
    let e = run("mlp.kiln", &TrainOptions { resume: Some(half.clone()), seed: 3, ..base.clone() }).unwrap_err();
    assert!(e.to_string().contains("was saved by a run with seed 0, not 3"), "{e}");
    let e = run("mlp.kiln", &TrainOptions { resume: Some(half.clone()), batch: 3, ..base.clone() }).unwrap_err();
    assert!(e.to_string().contains("with batches of 4, not 3"), "{e}");
    let e = run("mlp.kiln", &TrainOptions { resume: Some(half.clone()), epochs: 2, ..base.clone() }).unwrap_err();
    assert!(e.to_string().contains("has trained 2 epochs already"), "{e}");
    // A checkpoint saved without training state cannot be resumed from.
    let plain = scratch("plain.safetensors");
    kiln_runtime::checkpoint::save(&plain, &whole.params, &whole.model_params).unwrap();
    let e = run("mlp.kiln", &TrainOptions { resume: Some(plain), ..base }).unwrap_err();
    assert!(e.to_string().contains("not a checkpoint saved during training"), "{e}");
}

/// Batch norm's running statistics are model state: the training step
/// updates them, the session keeps them between steps, checkpoints save
/// them under their names, a resumed run continues from them bit for bit,
/// and evaluation (test accuracy) reads them. They are never trained: the
/// optimizer keeps no state for them.
#[test]
fn batch_norm_state_is_kept_saved_and_resumed() {
    let data = tiny_dataset("bn", &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]);
    let base = TrainOptions { data: Some(data), epochs: 2, batch: 4, test_limit: Some(12), ..TrainOptions::default() };
    let whole = run("batchnorm_lenet.kiln", &base).unwrap();
    for (name, fresh) in [("bn1.moving_mean", 0.0), ("bn1.moving_var", 1.0), ("bn4.moving_var", 1.0)] {
        let values = whole.params[name].to_f64_vec();
        assert!(values.iter().all(|v| v.is_finite()) && values.iter().any(|v| *v != fresh), "{name}: {values:?}");
        assert!(whole.model_params.iter().any(|p| p == name), "{name} is saved with the model");
    }
    assert!(!whole.params.contains_key("opt.bn1.moving_mean.velocity"));
    let half = scratch("bn_half.safetensors");
    run("batchnorm_lenet.kiln", &TrainOptions { epochs: 1, save: Some(half.clone()), ..base.clone() }).unwrap();
    let rest = run("batchnorm_lenet.kiln", &TrainOptions { resume: Some(half), ..base.clone() }).unwrap();
    assert_eq!(rest.params, whole.params, "2 epochs, and 1 + 1 resumed, bit for bit");
    assert_eq!(rest.epochs[0].test_accuracy, whole.epochs[1].test_accuracy);
}

/// BatchNorm-LeNet on 6,400 Fashion-MNIST images, one epoch at the book's
/// batch size and learning rate: test accuracy (evaluation mode, on the
/// running statistics) passes 0.65.
#[test]
fn batch_norm_lenet_learns_fashion_mnist() {
    let report = run("batchnorm_lenet.kiln", &options(Some(fashion_mnist()), 1, 128, Some(6400))).unwrap();
    let accuracy = report.epochs[0].test_accuracy.unwrap();
    assert!(accuracy > 0.65, "test accuracy {accuracy}");
}

/// Checkpoint and plot paths are checked before any training: a missing
/// directory, a directory, the model's own source, and one file for both
/// are errors that come at once; checkpoints every K epochs need `--save`;
/// a test limit of 0 leaves a classifier nothing to measure.
#[test]
fn bad_output_paths_fail_before_training() {
    let data = tiny_dataset("paths", &[0, 1, 2, 3]);
    let base = TrainOptions { data: Some(data), epochs: 1, batch: 4, ..TrainOptions::default() };
    let fails = |o: TrainOptions, message: &str| {
        let e = run("softmax_regression.kiln", &o).unwrap_err().to_string();
        assert!(e.contains(message), "{e}");
    };
    let missing = PathBuf::from("/no/such/dir/p.safetensors");
    fails(TrainOptions { save: Some(missing), ..base.clone() }, "is not a directory");
    fails(TrainOptions { save: Some(std::env::temp_dir()), ..base.clone() }, "is a directory");
    let source = example("softmax_regression.kiln");
    fails(TrainOptions { save: Some(source.clone()), ..base.clone() }, "would overwrite the model's source");
    fails(TrainOptions { plot: Some(source), ..base.clone() }, "would overwrite the model's source");
    let both = scratch("both.out");
    fails(TrainOptions { save: Some(both.clone()), plot: Some(both), ..base.clone() }, "would both be written to");
    fails(TrainOptions { checkpoint_every: Some(1), ..base.clone() }, "need a file to save to");
    // A classifier with nothing to test on says so instead of accuracy 0.
    fails(TrainOptions { test_limit: Some(0), ..base.clone() }, "no test examples to measure accuracy on");
    fails(TrainOptions { checkpoint_every: Some(0), save: Some(scratch("zero.st")), ..base }, "every 0 epochs");
}

/// A save replaces the file whole: a failed write (the target is a
/// directory's name collision with a temporary that cannot be created)
/// leaves the previous checkpoint, and no temporary file stays behind.
#[test]
fn a_failed_save_leaves_the_previous_checkpoint() {
    let module = compiled_module();
    let params = kiln_ir::initialize_params(&module, 0);
    let names = vec!["w".to_string(), "b".to_string()];
    let dir = scratch("atomic");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("p.safetensors");
    kiln_runtime::checkpoint::save(&path, &params, &names).unwrap();
    let before = std::fs::read(&path).unwrap();
    // The temporary file's name is taken by a directory: the write fails.
    let blocker = dir.join(format!(".p.safetensors.{}.tmp", std::process::id()));
    std::fs::create_dir_all(blocker.join("inside")).unwrap();
    let changed = kiln_ir::initialize_params(&module, 1);
    assert!(kiln_runtime::checkpoint::save(&path, &changed, &names).is_err());
    assert_eq!(std::fs::read(&path).unwrap(), before, "the previous checkpoint is intact");
    std::fs::remove_dir_all(&blocker).unwrap();
    kiln_runtime::checkpoint::save(&path, &changed, &names).unwrap();
    assert_ne!(std::fs::read(&path).unwrap(), before);
    let left: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left.len(), 1, "no temporary file left: {left:?}");
}

/// `kill -9` at random moments of `kiln train --save P --checkpoint-every 1`
/// leaves at `P` nothing yet or a complete checkpoint, never a partial one;
/// the temporary file a killed save leaves is removed by the next save.
#[test]
fn a_killed_run_leaves_a_complete_checkpoint() {
    let data = tiny_dataset("killed", &[0, 1, 2, 3, 4, 5, 6, 7]);
    let path = scratch("killed.safetensors");
    let module = compiled_module();
    let mut complete = 0;
    for (k, delay_ms) in [400u64, 800, 1200, 1600, 2200, 3000].into_iter().enumerate() {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_kiln"))
            .args(["train", "examples/softmax_regression.kiln", "--data", data.to_str().unwrap()])
            .args(["--epochs", "1000", "--batch", "2", "--checkpoint-every", "1", "--save", path.to_str().unwrap()])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms + 37 * k as u64));
        child.kill().unwrap();
        child.wait().unwrap();
        if path.exists() {
            kiln_runtime::checkpoint::load(&path, &module, |_| true)
                .unwrap_or_else(|e| panic!("after a kill at {delay_ms} ms: {e}"));
            kiln_runtime::checkpoint::train_state(&path).unwrap();
            complete += 1;
        }
    }
    assert!(complete > 0, "some run got to save before it was killed");
    // A temporary left by a process that no longer runs goes with the next save.
    let dir = path.parent().unwrap();
    let stale = dir.join(".killed.safetensors.4194303999.tmp");
    std::fs::write(&stale, b"partial").unwrap();
    let params = kiln_ir::initialize_params(&module, 0);
    let names: Vec<String> = module.params.iter().map(|p| p.name.clone()).collect();
    kiln_runtime::checkpoint::save(&path, &params, &names).unwrap();
    assert!(!stale.exists(), "the stale temporary is removed");
    let leftovers: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with(".killed.safetensors.") && n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "no temporary is left: {leftovers:?}");
}

/// Two runs saving to one path at the same time leave one run's whole
/// checkpoint, never a mix of both: each writes its own temporary file and
/// renames it over the target.
#[test]
fn two_runs_saving_to_one_path_leave_one_whole_checkpoint() {
    let data = tiny_dataset("concurrent", &[0, 1, 2, 3, 4, 5, 6, 7]);
    let path = scratch("shared.safetensors");
    let spawn = |seed: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_kiln"))
            .args(["train", "examples/softmax_regression.kiln", "--data", data.to_str().unwrap(), "--seed", seed])
            .args(["--epochs", "30", "--batch", "2", "--checkpoint-every", "1", "--save", path.to_str().unwrap()])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap()
    };
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| spawn("1"));
        let b = s.spawn(|| spawn("2"));
        (a.join().unwrap(), b.join().unwrap())
    });
    assert!(
        a.status.success() && b.status.success(),
        "{}{}",
        String::from_utf8_lossy(&a.stderr),
        String::from_utf8_lossy(&b.stderr)
    );
    let state = kiln_runtime::checkpoint::train_state(&path).unwrap();
    assert_eq!(state.epoch, 30);
    let params = kiln_runtime::checkpoint::load(&path, &compiled_module(), |_| true).unwrap();
    // The parameters are those of the run whose seed the file records.
    let options = TrainOptions {
        data: Some(data.clone()),
        epochs: 30,
        batch: 2,
        seed: state.seed,
        test_limit: Some(8),
        ..TrainOptions::default()
    };
    let again = run("softmax_regression.kiln", &options).unwrap();
    for (name, value) in &params {
        assert_eq!(value, &again.params[name], "{name} is the seed {} run's", state.seed);
    }
}

/// The images are resized to the model's input size (`--set size=...` on
/// a model whose input is `[N, 1, size, size]`) or to `--resize`; a size
/// that does not fit the model, a zero size and an unknown model argument
/// are clear errors before any training.
#[test]
fn images_are_resized_to_the_models_input() {
    let data = tiny_dataset("resize", &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]);
    let base = TrainOptions { data: Some(data), epochs: 1, batch: 4, test_limit: Some(12), ..TrainOptions::default() };
    let small = TrainOptions { args: vec![("size".into(), "67".into())], ..base.clone() };
    let report = run("alexnet.kiln", &small).unwrap();
    assert_eq!(report.resized_to, Some([67, 67]));
    let asked = run("alexnet.kiln", &TrainOptions { resize: Some([67, 67]), ..small.clone() }).unwrap();
    assert_eq!(asked.params, report.params, "asking for the model's size is the same run");

    let e = error_of("alexnet.kiln", &TrainOptions { resize: Some([40, 40]), ..small.clone() });
    assert!(e.contains("f32[N, 1, 67, 67] does not fit the data: examples have 1600 f32 features"), "{e}");
    let e = error_of("alexnet.kiln", &TrainOptions { resize: Some([0, 67]), ..small.clone() });
    assert!(e.contains("cannot resize images to 0x67"), "{e}");
    let e = error_of("alexnet.kiln", &TrainOptions { args: vec![("width".into(), "3".into())], ..base.clone() });
    assert!(e.contains("model `AlexNet` has no argument `width`") && e.contains("its arguments are size"), "{e}");
    let e = error_of("alexnet.kiln", &TrainOptions { args: vec![("size".into(), "big".into())], ..base });
    assert!(e.contains("--set size=big: not an integer"), "{e}");
}

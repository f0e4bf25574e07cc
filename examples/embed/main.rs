//! Embedding kiln in a Rust program: compile the book's MLP from
//! `examples/mlp.kiln`, list its functions, train it for one epoch on a
//! subset of Fashion-MNIST, and classify test images with the trained
//! parameters, all through the `kiln` library (no command line).
//!
//! ```sh
//! cargo run --release --example embed -- ../shared/data/fashion-mnist
//! ```

use std::path::PathBuf;

use kiln::ir::interp::Tensor;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let data = match std::env::args().nth(1) {
        Some(dir) => PathBuf::from(dir),
        None => root.join("../shared/data/fashion-mnist"),
    };
    let model = root.join("examples/mlp.kiln");

    // Compile: diagnostics would come back as values (`kiln::Error::Diagnostics`).
    let compiled = kiln::compile_file(&model, &kiln::Options::default())?;
    for signature in compiled.functions() {
        println!("{signature}");
    }

    // Train one epoch on 6000 images; the closure sees each epoch's figures.
    let options = kiln::train::TrainOptions {
        data: Some(data.clone()),
        epochs: 1,
        limit: Some(6000),
        test_limit: Some(1000),
        ..kiln::train::TrainOptions::default()
    };
    let report = kiln::train::train(
        &model,
        &options,
        |_, _| {},
        |e| {
            println!(
                "epoch {}: train loss {:.4}, test accuracy {:.4}",
                e.epoch,
                e.train_loss,
                e.test_accuracy.unwrap_or(0.0)
            )
        },
    )?;

    // Classify the first 8 test images with the trained parameters.
    let test = kiln::runtime::dataset::load_image_classification(&data)?.test;
    let n = 8;
    let x = Tensor::from_f32(&[n, test.features], &test.inputs[..n * test.features]);
    let run = kiln::RunOptions { params: Some(report.params), ..kiln::RunOptions::default() };
    let logits = kiln::run(&compiled.module, "forward", &[("x".into(), x)], &run)?;
    let scores = logits[0].to_f64_vec();
    let classes = scores.len() / n;
    let mut correct = 0;
    for (i, row) in scores.chunks(classes).enumerate() {
        let predicted = (0..classes).fold(0, |best, k| if row[k] > row[best] { k } else { best });
        correct += usize::from(predicted as i32 == test.labels[i]);
        println!("image {i}: predicted {predicted}, label {}", test.labels[i]);
    }
    println!("{correct} of {n} classified correctly");
    Ok(())
}

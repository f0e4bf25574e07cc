//! The book's house prices (D2L 5.7) through `kiln train`: the CSV table's
//! preprocessing, K-fold cross-validation measured by log-RMSE, and the
//! submission for the test rows; and the errors of each option misused.

use std::path::{Path, PathBuf};

use kiln::train::{TrainOptions, TrainReport, train};

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/kaggle_house.kiln")
}

fn house_prices() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/kaggle-house")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kiln-house-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn options(epochs: usize) -> TrainOptions {
    TrainOptions { data: Some(house_prices()), epochs, batch: 64, ..TrainOptions::default() }
}

fn run(o: &TrainOptions) -> Result<TrainReport, kiln::Error> {
    train(&example(), o, |_, _| {}, |_| {})
}

/// 5 folds of 20 epochs (the full run is 100; see docs/performance.md):
/// every fold's held-out error falls far below the first epoch's, the
/// mean is already below 0.25, and the submission has one positive price
/// per test row, in the test file's order.
#[test]
fn five_folds_cross_validate_and_write_a_submission() {
    let submission = scratch("submission.csv");
    let report = run(&TrainOptions { folds: Some(5), submission: Some(submission.clone()), ..options(20) }).unwrap();
    assert_eq!(report.epochs.len(), 100);
    for fold in 1..=5 {
        let epochs: Vec<_> = report.epochs.iter().filter(|e| e.fold == Some(fold)).collect();
        let (first, last) = (epochs[0].valid_log_rmse.unwrap(), epochs[19].valid_log_rmse.unwrap());
        assert!(last < first / 5.0, "fold {fold}: {first} then {last}");
        assert!(epochs[19].train_log_rmse.unwrap() < first, "fold {fold}");
    }
    let mean = report.cross_validation.unwrap();
    assert!(mean < 0.25, "mean held-out log rmse {mean}");
    let text = std::fs::read_to_string(&submission).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "Id,SalePrice");
    assert_eq!(lines.len(), 1 + 1459);
    for (k, line) in lines[1..].iter().enumerate() {
        let (id, price) = line.split_once(',').unwrap();
        assert_eq!(id.parse::<usize>().unwrap(), 1461 + k);
        let price: f64 = price.parse().unwrap();
        assert!((10_000.0..2_000_000.0).contains(&price), "line {}: {price}", k + 2);
    }
}

/// Without folds the model trains on every training row and reports the
/// log-RMSE on them; a hidden layer (`--set hidden=16`) trains too.
#[test]
fn one_model_trains_on_every_row() {
    let o = TrainOptions { args: vec![("hidden".into(), "16".into())], ..options(5) };
    let report = run(&o).unwrap();
    let rmse: Vec<f64> = report.epochs.iter().map(|e| e.train_log_rmse.unwrap()).collect();
    assert!(rmse[4] < rmse[0], "{rmse:?}");
    assert!(report.epochs.iter().all(|e| e.valid_log_rmse.is_none() && e.fold.is_none()));
    assert!(report.params.contains_key("hiddens.0.w"));
}

fn error(o: &TrainOptions) -> String {
    run(o).expect_err("should fail").to_string()
}

#[test]
fn misused_options_and_bad_tables_are_clear_errors() {
    let fashion = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/fashion-mnist");
    let cases: Vec<(TrainOptions, &str)> = vec![
        (TrainOptions { folds: Some(1), ..options(1) }, "--folds 1: give between 2 and the 1460 training rows"),
        (
            TrainOptions { folds: Some(5), save: Some(scratch("p.safetensors")), ..options(1) },
            "--folds trains K models, and checkpoints keep one",
        ),
        (TrainOptions { data: Some(fashion.clone()), ..options(1) }, "a regression loss trains on a table"),
        (
            TrainOptions { args: vec![("features".into(), "331".into())], ..options(1) },
            "examples have 330 f32 features (the table's preprocessing; set the model's feature count to 330)",
        ),
        (
            TrainOptions { submission: Some(scratch("same.csv")), plot: Some(scratch("same.csv")), ..options(1) },
            "the plot and the submission would both be written to",
        ),
    ];
    for (o, expected) in cases {
        let e = error(&o);
        assert!(e.contains(expected), "expected `{expected}` in: {e}");
    }
    let mlp = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/mlp.kiln");
    let classify = |o: TrainOptions| train(&mlp, &o, |_, _| {}, |_| {}).expect_err("should fail").to_string();
    let e = classify(TrainOptions { data: Some(fashion.clone()), folds: Some(5), limit: Some(10), ..options(1) });
    assert!(e.contains("--folds cross-validates a regression on a table"), "{e}");
    let e = classify(TrainOptions { data: Some(fashion), submission: Some(scratch("s.csv")), ..options(1) });
    assert!(e.contains("--submission writes predictions for a table's test rows"), "{e}");

    // A table whose label is not positive cannot be measured in logs.
    let dir = scratch("nonpositive");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("t_train.csv"), "Id,a,b,price\n1,1,2,100\n2,3,4,0\n").unwrap();
    std::fs::write(dir.join("t_test.csv"), "Id,a,b\n3,1,2\n").unwrap();
    let o = TrainOptions { data: Some(dir), args: vec![("features".into(), "2".into())], ..options(1) };
    let e = error(&o);
    assert!(e.contains("`price` of training row 2 is 0: log-RMSE needs positive labels"), "{e}");
}

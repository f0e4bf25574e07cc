//! Tables in CSV files, preprocessed as the book does for the house prices
//! (D2L section 5.7): a training file and a test file with the same columns
//! but the test file lacking the label. An `Id` column, if first, is kept
//! aside for the submission. Over both files together, a numeric column is
//! standardized (mean 0, sample standard deviation 1) and its missing values
//! set to 0; any other column becomes one indicator per value seen, in
//! sorted order, plus one for "missing" (pandas' `get_dummies(dummy_na =
//! True)`). Numeric columns come first, then the indicators, each group in
//! the files' column order: the layout `pd.get_dummies` gives.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::dataset::Dataset;
use crate::idx::DataError;

/// The cells pandas reads as missing by default.
const MISSING: &[&str] = &[
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>", "N/A", "NA",
    "NULL", "NaN", "None", "n/a", "nan", "null",
];

/// A preprocessed table: the training rows with their label as the target,
/// the test rows without one.
#[derive(Clone, Debug)]
pub struct Table {
    pub train: Dataset,
    pub test: Dataset,
    /// The name of the id column (`Id`), if the files start with one.
    pub id_column: Option<String>,
    /// Each test row's id as the file writes it (its row number from 1 when
    /// there is no id column).
    pub test_ids: Vec<String>,
    /// The label's column name (`SalePrice`).
    pub label: String,
    /// The name of each feature the rows hold: a numeric column's own name,
    /// or `column=value` and `column=missing` for the indicators.
    pub features: Vec<String>,
}

/// The training and test files of a table directory: the one file whose
/// name ends in `train.csv` and the one ending in `test.csv`.
pub fn table_files(dir: &Path) -> Result<(PathBuf, PathBuf), DataError> {
    let entries = std::fs::read_dir(dir).map_err(|e| DataError::new(dir, format!("cannot list: {e}")))?;
    let mut names: Vec<String> = entries.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect();
    names.sort();
    let pick = |suffix: &str| -> Result<PathBuf, DataError> {
        let found: Vec<&String> = names.iter().filter(|n| n.ends_with(suffix)).collect();
        match found.as_slice() {
            [one] => Ok(dir.join(one)),
            [] => Err(DataError::new(dir, format!("no file whose name ends in `{suffix}`"))),
            many => Err(DataError::new(
                dir,
                format!(
                    "{} files end in `{suffix}` ({}): keep one",
                    many.len(),
                    many.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                ),
            )),
        }
    };
    Ok((pick("train.csv")?, pick("test.csv")?))
}

/// Whether `dir` holds a table (a file ending in `train.csv`).
pub fn is_table_dir(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries.filter_map(Result::ok).any(|e| e.file_name().to_str().is_some_and(|n| n.ends_with("train.csv")))
    })
}

/// A CSV file's header and rows, every row as long as the header.
struct Csv {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

fn read_csv(path: &Path) -> Result<Csv, DataError> {
    let bytes = crate::files::read_checked(path, crate::files::MAX_FILE_BYTES).map_err(|e| DataError::new(path, e))?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(DataError::new(path, "empty: expected a header line of column names"));
    }
    let at = |pos: Option<&csv::Position>| pos.map_or_else(String::new, |p| format!("line {}: ", p.line()));
    let explain = |e: csv::Error| -> DataError {
        let message = match e.kind() {
            csv::ErrorKind::Utf8 { pos, err } => {
                format!("{}field {} is not valid UTF-8", at(pos.as_ref()), err.field() + 1)
            }
            csv::ErrorKind::UnequalLengths { pos, expected_len, len } => {
                format!("{}{len} fields, but the header has {expected_len}", at(pos.as_ref()))
            }
            _ => e.to_string(),
        };
        DataError::new(path, message)
    };
    let mut reader = csv::ReaderBuilder::new().has_headers(true).from_reader(&bytes[..]);
    let header: Vec<String> = reader.headers().map_err(explain)?.iter().map(str::to_string).collect();
    let mut seen = BTreeSet::new();
    if let Some(twice) = header.iter().find(|h| !seen.insert(h.as_str())) {
        return Err(DataError::new(path, format!("the header names the column `{twice}` twice")));
    }
    let mut rows = Vec::new();
    for record in reader.records() {
        rows.push(record.map_err(explain)?.iter().map(str::to_string).collect());
    }
    if rows.is_empty() {
        return Err(DataError::new(path, "no rows after the header"));
    }
    Ok(Csv { header, rows })
}

/// How one column becomes features.
enum Encoding {
    /// Standardized: `(x - mean) / std`, missing as 0.
    Numeric { mean: f64, std: f64 },
    /// One indicator per value, then one for missing.
    Categorical { values: Vec<String> },
}

/// Reads and preprocesses the table in `dir` (see the module's comment).
pub fn load_table(dir: &Path) -> Result<Table, DataError> {
    let (train_path, test_path) = table_files(dir)?;
    let (train, test) = (read_csv(&train_path)?, read_csv(&test_path)?);
    let extra: Vec<&String> = train.header.iter().filter(|h| !test.header.contains(h)).collect();
    let label = match extra.as_slice() {
        [one] => (*one).clone(),
        [] => {
            return Err(DataError::new(
                &test_path,
                format!("has every column of {}: no label to predict", train_path.display()),
            ));
        }
        many => {
            return Err(DataError::new(
                &test_path,
                format!(
                    "lacks {} columns of {} ({}): the test file lacks only the label",
                    many.len(),
                    train_path.display(),
                    many.iter().map(|s| format!("`{s}`")).collect::<Vec<_>>().join(", ")
                ),
            ));
        }
    };
    if let Some(unknown) = test.header.iter().find(|h| !train.header.contains(h)) {
        return Err(DataError::new(
            &test_path,
            format!("has a column `{unknown}` that {} lacks", train_path.display()),
        ));
    }
    let id_column = train.header.first().filter(|h| h.eq_ignore_ascii_case("id") && **h != label).cloned();
    // Feature columns in the training file's order, with their index in each file.
    let columns: Vec<(String, usize, usize)> = train
        .header
        .iter()
        .enumerate()
        .filter(|(_, h)| **h != label && Some(*h) != id_column.as_ref())
        .map(|(i, h)| (h.clone(), i, test.header.iter().position(|t| t == h).unwrap_or(0)))
        .collect();
    let label_at = train.header.iter().position(|h| *h == label).unwrap_or(0);
    let targets = train
        .rows
        .iter()
        .enumerate()
        .map(|(r, row)| match row[label_at].trim().parse::<f64>() {
            Ok(v) if v.is_finite() => Ok(v as f32),
            _ => Err(DataError::new(
                &train_path,
                format!("line {}: the label `{label}` is `{}`, not a number", r + 2, row[label_at]),
            )),
        })
        .collect::<Result<Vec<f32>, DataError>>()?;

    let cells = |c: usize| -> Vec<&str> {
        let (_, train_at, test_at) = &columns[c];
        train.rows.iter().map(|r| r[*train_at].as_str()).chain(test.rows.iter().map(|r| r[*test_at].as_str())).collect()
    };
    let missing = |cell: &str| MISSING.contains(&cell);
    // `inf` and `NaN` parse as numbers in Rust but are not data here.
    let number = |cell: &str| cell.trim().parse::<f64>().ok().filter(|v| v.is_finite());
    let mut encodings = Vec::with_capacity(columns.len());
    for c in 0..columns.len() {
        let values = cells(c);
        let present: Vec<&str> = values.iter().copied().filter(|v| !missing(v)).collect();
        let numbers: Option<Vec<f64>> = present.iter().map(|v| number(v)).collect();
        encodings.push(match numbers {
            Some(xs) if !xs.is_empty() => {
                let n = xs.len() as f64;
                let mean = xs.iter().sum::<f64>() / n;
                let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
                Encoding::Numeric { mean, std: var.sqrt() }
            }
            _ => {
                let set: BTreeSet<&str> = present.into_iter().collect();
                Encoding::Categorical { values: set.into_iter().map(str::to_string).collect() }
            }
        });
    }
    // Numeric columns first, then the indicators: pandas' layout.
    let order: Vec<usize> = (0..columns.len())
        .filter(|&c| matches!(encodings[c], Encoding::Numeric { .. }))
        .chain((0..columns.len()).filter(|&c| matches!(encodings[c], Encoding::Categorical { .. })))
        .collect();
    let mut features = Vec::new();
    for &c in &order {
        let name = &columns[c].0;
        match &encodings[c] {
            Encoding::Numeric { .. } => features.push(name.clone()),
            Encoding::Categorical { values } => {
                features.extend(values.iter().map(|v| format!("{name}={v}")));
                features.push(format!("{name}=missing"));
            }
        }
    }
    let encode = |rows: &[Vec<String>], at: &dyn Fn(usize) -> usize| -> Vec<f32> {
        let mut out = Vec::with_capacity(rows.len() * features.len());
        for row in rows {
            for &c in &order {
                let cell = row[at(c)].as_str();
                match &encodings[c] {
                    Encoding::Numeric { mean, std } => {
                        let z = match number(cell) {
                            Some(x) if !missing(cell) => (x - mean) / std,
                            _ => 0.0,
                        };
                        out.push(if z.is_finite() { z as f32 } else { 0.0 });
                    }
                    Encoding::Categorical { values } => {
                        let hot =
                            if missing(cell) { values.len() } else { values.partition_point(|v| v.as_str() < cell) };
                        out.extend((0..=values.len()).map(|k| if k == hot { 1.0 } else { 0.0 }));
                    }
                }
            }
        }
        out
    };
    let train_inputs = encode(&train.rows, &|c| columns[c].1);
    let test_inputs = encode(&test.rows, &|c| columns[c].2);
    let test_ids = match &id_column {
        Some(id) => {
            let at = test.header.iter().position(|h| h == id).unwrap_or(0);
            test.rows.iter().map(|r| r[at].clone()).collect()
        }
        None => (1..=test.rows.len()).map(|i| i.to_string()).collect(),
    };
    let set = |inputs: Vec<f32>, targets: Vec<f32>| Dataset {
        features: features.len(),
        inputs,
        labels: Vec::new(),
        targets,
        image: None,
    };
    Ok(Table {
        train: set(train_inputs, targets),
        test: set(test_inputs, Vec::new()),
        id_column,
        test_ids,
        label,
        features: features.clone(),
    })
}

/// Writes predictions for the test rows as the competition wants them:
/// `Id,SalePrice` and one line per row.
pub fn write_submission(path: &Path, table: &Table, predictions: &[f64]) -> Result<(), DataError> {
    if predictions.len() != table.test_ids.len() {
        return Err(DataError::new(
            path,
            format!("{} predictions for {} test rows", predictions.len(), table.test_ids.len()),
        ));
    }
    // Through the CSV writer, so that an id with a comma is quoted.
    let mut writer = csv::Writer::from_writer(Vec::new());
    let fail = |e: csv::Error| DataError::new(path, format!("cannot write: {e}"));
    writer.write_record([table.id_column.as_deref().unwrap_or("Id"), table.label.as_str()]).map_err(fail)?;
    for (id, p) in table.test_ids.iter().zip(predictions) {
        writer.write_record([id.as_str(), p.to_string().as_str()]).map_err(fail)?;
    }
    let bytes = writer.into_inner().map_err(|e| DataError::new(path, format!("cannot write: {e}")))?;
    std::fs::write(path, bytes).map_err(|e| DataError::new(path, format!("cannot write: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_with(name: &str, train: &str, test: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("kiln-table-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("x_train.csv"), train).unwrap();
        std::fs::write(dir.join("x_test.csv"), test).unwrap();
        dir
    }

    #[test]
    fn numbers_are_standardized_over_both_files_and_words_become_indicators() {
        let dir = dir_with("ok", "Id,a,kind,price\n1,1,x,10\n2,NA,y,20\n", "Id,a,kind\n3,3,NA\n4,5,x\n");
        let t = load_table(&dir).unwrap();
        assert_eq!(t.features, ["a", "kind=x", "kind=y", "kind=missing"]);
        assert_eq!(t.label, "price");
        assert_eq!(t.test_ids, ["3", "4"]);
        assert_eq!(t.train.targets, [10.0, 20.0]);
        // a over both files: 1, 3, 5 (one missing): mean 3, sample std 2.
        assert_eq!(t.train.inputs, [-1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0]);
        assert_eq!(t.test.inputs, [0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0]);
    }

    #[test]
    fn bad_files_say_what_is_wrong_and_where() {
        let cases = [
            ("ragged", "Id,a,p\n1,2,3\n2,3\n", "Id,a\n1,2\n", "line 3: 2 fields, but the header has 3"),
            ("nolabel", "Id,a\n1,2\n", "Id,a\n1,2\n", "no label to predict"),
            ("twolabels", "Id,a,p,q\n1,2,3,4\n", "Id,a\n1,2\n", "lacks 2 columns"),
            ("unknown", "Id,a,p\n1,2,3\n", "Id,a,b\n1,2,3\n", "has a column `b`"),
            ("badlabel", "Id,a,p\n1,2,cheap\n", "Id,a\n1,2\n", "line 2: the label `p` is `cheap`, not a number"),
            ("empty", "", "Id,a\n1,2\n", "empty: expected a header line"),
            ("norows", "Id,a,p\n", "Id,a\n1,2\n", "no rows after the header"),
            ("twice", "Id,a,a,p\n1,2,3,4\n", "Id,a\n1,2\n", "names the column `a` twice"),
        ];
        for (name, train, test, expected) in cases {
            let e = load_table(&dir_with(name, train, test)).expect_err(name).to_string();
            assert!(e.contains(expected), "{name}: {e}");
        }
        let dir = dir_with("utf8", "Id,a,p\n1,2,3\n", "Id,a\n1,2\n");
        std::fs::write(dir.join("x_train.csv"), b"Id,a,p\n1,\xff,3\n").unwrap();
        let e = load_table(&dir).unwrap_err().to_string();
        assert!(e.contains("line 2: field 2 is not valid UTF-8"), "{e}");
    }

    #[test]
    fn the_shipped_house_prices_have_the_books_shape() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/kaggle-house");
        if !dir.is_dir() {
            panic!("{} is missing: the shipped data belongs beside the checkout", dir.display());
        }
        let t = load_table(&dir).unwrap();
        assert_eq!((t.train.len(), t.test.len()), (1460, 1459));
        assert_eq!(t.label, "SalePrice");
        assert_eq!(t.test_ids.first().map(String::as_str), Some("1461"));
        // 36 numeric columns (MSSubClass among them) and 43 categorical ones.
        assert_eq!(t.features.iter().filter(|f| !f.contains('=')).count(), 36);
        assert_eq!(t.features.iter().filter(|f| f.ends_with("=missing")).count(), 43);
        assert_eq!(t.train.targets[0], 208_500.0);
        // What the book's pandas code (`benches/house_prices.py`) computes:
        // 330 features, the first row starting with these, and these sums.
        assert_eq!(t.features.len(), 330);
        let first = [0.067_319_88, -0.184_442_62, -0.217_841_37, 0.646_072_7, -0.507_197_3];
        for (k, (ours, pandas)) in t.train.inputs.iter().zip(first).enumerate() {
            assert!((f64::from(*ours) - pandas).abs() < 1e-6, "feature {k}: {ours} against {pandas}");
        }
        let sum = |d: &Dataset| d.inputs.iter().map(|&v| f64::from(v)).sum::<f64>();
        assert!((sum(&t.train) - 63_276.831_579).abs() < 1e-2, "{}", sum(&t.train));
        assert!((sum(&t.test) - 62_240.168_421).abs() < 1e-2, "{}", sum(&t.test));
    }
}

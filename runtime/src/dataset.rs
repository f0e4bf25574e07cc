//! Data sets in memory and minibatches: image classification data read from
//! IDX files (pixels scaled to [0, 1]), and the book's synthetic linear
//! regression data. Batches are reshuffled every epoch from the seed, and
//! the last partial batch is kept.

use std::path::{Path, PathBuf};

use kiln_ir::random;

use crate::idx::{DataError, read_images, read_labels};

/// Examples with `features` floats each and an integer label or a float target.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Dataset {
    pub features: usize,
    pub inputs: Vec<f32>,
    pub labels: Vec<i32>,
    pub targets: Vec<f32>,
    /// The images' height and width, when the examples are images.
    pub image: Option<[usize; 2]>,
}

impl Dataset {
    pub fn len(&self) -> usize {
        self.inputs.len().checked_div(self.features).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The first `n` examples (all if there are fewer).
    pub fn take(&self, n: usize) -> Dataset {
        let n = n.min(self.len());
        Dataset {
            features: self.features,
            inputs: self.inputs[..n * self.features].to_vec(),
            labels: self.labels.get(..n).map_or_else(Vec::new, <[i32]>::to_vec),
            targets: self.targets.get(..n).map_or_else(Vec::new, <[f32]>::to_vec),
            image: self.image,
        }
    }

    /// The examples at `indices`, in that order.
    pub fn select(&self, indices: &[usize]) -> Dataset {
        let pick = |v: &[f32]| if v.is_empty() { Vec::new() } else { indices.iter().map(|&i| v[i]).collect() };
        Dataset {
            features: self.features,
            inputs: self.gather_inputs(indices),
            labels: if self.labels.is_empty() { Vec::new() } else { indices.iter().map(|&i| self.labels[i]).collect() },
            targets: pick(&self.targets),
            image: self.image,
        }
    }

    /// Fold `fold` of `k` as the book's `k_fold_data` cuts it: the rows
    /// `fold * size .. (fold + 1) * size` held out (`size` = len / k,
    /// rounded down), the rest to train on; the last `len % k` rows are
    /// never held out.
    pub fn k_fold(&self, k: usize, fold: usize) -> (Dataset, Dataset) {
        let size = self.len() / k.max(1);
        let held: std::ops::Range<usize> = fold * size..(fold + 1) * size;
        let rest: Vec<usize> = (0..self.len()).filter(|i| !held.contains(i)).collect();
        (self.select(&rest), self.select(&held.collect::<Vec<_>>()))
    }

    /// The examples of `epoch` split into batches of at most `batch`, in an
    /// order drawn from `seed` and the epoch.
    pub fn batches(&self, batch: usize, seed: u64, epoch: u64) -> Vec<Vec<usize>> {
        shuffled_batches(self.len(), batch, seed, epoch)
    }

    /// The inputs of the examples at `indices`, row after row.
    pub fn gather_inputs(&self, indices: &[usize]) -> Vec<f32> {
        indices.iter().flat_map(|&i| self.inputs[i * self.features..(i + 1) * self.features].iter().copied()).collect()
    }

    /// The images at `indices` resized to `to` (height, width), bilinearly
    /// as the book's `Resize` does, one after another; the inputs as they
    /// are when the examples are not images or already that size.
    pub fn gather_resized(&self, indices: &[usize], to: [usize; 2]) -> Vec<f32> {
        match self.image {
            Some(from) if from != to => indices
                .iter()
                .flat_map(|&i| {
                    crate::resize::resize_bilinear(&self.inputs[i * self.features..(i + 1) * self.features], from, to)
                })
                .collect(),
            _ => self.gather_inputs(indices),
        }
    }
}

/// The indices `0..len` in an order drawn from `seed` and `epoch`, split
/// into batches of at most `batch`.
pub fn shuffled_batches(len: usize, batch: usize, seed: u64, epoch: u64) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..len).collect();
    for i in (1..order.len()).rev() {
        let j = (random::bits(seed, 0x5eed_0000 + epoch, i as u64) % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    order.chunks(batch.max(1)).map(<[usize]>::to_vec).collect()
}

/// A training and a test set.
pub struct Split {
    pub train: Dataset,
    pub test: Dataset,
}

/// The four standard files of an MNIST-style directory, each as `.gz` or raw.
pub fn load_image_classification(dir: &Path) -> Result<Split, DataError> {
    if !dir.is_dir() {
        return Err(DataError::new(dir, "not a directory"));
    }
    let find = |stem: &str| -> Result<PathBuf, DataError> {
        for name in [format!("{stem}.gz"), stem.to_string()] {
            let p = dir.join(&name);
            if p.is_file() {
                return Ok(p);
            }
        }
        Err(DataError::new(
            &dir.join(format!("{stem}.gz")),
            format!("missing: expected `{stem}.gz` or `{stem}` in this directory"),
        ))
    };
    // Each set, and its images' height and width with the file they came from.
    let load = |images: &str, labels: &str| -> Result<(Dataset, [usize; 2], PathBuf), DataError> {
        let (image_path, label_path) = (find(images)?, find(labels)?);
        let images = read_images(&image_path)?;
        let labels = read_labels(&label_path)?;
        if images.dims[0] != labels.dims[0] {
            return Err(DataError::new(
                &label_path,
                format!("{} labels for {} images in {}", labels.dims[0], images.dims[0], image_path.display()),
            ));
        }
        let set = Dataset {
            features: images.dims[1] * images.dims[2],
            inputs: images.data.iter().map(|&p| f32::from(p) / 255.0).collect(),
            labels: labels.data.iter().map(|&l| i32::from(l)).collect(),
            targets: Vec::new(),
            image: Some([images.dims[1], images.dims[2]]),
        };
        Ok((set, [images.dims[1], images.dims[2]], image_path))
    };
    let (train, train_size, train_path) = load("train-images-idx3-ubyte", "train-labels-idx1-ubyte")?;
    let (test, test_size, test_path) = load("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")?;
    if test_size != train_size {
        return Err(DataError::new(
            &test_path,
            format!(
                "images of {}x{}, but the training images in {} are {}x{}",
                test_size[0],
                test_size[1],
                train_path.display(),
                train_size[0],
                train_size[1]
            ),
        ));
    }
    Ok(Split { train, test })
}

/// The book's synthetic data: `y = X w + b + noise` with `X` standard
/// normal, `w = [2, -3.4]`, `b = 4.2` and noise of standard deviation 0.01.
pub fn synthetic_linear(examples: usize, seed: u64) -> Dataset {
    let (w, b) = ([2.0f64, -3.4], 4.2f64);
    let mut inputs = Vec::with_capacity(examples * 2);
    let mut targets = Vec::with_capacity(examples);
    for i in 0..examples as u64 {
        let x = [random::normal(seed, 1, 2 * i), random::normal(seed, 1, 2 * i + 1)];
        let y = x[0] * w[0] + x[1] * w[1] + b + 0.01 * random::normal(seed, 2, i);
        inputs.extend(x.iter().map(|&v| v as f32));
        targets.push(y as f32);
    }
    Dataset { features: 2, inputs, labels: Vec::new(), targets, image: None }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_cover_every_example_once_and_reshuffle() {
        let d = synthetic_linear(10, 1);
        let b = d.batches(4, 7, 0);
        assert_eq!(b.iter().map(Vec::len).collect::<Vec<_>>(), vec![4, 4, 2], "the last partial batch is kept");
        let mut all: Vec<usize> = b.concat();
        all.sort_unstable();
        assert_eq!(all, (0..10).collect::<Vec<_>>());
        assert_ne!(d.batches(4, 7, 0), d.batches(4, 7, 1), "each epoch is reshuffled");
        assert_eq!(d.batches(4, 7, 3), d.batches(4, 7, 3), "and reproducibly");
    }

    #[test]
    fn folds_hold_out_each_kth_once() {
        let d = synthetic_linear(11, 2);
        let mut held = Vec::new();
        for fold in 0..5 {
            let (train, valid) = d.k_fold(5, fold);
            assert_eq!((train.len(), valid.len()), (9, 2));
            held.extend(valid.targets.clone());
            assert!(valid.targets.iter().all(|t| !train.targets.contains(t)), "no row both trains and is held out");
        }
        assert_eq!(held, d.targets[..10], "the folds hold out rows 0..10 in order; row 10 always trains");
    }

    #[test]
    fn synthetic_data_follows_the_books_line() {
        let d = synthetic_linear(1000, 3);
        let mean_residual: f64 = (0..1000)
            .map(|i| {
                let x = &d.inputs[2 * i..2 * i + 2];
                f64::from(d.targets[i]) - (2.0 * f64::from(x[0]) - 3.4 * f64::from(x[1]) + 4.2)
            })
            .map(f64::abs)
            .sum::<f64>()
            / 1000.0;
        assert!(mean_residual < 0.02, "noise of std 0.01: mean |residual| {mean_residual}");
    }

    #[test]
    fn a_directory_without_the_files_says_which_file_it_wanted() {
        let dir = std::env::temp_dir().join(format!("kiln-empty-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let e = load_image_classification(&dir).err().expect("no files");
        assert!(
            e.to_string().contains("missing: expected `train-images-idx3-ubyte.gz` or `train-images-idx3-ubyte`"),
            "{e}"
        );
    }
}

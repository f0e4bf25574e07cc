//! Checkpoints: parameters saved in safetensors, named by their path in the
//! model (`fc1.w`), and loaded back with every tensor checked against the
//! module's declarations. A training checkpoint also holds the optimizer's
//! state (`opt.*`) and, in the file's metadata, where training stood
//! ([`TrainState`]), so a run can resume from it.
//!
//! Guarantee: a save never leaves a partial file at the target. The bytes
//! go to a temporary file in the same directory, are flushed to disk and
//! renamed over the target, so a kill or a full disk leaves the previous
//! checkpoint or the new one.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use kiln_ir::interp::{Data, Params, Tensor};
use kiln_ir::{DType, Module};
use ndarray::{ArrayD, IxDyn};
use safetensors::{Dtype, SafeTensors, tensor::TensorView};

/// Why a checkpoint could not be saved or used.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct CheckpointError {
    pub path: PathBuf,
    pub message: String,
}

fn error(path: &Path, message: impl Into<String>) -> CheckpointError {
    CheckpointError { path: path.to_path_buf(), message: message.into() }
}

/// Where a training run stood when its checkpoint was saved: enough, with
/// the parameters and the optimizer's state, to continue it as if it had
/// not stopped (shuffling and dropout are keyed by the seed, the epoch and
/// the step).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrainState {
    /// Epochs completed.
    pub epoch: u64,
    /// Steps completed.
    pub steps: u64,
    /// The run's seed.
    pub seed: u64,
    /// The run's batch size (shuffling and the step count depend on it).
    pub batch: u64,
}

impl TrainState {
    fn to_metadata(self) -> HashMap<String, String> {
        HashMap::from([
            ("kiln.epoch".to_string(), self.epoch.to_string()),
            ("kiln.steps".to_string(), self.steps.to_string()),
            ("kiln.seed".to_string(), self.seed.to_string()),
            ("kiln.batch".to_string(), self.batch.to_string()),
        ])
    }

    fn from_metadata(path: &Path, m: &HashMap<String, String>) -> Result<TrainState, CheckpointError> {
        let field = |key: &str| -> Result<u64, CheckpointError> {
            let value = m.get(key).ok_or_else(|| {
                error(path, format!("no `{key}` in its metadata: not a checkpoint saved during training"))
            })?;
            value.parse().map_err(|_| error(path, format!("`{key}` is `{value}`, not a count")))
        };
        Ok(TrainState {
            epoch: field("kiln.epoch")?,
            steps: field("kiln.steps")?,
            seed: field("kiln.seed")?,
            batch: field("kiln.batch")?,
        })
    }
}

/// Whether a checkpoint can be written at `path`: its directory exists and
/// takes new files, and `path` is not a directory. Checked before training
/// starts, so that a bad path does not cost the run.
pub fn check_target(path: &Path) -> Result<(), CheckpointError> {
    if path.is_dir() {
        return Err(error(path, "is a directory: give a file name"));
    }
    let dir = directory_of(path);
    if !dir.is_dir() {
        return Err(error(path, format!("cannot write here: `{}` is not a directory", dir.display())));
    }
    let probe = temporary(path).with_extension("probe");
    std::fs::File::create(&probe)
        .and_then(|_| std::fs::remove_file(&probe))
        .map_err(|e| error(path, format!("cannot write in `{}`: {e}", dir.display())))
}

fn directory_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// A temporary file beside `path`, unique to this process (saves within a
/// process take turns, [`SAVING`]).
fn temporary(path: &Path) -> PathBuf {
    let name = path.file_name().map_or_else(|| "checkpoint".into(), |n| n.to_string_lossy().to_string());
    directory_of(path).join(format!(".{name}.{}.tmp", std::process::id()))
}

/// Removes the temporary files of earlier saves to `path` by processes that
/// no longer run (a run killed while writing leaves its `.NAME.PID.tmp`
/// behind). Where whether a process runs cannot be told (no `/proc`),
/// nothing is removed.
fn remove_stale_temporaries(path: &Path) {
    let Some(name) = path.file_name().map(|n| n.to_string_lossy().to_string()) else { return };
    if !Path::new("/proc/self").exists() {
        return;
    }
    let prefix = format!(".{name}.");
    let Ok(entries) = std::fs::read_dir(directory_of(path)) else { return };
    for entry in entries.flatten() {
        let file = entry.file_name().to_string_lossy().to_string();
        let pid =
            file.strip_prefix(&prefix).and_then(|rest| rest.strip_suffix(".tmp")).and_then(|p| p.parse::<u32>().ok());
        if let Some(pid) = pid
            && pid != std::process::id()
            && !Path::new(&format!("/proc/{pid}")).exists()
        {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Held while a save writes its temporary file and renames it.
static SAVING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Writes `bytes` to `path` so that `path` holds either what it held before
/// or all of `bytes`: a temporary file, flushed, renamed over it. The
/// temporaries that killed runs left beside `path` are removed first.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), CheckpointError> {
    // Threads of one process share its temporary file name: one at a time.
    let _turn = SAVING.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    remove_stale_temporaries(path);
    let tmp = temporary(path);
    let written = (|| -> std::io::Result<()> {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        // The rename itself reaches the disk with the directory.
        if let Ok(dir) = std::fs::File::open(directory_of(path)) {
            let _ = dir.sync_all();
        }
        Ok(())
    })();
    written.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        error(path, format!("cannot write: {e}"))
    })
}

/// Saves the parameters named in `names`.
pub fn save(path: &Path, params: &Params, names: &[String]) -> Result<(), CheckpointError> {
    save_with(path, params, names, None)
}

/// Saves the parameters named in `names` (the model's and the optimizer's)
/// with where training stood.
pub fn save_training(path: &Path, params: &Params, names: &[String], state: TrainState) -> Result<(), CheckpointError> {
    save_with(path, params, names, Some(state))
}

fn save_with(path: &Path, params: &Params, names: &[String], state: Option<TrainState>) -> Result<(), CheckpointError> {
    let mut buffers: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    for name in names {
        let t = params.get(name).ok_or_else(|| error(path, format!("no value for parameter `{name}`")))?;
        let (dtype, bytes): (Dtype, Vec<u8>) = match (&t.data, t.dtype) {
            (Data::Float(a), DType::F32) => (Dtype::F32, a.iter().flat_map(|&x| (x as f32).to_le_bytes()).collect()),
            (Data::Float(a), _) => (Dtype::F64, a.iter().flat_map(|&x| x.to_le_bytes()).collect()),
            (Data::Int(a), DType::I32) => (Dtype::I32, a.iter().flat_map(|&x| (x as i32).to_le_bytes()).collect()),
            (Data::Int(a), _) => (Dtype::I64, a.iter().flat_map(|&x| x.to_le_bytes()).collect()),
            (Data::Bool(a), _) => (Dtype::BOOL, a.iter().map(|&x| u8::from(x)).collect()),
        };
        buffers.push((name.clone(), dtype, t.shape().to_vec(), bytes));
    }
    let views: Vec<(String, TensorView<'_>)> = buffers
        .iter()
        .map(|(n, d, s, b)| TensorView::new(*d, s.clone(), b).map(|v| (n.clone(), v)))
        .collect::<Result<_, _>>()
        .map_err(|e| error(path, e.to_string()))?;
    let bytes = safetensors::serialize(views, state.map(TrainState::to_metadata))
        .map_err(|e| error(path, format!("cannot write: {e}")))?;
    write_atomically(path, &bytes)
}

/// Where training stood when the checkpoint at `path` was saved.
pub fn train_state(path: &Path) -> Result<TrainState, CheckpointError> {
    let bytes = crate::files::read_checked(path, crate::files::MAX_FILE_BYTES).map_err(|e| error(path, e))?;
    let (_, metadata) =
        SafeTensors::read_metadata(&bytes).map_err(|e| error(path, format!("not a safetensors file: {e}")))?;
    let empty = HashMap::new();
    TrainState::from_metadata(path, metadata.metadata().as_ref().unwrap_or(&empty))
}

/// Loads the values of every parameter of `module` whose name passes
/// `wanted`; a missing tensor, a wrong shape or dtype, or a tensor the module
/// does not declare is an error naming it. Tensors of parameters the module
/// declares but `wanted` leaves out (a training checkpoint's optimizer state,
/// for inference) are skipped.
pub fn load(path: &Path, module: &Module, wanted: impl Fn(&str) -> bool) -> Result<Params, CheckpointError> {
    let bytes = crate::files::read_checked(path, crate::files::MAX_FILE_BYTES).map_err(|e| error(path, e))?;
    let file = SafeTensors::deserialize(&bytes).map_err(|e| error(path, format!("not a safetensors file: {e}")))?;
    let mut params = Params::new();
    let mut unknown: Vec<&str> =
        file.names().into_iter().filter(|n| !module.params.iter().any(|p| p.name == *n)).collect();
    if !unknown.is_empty() {
        unknown.sort_unstable();
        let mut expected: Vec<&str> = module.params.iter().map(|p| p.name.as_str()).collect();
        expected.sort_unstable();
        let quoted = |names: &[&str]| names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ");
        let (tensors, are) =
            if unknown.len() == 1 { ("tensor", "is not a parameter") } else { ("tensors", "are not parameters") };
        return Err(error(
            path,
            format!("{tensors} {} {are} of this model (its parameters: {})", quoted(&unknown), quoted(&expected)),
        ));
    }
    for decl in module.params.iter().filter(|p| wanted(&p.name)) {
        let view = file
            .tensor(&decl.name)
            .map_err(|_| error(path, format!("missing tensor `{}` ({})", decl.name, decl.ty)))?;
        let shape: Vec<usize> = decl.ty.shape.0.iter().map(|d| d.as_const().unwrap_or(0) as usize).collect();
        if view.shape() != shape.as_slice() {
            return Err(error(
                path,
                format!("tensor `{}` has shape {:?}, the model declares {}", decl.name, view.shape(), decl.ty),
            ));
        }
        let expected = match decl.ty.dtype {
            DType::F32 => Dtype::F32,
            DType::F64 => Dtype::F64,
            DType::I32 => Dtype::I32,
            DType::I64 => Dtype::I64,
            DType::Bool => Dtype::BOOL,
        };
        if view.dtype() != expected {
            return Err(error(
                path,
                format!("tensor `{}` is {:?}, the model declares {}", decl.name, view.dtype(), decl.ty),
            ));
        }
        let data = view.data();
        let dim = IxDyn(&shape);
        let tensor = match decl.ty.dtype {
            DType::F32 => Tensor::float(
                DType::F32,
                values(
                    dim,
                    data.chunks_exact(4).map(|c| f64::from(f32::from_le_bytes(c.try_into().unwrap_or([0; 4])))),
                ),
            ),
            DType::F64 => Tensor::float(
                DType::F64,
                values(dim, data.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])))),
            ),
            DType::I32 => Tensor::int(
                DType::I32,
                values(
                    dim,
                    data.chunks_exact(4).map(|c| i64::from(i32::from_le_bytes(c.try_into().unwrap_or([0; 4])))),
                ),
            ),
            DType::I64 => Tensor::int(
                DType::I64,
                values(dim, data.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8])))),
            ),
            DType::Bool => Tensor::bool(values(dim, data.iter().map(|&b| b != 0))),
        };
        params.insert(decl.name.clone(), tensor);
    }
    Ok(params)
}

fn values<T>(dim: IxDyn, items: impl Iterator<Item = T>) -> ArrayD<T> {
    let v: Vec<T> = items.collect();
    ArrayD::from_shape_vec(dim, v).expect("safetensors checked the byte count against the shape")
}

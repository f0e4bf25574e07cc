//! Checkpoints: parameters saved in safetensors, named by their path in the
//! model (`fc1.w`), and loaded back with every tensor checked against the
//! module's declarations.

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

/// Saves the parameters named in `names`.
pub fn save(path: &Path, params: &Params, names: &[String]) -> Result<(), CheckpointError> {
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
    safetensors::serialize_to_file(views, None, path).map_err(|e| error(path, format!("cannot write: {e}")))
}

/// Loads the values of every parameter of `module` whose name passes
/// `wanted`; a missing tensor, a wrong shape or dtype, or a tensor the module
/// does not declare is an error naming it.
pub fn load(path: &Path, module: &Module, wanted: impl Fn(&str) -> bool) -> Result<Params, CheckpointError> {
    let bytes = std::fs::read(path).map_err(|e| error(path, format!("cannot read: {e}")))?;
    let file = SafeTensors::deserialize(&bytes).map_err(|e| error(path, format!("not a safetensors file: {e}")))?;
    let mut params = Params::new();
    for name in file.names() {
        if !module.params.iter().any(|p| p.name == name && wanted(&p.name)) {
            return Err(error(path, format!("tensor `{name}` is not a parameter of this model")));
        }
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

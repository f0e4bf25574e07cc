//! Reading and writing tensors as NumPy `.npy` files, through ndarray-npy.
//! Supported dtypes: float32, float64, int32, int64 and bool, in C order.

use std::path::{Path, PathBuf};

use kiln_ir::DType;
use kiln_ir::interp::{Data, Tensor};
use ndarray::ArrayD;
use ndarray_npy::{ReadNpyError, read_npy, write_npy};

/// Why an NPY file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum NpyError {
    #[error("cannot read `{path}`: {message}")]
    Read { path: PathBuf, message: String },
    #[error("cannot write `{path}`: {message}")]
    Write { path: PathBuf, message: String },
}

/// Reads a tensor, whatever its supported dtype.
pub fn read(path: &Path) -> Result<Tensor, NpyError> {
    let fail = |message: String| NpyError::Read { path: path.to_path_buf(), message };
    let mut last = None;
    for dtype in DType::ALL {
        let result = match dtype {
            DType::F32 => read_npy::<_, ArrayD<f32>>(path).map(|a| Tensor::float(DType::F32, a.mapv(f64::from))),
            DType::F64 => read_npy::<_, ArrayD<f64>>(path).map(|a| Tensor::float(DType::F64, a)),
            DType::I32 => read_npy::<_, ArrayD<i32>>(path).map(|a| Tensor::int(DType::I32, a.mapv(i64::from))),
            DType::I64 => read_npy::<_, ArrayD<i64>>(path).map(|a| Tensor::int(DType::I64, a)),
            DType::Bool => read_npy::<_, ArrayD<bool>>(path).map(Tensor::bool),
        };
        match result {
            Ok(t) => return Ok(t),
            Err(ReadNpyError::WrongDescriptor(_)) => {
                last = Some("its dtype is not one of float32, float64, int32, int64, bool".to_string())
            }
            Err(e) => return Err(fail(e.to_string())),
        }
    }
    Err(fail(last.unwrap_or_default()))
}

/// Writes a tensor in its own dtype.
pub fn write(path: &Path, tensor: &Tensor) -> Result<(), NpyError> {
    let result = match (&tensor.data, tensor.dtype) {
        (Data::Float(a), DType::F32) => write_npy(path, &a.mapv(|x| x as f32)),
        (Data::Float(a), _) => write_npy(path, a),
        (Data::Int(a), DType::I32) => write_npy(path, &a.mapv(|x| x as i32)),
        (Data::Int(a), _) => write_npy(path, a),
        (Data::Bool(a), _) => write_npy(path, a),
    };
    result.map_err(|e| NpyError::Write { path: path.to_path_buf(), message: e.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_dtype_round_trips() {
        let dir = std::env::temp_dir().join(format!("kiln-npy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let shape = ndarray::IxDyn(&[2, 3]);
        let tensors = [
            Tensor::float(DType::F32, ArrayD::from_shape_fn(shape.clone(), |i| i[0] as f64 * 0.5 - i[1] as f64)),
            Tensor::float(DType::F64, ArrayD::from_shape_fn(shape.clone(), |i| i[1] as f64 / 3.0)),
            Tensor::int(DType::I32, ArrayD::from_shape_fn(shape.clone(), |i| i[0] as i64 - 7)),
            Tensor::int(DType::I64, ArrayD::from_shape_fn(shape.clone(), |i| (i[1] as i64) << 40)),
            Tensor::bool(ArrayD::from_shape_fn(shape, |i| i[0] == i[1])),
        ];
        for (k, t) in tensors.iter().enumerate() {
            let path = dir.join(format!("{k}.npy"));
            write(&path, t).unwrap();
            assert_eq!(&read(&path).unwrap(), t);
        }
    }

    #[test]
    fn a_corrupt_file_is_an_error_naming_it() {
        let path = std::env::temp_dir().join(format!("kiln-bad-{}.npy", std::process::id()));
        std::fs::write(&path, b"not an npy file").unwrap();
        let message = read(&path).unwrap_err().to_string();
        assert!(message.contains("kiln-bad-") && message.starts_with("cannot read"), "{message}");
    }
}

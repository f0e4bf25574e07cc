//! Reading and writing tensors as NumPy `.npy` files, through ndarray-npy.
//! Supported dtypes: float32, float64, int32, int64 and bool, in C order.

use std::path::{Path, PathBuf};

use kiln_ir::DType;
use kiln_ir::interp::{Data, Tensor};
use ndarray::ArrayD;
use ndarray_npy::{ReadNpyError, ReadNpyExt, write_npy};

/// Why an NPY file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum NpyError {
    #[error("cannot read `{path}`: {message}")]
    Read { path: PathBuf, message: String },
    #[error("cannot write `{path}`: {message}")]
    Write { path: PathBuf, message: String },
}

/// Reads a tensor, whatever its supported dtype. The header's shape is
/// checked against the file's length before anything is allocated for it.
pub fn read(path: &Path) -> Result<Tensor, NpyError> {
    let fail = |message: String| NpyError::Read { path: path.to_path_buf(), message };
    let bytes = crate::files::read_checked(path, crate::files::MAX_FILE_BYTES).map_err(fail)?;
    if !bytes.starts_with(b"\x93NUMPY") {
        let what = if bytes.is_empty() { "the file is empty".to_string() } else { format!("{} bytes", bytes.len()) };
        return Err(fail(format!("not an NPY file: it does not start with the NPY magic `\\x93NUMPY` ({what})")));
    }
    if bytes.len() < 10 {
        return Err(fail(format!("not an NPY file: {} bytes, too short for an NPY header", bytes.len())));
    }
    check_declared_size(&bytes).map_err(fail)?;
    let mut last = None;
    for dtype in DType::ALL {
        let b = &bytes[..];
        let result = match dtype {
            DType::F32 => ArrayD::<f32>::read_npy(b).map(|a| Tensor::float(DType::F32, a.mapv(f64::from))),
            DType::F64 => ArrayD::<f64>::read_npy(b).map(|a| Tensor::float(DType::F64, a)),
            DType::I32 => ArrayD::<i32>::read_npy(b).map(|a| Tensor::int(DType::I32, a.mapv(i64::from))),
            DType::I64 => ArrayD::<i64>::read_npy(b).map(|a| Tensor::int(DType::I64, a)),
            DType::Bool => ArrayD::<bool>::read_npy(b).map(Tensor::bool),
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

/// An error when the header of the NPY file `bytes` declares more data than
/// the file holds (a shape that would allocate gigabytes from a small
/// file). Headers it cannot read are left to the NPY reader to reject.
fn check_declared_size(bytes: &[u8]) -> Result<(), String> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Ok(());
    }
    let (len_bytes, start) = if bytes[6] == 1 { (2, 10) } else { (4, 12) };
    let Some(len) = bytes.get(8..8 + len_bytes) else { return Ok(()) };
    let header_len = len.iter().rev().fold(0usize, |acc, &b| acc * 256 + usize::from(b));
    let Some(header) = bytes.get(start..start + header_len).and_then(|h| std::str::from_utf8(h).ok()) else {
        return Ok(());
    };
    let item = match header.split("'descr':").nth(1).map(str::trim_start) {
        Some(d) if d.starts_with("'|b1'") || d.starts_with("'|u1'") || d.starts_with("'|i1'") => 1u128,
        Some(d) if d.get(3..4) == Some("4") => 4,
        Some(d) if d.get(3..4) == Some("8") => 8,
        _ => return Ok(()),
    };
    let Some(shape) = header.split("'shape':").nth(1).and_then(|s| s.split(')').next()) else { return Ok(()) };
    let mut elements = 1u128;
    for dim in shape.trim_start().trim_start_matches('(').split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let Ok(d) = dim.parse::<u128>() else { return Ok(()) };
        elements = elements.saturating_mul(d);
    }
    let declared = elements.saturating_mul(item);
    let held = (bytes.len() - (start + header_len)) as u128;
    if declared > held {
        return Err(format!(
            "its header declares shape ({}) of {declared} bytes, but the file holds {held} bytes of data",
            shape.trim_start().trim_start_matches('(')
        ));
    }
    Ok(())
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
    fn a_header_that_declares_more_than_the_file_holds_is_refused() {
        let path = std::env::temp_dir().join(format!("kiln-lying-{}.npy", std::process::id()));
        write(&path, &Tensor::from_f32(&[2, 3], &[1.0; 6])).unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        let at = bytes.windows(6).position(|w| w == b"(2, 3)").expect("the shape in the header");
        // The same header length, a shape of 10 000 000 x 784.
        let lie = "(9999, 784999999)";
        assert!(lie.len() > "(2, 3)".len());
        let mut header: Vec<u8> = bytes[..at].to_vec();
        header.extend(lie.as_bytes());
        header.extend(&bytes[at + "(2, 3)".len()..]);
        // Keep the header length field honest by eating padding spaces.
        let extra = lie.len() - "(2, 3)".len();
        let pad = header.iter().rposition(|&b| b == b' ').unwrap();
        header.drain(pad + 1 - extra..=pad);
        bytes = header;
        std::fs::write(&path, &bytes).unwrap();
        let message = read(&path).unwrap_err().to_string();
        assert!(message.contains("declares shape (9999, 784999999)"), "{message}");
        assert!(message.contains("but the file holds 24 bytes of data"), "{message}");
    }

    #[test]
    fn a_corrupt_file_is_an_error_naming_it() {
        let path = std::env::temp_dir().join(format!("kiln-bad-{}.npy", std::process::id()));
        std::fs::write(&path, b"not an npy file").unwrap();
        let message = read(&path).unwrap_err().to_string();
        assert!(message.contains("kiln-bad-") && message.starts_with("cannot read"), "{message}");
    }
}

//! Reading IDX files, the format of MNIST and Fashion-MNIST: a big-endian
//! header (magic `0x00000803` for images, `0x00000801` for labels, then one
//! u32 per dimension) followed by u8 data. Files may be gzip-compressed
//! (detected by their magic bytes, whatever the name).

use std::io::Read;
use std::path::{Path, PathBuf};

/// Why a data file could not be used; always names the file.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct DataError {
    pub path: PathBuf,
    pub message: String,
}

impl DataError {
    pub fn new(path: &Path, message: impl Into<String>) -> DataError {
        DataError { path: path.to_path_buf(), message: message.into() }
    }
}

/// An IDX file's dimensions and bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Idx {
    pub dims: Vec<usize>,
    pub data: Vec<u8>,
}

const IMAGES: u32 = 0x0000_0803;
const LABELS: u32 = 0x0000_0801;

/// Reads an image file: `count x rows x cols` bytes.
pub fn read_images(path: &Path) -> Result<Idx, DataError> {
    read(path, IMAGES, 3)
}

/// Reads a label file: `count` bytes.
pub fn read_labels(path: &Path) -> Result<Idx, DataError> {
    read(path, LABELS, 1)
}

fn read(path: &Path, magic: u32, rank: usize) -> Result<Idx, DataError> {
    let raw = crate::files::read_checked(path, crate::files::MAX_FILE_BYTES).map_err(|e| DataError::new(path, e))?;
    let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|e| DataError::new(path, format!("corrupt gzip data: {e}")))?;
        out
    } else {
        raw
    };
    parse(path, &bytes, magic, rank)
}

fn parse(path: &Path, bytes: &[u8], magic: u32, rank: usize) -> Result<Idx, DataError> {
    let header = 4 + 4 * rank;
    let truncated =
        || DataError::new(path, format!("truncated: {} bytes, shorter than the {header}-byte IDX header", bytes.len()));
    if bytes.len() < 4 {
        return Err(truncated());
    }
    let word = |i: usize| u32::from_be_bytes([bytes[4 * i], bytes[4 * i + 1], bytes[4 * i + 2], bytes[4 * i + 3]]);
    let found = word(0);
    if found != magic {
        let what = if magic == IMAGES { "an image file" } else { "a label file" };
        return Err(DataError::new(
            path,
            format!("wrong magic number {found:#010x}: expected {magic:#010x} for {what}"),
        ));
    }
    if bytes.len() < header {
        return Err(truncated());
    }
    let dims: Vec<usize> = (1..=rank).map(|i| word(i) as usize).collect();
    let expected = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).unwrap_or(usize::MAX);
    let data = &bytes[header..];
    if data.len() != expected {
        let shape: Vec<String> = dims.iter().map(|d| d.to_string()).collect();
        return Err(DataError::new(
            path,
            format!(
                "truncated or padded: the header says {} = {expected} bytes of data, the file has {}",
                shape.join(" x "),
                data.len()
            ),
        ));
    }
    Ok(Idx { dims, data: data.to_vec() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idx(magic: u32, dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut b = magic.to_be_bytes().to_vec();
        for d in dims {
            b.extend(d.to_be_bytes());
        }
        b.extend_from_slice(data);
        b
    }

    #[test]
    fn raw_and_gzip_files_read_the_same() {
        let dir = std::env::temp_dir().join(format!("kiln-idx-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bytes = idx(IMAGES, &[2, 2, 2], &[0, 1, 2, 3, 4, 5, 6, 255]);
        std::fs::write(dir.join("raw"), &bytes).unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut gz, &bytes).unwrap();
        std::fs::write(dir.join("packed.gz"), gz.finish().unwrap()).unwrap();
        let a = read_images(&dir.join("raw")).unwrap();
        assert_eq!(a, read_images(&dir.join("packed.gz")).unwrap());
        assert_eq!((a.dims, a.data[7]), (vec![2, 2, 2], 255));
    }

    #[test]
    fn bad_files_are_clear_errors() {
        let p = Path::new("f");
        let e = parse(p, &idx(IMAGES, &[3], &[]), IMAGES, 3).unwrap_err();
        assert_eq!(e.to_string(), "f: truncated: 8 bytes, shorter than the 16-byte IDX header");
        let e = parse(p, &idx(LABELS, &[3], &[1, 2, 3]), IMAGES, 1).unwrap_err();
        assert_eq!(e.to_string(), "f: wrong magic number 0x00000801: expected 0x00000803 for an image file");
        let e = parse(p, &idx(LABELS, &[4], &[1, 2, 3]), LABELS, 1).unwrap_err();
        assert_eq!(e.to_string(), "f: truncated or padded: the header says 4 = 4 bytes of data, the file has 3");
        let e = read_labels(Path::new("/no/such/labels")).unwrap_err();
        assert!(e.to_string().starts_with("/no/such/labels: cannot read"), "{e}");
        let e = parse(p, &[0, 0, 8], LABELS, 1).unwrap_err();
        assert!(e.to_string().contains("shorter than the 8-byte IDX header"), "{e}");
    }
}

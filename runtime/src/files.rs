//! Reading files whole, checked first: only regular files (not `/dev/zero`
//! or a FIFO, which would be read until memory runs out), and only up to a
//! limit, so a wrong path is a clear error instead of an abort.

use std::path::Path;

/// The most bytes a data set, checkpoint or tensor file may hold (16 GiB).
pub const MAX_FILE_BYTES: u64 = 16 << 30;

/// The bytes of the regular file at `path`, at most `limit` of them.
pub fn read_checked(path: &Path, limit: u64) -> Result<Vec<u8>, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read: {e}"))?;
    if !meta.is_file() {
        return Err("cannot read: not a regular file".into());
    }
    if meta.len() > limit {
        return Err(format!("cannot read: {} bytes, more than the {limit} a file may hold", meta.len()));
    }
    std::fs::read(path).map_err(|e| format!("cannot read: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_and_large_files_are_refused_before_reading() {
        if Path::new("/dev/zero").exists() {
            assert_eq!(read_checked(Path::new("/dev/zero"), 10).unwrap_err(), "cannot read: not a regular file");
        }
        let path = std::env::temp_dir().join(format!("kiln-files-{}", std::process::id()));
        std::fs::write(&path, [0u8; 100]).unwrap();
        assert!(read_checked(&path, 99).unwrap_err().contains("100 bytes, more than the 99"));
        assert_eq!(read_checked(&path, 100).unwrap().len(), 100);
    }
}

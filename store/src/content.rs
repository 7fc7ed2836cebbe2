//! Content hashes of files (blake3, hex): how the engine fingerprints a stage's inputs and how
//! the sources list their clips. One definition, so both name a file the same way.

use std::io::Read;
use std::path::Path;

use crate::StoreError;

/// A file's `(size in bytes, blake3 hex)`, or why it could not be read.
pub type FileHash = Result<(u64, String), StoreError>;

/// blake3 (hex) of a file's bytes, read 1 MiB at a time.
pub fn hash_file(path: &Path) -> Result<String, StoreError> {
    let mut f = std::fs::File::open(path).map_err(|e| StoreError::io(path, e))?;
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| StoreError::io(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().to_hex().to_string())
}

/// A file's modification time, ns since the epoch: with its size, what says a file is unchanged
/// without reading it (the engine's hash cache, a source's settled clips).
pub fn mtime_ns(meta: &std::fs::Metadata) -> Option<u64> {
    Some(meta.modified().ok()?.duration_since(std::time::UNIX_EPOCH).ok()?.as_nanos() as u64)
}

/// `(size, blake3)` of a file, read in full (no cache).
pub fn file_hash(path: &Path) -> FileHash {
    let bytes = std::fs::metadata(path).map_err(|e| StoreError::io(path, e))?.len();
    Ok((bytes, hash_file(path)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_name_the_bytes_and_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.wav");
        std::fs::write(&p, b"abc").unwrap();
        assert_eq!(file_hash(&p).unwrap(), (3, blake3::hash(b"abc").to_hex().to_string()));
        let missing = dir.path().join("missing.wav");
        let e = file_hash(&missing).unwrap_err().to_string();
        assert!(e.starts_with(&missing.display().to_string()), "{e}");
    }
}

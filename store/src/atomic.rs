//! Files that appear whole or not at all.
//!
//! An [`AtomicFile`] writes to a hidden temporary name beside its destination and renames it into
//! place on [`AtomicFile::commit`]. Dropped without a commit (an error, a panic), the temporary is
//! removed; a killed process can leave one behind, which [`remove_stale_temporaries`] sweeps away
//! before a stage runs again. Readers never see a half-written file under the real name.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::StoreError;

const TMP_MARK: &str = ".genrelab-tmp";

pub struct AtomicFile {
    dest: PathBuf,
    tmp: PathBuf,
    file: Option<File>,
}

impl AtomicFile {
    /// Start writing `dest`; parent folders are created.
    pub fn create(dest: impl AsRef<Path>) -> Result<Self, StoreError> {
        let dest = dest.as_ref().to_path_buf();
        let parent = dest.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent).map_err(|e| StoreError::io(parent, e))?;
        let name = dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let tmp = parent.join(format!(".{name}.{}{TMP_MARK}", std::process::id()));
        let file = File::create(&tmp).map_err(|e| StoreError::io(&tmp, e))?;
        Ok(AtomicFile { dest, tmp, file: Some(file) })
    }

    pub fn path(&self) -> &Path {
        &self.dest
    }

    /// The open temporary file, to hand to a writer.
    pub fn file(&mut self) -> &mut File {
        self.file.as_mut().expect("file is present until commit")
    }

    /// A second handle on the temporary file (for writers that take ownership).
    pub fn try_clone(&self) -> Result<File, StoreError> {
        self.file.as_ref().expect("file is present until commit").try_clone().map_err(|e| StoreError::io(&self.tmp, e))
    }

    /// Flush to disk and move into place.
    pub fn commit(self) -> Result<PathBuf, StoreError> {
        self.stage()?.commit()
    }

    /// Move into place without flushing to disk first: after a crash of the machine (not of the
    /// process) the file may be missing or torn, so only for caches that are checked on reading.
    pub fn commit_unsynced(mut self) -> Result<PathBuf, StoreError> {
        // A failed rename leaves the file for Drop to remove.
        std::fs::rename(&self.tmp, &self.dest).map_err(|e| StoreError::io(&self.dest, e))?;
        self.file.take();
        Ok(self.dest.clone())
    }

    /// Start writing what the file holds so far to the disk, without waiting for it (Linux; a
    /// no-op elsewhere), so that the flush before the file is moved into place has less left
    /// to wait for. Only a hint: errors are the final flush's to report.
    pub fn start_writeback(&self) {
        #[cfg(target_os = "linux")]
        if let Some(file) = &self.file {
            use std::os::fd::AsRawFd;
            // SAFETY: a plain system call on a file descriptor this value owns; no memory is passed.
            unsafe { libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE) };
        }
    }

    /// Flush to disk, ready to move into place: what can fail for want of space has happened.
    /// The outputs of one stage are staged one by one, then committed together ([`commit_all`]),
    /// so a failure while writing any of them leaves every previous output as it was.
    pub fn stage(mut self) -> Result<Staged, StoreError> {
        let file = self.file.take().expect("stage once");
        let staged = Staged { tmp: self.tmp.clone(), dest: self.dest.clone(), done: false };
        file.sync_all().map_err(|e| StoreError::io(&self.tmp, e))?;
        Ok(staged)
    }
}

/// A file written and flushed under its temporary name; removed if dropped uncommitted.
#[derive(Debug)]
pub struct Staged {
    tmp: PathBuf,
    dest: PathBuf,
    done: bool,
}

impl Staged {
    /// Move into place.
    pub fn commit(mut self) -> Result<PathBuf, StoreError> {
        std::fs::rename(&self.tmp, &self.dest).map_err(|e| StoreError::io(&self.dest, e))?;
        self.done = true;
        Ok(self.dest.clone())
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Move staged files into place, in order (renames within a folder: no data is written).
pub fn commit_all(staged: impl IntoIterator<Item = Staged>) -> Result<Vec<PathBuf>, StoreError> {
    staged.into_iter().map(Staged::commit).collect()
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Write a whole file atomically.
pub fn write_atomic(dest: impl AsRef<Path>, bytes: &[u8]) -> Result<PathBuf, StoreError> {
    let mut f = AtomicFile::create(dest)?;
    let tmp = f.tmp.clone();
    f.file().write_all(bytes).map_err(|e| StoreError::io(tmp, e))?;
    f.commit()
}

/// Remove temporaries left in `dir` (not recursive) by a killed writer. Returns how many.
pub fn remove_stale_temporaries(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .filter(|e| e.file_name().to_str().is_some_and(|n| n.ends_with(TMP_MARK) && !writer_is_alive(n)))
        .filter(|e| std::fs::remove_file(e.path()).is_ok())
        .count()
}

/// Whether the process that is writing temporary `name` (`.<file>.<pid>.genrelab-tmp`) is another
/// one still running (where that can be told: Linux's /proc). This process's own temporaries
/// and those of processes gone are stale.
fn writer_is_alive(name: &str) -> bool {
    let pid = name.strip_suffix(TMP_MARK).and_then(|n| n.rsplit_once('.')).and_then(|(_, pid)| pid.parse::<u32>().ok());
    match pid {
        Some(pid) if pid != std::process::id() => Path::new("/proc/self").exists() && Path::new("/proc").join(pid.to_string()).exists(),
        _ => false,
    }
}

/// Is this path one of our temporaries?
pub fn is_temporary(path: &Path) -> bool {
    path.file_name().is_some_and(|n| n.to_string_lossy().ends_with(TMP_MARK))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_moves_into_place_and_drop_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("sub/out.bin");
        let mut f = AtomicFile::create(&dest).unwrap();
        f.file().write_all(b"hello").unwrap();
        assert!(!dest.exists(), "nothing under the real name before commit");
        f.commit().unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"hello");

        let other = dir.path().join("sub/other.bin");
        {
            let mut f = AtomicFile::create(&other).unwrap();
            f.file().write_all(b"partial").unwrap();
        }
        assert!(!other.exists());
        let left: Vec<_> = std::fs::read_dir(dir.path().join("sub")).unwrap().flatten().collect();
        assert_eq!(left.len(), 1, "only the committed file remains");
    }

    #[test]
    fn stale_temporaries_are_swept() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = AtomicFile::create(dir.path().join("x.parquet")).unwrap();
        f.file().write_all(b"half").unwrap();
        std::mem::forget(f); // as if the process had been killed mid-write
        assert!(!dir.path().join("x.parquet").exists());
        assert_eq!(remove_stale_temporaries(dir.path()), 1);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);

        // A killed process's temporary goes; a running one's (pid 1 runs as long as the system)
        // is left to it, where /proc tells.
        let gone = dir.path().join(".hashes.json.4294967295.genrelab-tmp");
        let running = dir.path().join(".report.md.1.genrelab-tmp");
        std::fs::write(&gone, b"x").unwrap();
        std::fs::write(&running, b"x").unwrap();
        remove_stale_temporaries(dir.path());
        assert!(!gone.exists());
        assert_eq!(running.exists(), Path::new("/proc/1").exists());
    }
}

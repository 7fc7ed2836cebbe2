//! One writer per work folder: `run` and `tune` hold an exclusive lock on `.genrelab/lock` while
//! they work. A second one on the same folder says who holds it (pid, command, since when) and
//! waits for it; `status`, `query`, `results` and `predict` only read and take no lock.
//!
//! The lock is the operating system's (`flock`): it is released when its holder exits, however it
//! ends (`kill -9` included), so a stale lock file never blocks anyone. Within one process the
//! lock is re-entrant (`tune` runs the stages it needs while holding it).

use std::collections::HashMap;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::PipelineError;

/// The lock files this process holds, by path, with how many guards share each.
type Held = HashMap<PathBuf, (usize, File)>;
static HELD: Mutex<Option<Held>> = Mutex::new(None);

/// Holds the work folder's lock until dropped.
#[derive(Debug)]
pub struct WorkLock {
    path: PathBuf,
}

impl WorkLock {
    /// The lock file of a work folder.
    pub fn path_of(workdir: &Path) -> PathBuf {
        crate::Paths::new(workdir).state_dir().join("lock")
    }

    /// Lock `workdir` for this process, waiting while another process holds it. `waiting` is
    /// called once, with who holds it, before the wait begins.
    pub fn acquire(workdir: &Path, what: &str, waiting: impl FnOnce(&str)) -> Result<WorkLock, PipelineError> {
        let path = Self::path_of(workdir);
        let dir = path.parent().expect("the lock file is in the state folder");
        std::fs::create_dir_all(dir).map_err(|e| PipelineError::io(dir, e))?;
        let mut held = HELD.lock().unwrap_or_else(|e| e.into_inner());
        let map = held.get_or_insert_with(HashMap::new);
        if let Some((n, _)) = map.get_mut(&path) {
            *n += 1;
            return Ok(WorkLock { path });
        }
        let mut file =
            OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(|e| PipelineError::io(&path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                waiting(if holder.is_empty() { "another process (it has not said which yet)" } else { holder });
                file.lock().map_err(|e| PipelineError::io(&path, e))?;
            }
            Err(TryLockError::Error(e)) => return Err(PipelineError::io(&path, e)),
        }
        // Who holds it, for the next one to wait.
        let since =
            crate::engine::format_unix(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()));
        let me = format!("pid {} (genrelab {what}, since {since})\n", std::process::id());
        let written = file.set_len(0).and_then(|_| file.rewind()).and_then(|_| file.write_all(me.as_bytes()));
        written.map_err(|e| PipelineError::io(&path, e))?;
        map.insert(path.clone(), (1, file));
        Ok(WorkLock { path })
    }
}

impl Drop for WorkLock {
    fn drop(&mut self) {
        let mut held = HELD.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(map) = held.as_mut()
            && let Some((n, _)) = map.get_mut(&self.path)
        {
            *n -= 1;
            if *n == 0 {
                // Dropping the file releases the lock; the holder line is left (the next
                // holder overwrites it, and a reader only sees it while the lock is held).
                map.remove(&self.path);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_is_reentrant_in_a_process_and_names_its_holder() {
        let dir = tempfile::tempdir().unwrap();
        let a = WorkLock::acquire(dir.path(), "run", |_| panic!("not held by another process")).unwrap();
        let b = WorkLock::acquire(dir.path(), "tune", |_| panic!("re-entrant")).unwrap();
        let text = std::fs::read_to_string(WorkLock::path_of(dir.path())).unwrap();
        assert!(text.starts_with(&format!("pid {} (genrelab run, since ", std::process::id())), "{text}");
        drop(a);
        // Still held by `b`: another open file of the same lock cannot take it.
        let other = File::open(WorkLock::path_of(dir.path())).unwrap();
        assert!(matches!(other.try_lock(), Err(TryLockError::WouldBlock)));
        drop(b);
        other.try_lock().expect("released when the last guard goes");
    }
}

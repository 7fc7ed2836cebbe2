//! Content hashes of files and folders, with a cache keyed by (path, size, mtime) so that an
//! unchanged tree costs one `stat` per file (DVC's state database, in a JSON file). A `touch`
//! changes the mtime, so the file is hashed again, gives the same hash, and nothing reruns.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use genrelab_store::StoreError;
pub use genrelab_store::content::{FileHash, hash_file};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    bytes: u64,
    mtime_ns: u64,
    blake3: String,
}

/// Known hashes of files, persisted between runs.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct HashCache {
    entries: BTreeMap<PathBuf, Entry>,
    #[serde(skip)]
    dirty: bool,
    #[serde(skip)]
    file: Option<PathBuf>,
}

impl HashCache {
    /// Load the cache at `file` (an unreadable or missing cache is an empty one).
    pub fn load(file: &Path) -> Self {
        let mut cache: HashCache = std::fs::read(file).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
        cache.file = Some(file.to_path_buf());
        cache
    }

    pub fn save(&mut self) {
        if let (true, Some(file)) = (self.dirty, &self.file) {
            if let Ok(json) = serde_json::to_vec(self) {
                let _ = genrelab_store::atomic::write_atomic(file, &json);
            }
            self.dirty = false;
        }
    }

    /// `(size, blake3)` of a file, from the cache when its size and mtime are unchanged.
    pub fn file(&mut self, path: &Path) -> FileHash {
        let meta = std::fs::metadata(path).map_err(|e| StoreError::io(path, e))?;
        let mtime_ns = genrelab_store::content::mtime_ns(&meta).unwrap_or(0);
        let key = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        if let Some(e) = self.entries.get(&key)
            && e.bytes == meta.len()
            && e.mtime_ns == mtime_ns
        {
            return Ok((e.bytes, e.blake3.clone()));
        }
        let blake3 = hash_file(path)?;
        self.entries.insert(key, Entry { bytes: meta.len(), mtime_ns, blake3: blake3.clone() });
        self.dirty = true;
        Ok((meta.len(), blake3))
    }

    /// Hash of a file, or of a folder (every file under it, by relative path); None if missing.
    /// In a folder, links to folders are not followed (the folder sources do not follow them),
    /// and a file that cannot be read (a dangling link, no permission) counts by its error, so
    /// the stage that reads the folder runs and names it, and runs again once it is readable.
    pub fn path(&mut self, path: &Path) -> Result<Option<String>, StoreError> {
        let Ok(meta) = std::fs::metadata(path) else { return Ok(None) };
        if meta.is_file() {
            return self.file(path).map(|(_, h)| Some(h));
        }
        let mut files = vec![];
        walk(path, path, &mut files);
        files.sort();
        let mut h = blake3::Hasher::new();
        for rel in files {
            let full = path.join(&rel);
            if std::fs::metadata(&full).is_ok_and(|m| m.is_dir()) {
                continue;
            }
            let fh = match self.file(&full) {
                Ok((_, fh)) => fh,
                Err(e) => format!("unreadable: {e}"),
            };
            h.update(rel.as_os_str().as_encoded_bytes());
            h.update(&[0]);
            h.update(fh.as_bytes());
            h.update(&[0]);
        }
        Ok(Some(h.finalize().to_hex().to_string()))
    }
}

/// Every entry under `dir` but folders and temporaries, relative to `root` (names as they are,
/// UTF-8 or not).
fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if genrelab_store::atomic::is_temporary(&p) {
            continue;
        }
        match e.file_type() {
            Ok(t) if t.is_dir() => walk(root, &p, out),
            Ok(_) => out.push(p.strip_prefix(root).unwrap_or(&p).to_path_buf()),
            Err(_) => {}
        }
    }
}

/// Hash of a JSON value in canonical form (object keys sorted, as serde_json's map is).
pub fn hash_json(v: &serde_json::Value) -> String {
    blake3::hash(serde_json::to_string(v).expect("json").as_bytes()).to_hex().to_string()
}

/// Hash of a JSON value in an explicitly canonical encoding: object keys sorted at every level,
/// no whitespace. serde_json keeps keys in insertion order here (its `preserve_order` feature is
/// on through polars), so [`hash_json`] of a struct depends on the order its fields are declared
/// in; a stage's fingerprint must not (reordering fields in a refactor would make every stage
/// stale with no reason to give).
pub fn hash_canonical_json(v: &serde_json::Value) -> String {
    fn write(v: &serde_json::Value, out: &mut String) {
        match v {
            serde_json::Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                out.push('{');
                for (i, k) in keys.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&serde_json::to_string(k).expect("json"));
                    out.push(':');
                    write(&m[k], out);
                }
                out.push('}');
            }
            serde_json::Value::Array(a) => {
                out.push('[');
                for (i, x) in a.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write(x, out);
                }
                out.push(']');
            }
            scalar => out.push_str(&serde_json::to_string(scalar).expect("json")),
        }
    }
    let mut s = String::new();
    write(v, &mut s);
    blake3::hash(s.as_bytes()).to_hex().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_hashes_ignore_key_order_and_nothing_else() {
        let a: serde_json::Value = serde_json::from_str(r#"{"b": 1, "a": {"y": [1, {"q": 2, "p": 3}], "x": "s"}}"#).unwrap();
        let b: serde_json::Value = serde_json::from_str(r#"{"a": {"x": "s", "y": [1, {"p": 3, "q": 2}]}, "b": 1}"#).unwrap();
        assert_ne!(hash_json(&a), hash_json(&b), "insertion order is kept by this build's serde_json");
        assert_eq!(hash_canonical_json(&a), hash_canonical_json(&b));
        let c: serde_json::Value = serde_json::from_str(r#"{"a": {"x": "s", "y": [{"p": 3, "q": 2}, 1]}, "b": 1}"#).unwrap();
        assert_ne!(hash_canonical_json(&a), hash_canonical_json(&c), "array order matters");
    }

    #[test]
    fn cache_reuses_hashes_and_notices_changes() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a.bin");
        std::fs::write(&f, b"one").unwrap();
        let cache_file = dir.path().join("cache.json");
        let mut c = HashCache::load(&cache_file);
        let (n, h1) = c.file(&f).unwrap();
        assert_eq!(n, 3);
        c.save();
        let mut c = HashCache::load(&cache_file);
        assert_eq!(c.file(&f).unwrap().1, h1);
        assert!(!c.dirty, "served from the cache");
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&f, b"two").unwrap();
        assert_ne!(c.file(&f).unwrap().1, h1);
    }

    #[test]
    fn folder_hash_depends_on_names_and_contents() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("d/sub")).unwrap();
        std::fs::write(dir.path().join("d/sub/x"), b"1").unwrap();
        std::fs::write(dir.path().join("d/y"), b"2").unwrap();
        let mut c = HashCache::default();
        let h = c.path(&dir.path().join("d")).unwrap().unwrap();
        std::fs::rename(dir.path().join("d/y"), dir.path().join("d/z")).unwrap();
        assert_ne!(c.path(&dir.path().join("d")).unwrap().unwrap(), h);
        assert_eq!(c.path(&dir.path().join("missing")).unwrap(), None);
    }
}

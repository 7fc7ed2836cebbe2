//! The download stage's output: a manifest of where every clip's bytes are, and reading them.
//!
//! A [`SourceManifest`] names either a tarball (`genres.tar.gz`, from the hub or a local file) or a
//! folder, and lists every clip found in it with its size and blake3 hash. The features stage
//! reads clips back through [`SourceManifest::read_batches`], streaming tarballs member by
//! member, so a 1.2 GB archive is never unpacked to disk.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;
use serde::{Deserialize, Serialize};

use crate::layout::{self, Layout};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Container {
    /// A `.tar.gz` (or plain `.tar`) archive.
    Tarball,
    /// A folder of WAV files.
    Folder,
}

/// One clip: its identity and where its bytes are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClipEntry {
    pub track_id: String,
    pub genre: String,
    /// Tar member name, or path relative to the folder.
    pub member: String,
    pub bytes: u64,
    pub blake3: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceManifest {
    /// Where the data came from, for people: `hub:marsyas/gtzan@main/data/genres.tar.gz`, ...
    pub origin: String,
    pub container: Container,
    /// The tarball, or the data folder (absolute).
    pub path: PathBuf,
    pub layout: Layout,
    /// For tarballs: the archive's size and SHA-256 (the hub's LFS checksum).
    pub bytes: u64,
    pub sha256: Option<String>,
    pub clips: Vec<ClipEntry>,
}

impl SourceManifest {
    /// A human description of the clip at `entry`.
    pub fn location(&self, entry: &ClipEntry) -> String {
        match self.container {
            Container::Tarball => format!("{}!{}", self.path.display(), entry.member),
            Container::Folder => self.path.join(&entry.member).display().to_string(),
        }
    }

    pub fn genres(&self) -> Vec<String> {
        let mut g: Vec<String> = self.clips.iter().map(|c| c.genre.clone()).collect();
        g.sort();
        g.dedup();
        g
    }

    /// Every clip through `work` on a pool of `threads` workers (0 = every core), read and
    /// processed in batches with a progress bar labelled `what`; `sink` receives each batch's
    /// results in manifest order, a clip that could not be read or processed as `Err(reason)`.
    /// Returns the number of workers.
    pub fn par_map_clips<T: Send>(
        &self,
        threads: usize,
        what: &str,
        work: impl Fn(&ClipEntry, &[u8]) -> Result<T, String> + Sync,
        mut sink: impl FnMut(Vec<(ClipEntry, Result<T, String>)>) -> Result<(), String>,
    ) -> Result<usize, crate::StageError> {
        use rayon::prelude::*;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .map_err(|e| crate::StageError::Failed(format!("thread pool: {e}")))?;
        let threads = pool.current_num_threads();
        let bar = crate::progress::bar(self.clips.len() as u64, what);
        let mut n_batch = 0usize;
        self.read_batches((threads * 8).max(16), |items| {
            let span = tracing::debug_span!("batch", n = n_batch, clips = items.len());
            let _enter = span.enter();
            n_batch += 1;
            let n = items.len() as u64;
            let done: Vec<_> = pool.install(|| {
                items
                    .into_par_iter()
                    .map(|(entry, bytes)| {
                        let r = bytes.and_then(|b| work(&entry, &b));
                        (entry, r)
                    })
                    .collect()
            });
            sink(done)?;
            bar.inc(n);
            Ok(())
        })
        .map_err(crate::StageError::Source)?;
        bar.finish_and_clear();
        Ok(threads)
    }

    /// Read the clips' bytes in manifest order, `batch` clips at a time. A clip that cannot be
    /// read comes back as `Err(reason)` in its place; only a broken container is an error.
    pub fn read_batches(
        &self,
        batch: usize,
        mut f: impl FnMut(Vec<(ClipEntry, Result<Vec<u8>, String>)>) -> Result<(), String>,
    ) -> Result<(), String> {
        let batch = batch.max(1);
        match self.container {
            Container::Folder => {
                for chunk in self.clips.chunks(batch) {
                    let items = chunk
                        .iter()
                        .map(|c| {
                            let p = self.path.join(&c.member);
                            (c.clone(), std::fs::read(&p).map_err(|e| format!("cannot read {}: {e}", p.display())))
                        })
                        .collect();
                    f(items)?;
                }
                Ok(())
            }
            Container::Tarball => {
                let wanted: std::collections::HashMap<&str, &ClipEntry> = self.clips.iter().map(|c| (c.member.as_str(), c)).collect();
                let mut pending = Vec::with_capacity(batch);
                let mut seen = 0;
                for_each_member(&self.path, |name, reader| {
                    if let Some(entry) = wanted.get(name) {
                        let mut bytes = Vec::with_capacity(entry.bytes as usize);
                        let read = reader.read_to_end(&mut bytes).map(|_| bytes).map_err(|e| e.to_string());
                        pending.push(((*entry).clone(), read));
                        seen += 1;
                        if pending.len() == batch {
                            f(std::mem::take(&mut pending))?;
                        }
                    }
                    Ok(())
                })?;
                if !pending.is_empty() {
                    f(pending)?;
                }
                if seen != self.clips.len() {
                    return Err(format!(
                        "{}: holds {seen} of the {} clips listed when it was downloaded; run the download stage again",
                        self.path.display(),
                        self.clips.len()
                    ));
                }
                Ok(())
            }
        }
    }
}

/// Walk a `.tar.gz` / `.tar`, calling `f(member_name, reader)` for every regular file.
pub fn for_each_member(path: &Path, mut f: impl FnMut(&str, &mut dyn Read) -> Result<(), String>) -> Result<(), String> {
    let file = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut head = [0u8; 2];
    let mut buffered = BufReader::with_capacity(1 << 20, file);
    {
        use std::io::BufRead;
        let buf = buffered.fill_buf().map_err(|e| format!("{}: {e}", path.display()))?;
        head.iter_mut().zip(buf).for_each(|(h, b)| *h = *b);
    }
    let reader: Box<dyn Read> = if head == [0x1f, 0x8b] { Box::new(MultiGzDecoder::new(buffered)) } else { Box::new(buffered) };
    let mut archive = tar::Archive::new(reader);
    let bad = |e: std::io::Error| format!("{}: not a readable tar(.gz) archive: {e}", path.display());
    for entry in archive.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = entry.path().map_err(bad)?.to_string_lossy().trim_start_matches("./").to_string();
        f(&name, &mut entry)?;
    }
    Ok(())
}

/// List the clips of a tarball, hashing each one (this also proves the archive reads to the end).
pub fn scan_tarball(path: &Path) -> Result<(Layout, Vec<ClipEntry>), String> {
    let mut clips = vec![];
    let mut layout = None;
    for_each_member(path, |name, reader| {
        let Some(l) = Layout::of_path(name) else { return Ok(()) };
        let (track_id, genre) = layout::parse_clip_name(name).expect("of_path checked the name");
        let mut hasher = blake3::Hasher::new();
        let bytes = std::io::copy(reader, &mut hasher).map_err(|e| format!("{}: {name}: {e}", path.display()))?;
        layout.get_or_insert(l);
        clips.push(ClipEntry { track_id, genre, member: name.to_string(), bytes, blake3: hasher.finalize().to_hex().to_string() });
        Ok(())
    })?;
    let layout = layout.ok_or_else(|| format!("{}: no GTZAN clips (<genre>/<genre>.000NN.wav) in the archive", path.display()))?;
    clips.sort_by(|a, b| a.track_id.cmp(&b.track_id));
    Ok((layout, clips))
}

/// A file's `(size in bytes, blake3 hex)`, or why it could not be read.
pub type FileHash = Result<(u64, String), String>;

/// List and hash the clips of a folder; `hash` may reuse known hashes (keyed by path, size, mtime).
pub fn scan_folder(root: &Path, mut hash: impl FnMut(&Path) -> FileHash) -> Result<(Layout, Vec<ClipEntry>), String> {
    let layout = layout::detect_folder(root)?;
    let mut clips = vec![];
    for (path, track_id, genre) in layout::list_folder(root, layout) {
        let (bytes, blake3) = hash(&path)?;
        let member = path.strip_prefix(root).unwrap_or(&path).to_string_lossy().replace('\\', "/");
        clips.push(ClipEntry { track_id, genre, member, bytes, blake3 });
    }
    Ok((layout, clips))
}

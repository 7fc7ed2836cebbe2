//! The download stage's output: a manifest of where every clip's bytes are, and reading them.
//!
//! A [`SourceManifest`] names either a tarball (`genres.tar.gz`, from the hub or a local file) or a
//! folder, and lists every clip found in it with its size and blake3 hash. The features stage
//! reads clips back through [`SourceManifest::read_batches`], streaming tarballs member by
//! member, so a 1.2 GB archive is never unpacked to disk.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;
use serde::{Deserialize, Serialize};

pub use genrelab_store::content::FileHash;
use genrelab_store::content::mtime_ns;

use crate::layout::{self, Layout};
use crate::{ClipError, StageError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Container {
    /// A `.tar.gz` (or plain `.tar`) archive.
    Tarball,
    /// A folder of audio files (clips in class folders, or the files a manifest lists, relative to
    /// the manifest's folder).
    Folder,
    /// Parquet files of a hub dataset (in hf-hub's snapshot folder); a clip's member is
    /// `<file>#<row>`.
    Parquet,
}

/// One clip: its identity and where its bytes are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClipEntry {
    pub track_id: String,
    /// The clip's label (a genre for GTZAN; any class for other collections).
    pub genre: String,
    /// Tar member name, or path relative to the folder.
    pub member: String,
    pub bytes: u64,
    pub blake3: String,
    /// The clip's group (artist, album) from a manifest: splits never put one group in two parts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// A fold or a part (`train`, `valid`, `test`) given by a manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fold: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part: Option<String>,
    /// The file's modification time (ns since the epoch) when it was hashed, if it was settled
    /// then: the same before and after hashing, and a second old (file times tick coarsely, so a
    /// younger file could be written again within the same tick). A file read later with this
    /// size and time holds the listed bytes, as the pipeline's own fingerprints assume, and the
    /// features stage does not hash it again. None (a young file, a tarball member): it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtime_ns: Option<u64>,
    /// Set by the reader, never stored: the file read had the listed size and settled time.
    #[serde(skip)]
    pub unchanged: bool,
}

impl ClipEntry {
    /// A clip with no group, fold or part.
    pub fn new(track_id: String, genre: String, member: String, bytes: u64, blake3: String) -> Self {
        ClipEntry { track_id, genre, member, bytes, blake3, group: None, fold: None, part: None, mtime_ns: None, unchanged: false }
    }

    /// The member's file extension, a hint for the decoder.
    pub fn extension(&self) -> Option<&str> {
        let file = self.member.rsplit('/').next()?;
        file.rsplit_once('.').map(|(_, e)| e)
    }
}

/// A clip the download stage found but could not list (a missing file, an empty label, a file
/// that cannot be read): it goes to the `rejects` table with its reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceReject {
    pub track_id: String,
    pub genre: String,
    /// Where it is, for people.
    pub location: String,
    pub reason: String,
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
    /// What a manifest or folder listed that cannot be a clip, with the reason.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rejected: Vec<SourceReject>,
    /// For Parquet datasets: the audio and label columns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parquet: Option<ParquetColumns>,
}

/// The columns of a hub Parquet dataset that hold the audio and the label.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ParquetColumns {
    pub audio: String,
    pub label: String,
}

/// `(file, row)` of a Parquet member `<file>#<row>`.
fn parquet_member(member: &str) -> Option<(&str, usize)> {
    let (file, row) = member.rsplit_once('#')?;
    Some((file, row.parse().ok()?))
}

/// List the clips of a hub dataset's Parquet `files` (relative to `root`): every row's audio
/// bytes hashed, its label from the label column (a `ClassLabel` index is turned into its name
/// from the file's `huggingface` metadata). A row without audio or label is a reject.
pub fn scan_hub_parquet(
    root: &Path,
    files: &[String],
    cols: &crate::manifest::Columns,
) -> Result<(Vec<ClipEntry>, Vec<SourceReject>), StageError> {
    let mut clips = vec![];
    let mut rejected = vec![];
    let mut ids: HashMap<String, usize> = HashMap::new();
    for file in files {
        let path = root.join(file);
        let names = genrelab_store::foreign::class_names(&path, &cols.label)?;
        genrelab_store::foreign::read_audio_rows(&path, &cols.audio, &cols.label, 256, |rows| {
            for r in rows {
                let member = format!("{file}#{}", r.row);
                let label = match (&r.label, &names) {
                    (Some(l), Some(names)) => l.parse::<usize>().ok().and_then(|i| names.get(i).cloned()).or_else(|| Some(l.clone())),
                    (l, _) => l.clone(),
                };
                let label = label.filter(|l| !l.trim().is_empty());
                // The file name the dataset kept, made unique; else file and row.
                let track_id = match r.file_name.as_deref().map(|n| n.rsplit('/').next().unwrap_or(n).to_string()).filter(|n| !n.is_empty())
                {
                    Some(n) => {
                        let k = ids.entry(n.clone()).or_insert(0);
                        *k += 1;
                        if *k == 1 { n } else { format!("{n}#{}", *k - 1) }
                    }
                    None => member.clone(),
                };
                let location = format!("{}#{}", path.display(), r.row);
                match (r.bytes, label) {
                    (Some(b), Some(genre)) if !b.is_empty() => {
                        let blake3 = blake3::hash(&b).to_hex().to_string();
                        clips.push(ClipEntry::new(track_id, genre, member, b.len() as u64, blake3));
                    }
                    (_, None) => rejected.push(SourceReject {
                        track_id,
                        genre: String::new(),
                        location,
                        reason: format!("empty label (column {:?})", cols.label),
                    }),
                    (_, Some(genre)) => rejected.push(SourceReject {
                        track_id,
                        genre,
                        location,
                        reason: format!("no audio bytes (column {:?})", cols.audio),
                    }),
                }
            }
            Ok::<_, StageError>(())
        })?;
    }
    Ok((clips, rejected))
}

/// What the reader of [`SourceManifest::par_map_clips`] says when the work stopped first.
const STOPPED: &str = "the clips' consumer stopped";

impl SourceManifest {
    /// A human description of the clip at `entry`.
    pub fn location(&self, entry: &ClipEntry) -> String {
        match self.container {
            Container::Tarball => format!("{}!{}", self.path.display(), entry.member),
            Container::Folder | Container::Parquet => self.path.join(&entry.member).display().to_string(),
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
    /// results in manifest order, a clip that could not be read or processed as `Err(why)`.
    /// Returns the number of workers.
    pub fn par_map_clips<T: Send>(
        &self,
        threads: usize,
        what: &str,
        limits: &crate::audio::Limits,
        work: impl Fn(&ClipEntry, &[u8]) -> Result<T, ClipError> + Sync,
        mut sink: impl FnMut(Vec<(ClipEntry, Result<T, ClipError>)>) -> Result<(), StageError>,
    ) -> Result<usize, StageError> {
        use rayon::prelude::*;
        let pool =
            rayon::ThreadPoolBuilder::new().num_threads(threads).build().map_err(|e| StageError::Failed(format!("thread pool: {e}")))?;
        let threads = pool.current_num_threads();
        let bar = crate::progress::bar(self.clips.len() as u64, what);
        // A thread of its own reads the next batch while the pool works on this one; at most
        // one batch waits read, so memory stays bounded by two batches.
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        std::thread::scope(|scope| {
            let reader = scope.spawn(move || {
                self.read_batches((threads * 4).max(8), limits, |items| tx.send(items).map_err(|_| StageError::Source(STOPPED.into())))
            });
            let worked = rx.into_iter().enumerate().try_for_each(|(n_batch, items)| {
                let span = tracing::debug_span!("batch", n = n_batch, clips = items.len());
                let _enter = span.enter();
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
                Ok::<_, StageError>(())
            });
            // The receiver is dropped before the join, so a reader blocked on a full channel
            // after a failed sink stops (with STOPPED, which the sink's error explains better).
            let read = reader.join().expect("the reader thread does not panic");
            worked.and(read)
        })?;
        bar.finish_and_clear();
        Ok(threads)
    }

    /// Read the clips' bytes in manifest order, `batch` clips at a time. A clip that cannot be
    /// read comes back as `Err(why)` in its place; only a broken container is an error.
    pub fn read_batches(
        &self,
        batch: usize,
        limits: &crate::audio::Limits,
        mut f: impl FnMut(Vec<(ClipEntry, Result<Vec<u8>, ClipError>)>) -> Result<(), StageError>,
    ) -> Result<(), StageError> {
        let batch = batch.max(1);
        match self.container {
            Container::Folder => {
                // The first batches are smaller (a quarter, a half), so that the pool starts on
                // the first clips while the rest of a full batch is read.
                let mut rest = &self.clips[..];
                let mut size = (batch / 4).max(1);
                while !rest.is_empty() {
                    let (chunk, tail) = rest.split_at(size.min(rest.len()));
                    rest = tail;
                    size = (size * 2).min(batch);
                    let items = chunk
                        .iter()
                        .map(|c| {
                            let p = self.path.join(&c.member);
                            let mut entry = c.clone();
                            let read = File::open(&p).and_then(|f| {
                                let read = read_within(&f, c.bytes, limits)?;
                                // Its size and time once read: a write while it was read shows.
                                let meta = f.metadata()?;
                                entry.unchanged = c.mtime_ns.is_some() && meta.len() == c.bytes && mtime_ns(&meta) == c.mtime_ns;
                                Ok(read)
                            });
                            (entry, read.map_err(|source| ClipError::Unreadable { path: p, source }).and_then(|r| r))
                        })
                        .collect();
                    f(items)?;
                }
                Ok(())
            }
            Container::Parquet => {
                let mut by_file: std::collections::BTreeMap<&str, HashMap<usize, &ClipEntry>> = Default::default();
                for c in &self.clips {
                    let (file, row) =
                        parquet_member(&c.member).ok_or_else(|| StageError::Source(format!("bad Parquet member {:?}", c.member)))?;
                    by_file.entry(file).or_default().insert(row, c);
                }
                let mut pending = Vec::with_capacity(batch);
                let mut seen = 0;
                for (file, wanted) in by_file {
                    let path = self.path.join(file);
                    let cols = self.parquet.clone().unwrap_or_default();
                    genrelab_store::foreign::read_audio_rows(&path, &cols.audio, &cols.label, batch, |rows| {
                        for r in rows {
                            if let Some(entry) = wanted.get(&r.row) {
                                seen += 1;
                                let bytes = r.bytes.ok_or(ClipError::NoAudioBytes).and_then(|b| {
                                    limits.check_bytes(b.len() as u64)?;
                                    Ok(b)
                                });
                                pending.push(((*entry).clone(), bytes));
                                if pending.len() == batch {
                                    f(std::mem::take(&mut pending))?;
                                }
                            }
                        }
                        Ok::<_, StageError>(())
                    })?;
                }
                self.end_of_stream(pending, seen, &mut f)
            }
            Container::Tarball => {
                let mut wanted: HashMap<&str, &ClipEntry> = self.clips.iter().map(|c| (c.member.as_str(), c)).collect();
                let mut pending = Vec::with_capacity(batch);
                let mut seen = 0;
                for_each_member(&self.path, |name, reader| {
                    // A member the archive holds twice: its first copy, as listed.
                    if let Some(entry) = wanted.remove(name) {
                        let read = read_within(reader, entry.bytes, limits).map_err(ClipError::Member).and_then(|r| r);
                        pending.push(((*entry).clone(), read));
                        seen += 1;
                        if pending.len() == batch {
                            f(std::mem::take(&mut pending))?;
                        }
                    }
                    Ok(())
                })?;
                self.end_of_stream(pending, seen, &mut f)
            }
        }
    }
}

/// `path`'s modification time if it is still `before` (taken before the file was hashed) and at
/// least a second old: see [`ClipEntry::mtime_ns`].
pub(crate) fn settled_mtime(path: &Path, before: Option<u64>) -> Option<u64> {
    let t = mtime_ns(&std::fs::metadata(path).ok()?)?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).ok()?.as_nanos() as u64;
    (Some(t) == before && now.saturating_sub(t) >= 1_000_000_000).then_some(t)
}

/// A clip's bytes, at most `limits.max_file_mb` of them: a larger file is `Ok(Err(too large))`
/// (a reject) once the limit is passed, whatever its listed size (`expected`, the capacity hint).
fn read_within(mut reader: impl Read, expected: u64, limits: &crate::audio::Limits) -> std::io::Result<Result<Vec<u8>, ClipError>> {
    let max = limits.max_bytes();
    let mut bytes = Vec::with_capacity(expected.min(max) as usize);
    (&mut reader).take(max.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        // The whole size, for the message, without keeping it.
        let rest = std::io::copy(&mut reader, &mut std::io::sink())?;
        return Ok(Err(limits.check_bytes(bytes.len() as u64 + rest).expect_err("over the limit").into()));
    }
    Ok(Ok(bytes))
}

impl SourceManifest {
    /// The last batch of a streamed container, and the check that it held every listed clip.
    fn end_of_stream<F>(&self, pending: Vec<(ClipEntry, Result<Vec<u8>, ClipError>)>, seen: usize, f: &mut F) -> Result<(), StageError>
    where
        F: FnMut(Vec<(ClipEntry, Result<Vec<u8>, ClipError>)>) -> Result<(), StageError>,
    {
        if !pending.is_empty() {
            f(pending)?;
        }
        if seen != self.clips.len() {
            return Err(StageError::Source(format!(
                "{}: holds {seen} of the {} clips listed when it was downloaded; run the download stage again",
                self.path.display(),
                self.clips.len()
            )));
        }
        Ok(())
    }
}

/// Walk a `.tar.gz` / `.tar`, calling `f(member_name, reader)` for every regular file.
pub fn for_each_member(path: &Path, mut f: impl FnMut(&str, &mut dyn Read) -> Result<(), StageError>) -> Result<(), StageError> {
    let file = File::open(path).map_err(|e| StageError::io(path, e))?;
    let mut head = [0u8; 2];
    let mut buffered = BufReader::with_capacity(1 << 20, file);
    {
        use std::io::BufRead;
        let buf = buffered.fill_buf().map_err(|e| StageError::io(path, e))?;
        head.iter_mut().zip(buf).for_each(|(h, b)| *h = *b);
    }
    let reader: Box<dyn Read> = if head == [0x1f, 0x8b] { Box::new(MultiGzDecoder::new(buffered)) } else { Box::new(buffered) };
    let mut archive = tar::Archive::new(reader);
    let bad = |e: std::io::Error| {
        StageError::Source(format!("{}: not a readable tar(.gz) archive: {}", path.display(), crate::error::printable(&e.to_string())))
    };
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
pub fn scan_tarball(path: &Path) -> Result<(Layout, Vec<ClipEntry>), StageError> {
    let mut clips = vec![];
    let mut layout = None;
    for_each_member(path, |name, reader| {
        let Some(l) = Layout::of_path(name) else { return Ok(()) };
        let (track_id, genre) = layout::parse_clip_name(name).expect("of_path checked the name");
        let mut hasher = blake3::Hasher::new();
        let bytes = std::io::copy(reader, &mut hasher).map_err(|e| StageError::Source(format!("{}: {name}: {e}", path.display())))?;
        layout.get_or_insert(l);
        clips.push(ClipEntry::new(track_id, genre, name.to_string(), bytes, hasher.finalize().to_hex().to_string()));
        Ok(())
    })?;
    let layout = layout
        .ok_or_else(|| StageError::Source(format!("{}: no GTZAN clips (<genre>/<genre>.000NN.wav) in the archive", path.display())))?;
    clips.sort_by(|a, b| a.track_id.cmp(&b.track_id));
    Ok((layout, clips))
}

/// List and hash the clips of a folder; `hash` may reuse known hashes (keyed by path, size,
/// mtime). A file that cannot be read is a reject, not an error.
pub fn scan_folder(
    root: &Path,
    mut hash: impl FnMut(&Path) -> FileHash,
) -> Result<(Layout, Vec<ClipEntry>, Vec<SourceReject>), StageError> {
    let layout = layout::detect_folder(root)?;
    let (listed, unlisted) = match layout {
        Layout::ClassFolders => layout::list_class_folders(root),
        _ => layout::list_folder(root, layout),
    };
    let rel = |path: &Path| path.strip_prefix(root).unwrap_or(path).to_string_lossy().replace('\\', "/");
    let clip_root = root.join(layout.clip_root());
    let mut rejected: Vec<SourceReject> = unlisted
        .into_iter()
        .map(|u| {
            let under = u.path.strip_prefix(&clip_root).unwrap_or(&u.path).to_string_lossy().replace('\\', "/");
            // GTZAN names give the track id; others are named by their path under the classes.
            let (track_id, genre) =
                layout::parse_clip_name(&under).unwrap_or_else(|| (under.clone(), under.split('/').next().unwrap_or_default().to_string()));
            SourceReject { track_id, genre, location: u.path.display().to_string(), reason: u.reason }
        })
        .collect();
    let mut clips = vec![];
    for (path, track_id, genre) in listed {
        let before = std::fs::metadata(&path).ok().and_then(|m| mtime_ns(&m));
        match hash(&path) {
            Ok((bytes, blake3)) => {
                let mut clip = ClipEntry::new(track_id, genre, rel(&path), bytes, blake3);
                clip.mtime_ns = settled_mtime(&path, before);
                clips.push(clip)
            }
            Err(e) => rejected.push(SourceReject { track_id, genre, location: path.display().to_string(), reason: e.to_string() }),
        }
    }
    Ok((layout, clips, rejected))
}

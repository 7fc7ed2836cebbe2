//! The download stage: make the raw clips available and list them in a [`SourceManifest`].
//!
//! Five sources, chosen by `download.source` in the configuration:
//! - `hub`: `data/genres.tar.gz` of the dataset repo `marsyas/gtzan` on the Hugging Face hub
//!   (repo, revision and file configurable), through hf-hub into its cache; or a dataset stored
//!   as Parquet (`files = [...]`, each with an `audio` struct of encoded bytes and a label
//!   column), read in place with arrow. `HF_ENDPOINT`, `HF_HOME` and `HF_TOKEN` are honoured as
//!   by every Hugging Face tool. Every file's SHA-256 is checked against the hub's LFS checksum
//!   (the blob's name) when there is one;
//! - `tarball`: a local `genres.tar.gz` (or `.tar`);
//! - `folder`: a local folder in GTZAN's Marsyas or Kaggle layout, or any folder of class
//!   sub-folders ([`crate::layout`]);
//! - `manifest`: a CSV, TSV or Parquet table of paths and labels ([`crate::manifest`]);
//! - `synthetic`: the built-in synthetic genre set, generated into the stage's folder.
//!
//! Whatever the source, the output is `source.json`: the container, its checksum and every clip
//! with its size and blake3 hash. Archives are read through once here, which both lists their
//! clips and proves that they are complete.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::StageError;
use crate::layout::Layout;
use crate::manifest::{self, Columns};
use crate::source::{Container, FileHash, ParquetColumns, SourceManifest, SourceReject, scan_folder, scan_hub_parquet, scan_tarball};
use crate::synthetic::{self, SyntheticConfig};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    Hub,
    Tarball,
    Folder,
    Manifest,
    Synthetic,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DownloadConfig {
    pub source: SourceKind,
    /// Hub dataset repository, revision (branch, tag or commit) and file within it.
    pub repo: String,
    pub revision: String,
    pub file: String,
    /// Hub datasets stored as Parquet: the files to read (e.g.
    /// `["data/train-00000-of-00002.parquet", "data/train-00001-of-00002.parquet"]`), or
    /// patterns matched against the repository's file list at `revision` (`["data/*.parquet"]`:
    /// `*` is any run of characters but `/`, `?` one); when set, `file` is not used.
    pub files: Vec<String>,
    /// The tarball, folder or manifest, for `tarball`, `folder` and `manifest` sources.
    pub path: Option<PathBuf>,
    /// Which columns of a manifest or hub dataset hold the path, label, group, ...
    pub columns: Columns,
    pub synthetic: SyntheticConfig,
}

impl DownloadConfig {
    /// The hub files to fetch: `files`, else `file`.
    pub fn hub_files(&self) -> Vec<String> {
        if self.files.is_empty() { vec![self.file.clone()] } else { self.files.clone() }
    }

    /// Whether the hub source is a Parquet dataset rather than a tarball.
    pub fn hub_is_parquet(&self) -> bool {
        self.hub_files().iter().all(|f| f.ends_with(".parquet"))
    }
}

impl Default for DownloadConfig {
    fn default() -> Self {
        DownloadConfig {
            source: SourceKind::Hub,
            repo: "marsyas/gtzan".into(),
            revision: "main".into(),
            file: "data/genres.tar.gz".into(),
            files: vec![],
            path: None,
            columns: Columns::default(),
            synthetic: SyntheticConfig::default(),
        }
    }
}

pub const MANIFEST: &str = "source.json";
pub const SYNTHETIC_DIR: &str = "synthetic";

/// Options that are not parameters of the result.
pub struct DownloadOptions<'a> {
    /// Show a progress bar for hub downloads.
    pub progress: bool,
    /// Ask the hub again even when the file is cached.
    pub refetch: bool,
    /// Hash a local file: `(size, blake3 hex)`; the engine passes one that remembers hashes.
    pub hash_file: &'a mut dyn FnMut(&Path) -> FileHash,
}

/// Run the stage: fetch or locate the clips and write `out_dir/source.json`.
pub fn download(cfg: &DownloadConfig, out_dir: &Path, opts: DownloadOptions) -> Result<SourceManifest, StageError> {
    let need_path =
        || cfg.path.clone().ok_or_else(|| StageError::Config(format!("download.source = {:?} needs download.path", cfg.source)));
    let manifest = match cfg.source {
        SourceKind::Hub if cfg.hub_is_parquet() => {
            let files = resolve_hub_files(cfg)?;
            let mut fetched = vec![];
            for f in &files {
                fetched.push(fetch_from_hub(cfg, f, opts.progress, opts.refetch)?);
            }
            let origin = format!("hub:{}@{}/{}", cfg.repo, cfg.revision, files.join(","));
            let (root, sizes) = snapshot_root(&fetched, &files)?;
            let (clips, rejected) = scan_hub_parquet(&root, &files, &cfg.columns)?;
            let bytes = sizes.iter().map(|(b, _)| b).sum();
            let sha256 = Some(sizes.iter().map(|(_, s)| s.as_str()).collect::<Vec<_>>().join(","));
            let parquet = Some(ParquetColumns { audio: cfg.columns.audio.clone(), label: cfg.columns.label.clone() });
            SourceManifest {
                origin,
                container: Container::Parquet,
                path: root,
                layout: Layout::HubParquet,
                bytes,
                sha256,
                clips,
                rejected,
                parquet,
            }
        }
        SourceKind::Hub => {
            let path = fetch_from_hub(cfg, &cfg.file, opts.progress, opts.refetch)?;
            tarball_manifest(&path, format!("hub:{}@{}/{}", cfg.repo, cfg.revision, cfg.file))?
        }
        SourceKind::Manifest => {
            let path = absolute(&need_path()?)?;
            let (clips, rejected) = manifest::manifest_clips(&path, &cfg.columns, opts.hash_file)?;
            if clips.is_empty() {
                return Err(StageError::Source(format!(
                    "{}: no usable clips ({} rows rejected; first reason: {})",
                    path.display(),
                    rejected.len(),
                    rejected.first().map_or("the manifest has no rows", |r| r.reason.as_str())
                )));
            }
            let bytes = clips.iter().map(|c| c.bytes).sum();
            let root = path.parent().unwrap_or(Path::new("/")).to_path_buf();
            SourceManifest {
                origin: format!("manifest:{}", path.display()),
                container: Container::Folder,
                path: root,
                layout: Layout::Manifest,
                bytes,
                sha256: None,
                clips,
                rejected,
                parquet: None,
            }
        }
        SourceKind::Tarball => {
            let path = need_path()?;
            tarball_manifest(&path, format!("tarball:{}", path.display()))?
        }
        SourceKind::Folder => {
            let path = need_path()?;
            folder_manifest(&path, format!("folder:{}", path.display()), opts.hash_file)?
        }
        SourceKind::Synthetic => {
            let root = out_dir.join(SYNTHETIC_DIR);
            if root.exists() {
                std::fs::remove_dir_all(&root).map_err(|e| StageError::io(&root, e))?;
            }
            let n = synthetic::write_set(&cfg.synthetic, &root)?;
            tracing::info!(clips = n, folder = %root.display(), "generated the synthetic genre set");
            folder_manifest(&root, "synthetic".into(), opts.hash_file)?
        }
    };
    let manifest = without_duplicates(manifest);
    let json = serde_json::to_vec_pretty(&manifest).expect("manifest serialises");
    genrelab_store::atomic::write_atomic(out_dir.join(MANIFEST), &json)?;
    tracing::info!(origin = %manifest.origin, clips = manifest.clips.len(), genres = manifest.genres().len(), "source ready");
    Ok(manifest)
}

pub fn read_manifest(out_dir: &Path) -> Result<SourceManifest, StageError> {
    let path = out_dir.join(MANIFEST);
    let bytes = std::fs::read(&path).map_err(|e| StageError::io(&path, e))?;
    serde_json::from_slice(&bytes).map_err(|e| StageError::Source(format!("{}: {e}", path.display())))
}

fn absolute(path: &Path) -> Result<PathBuf, StageError> {
    std::fs::canonicalize(path).map_err(|e| StageError::io(path, e))
}

fn tarball_manifest(path: &Path, origin: String) -> Result<SourceManifest, StageError> {
    let path = absolute(path)?;
    let (bytes, sha256) = sha256_file(&path)?;
    let (layout, clips) = scan_tarball(&path)?;
    Ok(SourceManifest {
        origin,
        container: Container::Tarball,
        path,
        layout,
        bytes,
        sha256: Some(sha256),
        clips,
        rejected: vec![],
        parquet: None,
    })
}

fn folder_manifest(root: &Path, origin: String, hash: &mut dyn FnMut(&Path) -> FileHash) -> Result<SourceManifest, StageError> {
    let root = absolute(root)?;
    let (layout, clips, rejected) = scan_folder(&root, hash)?;
    let bytes = clips.iter().map(|c| c.bytes).sum();
    Ok(SourceManifest { origin, container: Container::Folder, path: root, layout, bytes, sha256: None, clips, rejected, parquet: None })
}

pub fn sha256_file(path: &Path) -> Result<(u64, String), StageError> {
    let mut f = std::fs::File::open(path).map_err(|e| StageError::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(|e| StageError::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    Ok((total, hex::encode(hasher.finalize())))
}

/// The folder that holds the fetched hub files (hf-hub's snapshot folder), and each file's
/// `(size, SHA-256)`.
fn snapshot_root(fetched: &[PathBuf], files: &[String]) -> Result<(PathBuf, Vec<(u64, String)>), StageError> {
    let first = fetched.first().ok_or_else(|| StageError::Config("download.files is empty".into()))?;
    let mut root = first.clone();
    for _ in Path::new(&files[0]).components() {
        root.pop();
    }
    let sizes = fetched.iter().map(|p| sha256_file(p)).collect::<Result<Vec<_>, _>>()?;
    Ok((root, sizes))
}

/// One clip per track id: a later clip with an id already listed (a tarball holding a member
/// twice, one clip under two layouts) becomes a reject that says so; the first is kept (and is
/// the one a tarball's stream reads).
fn without_duplicates(mut m: SourceManifest) -> SourceManifest {
    let mut first: HashMap<String, String> = HashMap::new();
    let mut kept = Vec::with_capacity(m.clips.len());
    for c in std::mem::take(&mut m.clips) {
        match first.get(&c.track_id) {
            Some(where_first) => {
                let location = m.location(&c);
                let reason = if *where_first == location {
                    format!("listed twice: {location} appears twice in the source; the first copy is used")
                } else {
                    format!("duplicate track id {:?}: already listed at {where_first}", c.track_id)
                };
                m.rejected.push(SourceReject { track_id: c.track_id.clone(), genre: c.genre.clone(), location, reason });
            }
            None => {
                first.insert(c.track_id.clone(), m.location(&c));
                kept.push(c);
            }
        }
    }
    m.clips = kept;
    m
}

/// The configured hub dataset repo at its revision, through hf-hub (HF_ENDPOINT, HF_HOME and
/// HF_TOKEN from the environment).
fn hub_repo(cfg: &DownloadConfig, progress: bool) -> Result<hf_hub::api::sync::ApiRepo, StageError> {
    use hf_hub::api::sync::ApiBuilder;
    use hf_hub::{Repo, RepoType};

    let mut builder = ApiBuilder::from_env().with_progress(progress).with_retries(2);
    if let Ok(token) = std::env::var("HF_TOKEN")
        && !token.is_empty()
    {
        builder = builder.with_token(Some(token));
    }
    let api = builder.build().map_err(|e| StageError::Config(format!("hub client: {e}")))?;
    Ok(api.repo(Repo::with_revision(cfg.repo.clone(), RepoType::Dataset, cfg.revision.clone())))
}

/// `download.files`, with every pattern replaced by the repository's files that match it (sorted;
/// a pattern that matches nothing is an error listing what there is).
pub fn resolve_hub_files(cfg: &DownloadConfig) -> Result<Vec<String>, StageError> {
    let wanted = cfg.hub_files();
    if !wanted.iter().any(|f| f.contains(['*', '?'])) {
        return Ok(wanted);
    }
    let repo = hub_repo(cfg, false)?;
    let url = format!("{}@{}", cfg.repo, cfg.revision);
    let info =
        repo.info().map_err(|e| StageError::Download { url: url.clone(), message: format!("listing the repository's files: {e}") })?;
    let mut all: Vec<String> = info.siblings.into_iter().map(|s| s.rfilename).collect();
    all.sort();
    let mut out = vec![];
    for pattern in &wanted {
        let matched: Vec<&String> = all.iter().filter(|f| glob_match(pattern, f)).collect();
        if matched.is_empty() {
            let shown: Vec<&str> = all.iter().take(20).map(String::as_str).collect();
            return Err(StageError::Config(format!(
                "download.files: no file of {url} matches \"{pattern}\"; it has {} files: {}{}",
                all.len(),
                shown.join(", "),
                if all.len() > shown.len() { ", ..." } else { "" }
            )));
        }
        out.extend(matched.into_iter().filter(|f| !out.contains(*f)).cloned().collect::<Vec<_>>());
    }
    tracing::info!(files = out.len(), "hub files matched download.files");
    Ok(out)
}

/// Whether `name` matches `pattern`: `*` is any run of characters but `/`, `?` any one but `/`.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    fn m(p: &[u8], n: &[u8]) -> bool {
        match (p.first(), n.first()) {
            (None, None) => true,
            (Some(b'*'), _) => m(&p[1..], n) || (n.first().is_some_and(|&c| c != b'/') && m(p, &n[1..])),
            (Some(b'?'), Some(&c)) => c != b'/' && m(&p[1..], &n[1..]),
            (Some(a), Some(b)) => a == b && m(&p[1..], &n[1..]),
            _ => false,
        }
    }
    m(pattern.as_bytes(), name.as_bytes())
}

/// Fetch `file` of the configured hub repo into hf-hub's cache; returns the cached file's path
/// in the snapshot folder (a link to the blob).
fn fetch_from_hub(cfg: &DownloadConfig, file: &str, progress: bool, refetch: bool) -> Result<PathBuf, StageError> {
    use hf_hub::{Repo, RepoType};

    let repo = hub_repo(cfg, progress)?;
    let url = repo.url(file);
    let fail = |message: String| StageError::Download { url: url.clone(), message };
    tracing::info!(%url, "fetching from the hub");
    let blobs = hf_hub::Cache::from_env()
        .path()
        .join(Repo::with_revision(cfg.repo.clone(), RepoType::Dataset, cfg.revision.clone()).folder_name())
        .join("blobs");
    let result = if refetch { repo.download(file) } else { repo.get(file) };
    let path = match result {
        Ok(p) => p,
        Err(e) => {
            remove_partial_blobs(&blobs);
            return Err(fail(e.to_string()));
        }
    };
    // hf-hub names an LFS blob by its SHA-256: check the bytes we got against it.
    let blob = std::fs::canonicalize(&path).map_err(|e| StageError::io(&path, e))?;
    let name = blob.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    if name.len() == 64 && name.chars().all(|c| c.is_ascii_hexdigit()) {
        let (_, sha) = sha256_file(&blob)?;
        if sha != name {
            let _ = std::fs::remove_file(&blob);
            let _ = std::fs::remove_file(&path);
            remove_partial_blobs(&blobs);
            return Err(fail(format!("checksum mismatch: got SHA-256 {sha}, the hub announced {name}; the damaged file was removed")));
        }
    }
    // The snapshot's path: Parquet files are read beside each other there; a tarball's manifest
    // resolves it to the blob.
    Ok(path)
}

/// hf-hub leaves `*.sync.part` files (for resuming) and `*.lock` files behind when a fetch
/// fails; a failed fetch must leave nothing half-written, so both go.
fn remove_partial_blobs(blobs: &Path) {
    for e in std::fs::read_dir(blobs).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with(".part") || name.ends_with(".lock") {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn file_patterns_match_within_one_folder_level() {
        assert!(glob_match("data/*.parquet", "data/train-00000-of-00002.parquet"));
        assert!(glob_match("data/train-*-of-0000?.parquet", "data/train-00001-of-00002.parquet"));
        assert!(!glob_match("data/*.parquet", "data/sub/x.parquet"), "* stays within a folder");
        assert!(!glob_match("data/*.parquet", "data/x.parquet.lock"));
        assert!(glob_match("*/*", "a/b") && !glob_match("?", "/") && glob_match("exact.parquet", "exact.parquet"));
    }
}

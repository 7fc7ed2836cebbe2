//! genrelab's stages as engine [`Stage`]s: what each reads, which parameters, what it writes.
//!
//! ```text
//! download -> features -> split -> train -> evaluate
//!        \-> descriptors ---------/
//! ```

use std::path::PathBuf;

use genrelab_data::download::{self, DownloadOptions, SourceKind};
use genrelab_data::{descriptors, features, split};
use genrelab_runs::{evaluate, train};
use genrelab_store::names;
use serde_json::{Value, json};

use genrelab_pipeline::engine::{Ctx, Engine, Paths, Stage, StageFailure};

use crate::config::{Config, Folders};

/// The pipeline in dependency order.
pub fn engine() -> Engine<Config> {
    Engine::new(vec![Box::new(Download), Box::new(Features), Box::new(Descriptors), Box::new(Split), Box::new(Train), Box::new(Evaluate)])
}

pub struct Download;

impl Stage<Config> for Download {
    fn name(&self) -> &'static str {
        "download"
    }
    // 2: a folder's clips are listed with their settled modification times (`mtime_ns`).
    fn version(&self) -> u32 {
        2
    }
    fn about(&self) -> &'static str {
        "fetch or locate the clips (hub, tarball, folder, manifest or synthetic) and list them with labels and checksums"
    }
    fn deps(&self) -> &'static [&'static str] {
        &[]
    }
    fn params(&self, cfg: &Config) -> Value {
        let d = &cfg.download;
        match d.source {
            SourceKind::Hub if d.hub_is_parquet() => {
                json!({"source": "hub", "repo": d.repo, "revision": d.revision, "files": d.hub_files(), "audio": d.columns.audio, "label": d.columns.label})
            }
            SourceKind::Hub => json!({"source": "hub", "repo": d.repo, "revision": d.revision, "file": d.file}),
            SourceKind::Tarball => json!({"source": "tarball", "path": d.path}),
            SourceKind::Folder => json!({"source": "folder", "path": d.path}),
            SourceKind::Manifest => json!({"source": "manifest", "path": d.path, "columns": d.columns}),
            SourceKind::Synthetic => json!({"source": "synthetic", "synthetic": d.synthetic}),
        }
    }
    fn external_inputs(&self, cfg: &Config) -> Vec<PathBuf> {
        match cfg.download.source {
            SourceKind::Tarball | SourceKind::Folder => cfg.download.path.iter().cloned().collect(),
            // The manifest (the files it names are optional inputs).
            SourceKind::Manifest => cfg.download.path.iter().cloned().collect(),
            SourceKind::Hub | SourceKind::Synthetic => vec![],
        }
    }
    fn optional_inputs(&self, cfg: &Config) -> Vec<PathBuf> {
        // Every file a manifest names: a missing one is a reject, and appears later as a change.
        match (&cfg.download.source, &cfg.download.path) {
            (SourceKind::Manifest, Some(m)) => genrelab_data::manifest::listed_files(m, &cfg.download.columns),
            _ => vec![],
        }
    }
    fn outputs(&self, cfg: &Config, paths: &Paths) -> Vec<PathBuf> {
        let mut o = vec![paths.download_dir().join(download::MANIFEST)];
        if cfg.download.source == SourceKind::Synthetic {
            o.push(paths.download_dir().join(download::SYNTHETIC_DIR));
        }
        o
    }
    fn still_valid(&self, cfg: &Config, paths: &Paths) -> Option<String> {
        // A hub download lives in the hub cache, outside the work folder: check it is still there.
        if cfg.download.source != SourceKind::Hub {
            return None;
        }
        let m = download::read_manifest(&paths.download_dir()).ok()?;
        if m.container == genrelab_data::source::Container::Parquet {
            let files = cfg.download.hub_files();
            return files
                .iter()
                .map(|f| m.path.join(f))
                .find(|p| !p.is_file())
                .map(|p| format!("the downloaded file {} is gone", p.display()));
        }
        match std::fs::metadata(&m.path) {
            Ok(meta) if meta.len() == m.bytes => None,
            _ => Some(format!("the downloaded archive {} is gone or changed", m.path.display())),
        }
    }
    fn run(&self, ctx: &mut Ctx<Config>) -> Result<Value, StageFailure> {
        let hashes = &mut *ctx.hashes;
        let mut hash_file = |p: &std::path::Path| hashes.file(p);
        let m = download::download(
            &ctx.cfg.download,
            &ctx.paths.download_dir(),
            DownloadOptions { progress: ctx.progress, refetch: ctx.forced, hash_file: &mut hash_file },
        )?;
        Ok(json!({"origin": m.origin, "clips": m.clips.len(), "genres": m.genres().len(), "bytes": m.bytes, "sha256": m.sha256}))
    }
}

pub struct Features;

impl Stage<Config> for Features {
    fn name(&self) -> &'static str {
        "features"
    }
    // 2: the `window` column (an existing store's rows are reused, not decoded again).
    // 3: front end revision 2 (vectorised mel sums and log10): every clip is decoded again.
    fn version(&self) -> u32 {
        3
    }
    fn about(&self) -> &'static str {
        "decode every clip and write the log-mel feature tables (and the rejects)"
    }
    fn deps(&self) -> &'static [&'static str] {
        &["download"]
    }
    fn params(&self, cfg: &Config) -> Value {
        let mut p = json!(cfg.features);
        p["limits"] = json!(cfg.limits);
        p
    }
    fn outputs(&self, _cfg: &Config, paths: &Paths) -> Vec<PathBuf> {
        let s = paths.store_dir();
        vec![s.join(names::FEATURES), s.join(names::FEATURES_FULL), s.join(names::REJECTS)]
    }
    fn run(&self, ctx: &mut Ctx<Config>) -> Result<Value, StageFailure> {
        let source = download::read_manifest(&ctx.paths.download_dir())?;
        let s =
            features::extract_features(&source, &ctx.cfg.features, &ctx.paths.store_dir(), ctx.cfg.threads, &ctx.cfg.limits, !ctx.forced)?;
        Ok(json!(s))
    }
}

pub struct Descriptors;

impl Stage<Config> for Descriptors {
    fn name(&self) -> &'static str {
        "descriptors"
    }
    // 2: an `audio_hash` column (rows reused per clip); a long track's excerpt described.
    // 3: front end revision 2 (its log10 is vectorised): every clip is described again.
    fn version(&self) -> u32 {
        3
    }
    fn about(&self) -> &'static str {
        "hand-crafted statistics of every clip (MFCC, spectral shape, ZCR, RMS, chroma, tempo) for the classical baseline"
    }
    fn deps(&self) -> &'static [&'static str] {
        &["download"]
    }
    fn params(&self, cfg: &Config) -> Value {
        json!({"features": cfg.features, "descriptors": cfg.descriptors, "limits": cfg.limits})
    }
    fn outputs(&self, _cfg: &Config, paths: &Paths) -> Vec<PathBuf> {
        vec![paths.store_dir().join(names::DESCRIPTORS)]
    }
    fn run(&self, ctx: &mut Ctx<Config>) -> Result<Value, StageFailure> {
        let source = download::read_manifest(&ctx.paths.download_dir())?;
        let s = descriptors::extract_descriptors(
            &source,
            &ctx.cfg.features,
            &ctx.cfg.descriptors,
            &ctx.paths.store_dir(),
            ctx.cfg.threads,
            &ctx.cfg.limits,
        )?;
        Ok(json!(s))
    }
}

pub struct Split;

impl Stage<Config> for Split {
    fn name(&self) -> &'static str {
        "split"
    }
    fn version(&self) -> u32 {
        1
    }
    fn about(&self) -> &'static str {
        "assign every clip to train / valid / test or to a fold, stratified by class, keeping groups whole"
    }
    fn deps(&self) -> &'static [&'static str] {
        &["download", "features"]
    }
    fn params(&self, cfg: &Config) -> Value {
        json!(cfg.split)
    }
    fn external_inputs(&self, cfg: &Config) -> Vec<PathBuf> {
        match (&cfg.split.protocol, &cfg.split.lists) {
            (split::Protocol::Filtered, Some(dir)) => {
                ["train", "valid", "test"].iter().map(|p| dir.join(format!("{p}_filtered.txt"))).collect()
            }
            _ => vec![],
        }
    }
    fn outputs(&self, _cfg: &Config, paths: &Paths) -> Vec<PathBuf> {
        vec![paths.store_dir().join(names::SPLIT)]
    }
    fn run(&self, ctx: &mut Ctx<Config>) -> Result<Value, StageFailure> {
        let source = download::read_manifest(&ctx.paths.download_dir())?;
        Ok(json!(split::make_split(&ctx.paths.store_dir(), &ctx.cfg.split, Some(&source))?))
    }
}

pub struct Train;

impl Stage<Config> for Train {
    fn name(&self) -> &'static str {
        "train"
    }
    fn version(&self) -> u32 {
        // 2: checkpoints carry a fingerprint of their data. 3: recipes, validation, crop and
        // descriptor models. 4: libtorch (tch) instead of burn; safetensors weights (runs of
        // burn's `.bpk` checkpoints are trained again).
        4
    }
    fn about(&self) -> &'static str {
        "train every configured model for every seed (and fold) from the cached features"
    }
    fn deps(&self) -> &'static [&'static str] {
        &["features", "descriptors", "split"]
    }
    fn params(&self, cfg: &Config) -> Value {
        json!(cfg.train)
    }
    fn outputs(&self, _cfg: &Config, paths: &Paths) -> Vec<PathBuf> {
        vec![paths.train_dir(), paths.store_dir().join(names::HISTORY)]
    }
    fn progress(&self, cfg: &Config, paths: &Paths) -> Option<String> {
        let folds = if cfg.split.protocol == split::Protocol::Kfold { cfg.split.folds } else { 1 };
        train::folder_progress(&paths.train_dir(), &cfg.train, folds)
    }
    fn run(&self, ctx: &mut Ctx<Config>) -> Result<Value, StageFailure> {
        Ok(train::train(&ctx.paths.store_dir(), &ctx.paths.train_dir(), &ctx.cfg.train, ctx.forced, ctx.cfg.workers())?)
    }
}

pub struct Evaluate;

impl Stage<Config> for Evaluate {
    fn name(&self) -> &'static str {
        "evaluate"
    }
    fn version(&self) -> u32 {
        // 3: each model's seed ensemble scored per fold (mean +- std), and `predict`'s default
        // model judged by it. 4: the seed ensemble keeps balanced accuracy, macro-F1 and its
        // confusion (metrics.json `seeds_averaged`), a row and a figure in the report.
        // 5: the training cost (wall time per run, per ensemble and test part, in all; where).
        // 6: every run also scored on its validation part (the report's "valid acc / loss"
        // column); `[evaluate] window_hop`. 7: the cost line says the runs' wall times are summed
        // (runs trained side by side with `jobs` > 1 overlap in time).
        7
    }
    fn about(&self) -> &'static str {
        "score every run on its test part; summaries across seeds, the study's table, the report"
    }
    fn deps(&self) -> &'static [&'static str] {
        &["features", "descriptors", "split", "train"]
    }
    fn params(&self, cfg: &Config) -> Value {
        json!(cfg.evaluate)
    }
    fn outputs(&self, _cfg: &Config, paths: &Paths) -> Vec<PathBuf> {
        let s = paths.store_dir();
        vec![s.join(names::METRICS), s.join(names::PER_GENRE), s.join(names::PREDICTIONS), paths.report_dir()]
    }
    fn run(&self, ctx: &mut Ctx<Config>) -> Result<Value, StageFailure> {
        let e = evaluate::evaluate(&ctx.paths.store_dir(), &ctx.paths.train_dir(), &ctx.paths.report_dir(), &ctx.cfg.evaluate)?;
        let best = e.best();
        Ok(json!({"runs": e.runs.len(), "best_model": best.map(|b| b.0), "best_accuracy": best.map(|b| b.1)}))
    }
}

//! The features stage: decode every clip and write the feature store's tables.
//!
//! Clips stream out of the source in manifest order in batches; each batch is decoded and turned
//! into log-mels in parallel (rayon), so the output does not depend on the thread count and memory
//! stays flat. The store is incremental per clip: a clip whose bytes (blake3) and feature
//! configuration are unchanged keeps its rows, so adding, removing or editing a few files decodes
//! only those. Finished batches are written as segment files under `store/.partial/` as they
//! come, so a killed run keeps them and the next run decodes only the rest; the tables
//! `features` (64 x 100) and `features_full` (128 x 1,291) are then written from the previous
//! tables and the segments, in the source's order. A clip that cannot be decoded goes to
//! `rejects` with the reason; the stage only fails when no clip at all could be used.

use std::path::{Path, PathBuf};
use std::time::Instant;

use genrelab_store::{FeatureRow, FeatureRowReader, FeatureTableWriter, RejectRow, TableMeta, names, write_rejects};
use serde::Serialize;

use crate::StageError;
use crate::audio::decode_any;
use crate::logmel::{FeatureConfig, Features, LogMel};
use crate::source::{ClipEntry, SourceManifest};

/// What a run of the stage did.
#[derive(Debug, Clone, Serialize)]
pub struct FeatureSummary {
    /// Rows of the tables.
    pub clips: usize,
    /// Clips decoded by this run; the others' rows were reused (unchanged bytes, same settings).
    pub decoded: usize,
    pub reused: usize,
    pub rejected: usize,
    pub seconds: f64,
    /// Clips decoded (or rejected) per second.
    pub clips_per_second: f64,
    pub threads: usize,
    /// The process's peak resident memory at the end of the stage (Linux), in MiB.
    pub peak_rss_mib: Option<f64>,
}

/// Peak resident set size of this process (VmHWM), in MiB; None where /proc is not available.
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// The metadata written into both feature tables: the feature configuration, where the clips
/// came from and in which layout (GTZAN's, class folders, a manifest, a hub dataset).
pub fn feature_table_meta(table: &str, cfg: &FeatureConfig, source: &SourceManifest) -> TableMeta {
    TableMeta::new(table)
        .with("feature_config", serde_json::to_string(cfg).expect("config serialises"))
        .with("feature_config_hash", cfg.hash())
        .with("source", &source.origin)
        .with("layout", serde_json::to_value(source.layout).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default())
}

/// Whether a feature table holds GTZAN itself (one of GTZAN's layouts, not the synthetic set),
/// the only data next to which the study's figures mean anything.
pub fn is_gtzan(meta: &TableMeta) -> bool {
    let origin = meta.get("source").unwrap_or_default();
    let gtzan_layout = match meta.get("layout") {
        Some(l) => ["marsyas", "kaggle", "genre_folders"].contains(&l),
        None => !origin.starts_with("manifest:"),
    };
    gtzan_layout && origin != "synthetic"
}

/// Read the feature configuration a table was made with.
pub fn feature_config_of(meta: &TableMeta) -> Result<FeatureConfig, StageError> {
    let json =
        meta.get("feature_config").ok_or_else(|| StageError::Source("feature table has no genrelab.feature_config metadata".into()))?;
    serde_json::from_str(json).map_err(|e| StageError::Source(format!("bad genrelab.feature_config: {e}")))
}

/// Decode one clip's bytes and compute its features; also returns the bytes' blake3 hash.
pub fn clip_features(lm: &LogMel, entry: &ClipEntry, bytes: &[u8]) -> Result<(Features, crate::audio::Decoded, String), String> {
    let hash = blake3::hash(bytes).to_hex().to_string();
    if !entry.blake3.is_empty() && hash != entry.blake3 {
        return Err(format!(
            "changed since the download stage listed it (blake3 {hash}, listed {}); run the download stage again",
            entry.blake3
        ));
    }
    let decoded = decode_any(bytes, entry.extension(), lm.config().sample_rate).map_err(|e| e.to_string())?;
    Ok((lm.features(&decoded.samples), decoded, hash))
}

/// Where a run keeps the rows it computed until the tables are written: segments of finished
/// batches, which a killed run leaves for the next one to reuse.
pub fn partial_dir(store_dir: &Path, cfg: &FeatureConfig) -> PathBuf {
    store_dir.join(PARTIAL).join(format!("features-{}", cfg.hash()))
}

const PARTIAL: &str = ".partial";
/// Computed rows per segment file.
const SEGMENT_ROWS: usize = 64;

/// A table pair (`features`, `features_full`) whose rows can be reused by audio hash.
struct Reusable {
    small: FeatureRowReader,
    full: FeatureRowReader,
}

impl Reusable {
    fn open(small: &Path, full: &Path, cfg_hash: &str) -> Option<Reusable> {
        let small = FeatureRowReader::open(small).ok()?;
        let full = FeatureRowReader::open(full).ok()?;
        let current = |r: &FeatureRowReader| r.meta().get("feature_config_hash") == Some(cfg_hash);
        (current(&small) && current(&full)).then_some(Reusable { small, full })
    }

    fn contains(&self, hash: &str) -> bool {
        self.small.contains(hash) && self.full.contains(hash)
    }
}

/// Run the stage. `threads = 0` uses every core. With `reuse`, a clip whose bytes (blake3) are in
/// the previous tables made with the same feature configuration, or in the segments of a killed
/// run, is not decoded again: its rows are copied. Without (`--force features`), every clip is.
pub fn extract_features(
    source: &SourceManifest,
    cfg: &FeatureConfig,
    store_dir: &Path,
    threads: usize,
    reuse: bool,
) -> Result<FeatureSummary, StageError> {
    let lm = LogMel::new(cfg).map_err(StageError::Config)?;
    let start = Instant::now();
    let cfg_hash = cfg.hash();
    let partial = partial_dir(store_dir, cfg);
    // Segments of other configurations can never be reused.
    for e in std::fs::read_dir(store_dir.join(PARTIAL)).into_iter().flatten().flatten() {
        if e.path() != partial || !reuse {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
    let mut reusable: Vec<Reusable> = Reusable::open(&store_dir.join(names::FEATURES), &store_dir.join(names::FEATURES_FULL), &cfg_hash)
        .into_iter()
        .filter(|_| reuse)
        .collect();
    let segments = |dir: &Path| -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.to_string_lossy().ends_with(".small.parquet"))
            .collect();
        v.sort();
        v
    };
    let open_segment = |small: &Path| {
        let full = PathBuf::from(small.to_string_lossy().replace(".small.parquet", ".full.parquet"));
        Reusable::open(small, &full, &cfg_hash)
    };
    let kept = segments(&partial);
    reusable.extend(kept.iter().filter_map(|p| open_segment(p)));
    let known = |hash: &str| reusable.iter().any(|r| r.contains(hash));
    let todo: Vec<ClipEntry> = source.clips.iter().filter(|c| c.blake3.is_empty() || !known(&c.blake3)).cloned().collect();
    let reused = source.clips.len() - todo.len();
    if reused > 0 {
        tracing::info!(reused, to_decode = todo.len(), "clips unchanged since the last run are not decoded again");
    }

    // What the download stage could not list comes first, with its reason.
    let mut rejects: Vec<RejectRow> = source
        .rejected
        .iter()
        .map(|r| RejectRow { source: r.location.clone(), track_id: r.track_id.clone(), genre: r.genre.clone(), reason: r.reason.clone() })
        .collect();
    let mut threads_used = rayon::current_num_threads();
    let mut decoded = 0usize;
    if !todo.is_empty() {
        // 1. Decode what is new, writing finished rows to segment files as they come (on a
        //    thread of their own, overlapping the next batch's decoding).
        let first_segment = kept.len();
        let meta_small = feature_table_meta("features", cfg, source);
        let meta_full = feature_table_meta("features_full", cfg, source);
        let (tx, rx) = std::sync::mpsc::sync_channel::<(Vec<FeatureRow>, Vec<FeatureRow>)>(1);
        let subset = SourceManifest { clips: todo, ..source.clone() };
        let read = std::thread::scope(|scope| {
            let partial = &partial;
            let (meta_small, meta_full) = (&meta_small, &meta_full);
            let writer = scope.spawn(move || -> Result<usize, StageError> {
                let mut n = first_segment;
                let (mut small, mut full) = (vec![], vec![]);
                let mut flush = |small: &mut Vec<FeatureRow>, full: &mut Vec<FeatureRow>| -> Result<(), StageError> {
                    let name = |kind: &str| partial.join(format!("seg-{n:06}.{kind}.parquet"));
                    let mut w = FeatureTableWriter::create_scratch(&name("full"), meta_full, cfg.n_mels, cfg.frames)?;
                    w.write(full)?;
                    w.finish()?;
                    // The small table last: a segment counts once its `.small` file exists.
                    let mut w = FeatureTableWriter::create_scratch(&name("small"), meta_small, cfg.out_mels, cfg.out_frames)?;
                    w.write(small)?;
                    w.finish()?;
                    n += 1;
                    small.clear();
                    full.clear();
                    Ok(())
                };
                let mut rows = 0;
                for (s, f) in rx {
                    rows += s.len();
                    small.extend(s);
                    full.extend(f);
                    if small.len() >= SEGMENT_ROWS {
                        flush(&mut small, &mut full)?;
                    }
                }
                if !small.is_empty() {
                    flush(&mut small, &mut full)?;
                }
                Ok(rows)
            });
            let read = subset.par_map_clips(
                threads,
                "features",
                |entry, b| clip_features(&lm, entry, b),
                |results| {
                    let mut rows_small = Vec::with_capacity(results.len());
                    let mut rows_full = Vec::with_capacity(results.len());
                    for (entry, result) in results {
                        match result {
                            Ok((f, decoded, hash)) => {
                                let (mean_db, std_db) = f.full.mean_std();
                                let row = FeatureRow {
                                    source: source.location(&entry),
                                    track_id: entry.track_id,
                                    genre: entry.genre,
                                    audio_hash: hash,
                                    sample_rate: decoded.source_rate,
                                    n_samples: decoded.source_frames,
                                    channels: decoded.channels,
                                    mean_db,
                                    std_db,
                                    padded: lm.is_padded(&decoded.samples),
                                    values: f.small.values,
                                };
                                rows_full.push(FeatureRow { values: f.full.values, ..row.clone() });
                                rows_small.push(row);
                            }
                            Err(reason) => {
                                tracing::warn!(clip = %source.location(&entry), %reason, "skipped");
                                rejects.push(RejectRow {
                                    source: source.location(&entry),
                                    track_id: entry.track_id,
                                    genre: entry.genre,
                                    reason,
                                });
                            }
                        }
                    }
                    tx.send((rows_small, rows_full)).map_err(|_| "the segment writer stopped".to_string())
                },
            );
            drop(tx);
            let written = writer.join().expect("writer thread does not panic");
            // A writer error explains a failed send better than the send itself.
            written.and_then(|rows| read.map(|t| (rows, t)))
        })?;
        decoded = read.0;
        threads_used = read.1;
        reusable.extend(segments(&partial).iter().skip(first_segment).filter_map(|p| open_segment(p)));
    }

    // 2. The tables, in the source's order: every row from the previous tables or a segment.
    let mut small = FeatureTableWriter::create(
        &store_dir.join(names::FEATURES),
        &feature_table_meta("features", cfg, source),
        cfg.out_mels,
        cfg.out_frames,
    )?;
    let mut full = FeatureTableWriter::create(
        &store_dir.join(names::FEATURES_FULL),
        &feature_table_meta("features_full", cfg, source),
        cfg.n_mels,
        cfg.frames,
    )?;
    let (mut batch_small, mut batch_full) = (vec![], vec![]);
    // Only the source being read holds a row group in memory: memory stays bounded by a row
    // group per table, however many segments there are.
    let mut current = None;
    for c in &source.clips {
        let Some(i) = reusable.iter().position(|r| r.contains(&c.blake3)) else { continue };
        if let Some(last) = current.filter(|&last| last != i) {
            let r: &mut Reusable = &mut reusable[last];
            r.small.release();
            r.full.release();
        }
        current = Some(i);
        let r = &mut reusable[i];
        let location = source.location(c);
        let s = r.small.row(&c.blake3, &c.track_id, &c.genre, &location)?;
        let f = r.full.row(&c.blake3, &c.track_id, &c.genre, &location)?;
        if let (Some(s), Some(f)) = (s, f) {
            batch_small.push(s);
            batch_full.push(f);
        }
        if batch_small.len() >= 16 {
            small.write(&std::mem::take(&mut batch_small))?;
            full.write(&std::mem::take(&mut batch_full))?;
        }
    }
    small.write(&batch_small)?;
    full.write(&batch_full)?;

    let clips = small.rows();
    if clips == 0 {
        return Err(StageError::Failed(format!(
            "none of the {} clips could be decoded; first reason: {}",
            rejects.len(),
            rejects.first().map_or("(no clips listed)", |r| r.reason.as_str())
        )));
    }
    small.finish()?;
    full.finish()?;
    write_rejects(&store_dir.join(names::REJECTS), &TableMeta::new("rejects").with("source", &source.origin), &rejects)?;
    drop(reusable);
    let _ = std::fs::remove_dir_all(store_dir.join(PARTIAL));
    let seconds = start.elapsed().as_secs_f64();
    let summary = FeatureSummary {
        clips,
        decoded,
        reused: clips - decoded,
        rejected: rejects.len(),
        seconds,
        clips_per_second: (decoded + rejects.len()) as f64 / seconds.max(1e-9),
        threads: threads_used,
        peak_rss_mib: peak_rss_mib(),
    };
    tracing::info!(
        clips,
        decoded,
        reused = clips - decoded,
        rejected = rejects.len(),
        seconds = format!("{seconds:.2}"),
        "features written"
    );
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::download::{DownloadConfig, DownloadOptions, SourceKind, download};

    fn hash(p: &Path) -> crate::source::FileHash {
        std::fs::read(p).map(|b| (b.len() as u64, blake3::hash(&b).to_hex().to_string())).map_err(|e| e.to_string())
    }

    /// A short tone per class folder, any file name.
    fn clip(root: &Path, rel: &str, pitch: f32) {
        let x: Vec<f32> = (0..8000).map(|i| 0.3 * (i as f32 * pitch).sin()).collect();
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, crate::audio::wav_bytes_i16(&x, 22050)).unwrap();
    }

    fn small_cfg() -> FeatureConfig {
        FeatureConfig { n_mels: 16, frames: 20, out_mels: 8, out_frames: 10, ..FeatureConfig::default() }
    }

    fn source(data: &Path, work: &Path) -> SourceManifest {
        let cfg = DownloadConfig { source: SourceKind::Folder, path: Some(data.to_path_buf()), ..DownloadConfig::default() };
        download(&cfg, work, DownloadOptions { progress: false, refetch: false, hash_file: &mut hash }).unwrap()
    }

    fn table(store: &Path) -> Vec<(String, String, Vec<f32>)> {
        let m = genrelab_store::read_features(&store.join(names::FEATURES_FULL)).unwrap();
        (0..m.len()).map(|i| (m.track_ids[i].clone(), m.genres[i].clone(), m.row(i).to_vec())).collect()
    }

    #[test]
    fn only_added_or_edited_clips_are_decoded_and_the_tables_equal_a_fresh_run() {
        let dir = tempfile::tempdir().unwrap();
        let (data, work, store) = (dir.path().join("data"), dir.path().join("work"), dir.path().join("store"));
        for i in 0..6 {
            clip(&data, &format!("{}/take {i}.wav", ["low", "high"][i % 2]), 0.02 + 0.03 * i as f32);
        }
        let cfg = small_cfg();
        let first = extract_features(&source(&data, &work), &cfg, &store, 2, true).unwrap();
        assert_eq!((first.clips, first.decoded, first.reused), (6, 6, 0));

        clip(&data, "high/new/one.wav", 0.5);
        clip(&data, "low/take 0.wav", 0.9); // edited
        std::fs::remove_file(data.join("high/take 1.wav")).unwrap();
        let second = extract_features(&source(&data, &work), &cfg, &store, 2, true).unwrap();
        assert_eq!((second.clips, second.decoded, second.reused), (6, 2, 4), "one added and one edited clip decoded");

        let fresh = dir.path().join("fresh");
        extract_features(&source(&data, &work), &cfg, &fresh, 2, true).unwrap();
        let (got, want) = (table(&store), table(&fresh));
        assert_eq!(got, want, "reused rows are the rows a fresh run computes");
        assert!(got.iter().any(|(id, g, _)| id == "high/new/one.wav" && g == "high"));
        assert!(!store.join(PARTIAL).exists(), "segments are removed once the tables are written");
        // 8,000 samples are 16 frames of the 20 kept: padded, and flagged so.
        let mut r = FeatureRowReader::open(&store.join(names::FEATURES)).unwrap();
        let src = source(&data, &work);
        let c = &src.clips[0];
        assert!(r.row(&c.blake3, &c.track_id, &c.genre, "").unwrap().unwrap().padded);

        let forced = extract_features(&source(&data, &work), &cfg, &store, 2, false).unwrap();
        assert_eq!((forced.decoded, forced.reused), (6, 0), "without reuse (--force features) every clip is decoded");
        let other = FeatureConfig { top_db: 60.0, ..cfg };
        let third = extract_features(&source(&data, &work), &other, &store, 2, true).unwrap();
        assert_eq!(third.decoded, 6, "another feature configuration decodes everything");
    }

    #[test]
    fn only_gtzan_itself_counts_as_gtzan() {
        let meta = |origin: &str, layout: Option<&str>| {
            let m = TableMeta::new("features").with("source", origin);
            match layout {
                Some(l) => m.with("layout", l),
                None => m,
            }
        };
        assert!(is_gtzan(&meta("hub:marsyas/gtzan@main/data/genres.tar.gz", Some("marsyas"))));
        assert!(is_gtzan(&meta("folder:/data/gtzan", Some("kaggle"))));
        assert!(is_gtzan(&meta("tarball:/x/genres.tar.gz", None)), "tables from before the layout key");
        assert!(!is_gtzan(&meta("synthetic", Some("marsyas"))), "the synthetic set borrows GTZAN's names only");
        assert!(!is_gtzan(&meta("folder:/music", Some("class_folders"))));
        assert!(!is_gtzan(&meta("manifest:/m.csv", Some("manifest"))));
        assert!(!is_gtzan(&meta("hub:x/y@main/data/a.parquet", Some("hub_parquet"))));
    }

    #[test]
    fn the_segments_of_a_killed_run_are_kept_and_only_the_rest_is_decoded() {
        let dir = tempfile::tempdir().unwrap();
        let (data, work, store) = (dir.path().join("data"), dir.path().join("work"), dir.path().join("store"));
        for i in 0..4 {
            clip(&data, &format!("a/{i}.wav"), 0.02 + 0.05 * i as f32);
        }
        let cfg = small_cfg();
        extract_features(&source(&data, &work), &cfg, &store, 1, true).unwrap();
        // What a run killed after its first segment leaves: that segment, no tables.
        let seg = partial_dir(&store, &cfg);
        std::fs::create_dir_all(&seg).unwrap();
        std::fs::rename(store.join(names::FEATURES), seg.join("seg-000000.small.parquet")).unwrap();
        std::fs::rename(store.join(names::FEATURES_FULL), seg.join("seg-000000.full.parquet")).unwrap();
        std::fs::write(seg.join(".seg-000001.small.parquet.123.genrelab-tmp"), b"torn").unwrap();
        for i in 4..7 {
            clip(&data, &format!("b/{i}.wav"), 0.02 + 0.05 * i as f32);
        }
        let s = extract_features(&source(&data, &work), &cfg, &store, 1, true).unwrap();
        assert_eq!((s.clips, s.decoded, s.reused), (7, 3, 4));
        let fresh = dir.path().join("fresh");
        extract_features(&source(&data, &work), &cfg, &fresh, 1, true).unwrap();
        assert_eq!(table(&store), table(&fresh));
    }
}

//! The features stage: decode every clip and write the feature store's tables.
//!
//! Clips stream out of the source in manifest order in batches; each batch is decoded and turned
//! into log-mels in parallel (rayon) and appended to `features` (64 x 100) and `features_full`
//! (128 x 1,291) as row groups, so the output does not depend on the thread count and memory
//! stays flat. A clip that cannot be decoded goes to `rejects` with the reason; the stage only
//! fails when no clip at all could be used.

use std::path::Path;
use std::time::Instant;

use genrelab_store::{FeatureRow, FeatureTableWriter, RejectRow, TableMeta, names, write_rejects};
use serde::Serialize;

use crate::StageError;
use crate::audio::decode_wav;
use crate::logmel::{FeatureConfig, Features, LogMel};
use crate::source::{ClipEntry, SourceManifest};

/// What a run of the stage did.
#[derive(Debug, Clone, Serialize)]
pub struct FeatureSummary {
    pub clips: usize,
    pub rejected: usize,
    pub seconds: f64,
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

/// The metadata written into both feature tables.
pub fn feature_table_meta(table: &str, cfg: &FeatureConfig, origin: &str) -> TableMeta {
    TableMeta::new(table)
        .with("feature_config", serde_json::to_string(cfg).expect("config serialises"))
        .with("feature_config_hash", cfg.hash())
        .with("source", origin)
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
    let decoded = decode_wav(bytes, lm.config().sample_rate).map_err(|e| e.to_string())?;
    Ok((lm.features(&decoded.samples), decoded, hash))
}

/// Run the stage. `threads = 0` uses every core.
pub fn extract_features(
    source: &SourceManifest,
    cfg: &FeatureConfig,
    store_dir: &Path,
    threads: usize,
) -> Result<FeatureSummary, StageError> {
    let lm = LogMel::new(cfg).map_err(StageError::Config)?;
    let start = Instant::now();

    let small = FeatureTableWriter::create(
        &store_dir.join(names::FEATURES),
        &feature_table_meta("features", cfg, &source.origin),
        cfg.out_mels,
        cfg.out_frames,
    )?;
    let full = FeatureTableWriter::create(
        &store_dir.join(names::FEATURES_FULL),
        &feature_table_meta("features_full", cfg, &source.origin),
        cfg.n_mels,
        cfg.frames,
    )?;
    let mut rejects = Vec::new();

    // Compression and writing run on their own thread, overlapping the next batch's decoding.
    let (tx, rx) = std::sync::mpsc::sync_channel::<(Vec<FeatureRow>, Vec<FeatureRow>)>(1);
    let (small, full, read) = std::thread::scope(|scope| {
        let writer = scope.spawn(move || -> Result<_, StageError> {
            let (mut small, mut full) = (small, full);
            for (rows_small, rows_full) in rx {
                small.write(&rows_small)?;
                full.write(&rows_full)?;
            }
            Ok((small, full))
        });
        let read = source.par_map_clips(
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
                tx.send((rows_small, rows_full)).map_err(|_| "the table writer stopped".to_string())
            },
        );
        drop(tx);
        let written = writer.join().expect("writer thread does not panic");
        // A writer error explains a failed send better than the send itself.
        match written {
            Ok((small, full)) => Ok((small, full, read)),
            Err(e) => Err(e),
        }
    })?;
    let threads = read?;

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
    let seconds = start.elapsed().as_secs_f64();
    let summary = FeatureSummary {
        clips,
        rejected: rejects.len(),
        seconds,
        clips_per_second: (clips + rejects.len()) as f64 / seconds.max(1e-9),
        threads,
        peak_rss_mib: peak_rss_mib(),
    };
    tracing::info!(clips, rejected = rejects.len(), seconds = format!("{seconds:.2}"), threads, "features written");
    Ok(summary)
}

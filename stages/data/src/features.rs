//! The features stage: decode every clip and write the feature store's tables.
//!
//! Clips stream out of the source in manifest order in batches; each batch is decoded and turned
//! into log-mels in parallel (rayon), so the output does not depend on the thread count and memory
//! stays flat. The store is incremental per clip: a clip whose bytes (blake3) and feature
//! configuration are unchanged keeps its rows, so adding, removing or editing a few files decodes
//! only those. Finished batches are written as segment files under `store/.partial/` as they
//! come, so a killed run keeps them and the next run decodes only the rest; the tables
//! `features` (64 x 100) and `features_full` (128 x 1,291) are then written from the previous
//! tables and the segments, in the source's order (a fresh run, with nothing to reuse, writes
//! them as the rows come). A clip that cannot be decoded goes to
//! `rejects` with the reason; the stage only fails when no clip at all could be used.

use std::path::{Path, PathBuf};
use std::time::Instant;

use genrelab_store::tables::{GroupCuts, target_group_rows};
use genrelab_store::{FeatureRow, FeatureRowReader, FeatureTableWriter, RejectRow, TableMeta, names, write_rejects_staged};
use serde::Serialize;

use crate::audio::{Limits, decode_within};
use crate::logmel::{FeatureConfig, Features, LogMel};
use crate::source::{ClipEntry, SourceManifest};
use crate::{ClipError, StageError};
use genrelab_store::StoreError;

/// What a run of the stage did.
#[derive(Debug, Clone, Serialize)]
pub struct FeatureSummary {
    /// Clips in the tables.
    pub clips: usize,
    /// Rows of the tables: one per clip, or one per window with `features.excerpt = "windows"`.
    pub rows: usize,
    /// Clips decoded by this run; the others' rows were reused (unchanged bytes, same settings).
    pub decoded: usize,
    pub reused: usize,
    /// Rows of `features_full` copied from the previous tables or a killed run's segments as
    /// they were (whole row groups, neither decoded nor compressed again); none in a fresh run.
    pub copied: usize,
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
        .with(FRONT_END_REVISION, crate::logmel::REVISION.to_string())
        .with("source", &source.origin)
        .with("layout", serde_json::to_value(source.layout).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default())
}

/// The metadata key of the audio front end's [`crate::logmel::REVISION`]: rows of another
/// revision (or of tables from before the key) are computed again, not reused.
pub const FRONT_END_REVISION: &str = "front_end_revision";

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

/// What the features stage keeps of one decoded clip: the features of its rows (one, or one per
/// window) with their padded flags, the file's facts and its bytes' blake3 hash. The samples
/// themselves are dropped as soon as the features are made.
pub struct ClipRows {
    /// Each row's features, whether they are padded, and the mean and standard deviation (dB)
    /// of its full-resolution spectrogram.
    pub windows: Vec<(Features, bool, (f32, f32))>,
    pub source_rate: u32,
    pub source_frames: u64,
    pub channels: u16,
    pub hash: String,
}

/// Decode one clip's bytes and compute the features of each of its rows.
pub fn clip_features(lm: &LogMel, entry: &ClipEntry, bytes: &[u8], limits: &Limits) -> Result<ClipRows, ClipError> {
    let hash = if entry.unchanged && !entry.blake3.is_empty() {
        // Read with the size and settled time it was listed with: the listed bytes.
        entry.blake3.clone()
    } else {
        let hash = blake3::hash(bytes).to_hex().to_string();
        if !entry.blake3.is_empty() && hash != entry.blake3 {
            return Err(ClipError::Changed { found: hash, listed: entry.blake3.clone() });
        }
        hash
    };
    let decoded = decode_within(bytes, entry.extension(), lm.config().sample_rate, limits)?;
    let windows = lm
        .windows(&decoded.samples)
        .into_iter()
        .map(|w| {
            let f = lm.features(w);
            let moments = f.full.mean_std();
            (f, lm.is_padded(w), moments)
        })
        .collect();
    Ok(ClipRows { windows, source_rate: decoded.source_rate, source_frames: decoded.source_frames, channels: decoded.channels, hash })
}

/// Where a run keeps the rows it computed until the tables are written: segments of finished
/// batches, which a killed run leaves for the next one to reuse.
pub fn partial_dir(store_dir: &Path, cfg: &FeatureConfig) -> PathBuf {
    store_dir.join(PARTIAL).join(format!("features-{}", cfg.hash()))
}

const PARTIAL: &str = ".partial";

/// A table pair (`features`, `features_full`) whose rows can be reused by audio hash.
struct Reusable {
    small: FeatureRowReader,
    full: FeatureRowReader,
}

impl Reusable {
    fn open(small: &Path, full: &Path, cfg_hash: &str) -> Option<Reusable> {
        let small = FeatureRowReader::open(small).ok()?;
        let full = FeatureRowReader::open(full).ok()?;
        let revision = crate::logmel::REVISION.to_string();
        let current = |r: &FeatureRowReader| {
            r.meta().get("feature_config_hash") == Some(cfg_hash) && r.meta().get(FRONT_END_REVISION) == Some(revision.as_str())
        };
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
    limits: &Limits,
    reuse: bool,
) -> Result<FeatureSummary, StageError> {
    let lm = LogMel::new(cfg)?;
    let start = Instant::now();
    let cfg_hash = cfg.hash();
    let partial = partial_dir(store_dir, cfg);
    // Segments of other configurations can never be reused.
    for e in std::fs::read_dir(store_dir.join(PARTIAL)).into_iter().flatten().flatten() {
        if e.path() != partial || !reuse {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
    let mut reusable: Vec<Reusable> = match reuse {
        true => Reusable::open(&store_dir.join(names::FEATURES), &store_dir.join(names::FEATURES_FULL), &cfg_hash).into_iter().collect(),
        false => vec![],
    };
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
    // The metadata of both tables, and of the segments that hold their rows on the way.
    let meta_small = feature_table_meta("features", cfg, source);
    let meta_full = feature_table_meta("features_full", cfg, source);
    let create_tables = || -> Result<(FeatureTableWriter, FeatureTableWriter), StoreError> {
        Ok((
            FeatureTableWriter::create(&store_dir.join(names::FEATURES), &meta_small, cfg.out_mels, cfg.out_frames)?,
            FeatureTableWriter::create(&store_dir.join(names::FEATURES_FULL), &meta_full, cfg.n_mels, cfg.frames)?,
        ))
    };
    // A fresh run (nothing to reuse, every clip's hash known) writes the tables as rows come:
    // `features` row by row, `features_full` a finished segment at a time (copied whole), so
    // that little is left to do after the last batch. Other runs assemble them afterwards.
    let fresh = reusable.is_empty() && !todo.is_empty() && source.clips.iter().all(|c| !c.blake3.is_empty());
    let mut written: Option<(FeatureTableWriter, FeatureTableWriter)> = None;
    if !todo.is_empty() {
        // 1. Decode what is new, writing finished rows to segment files as they come (on a
        //    thread of their own, overlapping the next batch's decoding).
        let first_segment = kept.len();
        let direct = if fresh { Some(create_tables()?) } else { None };
        let (tx, rx) = std::sync::mpsc::sync_channel::<(Vec<FeatureRow>, Vec<FeatureRow>)>(1);
        let subset = SourceManifest { clips: todo, ..source.clone() };
        let read = std::thread::scope(|scope| {
            let partial = &partial;
            let (meta_small, meta_full) = (&meta_small, &meta_full);
            let writer = scope.spawn(move || -> Result<Option<(FeatureTableWriter, FeatureTableWriter)>, StageError> {
                // Rows are encoded as they come, into the segment they belong to; a segment is
                // moved into place when the next one begins, so little is left after the last batch.
                let mut n = first_segment;
                let mut open: Option<(FeatureTableWriter, FeatureTableWriter)> = None;
                let mut direct = direct;
                let finish = |(full, small): (FeatureTableWriter, FeatureTableWriter),
                              direct: &mut Option<(FeatureTableWriter, FeatureTableWriter)>|
                 -> Result<(), StageError> {
                    let full = full.finish_cache()?;
                    // The small table last: a segment counts once its `.small` file exists.
                    small.finish_cache()?;
                    if let Some((_, table)) = direct {
                        table.copy_row_group(&FeatureRowReader::open(&full)?, 0)?;
                        table.start_writeback()?;
                    }
                    Ok(())
                };
                // A segment is one row group of `features_full` as the table cuts them, so that
                // a fresh run's segments are copied into it whole.
                let mut cuts = GroupCuts::new(target_group_rows(cfg.n_mels * cfg.frames));
                for (s, f) in rx {
                    for (s, f) in s.into_iter().zip(f) {
                        if cuts.push(&f.audio_hash)
                            && let Some(segment) = open.take()
                        {
                            finish(segment, &mut direct)?;
                        }
                        let (full, small) = match &mut open {
                            Some(segment) => segment,
                            None => {
                                let k = n;
                                let name = |kind: &str| partial.join(format!("seg-{k:06}.{kind}.parquet"));
                                n += 1;
                                open.insert((
                                    FeatureTableWriter::create(&name("full"), meta_full, cfg.n_mels, cfg.frames)?,
                                    FeatureTableWriter::create(&name("small"), meta_small, cfg.out_mels, cfg.out_frames)?,
                                ))
                            }
                        };
                        full.write(std::slice::from_ref(&f))?;
                        small.write(std::slice::from_ref(&s))?;
                        if let Some((table, _)) = &mut direct {
                            table.write(std::slice::from_ref(&s))?;
                        }
                    }
                }
                match (open.take(), &mut direct) {
                    // The last segment of a fresh run is not needed by any later run: its
                    // encoded rows go straight into the table.
                    (Some((full, _)), Some((_, table))) => full.move_rows_into(table)?,
                    (Some(segment), None) => finish(segment, &mut direct)?,
                    (None, _) => {}
                }
                Ok(direct)
            });
            let read = subset.par_map_clips(
                threads,
                "features",
                limits,
                |entry, b| clip_features(&lm, entry, b, limits),
                |results| {
                    let mut rows_small = Vec::with_capacity(results.len());
                    let mut rows_full = Vec::with_capacity(results.len());
                    for (entry, result) in results {
                        match result {
                            Ok(clip) => {
                                decoded += 1;
                                let location = source.location(&entry);
                                for (window, (f, padded, (mean_db, std_db))) in clip.windows.into_iter().enumerate() {
                                    let row = FeatureRow {
                                        source: location.clone(),
                                        track_id: entry.track_id.clone(),
                                        genre: entry.genre.clone(),
                                        audio_hash: clip.hash.clone(),
                                        sample_rate: clip.source_rate,
                                        n_samples: clip.source_frames,
                                        channels: clip.channels,
                                        mean_db,
                                        std_db,
                                        padded,
                                        window: window as u32,
                                        values: f.small.values,
                                    };
                                    rows_full.push(FeatureRow { values: f.full.values, ..row.clone() });
                                    rows_small.push(row);
                                }
                            }
                            Err(why) => {
                                tracing::warn!(clip = %source.location(&entry), reason = %why, "skipped");
                                rejects.push(RejectRow {
                                    source: source.location(&entry),
                                    track_id: entry.track_id,
                                    genre: entry.genre,
                                    reason: why.to_string(),
                                });
                            }
                        }
                    }
                    tx.send((rows_small, rows_full)).map_err(|_| StageError::Failed("the segment writer stopped".into()))
                },
            );
            drop(tx);
            let direct = writer.join().expect("writer thread does not panic");
            // A writer error explains a failed send better than the send itself.
            direct.and_then(|d| read.map(|threads| (threads, d)))
        })?;
        threads_used = read.0;
        written = read.1;
        if written.is_none() {
            reusable.extend(segments(&partial).iter().skip(first_segment).filter_map(|p| open_segment(p)));
        }
    }

    tracing::debug!(seconds = start.elapsed().as_secs_f64(), "new rows decoded and written to segments");
    let (small, full, clips, copied) = match written {
        Some((small, full)) => (small, full, decoded, 0),
        None => {
            // 2. The tables, in the source's order: every row from the previous tables or a
            //    segment, whole row groups copied as they are where their rows stay together.
            let wanted: Vec<(usize, &ClipEntry, String)> = source
                .clips
                .iter()
                .filter_map(|c| Some((reusable.iter().position(|r| r.contains(&c.blake3))?, c, source.location(c))))
                .collect();
            let (mut small, mut full) = create_tables()?;
            assemble(&mut small, &mut reusable.iter_mut().map(|r| &mut r.small).collect::<Vec<_>>(), &wanted)?;
            let copied = assemble(&mut full, &mut reusable.iter_mut().map(|r| &mut r.full).collect::<Vec<_>>(), &wanted)?;
            (small, full, wanted.len(), copied)
        }
    };
    tracing::debug!(seconds = start.elapsed().as_secs_f64(), "tables assembled");
    let rows = small.rows();
    if clips == 0 {
        return Err(StageError::Failed(format!(
            "none of the {} clips could be decoded; first reason: {}",
            rejects.len(),
            rejects.first().map_or("(no clips listed)", |r| r.reason.as_str())
        )));
    }
    // The three tables are written and flushed first, then moved into place together: a
    // failure while writing any of them (a full disk) leaves the previous tables as they were.
    let staged = [
        small.finish_staged()?,
        full.finish_staged()?,
        write_rejects_staged(&store_dir.join(names::REJECTS), &TableMeta::new("rejects").with("source", &source.origin), &rejects)?,
    ];
    genrelab_store::atomic::commit_all(staged)?;
    drop(reusable);
    let _ = std::fs::remove_dir_all(store_dir.join(PARTIAL));
    let seconds = start.elapsed().as_secs_f64();
    let summary = FeatureSummary {
        clips,
        rows,
        decoded,
        reused: clips - decoded,
        copied,
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

/// Write the rows of the clips `wanted` (which reader holds each, the clip, its location) in
/// order. A row group of a reader whose rows are wanted next, all of them, in its order and with
/// the identity the table wants, is copied byte for byte; other rows are read and encoded again.
/// Only the reader being read holds a row group in memory, so memory stays bounded by a row
/// group. Returns how many rows were copied.
fn assemble(
    out: &mut FeatureTableWriter,
    readers: &mut [&mut FeatureRowReader],
    wanted: &[(usize, &ClipEntry, String)],
) -> Result<usize, StoreError> {
    // Every row wanted, in order: (reader, row of its file, clip).
    let mut rows: Vec<(usize, usize, usize)> = vec![];
    for (k, (i, c, _)) in wanted.iter().enumerate() {
        rows.extend(readers[*i].rows_of(&c.blake3).into_iter().flatten().map(|r| (*i, r, k)));
    }
    let copyable: Vec<bool> = readers.iter().map(|r| out.can_copy_from(r)).collect();
    // The row group of rows[j]'s reader, when rows[j..] starts with all of its rows and they
    // make one group of this table (so the table is what encoding every row would make).
    let hash = |j: usize| rows.get(j).map(|&(_, _, k)| wanted[k].1.blake3.as_str());
    let whole_group = |readers: &[&mut FeatureRowReader], out: &FeatureTableWriter, j: usize| -> Option<usize> {
        let (i, row, _) = rows[j];
        let r = &readers[i];
        let (group, 0) = r.group_of(row) else { return None };
        let range = r.group_range(group);
        let n = range.len();
        let run = rows.get(j..j + n)?;
        let same = run.iter().zip(range).all(|(&(i2, row2, k), want)| {
            let (_, c, loc) = &wanted[k];
            i2 == i && row2 == want && r.identity(want) == (c.track_id.as_str(), c.genre.as_str(), loc.as_str())
        });
        let hashes: Vec<&str> = (j..j + n).filter_map(hash).collect();
        (copyable[i] && same && out.cuts().is_one_group(&hashes, hash(j + n))).then_some(group)
    };
    let mut batch = vec![];
    let mut current: Option<usize> = None;
    let (mut j, mut copied) = (0, 0);
    while j < rows.len() {
        let (i, row, k) = rows[j];
        if let Some(last) = current.filter(|&last| last != i) {
            readers[last].release();
        }
        current = Some(i);
        if let Some(group) = whole_group(readers, out, j) {
            out.write(&std::mem::take(&mut batch))?;
            out.copy_row_group(readers[i], group)?;
            let n = readers[i].group_range(group).len();
            j += n;
            copied += n;
            continue;
        }
        let (_, c, location) = &wanted[k];
        batch.push(readers[i].row(row, &c.blake3, &c.track_id, &c.genre, location)?);
        if batch.len() >= 16 {
            out.write(&std::mem::take(&mut batch))?;
        }
        j += 1;
    }
    out.write(&batch)?;
    Ok(copied)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::download::{DownloadConfig, DownloadOptions, SourceKind, download};

    pub(crate) fn hash(p: &Path) -> crate::source::FileHash {
        genrelab_store::content::file_hash(p)
    }

    /// A short tone per class folder, any file name.
    pub(crate) fn clip(root: &Path, rel: &str, pitch: f32) {
        let x: Vec<f32> = (0..8000).map(|i| 0.3 * (i as f32 * pitch).sin()).collect();
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, crate::audio::wav_bytes_i16(&x, 22050)).unwrap();
    }

    fn small_cfg() -> FeatureConfig {
        FeatureConfig { n_mels: 16, frames: 20, out_mels: 8, out_frames: 10, ..FeatureConfig::default() }
    }

    pub(crate) fn source(data: &Path, work: &Path) -> SourceManifest {
        let cfg = DownloadConfig { source: SourceKind::Folder, path: Some(data.to_path_buf()), ..DownloadConfig::default() };
        download(&cfg, work, DownloadOptions { progress: false, refetch: false, hash_file: &mut hash }).unwrap()
    }

    fn table(store: &Path) -> Vec<(String, String, Vec<f32>)> {
        let m = genrelab_store::read_features(&store.join(names::FEATURES_FULL)).unwrap();
        (0..m.len()).map(|i| (m.track_ids[i].clone(), m.genres[i].clone(), m.row(i).to_vec())).collect()
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_full_disk_while_writing_leaves_every_previous_table_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let (data, work, store) = (dir.path().join("data"), dir.path().join("work"), dir.path().join("store"));
        for i in 0..4 {
            clip(&data, &format!("{}/take {i}.wav", ["low", "high"][i % 2]), 0.02 + 0.03 * i as f32);
        }
        let cfg = small_cfg();
        extract_features(&source(&data, &work), &cfg, &store, 1, &Limits::default(), true).unwrap();
        let tables = [names::FEATURES, names::FEATURES_FULL, names::REJECTS];
        let before: Vec<Vec<u8>> = tables.iter().map(|t| std::fs::read(store.join(t)).unwrap()).collect();

        // The last table's temporary file is a full device (this process writes it): the
        // first two are written in full before it fails.
        let tmp = store.join(format!(".{}.{}.genrelab-tmp", names::REJECTS, std::process::id()));
        std::os::unix::fs::symlink("/dev/full", &tmp).unwrap();
        clip(&data, "high/new.wav", 0.5);
        let err = extract_features(&source(&data, &work), &cfg, &store, 1, &Limits::default(), true).unwrap_err().to_string();
        assert!(err.contains("No space left on device"), "{err}");
        let after: Vec<Vec<u8>> = tables.iter().map(|t| std::fs::read(store.join(t)).unwrap()).collect();
        assert!(before == after, "no table of the failed run appeared");
        let left: Vec<String> =
            std::fs::read_dir(&store).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
        assert_eq!(left.iter().filter(|n| n.ends_with(".genrelab-tmp")).count(), 0, "temporaries removed: {left:?}");

        // With room again the run completes, the new clip in (from the failed run's segment:
        // it is not decoded again).
        let s = extract_features(&source(&data, &work), &cfg, &store, 1, &Limits::default(), true).unwrap();
        assert_eq!((s.clips, s.decoded), (5, 0));
        assert_eq!(table(&store).len(), 5);
    }

    #[test]
    fn only_added_or_edited_clips_are_decoded_and_the_tables_equal_a_fresh_run() {
        let dir = tempfile::tempdir().unwrap();
        let (data, work, store) = (dir.path().join("data"), dir.path().join("work"), dir.path().join("store"));
        for i in 0..6 {
            clip(&data, &format!("{}/take {i}.wav", ["low", "high"][i % 2]), 0.02 + 0.03 * i as f32);
        }
        let cfg = small_cfg();
        let first = extract_features(&source(&data, &work), &cfg, &store, 2, &Limits::default(), true).unwrap();
        assert_eq!((first.clips, first.decoded, first.reused), (6, 6, 0));

        clip(&data, "high/new/one.wav", 0.5);
        clip(&data, "low/take 0.wav", 0.9); // edited
        std::fs::remove_file(data.join("high/take 1.wav")).unwrap();
        let second = extract_features(&source(&data, &work), &cfg, &store, 2, &Limits::default(), true).unwrap();
        assert_eq!((second.clips, second.decoded, second.reused), (6, 2, 4), "one added and one edited clip decoded");

        let fresh = dir.path().join("fresh");
        extract_features(&source(&data, &work), &cfg, &fresh, 2, &Limits::default(), true).unwrap();
        let (got, want) = (table(&store), table(&fresh));
        assert_eq!(got, want, "reused rows are the rows a fresh run computes");
        assert!(got.iter().any(|(id, g, _)| id == "high/new/one.wav" && g == "high"));
        assert!(!store.join(PARTIAL).exists(), "segments are removed once the tables are written");
        // 8,000 samples are 16 frames of the 20 kept: padded, and flagged so.
        let mut r = FeatureRowReader::open(&store.join(names::FEATURES)).unwrap();
        let src = source(&data, &work);
        let c = &src.clips[0];
        assert!(r.rows(&c.blake3, &c.track_id, &c.genre, "").unwrap()[0].padded);

        let forced = extract_features(&source(&data, &work), &cfg, &store, 2, &Limits::default(), false).unwrap();
        assert_eq!((forced.decoded, forced.reused), (6, 0), "without reuse (--force features) every clip is decoded");
        let other = FeatureConfig { top_db: 60.0, ..cfg };
        let third = extract_features(&source(&data, &work), &other, &store, 2, &Limits::default(), true).unwrap();
        assert_eq!(third.decoded, 6, "another feature configuration decodes everything");
    }

    #[test]
    fn a_file_read_with_its_listed_size_and_settled_time_is_not_hashed_again() {
        let dir = tempfile::tempdir().unwrap();
        let (data, work, store) = (dir.path().join("data"), dir.path().join("work"), dir.path().join("store"));
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        let age = |rel: &str| std::fs::File::options().write(true).open(data.join(rel)).unwrap().set_modified(old).unwrap();
        clip(&data, "a/young.wav", 0.3);
        for rel in ["a/kept.wav", "a/touched.wav"] {
            clip(&data, rel, 0.3);
            age(rel);
        }
        let src = source(&data, &work);
        let settled: Vec<(&str, bool)> = src.clips.iter().map(|c| (c.member.as_str(), c.mtime_ns.is_some())).collect();
        assert_eq!(settled, [("a/kept.wav", true), ("a/touched.wav", true), ("a/young.wav", false)], "only settled files keep their time");
        // The same size, other bytes, in every file; `kept` gets its old time back.
        for rel in ["a/kept.wav", "a/touched.wav", "a/young.wav"] {
            clip(&data, rel, 0.7);
        }
        age("a/kept.wav");
        extract_features(&src, &small_cfg(), &store, 1, &Limits::default(), true).unwrap();
        let rejects = genrelab_store::tables::read_rejects(&store.join(names::REJECTS)).unwrap();
        let mut changed: Vec<&str> = rejects.iter().filter(|r| r.reason.contains("changed since")).map(|r| r.track_id.as_str()).collect();
        changed.sort();
        // A new time (or none listed) means hashing, which finds the change; the listed size and
        // time are trusted, as the pipeline's fingerprints trust them.
        assert_eq!(changed, ["a/touched.wav", "a/young.wav"]);
        let kept = &table(&store)[0];
        assert_eq!(kept.0, "a/kept.wav");
    }

    #[test]
    fn unchanged_row_groups_are_copied_and_the_tables_are_byte_for_byte_a_fresh_runs() {
        let dir = tempfile::tempdir().unwrap();
        let (data, work, store) = (dir.path().join("data"), dir.path().join("work"), dir.path().join("store"));
        for i in 0..40 {
            clip(&data, &format!("a/{i:02}.wav"), 0.02 + 0.01 * i as f32);
        }
        // 2 MiB rows: row groups of about 8 rows (at most 16) in features_full.
        let cfg = FeatureConfig { n_mels: 128, frames: 4096, out_mels: 8, out_frames: 10, ..FeatureConfig::default() };
        let first = extract_features(&source(&data, &work), &cfg, &store, 2, &Limits::default(), true).unwrap();
        assert_eq!((first.decoded, first.copied), (40, 0), "a fresh run encodes every row once and copies none");
        let groups = |store: &Path| {
            let r = FeatureRowReader::open(&store.join(names::FEATURES_FULL)).unwrap();
            let mut g = vec![];
            while g.last().is_none_or(|r2: &std::ops::Range<usize>| r2.end < 40) {
                g.push(r.group_range(g.len()));
            }
            g
        };
        assert!(groups(&store).len() >= 3, "{:?}", groups(&store));

        clip(&data, "a/40.wav", 0.5);
        clip(&data, "a/05b.wav", 0.6);
        let second = extract_features(&source(&data, &work), &cfg, &store, 2, &Limits::default(), true).unwrap();
        assert_eq!(second.decoded, 2);
        assert!(second.copied >= 42 - 2 * 16 && second.copied < 42, "the groups the new clips fall in are encoded again: {second:?}");
        let fresh = dir.path().join("fresh");
        extract_features(&source(&data, &work), &cfg, &fresh, 2, &Limits::default(), false).unwrap();
        for table in [names::FEATURES, names::FEATURES_FULL] {
            assert!(
                std::fs::read(store.join(table)).unwrap() == std::fs::read(fresh.join(table)).unwrap(),
                "{table}: the incremental run writes the bytes a fresh run writes"
            );
        }
    }

    /// `n` clips `a/0.wav` ... under `dir/data`, their features in `dir/store` (one thread):
    /// the data, work and store folders.
    fn store_of_clips(dir: &Path, n: usize, cfg: &FeatureConfig) -> (PathBuf, PathBuf, PathBuf) {
        let (data, work, store) = (dir.join("data"), dir.join("work"), dir.join("store"));
        for i in 0..n {
            clip(&data, &format!("a/{i}.wav"), 0.02 + 0.05 * i as f32);
        }
        extract_features(&source(&data, &work), cfg, &store, 1, &Limits::default(), true).unwrap();
        (data, work, store)
    }

    #[test]
    fn rows_of_another_front_end_revision_are_computed_again() {
        let (dir, cfg) = (tempfile::tempdir().unwrap(), small_cfg());
        let (data, work, store) = store_of_clips(dir.path(), 3, &cfg);
        // The same tables as an earlier revision of the front end would have written them.
        let src = source(&data, &work);
        for (table, n_mels, n_frames) in [(names::FEATURES, cfg.out_mels, cfg.out_frames), (names::FEATURES_FULL, cfg.n_mels, cfg.frames)] {
            let path = store.join(table);
            let mut r = FeatureRowReader::open(&path).unwrap();
            let rows: Vec<FeatureRow> =
                src.clips.iter().flat_map(|c| r.rows(&c.blake3, &c.track_id, &c.genre, &src.location(c)).unwrap()).collect();
            let meta = r.meta().clone().with(FRONT_END_REVISION, "1");
            let mut w = FeatureTableWriter::create(&path, &meta, n_mels, n_frames).unwrap();
            w.write(&rows).unwrap();
            w.finish().unwrap();
        }
        let s = extract_features(&src, &cfg, &store, 1, &Limits::default(), true).unwrap();
        assert_eq!((s.decoded, s.reused), (3, 0), "rows of another revision are not reused");
        let again = extract_features(&src, &cfg, &store, 1, &Limits::default(), true).unwrap();
        assert_eq!((again.decoded, again.reused), (0, 3), "rows of this revision are");
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
        let (dir, cfg) = (tempfile::tempdir().unwrap(), small_cfg());
        let (data, work, store) = store_of_clips(dir.path(), 4, &cfg);
        // What a run killed after its first segment leaves: that segment, no tables.
        let seg = partial_dir(&store, &cfg);
        std::fs::create_dir_all(&seg).unwrap();
        std::fs::rename(store.join(names::FEATURES), seg.join("seg-000000.small.parquet")).unwrap();
        std::fs::rename(store.join(names::FEATURES_FULL), seg.join("seg-000000.full.parquet")).unwrap();
        std::fs::write(seg.join(".seg-000001.small.parquet.123.genrelab-tmp"), b"torn").unwrap();
        for i in 4..7 {
            clip(&data, &format!("b/{i}.wav"), 0.02 + 0.05 * i as f32);
        }
        let s = extract_features(&source(&data, &work), &cfg, &store, 1, &Limits::default(), true).unwrap();
        assert_eq!((s.clips, s.decoded, s.reused), (7, 3, 4));
        let fresh = dir.path().join("fresh");
        extract_features(&source(&data, &work), &cfg, &fresh, 1, &Limits::default(), true).unwrap();
        assert_eq!(table(&store), table(&fresh));
    }
}

//! The descriptors stage: [`describe`] (genrelab-audio) for every clip of the source, into the
//! `descriptors` table, reusing the rows of clips whose bytes and settings are unchanged.

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use genrelab_store::names;
use genrelab_store::tables::{Column, write_columns};
use serde::{Deserialize, Serialize};

use crate::audio::{Limits, decode_within};
use crate::logmel::{FeatureConfig, LogMel};
use crate::source::{ClipEntry, SourceManifest};
use crate::{ClipError, StageError};

pub use genrelab_audio::describe::*;

/// `[descriptors]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DescriptorConfig {
    /// Describe only the band below this frequency (Hz); unset = up to half the sample rate.
    /// 7000 keeps the statistics of a clip unchanged when it comes as a 16 kHz file or an MP3
    /// (experiments/agreement.md).
    pub max_hz: Option<f64>,
}

/// The descriptors table's metadata key for `max_hz`.
pub const MAX_HZ: &str = "max_hz";

#[derive(Debug, Clone, Serialize)]
pub struct DescriptorSummary {
    pub clips: usize,
    /// Clips described by this run; the others' rows were reused (unchanged bytes, settings).
    pub decoded: usize,
    pub reused: usize,
    pub skipped: usize,
    pub descriptors: usize,
    pub seconds: f64,
}

/// The previous table's rows by audio hash, when it was made with the same settings.
fn reusable_rows(path: &Path, meta: &genrelab_store::TableMeta) -> HashMap<String, Vec<f32>> {
    let Ok(t) = genrelab_store::read_float_table(path) else { return HashMap::new() };
    let same = ["feature_config_hash", crate::features::FRONT_END_REVISION, MAX_HZ].iter().all(|k| t.meta.get(k) == meta.get(k));
    let d = t.columns.len();
    if !same || t.audio_hashes.len() != t.track_ids.len() || d != descriptor_names().len() {
        return HashMap::new();
    }
    t.audio_hashes.iter().enumerate().map(|(i, h)| (h.clone(), t.values[i * d..(i + 1) * d].to_vec())).collect()
}

/// Run the stage: every clip of the source, in parallel, into the `descriptors` table. A clip
/// whose bytes (blake3) and settings are unchanged keeps its row from the previous table; clips
/// that cannot be decoded are skipped (the features stage records them in `rejects`).
pub fn extract_descriptors(
    source: &SourceManifest,
    cfg: &FeatureConfig,
    dcfg: &DescriptorConfig,
    store_dir: &Path,
    threads: usize,
    limits: &Limits,
) -> Result<DescriptorSummary, StageError> {
    let lm = LogMel::new(cfg)?;
    let start = Instant::now();
    let mut meta = crate::features::feature_table_meta("descriptors", cfg, source);
    if let Some(hz) = dcfg.max_hz {
        meta = meta.with(MAX_HZ, hz.to_string());
    }
    let path = store_dir.join(names::DESCRIPTORS);
    let previous = reusable_rows(&path, &meta);
    let todo: Vec<ClipEntry> = source.clips.iter().filter(|c| c.blake3.is_empty() || !previous.contains_key(&c.blake3)).cloned().collect();
    let mut computed: HashMap<String, (String, Vec<f32>)> = HashMap::new();
    let mut skipped = 0;
    let describe_clip = |e: &ClipEntry, b: &[u8]| {
        // The download stage listed the bytes' hash; hash them here only when it did not.
        let hash = if e.blake3.is_empty() { blake3::hash(b).to_hex().to_string() } else { e.blake3.clone() };
        decode_within(b, e.extension(), cfg.sample_rate, limits)
            .map_err(ClipError::from)
            .map(|a| (hash, describe(&lm, described_part(&lm, &a.samples), dcfg.max_hz)))
    };
    let subset = SourceManifest { clips: todo, ..source.clone() };
    subset.par_map_clips(threads, "descriptors", limits, describe_clip, |done| {
        for (entry, d) in done {
            match d {
                Ok((hash, v)) => {
                    computed.insert(entry.track_id, (hash, v));
                }
                Err(reason) => {
                    skipped += 1;
                    tracing::warn!(clip = %source.location(&entry), %reason, "skipped");
                }
            }
        }
        Ok(())
    })?;
    let decoded = computed.len();
    let mut rows: Vec<(&str, &str, String, Vec<f32>)> = source
        .clips
        .iter()
        .filter_map(|c| match computed.remove(&c.track_id) {
            Some((hash, v)) => Some((c.track_id.as_str(), c.genre.as_str(), hash, v)),
            None => previous.get(&c.blake3).map(|v| (c.track_id.as_str(), c.genre.as_str(), c.blake3.clone(), v.clone())),
        })
        .collect();
    rows.sort_by(|a, b| a.0.cmp(b.0));
    let names = descriptor_names();
    let mut columns = vec![
        ("track_id", Column::Str(rows.iter().map(|r| r.0.to_string()).collect())),
        ("genre", Column::Str(rows.iter().map(|r| r.1.to_string()).collect())),
        (genrelab_store::tables::AUDIO_HASH, Column::Str(rows.iter().map(|r| r.2.clone()).collect())),
    ];
    for (k, name) in names.iter().enumerate() {
        columns.push((name.as_str(), Column::Float(rows.iter().map(|r| r.3[k] as f64).collect())));
    }
    write_columns(&path, &meta, columns)?;
    let seconds = start.elapsed().as_secs_f64();
    let clips = rows.len();
    tracing::info!(clips, decoded, reused = clips - decoded, skipped, seconds = format!("{seconds:.2}"), "descriptors written");
    Ok(DescriptorSummary { clips, decoded, reused: clips - decoded, skipped, descriptors: names.len(), seconds })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_added_or_edited_clips_are_described_and_the_table_equals_a_fresh_runs() {
        use crate::features::tests::{clip, source};
        let dir = tempfile::tempdir().unwrap();
        let (data, work, store) = (dir.path().join("data"), dir.path().join("work"), dir.path().join("store"));
        for i in 0..4 {
            clip(&data, &format!("{}/{i}.wav", ["low", "high"][i % 2]), 0.02 + 0.03 * i as f32);
        }
        let (cfg, dcfg) = (FeatureConfig::default(), DescriptorConfig::default());
        let first = extract_descriptors(&source(&data, &work), &cfg, &dcfg, &store, 2, &Limits::default()).unwrap();
        assert_eq!((first.clips, first.decoded, first.reused), (4, 4, 0));
        clip(&data, "high/new.wav", 0.5);
        clip(&data, "low/0.wav", 0.9); // edited
        let second = extract_descriptors(&source(&data, &work), &cfg, &dcfg, &store, 2, &Limits::default()).unwrap();
        assert_eq!((second.clips, second.decoded, second.reused), (5, 2, 3));
        let fresh = dir.path().join("fresh");
        extract_descriptors(&source(&data, &work), &cfg, &dcfg, &fresh, 2, &Limits::default()).unwrap();
        let read = |s: &Path| genrelab_store::read_float_table(&s.join(names::DESCRIPTORS)).unwrap();
        let (got, want) = (read(&store), read(&fresh));
        assert_eq!((got.track_ids.len(), &got.values, &got.audio_hashes), (5, &want.values, &want.audio_hashes));
        let banded = DescriptorConfig { max_hz: Some(5000.0) };
        assert_eq!(
            extract_descriptors(&source(&data, &work), &cfg, &banded, &store, 2, &Limits::default()).unwrap().decoded,
            5,
            "other settings: all again"
        );
    }
}

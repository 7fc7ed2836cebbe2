//! The store's tables a run reads, turned into its model's input (one place for clip, crop and
//! descriptor models).

use super::*;

/// The normalised input rows `rows` of a feature matrix, concatenated, each cut to its lowest
/// `bands` mel bands (bands are rows of frames, the lowest first).
pub fn gather(features: &FeatureMatrix, rows: &[usize], bands: usize, mean: f32, std: f32) -> Vec<f32> {
    let d = bands.min(features.n_mels) * features.n_frames;
    let mut out = Vec::with_capacity(rows.len() * d);
    for &r in rows {
        out.extend(features.row(r)[..d].iter().map(|v| (v - mean) / std));
    }
    out
}

/// The store's model inputs: `features` rows index everything; `features_full` (same rows) and
/// `descriptors` (by track id) are read only when a model needs them.
pub struct Inputs {
    pub features: FeatureMatrix,
    pub full: Option<FeatureMatrix>,
    pub stats: Option<(FloatTable, Vec<Option<usize>>)>,
    /// The `max_hz` the descriptors were computed with (None: the full band, or not loaded).
    pub stats_max_hz: Option<f64>,
}

/// The `max_hz` a descriptors table was computed with.
pub fn descriptors_max_hz(t: &FloatTable) -> Result<Option<f64>, StageError> {
    t.meta
        .get(crate::descriptors::MAX_HZ)
        .map(|v| v.parse::<f64>().map_err(|e| StageError::Failed(format!("descriptors table: max_hz {v:?}: {e}"))))
        .transpose()
}

impl Inputs {
    pub fn read(store_dir: &Path, kinds: &[Input]) -> Result<Inputs, StageError> {
        let features = read_features(&store_dir.join(names::FEATURES))?;
        let full = if kinds.contains(&Input::Crops) {
            let full = read_features(&store_dir.join(names::FEATURES_FULL))?;
            if full.track_ids != features.track_ids {
                return Err(StageError::Failed("features_full does not hold the rows of features: run the features stage again".into()));
            }
            Some(full)
        } else {
            None
        };
        let stats = if kinds.contains(&Input::Stats) {
            let t = read_float_table(&store_dir.join(names::DESCRIPTORS))?;
            let index: std::collections::HashMap<&str, usize> = t.track_ids.iter().enumerate().map(|(i, id)| (id.as_str(), i)).collect();
            let map = features.track_ids.iter().map(|id| index.get(id.as_str()).copied()).collect();
            Some((t, map))
        } else {
            None
        };
        let stats_max_hz = stats.as_ref().map(|(t, _)| descriptors_max_hz(t)).transpose()?.flatten();
        Ok(Inputs { features, full, stats, stats_max_hz })
    }

    /// `(mels, frames)` a run reads: the stored input's, but crop models with a band limit
    /// read only the lowest `spec.mels` bands.
    pub fn shape(&self, c: &Checkpoint) -> (usize, usize) {
        let (mels, frames) = self.dims(c.input);
        if c.input == Input::Crops { (c.spec.mels.min(mels), frames) } else { (mels, frames) }
    }

    /// `(mels, frames)` of one stored input of `input`'s kind.
    pub fn dims(&self, input: Input) -> (usize, usize) {
        match input {
            Input::Clip => (self.features.n_mels, self.features.n_frames),
            Input::Crops => self.full.as_ref().map_or((0, 0), |f| (f.n_mels, f.n_frames)),
            Input::Stats => (1, self.stats.as_ref().map_or(0, |s| s.0.columns.len())),
        }
    }

    /// Per-column mean and deviation of the descriptors of `rows` (deviation 1 where constant).
    pub fn stats_norm(&self, rows: &[usize]) -> Result<(Vec<f32>, Vec<f32>), StageError> {
        let (t, map) = self.stats.as_ref().ok_or_else(|| StageError::Failed("descriptors not loaded".into()))?;
        let d = t.columns.len();
        let (mut mean, mut sq) = (vec![0f64; d], vec![0f64; d]);
        let mut n = 0f64;
        for &r in rows {
            let i = map[r].ok_or_else(|| {
                StageError::Failed(format!("no descriptors for {}: run the descriptors stage again", self.features.track_ids[r]))
            })?;
            for (k, v) in t.values[i * d..(i + 1) * d].iter().enumerate() {
                mean[k] += *v as f64;
                sq[k] += (*v as f64).powi(2);
            }
            n += 1.0;
        }
        let mean: Vec<f64> = mean.iter().map(|m| m / n.max(1.0)).collect();
        let std = sq
            .iter()
            .zip(&mean)
            .map(|(s, m)| (s / n.max(1.0) - m * m).max(0.0).sqrt() as f32)
            .map(|s| if s > 1e-12 { s } else { 1.0 })
            .collect();
        Ok((mean.into_iter().map(|m| m as f32).collect(), std))
    }

    /// The model inputs of `rows` for a run described by `c`, concatenated.
    pub fn gather(&self, c: &Checkpoint, rows: &[usize]) -> Result<Vec<f32>, StageError> {
        match c.input {
            Input::Clip => Ok(gather(&self.features, rows, self.features.n_mels, c.normalize_mean, c.normalize_std)),
            Input::Crops => {
                let full = self.full.as_ref().ok_or_else(|| StageError::Failed("features_full not loaded".into()))?;
                Ok(gather(full, rows, self.shape(c).0, c.normalize_mean, c.normalize_std))
            }
            Input::Stats => {
                let (t, map) = self.stats.as_ref().ok_or_else(|| StageError::Failed("descriptors not loaded".into()))?;
                let d = t.columns.len();
                let mut out = Vec::with_capacity(rows.len() * d);
                for &r in rows {
                    let i = map[r].ok_or_else(|| StageError::Failed(format!("no descriptors for {}", self.features.track_ids[r])))?;
                    out.extend(standardize(&t.values[i * d..(i + 1) * d], &c.stats_mean, &c.stats_std));
                }
                Ok(out)
            }
        }
    }
}

/// `(v - mean) / std`, column by column.
pub fn standardize<'a>(v: &'a [f32], mean: &'a [f32], std: &'a [f32]) -> impl Iterator<Item = f32> + 'a {
    v.iter().zip(mean).zip(std).map(|((v, m), s)| (v - m) / s)
}

/// Fingerprint of a run's inputs (normalised values and labels of every part).
pub(crate) fn data_hash(xs: &[&[f32]], ys: &[&[usize]]) -> String {
    let mut h = blake3::Hasher::new();
    for x in xs {
        for chunk in x.chunks(4096) {
            h.update(&chunk.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>());
        }
        h.update(b"|");
    }
    for y in ys {
        for v in y.iter() {
            h.update(&(*v as u64).to_le_bytes());
        }
        h.update(b"|");
    }
    h.finalize().to_hex()[..16].to_string()
}

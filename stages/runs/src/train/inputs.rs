//! Model inputs: the one place a model's input kind (clip, crops, descriptors) becomes a batch
//! ([`batch`]), for train and evaluate (the store's tables, [`Inputs`]) and predict (the windows
//! of an audio file).

use super::*;

/// The raw inputs of a set of items (the store's rows, or the windows of an audio file), by
/// model input kind: what [`batch`] reads.
pub trait RawInputs {
    /// `(mels, frames)` of one item's stored input of `c.input`'s kind.
    fn dims(&self, c: &Checkpoint) -> (usize, usize);
    /// The clip-sized log-mel of item `i` (clip models).
    fn clip(&self, i: usize) -> Result<&[f32], StageError>;
    /// The full-length log-mel of item `i`, mel-major (crop models).
    fn full(&self, i: usize) -> Result<&[f32], StageError>;
    /// The descriptors of item `i`, computed with band limit `max_hz` (descriptor models).
    fn stats(&self, i: usize, max_hz: Option<f64>) -> Result<&[f32], StageError>;
}

/// A batch of model inputs: the items one after another, each `mels` x `frames`.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelInput {
    pub x: Vec<f32>,
    pub mels: usize,
    pub frames: usize,
}

impl ModelInput {
    /// The batch with its labels, as the training engine takes it.
    pub fn with_labels<'a>(&'a self, y: &'a [usize]) -> Batchable<'a> {
        Batchable { x: &self.x, y, mels: self.mels, frames: self.frames }
    }
}

/// `(mels, frames)` of one item of the run `c`'s input: the stored input's, but crop models with
/// a band limit read only the lowest `c.spec.mels` bands.
pub fn input_shape(c: &Checkpoint, raw: &impl RawInputs) -> (usize, usize) {
    let (mels, frames) = raw.dims(c);
    if c.input == Input::Crops { (c.spec.mels.min(mels), frames) } else { (mels, frames) }
}

/// The model input of `items` for the run `c`: each item's values of `c.input`'s kind, normalised
/// as the run was trained (log-mel by the run's mean and deviation, descriptors column by column).
pub fn batch(c: &Checkpoint, raw: &impl RawInputs, items: &[usize]) -> Result<ModelInput, StageError> {
    let (mels, frames) = input_shape(c, raw);
    let norm = |v: &f32| (v - c.normalize_mean) / c.normalize_std;
    let mut x = Vec::with_capacity(items.len() * mels * frames);
    for &i in items {
        match c.input {
            Input::Clip => x.extend(raw.clip(i)?.iter().map(norm)),
            // Bands are rows of frames, the lowest first.
            Input::Crops => x.extend(raw.full(i)?[..mels * frames].iter().map(norm)),
            Input::Stats => x.extend(standardize(raw.stats(i, c.max_hz)?, &c.stats_mean, &c.stats_std)),
        }
    }
    Ok(ModelInput { x, mels, frames })
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
}

impl RawInputs for Inputs {
    fn dims(&self, c: &Checkpoint) -> (usize, usize) {
        Inputs::dims(self, c.input)
    }

    fn clip(&self, r: usize) -> Result<&[f32], StageError> {
        Ok(self.features.row(r))
    }

    fn full(&self, r: usize) -> Result<&[f32], StageError> {
        Ok(self.full.as_ref().ok_or_else(|| StageError::Failed("features_full not loaded".into()))?.row(r))
    }

    fn stats(&self, r: usize, max_hz: Option<f64>) -> Result<&[f32], StageError> {
        let (t, map) = self.stats.as_ref().ok_or_else(|| StageError::Failed("descriptors not loaded".into()))?;
        if max_hz != self.stats_max_hz {
            return Err(StageError::Failed(format!(
                "the run was trained on descriptors with max_hz {max_hz:?}, the store holds {:?}: run train again",
                self.stats_max_hz
            )));
        }
        let d = t.columns.len();
        let i = map[r].ok_or_else(|| StageError::Failed(format!("no descriptors for {}", self.features.track_ids[r])))?;
        Ok(&t.values[i * d..(i + 1) * d])
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

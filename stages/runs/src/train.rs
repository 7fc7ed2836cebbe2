//! The train stage: every model of the configuration x every seed (x every fold under k-fold),
//! from the cached features and the split manifest.
//!
//! Each run trains in its own folder `train/<model>/<fold>-seed<k>/`, with a checkpoint every 10 s
//! or so of training and after its last epoch (a killed stage resumes each run from its last
//! checkpoint; `genrelab_models::train::CHECKPOINT_INTERVAL`) and `checkpoint.json`
//! beside the weights: the model spec, the feature configuration, the label names, the
//! normalisation and the training settings, so a checkpoint rebuilds and feeds its own model.
//! The per-epoch history of every run goes to the store's `history` table.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use genrelab_models::train::{Batchable, EpochRecord, Recipe, RunData, Schedule, Select, TrainSettings, train_run};
use genrelab_models::{Device, Input, ModelSpec, default_device, info};
use genrelab_store::tables::{Column, write_columns};
use genrelab_store::{FeatureMatrix, FloatTable, SplitRow, TableMeta, names, read_features, read_float_table, read_split};
use serde::{Deserialize, Serialize};

use crate::StageError;
use crate::features::feature_config_of;
use crate::logmel::FeatureConfig;
use crate::split::Protocol;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Models from the registry (`genrelab models`).
    pub models: Vec<String>,
    /// Seeds per model: runs use seeds 0..seeds.
    pub seeds: usize,
    pub epochs: usize,
    pub learning_rate: f64,
    pub batch_size: usize,
    pub eval_batch_size: usize,
    /// Inputs are normalised as (x - mean) / std: the study's fixed dataset-wide constants.
    /// (Descriptor models standardise each column with its training-part mean and deviation.)
    pub normalize_mean: f32,
    pub normalize_std: f32,
    /// Recipe options (see `genrelab_models::train::Recipe`); all off by default.
    pub weight_decay: f64,
    pub label_smoothing: f32,
    pub mixup_alpha: f32,
    /// Random gain of up to +-gain_db dB per training example.
    pub gain_db: f32,
    pub time_masks: usize,
    pub time_mask_width: usize,
    pub freq_masks: usize,
    pub freq_mask_width: usize,
    pub schedule: Schedule,
    pub warmup_epochs: usize,
    pub patience: Option<usize>,
    pub select: Select,
    /// Crop models: frames per training crop (128 = 3 s), crops per clip and epoch, and the hop
    /// between the test windows whose probabilities are averaged.
    pub crop_frames: usize,
    pub crops_per_epoch: usize,
    pub window_hop: usize,
    /// Band drop (spectrogram models): with probability `band_drop` per training example,
    /// every band above a random cut-off between `band_drop_hz` and the top is set to the
    /// example's floor, so the model also learns from clips without their highest band.
    pub band_drop: f32,
    pub band_drop_hz: f64,
    /// Crop models: read only the mel bands that lie wholly below this frequency (Hz), so a
    /// prediction does not depend on what a source holds above it (a 16 kHz file, an MP3's
    /// low-pass, a resampler's roll-off). Unset = every band.
    pub max_hz: Option<f64>,
    /// Per-model overrides of any key above except `models`: `[train.model.resnet]`.
    pub model: BTreeMap<String, serde_json::Value>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            models: vec!["linear".into(), "simple_cnn".into(), "complex_cnn".into()],
            seeds: 5,
            epochs: 150,
            learning_rate: 1e-4,
            batch_size: 128,
            eval_batch_size: 64,
            normalize_mean: -42.88,
            normalize_std: 15.50,
            weight_decay: 0.0,
            label_smoothing: 0.0,
            mixup_alpha: 0.0,
            gain_db: 0.0,
            time_masks: 0,
            time_mask_width: 0,
            freq_masks: 0,
            freq_mask_width: 0,
            schedule: Schedule::Constant,
            warmup_epochs: 0,
            patience: None,
            select: Select::Last,
            crop_frames: 128,
            crops_per_epoch: 1,
            window_hop: 64,
            band_drop: 0.0,
            band_drop_hz: 7000.0,
            max_hz: None,
            model: BTreeMap::new(),
        }
    }
}

impl TrainConfig {
    /// The configuration one model trains with: this one, with its `[train.model.<name>]` keys.
    pub fn for_model(&self, name: &str) -> Result<TrainConfig, StageError> {
        let mut base = serde_json::to_value(self).expect("config to json");
        let obj = base.as_object_mut().expect("an object");
        obj.remove("model");
        if let Some(over) = self.model.get(name) {
            let over = over.as_object().ok_or_else(|| StageError::Config(format!("[train.model.{name}] must be a table")))?;
            for (k, v) in over {
                if k == "models" || k == "model" {
                    return Err(StageError::Config(format!("[train.model.{name}] cannot set `{k}`")));
                }
                obj.insert(k.clone(), v.clone());
            }
        }
        serde_json::from_value(base).map_err(|e| StageError::Config(format!("[train.model.{name}]: {e}")))
    }

    /// The epochs a run of `model` trains (0 when its `[train.model.<name>]` keys are invalid:
    /// [`TrainConfig::validate`] reports those).
    pub fn epochs_of(&self, model: &str) -> usize {
        self.for_model(model).map_or(0, |c| c.epochs)
    }

    /// Whether this model's recipe needs a validation part.
    pub fn needs_validation(&self) -> bool {
        genrelab_models::train::needs_validation(self.select, self.patience)
    }

    /// The mel bands a run of input kind `input` reads, and the band limit it records: crop
    /// models with `max_hz` read only the bands wholly below it; descriptor models record the
    /// `max_hz` their descriptors were computed with.
    fn bands(&self, model: &str, input: Input, fc: &FeatureConfig, inputs: &Inputs) -> Result<(usize, Option<f64>), StageError> {
        let (stored_mels, _) = inputs.dims(input);
        match (input, self.max_hz) {
            (Input::Crops, Some(hz)) => match fc.bands_below(hz).min(stored_mels) {
                0 => Err(StageError::Config(format!("[train] (model {model}) max_hz = {hz}: no mel band lies below it"))),
                bands => Ok((bands, Some(hz))),
            },
            (Input::Stats, _) => Ok((stored_mels, inputs.stats_max_hz)),
            _ => Ok((stored_mels, None)),
        }
    }

    /// The recipe a model of input kind `input` reading `mels` bands of features made with
    /// `fc` trains with.
    pub fn recipe(&self, input: Input, fc: &FeatureConfig, mels: usize) -> Recipe {
        let crops = input == Input::Crops;
        Recipe {
            weight_decay: self.weight_decay,
            label_smoothing: self.label_smoothing,
            mixup_alpha: self.mixup_alpha,
            gain: if input == Input::Stats { 0.0 } else { self.gain_db / self.normalize_std },
            time_masks: if input == Input::Stats { 0 } else { self.time_masks },
            time_mask_width: self.time_mask_width,
            freq_masks: if input == Input::Stats { 0 } else { self.freq_masks },
            freq_mask_width: self.freq_mask_width,
            band_drop: if input == Input::Stats { 0.0 } else { self.band_drop },
            band_drop_from: match input {
                _ if self.band_drop == 0.0 => 0,
                Input::Stats => 0,
                Input::Crops => fc.bands_below(self.band_drop_hz),
                // The study's models read the resized `out_mels` bands: the same frequency, scaled.
                Input::Clip => fc.bands_below(self.band_drop_hz) * mels / fc.n_mels,
            },
            schedule: self.schedule,
            warmup_epochs: self.warmup_epochs,
            patience: self.patience,
            select: self.select,
            crop_frames: if crops { self.crop_frames } else { 0 },
            crops_per_epoch: if crops { self.crops_per_epoch.max(1) } else { 1 },
            window_hop: if crops { self.window_hop } else { 0 },
        }
    }

    /// Check the models and every recipe, those of `[train.model.<name>]` tables for models not
    /// (yet) in `models` included, so a bad value is reported when the config is read.
    pub fn validate(&self) -> Result<(), StageError> {
        if self.models.is_empty() {
            return Err(StageError::Config("[train] needs at least one model".into()));
        }
        // The shared values first: a NaN would not survive the per-model merge as a number.
        self.check("defaults")?;
        for m in &self.models {
            info(m).map_err(|e| StageError::Config(e.to_string()))?;
        }
        for m in self.model.keys() {
            info(m).map_err(|e| StageError::Config(format!("[train.model.{m}]: {e}")))?;
        }
        let names: std::collections::BTreeSet<&String> = self.models.iter().chain(self.model.keys()).collect();
        for m in names {
            self.for_model(m)?.check(m)?;
        }
        Ok(())
    }

    fn check(&self, name: &str) -> Result<(), StageError> {
        let positive = |v: f64| v.is_finite() && v > 0.0;
        if self.seeds == 0
            || self.epochs == 0
            || self.batch_size == 0
            || !positive(self.normalize_std as f64)
            || !positive(self.learning_rate)
        {
            return Err(StageError::Config(format!(
                "[train] (model {name}) needs seeds >= 1, epochs >= 1, batch_size >= 1, learning_rate > 0 and normalize_std > 0"
            )));
        }
        if !(0.0..=1.0).contains(&self.band_drop) || self.band_drop_hz.is_nan() || self.band_drop_hz <= 0.0 {
            return Err(StageError::Config(format!("[train] (model {name}): band_drop in [0, 1] and band_drop_hz > 0")));
        }
        let non_negative = |v: f64| v.is_finite() && v >= 0.0;
        if !(0.0..1.0).contains(&self.label_smoothing)
            || !non_negative(self.mixup_alpha as f64)
            || !non_negative(self.gain_db as f64)
            || !non_negative(self.weight_decay)
        {
            return Err(StageError::Config(format!(
                "[train] (model {name}): label_smoothing in [0, 1), mixup_alpha, gain_db, weight_decay >= 0"
            )));
        }
        Ok(())
    }
}

/// Everything needed to rebuild a run's model and feed it: written beside its weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub run: String,
    pub spec: ModelSpec,
    pub seed: u64,
    pub fold: Option<i32>,
    pub labels: Vec<String>,
    pub feature_config: FeatureConfig,
    pub normalize_mean: f32,
    pub normalize_std: f32,
    /// The recipe (settings.recipe) and everything else the run was trained with.
    pub settings: TrainSettings,
    /// The protocol of the split the run was trained on.
    pub protocol: String,
    pub history: Vec<EpochRecord>,
    /// What the model reads.
    #[serde(default = "clip_input")]
    pub input: Input,
    /// Descriptor models: per-column mean and deviation of the training part.
    #[serde(default)]
    pub stats_mean: Vec<f32>,
    #[serde(default)]
    pub stats_std: Vec<f32>,
    /// The weights file that is the run's result, and the epoch it holds (the last one, or the
    /// best validation epoch).
    #[serde(default = "last_weights")]
    pub weights: String,
    /// blake3 of the weights file as training wrote it: a damaged file is noticed (the run is
    /// trained again; evaluate and predict refuse it). Empty in checkpoints written before it.
    #[serde(default)]
    pub weights_blake3: String,
    #[serde(default)]
    pub selected_epoch: usize,
    #[serde(default)]
    pub stopped_early: bool,
    /// Clips of the validation part (0: none).
    #[serde(default)]
    pub valid_clips: usize,
    /// Crop models: the band limit they were trained with (they read the lowest `spec.mels`
    /// bands). Descriptor models: the descriptors' `max_hz`.
    #[serde(default)]
    pub max_hz: Option<f64>,
    /// Where the run trained (backend, processor, threads): what its epochs' seconds mean.
    #[serde(default)]
    pub trained_on: String,
}

impl Checkpoint {
    /// Wall time of the run's training, every epoch it ran (validation and test scoring included).
    pub fn train_seconds(&self) -> f64 {
        self.history.iter().map(|h| h.seconds).sum()
    }

    /// Crop models: the windows (frames, hop) a clip's prediction averages over, with `hop` in
    /// place of the run's own when given (`[evaluate] window_hop`); None for other models. What
    /// evaluate and predict both use.
    pub fn test_window(&self, hop: Option<usize>) -> Option<(usize, usize)> {
        self.settings.recipe.window().map(|(crop, own)| (crop, hop.unwrap_or(own)))
    }

    /// Whether the run's weights file in `dir` is the one training wrote (by content); None
    /// when it is, else what is wrong. A checkpoint without a hash is taken as it is.
    pub fn weights_damage(&self, dir: &Path) -> Option<String> {
        let path = dir.join(&self.weights);
        match std::fs::read(&path) {
            Err(e) => Some(format!("{}: {e}", path.display())),
            Ok(_) if self.weights_blake3.is_empty() => None,
            Ok(b) if blake3::hash(&b).to_hex().as_str() == self.weights_blake3 => None,
            Ok(_) => Some(format!("{} is not the file training wrote (its content hash differs from the checkpoint's)", path.display())),
        }
    }

    /// The run's model from its weights in `dir`, checked against the checkpoint first.
    pub fn load_model(&self, dir: &Path, device: genrelab_models::Device) -> Result<genrelab_models::Model, StageError> {
        if let Some(damage) = self.weights_damage(dir) {
            return Err(StageError::Failed(format!("run {}: damaged weights: {damage}; `genrelab run train` trains it again", self.run)));
        }
        genrelab_models::train::load_weights(dir, &self.weights, &self.spec, device).map_err(|e| StageError::Failed(e.to_string()))
    }

    /// The history record of the selected epoch (the last one when none was recorded).
    pub fn selected(&self) -> Option<&EpochRecord> {
        match self.selected_epoch {
            0 => self.history.last(),
            e => self.history.get(e - 1),
        }
    }
}

fn clip_input() -> Input {
    Input::Clip
}

fn last_weights() -> String {
    genrelab_models::train::WEIGHTS.into()
}

pub const CHECKPOINT: &str = "checkpoint.json";

/// One run: which model, which seed, which fold, which rows train, validate and test.
pub struct RunPlan {
    pub id: String,
    pub model: String,
    pub seed: u64,
    pub fold: Option<i32>,
    pub train: Vec<usize>,
    pub valid: Vec<usize>,
    pub test: Vec<usize>,
}

/// Whether a run of `fold` is among `folds` (None: every run is).
pub fn in_folds(folds: Option<&[i32]>, fold: Option<i32>) -> bool {
    folds.is_none_or(|f| fold.is_some_and(|x| f.contains(&x)))
}

/// Folds of a k-fold split, sorted.
pub fn folds_of(split: &[SplitRow]) -> Vec<i32> {
    let mut folds: Vec<i32> = split.iter().filter_map(|r| r.fold).collect();
    folds.sort();
    folds.dedup();
    folds
}

/// The validation fold of test fold `f`: the next one (cyclically).
fn valid_fold(split: &[SplitRow], f: i32) -> Option<i32> {
    let folds = folds_of(split);
    let i = folds.iter().position(|&x| x == f)?;
    (folds.len() > 2).then(|| folds[(i + 1) % folds.len()])
}

/// Rows of the feature matrix that a run tests on: fold `f` under k-fold, else the `test` part.
pub fn test_rows(features: &FeatureMatrix, split: &[SplitRow], fold: Option<i32>) -> Vec<usize> {
    rows_where(features, split, |r| match fold {
        Some(f) => r.fold == Some(f),
        None => r.part.as_deref() == Some("test"),
    })
}

/// Rows a run validates on, when its recipe selects on validation: the next fold under k-fold,
/// else the `valid` part. Empty when it does not.
pub fn valid_rows(features: &FeatureMatrix, split: &[SplitRow], fold: Option<i32>, needs_validation: bool) -> Vec<usize> {
    if !needs_validation {
        return vec![];
    }
    match fold {
        Some(f) => match valid_fold(split, f) {
            Some(v) => rows_where(features, split, |r| r.fold == Some(v)),
            None => vec![],
        },
        None => rows_where(features, split, |r| r.part.as_deref() == Some("valid")),
    }
}

/// Rows that a run trains on: every other fold under k-fold (but the validation fold when the
/// recipe validates), else the `train` part.
pub fn train_rows(features: &FeatureMatrix, split: &[SplitRow], fold: Option<i32>, needs_validation: bool) -> Vec<usize> {
    let valid = fold.and_then(|f| valid_fold(split, f)).filter(|_| needs_validation);
    rows_where(features, split, |r| match fold {
        Some(f) => r.fold.is_some_and(|x| x != f && Some(x) != valid),
        None => r.part.as_deref() == Some("train"),
    })
}

/// The feature rows of the split's tracks that `pred` selects: a track's one row, or all of its
/// windows (consecutive rows) with `features.excerpt = "windows"`.
fn rows_where(features: &FeatureMatrix, split: &[SplitRow], pred: impl Fn(&SplitRow) -> bool) -> Vec<usize> {
    let mut index: std::collections::HashMap<&str, Vec<usize>> = std::collections::HashMap::new();
    for (i, id) in features.track_ids.iter().enumerate() {
        index.entry(id.as_str()).or_default().push(i);
    }
    split.iter().filter(|r| pred(r)).filter_map(|r| index.get(r.track_id.as_str())).flatten().copied().collect()
}

/// The train / valid / test rows of every run the split and the config call for.
pub fn plan_runs(features: &FeatureMatrix, split: &[SplitRow], protocol: &str, cfg: &TrainConfig) -> Result<Vec<RunPlan>, StageError> {
    // k-fold, or a manifest's own folds (`given`): one run per fold.
    let given = folds_of(split);
    let by_fold = match Protocol::parse(protocol) {
        Some(Protocol::Kfold) => true,
        Some(Protocol::Given) => !given.is_empty(),
        _ => false,
    };
    let folds: Vec<Option<i32>> = if by_fold { given.into_iter().map(Some).collect() } else { vec![None] };
    let mut plans = vec![];
    for model in &cfg.models {
        let mcfg = cfg.for_model(model)?;
        let needs_valid = mcfg.needs_validation();
        for fold in &folds {
            let train = train_rows(features, split, *fold, needs_valid);
            let valid = valid_rows(features, split, *fold, needs_valid);
            let test = test_rows(features, split, *fold);
            if train.is_empty() {
                return Err(StageError::Failed(format!("the split gives run {model} no training clips")));
            }
            if needs_valid && valid.is_empty() {
                return Err(StageError::Config(format!(
                    "model {model} selects on validation (select = \"best_valid\" or patience) but the `{protocol}` split has no \
                     validation part: use split.valid_fraction > 0 (study), protocol = \"filtered\", or kfold with 3+ folds"
                )));
            }
            for seed in 0..mcfg.seeds as u64 {
                let fold_part = fold.map_or(String::new(), |f| format!("fold{f}-"));
                plans.push(RunPlan {
                    id: format!("{model}/{fold_part}seed{seed}"),
                    model: model.clone(),
                    seed,
                    fold: *fold,
                    train: train.clone(),
                    valid: valid.clone(),
                    test: test.clone(),
                });
            }
        }
    }
    Ok(plans)
}

/// Labels (sorted genre names, as the study's label encoder) and each row's label index.
pub fn labels_of(features: &FeatureMatrix) -> (Vec<String>, Vec<usize>) {
    let mut labels = features.genres.clone();
    labels.sort();
    labels.dedup();
    let y = features.genres.iter().map(|g| labels.binary_search(g).expect("label of a row")).collect();
    (labels, y)
}

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

pub fn run_dir(train_dir: &Path, run: &str) -> PathBuf {
    train_dir.join(run)
}

/// Fingerprint of a run's inputs (normalised values and labels of every part).
fn data_hash(xs: &[&[f32]], ys: &[&[usize]]) -> String {
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

/// Run the stage. `fresh` discards every checkpoint first (`--force train`); otherwise runs whose
/// checkpoint matches their model, recipe and data are kept and unfinished ones resume.
pub fn train(
    store_dir: &Path,
    train_dir: &Path,
    cfg: &TrainConfig,
    fresh: bool,
    workers: Option<Workers>,
) -> Result<serde_json::Value, StageError> {
    let history = store_dir.join(names::HISTORY);
    train_into(store_dir, train_dir, cfg, &TrainOptions { fresh, history: Some(&history), only: Only::All, workers })
}

/// Which of the planned runs a call trains; the folder's runs of the others are kept.
#[derive(Debug, Clone, Copy, Default)]
pub enum Only<'a> {
    #[default]
    All,
    /// The runs of these folds (k-fold splits).
    Folds(&'a [i32]),
    /// The runs with these ids (`resnet/fold3-seed0`).
    Runs(&'a [String]),
}

impl Only<'_> {
    fn keeps(&self, plan: &RunPlan) -> bool {
        match self {
            Only::All => true,
            Only::Folds(f) => in_folds(Some(f), plan.fold),
            Only::Runs(ids) => ids.contains(&plan.id),
        }
    }
}

/// Runs trained in other processes, `jobs` at once, each process on `threads` threads.
/// libtorch keeps its random generator (dropout, initialisation) in one global per process, so
/// two runs in one process cannot train at once and stay deterministic; in processes of their
/// own they can, and give what one process training them in turn on as many threads gives (a
/// test checks). A worker keeps its thread count for all its runs: a run's figures depend on
/// its thread count (float rounding), so it never changes within a run.
#[derive(Debug, Clone)]
pub struct Workers {
    pub jobs: usize,
    pub threads: usize,
    /// The command that trains runs in a worker (the CLI's hidden `train-runs`, which calls
    /// [`train_worker`]); the stage appends `--store DIR --train-dir DIR --threads N`, passes
    /// the training configuration as JSON in [`WORKER_CONFIG_ENV`] and writes run ids to its
    /// input, one per line, the next when it has printed [`WORKER_DONE`] for the last.
    pub command: Vec<std::ffi::OsString>,
}

/// The environment variable that carries a worker's training configuration (JSON).
pub const WORKER_CONFIG_ENV: &str = "GENRELAB_TRAIN_CONFIG";

/// What a worker prints on its output when it has trained a run: this, then the run's id.
pub const WORKER_DONE: &str = "trained ";

/// A worker's work: train the runs of `train_dir` named by the lines of `runs` (its input,
/// one run id per line, until it ends) with the configuration in [`WORKER_CONFIG_ENV`],
/// printing [`WORKER_DONE`] and the id to `done` after each (no history table: the stage that
/// started it writes that). The store is read once.
pub fn train_worker(
    store_dir: &Path,
    train_dir: &Path,
    runs: impl std::io::BufRead,
    mut done: impl std::io::Write,
) -> Result<(), StageError> {
    let json = std::env::var(WORKER_CONFIG_ENV).map_err(|_| StageError::Config(format!("a training worker needs {WORKER_CONFIG_ENV}")))?;
    let cfg: TrainConfig = serde_json::from_str(&json).map_err(|e| StageError::Config(format!("{WORKER_CONFIG_ENV}: {e}")))?;
    let inputs = Inputs::read(store_dir, &input_kinds(&cfg)?)?;
    let (ctx, plans) = RunContext::new(&inputs, store_dir, train_dir, &cfg)?;
    let device = default_device().map_err(|e| StageError::Config(e.to_string()))?;
    for line in runs.lines() {
        let id = line.map_err(|e| StageError::Failed(format!("reading the runs to train: {e}")))?;
        let id = id.trim();
        if id.is_empty() {
            continue;
        }
        let plan = plans.iter().find(|p| p.id == id).ok_or_else(|| StageError::Config(format!("no run {id} in this configuration")))?;
        ctx.train_plan(plan, device, |_| {})?;
        writeln!(done, "{WORKER_DONE}{id}")
            .and_then(|_| done.flush())
            .map_err(|e| StageError::Failed(format!("reporting run {id}: {e}")))?;
    }
    Ok(())
}

impl Workers {
    /// `jobs` processes sharing `threads` threads (0 = every core of this process's pool).
    pub fn new(jobs: usize, threads: usize, command: Vec<std::ffi::OsString>) -> Workers {
        let total = if threads == 0 { rayon::current_num_threads() } else { threads };
        Workers { jobs, threads: (total / jobs.max(1)).max(1), command }
    }
}

/// How a call of [`train_into`] / [`train_with`] runs.
#[derive(Debug, Default)]
pub struct TrainOptions<'a> {
    /// Delete the folder's runs first (`--force`).
    pub fresh: bool,
    /// Where the per-epoch history table goes (None: not written).
    pub history: Option<&'a Path>,
    pub only: Only<'a>,
    /// Train the runs that are not done in worker processes first (None: all in this one).
    pub workers: Option<Workers>,
}

/// [`train`] with its options: which runs, where the history goes, worker processes.
pub fn train_into(store_dir: &Path, train_dir: &Path, cfg: &TrainConfig, opts: &TrainOptions) -> Result<serde_json::Value, StageError> {
    let kinds = input_kinds(cfg)?;
    let inputs = Inputs::read(store_dir, &kinds)?;
    train_with(&inputs, store_dir, train_dir, cfg, opts)
}

/// Check the config's models and recipes; the input kinds its models read.
pub fn input_kinds(cfg: &TrainConfig) -> Result<Vec<Input>, StageError> {
    cfg.validate()?;
    cfg.models.iter().map(|m| Ok(info(m).map_err(|e| StageError::Config(e.to_string()))?.input)).collect()
}

/// What a run needs before it trains: its checkpoint as it will be written, its data, and its
/// history when the folder already holds it, trained with the same model, recipe and data.
struct Prepared {
    ckpt: Checkpoint,
    epochs: usize,
    x: [Vec<f32>; 3],
    y: [Vec<usize>; 3],
    done: Option<Vec<EpochRecord>>,
}

/// What every run of one call shares.
struct RunContext<'a> {
    inputs: &'a Inputs,
    cfg: &'a TrainConfig,
    feature_config: FeatureConfig,
    labels: Vec<String>,
    y_all: Vec<usize>,
    protocol: String,
    trained_on: String,
    train_dir: &'a Path,
}

impl<'a> RunContext<'a> {
    /// The context of `cfg`'s runs on the store's split, and their plans (every planned run).
    fn new(inputs: &'a Inputs, store_dir: &Path, train_dir: &'a Path, cfg: &'a TrainConfig) -> Result<(Self, Vec<RunPlan>), StageError> {
        let features = &inputs.features;
        let (split_meta, split) = read_split(&store_dir.join(names::SPLIT))?;
        let protocol = split_meta.get("protocol").unwrap_or("study").to_string();
        let (labels, y_all) = labels_of(features);
        let plans = plan_runs(features, &split, &protocol, cfg)?;
        let ctx = RunContext {
            inputs,
            cfg,
            feature_config: feature_config_of(&features.meta)?,
            labels,
            y_all,
            protocol,
            trained_on: genrelab_models::device_description(),
            train_dir,
        };
        Ok((ctx, plans))
    }

    /// Train one run (or resume it, or keep it when the folder holds it done) and write its
    /// checkpoint; its history. `progress(n)` reports n more of its configured epochs accounted for.
    fn train_plan(&self, plan: &RunPlan, device: Device, progress: impl Fn(u64)) -> Result<Vec<EpochRecord>, StageError> {
        let span = tracing::info_span!("run", run = %plan.id);
        let _enter = span.enter();
        let Prepared { mut ckpt, epochs, x, y, done } = self.prepare(plan)?;
        if let Some(history) = done {
            progress(epochs as u64);
            return Ok(history);
        }
        let (mels, frames) = (ckpt.spec.mels, self.inputs.dims(ckpt.input).1);
        let batch = |i: usize| Batchable { x: &x[i], y: &y[i], mels, frames };
        let dir = run_dir(self.train_dir, &plan.id);
        let out = train_run(
            &ckpt.spec,
            &ckpt.settings,
            RunData { train: batch(0), valid: (!plan.valid.is_empty()).then(|| batch(1)), test: batch(2) },
            device,
            &dir,
            |r| {
                progress(1);
                tracing::debug!(epoch = r.epoch, train_loss = r.train_loss, valid_loss = r.valid_loss, test_acc = r.test_acc, "epoch");
            },
        )
        .map_err(|e| StageError::Failed(format!("run {}: {e}", plan.id)))?;
        progress((epochs - out.history.len().min(epochs)) as u64);
        let last = out.history.last().expect("at least one epoch");
        tracing::info!(
            train_acc = format!("{:.3}", last.train_acc),
            test_acc = format!("{:.3}", last.test_acc),
            selected_epoch = out.epoch,
            "trained"
        );
        ckpt.history = out.history.clone();
        ckpt.weights = out.weights.to_string();
        ckpt.selected_epoch = out.epoch;
        ckpt.stopped_early = out.stopped_early;
        let weights = dir.join(out.weights);
        ckpt.weights_blake3 = blake3::hash(&std::fs::read(&weights).map_err(|e| StageError::io(&weights, e))?).to_hex().to_string();
        genrelab_store::atomic::write_atomic(dir.join(CHECKPOINT), &serde_json::to_vec_pretty(&ckpt).expect("json"))?;
        Ok(out.history)
    }

    fn prepare(&self, plan: &RunPlan) -> Result<Prepared, StageError> {
        let (inputs, labels) = (self.inputs, &self.labels);
        let mcfg = self.cfg.for_model(&plan.model)?;
        let input = info(&plan.model).map_err(|e| StageError::Config(e.to_string()))?.input;
        let (_, frames) = inputs.dims(input);
        let (mels, max_hz) = mcfg.bands(&plan.model, input, &self.feature_config, inputs)?;
        let recipe = mcfg.recipe(input, &self.feature_config, mels);
        let model_frames = if input == Input::Crops { mcfg.crop_frames.min(frames) } else { frames };
        let spec = ModelSpec { name: plan.model.clone(), mels, frames: model_frames, classes: labels.len() };
        let (stats_mean, stats_std) = if input == Input::Stats { inputs.stats_norm(&plan.train)? } else { (vec![], vec![]) };
        let mut ckpt = Checkpoint {
            run: plan.id.clone(),
            spec: spec.clone(),
            seed: plan.seed,
            fold: plan.fold,
            labels: labels.clone(),
            feature_config: self.feature_config.clone(),
            normalize_mean: mcfg.normalize_mean,
            normalize_std: mcfg.normalize_std,
            settings: TrainSettings {
                epochs: mcfg.epochs,
                learning_rate: mcfg.learning_rate,
                batch_size: mcfg.batch_size,
                eval_batch_size: mcfg.eval_batch_size,
                seed: plan.seed,
                data: String::new(),
                recipe,
            },
            protocol: self.protocol.clone(),
            history: vec![],
            input,
            stats_mean,
            stats_std,
            weights: last_weights(),
            weights_blake3: String::new(),
            selected_epoch: 0,
            stopped_early: false,
            valid_clips: plan.valid.len(),
            max_hz,
            trained_on: self.trained_on.clone(),
        };
        let x = [inputs.gather(&ckpt, &plan.train)?, inputs.gather(&ckpt, &plan.valid)?, inputs.gather(&ckpt, &plan.test)?];
        let ys = |rows: &[usize]| rows.iter().map(|&r| self.y_all[r]).collect::<Vec<usize>>();
        let y = [ys(&plan.train), ys(&plan.valid), ys(&plan.test)];
        // Without a validation part the fingerprint is that of (train, test), as train stage v2
        // computed it: identical runs of the study's recipe are recognised and kept.
        ckpt.settings.data = if plan.valid.is_empty() {
            data_hash(&[&x[0], &x[2]], &[&y[0], &y[2]])
        } else {
            data_hash(&[&x[0], &x[1], &x[2]], &[&y[0], &y[1], &y[2]])
        };
        let dir = run_dir(self.train_dir, &plan.id);
        let done = std::fs::read(dir.join(CHECKPOINT))
            .ok()
            .and_then(|b| serde_json::from_slice::<Checkpoint>(&b).ok())
            .filter(|c| match c.weights_damage(&dir) {
                None => true,
                Some(damage) => {
                    // From scratch: its training state (progress, optimizer) goes with the weights.
                    tracing::warn!(run = %plan.id, %damage, "damaged weights: the run is trained again");
                    let _ = std::fs::remove_dir_all(&dir);
                    false
                }
            })
            .filter(|c| {
                // A run trained before libtorch (burn's `.bpk` weights) is trained again.
                [genrelab_models::train::WEIGHTS, genrelab_models::train::BEST_WEIGHTS].contains(&c.weights.as_str())
                    && c.spec == spec
                    && c.settings == ckpt.settings
                    && c.labels == ckpt.labels
                    && c.feature_config == ckpt.feature_config
                    && c.input == input
                    && c.stats_mean == ckpt.stats_mean
                    && c.max_hz == max_hz
            })
            .map(|c| c.history);
        Ok(Prepared { ckpt, epochs: mcfg.epochs, x, y, done })
    }
}

/// [`train_into`] with the store's inputs already read (`genrelab tune` reads them once for
/// all its trials); they must hold every input kind the config's models read.
pub fn train_with(
    inputs: &Inputs,
    store_dir: &Path,
    train_dir: &Path,
    cfg: &TrainConfig,
    opts: &TrainOptions,
) -> Result<serde_json::Value, StageError> {
    cfg.validate()?;
    if opts.fresh && train_dir.exists() {
        std::fs::remove_dir_all(train_dir).map_err(|e| StageError::io(train_dir, e))?;
    }
    let (ctx, plans) = RunContext::new(inputs, store_dir, train_dir, cfg)?;
    let device = default_device().map_err(|e| StageError::Config(e.to_string()))?;

    // Runs of models that are no longer configured are removed, so the folder holds this config's runs only.
    let wanted: std::collections::HashSet<&str> = plans.iter().map(|p| p.id.as_str()).collect();
    remove_unplanned(train_dir, &wanted);
    let plans: Vec<&RunPlan> = plans.iter().filter(|p| opts.only.keeps(p)).collect();

    let total_epochs: usize = plans.iter().map(|p| cfg.epochs_of(&p.model)).sum();
    let bar = crate::progress::bar(total_epochs as u64, "train");
    // With workers, the runs already done are found first (their histories kept, so they are
    // not prepared again below); the others train in the workers and are read back below.
    let mut known: std::collections::HashMap<&str, Vec<EpochRecord>> = Default::default();
    if let Some(w) = opts.workers.as_ref().filter(|w| w.jobs > 1) {
        let mut pending = vec![];
        for plan in &plans {
            match ctx.prepare(plan)?.done {
                Some(history) => drop(known.insert(plan.id.as_str(), history)),
                None => pending.push(*plan),
            }
        }
        if pending.len() > 1 {
            let done_before: usize = plans.iter().filter(|p| known.contains_key(p.id.as_str())).map(|p| cfg.epochs_of(&p.model)).sum();
            train_in_workers(w, &pending, (store_dir, train_dir), cfg, |n| bar.set_position((done_before + n) as u64))?;
            bar.set_position(0);
        }
    }
    let mut hist: Vec<(String, String, u64, Option<i32>, EpochRecord)> = vec![];
    for plan in &plans {
        let history = match known.remove(plan.id.as_str()) {
            Some(history) => {
                bar.inc(cfg.epochs_of(&plan.model) as u64);
                history
            }
            None => ctx.train_plan(plan, device, |n| bar.inc(n))?,
        };
        hist.extend(history.into_iter().map(|r| (plan.id.clone(), plan.model.clone(), plan.seed, plan.fold, r)));
    }
    bar.finish_and_clear();

    let protocol = &ctx.protocol;
    let seconds: f64 = hist.iter().map(|h| h.4.seconds).sum();
    let summary = serde_json::json!({"runs": plans.len(), "protocol": protocol, "train_seconds": seconds});
    let Some(history) = opts.history else {
        return Ok(summary);
    };
    let opt = |f: fn(&EpochRecord) -> Option<f64>| Column::Float(hist.iter().map(|h| f(&h.4).unwrap_or(f64::NAN)).collect());
    write_columns(
        history,
        &TableMeta::new("history").with("protocol", protocol),
        vec![
            ("run", Column::Str(hist.iter().map(|h| h.0.clone()).collect())),
            ("model", Column::Str(hist.iter().map(|h| h.1.clone()).collect())),
            ("seed", Column::Int(hist.iter().map(|h| h.2 as i64).collect())),
            ("fold", Column::OptInt(hist.iter().map(|h| h.3.map(i64::from)).collect())),
            ("epoch", Column::Int(hist.iter().map(|h| h.4.epoch as i64).collect())),
            ("train_loss", Column::Float(hist.iter().map(|h| h.4.train_loss).collect())),
            ("train_acc", Column::Float(hist.iter().map(|h| h.4.train_acc).collect())),
            ("valid_loss", opt(|r| r.valid_loss)),
            ("valid_acc", opt(|r| r.valid_acc)),
            ("test_loss", Column::Float(hist.iter().map(|h| h.4.test_loss).collect())),
            ("test_acc", Column::Float(hist.iter().map(|h| h.4.test_acc).collect())),
            ("learning_rate", opt(|r| r.learning_rate)),
            ("seconds", Column::Float(hist.iter().map(|h| h.4.seconds).collect())),
        ],
    )?;
    Ok(summary)
}

/// Train `pending` in `w.jobs` worker processes, reporting the epochs they have completed to
/// `progress` about once a second; Ok when every run trained. The runs form one queue, the
/// longest first (epochs still to train): each worker is given its next run when it has
/// finished one, so no worker idles while runs wait. A failed worker's run is reported and the
/// queue goes on in the others.
fn train_in_workers(
    w: &Workers,
    pending: &[&RunPlan],
    (store_dir, train_dir): (&Path, &Path),
    cfg: &TrainConfig,
    progress: impl Fn(usize),
) -> Result<(), StageError> {
    use std::io::{BufRead, Write};
    // Each run's configured epochs, once: the progress loop below reads them every half second.
    let epochs: Vec<usize> = pending.iter().map(|p| cfg.epochs_of(&p.model)).collect();
    let epochs_done = |i: usize| genrelab_models::train::epochs_completed(&run_dir(train_dir, &pending[i].id)).unwrap_or(0).min(epochs[i]);
    let mut order: Vec<(usize, &RunPlan)> = pending.iter().enumerate().map(|(i, p)| (epochs[i] - epochs_done(i), *p)).collect();
    order.sort_by_key(|(left, _)| std::cmp::Reverse(*left)); // stable: ties keep the plan's order
    let mut queue: std::collections::VecDeque<String> = order.into_iter().map(|(_, p)| p.id.clone()).collect();
    let config = serde_json::to_string(cfg).expect("config to json");
    let jobs = w.jobs.min(queue.len());
    tracing::info!(jobs, runs = pending.len(), threads_each = w.threads, "training in worker processes");
    let (program, args) = w.command.split_first().ok_or_else(|| StageError::Config("no worker command to train runs with".into()))?;

    struct Worker {
        child: std::process::Child,
        stdin: Option<std::process::ChildStdin>,
        /// The run it trains now.
        current: Option<String>,
        exit: Option<std::process::ExitStatus>,
        reader: Option<std::thread::JoinHandle<()>>,
    }
    // Give a worker the queue's next run, or close its input when none is left (it then exits).
    let next = |wk: &mut Worker, queue: &mut std::collections::VecDeque<String>| {
        while let Some(stdin) = wk.stdin.as_mut() {
            let Some(id) = queue.pop_front() else { break };
            if writeln!(stdin, "{id}").and_then(|_| stdin.flush()).is_ok() {
                wk.current = Some(id);
                return;
            }
            queue.push_front(id); // it has exited: the run waits for another worker
            wk.stdin = None;
        }
        wk.stdin = None;
    };
    let (tx, rx) = std::sync::mpsc::channel::<(usize, String)>();
    // Worker `i`; its finished runs arrive in `rx` as (i, run id).
    let spawn = |i: usize| -> Result<Worker, String> {
        let mut child = std::process::Command::new(program)
            .args(args)
            .arg("--store")
            .arg(store_dir)
            .arg("--train-dir")
            .arg(train_dir)
            .arg("--threads")
            .arg(w.threads.to_string())
            .env("GENRELAB_PROGRESS", "0")
            .env(WORKER_CONFIG_ENV, &config)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| format!("starting a training worker ({}): {e}", Path::new(program).display()))?;
        let (stdin, stdout) = (child.stdin.take(), child.stdout.take().expect("piped stdout"));
        let tx = tx.clone();
        let reader = std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(id) = line.strip_prefix(WORKER_DONE) {
                    let _ = tx.send((i, id.to_string()));
                }
            }
        });
        Ok(Worker { child, stdin, current: None, exit: None, reader: Some(reader) })
    };
    // A worker that has exited: its input closed, its reader ended (every run it finished is in `rx`).
    let reap = |wk: &mut Worker| {
        wk.stdin = None;
        if let Some(r) = wk.reader.take() {
            let _ = r.join();
        }
    };
    let stop = |wk: &mut Worker| {
        let _ = wk.child.kill();
        wk.exit = wk.child.wait().ok();
        reap(wk);
    };
    let mut workers: Vec<Worker> = vec![];
    for i in 0..jobs {
        match spawn(i) {
            Ok(mut wk) => {
                next(&mut wk, &mut queue);
                workers.push(wk);
            }
            Err(e) => {
                workers.iter_mut().for_each(stop);
                return Err(StageError::Failed(e));
            }
        }
    }
    // A finished run is in `rx` before its worker's output ends; once a worker has exited and
    // its reader has ended, every run it finished has been received.
    let finished = |i: usize, id: String, workers: &mut Vec<Worker>, queue: &mut std::collections::VecDeque<String>| {
        let wk = &mut workers[i];
        if wk.current.as_deref() == Some(id.as_str()) {
            wk.current = None;
            next(wk, queue);
        }
    };
    loop {
        if let Ok((i, id)) = rx.recv_timeout(std::time::Duration::from_millis(500)) {
            finished(i, id, &mut workers, &mut queue);
        }
        for wk in workers.iter_mut().filter(|wk| wk.exit.is_none()) {
            wk.exit = wk.child.try_wait().map_err(|e| StageError::Failed(format!("waiting for a training worker: {e}")))?;
            if wk.exit.is_some() {
                reap(wk);
            }
        }
        while let Ok((i, id)) = rx.try_recv() {
            finished(i, id, &mut workers, &mut queue);
        }
        progress((0..pending.len()).map(epochs_done).sum());
        if workers.iter().all(|wk| wk.exit.is_some()) {
            break;
        }
    }
    let mut failed: Vec<String> = workers
        .iter()
        .filter(|wk| wk.current.is_some() || wk.exit.is_some_and(|e| !e.success()))
        .map(|wk| match &wk.current {
            Some(run) => format!("run {run}: {}", wk.exit.expect("exited")),
            None => format!("a worker: {}", wk.exit.expect("exited")),
        })
        .collect();
    if !queue.is_empty() {
        failed.push(format!("not started: {}", Vec::from(queue).join(", ")));
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(StageError::Failed(format!("training worker(s) failed (their errors are printed above): {}", failed.join("; "))))
    }
}

/// What a train folder holds towards the configured runs, for `genrelab status`: how many of
/// the `folds` x seeds runs of each configured model have a checkpoint, and the runs that have
/// trained part of their epochs (a killed or running stage; the next run resumes them). None
/// when the folder holds nothing of them. Checkpoints are counted, not checked against the
/// configuration: the stage does that when it runs.
pub fn folder_progress(train_dir: &Path, cfg: &TrainConfig, folds: usize) -> Option<String> {
    let (mut planned, mut trained, mut part) = (0, 0, vec![]);
    for model in &cfg.models {
        let Ok(mcfg) = cfg.for_model(model) else { continue };
        planned += mcfg.seeds * folds;
        let mut runs: Vec<PathBuf> = std::fs::read_dir(train_dir.join(model)).into_iter().flatten().flatten().map(|e| e.path()).collect();
        runs.sort();
        for run in runs {
            if run.join(CHECKPOINT).exists() {
                trained += 1;
            } else if let Some(n) = genrelab_models::train::epochs_completed(&run) {
                let name = run.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
                part.push(format!("{model}/{name} at epoch {n} of {}", mcfg.epochs));
            }
        }
    }
    if trained == 0 && part.is_empty() {
        return None;
    }
    let mut text = format!("{trained} of {planned} runs have a checkpoint");
    if !part.is_empty() {
        text.push_str(&format!(", {} part-trained ({})", part.len(), part.join(", ")));
    }
    Some(text)
}

fn remove_unplanned(train_dir: &Path, wanted: &std::collections::HashSet<&str>) {
    for model_dir in std::fs::read_dir(train_dir).into_iter().flatten().flatten() {
        for run in std::fs::read_dir(model_dir.path()).into_iter().flatten().flatten() {
            let id = format!("{}/{}", model_dir.file_name().to_string_lossy(), run.file_name().to_string_lossy());
            if !wanted.contains(id.as_str()) {
                let _ = std::fs::remove_dir_all(run.path());
            }
        }
        let _ = std::fs::remove_dir(model_dir.path()); // only if now empty
    }
}

/// Read every run's checkpoint under `train_dir`, sorted by run id.
pub fn read_checkpoints(train_dir: &Path) -> Result<Vec<(PathBuf, Checkpoint)>, StageError> {
    let mut out = vec![];
    for model_dir in std::fs::read_dir(train_dir).map_err(|e| StageError::io(train_dir, e))?.flatten() {
        for run in std::fs::read_dir(model_dir.path()).into_iter().flatten().flatten() {
            let p = run.path().join(CHECKPOINT);
            if let Ok(bytes) = std::fs::read(&p) {
                let c: Checkpoint = serde_json::from_slice(&bytes).map_err(|e| StageError::Source(format!("{}: {e}", p.display())))?;
                out.push((run.path(), c));
            }
        }
    }
    out.sort_by(|a, b| a.1.run.cmp(&b.1.run));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run of model `id`'s first path component, with no data (for the worker queue's tests).
    fn plan(id: &str) -> RunPlan {
        RunPlan {
            id: id.into(),
            model: id.split('/').next().unwrap().into(),
            seed: 0,
            fold: None,
            train: vec![],
            valid: vec![],
            test: vec![],
        }
    }

    #[cfg(unix)]
    #[test]
    fn workers_take_runs_from_one_queue_longest_first_and_a_failure_stops_only_its_run() {
        let runs = [plan("linear/fold0-seed0"), plan("linear/fold1-seed0"), plan("cnn/fold0-seed0"), plan("linear/fold2-seed0")];
        let runs: Vec<&RunPlan> = runs.iter().collect();
        let dir = tempfile::tempdir().unwrap();
        let dirs = (dir.path(), dir.path());
        let mut cfg = TrainConfig { epochs: 2, ..TrainConfig::default() };
        cfg.model.insert("cnn".into(), serde_json::json!({"epochs": 9}));
        // A worker trains the runs it reads (it logs them), reports each, and fails on fold 1.
        let log = dir.path().join("log");
        let script = format!(
            "while read id; do case \"$id\" in *fold1*) exit 3;; esac; echo \"$id\" >> {}; echo \"trained $id\"; done",
            log.display()
        );
        let worker = |jobs| Workers { jobs, threads: 1, command: vec!["sh".into(), "-c".into(), script.clone().into(), "worker".into()] };
        let trained = || {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            std::fs::remove_file(&log).ok();
            text.lines().map(String::from).collect::<Vec<_>>()
        };
        // One worker: the longest run (9 epochs) first, then the plan's order; the failure
        // ends the worker, and the run left is named as not started.
        let err = train_in_workers(&worker(1), &runs, dirs, &cfg, |_| {}).unwrap_err().to_string();
        assert_eq!(trained(), ["cnn/fold0-seed0", "linear/fold0-seed0"]);
        assert!(err.ends_with("run linear/fold1-seed0: exit status: 3; not started: linear/fold2-seed0"), "{err}");
        // Two: the worker left takes the rest of the queue; only the failed run is reported.
        let seen = std::cell::Cell::new(0);
        let err = train_in_workers(&worker(2), &runs, dirs, &cfg, |n| seen.set(seen.get().max(n + 1))).unwrap_err().to_string();
        let mut done = trained();
        done.sort();
        assert_eq!(done, ["cnn/fold0-seed0", "linear/fold0-seed0", "linear/fold2-seed0"]);
        assert!(err.ends_with("failed (their errors are printed above): run linear/fold1-seed0: exit status: 3"), "{err}");
        assert!(seen.get() > 0, "progress was reported");
        // Without the failing run every run is trained once, by two workers or by one.
        let good: Vec<&RunPlan> = runs.iter().copied().filter(|p| !p.id.contains("fold1")).collect();
        for jobs in [1, 2] {
            assert!(train_in_workers(&worker(jobs), &good, dirs, &cfg, |_| {}).is_ok());
            let mut done = trained();
            done.sort();
            assert_eq!(done, ["cnn/fold0-seed0", "linear/fold0-seed0", "linear/fold2-seed0"], "jobs = {jobs}");
        }
        let missing = Workers { jobs: 2, threads: 1, command: vec!["/nonexistent/genrelab".into()] };
        let err = train_in_workers(&missing, &runs, dirs, &cfg, |_| {}).unwrap_err().to_string();
        assert!(err.contains("starting a training worker (/nonexistent/genrelab)"), "{err}");
    }

    #[test]
    fn the_recipe_places_band_drop_at_the_configured_frequency_for_each_input() {
        let fc = FeatureConfig::default(); // 128 bands, 110 of them wholly below 7 kHz
        let cfg = TrainConfig { band_drop: 0.5, band_drop_hz: 7000.0, gain_db: 3.1, time_masks: 2, ..TrainConfig::default() };
        assert_eq!(cfg.recipe(Input::Crops, &fc, 128).band_drop_from, 110);
        // The study's models read 64 resized bands: the same frequency lies at 110 * 64 / 128.
        assert_eq!(cfg.recipe(Input::Clip, &fc, 64).band_drop_from, 55);
        let stats = cfg.recipe(Input::Stats, &fc, 1);
        assert_eq!((stats.band_drop, stats.band_drop_from, stats.gain, stats.time_masks), (0.0, 0, 0.0, 0));
        // Gain in input units: dB over the normalisation's deviation.
        assert!((cfg.recipe(Input::Clip, &fc, 64).gain - 3.1 / cfg.normalize_std).abs() < 1e-6);
        // Off: no cut-off recorded (so checkpoints without band drop stay as they were).
        let off = TrainConfig { band_drop: 0.0, ..cfg.clone() };
        assert_eq!(off.recipe(Input::Crops, &fc, 128).band_drop_from, 0);
        // Crop models' windows come from the config; other inputs have none.
        assert_eq!(cfg.recipe(Input::Crops, &fc, 128).window(), Some((128, 64)));
        assert_eq!(cfg.recipe(Input::Clip, &fc, 64).window(), None);
    }

    fn matrix(n: usize) -> FeatureMatrix {
        FeatureMatrix {
            meta: TableMeta::new("features"),
            track_ids: (0..n).map(|i| format!("t{i:02}")).collect(),
            genres: (0..n).map(|i| format!("g{}", i % 3)).collect(),
            n_mels: 1,
            n_frames: 1,
            values: vec![0.0; n],
        }
    }

    #[test]
    fn no_track_is_in_two_parts_of_any_run() {
        let f = matrix(30);
        let clips: Vec<(String, String)> = f.track_ids.iter().cloned().zip(f.genres.iter().cloned()).collect();
        let kfold = crate::split::stratified_kfold(&clips, 5, 1);
        let study = crate::split::with_validation(crate::split::stratified_holdout(&clips, 0.2, 1), 0.1 / 0.8, 1);
        for (protocol, split) in [("kfold", &kfold), ("study", &study)] {
            for select in [Select::Last, Select::BestValid] {
                let cfg = TrainConfig { models: vec!["resnet".into()], seeds: 1, select, ..TrainConfig::default() };
                let plans = plan_runs(&f, split, protocol, &cfg).unwrap();
                assert_eq!(plans.len(), if protocol == "kfold" { 5 } else { 1 });
                for p in &plans {
                    let mut all: Vec<usize> = p.train.iter().chain(&p.valid).chain(&p.test).copied().collect();
                    all.sort();
                    let n = all.len();
                    all.dedup();
                    assert_eq!(all.len(), n, "{protocol} {select:?} {}: a track in two parts", p.id);
                    // The study split's `valid` part is not trained on, even when nothing selects on it.
                    let expected = if protocol == "study" && select == Select::Last { 30 - 3 } else { 30 };
                    assert_eq!(n, expected, "{protocol} {select:?}: tracks used");
                    assert_eq!(p.valid.is_empty(), select == Select::Last, "{protocol}: validation only when selecting");
                }
            }
        }
        // Under k-fold every track is tested exactly once.
        let cfg = TrainConfig { models: vec!["linear".into()], seeds: 1, ..TrainConfig::default() };
        let mut tested: Vec<usize> = plan_runs(&f, &kfold, "kfold", &cfg).unwrap().into_iter().flat_map(|p| p.test).collect();
        tested.sort();
        assert_eq!(tested, (0..30).collect::<Vec<_>>());
    }

    #[test]
    fn per_model_overrides_apply_to_that_model_only() {
        let mut cfg = TrainConfig::default();
        cfg.model.insert("resnet".into(), serde_json::json!({"learning_rate": 0.001, "seeds": 1}));
        assert_eq!(cfg.for_model("resnet").unwrap().learning_rate, 0.001);
        assert_eq!(cfg.for_model("resnet").unwrap().seeds, 1);
        assert_eq!(cfg.for_model("linear").unwrap().learning_rate, 1e-4);
        cfg.model.insert("logreg".into(), serde_json::json!({"learnig_rate": 0.1}));
        assert!(cfg.for_model("logreg").unwrap_err().to_string().contains("learnig_rate"));
    }
}

//! `[train]`: the training configuration, per-model overrides, and the recipe it resolves to.

use super::*;

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
    pub(crate) fn bands(&self, model: &str, input: Input, fc: &FeatureConfig, inputs: &Inputs) -> Result<(usize, Option<f64>), StageError> {
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

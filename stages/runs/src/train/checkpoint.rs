//! A run's `checkpoint.json`: what rebuilds and feeds its model, and reading them back.

use super::*;

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
    /// A checkpoint written before `settings.units` existed: the gain and band it recorded in
    /// input units (its `settings.recipe` is read from the rest of its record, with `gain_db`
    /// derived and `band_drop_hz` unknown). See [`LegacyUnits`].
    #[serde(skip)]
    pub legacy_recipe: Option<LegacyUnits>,
}

/// What checkpoints recorded in input units before the configuration, the checkpoint and tune
/// shared one [`Recipe`] type: the random gain (dB over the normalisation's deviation) and the
/// band where band drop starts, in place of the configured `gain_db` and `band_drop_hz`, which
/// cannot be recovered from them. Such a run is the configured one when these equal the configured
/// recipe's [`InputUnits`] values and the rest of its identity matches; its checkpoint is then
/// rewritten in the current form.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LegacyUnits {
    pub gain: f32,
    pub band_drop_from: usize,
}

impl LegacyUnits {
    /// Whether `recipe` in `units` is what this record says.
    pub fn matches(&self, recipe: &Recipe, units: &InputUnits) -> bool {
        *self == LegacyUnits { gain: units.gain(recipe), band_drop_from: units.band_drop_from }
    }
}

/// What decides whether a finished run is kept rather than trained again: the model and its
/// input, the recipe and the data (`settings`), the classes, the features and, for descriptor
/// and crop models, the normalisation and band limit they were fitted with. Two checkpoints with
/// equal identities were trained the same way on the same data.
#[derive(Debug, PartialEq)]
pub struct RunIdentity<'a> {
    pub spec: &'a ModelSpec,
    pub input: Input,
    pub settings: &'a TrainSettings,
    pub labels: &'a [String],
    pub feature_config: &'a FeatureConfig,
    pub stats_mean: &'a [f32],
    pub max_hz: Option<f64>,
}

impl Checkpoint {
    /// A `checkpoint.json`, of the current form or the earlier one: without `settings.units`,
    /// epochs, learning rate and batch sizes beside the recipe, the recipe's defaults the study's
    /// whole-input ones, gain and band drop in input units ([`LegacyUnits`]).
    pub fn from_json(bytes: &[u8]) -> serde_json::Result<Checkpoint> {
        let mut v: serde_json::Value = serde_json::from_slice(bytes)?;
        let db_per_unit = v.get("normalize_std").and_then(|s| s.as_f64()).unwrap_or(1.0) as f32;
        let legacy = match v.get_mut("settings").and_then(|s| s.as_object_mut()) {
            Some(settings) if !settings.contains_key("units") => {
                // The earlier record over the defaults it was written with (a clip model's).
                let mut recipe = serde_json::to_value(Recipe::default().for_input(Input::Clip)).expect("recipe to json");
                let fields = recipe.as_object_mut().expect("an object");
                let old = settings.remove("recipe").unwrap_or_default();
                let moved = ["epochs", "learning_rate", "batch_size", "eval_batch_size"].map(|k| (k, settings.remove(k)));
                fields.extend(old.as_object().into_iter().flatten().map(|(k, v)| (k.clone(), v.clone())));
                fields.extend(moved.into_iter().filter_map(|(k, v)| Some((k.to_string(), v?))));
                let gain: f32 = fields.remove("gain").map(serde_json::from_value).transpose()?.unwrap_or(0.0);
                let band_drop_from: usize = fields.remove("band_drop_from").map(serde_json::from_value).transpose()?.unwrap_or(0);
                fields.insert("gain_db".into(), serde_json::json!(gain * db_per_unit));
                settings.insert("recipe".into(), recipe);
                let units = InputUnits { db_per_unit, band_drop_from };
                settings.insert("units".into(), serde_json::to_value(units).expect("units to json"));
                Some(LegacyUnits { gain, band_drop_from })
            }
            _ => None,
        };
        let mut c: Checkpoint = serde_json::from_value(v)?;
        c.legacy_recipe = legacy;
        Ok(c)
    }

    /// See [`RunIdentity`].
    pub fn identity(&self) -> RunIdentity<'_> {
        RunIdentity {
            spec: &self.spec,
            input: self.input,
            settings: &self.settings,
            labels: &self.labels,
            feature_config: &self.feature_config,
            stats_mean: &self.stats_mean,
            max_hz: self.max_hz,
        }
    }

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

pub(crate) fn clip_input() -> Input {
    Input::Clip
}

pub(crate) fn last_weights() -> String {
    genrelab_models::train::WEIGHTS.into()
}

pub const CHECKPOINT: &str = "checkpoint.json";

pub fn run_dir(train_dir: &Path, run: &str) -> PathBuf {
    train_dir.join(run)
}

/// Read every run's checkpoint under `train_dir`, sorted by run id.
pub fn read_checkpoints(train_dir: &Path) -> Result<Vec<(PathBuf, Checkpoint)>, StageError> {
    let mut out = vec![];
    for model_dir in std::fs::read_dir(train_dir).map_err(|e| StageError::io(train_dir, e))?.flatten() {
        for run in std::fs::read_dir(model_dir.path()).into_iter().flatten().flatten() {
            let p = run.path().join(CHECKPOINT);
            if let Ok(bytes) = std::fs::read(&p) {
                let c = Checkpoint::from_json(&bytes).map_err(|e| StageError::Source(format!("{}: {e}", p.display())))?;
                out.push((run.path(), c));
            }
        }
    }
    out.sort_by(|a, b| a.1.run.cmp(&b.1.run));
    Ok(out)
}

//! `[train]`: the training settings, the recipe (one `Recipe`, its keys flattened into `[train]`),
//! per-model overrides, and the recipe's units for a model's input.

use super::*;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrainConfig {
    /// Models from the registry (`genrelab models`).
    pub models: Vec<String>,
    /// Seeds per model: runs use seeds 0..seeds.
    pub seeds: usize,
    /// Inputs are normalised as (x - mean) / std: the study's fixed dataset-wide constants.
    /// (Descriptor models standardise each column with its training-part mean and deviation.)
    pub normalize_mean: f32,
    pub normalize_std: f32,
    /// Crop models: read only the mel bands that lie wholly below this frequency (Hz), so a
    /// prediction does not depend on what a source holds above it (a 16 kHz file, an MP3's
    /// low-pass, a resampler's roll-off). Unset = every band.
    pub max_hz: Option<f64>,
    /// The recipe (epochs, learning rate, batch size, augmentation, schedule, selection, crops),
    /// its keys directly under `[train]`.
    #[serde(flatten)]
    pub recipe: Recipe,
    /// Per-model overrides of any key above except `models`: `[train.model.resnet]`.
    pub model: BTreeMap<String, serde_json::Value>,
    /// Keys that are neither the recipe's nor the above (serde's `deny_unknown_fields` does not
    /// combine with `flatten`): [`TrainConfig::validate`] and [`TrainConfig::for_model`] refuse them.
    #[serde(flatten, skip_serializing)]
    pub unknown: BTreeMap<String, serde_json::Value>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            models: vec!["linear".into(), "simple_cnn".into(), "complex_cnn".into()],
            seeds: 5,
            normalize_mean: -42.88,
            normalize_std: 15.50,
            max_hz: None,
            recipe: Recipe::default(),
            model: BTreeMap::new(),
            unknown: BTreeMap::new(),
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
        let merged: TrainConfig = serde_json::from_value(base).map_err(|e| {
            let named = self.model.get(name).and_then(|over| recipe_value_error(&format!("[train.model.{name}]"), over));
            named.map_or_else(|| StageError::Config(format!("[train.model.{name}]: {e}")), |(_, e)| e)
        })?;
        match merged.unknown_key_in(&format!("[train.model.{name}]")) {
            Some((_, e)) => Err(e),
            None => Ok(merged),
        }
    }

    /// Why a `[train]` table (as JSON) does not deserialise when a recipe value is the cause:
    /// the key and the error naming it (serde's `flatten`, which puts the recipe's keys under
    /// `[train]`, reports a bad value without its key). None when every recipe value reads.
    pub fn recipe_error(train: &serde_json::Value) -> Option<(String, StageError)> {
        recipe_value_error("[train]", train)
    }

    /// The first key of `[train]` that is none of its own, and an error naming it with the
    /// keys there are.
    pub fn unknown_key(&self) -> Option<(String, StageError)> {
        self.unknown_key_in("[train]")
    }

    /// The first unknown key of this table (named `table` in the error), and the error.
    fn unknown_key_in(&self, table: &str) -> Option<(String, StageError)> {
        let key = self.unknown.keys().next()?;
        let known = serde_json::to_value(TrainConfig::default()).expect("config to json");
        let known: Vec<&str> = known.as_object().expect("an object").keys().map(String::as_str).collect();
        Some((key.clone(), StageError::Config(format!("{table}: unknown key `{key}`, expected one of {}", known.join(", ")))))
    }

    /// The epochs a run of `model` trains (0 when its `[train.model.<name>]` keys are invalid:
    /// [`TrainConfig::validate`] reports those).
    pub fn epochs_of(&self, model: &str) -> usize {
        self.for_model(model).map_or(0, |c| c.recipe.epochs)
    }

    /// Whether this model's recipe needs a validation part.
    pub fn needs_validation(&self) -> bool {
        self.recipe.needs_validation()
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

    /// `recipe`'s dB and Hz in the units of a model of input kind `input` reading `mels` bands
    /// of features made with `fc`. Descriptor models are not augmented and read standardised
    /// columns, not `normalize_std`: their units are the neutral ones, so that changing it leaves
    /// their runs current.
    pub fn units(&self, recipe: &Recipe, input: Input, fc: &FeatureConfig, mels: usize) -> InputUnits {
        let band_drop_from = match input {
            Input::Stats => return InputUnits::default(),
            _ if recipe.band_drop == 0.0 => 0,
            Input::Crops => fc.bands_below(recipe.band_drop_hz),
            // The study's models read the resized `out_mels` bands: the same frequency, scaled.
            Input::Clip => fc.bands_below(recipe.band_drop_hz) * mels / fc.n_mels,
        };
        InputUnits { db_per_unit: self.normalize_std, band_drop_from }
    }

    /// Check the models and every recipe, those of `[train.model.<name>]` tables for models not
    /// (yet) in `models` included, so a bad value is reported when the config is read.
    pub fn validate(&self) -> Result<(), StageError> {
        if self.models.is_empty() {
            return Err(StageError::Config("[train] needs at least one model".into()));
        }
        if let Some((_, e)) = self.unknown_key() {
            return Err(e);
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
            || self.recipe.epochs == 0
            || self.recipe.batch_size == 0
            || !positive(self.normalize_std as f64)
            || !positive(self.recipe.learning_rate)
        {
            return Err(StageError::Config(format!(
                "[train] (model {name}) needs seeds >= 1, epochs >= 1, batch_size >= 1, learning_rate > 0 and normalize_std > 0"
            )));
        }
        if !(0.0..=1.0).contains(&self.recipe.band_drop) || self.recipe.band_drop_hz.is_nan() || self.recipe.band_drop_hz <= 0.0 {
            return Err(StageError::Config(format!("[train] (model {name}): band_drop in [0, 1] and band_drop_hz > 0")));
        }
        let non_negative = |v: f64| v.is_finite() && v >= 0.0;
        if !(0.0..1.0).contains(&self.recipe.label_smoothing)
            || !non_negative(self.recipe.mixup_alpha as f64)
            || !non_negative(self.recipe.gain_db as f64)
            || !non_negative(self.recipe.weight_decay)
        {
            return Err(StageError::Config(format!(
                "[train] (model {name}): label_smoothing in [0, 1), mixup_alpha, gain_db, weight_decay >= 0"
            )));
        }
        Ok(())
    }
}

/// The first recipe key of `table` whose value does not read, and an error naming it.
fn recipe_value_error(name: &str, table: &serde_json::Value) -> Option<(String, StageError)> {
    let recipe_keys = serde_json::to_value(Recipe::default()).expect("recipe to json");
    table.as_object()?.iter().filter(|(k, _)| recipe_keys.get(k.as_str()).is_some()).find_map(|(k, v)| {
        let one = serde_json::json!({ k.as_str(): v });
        serde_json::from_value::<Recipe>(one).err().map(|e| (k.clone(), StageError::Config(format!("{name} {k}: {e}"))))
    })
}

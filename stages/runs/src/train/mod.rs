//! The train stage: every model of the configuration x every seed (x every fold under k-fold),
//! from the cached features and the split manifest.
//!
//! Each run trains in its own folder `train/<model>/<fold>-seed<k>/`, with a checkpoint every 10 s
//! or so of training and after its last epoch (a killed stage resumes each run from its last
//! checkpoint; `genrelab_models::train::CHECKPOINT_INTERVAL`) and `checkpoint.json`
//! beside the weights: the model spec, the feature configuration, the label names, the
//! normalisation and the training settings, so a checkpoint rebuilds and feeds its own model.
//! The per-epoch history of every run goes to the store's `history` table.
//!
//! One job per module: [`config`] (`[train]`, its recipe and their units), [`plan`] (which
//! runs, on which rows), [`inputs`] (tables to model inputs), [`checkpoint`] (the run's record),
//! [`workers`] (worker processes), [`folder`] (what the folder holds); this file runs the stage.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use genrelab_models::train::{Batchable, EpochRecord, InputUnits, Recipe, RunData, TrainSettings, train_run};
use genrelab_models::{Device, Input, ModelSpec, default_device, info};
use genrelab_store::tables::{Column, write_columns};
use genrelab_store::{FeatureMatrix, FloatTable, SplitRow, TableMeta, names, read_features, read_float_table, read_split};
use serde::{Deserialize, Serialize};

use crate::StageError;
use crate::features::feature_config_of;
use crate::logmel::FeatureConfig;
use crate::split::Protocol;

pub mod checkpoint;
pub mod config;
pub mod folder;
pub mod inputs;
pub mod plan;
pub mod workers;

pub use checkpoint::*;
pub use config::*;
pub use folder::*;
pub use inputs::*;
pub use plan::*;
pub use workers::*;

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
    x: [ModelInput; 3],
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
        let batch = |i: usize| x[i].with_labels(&y[i]);
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
        let recipe = mcfg.recipe.for_input(input);
        let units = mcfg.units(&recipe, input, &self.feature_config, mels);
        let model_frames = if input == Input::Crops { recipe.crop_frames.min(frames) } else { frames };
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
            settings: TrainSettings { seed: plan.seed, data: String::new(), recipe, units },
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
            legacy_recipe: None,
        };
        let x = [batch(&ckpt, inputs, &plan.train)?, batch(&ckpt, inputs, &plan.valid)?, batch(&ckpt, inputs, &plan.test)?];
        let ys = |rows: &[usize]| rows.iter().map(|&r| self.y_all[r]).collect::<Vec<usize>>();
        let y = [ys(&plan.train), ys(&plan.valid), ys(&plan.test)];
        // Without a validation part the fingerprint is that of (train, test), as train stage v2
        // computed it: identical runs of the study's recipe are recognised and kept.
        ckpt.settings.data = if plan.valid.is_empty() {
            data_hash(&[&x[0].x, &x[2].x], &[&y[0], &y[2]])
        } else {
            data_hash(&[&x[0].x, &x[1].x, &x[2].x], &[&y[0], &y[1], &y[2]])
        };
        let dir = run_dir(self.train_dir, &plan.id);
        let done = std::fs::read(dir.join(CHECKPOINT))
            .ok()
            .and_then(|b| Checkpoint::from_json(&b).ok())
            .and_then(|c| upgraded(c, &ckpt, &dir))
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
                    && c.identity() == ckpt.identity()
            })
            .map(|c| c.history);
        Ok(Prepared { ckpt, epochs: mcfg.recipe.epochs, x, y, done })
    }
}

/// A checkpoint of the earlier form (see [`LegacyUnits`]) whose recipe record is the one the
/// configured run `planned` would have written, in the current form (rewritten in place; the run
/// is not trained again); None when its record differs. Other checkpoints as they are.
fn upgraded(mut c: Checkpoint, planned: &Checkpoint, dir: &Path) -> Option<Checkpoint> {
    let Some(old) = c.legacy_recipe.take() else { return Some(c) };
    if !old.matches(&planned.settings.recipe, &planned.settings.units) {
        return None;
    }
    // What the earlier form did not record: the configured dB and Hz behind its gain and band
    // (every other recipe value was read from the record, and the identity compares them).
    c.settings.recipe.gain_db = planned.settings.recipe.gain_db;
    c.settings.recipe.band_drop_hz = planned.settings.recipe.band_drop_hz;
    c.settings.units = planned.settings.units;
    if c.identity() == planned.identity() {
        tracing::info!(run = %c.run, "checkpoint rewritten in the current form (recipe in configured units)");
        let _ = genrelab_store::atomic::write_atomic(dir.join(CHECKPOINT), &serde_json::to_vec_pretty(&c).expect("json"));
    }
    Some(c)
}

/// A row of the `history` table: one epoch of one run.
struct HistoryRow<'a> {
    plan: &'a RunPlan,
    epoch: EpochRecord,
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
    let mut hist: Vec<HistoryRow> = vec![];
    for plan in &plans {
        let history = match known.remove(plan.id.as_str()) {
            Some(history) => {
                bar.inc(cfg.epochs_of(&plan.model) as u64);
                history
            }
            None => ctx.train_plan(plan, device, |n| bar.inc(n))?,
        };
        hist.extend(history.into_iter().map(|epoch| HistoryRow { plan, epoch }));
    }
    bar.finish_and_clear();

    let protocol = &ctx.protocol;
    let seconds: f64 = hist.iter().map(|h| h.epoch.seconds).sum();
    let summary = serde_json::json!({"runs": plans.len(), "protocol": protocol, "train_seconds": seconds});
    let Some(history) = opts.history else {
        return Ok(summary);
    };
    let opt = |f: fn(&EpochRecord) -> Option<f64>| Column::Float(hist.iter().map(|h| f(&h.epoch).unwrap_or(f64::NAN)).collect());
    write_columns(
        history,
        &TableMeta::new("history").with("protocol", protocol),
        vec![
            ("run", Column::Str(hist.iter().map(|h| h.plan.id.clone()).collect())),
            ("model", Column::Str(hist.iter().map(|h| h.plan.model.clone()).collect())),
            ("seed", Column::Int(hist.iter().map(|h| h.plan.seed as i64).collect())),
            ("fold", Column::OptInt(hist.iter().map(|h| h.plan.fold.map(i64::from)).collect())),
            ("epoch", Column::Int(hist.iter().map(|h| h.epoch.epoch as i64).collect())),
            ("train_loss", Column::Float(hist.iter().map(|h| h.epoch.train_loss).collect())),
            ("train_acc", Column::Float(hist.iter().map(|h| h.epoch.train_acc).collect())),
            ("valid_loss", opt(|r| r.valid_loss)),
            ("valid_acc", opt(|r| r.valid_acc)),
            ("test_loss", Column::Float(hist.iter().map(|h| h.epoch.test_loss).collect())),
            ("test_acc", Column::Float(hist.iter().map(|h| h.epoch.test_acc).collect())),
            ("learning_rate", opt(|r| r.learning_rate)),
            ("seconds", Column::Float(hist.iter().map(|h| h.epoch.seconds).collect())),
        ],
    )?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use genrelab_models::train::Select;

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
        let mut cfg = TrainConfig { recipe: Recipe { epochs: 2, ..Recipe::default() }, ..TrainConfig::default() };
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
        let recipe = Recipe { band_drop: 0.5, band_drop_hz: 7000.0, gain_db: 3.1, time_masks: 2, ..Recipe::default() };
        let cfg = TrainConfig { recipe, ..TrainConfig::default() };
        // A recipe resolved for an input kind, and its units.
        let resolved = |input: Input, mels: usize| {
            let r = cfg.recipe.for_input(input);
            let u = cfg.units(&r, input, &fc, mels);
            (r, u)
        };
        assert_eq!(resolved(Input::Crops, 128).1.band_drop_from, 110);
        // The study's models read 64 resized bands: the same frequency lies at 110 * 64 / 128.
        assert_eq!(resolved(Input::Clip, 64).1.band_drop_from, 55);
        let (stats, units) = resolved(Input::Stats, 1);
        assert_eq!((stats.band_drop, units.band_drop_from, units.gain(&stats), stats.time_masks), (0.0, 0, 0.0, 0));
        assert_eq!(units, InputUnits::default(), "descriptor runs do not depend on normalize_std");
        // Gain in input units: dB over the normalisation's deviation.
        let (clip, units) = resolved(Input::Clip, 64);
        assert!((units.gain(&clip) - 3.1 / cfg.normalize_std).abs() < 1e-6);
        // Off: no cut-off recorded (so checkpoints without band drop stay as they were).
        let off = TrainConfig { recipe: Recipe { band_drop: 0.0, ..cfg.recipe.clone() }, ..cfg.clone() };
        assert_eq!(off.units(&off.recipe.for_input(Input::Crops), Input::Crops, &fc, 128).band_drop_from, 0);
        // Crop models' windows come from the config; other inputs have none.
        assert_eq!(resolved(Input::Crops, 128).0.window(), Some((128, 64)));
        assert_eq!(resolved(Input::Clip, 64).0.window(), None);
    }

    /// A checkpoint as train stage versions before the one recipe type wrote it (recipe resolved
    /// to input units, no `settings.units`), with `recipe` as its recipe record.
    fn legacy_checkpoint(recipe: &str) -> String {
        format!(
            r#"{{"run": "resnet/seed0", "spec": {{"name": "resnet", "mels": 128, "frames": 16, "classes": 10}}, "seed": 0, "fold": null,
            "labels": ["a", "b"], "feature_config": {{"sample_rate": 22050, "n_fft": 2048, "hop_length": 512, "n_mels": 128, "fmin": 0.0,
            "fmax": null, "top_db": 80.0, "frames": 1291, "pad_db": 0.0, "out_mels": 64, "out_frames": 100, "resize": "antialiased"}},
            "normalize_mean": -42.88, "normalize_std": 15.5, "settings": {{"epochs": 1, "learning_rate": 0.0001, "batch_size": 128,
            "eval_batch_size": 64, "seed": 0, "data": "da496af2701a2c82"{recipe}}}, "protocol": "study", "history": [{{"epoch": 1,
            "train_loss": 2.4, "train_acc": 0.1, "test_loss": 2.2, "test_acc": 0.2, "seconds": 0.05, "valid_loss": null, "valid_acc": null,
            "learning_rate": 0.0001}}], "input": "crops", "stats_mean": [], "stats_std": [], "weights": "model.safetensors",
            "weights_blake3": "", "selected_epoch": 1, "stopped_early": false, "valid_clips": 0, "max_hz": null, "trained_on": "CPU"}}"#
        )
    }

    #[test]
    fn checkpoints_of_the_earlier_recipe_form_are_read_and_kept_when_they_match() {
        let fc = FeatureConfig::default();
        let cfg = TrainConfig {
            recipe: Recipe {
                epochs: 1,
                gain_db: 3.0,
                band_drop: 0.5,
                band_drop_hz: 7000.0,
                crop_frames: 16,
                window_hop: 8,
                ..Recipe::default()
            },
            ..TrainConfig::default()
        };
        // What the earlier form recorded for this configuration: gain 3 / 15.5 in input units
        // (an f32, written as serde_json writes one), band drop from band 110 (7 kHz).
        let gain = 3.0f32 / 15.5;
        let old = legacy_checkpoint(&format!(
            r#", "recipe": {{"weight_decay": 0.0, "label_smoothing": 0.0, "mixup_alpha": 0.0, "gain": {gain}, "time_masks": 0,
            "time_mask_width": 0, "freq_masks": 0, "freq_mask_width": 0, "band_drop": 0.5, "band_drop_from": 110, "schedule": "constant",
            "warmup_epochs": 0, "patience": null, "select": "last", "crop_frames": 16, "crops_per_epoch": 1, "window_hop": 8}}"#
        ));
        let c = Checkpoint::from_json(old.as_bytes()).unwrap();
        assert!(c.legacy_recipe.is_some());
        assert_eq!(c.test_window(None), Some((16, 8)), "evaluate reads its windows as before");
        let planned_by = |cfg: &TrainConfig| {
            let recipe = cfg.recipe.for_input(Input::Crops);
            let units = cfg.units(&recipe, Input::Crops, &fc, 128);
            Checkpoint { settings: TrainSettings { recipe, units, ..c.settings.clone() }, legacy_recipe: None, ..c.clone() }
        };
        let planned = planned_by(&cfg);
        let dir = tempfile::tempdir().unwrap();
        let kept = upgraded(c.clone(), &planned, dir.path()).expect("the same recipe");
        assert_eq!(kept.identity(), planned.identity(), "kept, not trained again");
        let rewritten = Checkpoint::from_json(&std::fs::read(dir.path().join(CHECKPOINT)).unwrap()).unwrap();
        assert_eq!((rewritten.legacy_recipe, rewritten.settings), (None, planned.settings.clone()), "rewritten in the current form");
        // Another gain, band drop from another band, other epochs: not the run configured.
        for other in [
            Recipe { gain_db: 3.5, ..cfg.recipe.clone() },
            Recipe { band_drop_hz: 3000.0, ..cfg.recipe.clone() },
            Recipe { epochs: 2, ..cfg.recipe.clone() },
        ] {
            let planned = planned_by(&TrainConfig { recipe: other, ..cfg.clone() });
            let dir = tempfile::tempdir().unwrap();
            let kept = upgraded(c.clone(), &planned, dir.path());
            assert!(kept.is_none_or(|k| k.identity() != planned.identity()), "{:?}", planned.settings.recipe);
            assert!(!dir.path().join(CHECKPOINT).exists(), "left as it was");
        }
        // The earliest checkpoints had no recipe at all: the study's, whole inputs.
        let bare = Checkpoint::from_json(legacy_checkpoint("").as_bytes()).unwrap();
        assert_eq!((bare.test_window(None), bare.settings.recipe.gain_db), (None, 0.0));
        // A checkpoint of the current form is read as written.
        let current = serde_json::to_vec(&planned).unwrap();
        assert_eq!(Checkpoint::from_json(&current).unwrap(), planned);
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
                let cfg = TrainConfig {
                    models: vec!["resnet".into()],
                    seeds: 1,
                    recipe: Recipe { select, ..Recipe::default() },
                    ..TrainConfig::default()
                };
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
        assert_eq!(cfg.for_model("resnet").unwrap().recipe.learning_rate, 0.001);
        assert_eq!(cfg.for_model("resnet").unwrap().seeds, 1);
        assert_eq!(cfg.for_model("linear").unwrap().recipe.learning_rate, 1e-4);
        cfg.model.insert("logreg".into(), serde_json::json!({"learnig_rate": 0.1}));
        assert!(cfg.for_model("logreg").unwrap_err().to_string().contains("learnig_rate"));
    }
}

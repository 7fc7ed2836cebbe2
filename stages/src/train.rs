//! The train stage: every model of the configuration x every seed (x every fold under k-fold),
//! from the cached features and the split manifest.
//!
//! Each run trains in its own folder `train/<model>/<fold>-seed<k>/`, with a checkpoint after every
//! epoch (a killed stage resumes each run from its last completed epoch) and `checkpoint.json`
//! beside the weights: the model spec, the feature configuration, the label names, the
//! normalisation and the training settings, so a checkpoint rebuilds and feeds its own model.
//! The per-epoch history of every run goes to the store's `history` table.

use std::path::{Path, PathBuf};

use genrelab_models::train::{Batchable, EpochRecord, TrainSettings, train_run};
use genrelab_models::{ModelSpec, default_device};
use genrelab_store::tables::{Column, write_columns};
use genrelab_store::{FeatureMatrix, SplitRow, TableMeta, names, read_features, read_split};
use serde::{Deserialize, Serialize};

use crate::StageError;
use crate::features::feature_config_of;
use crate::logmel::FeatureConfig;

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
    pub normalize_mean: f32,
    pub normalize_std: f32,
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
        }
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
    pub settings: TrainSettings,
    /// The protocol of the split the run was trained on.
    pub protocol: String,
    pub history: Vec<EpochRecord>,
}

pub const CHECKPOINT: &str = "checkpoint.json";

/// One run: which model, which seed, which fold, which rows train and test.
pub struct RunPlan {
    pub id: String,
    pub model: String,
    pub seed: u64,
    pub fold: Option<i32>,
    pub train: Vec<usize>,
    pub test: Vec<usize>,
}

/// Rows of the feature matrix that a run tests on: fold `f` under k-fold, else the `test` part.
pub fn test_rows(features: &FeatureMatrix, split: &[SplitRow], fold: Option<i32>) -> Vec<usize> {
    rows_where(features, split, |r| match fold {
        Some(f) => r.fold == Some(f),
        None => r.part.as_deref() == Some("test"),
    })
}

/// Rows that a run trains on: every other fold under k-fold, else the `train` part.
pub fn train_rows(features: &FeatureMatrix, split: &[SplitRow], fold: Option<i32>) -> Vec<usize> {
    rows_where(features, split, |r| match fold {
        Some(f) => r.fold.is_some_and(|x| x != f),
        None => r.part.as_deref() == Some("train"),
    })
}

fn rows_where(features: &FeatureMatrix, split: &[SplitRow], pred: impl Fn(&SplitRow) -> bool) -> Vec<usize> {
    let index: std::collections::HashMap<&str, usize> =
        features.track_ids.iter().enumerate().map(|(i, id)| (id.as_str(), i)).collect();
    split.iter().filter(|r| pred(r)).filter_map(|r| index.get(r.track_id.as_str()).copied()).collect()
}

/// The train / test rows of every run the split and the config call for.
pub fn plan_runs(features: &FeatureMatrix, split: &[SplitRow], protocol: &str, cfg: &TrainConfig) -> Result<Vec<RunPlan>, StageError> {
    let folds: Vec<Option<i32>> = if protocol == "kfold" {
        let mut folds: Vec<i32> = split.iter().filter_map(|r| r.fold).collect();
        folds.sort();
        folds.dedup();
        folds.into_iter().map(Some).collect()
    } else {
        vec![None]
    };
    let parts: Vec<(Option<i32>, Vec<usize>, Vec<usize>)> =
        folds.into_iter().map(|f| (f, train_rows(features, split, f), test_rows(features, split, f))).collect();
    let mut plans = vec![];
    for model in &cfg.models {
        for (fold, train, test) in &parts {
            if train.is_empty() {
                return Err(StageError::Failed(format!("the split gives run {model} no training clips")));
            }
            for seed in 0..cfg.seeds as u64 {
                let fold_part = fold.map_or(String::new(), |f| format!("fold{f}-"));
                plans.push(RunPlan {
                    id: format!("{model}/{fold_part}seed{seed}"),
                    model: model.clone(),
                    seed,
                    fold: *fold,
                    train: train.clone(),
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

/// The normalised input rows `rows` of a feature matrix, concatenated.
pub fn gather(features: &FeatureMatrix, rows: &[usize], mean: f32, std: f32) -> Vec<f32> {
    let mut out = Vec::with_capacity(rows.len() * features.n_mels * features.n_frames);
    for &r in rows {
        out.extend(features.row(r).iter().map(|v| (v - mean) / std));
    }
    out
}

pub fn run_dir(train_dir: &Path, run: &str) -> PathBuf {
    train_dir.join(run)
}

/// Fingerprint of a run's inputs (normalised values and labels of both parts).
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
pub fn train(store_dir: &Path, train_dir: &Path, cfg: &TrainConfig, fresh: bool) -> Result<serde_json::Value, StageError> {
    if fresh && train_dir.exists() {
        std::fs::remove_dir_all(train_dir).map_err(|e| StageError::io(train_dir, e))?;
    }
    if cfg.models.is_empty() || cfg.seeds == 0 || cfg.epochs == 0 || cfg.batch_size == 0 || cfg.normalize_std <= 0.0 {
        return Err(StageError::Config("[train] needs models, seeds >= 1, epochs >= 1, batch_size >= 1 and normalize_std > 0".into()));
    }
    let features = read_features(&store_dir.join(names::FEATURES))?;
    let feature_config = feature_config_of(&features.meta)?;
    let (split_meta, split) = read_split(&store_dir.join(names::SPLIT))?;
    let protocol = split_meta.get("protocol").unwrap_or("study").to_string();
    let (labels, y_all) = labels_of(&features);
    let plans = plan_runs(&features, &split, &protocol, cfg)?;
    let device = default_device();

    // Runs of models that are no longer configured are removed, so the folder holds this config's runs only.
    let wanted: std::collections::HashSet<&str> = plans.iter().map(|p| p.id.as_str()).collect();
    remove_unplanned(train_dir, &wanted);

    let bar = crate::progress::bar((plans.len() * cfg.epochs) as u64, "train");
    let mut hist: Vec<(String, String, u64, Option<i32>, EpochRecord)> = vec![];
    for plan in &plans {
        let span = tracing::info_span!("run", run = %plan.id);
        let _enter = span.enter();
        let spec = ModelSpec { name: plan.model.clone(), mels: features.n_mels, frames: features.n_frames, classes: labels.len() };
        let xs_train = gather(&features, &plan.train, cfg.normalize_mean, cfg.normalize_std);
        let ys_train: Vec<usize> = plan.train.iter().map(|&r| y_all[r]).collect();
        let xs_test = gather(&features, &plan.test, cfg.normalize_mean, cfg.normalize_std);
        let ys_test: Vec<usize> = plan.test.iter().map(|&r| y_all[r]).collect();
        let settings = TrainSettings {
            epochs: cfg.epochs,
            learning_rate: cfg.learning_rate,
            batch_size: cfg.batch_size,
            eval_batch_size: cfg.eval_batch_size,
            seed: plan.seed,
            data: data_hash(&[&xs_train, &xs_test], &[&ys_train, &ys_test]),
        };
        let dir = run_dir(train_dir, &plan.id);
        let ckpt_path = dir.join(CHECKPOINT);
        let done = std::fs::read(&ckpt_path).ok().and_then(|b| serde_json::from_slice::<Checkpoint>(&b).ok());
        let history = match done {
            Some(c) if c.spec == spec && c.settings == settings && c.labels == labels && c.feature_config == feature_config && c.history.len() == cfg.epochs => {
                bar.inc(cfg.epochs as u64);
                c.history
            }
            _ => {
                let (_, history) = train_run(
                    &spec,
                    &settings,
                    Batchable { x: &xs_train, y: &ys_train, mels: spec.mels, frames: spec.frames },
                    Batchable { x: &xs_test, y: &ys_test, mels: spec.mels, frames: spec.frames },
                    &device,
                    &dir,
                    |r| {
                        bar.inc(1);
                        tracing::debug!(epoch = r.epoch, train_loss = r.train_loss, test_acc = r.test_acc, "epoch");
                    },
                )
                .map_err(|e| StageError::Failed(format!("run {}: {e}", plan.id)))?;
                let last = history.last().expect("at least one epoch");
                tracing::info!(train_acc = format!("{:.3}", last.train_acc), test_acc = format!("{:.3}", last.test_acc), "trained");
                let ckpt = Checkpoint {
                    run: plan.id.clone(),
                    spec: spec.clone(),
                    seed: plan.seed,
                    fold: plan.fold,
                    labels: labels.clone(),
                    feature_config: feature_config.clone(),
                    normalize_mean: cfg.normalize_mean,
                    normalize_std: cfg.normalize_std,
                    settings,
                    protocol: protocol.clone(),
                    history: history.clone(),
                };
                genrelab_store::atomic::write_atomic(&ckpt_path, &serde_json::to_vec_pretty(&ckpt).expect("json"))?;
                history
            }
        };
        hist.extend(history.into_iter().map(|r| (plan.id.clone(), plan.model.clone(), plan.seed, plan.fold, r)));
    }
    bar.finish_and_clear();

    write_columns(
        &store_dir.join("history.parquet"),
        &TableMeta::new("history").with("protocol", &protocol),
        vec![
            ("run", Column::Str(hist.iter().map(|h| h.0.clone()).collect())),
            ("model", Column::Str(hist.iter().map(|h| h.1.clone()).collect())),
            ("seed", Column::Int(hist.iter().map(|h| h.2 as i64).collect())),
            ("fold", Column::OptInt(hist.iter().map(|h| h.3.map(i64::from)).collect())),
            ("epoch", Column::Int(hist.iter().map(|h| h.4.epoch as i64).collect())),
            ("train_loss", Column::Float(hist.iter().map(|h| h.4.train_loss).collect())),
            ("train_acc", Column::Float(hist.iter().map(|h| h.4.train_acc).collect())),
            ("test_loss", Column::Float(hist.iter().map(|h| h.4.test_loss).collect())),
            ("test_acc", Column::Float(hist.iter().map(|h| h.4.test_acc).collect())),
            ("seconds", Column::Float(hist.iter().map(|h| h.4.seconds).collect())),
        ],
    )?;
    let seconds: f64 = hist.iter().map(|h| h.4.seconds).sum();
    Ok(serde_json::json!({"runs": plans.len(), "epochs": cfg.epochs, "protocol": protocol, "train_seconds": seconds}))
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

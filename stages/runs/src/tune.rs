//! `genrelab tune`: a search over a declared space of training settings for one model, scored on
//! validation parts only.
//!
//! The space (`[tune.space]`) maps any `[train]` key to a list of values; trials are drawn from
//! their grid without repetition, in a seeded order. Every trial trains the model with those
//! values, `select = "best_valid"` (unless the space sets it) and `tune.seeds` seeds, on every fold
//! of the split (or the first `tune.folds` of them), under `<workdir>/tune/<trial>/` - a trial is
//! named by the hash of its values, so a rerun (or a killed search) reuses finished trials and
//! resumes unfinished runs. Its score is the mean, over its runs, of the validation loss and
//! accuracy at the selected epoch; test figures are never read. Trials go to the store's `tune`
//! table, best first.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use genrelab_store::tables::{Column, write_columns};
use genrelab_store::{TableMeta, names};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::StageError;
use crate::split::Protocol;
use crate::train::{Inputs, Only, TrainConfig, TrainOptions, Workers, folds_of, in_folds, read_checkpoints, train_with};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TuneConfig {
    /// The model to tune (from the registry).
    pub model: String,
    /// Trials to run (at most the size of the grid).
    pub trials: usize,
    /// Order in which the grid is visited.
    pub seed: u64,
    /// Seeds per trial (and fold).
    pub seeds: usize,
    /// k-fold splits: score trials on the first `folds` folds only (each run validating on the
    /// next fold, as in training), to tune an expensive model for a fraction of the cost; 0 =
    /// every fold. Raising it later reuses the runs already trained.
    pub folds: usize,
    /// `[train]` key -> candidate values.
    pub space: BTreeMap<String, Vec<Value>>,
}

impl Default for TuneConfig {
    fn default() -> Self {
        TuneConfig { model: "resnet".into(), trials: 8, seed: 0, seeds: 1, folds: 0, space: BTreeMap::new() }
    }
}

/// One trial's values and validation figures.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Trial {
    pub trial: String,
    pub params: BTreeMap<String, Value>,
    pub runs: usize,
    pub valid_loss: f64,
    pub valid_acc: f64,
    pub mean_epoch: f64,
    pub seconds: f64,
}

/// Every point of the grid, in a seeded order.
pub fn grid(space: &BTreeMap<String, Vec<Value>>, seed: u64) -> Vec<BTreeMap<String, Value>> {
    let mut points = vec![BTreeMap::new()];
    for (k, values) in space {
        points = points
            .into_iter()
            .flat_map(|p| {
                values.iter().map(move |v| {
                    let mut q = p.clone();
                    q.insert(k.clone(), v.clone());
                    q
                })
            })
            .collect();
    }
    let mut rng = crate::synthetic::Rng::new(seed);
    for i in (1..points.len()).rev() {
        points.swap(i, rng.below(i + 1));
    }
    points
}

fn trial_id(params: &BTreeMap<String, Value>) -> String {
    let text = serde_json::to_string(params).expect("json");
    format!("trial-{}", &blake3::hash(text.as_bytes()).to_hex()[..10])
}

/// Run the search. Returns the trials, best (lowest validation loss) first.
pub fn tune(
    store_dir: &Path,
    tune_dir: &Path,
    train: &TrainConfig,
    cfg: &TuneConfig,
    workers: Option<Workers>,
) -> Result<Vec<Trial>, StageError> {
    if cfg.space.is_empty() || cfg.space.values().any(Vec::is_empty) {
        return Err(StageError::Config("[tune.space] needs at least one key, each with at least one value".into()));
    }
    if cfg.trials == 0 || cfg.seeds == 0 {
        return Err(StageError::Config("[tune] needs trials >= 1 and seeds >= 1".into()));
    }
    for k in cfg.space.keys() {
        if k == "models" || k == "model" {
            return Err(StageError::Config(format!("[tune.space] cannot vary `{k}`")));
        }
    }
    genrelab_models::info(&cfg.model).map_err(|e| StageError::Config(e.to_string()))?;
    let folds: Option<Vec<i32>> = match cfg.folds {
        0 => None,
        n => {
            let (meta, split) = genrelab_store::read_split(&store_dir.join(genrelab_store::names::SPLIT))?;
            let all = folds_of(&split);
            let kfold = Protocol::parse(meta.get("protocol").unwrap_or("study")) == Some(Protocol::Kfold);
            if !kfold || n > all.len() {
                return Err(StageError::Config(format!(
                    "[tune] folds = {n}: needs a k-fold split with at least that many folds (this split: {} with {} folds)",
                    meta.get("protocol").unwrap_or("study"),
                    all.len()
                )));
            }
            Some(all[..n].to_vec())
        }
    };
    let points: Vec<_> = grid(&cfg.space, cfg.seed).into_iter().take(cfg.trials).collect();
    // The feature tables are read once for every trial.
    let inputs = Inputs::read(store_dir, &[genrelab_models::info(&cfg.model).map_err(|e| StageError::Config(e.to_string()))?.input])?;
    let mut trials = vec![];
    for (i, params) in points.iter().enumerate() {
        let id = trial_id(params);
        let span = tracing::info_span!("trial", n = i + 1, of = points.len(), trial = %id);
        let _enter = span.enter();
        let mut over = train.model.get(&cfg.model).and_then(Value::as_object).cloned().unwrap_or_default();
        over.insert("seeds".into(), Value::from(cfg.seeds));
        over.entry("select").or_insert_with(|| Value::from("best_valid"));
        for (k, v) in params {
            over.insert(k.clone(), v.clone());
        }
        let mut tc = train.clone();
        tc.models = vec![cfg.model.clone()];
        tc.model = BTreeMap::from([(cfg.model.clone(), Value::Object(over))]);
        let dir = tune_dir.join(&id);
        let start = Instant::now();
        let only = folds.as_deref().map_or(Only::All, Only::Folds);
        train_with(&inputs, store_dir, &dir, &tc, &TrainOptions { only, workers: workers.clone(), ..Default::default() })?;
        std::fs::write(dir.join("params.json"), serde_json::to_vec_pretty(params).expect("json")).map_err(|e| StageError::io(&dir, e))?;
        let mut ckpts = read_checkpoints(&dir)?;
        ckpts.retain(|(_, c)| in_folds(folds.as_deref(), c.fold));
        let sel: Vec<_> = ckpts.iter().filter_map(|(_, c)| c.selected().map(|r| (r.valid_loss, r.valid_acc, c.selected_epoch))).collect();
        let n = sel.len().max(1) as f64;
        let trial = Trial {
            trial: id,
            params: params.clone(),
            runs: sel.len(),
            valid_loss: sel.iter().map(|s| s.0.unwrap_or(f64::NAN)).sum::<f64>() / n,
            valid_acc: sel.iter().map(|s| s.1.unwrap_or(f64::NAN)).sum::<f64>() / n,
            mean_epoch: sel.iter().map(|s| s.2 as f64).sum::<f64>() / n,
            seconds: start.elapsed().as_secs_f64(),
        };
        tracing::info!(valid_loss = format!("{:.4}", trial.valid_loss), valid_acc = format!("{:.3}", trial.valid_acc), "trial done");
        trials.push(trial);
    }
    trials.sort_by(|a, b| a.valid_loss.total_cmp(&b.valid_loss));
    write_columns(
        &store_dir.join(names::TUNE),
        &TableMeta::new("tune").with("model", &cfg.model).with("metric", "valid_loss"),
        vec![
            ("trial", Column::Str(trials.iter().map(|t| t.trial.clone()).collect())),
            ("model", Column::Str(trials.iter().map(|_| cfg.model.clone()).collect())),
            ("params", Column::Str(trials.iter().map(|t| serde_json::to_string(&t.params).expect("json")).collect())),
            ("runs", Column::Int(trials.iter().map(|t| t.runs as i64).collect())),
            ("valid_loss", Column::Float(trials.iter().map(|t| t.valid_loss).collect())),
            ("valid_acc", Column::Float(trials.iter().map(|t| t.valid_acc).collect())),
            ("mean_epoch", Column::Float(trials.iter().map(|t| t.mean_epoch).collect())),
            ("seconds", Column::Float(trials.iter().map(|t| t.seconds).collect())),
        ],
    )?;
    Ok(trials)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grid_is_every_combination_once_in_a_seeded_order() {
        let space = BTreeMap::from([
            ("learning_rate".to_string(), vec![Value::from(0.1), Value::from(0.01), Value::from(0.001)]),
            ("mixup_alpha".to_string(), vec![Value::from(0.0), Value::from(0.2)]),
        ]);
        let g = grid(&space, 1);
        assert_eq!(g.len(), 6);
        let mut ids: Vec<String> = g.iter().map(trial_id).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 6);
        assert_eq!(g, grid(&space, 1));
        assert_ne!(g, grid(&space, 2));
    }
}

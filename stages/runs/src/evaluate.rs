//! The evaluate stage: every trained run scored on its test part, summaries across seeds (and
//! folds), the study's table side by side, and a report for people.
//!
//! Writes the store tables `metrics` (one row per run), `per_genre` (per run and genre) and
//! `predictions` (per run and test clip), and the report folder: `metrics.json`, `report.md`,
//! `report.html`, training curves and confusion matrices as SVG.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;

use genrelab_models::default_device;
use genrelab_models::train::{evaluate as score_model, predict_proba};
use std::io::Write as _;

use genrelab_store::atomic::Staged;
use genrelab_store::tables::{Column, write_columns_staged};
use genrelab_store::{TableMeta, names, read_split};
use serde::{Deserialize, Serialize};

use crate::StageError;
use crate::metrics::{Scores, Summary, add_confusion, argmax, scores, summarize};
use crate::plots::{PALETTE, Series, confusion_chart, line_chart};
use crate::train::{Checkpoint, Inputs, ModelInput, batch, labels_of, read_checkpoints, test_rows, valid_rows};

/// The study's single-run figures (its report, table of results at epoch 150).
pub const STUDY: [(&str, usize, f64, f64); 3] =
    [("linear", 64_010, 0.9825, 0.505), ("simple_cnn", 15_610, 0.6521, 0.545), ("complex_cnn", 59_114, 0.9562, 0.625)];

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunResult {
    pub run: String,
    pub model: String,
    pub seed: u64,
    pub fold: Option<i32>,
    pub test_clips: usize,
    /// Training accuracy of the last epoch (running average, dropout on), as the study reported.
    pub train_acc: f64,
    pub test_loss: f64,
    pub scores: Scores,
    /// Wall time of the run's training (every epoch, its validation and test scoring included).
    #[serde(default)]
    pub train_seconds: f64,
    /// The run scored on its validation part with the selected weights and the evaluation's
    /// test windows (what a choice of evaluation settings may look at): clips, accuracy and mean
    /// cross-entropy. None for runs without a validation part.
    #[serde(default)]
    pub valid: Option<ValidScore>,
}

/// A run's score on its validation part.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ValidScore {
    pub clips: usize,
    pub accuracy: f64,
    pub loss: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelSummary {
    pub model: String,
    pub parameters: usize,
    pub runs: usize,
    pub train_acc: Summary,
    pub accuracy: Summary,
    pub balanced_accuracy: Summary,
    pub macro_f1: Summary,
    /// The study's figures for this model, when it has them.
    pub study_train_acc: Option<f64>,
    pub study_test_acc: Option<f64>,
    /// Confusion matrix summed over runs.
    pub confusion: Vec<Vec<usize>>,
    /// Epochs trained (configured) and how the weights were chosen.
    #[serde(default)]
    pub epochs: usize,
    #[serde(default)]
    pub selection: String,
    /// The model's seeds averaged (each test clip's probabilities averaged over the runs of its
    /// fold or split), what `predict` runs: an ensemble of one member, scored on each test part
    /// like the ensembles across models (accuracy, balanced accuracy, macro-F1 mean +- std over
    /// the parts, confusion summed). None with one seed.
    #[serde(default)]
    pub seeds_averaged: Option<EnsembleSummary>,
    /// Mean training wall time of a run (one seed on one fold or split).
    #[serde(default)]
    pub seconds_per_run: f64,
    /// Over the runs with a validation part: their validation accuracy and loss (None: no run
    /// of the model validates).
    #[serde(default)]
    pub valid_accuracy: Option<Summary>,
    #[serde(default)]
    pub valid_loss: Option<Summary>,
}

/// `[evaluate]`: what the evaluate stage computes beyond every run's scores.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EvaluateConfig {
    /// Ensembles across models, each a list of trained models, e.g. `[["resnet", "logreg"]]`: a
    /// test clip's class probabilities are averaged over each member's runs on that test part
    /// (its seeds), then over the members with equal weight. Named by joining the members with
    /// `+` (`resnet+logreg`), the name `genrelab predict --model` takes. Declared before the run:
    /// nothing here is chosen by a test score.
    pub ensembles: Vec<Vec<String>>,
    /// Crop models: the hop (frames) between the test windows whose probabilities make a clip's,
    /// in place of the `window_hop` each run was trained and validated with; changing it re-runs
    /// only this stage. Unset: each run's own. Choose it by the validation columns of the report
    /// (every run that validates is also scored on its validation part), never by a test score.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window_hop: Option<usize>,
}

/// The name of an ensemble of models.
pub fn ensemble_name(members: &[String]) -> String {
    members.join("+")
}

/// An ensemble across models, scored per test part (fold, or the one test part).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EnsembleSummary {
    pub name: String,
    pub members: Vec<String>,
    /// Test parts scored (folds; 1 for a hold-out split).
    pub parts: usize,
    /// Over the test parts.
    pub accuracy: Summary,
    pub balanced_accuracy: Summary,
    pub macro_f1: Summary,
    pub confusion: Vec<Vec<usize>>,
    /// What the ensemble costs to train for one test part: the wall time of its members' runs
    /// (every seed) divided by the test parts.
    #[serde(default)]
    pub seconds_per_part: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Evaluation {
    pub protocol: String,
    pub labels: Vec<String>,
    pub epochs: usize,
    pub seeds: usize,
    pub folds: Option<usize>,
    pub models: Vec<ModelSummary>,
    pub runs: Vec<RunResult>,
    /// Ensembles across models (`[evaluate] ensembles`).
    #[serde(default)]
    pub ensembles: Vec<EnsembleSummary>,
    /// Training wall time of every run together, and where the runs trained (each distinct
    /// description once; empty for checkpoints that did not record it).
    #[serde(default)]
    pub train_seconds: f64,
    #[serde(default)]
    pub trained_on: Vec<String>,
    /// `[evaluate] window_hop`, when set: the test windows' hop of every crop model.
    #[serde(default)]
    pub window_hop: Option<usize>,
    /// Groups (artists, albums) the split kept whole, when the source gives clips a group.
    #[serde(default)]
    pub groups: Option<usize>,
    /// Where the clips came from (`hub:marsyas/gtzan@main/...`, `folder:...`, `synthetic`).
    #[serde(default)]
    pub source: String,
}

pub const METRICS_JSON: &str = "metrics.json";

/// Run the stage.
pub fn evaluate(store_dir: &Path, train_dir: &Path, report_dir: &Path, cfg: &EvaluateConfig) -> Result<Evaluation, StageError> {
    let checkpoints = read_checkpoints(train_dir)?;
    if checkpoints.is_empty() {
        return Err(StageError::Failed(format!("no trained runs in {}", train_dir.display())));
    }
    if cfg.window_hop == Some(0) {
        return Err(StageError::Config("[evaluate] window_hop must be at least 1 frame".into()));
    }
    for members in &cfg.ensembles {
        if members.len() < 2 {
            return Err(StageError::Config(format!("[evaluate] ensembles: {members:?} needs at least two models")));
        }
        if let Some(m) = members.iter().find(|m| !checkpoints.iter().any(|(_, c)| &c.spec.name == *m)) {
            return Err(StageError::Config(format!(
                "[evaluate] ensembles: model `{m}` of {} has no trained runs (add it to [train] models)",
                ensemble_name(members)
            )));
        }
    }
    let kinds: Vec<genrelab_models::Input> = checkpoints.iter().map(|(_, c)| c.input).collect();
    let inputs = Inputs::read(store_dir, &kinds)?;
    let features = &inputs.features;
    let (split_meta, split) = read_split(&store_dir.join(names::SPLIT))?;
    let groups = split_meta.get("grouped").and_then(|g| g.parse().ok());
    let gtzan = crate::features::is_gtzan(&features.meta);
    let (labels, y_all) = labels_of(features);
    let device = default_device().map_err(|e| StageError::Config(e.to_string()))?;

    let mut runs = vec![];
    let mut predictions: Vec<Prediction> = vec![];
    // (model, fold, row) -> summed probabilities and count, for the ensembles.
    let mut ensemble: SeedSums = BTreeMap::new();
    for (dir, c) in &checkpoints {
        if c.labels != labels {
            return Err(StageError::Failed(format!(
                "run {} was trained on other labels than the features table has; run train again",
                c.run
            )));
        }
        let test = test_rows(features, &split, c.fold);
        let model = c.load_model(dir, device)?;
        let window = c.test_window(cfg.window_hop);
        let k = labels.len();
        // The inputs and labels of `rows`.
        let data = |rows: &[usize]| -> Result<(ModelInput, Vec<usize>), StageError> {
            Ok((batch(c, &inputs, rows)?, rows.iter().map(|&r| y_all[r]).collect()))
        };
        let (x, y) = data(&test)?;
        let probs = predict_proba(&model, x.with_labels(&y), window, c.settings.recipe.eval_batch_size);
        // One prediction per test track (its windows' mean with `features.excerpt = "windows"`).
        let (tracks, probs) = per_track(&test, &probs, k, &features.track_ids);
        let y: Vec<usize> = tracks.iter().map(|&r| y_all[r]).collect();
        let pred: Vec<usize> = probs.chunks(k).map(argmax).collect();
        let test_loss = probs.chunks(k).zip(&y).map(|(p, &t)| -(p[t].max(1e-12) as f64).ln()).sum::<f64>() / y.len().max(1) as f64;
        // The validation part, scored as training scores it each epoch.
        let valid_part = valid_rows(features, &split, c.fold, c.valid_clips > 0);
        let valid = if valid_part.is_empty() {
            None
        } else {
            let (vx, vy) = data(&valid_part)?;
            let (loss, accuracy) = score_model(&model, vx.with_labels(&vy), window, c.settings.recipe.eval_batch_size);
            Some(ValidScore { clips: vy.len(), accuracy, loss })
        };
        for ((&row, &p), probs) in tracks.iter().zip(&pred).zip(probs.chunks(k)) {
            predictions.push(Prediction {
                run: c.run.clone(),
                track_id: features.track_ids[row].clone(),
                genre: y_all[row],
                predicted: p,
                probability: probs[p] as f64,
            });
            ensemble.entry((c.spec.name.clone(), c.fold, row)).or_insert_with(|| ProbSum::new(k)).add(probs.iter().map(|&v| v as f64));
        }
        runs.push(RunResult {
            run: c.run.clone(),
            model: c.spec.name.clone(),
            seed: c.seed,
            fold: c.fold,
            test_clips: tracks.len(),
            train_acc: c.selected().map_or(f64::NAN, |h| h.train_acc),
            test_loss,
            scores: scores(&y, &pred, k),
            train_seconds: c.train_seconds(),
            valid,
        });
    }

    let mut order: Vec<String> = vec![];
    for (_, c) in &checkpoints {
        if !order.contains(&c.spec.name) {
            order.push(c.spec.name.clone());
        }
    }
    // Keep the registry's order (the study's table order) where it applies.
    order.sort_by_key(|m| genrelab_models::registry().iter().position(|r| r.name == m).unwrap_or(usize::MAX));
    let models: Vec<ModelSummary> = order
        .iter()
        .map(|m| {
            let rs: Vec<&RunResult> = runs.iter().filter(|r| &r.model == m).collect();
            let spec = &checkpoints.iter().find(|(_, c)| &c.spec.name == m).expect("a run of the model").1.spec;
            let parameters = genrelab_models::count_params(spec).unwrap_or(0);
            let k = labels.len();
            let mut confusion = vec![vec![0; k]; k];
            for r in &rs {
                add_confusion(&mut confusion, &r.scores.confusion);
            }
            let study = STUDY.iter().find(|s| s.0 == m).filter(|_| gtzan);
            // The ensemble of the model's seeds: an ensemble of one member, scored as the others.
            let several_seeds = ensemble.iter().any(|((model, _, _), p)| model == m && p.n > 1);
            let seeds_averaged = several_seeds.then(|| with_cost(fuse(std::slice::from_ref(m), &ensemble, &y_all, k), &runs));
            let cks: Vec<&Checkpoint> = checkpoints.iter().filter(|(_, c)| &c.spec.name == m).map(|(_, c)| c).collect();
            let selection = if cks.iter().all(|c| c.weights == genrelab_models::train::WEIGHTS) {
                "last epoch".to_string()
            } else {
                let mean = cks.iter().map(|c| c.selected_epoch as f64).sum::<f64>() / cks.len().max(1) as f64;
                format!("best validation epoch (mean {mean:.0})")
            };
            ModelSummary {
                epochs: cks.first().map_or(0, |c| c.settings.recipe.epochs),
                selection,
                seeds_averaged,
                model: m.clone(),
                parameters,
                runs: rs.len(),
                train_acc: summarize(&rs.iter().map(|r| r.train_acc).collect::<Vec<_>>()),
                accuracy: summarize(&rs.iter().map(|r| r.scores.accuracy).collect::<Vec<_>>()),
                balanced_accuracy: summarize(&rs.iter().map(|r| r.scores.balanced_accuracy).collect::<Vec<_>>()),
                macro_f1: summarize(&rs.iter().map(|r| r.scores.macro_f1).collect::<Vec<_>>()),
                seconds_per_run: rs.iter().map(|r| r.train_seconds).sum::<f64>() / rs.len().max(1) as f64,
                valid_accuracy: valid_summary(&rs, |v| v.accuracy),
                valid_loss: valid_summary(&rs, |v| v.loss),
                study_train_acc: study.map(|s| s.2),
                study_test_acc: study.map(|s| s.3),
                confusion,
            }
        })
        .collect();

    let first = &checkpoints[0].1;
    let folds = {
        let mut f: Vec<i32> = checkpoints.iter().filter_map(|(_, c)| c.fold).collect();
        f.sort();
        f.dedup();
        (!f.is_empty()).then_some(f.len())
    };
    let mut seeds: Vec<u64> = checkpoints.iter().map(|(_, c)| c.seed).collect();
    seeds.sort();
    seeds.dedup();
    let ensembles = cfg.ensembles.iter().map(|members| with_cost(fuse(members, &ensemble, &y_all, labels.len()), &runs)).collect();
    let mut trained_on: Vec<String> = checkpoints.iter().map(|(_, c)| c.trained_on.clone()).filter(|d| !d.is_empty()).collect();
    trained_on.sort();
    trained_on.dedup();
    let eval = Evaluation {
        protocol: first.protocol.clone(),
        labels: labels.clone(),
        epochs: first.settings.recipe.epochs,
        seeds: seeds.len(),
        folds,
        models,
        train_seconds: runs.iter().map(|r| r.train_seconds).sum(),
        runs,
        ensembles,
        trained_on,
        window_hop: cfg.window_hop,
        groups,
        source: features.meta.get("source").unwrap_or_default().to_string(),
    };
    // Every table and report file is written and flushed before any is moved into place: a
    // failure while writing (a full disk) leaves the last evaluation's outputs whole.
    let mut staged = write_tables(store_dir, &eval, &predictions)?;
    for (name, text) in report_files(&eval, &checkpoints) {
        let mut f = genrelab_store::AtomicFile::create(report_dir.join(&name))?;
        f.file().write_all(text.as_bytes()).map_err(|e| StageError::io(report_dir.join(&name), e))?;
        staged.push(f.stage()?);
    }
    genrelab_store::atomic::commit_all(staged)?;
    Ok(eval)
}

/// A summary over the runs that have a validation score (None when none has).
/// Test rows by track: the rows of one track (consecutive, with its id: the windows of a long
/// track) make one prediction, the mean of their probabilities. Returns each track's first row
/// and the tracks' probabilities (`k` per track).
fn per_track(rows: &[usize], probs: &[f32], k: usize, track_ids: &[String]) -> (Vec<usize>, Vec<f32>) {
    let mut firsts: Vec<usize> = vec![];
    let mut sums: Vec<(Vec<f32>, f32)> = vec![];
    for (&row, p) in rows.iter().zip(probs.chunks(k)) {
        if firsts.last().is_none_or(|&f| track_ids[f] != track_ids[row]) {
            firsts.push(row);
            sums.push((vec![0.0; k], 0.0));
        }
        let (s, n) = sums.last_mut().expect("pushed above");
        s.iter_mut().zip(p).for_each(|(s, v)| *s += v);
        *n += 1.0;
    }
    (firsts, sums.into_iter().flat_map(|(s, n)| s.into_iter().map(move |v| v / n)).collect())
}

fn valid_summary(runs: &[&RunResult], f: fn(&ValidScore) -> f64) -> Option<Summary> {
    let v: Vec<f64> = runs.iter().filter_map(|r| r.valid.as_ref().map(f)).collect();
    (!v.is_empty()).then(|| summarize(&v))
}

/// Per (model, fold, test row): the probabilities summed over the model's seeds, and how many.
type SeedSums = BTreeMap<(String, Option<i32>, usize), ProbSum>;
/// Class probabilities of one clip summed over `n` predictions (seeds, or ensemble members).
#[derive(Debug, Clone, PartialEq)]
struct ProbSum {
    sum: Vec<f64>,
    n: usize,
}

impl ProbSum {
    fn new(classes: usize) -> ProbSum {
        ProbSum { sum: vec![0.0; classes], n: 0 }
    }
    fn add(&mut self, probs: impl IntoIterator<Item = f64>) {
        self.sum.iter_mut().zip(probs).for_each(|(s, v)| *s += v);
        self.n += 1;
    }
}

/// One row of the `predictions` table: a run's prediction for one test clip (classes by index).
struct Prediction {
    run: String,
    track_id: String,
    genre: usize,
    predicted: usize,
    probability: f64,
}

/// Score an ensemble across models from each model's seed-averaged probabilities per
/// (model, fold, row): members weigh equally; every test part is scored on its own.
fn fuse(members: &[String], per_model: &SeedSums, y_all: &[usize], k: usize) -> EnsembleSummary {
    // fold -> row -> (summed member probabilities, members seen)
    let mut parts: BTreeMap<Option<i32>, BTreeMap<usize, ProbSum>> = BTreeMap::new();
    for ((model, fold, row), seeds) in per_model {
        if members.contains(model) {
            // Each member weighs as one: its seeds' mean.
            let member = seeds.sum.iter().map(|v| v / seeds.n as f64);
            parts.entry(*fold).or_default().entry(*row).or_insert_with(|| ProbSum::new(k)).add(member);
        }
    }
    let mut confusion = vec![vec![0; k]; k];
    let mut per_part = vec![];
    for rows in parts.values() {
        // A clip counts only where every member was tested on it.
        let (truth, pred): (Vec<usize>, Vec<usize>) =
            rows.iter().filter(|(_, p)| p.n == members.len()).map(|(row, p)| (y_all[*row], argmax(&p.sum))).unzip();
        let s = scores(&truth, &pred, k);
        add_confusion(&mut confusion, &s.confusion);
        per_part.push(s);
    }
    let over = |f: fn(&Scores) -> f64| summarize(&per_part.iter().map(f).collect::<Vec<_>>());
    EnsembleSummary {
        name: ensemble_name(members),
        members: members.to_vec(),
        parts: per_part.len(),
        accuracy: over(|s| s.accuracy),
        balanced_accuracy: over(|s| s.balanced_accuracy),
        macro_f1: over(|s| s.macro_f1),
        confusion,
        seconds_per_part: 0.0,
    }
}

/// `e` with its training cost per test part: the wall time of its members' runs over its parts.
fn with_cost(mut e: EnsembleSummary, runs: &[RunResult]) -> EnsembleSummary {
    let seconds: f64 = runs.iter().filter(|r| e.members.contains(&r.model)).map(|r| r.train_seconds).sum();
    e.seconds_per_part = seconds / e.parts.max(1) as f64;
    e
}

fn write_tables(store_dir: &Path, e: &Evaluation, predictions: &[Prediction]) -> Result<Vec<Staged>, StageError> {
    let meta = |t: &str| TableMeta::new(t).with("protocol", &e.protocol);
    let r = &e.runs;
    let metrics = write_columns_staged(
        &store_dir.join(names::METRICS),
        &meta("metrics"),
        vec![
            ("run", Column::Str(r.iter().map(|x| x.run.clone()).collect())),
            ("model", Column::Str(r.iter().map(|x| x.model.clone()).collect())),
            ("seed", Column::Int(r.iter().map(|x| x.seed as i64).collect())),
            ("fold", Column::OptInt(r.iter().map(|x| x.fold.map(i64::from)).collect())),
            ("test_clips", Column::Int(r.iter().map(|x| x.test_clips as i64).collect())),
            ("train_acc", Column::Float(r.iter().map(|x| x.train_acc).collect())),
            ("accuracy", Column::Float(r.iter().map(|x| x.scores.accuracy).collect())),
            ("balanced_accuracy", Column::Float(r.iter().map(|x| x.scores.balanced_accuracy).collect())),
            ("macro_f1", Column::Float(r.iter().map(|x| x.scores.macro_f1).collect())),
            ("test_loss", Column::Float(r.iter().map(|x| x.test_loss).collect())),
            ("train_seconds", Column::Float(r.iter().map(|x| x.train_seconds).collect())),
        ],
    )?;
    let mut pg: Vec<(&RunResult, usize)> = vec![];
    for run in r {
        for c in 0..e.labels.len() {
            pg.push((run, c));
        }
    }
    let per_genre = write_columns_staged(
        &store_dir.join(names::PER_GENRE),
        &meta("per_genre"),
        vec![
            ("run", Column::Str(pg.iter().map(|(x, _)| x.run.clone()).collect())),
            ("model", Column::Str(pg.iter().map(|(x, _)| x.model.clone()).collect())),
            ("genre", Column::Str(pg.iter().map(|(_, c)| e.labels[*c].clone()).collect())),
            ("precision", Column::Float(pg.iter().map(|(x, c)| x.scores.per_class[*c].precision).collect())),
            ("recall", Column::Float(pg.iter().map(|(x, c)| x.scores.per_class[*c].recall).collect())),
            ("f1", Column::Float(pg.iter().map(|(x, c)| x.scores.per_class[*c].f1).collect())),
            ("support", Column::Int(pg.iter().map(|(x, c)| x.scores.per_class[*c].support as i64).collect())),
        ],
    )?;
    let predictions = write_columns_staged(
        &store_dir.join(names::PREDICTIONS),
        &meta("predictions"),
        vec![
            ("run", Column::Str(predictions.iter().map(|p| p.run.clone()).collect())),
            ("track_id", Column::Str(predictions.iter().map(|p| p.track_id.clone()).collect())),
            ("genre", Column::Str(predictions.iter().map(|p| e.labels[p.genre].clone()).collect())),
            ("predicted", Column::Str(predictions.iter().map(|p| e.labels[p.predicted].clone()).collect())),
            ("probability", Column::Float(predictions.iter().map(|p| p.probability).collect())),
        ],
    )?;
    Ok(vec![metrics, per_genre, predictions])
}

/// A wall time for people: seconds, minutes or hours.
fn duration(seconds: f64) -> String {
    match seconds {
        s if !s.is_finite() => "-".into(),
        s if s < 10.0 => format!("{s:.1} s"),
        s if s < 90.0 => format!("{s:.0} s"),
        s if s < 90.0 * 60.0 => format!("{:.1} min", s / 60.0),
        s => format!("{:.1} h", s / 3600.0),
    }
}

fn pct(x: f64) -> String {
    if x.is_finite() { format!("{:.1}%", 100.0 * x) } else { "-".into() }
}

impl Evaluation {
    /// The model or ensemble across models with the best mean test accuracy, and that accuracy.
    /// A model counts as `predict` runs it, its seeds averaged: by its seed ensemble's accuracy
    /// where it has several seeds.
    pub fn best(&self) -> Option<(&str, f64)> {
        let models = self.models.iter().map(|m| (m.model.as_str(), m.seeds_averaged.as_ref().map_or(m.accuracy.mean, |s| s.accuracy.mean)));
        let ensembles = self.ensembles.iter().map(|x| (x.name.as_str(), x.accuracy.mean));
        models.chain(ensembles).max_by(|a, b| a.1.total_cmp(&b.1))
    }

    /// Every ensemble in report order: each model's seeds averaged (with its model), then the
    /// ensembles across models (without).
    fn all_ensembles(&self) -> impl Iterator<Item = (Option<&ModelSummary>, &EnsembleSummary)> {
        let seeds = self.models.iter().filter_map(|m| m.seeds_averaged.as_ref().map(|x| (Some(m), x)));
        seeds.chain(self.ensembles.iter().map(|x| (None, x)))
    }
}

/// An ensemble's test accuracy: mean +- std over folds, or alone for one test part (which has no
/// spread: "+- 0.0%" would read as none).
fn ensemble_accuracy(x: &EnsembleSummary, folds: Option<usize>) -> String {
    match folds {
        Some(_) => format!("{} +- {}", pct(x.accuracy.mean), pct(x.accuracy.std)),
        None => pct(x.accuracy.mean),
    }
}

/// A 95 % interval of accuracies, clipped to [0, 1] for display (metrics.json keeps it raw).
fn interval(s: &Summary) -> String {
    s.ci95.map_or("-".into(), |(lo, hi)| format!("{} - {}", pct(lo.max(0.0)), pct(hi.min(1.0))))
}

/// The last evaluation, from `report_dir/metrics.json`.
pub fn read_evaluation(report_dir: &Path) -> Result<Evaluation, StageError> {
    let path = report_dir.join(METRICS_JSON);
    let bytes =
        std::fs::read(&path).map_err(|e| StageError::Source(format!("{}: {e} (run the pipeline first: `make all`)", path.display())))?;
    serde_json::from_slice(&bytes).map_err(|e| StageError::Source(format!("{}: {e}", path.display())))
}

/// The comparison table (markdown), as the terminal, the README and the report show it.
pub fn comparison_table(e: &Evaluation) -> String {
    let mut s = String::new();
    let per_fold = |m: &ModelSummary| m.runs / e.folds.unwrap_or(1).max(1);
    let uniform = e.models.iter().all(|m| per_fold(m) == e.seeds);
    let seeds = if uniform {
        format!("{} seeds per model", e.seeds)
    } else {
        let each: Vec<String> = e.models.iter().map(|m| format!("{} {}", m.model, per_fold(m))).collect();
        format!("seeds per model: {}", each.join(", "))
    };
    let runs = match e.folds {
        Some(f) => format!("{f} folds x {seeds}"),
        None => seeds,
    };
    // The study's figures are GTZAN's: shown only when the data is GTZAN.
    let show_study = e.models.iter().any(|m| m.study_test_acc.is_some());
    let _ = writeln!(
        s,
        "| model | parameters | epochs, weights | train acc (mean +- std) | valid acc / loss | test acc (mean +- std) | 95% interval | balanced acc | macro-F1 | ensemble of seeds | training per run |{}",
        if show_study { " study (1 run): train / test |" } else { "" }
    );
    let _ = writeln!(s, "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|{}", if show_study { "---:|" } else { "" });
    for m in &e.models {
        let study = match (m.study_train_acc, m.study_test_acc) {
            _ if !show_study => String::new(),
            (Some(a), Some(b)) => format!(" {} / {} |", pct(a), pct(b)),
            _ => " - |".into(),
        };
        let _ = writeln!(
            s,
            "| {} | {} | {}, {} | {} +- {} | {} | {} +- {} | {} | {} | {} | {} | {} |{}",
            m.model,
            m.parameters,
            m.epochs,
            if m.selection.is_empty() { "last epoch" } else { &m.selection },
            pct(m.train_acc.mean),
            pct(m.train_acc.std),
            match (&m.valid_accuracy, &m.valid_loss) {
                (Some(a), Some(l)) => format!("{} / {:.3}", pct(a.mean), l.mean),
                _ => "-".into(),
            },
            pct(m.accuracy.mean),
            pct(m.accuracy.std),
            interval(&m.accuracy),
            pct(m.balanced_accuracy.mean),
            pct(m.macro_f1.mean),
            m.seeds_averaged.as_ref().map_or("-".into(), |x| ensemble_accuracy(x, e.folds)),
            duration(m.seconds_per_run),
            study
        );
    }
    let rows: Vec<(String, &EnsembleSummary)> = e
        .all_ensembles()
        .map(|(m, x)| (m.map_or_else(|| x.members.join(", "), |m| format!("{}, {} seeds averaged", m.model, per_fold(m))), x))
        .collect();
    if !rows.is_empty() {
        let (acc_header, per_part) = match e.folds {
            Some(_) => ("test acc (mean +- std over folds)", "training per fold"),
            None => ("test acc (one test part)", "training"),
        };
        let _ = writeln!(
            s,
            "\n| ensemble | members (seeds averaged, members weighted equally) | {acc_header} | 95% interval | balanced acc | macro-F1 | {per_part} |"
        );
        let _ = writeln!(s, "|---|---|---:|---:|---:|---:|---:|");
        for (members, x) in rows {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} |",
                x.name,
                members,
                ensemble_accuracy(x, e.folds),
                interval(&x.accuracy),
                pct(x.balanced_accuracy.mean),
                pct(x.macro_f1.mean),
                duration(x.seconds_per_part),
            );
        }
    }
    use crate::split::Protocol;
    let named = Protocol::parse(&e.protocol);
    let protocol = match named {
        Some(Protocol::Kfold) => {
            "stratified k-fold cross-validation by track (each fold tested once; models that select weights validate on the next fold)"
        }
        Some(Protocol::Filtered) => "the fault-filtered split (Kereliuk, Sturm & Larsen 2015: train / valid / test by artist)",
        Some(Protocol::Given) => "the parts or folds the manifest gives each clip",
        _ => "the study's stratified hold-out by track (validation, when used, taken from the training part)",
    };
    let protocol = match (e.groups, named) {
        (Some(g), Some(Protocol::Kfold | Protocol::Study)) => {
            format!("{protocol}, keeping each of the {g} groups (the source's group column: artist, album) whole: no group is in two parts")
        }
        _ => protocol.to_string(),
    };
    let _ = write!(s, "\nProtocol: {} = {protocol}; {runs}, {} classes. Test parts never choose anything.", e.protocol, e.labels.len());
    if let Some(hop) = e.window_hop {
        let _ = write!(s, " Crop models' test and validation windows: {hop} frames apart (`[evaluate] window_hop`), not the runs' own.");
    }
    let machine = if e.trained_on.is_empty() { "a machine the checkpoints do not record".to_string() } else { e.trained_on.join("; ") };
    let _ = write!(
        s,
        "\nCost: {} of training for the {} runs (their wall times summed, epochs with their validation and test scoring), on {machine}.",
        duration(e.train_seconds),
        e.runs.len()
    );
    s
}

/// The report folder's files, `(name, text)`: metrics.json, the figures, report.md and the
/// self-contained report.html.
fn report_files(e: &Evaluation, checkpoints: &[(std::path::PathBuf, Checkpoint)]) -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = vec![];
    let mut put = |name: &str, text: &str| files.push((name.to_string(), text.to_string()));
    put(METRICS_JSON, &serde_json::to_string_pretty(e).expect("json"));

    // Curves: the mean over a model's runs, per epoch.
    let mean_curve = |model: &str, f: fn(&genrelab_models::train::EpochRecord) -> f64| -> Vec<(f64, f64)> {
        let mut by_epoch: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
        for (_, c) in checkpoints.iter().filter(|(_, c)| c.spec.name == model) {
            for h in &c.history {
                by_epoch.entry(h.epoch).or_default().push(f(h));
            }
        }
        by_epoch.into_iter().map(|(ep, v)| (ep as f64, v.iter().sum::<f64>() / v.len() as f64)).collect()
    };
    let mut figures = vec![];
    for (i, m) in e.models.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        for (what, train_f, test_f) in [
            (
                "loss",
                (|h: &genrelab_models::train::EpochRecord| h.train_loss) as fn(&_) -> f64,
                (|h: &genrelab_models::train::EpochRecord| h.test_loss) as fn(&_) -> f64,
            ),
            ("accuracy", |h| h.train_acc, |h| h.test_acc),
        ] {
            let name = format!("curves_{}_{what}.svg", m.model);
            let mut series = vec![
                Series { label: "train".into(), points: mean_curve(&m.model, train_f), dashed: false, color },
                Series { label: "test".into(), points: mean_curve(&m.model, test_f), dashed: true, color },
            ];
            let valid_f: fn(&genrelab_models::train::EpochRecord) -> f64 =
                if what == "loss" { |h| h.valid_loss.unwrap_or(f64::NAN) } else { |h| h.valid_acc.unwrap_or(f64::NAN) };
            let valid: Vec<(f64, f64)> = mean_curve(&m.model, valid_f).into_iter().filter(|p| p.1.is_finite()).collect();
            if !valid.is_empty() {
                series.push(Series { label: "validation".into(), points: valid, dashed: true, color: PALETTE[(i + 3) % PALETTE.len()] });
            }
            put(&name, &line_chart(&format!("{}: {what} (mean of {} runs)", m.model, m.runs), "epoch", what, &series));
            figures.push(name);
        }
        let name = format!("confusion_{}.svg", m.model);
        put(&name, &confusion_chart(&format!("{}: confusion over {} runs", m.model, m.runs), &e.labels, &m.confusion));
        figures.push(name);
    }
    for (m, x) in e.all_ensembles() {
        let (file, title) = match m {
            Some(m) => (format!("{}_seeds", m.model), format!("{}, seeds averaged", m.model)),
            None => (x.name.replace('+', "_"), x.name.clone()),
        };
        let name = format!("confusion_{file}.svg");
        put(&name, &confusion_chart(&format!("{title}: confusion over {} test parts", x.parts), &e.labels, &x.confusion));
        figures.push(name);
    }
    for (what, f) in [("accuracy", (|h: &genrelab_models::train::EpochRecord| h.test_acc) as fn(&_) -> f64), ("loss", |h| h.test_loss)] {
        let series: Vec<Series> = e
            .models
            .iter()
            .enumerate()
            .map(|(i, m)| Series {
                label: m.model.clone(),
                points: mean_curve(&m.model, f),
                dashed: false,
                color: PALETTE[i % PALETTE.len()],
            })
            .collect();
        let name = format!("curves_all_test_{what}.svg");
        put(&name, &line_chart(&format!("test {what}, all models"), "epoch", what, &series));
        figures.push(name);
    }

    let table = comparison_table(e);
    let mut md = String::new();
    let _ = writeln!(md, "# genrelab report\n\n{table}\n");
    let _ = writeln!(
        md,
        "Test figures are measured on each run's test part with the weights its recipe keeps (after the last epoch, or of the epoch with the lowest validation loss: the column \"epochs, weights\" says which); the curves track the test part every epoch (as the study did) but no model or epoch is chosen by it. Intervals are 95% Student-t intervals of the mean over runs (for ensembles, over test parts). \"valid acc / loss\": the same weights and test windows on each run's validation part (mean accuracy and cross-entropy over the runs that have one), what a choice of evaluation settings such as `[evaluate] window_hop` may look at.\n"
    );
    let _ = writeln!(md, "## Per genre (recall, mean over runs)\n");
    let _ = writeln!(md, "| genre | {} |", e.models.iter().map(|m| m.model.as_str()).collect::<Vec<_>>().join(" | "));
    let _ = writeln!(md, "|---|{}", "---:|".repeat(e.models.len()));
    for (c, g) in e.labels.iter().enumerate() {
        let cells: Vec<String> = e
            .models
            .iter()
            .map(|m| {
                let rs: Vec<&RunResult> = e.runs.iter().filter(|r| r.model == m.model).collect();
                pct(rs.iter().map(|r| r.scores.per_class[c].recall).sum::<f64>() / rs.len().max(1) as f64)
            })
            .collect();
        let _ = writeln!(md, "| {g} | {} |", cells.join(" | "));
    }
    let _ = writeln!(md, "\n## Figures\n");
    for f in &figures {
        let _ = writeln!(md, "![{f}]({f})");
    }
    put("report.md", &md);
    let html = genrelab_report::html::page(&md, &files);
    files.push(("report.html".into(), html));
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ensemble_averages_seeds_then_members_and_scores_each_fold() {
        // Two classes, two folds of two clips (rows 0, 1 in fold 0; rows 2, 3 in fold 1).
        let y = [0, 1, 0, 1];
        let mut m = BTreeMap::new();
        let mut put = |model: &str, fold: i32, row: usize, sum: [f64; 2], n: usize| {
            m.insert((model.to_string(), Some(fold), row), ProbSum { sum: sum.to_vec(), n });
        };
        // `a` (2 seeds, summed): row 0 0.9/0.1 right, row 1 0.6/0.4 wrong, row 2 0.4/0.6 wrong, row 3 0.2/0.8 right.
        put("a", 0, 0, [1.8, 0.2], 2);
        put("a", 0, 1, [1.2, 0.8], 2);
        put("a", 1, 2, [0.8, 1.2], 2);
        put("a", 1, 3, [0.4, 1.6], 2);
        // `b` (1 seed): row 1 0.1/0.9 and row 2 0.7/0.3 confident and right; rows 0, 3 unsure.
        put("b", 0, 0, [0.45, 0.55], 1);
        put("b", 0, 1, [0.1, 0.9], 1);
        put("b", 1, 2, [0.7, 0.3], 1);
        put("b", 1, 3, [0.55, 0.45], 1);
        // A model outside the ensemble changes nothing.
        put("c", 0, 0, [0.0, 10.0], 1);
        let e = fuse(&["a".into(), "b".into()], &m, &y, 2);
        // Means: row 0 (0.675, 0.325) -> 0 right; row 1 (0.35, 0.65) -> 1 right;
        // row 2 (0.55, 0.45) -> 0 right; row 3 (0.375, 0.625) -> 1 right.
        assert_eq!(e.name, "a+b");
        assert_eq!(e.parts, 2);
        assert_eq!(e.accuracy.n, 2);
        assert!((e.accuracy.mean - 1.0).abs() < 1e-12);
        assert_eq!(e.confusion, vec![vec![2, 0], vec![0, 2]]);
        // `a` alone: one right per fold.
        let a = fuse(&["a".into()], &m, &y, 2);
        assert!((a.accuracy.mean - 0.5).abs() < 1e-12 && a.accuracy.std == 0.0);
        // Pooled over both folds: rows 0 and 3 right of 4.
        assert_eq!(a.confusion, vec![vec![1, 1], vec![1, 1]]);
    }

    #[test]
    fn an_ensembles_cost_is_its_members_runs_per_test_part() {
        let run = |model: &str, seconds: f64| RunResult {
            run: String::new(),
            model: model.into(),
            seed: 0,
            fold: None,
            test_clips: 0,
            train_acc: 0.0,
            test_loss: 0.0,
            scores: scores(&[], &[], 2),
            train_seconds: seconds,
            valid: None,
        };
        let runs = [run("a", 10.0), run("a", 30.0), run("b", 5.0), run("c", 100.0)];
        let y = [0, 1];
        let mut m = BTreeMap::new();
        for (model, fold) in [("a", 0), ("a", 1), ("b", 0), ("b", 1)] {
            m.insert((model.to_string(), Some(fold), fold as usize), ProbSum { sum: vec![1.0, 0.0], n: 1 });
        }
        let e = with_cost(fuse(&["a".into(), "b".into()], &m, &y, 2), &runs);
        assert_eq!(e.parts, 2);
        assert!((e.seconds_per_part - 22.5).abs() < 1e-12, "{}", e.seconds_per_part);
        assert_eq!(duration(22.4), "22 s");
        assert_eq!(duration(4.26), "4.3 s");
        assert_eq!(duration(171.0), "2.9 min");
        assert_eq!(duration(3.0 * 3600.0), "3.0 h");
    }

    #[test]
    fn the_best_model_is_judged_by_what_predict_uses_its_seed_ensemble() {
        let model = |name: &str, runs: &[f64], seeds: Option<&[f64]>| ModelSummary {
            model: name.into(),
            parameters: 1,
            runs: runs.len(),
            train_acc: summarize(runs),
            accuracy: summarize(runs),
            balanced_accuracy: summarize(runs),
            macro_f1: summarize(runs),
            study_train_acc: None,
            study_test_acc: None,
            confusion: vec![],
            epochs: 1,
            selection: String::new(),
            seconds_per_run: 200.0,
            valid_accuracy: seeds.map(|_| summarize(&[0.7, 0.8])),
            valid_loss: seeds.map(|_| summarize(&[0.5, 0.7])),
            seeds_averaged: seeds.map(|s| EnsembleSummary {
                name: name.into(),
                members: vec![name.into()],
                parts: s.len(),
                accuracy: summarize(s),
                balanced_accuracy: summarize(s),
                macro_f1: summarize(&s.iter().map(|x| x - 0.1).collect::<Vec<_>>()),
                confusion: vec![],
                seconds_per_part: 400.0,
            }),
        };
        let pair = EnsembleSummary {
            name: "a+b".into(),
            members: vec!["a".into(), "b".into()],
            parts: 2,
            accuracy: summarize(&[0.8, 0.86]),
            balanced_accuracy: summarize(&[0.8, 0.86]),
            macro_f1: summarize(&[0.8, 0.86]),
            confusion: vec![],
            seconds_per_part: 0.5,
        };
        let mut e = Evaluation {
            protocol: "kfold".into(),
            labels: vec![],
            epochs: 1,
            seeds: 3,
            folds: Some(2),
            // `a`: 2 seeds x 2 folds, single runs 0.77 on average, its seeds averaged per fold 0.85
            // (above a+b's 0.83).
            models: vec![model("a", &[0.7, 0.84, 0.7, 0.84], Some(&[0.8, 0.9])), model("b", &[0.75, 0.75], None)],
            runs: vec![],
            ensembles: vec![pair],
            train_seconds: 4.0 * 3600.0,
            trained_on: vec!["CPU (libtorch 2.13.0), 2 threads".into()],
            window_hop: Some(32),
            groups: None,
            source: String::new(),
        };
        let (name, acc) = e.best().unwrap();
        assert_eq!(name, "a");
        assert!((acc - 0.85).abs() < 1e-12);
        let table = comparison_table(&e);
        assert!(table.contains("| 85.0% +- 7.1% |"), "{table}");
        // The seed ensemble's own row: its macro-F1 and interval, before the ensembles across models.
        let row = table.lines().find(|l| l.starts_with("| a | a, 2 seeds averaged |")).expect(&table);
        assert!(row.ends_with("| 85.0% | 75.0% | 6.7 min |"), "{row}");
        let row = table.lines().find(|l| l.starts_with("| a | 1 |")).expect(&table);
        // No study column: models a and b have no study figures (they appear only next to GTZAN).
        assert!(row.ends_with("| 85.0% +- 7.1% | 3.3 min |") && !table.contains("study (1 run)"), "{row}");
        // Validation columns: a's runs validate (mean accuracy 75 %, loss 0.6), b's do not.
        assert!(row.contains("| 75.0% / 0.600 | 77.0% +- "), "{row}");
        let row = table.lines().find(|l| l.starts_with("| b | 1 |")).expect(&table);
        assert!(row.contains("| - | 75.0% +- "), "{row}");
        assert!(table.contains("test and validation windows: 32 frames apart (`[evaluate] window_hop`)"), "{table}");
        assert!(table.contains("| a+b | a, b |") && table.lines().any(|l| l.starts_with("| a+b |") && l.ends_with("| 0.5 s |")), "{table}");
        assert!(table.ends_with("Cost: 4.0 h of training for the 0 runs (their wall times summed, epochs with their validation and test scoring), on CPU (libtorch 2.13.0), 2 threads."), "{table}");
        assert!(table.find("| a | a, 2 seeds averaged |") < table.find("| a+b | a, b |"), "{table}");
        // With one seed, a model's runs are what predict uses.
        e.models[0] = model("a", &[0.7, 0.84], None);
        assert_eq!(e.best().unwrap().0, "a+b");
    }
}

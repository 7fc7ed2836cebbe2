//! Training and inference loops: mini-batch Adam on cross-entropy, per-epoch train and test
//! figures, a checkpoint after every epoch, and resuming from the last completed one.
//!
//! Determinism: the model is initialised from `seed`; before epoch `e` the device RNG (dropout)
//! is reseeded from `(seed, e)` and the batch order is a shuffle seeded by `(seed, e)`. A run
//! resumed from its checkpoint therefore continues exactly as an uninterrupted one would.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer};
use burn::prelude::*;
use burn::tensor::activation::softmax;
use serde::{Deserialize, Serialize};

use crate::{Model, ModelError, ModelSpec, build};

/// The training recipe (the study's by default).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainSettings {
    pub epochs: usize,
    pub learning_rate: f64,
    pub batch_size: usize,
    pub eval_batch_size: usize,
    pub seed: u64,
    /// Fingerprint of the training and test inputs: a checkpoint made from other data is never
    /// resumed or reused.
    pub data: String,
}

/// Inputs (already normalised) and integer labels, row-major `n x mels x frames`.
#[derive(Clone, Copy)]
pub struct Batchable<'a> {
    pub x: &'a [f32],
    pub y: &'a [usize],
    pub mels: usize,
    pub frames: usize,
}

impl Batchable<'_> {
    pub fn len(&self) -> usize {
        self.y.len()
    }
    pub fn is_empty(&self) -> bool {
        self.y.is_empty()
    }
    fn tensors(&self, rows: &[usize], device: &Device) -> (Tensor<4>, Tensor<1, Int>) {
        let d = self.mels * self.frames;
        let mut xs = Vec::with_capacity(rows.len() * d);
        for &r in rows {
            xs.extend_from_slice(&self.x[r * d..(r + 1) * d]);
        }
        let x = Tensor::<4>::from_data(TensorData::new(xs, [rows.len(), 1, self.mels, self.frames]), device);
        let ys: Vec<i64> = rows.iter().map(|&r| self.y[r] as i64).collect();
        let y = Tensor::<1, Int>::from_data(TensorData::new(ys, [rows.len()]), device);
        (x, y)
    }
}

/// One epoch's figures. Train figures are running averages over the epoch's batches (dropout
/// on), as the study's PyTorch loop reported them; test figures use the model after the epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    pub epoch: usize,
    pub train_loss: f64,
    pub train_acc: f64,
    pub test_loss: f64,
    pub test_acc: f64,
    pub seconds: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("{path}: {message}")]
    Checkpoint { path: PathBuf, message: String },
    #[error("no training examples")]
    Empty,
}

fn ckpt_err(path: &Path, e: impl std::fmt::Display) -> TrainError {
    TrainError::Checkpoint { path: path.to_path_buf(), message: e.to_string() }
}

/// What is kept in `progress.json` beside the weights.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Progress {
    spec: ModelSpec,
    settings: TrainSettings,
    history: Vec<EpochRecord>,
}

pub const WEIGHTS: &str = "model.bpk";
const OPTIMIZER: &str = "optimizer.bpk";
const PROGRESS: &str = "progress.json";

/// SplitMix64 step, for seeds derived from (seed, epoch).
fn mix(a: u64, b: u64) -> u64 {
    let mut z = a.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(b).wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn shuffled(n: usize, seed: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut state = seed;
    for i in (1..n).rev() {
        state = mix(state, i as u64);
        order.swap(i, (state % (i as u64 + 1)) as usize);
    }
    order
}

/// Mean loss and accuracy of `model` (in validation mode) on `data`.
pub fn evaluate(model: &Model, data: Batchable, batch: usize, device: &Device) -> (f64, f64) {
    if data.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let model = model.valid();
    let plain = device.clone();
    let loss_fn = CrossEntropyLossConfig::new().init(&plain);
    let (mut loss, mut correct) = (0f64, 0usize);
    let rows: Vec<usize> = (0..data.len()).collect();
    for chunk in rows.chunks(batch.max(1)) {
        let (x, y) = data.tensors(chunk, &plain);
        let logits = model.forward(x);
        loss += loss_fn.forward(logits.clone(), y.clone()).into_scalar::<f32>() as f64 * chunk.len() as f64;
        correct += logits.argmax(1).flatten::<1>(0, 1).equal(y).int().sum().into_scalar::<i64>() as usize;
    }
    (loss / data.len() as f64, correct as f64 / data.len() as f64)
}

/// Class probabilities (softmax of the logits), `n x classes`, row-major.
pub fn predict_proba(model: &Model, data: Batchable, batch: usize, device: &Device) -> Vec<f32> {
    let model = model.valid();
    let rows: Vec<usize> = (0..data.len()).collect();
    let mut out = vec![];
    for chunk in rows.chunks(batch.max(1)) {
        let (x, _) = data.tensors(chunk, device);
        let p = softmax(model.forward(x), 1);
        out.extend(p.into_data().try_to_vec::<f32>().expect("f32 probabilities"));
    }
    out
}

/// Load a trained model from a run folder.
pub fn load_model(dir: &Path, spec: &ModelSpec, device: &Device) -> Result<Model, TrainError> {
    let model = build(spec, device)?;
    let path = dir.join(WEIGHTS);
    model.try_load_file(&path).map_err(|e| ckpt_err(&path, format!("{e:?}")))
}

fn write_json_atomic(path: &Path, value: &impl Serialize) -> Result<(), TrainError> {
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(value).expect("json")).map_err(|e| ckpt_err(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| ckpt_err(path, e))
}

/// Train one model on `train`, tracking `test` every epoch, checkpointing into `dir` after every
/// epoch. Resumes from `dir` when it holds a checkpoint of the same spec and settings.
pub fn train_run(
    spec: &ModelSpec,
    settings: &TrainSettings,
    train: Batchable,
    test: Batchable,
    device: &Device,
    dir: &Path,
    mut on_epoch: impl FnMut(&EpochRecord),
) -> Result<(Model, Vec<EpochRecord>), TrainError> {
    if train.is_empty() {
        return Err(TrainError::Empty);
    }
    std::fs::create_dir_all(dir).map_err(|e| ckpt_err(dir, e))?;
    let ad = device.clone().autodiff();
    ad.seed(settings.seed);
    let mut model = build(spec, &ad)?;
    let mut optim: ModuleOptimizer = AdamConfig::new().init();
    let mut history = vec![];

    let progress_path = dir.join(PROGRESS);
    if let Some(p) = std::fs::read(&progress_path).ok().and_then(|b| serde_json::from_slice::<Progress>(&b).ok()) {
        if &p.spec == spec && &p.settings == settings && !p.history.is_empty() {
            model = model.try_load_file(dir.join(WEIGHTS)).map_err(|e| ckpt_err(&dir.join(WEIGHTS), format!("{e:?}")))?;
            optim = optim.load(dir.join(OPTIMIZER)).map_err(|e| ckpt_err(&dir.join(OPTIMIZER), format!("{e:?}")))?;
            history = p.history;
            tracing::info!(model = %spec.name, epochs_done = history.len(), "resuming from the checkpoint");
        }
    }

    let loss_fn = CrossEntropyLossConfig::new().init(&ad);
    for epoch in history.len()..settings.epochs {
        let start = Instant::now();
        ad.seed(mix(settings.seed, epoch as u64 + 1));
        let order = shuffled(train.len(), mix(settings.seed, epoch as u64));
        let (mut loss_sum, mut correct) = (0f64, 0usize);
        for chunk in order.chunks(settings.batch_size.max(1)) {
            let (x, y) = train.tensors(chunk, &ad);
            let logits = model.forward(x);
            let loss = loss_fn.forward(logits.clone(), y.clone());
            correct += logits.argmax(1).flatten::<1>(0, 1).equal(y).int().sum().into_scalar::<i64>() as usize;
            loss_sum += loss.clone().into_scalar::<f32>() as f64 * chunk.len() as f64;
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(settings.learning_rate, model, grads);
        }
        let (test_loss, test_acc) = evaluate(&model, test, settings.eval_batch_size, device);
        let record = EpochRecord {
            epoch: epoch + 1,
            train_loss: loss_sum / train.len() as f64,
            train_acc: correct as f64 / train.len() as f64,
            test_loss,
            test_acc,
            seconds: start.elapsed().as_secs_f64(),
        };
        on_epoch(&record);
        history.push(record);

        // Checkpoint: weights and optimizer under temporary names, then the progress file that
        // makes them count. A kill before the rename resumes from the previous epoch.
        let tmp_w = dir.join("model.tmp.bpk");
        let tmp_o = dir.join("optimizer.tmp.bpk");
        model.clone().save_file(&tmp_w).map_err(|e| ckpt_err(&tmp_w, format!("{e:?}")))?;
        optim.save(&tmp_o).map_err(|e| ckpt_err(&tmp_o, format!("{e:?}")))?;
        std::fs::rename(&tmp_w, dir.join(WEIGHTS)).map_err(|e| ckpt_err(dir, e))?;
        std::fs::rename(&tmp_o, dir.join(OPTIMIZER)).map_err(|e| ckpt_err(dir, e))?;
        write_json_atomic(&progress_path, &Progress { spec: spec.clone(), settings: settings.clone(), history: history.clone() })?;
    }
    Ok((model.valid(), history))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shuffles_are_permutations_and_seeded() {
        let a = shuffled(50, 3);
        let mut s = a.clone();
        s.sort();
        assert_eq!(s, (0..50).collect::<Vec<_>>());
        assert_eq!(a, shuffled(50, 3));
        assert_ne!(a, shuffled(50, 4));
    }
}

//! Training and inference loops: mini-batch Adam on cross-entropy, per-epoch train and test
//! figures, a checkpoint after an epoch (every epoch that ends [`CHECKPOINT_INTERVAL`] or more
//! after the last checkpoint, and the last), and resuming from the last checkpointed epoch.
//!
//! Determinism: the model is initialised from `seed`; before epoch `e` libtorch's generator
//! (dropout) is reseeded from `(seed, e)` and the batch order is a shuffle seeded by `(seed, e)`.
//! A run resumed from its checkpoint therefore continues exactly as an uninterrupted one would,
//! on the same device and thread count (libtorch's CPU kernels split some reductions by thread,
//! so other thread counts give results equal to float rounding, not to the bit).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::{Input, Model, ModelError, ModelSpec, build, save_tensors};

/// What one run trains with: the recipe, the seed, the data it was given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainSettings {
    pub seed: u64,
    /// Fingerprint of the training and test inputs: a checkpoint made from other data is never
    /// resumed or reused.
    pub data: String,
    /// The recipe as configured, for the run's input kind ([`Recipe::for_input`]).
    pub recipe: Recipe,
    /// The recipe's dB and Hz options in the run's input units.
    pub units: InputUnits,
}

/// Learning-rate schedule over the run's steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    #[default]
    Constant,
    /// Linear warm-up over `warmup_epochs`, then a half cosine down to 0 at the last epoch.
    Cosine,
}

/// Which weights are a run's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Select {
    /// The last epoch's (the study's way: no selection at all).
    #[default]
    Last,
    /// The epoch with the lowest validation loss (needs a validation part; never the test part).
    BestValid,
}

/// The training recipe: the study's plain Adam + cross-entropy by default (150 epochs of batches
/// of 128 at 1e-4), and every option beyond it, off by default, in the units `[train]` gives
/// them (dB, Hz, frames). One type from the configuration
/// (flattened into `[train]` and `[train.model.<name>]`) to the checkpoint (every value is there,
/// so a run says how it was trained) and tune's search space; a finished run is kept only when
/// its recipe `==` the configured one (and the rest of its identity matches: model, data, units).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Recipe {
    pub epochs: usize,
    pub learning_rate: f64,
    pub batch_size: usize,
    /// Batch size of evaluation (no effect on the results but memory).
    pub eval_batch_size: usize,
    /// Decoupled weight decay (AdamW); 0 keeps plain Adam.
    pub weight_decay: f64,
    /// Label smoothing: targets are (1 - e) one-hot + e / classes.
    pub label_smoothing: f32,
    /// Mixup: each batch is mixed with a shuffled copy of itself, weight ~ Beta(a, a); 0 = off.
    pub mixup_alpha: f32,
    /// Random gain of up to +-gain_db dB per training example.
    pub gain_db: f32,
    /// SpecAugment: masks per sample and their widest extent (frames / mel bands), filled with 0
    /// (the normalised mean).
    pub time_masks: usize,
    pub time_mask_width: usize,
    pub freq_masks: usize,
    pub freq_mask_width: usize,
    /// Band drop (spectrogram models): with probability `band_drop` per training example, every
    /// band above a random cut-off between `band_drop_hz` and the top is set to the example's
    /// floor (its lowest value), so the model also learns from clips without their highest band
    /// (a 16 kHz file, an MP3's low-pass).
    pub band_drop: f32,
    pub band_drop_hz: f64,
    pub schedule: Schedule,
    pub warmup_epochs: usize,
    /// Stop when the validation loss has not improved for this many epochs.
    pub patience: Option<usize>,
    pub select: Select,
    /// Crop models: train on random crops of this many frames (128 = 3 s; 0 = the whole input),
    /// drawing `crops_per_epoch` crops of every clip per epoch; evaluate on every window of the
    /// clip `window_hop` frames apart (the last one aligned to the end), probabilities averaged.
    pub crop_frames: usize,
    pub crops_per_epoch: usize,
    pub window_hop: usize,
}

impl Default for Recipe {
    fn default() -> Self {
        Recipe {
            epochs: 150,
            learning_rate: 1e-4,
            batch_size: 128,
            eval_batch_size: 64,
            weight_decay: 0.0,
            label_smoothing: 0.0,
            mixup_alpha: 0.0,
            gain_db: 0.0,
            time_masks: 0,
            time_mask_width: 0,
            freq_masks: 0,
            freq_mask_width: 0,
            band_drop: 0.0,
            band_drop_hz: 7000.0,
            schedule: Schedule::Constant,
            warmup_epochs: 0,
            patience: None,
            select: Select::Last,
            crop_frames: 128,
            crops_per_epoch: 1,
            window_hop: 64,
        }
    }
}

/// The recipe's dB and Hz options in a model's input units: inputs are dB divided by
/// `db_per_unit` (the normalisation's deviation), and band drop cuts from band `band_drop_from`
/// up (the first band above `band_drop_hz` among the bands the model reads).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputUnits {
    pub db_per_unit: f32,
    pub band_drop_from: usize,
}

impl Default for InputUnits {
    fn default() -> Self {
        InputUnits { db_per_unit: 1.0, band_drop_from: 0 }
    }
}

impl InputUnits {
    /// The recipe's random gain in input units.
    pub fn gain(&self, recipe: &Recipe) -> f32 {
        recipe.gain_db / self.db_per_unit
    }
}

impl Recipe {
    /// The recipe a model reading `input` trains with: the options that do not apply to it at
    /// their neutral values (descriptor models are not augmented; only crop models read windows),
    /// so that changing them does not make its runs stale.
    pub fn for_input(&self, input: Input) -> Recipe {
        let mut r = self.clone();
        if input == Input::Stats {
            (r.gain_db, r.time_masks, r.freq_masks, r.band_drop) = (0.0, 0, 0, 0.0);
        }
        if r.band_drop == 0.0 {
            r.band_drop_hz = Recipe::default().band_drop_hz;
        }
        if input == Input::Crops {
            r.crops_per_epoch = r.crops_per_epoch.max(1);
        } else {
            (r.crop_frames, r.crops_per_epoch, r.window_hop) = (0, 1, 0);
        }
        r
    }
    /// Whether choosing weights this way needs a validation part: selecting the best validation
    /// epoch or stopping early on it.
    pub fn needs_validation(&self) -> bool {
        self.select == Select::BestValid || self.patience.is_some()
    }
    fn soft_targets(&self) -> bool {
        self.label_smoothing > 0.0 || self.mixup_alpha > 0.0
    }
    /// `(crop, hop)` when the model reads windows of its input.
    pub fn window(&self) -> Option<(usize, usize)> {
        (self.crop_frames > 0).then_some((self.crop_frames, if self.window_hop == 0 { self.crop_frames } else { self.window_hop }))
    }
    /// Learning rate at `step` of `total` steps (`warmup` of them warming up).
    pub fn learning_rate_at(&self, step: usize, total: usize, warmup: usize) -> f64 {
        let base = self.learning_rate;
        match self.schedule {
            Schedule::Constant => base,
            Schedule::Cosine if step < warmup => base * (step + 1) as f64 / warmup as f64,
            Schedule::Cosine => {
                let t = (step - warmup) as f64 / (total - warmup).max(1) as f64;
                base * 0.5 * (1.0 + (std::f64::consts::PI * t.min(1.0)).cos())
            }
        }
    }
}

/// Offsets of the windows of `crop` frames, `hop` apart, that cover `frames` (the last window
/// ends at the last frame).
pub fn window_offsets(frames: usize, crop: usize, hop: usize) -> Vec<usize> {
    if frames <= crop {
        return vec![0];
    }
    let mut o: Vec<usize> = (0..=frames - crop).step_by(hop.max(1)).collect();
    if *o.last().expect("one window") != frames - crop {
        o.push(frames - crop);
    }
    o
}

/// Small seeded generator (SplitMix64) for crops and augmentation.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0, 0)
    }
    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Uniform in 0..n.
    pub fn below(&mut self, n: usize) -> usize {
        (self.uniform() * n as f64) as usize % n.max(1)
    }
    fn normal(&mut self) -> f64 {
        let u1 = self.uniform().max(1e-300);
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * self.uniform()).cos()
    }
    /// Gamma(shape, 1), Marsaglia and Tsang.
    fn gamma(&mut self, shape: f64) -> f64 {
        if shape < 1.0 {
            return self.gamma(shape + 1.0) * self.uniform().max(1e-300).powf(1.0 / shape);
        }
        let d = shape - 1.0 / 3.0;
        let c = 1.0 / (9.0 * d).sqrt();
        loop {
            let x = self.normal();
            let v = (1.0 + c * x).powi(3);
            if v > 0.0 && self.uniform().max(1e-300).ln() < 0.5 * x * x + d - d * v + d * v.ln() {
                return d * v;
            }
        }
    }
    /// Beta(a, a).
    pub fn beta(&mut self, a: f64) -> f64 {
        let (x, y) = (self.gamma(a), self.gamma(a));
        x / (x + y)
    }
}

/// SpecAugment, band drop and random gain, in place, on one `mels x frames` sample.
pub fn augment(sample: &mut [f32], mels: usize, frames: usize, recipe: &Recipe, units: &InputUnits, rng: &mut Rng) {
    let from = units.band_drop_from;
    if recipe.band_drop > 0.0 && from < mels && rng.uniform() < recipe.band_drop as f64 {
        let cut = from + rng.below(mels - from);
        let floor = sample.iter().copied().fold(f32::INFINITY, f32::min);
        sample[cut * frames..mels * frames].iter_mut().for_each(|v| *v = floor);
    }
    let gain = units.gain(recipe);
    if gain > 0.0 {
        let g = ((rng.uniform() * 2.0 - 1.0) * gain as f64) as f32;
        sample.iter_mut().for_each(|v| *v += g);
    }
    for _ in 0..recipe.freq_masks {
        let w = rng.below(recipe.freq_mask_width.min(mels) + 1);
        let f0 = rng.below(mels - w + 1);
        sample[f0 * frames..(f0 + w) * frames].iter_mut().for_each(|v| *v = 0.0);
    }
    for _ in 0..recipe.time_masks {
        let w = rng.below(recipe.time_mask_width.min(frames) + 1);
        let t0 = rng.below(frames - w + 1);
        for m in 0..mels {
            sample[m * frames + t0..m * frames + t0 + w].iter_mut().for_each(|v| *v = 0.0);
        }
    }
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
    /// Appends frames `offset..offset + width` of row `r` to `out`.
    fn push_window(&self, r: usize, offset: usize, width: usize, out: &mut Vec<f32>) {
        let d = self.mels * self.frames;
        let row = &self.x[r * d..(r + 1) * d];
        if offset == 0 && width == self.frames {
            out.extend_from_slice(row);
            return;
        }
        for m in 0..self.mels {
            out.extend_from_slice(&row[m * self.frames + offset..m * self.frames + offset + width]);
        }
    }
    /// A batch of `(row, offset)` windows `width` frames wide.
    fn windows_tensor(&self, items: &[(usize, usize)], width: usize, device: Device) -> Tensor {
        let mut xs = Vec::with_capacity(items.len() * self.mels * width);
        for &(r, o) in items {
            self.push_window(r, o, width, &mut xs);
        }
        batch_tensor(&xs, items.len(), self.mels, width, device)
    }
}

/// One epoch's figures. Train figures are running averages over the epoch's batches (dropout
/// and augmentation on), as the study's PyTorch loop reported them; validation and test figures
/// use the model after the epoch. The test curve is recorded, never used to choose anything.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    pub epoch: usize,
    // JSON has no NaN (serde_json writes it as null): read null back as NaN, so a record with a
    // non-finite figure never makes its checkpoint unreadable.
    #[serde(deserialize_with = "f64_or_nan")]
    pub train_loss: f64,
    #[serde(deserialize_with = "f64_or_nan")]
    pub train_acc: f64,
    #[serde(deserialize_with = "f64_or_nan")]
    pub test_loss: f64,
    #[serde(deserialize_with = "f64_or_nan")]
    pub test_acc: f64,
    #[serde(deserialize_with = "f64_or_nan")]
    pub seconds: f64,
    #[serde(default)]
    pub valid_loss: Option<f64>,
    #[serde(default)]
    pub valid_acc: Option<f64>,
    /// Learning rate of the epoch's last step.
    #[serde(default)]
    pub learning_rate: Option<f64>,
}

fn f64_or_nan<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("{path}: {message}")]
    Checkpoint { path: PathBuf, message: String },
    #[error("no training examples")]
    Empty,
    #[error("the recipe selects on validation (select = \"best_valid\" or patience) but the split has no validation part")]
    NoValidation,
    #[error("crops of {crop} frames do not fit inputs of {frames} frames")]
    CropTooLong { crop: usize, frames: usize },
    #[error("the training loss is not a finite number at epoch {epoch}, step {step} (a learning rate too high, or non-finite inputs)")]
    NotFinite { epoch: usize, step: usize },
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
    /// Best validation epoch so far and its loss.
    #[serde(default)]
    best: Option<(usize, f64)>,
    /// Early stopping ended the run before its last epoch.
    #[serde(default)]
    stopped: bool,
    /// Optimizer steps taken (Adam's bias correction resumes from there).
    #[serde(default)]
    steps: u64,
}

/// The weights after the last trained epoch (safetensors, written from the CPU).
pub const WEIGHTS: &str = "model.safetensors";
/// The weights of the best validation epoch (`select = "best_valid"`).
pub const BEST_WEIGHTS: &str = "best.safetensors";
/// Adam's moments, one pair per trainable variable; the step count is in `progress.json`.
const OPTIMIZER: &str = "optimizer.safetensors";
const PROGRESS: &str = "progress.json";

/// How many epochs the run in `dir` has completed so far, from its `progress.json` (None when it
/// has none): for progress reports while it trains elsewhere, or after it was killed.
pub fn epochs_completed(dir: &Path) -> Option<usize> {
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join(PROGRESS)).ok()?).ok()?;
    v["history"].as_array().map(Vec::len)
}

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

/// Mean loss (negative log of the clip's probability of its label) and accuracy of `model` (in
/// validation mode) on `data`, clip by clip (`window`: see [`predict_proba`]).
pub fn evaluate(model: &Model, data: Batchable, window: Option<(usize, usize)>, batch: usize) -> (f64, f64) {
    if data.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let p = predict_proba(model, data, window, batch);
    let k = p.len() / data.len();
    let (mut loss, mut correct) = (0f64, 0usize);
    for (i, &y) in data.y.iter().enumerate() {
        let row = &p[i * k..(i + 1) * k];
        loss -= (row[y] as f64).max(1e-12).ln();
        let best = (0..k).max_by(|&a, &b| row[a].total_cmp(&row[b]).then(b.cmp(&a))).expect("classes");
        correct += usize::from(best == y);
    }
    (loss / data.len() as f64, correct as f64 / data.len() as f64)
}

/// Class probabilities, `n x classes`, row-major: the softmax of the logits, or with `window =
/// Some((crop, hop))` the mean of the softmax over every window of each clip.
pub fn predict_proba(model: &Model, data: Batchable, window: Option<(usize, usize)>, batch: usize) -> Vec<f32> {
    let _no_grad = tch::no_grad_guard();
    let (width, offsets) = match window {
        Some((crop, hop)) => (crop.min(data.frames), window_offsets(data.frames, crop, hop)),
        None => (data.frames, vec![0]),
    };
    let items: Vec<(usize, usize)> = (0..data.len()).flat_map(|r| offsets.iter().map(move |&o| (r, o))).collect();
    let mut sums: Vec<f32> = vec![];
    for chunk in items.chunks(batch.max(1)) {
        let logits = model.forward_t(&data.windows_tensor(chunk, width, model.device()), false);
        let p = Vec::<f32>::try_from(logits.softmax(1, Kind::Float).flatten(0, -1).to_device(Device::Cpu)).expect("f32 probabilities");
        let k = p.len() / chunk.len();
        if sums.is_empty() {
            sums = vec![0.0; data.len() * k];
        }
        for (j, &(r, _)) in chunk.iter().enumerate() {
            for c in 0..k {
                sums[r * k + c] += p[j * k + c];
            }
        }
    }
    let n = offsets.len() as f32;
    sums.iter_mut().for_each(|v| *v /= n);
    sums
}

/// Load a trained model from a run folder (`weights`: a file name in it, [`WEIGHTS`] or
/// [`BEST_WEIGHTS`]).
pub fn load_weights(dir: &Path, weights: &str, spec: &ModelSpec, device: Device) -> Result<Model, TrainError> {
    let mut model = build(spec, device)?;
    let path = dir.join(weights);
    model.load(&path).map_err(|e| ckpt_err(&path, e))?;
    Ok(model)
}

/// Load the last epoch's model from a run folder.
pub fn load_model(dir: &Path, spec: &ModelSpec, device: Device) -> Result<Model, TrainError> {
    load_weights(dir, WEIGHTS, spec, device)
}

fn write_json_atomic(path: &Path, value: &impl Serialize) -> Result<(), TrainError> {
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(value).expect("json")).map_err(|e| ckpt_err(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| ckpt_err(path, e))
}

/// What a run produced.
pub struct RunOutcome {
    /// The selected model (last or best validation epoch).
    pub model: Model,
    pub history: Vec<EpochRecord>,
    /// The selected epoch (1-based) and the weights file that holds it.
    pub epoch: usize,
    pub weights: &'static str,
    /// Early stopping ended the run.
    pub stopped_early: bool,
}

/// The data of one run: training clips, an optional validation part, the test part (tracked
/// every epoch, never used to choose anything).
#[derive(Clone, Copy)]
pub struct RunData<'a> {
    pub train: Batchable<'a>,
    pub valid: Option<Batchable<'a>>,
    pub test: Batchable<'a>,
}

/// One training step's batch: inputs, hard labels (for accuracy) and soft targets when the
/// recipe mixes or smooths.
fn training_batch(
    data: &Batchable,
    items: &[(usize, usize)],
    width: usize,
    classes: usize,
    (recipe, units): (&Recipe, &InputUnits),
    rng: &mut Rng,
) -> (Vec<f32>, Vec<usize>, Option<Vec<f32>>) {
    let d = data.mels * width;
    let mut xs = Vec::with_capacity(items.len() * d);
    for &(r, o) in items {
        data.push_window(r, o, width, &mut xs);
    }
    for sample in xs.chunks_mut(d) {
        augment(sample, data.mels, width, recipe, units, rng);
    }
    let ys: Vec<usize> = items.iter().map(|&(r, _)| data.y[r]).collect();
    if !recipe.soft_targets() {
        return (xs, ys, None);
    }
    let mut targets = vec![0f32; items.len() * classes];
    for (i, &y) in ys.iter().enumerate() {
        targets[i * classes + y] = 1.0;
    }
    if recipe.mixup_alpha > 0.0 && items.len() > 1 {
        let lambda = rng.beta(recipe.mixup_alpha as f64);
        let lambda = lambda.max(1.0 - lambda) as f32;
        let perm = shuffled(items.len(), rng.next_u64());
        let (x0, t0) = (xs.clone(), targets.clone());
        for (i, &j) in perm.iter().enumerate() {
            for k in 0..d {
                xs[i * d + k] = lambda * x0[i * d + k] + (1.0 - lambda) * x0[j * d + k];
            }
            for c in 0..classes {
                targets[i * classes + c] = lambda * t0[i * classes + c] + (1.0 - lambda) * t0[j * classes + c];
            }
        }
    }
    let e = recipe.label_smoothing;
    targets.iter_mut().for_each(|t| *t = (1.0 - e) * *t + e / classes as f32);
    (xs, ys, Some(targets))
}

/// A `batch x 1 x mels x width` input tensor on `device` from row-major values.
pub fn batch_tensor(xs: &[f32], batch: usize, mels: usize, width: usize, device: Device) -> Tensor {
    Tensor::from_slice(xs).view([batch as i64, 1, mels as i64, width as i64]).to_device(device)
}

/// Adam (AdamW with a weight decay), as `torch.optim.Adam` / `AdamW` compute it with their
/// defaults (betas 0.9 / 0.999, eps 1e-8, bias correction; the same arithmetic as PyTorch's
/// single-tensor path on the CPU up to float rounding), with state that can be saved and loaded
/// for an exact resume.
pub struct Adam {
    params: Vec<(String, Tensor)>,
    exp_avg: Vec<Tensor>,
    exp_avg_sq: Vec<Tensor>,
    /// Steps taken so far.
    pub step: u64,
    weight_decay: f64,
}

impl Adam {
    const BETA1: f64 = 0.9;
    const BETA2: f64 = 0.999;
    const EPS: f64 = 1e-8;

    /// Adam over the model's trainable variables; decoupled weight decay (AdamW) when
    /// `weight_decay > 0`.
    pub fn new(model: &Model, weight_decay: f64) -> Adam {
        let params = model.trainable();
        let zeros = || params.iter().map(|(_, p)| p.zeros_like()).collect::<Vec<_>>();
        Adam { exp_avg: zeros(), exp_avg_sq: zeros(), params, step: 0, weight_decay }
    }

    /// Clear the gradients before a backward pass.
    pub fn zero_grad(&mut self) {
        for (_, p) in &mut self.params {
            p.zero_grad();
        }
    }

    /// One update with learning rate `lr` from the gradients of the last backward pass.
    pub fn step(&mut self, lr: f64) {
        self.step += 1;
        let bias1 = 1.0 - Self::BETA1.powi(self.step as i32);
        let bias2_sqrt = (1.0 - Self::BETA2.powi(self.step as i32)).sqrt();
        let step_size = lr / bias1;
        tch::no_grad(|| {
            for (((_, p), m), v) in self.params.iter_mut().zip(&mut self.exp_avg).zip(&mut self.exp_avg_sq) {
                let g = p.grad();
                if !g.defined() {
                    continue;
                }
                if self.weight_decay > 0.0 {
                    let _ = p.g_mul_scalar_(1.0 - lr * self.weight_decay);
                }
                // m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2 (both as lerps);
                // p -= step_size m / (sqrt(v) / sqrt(1 - b2^t) + eps), the step folded into the
                // denominator.
                let _ = m.lerp_(&g, 1.0 - Self::BETA1);
                let _ = v.lerp_(&g.square(), 1.0 - Self::BETA2);
                let mut denom = v.sqrt();
                let _ = denom.g_div_scalar_(bias2_sqrt);
                let _ = denom.g_add_scalar_(Self::EPS);
                let _ = denom.g_div_scalar_(-step_size);
                let _ = p.addcdiv_(m, &denom);
            }
        });
    }

    /// Write the moments (safetensors); the step count goes with the run's progress.
    pub fn save(&self, path: &Path) -> Result<(), tch::TchError> {
        let mut t = vec![];
        for ((name, _), (m, v)) in self.params.iter().zip(self.exp_avg.iter().zip(&self.exp_avg_sq)) {
            t.push((format!("exp_avg.{name}"), m.shallow_clone()));
            t.push((format!("exp_avg_sq.{name}"), v.shallow_clone()));
        }
        save_tensors(&t, path)
    }

    /// Read the moments written by [`Adam::save`] after `step` steps.
    pub fn load(&mut self, path: &Path, step: u64) -> Result<(), tch::TchError> {
        let file: std::collections::HashMap<String, Tensor> = Tensor::read_safetensors(path)?.into_iter().collect();
        tch::no_grad(|| {
            for ((name, _), (m, v)) in self.params.iter().zip(self.exp_avg.iter_mut().zip(self.exp_avg_sq.iter_mut())) {
                for (key, dst) in [(format!("exp_avg.{name}"), m), (format!("exp_avg_sq.{name}"), v)] {
                    let src = file.get(&key).ok_or_else(|| tch::TchError::TensorNameNotFound(key.clone(), path.display().to_string()))?;
                    dst.f_copy_(src)?;
                }
            }
            Ok::<(), tch::TchError>(())
        })?;
        self.step = step;
        Ok(())
    }
}

/// One training step on a batch: forward (dropout and batch statistics on), cross-entropy (on
/// `soft` targets when given, `batch x classes`), backward, Adam at `lr`. Returns the batch's
/// mean loss and how many of its clips the logits got right (argmax = label).
pub fn train_step(model: &Model, optim: &mut Adam, x: &Tensor, y: &Tensor, soft: Option<&Tensor>, lr: f64) -> (f64, usize) {
    let logits = model.forward_t(x, true);
    let loss = match soft {
        None => logits.cross_entropy_for_logits(y),
        Some(t) => -(logits.log_softmax(1, Kind::Float) * t).sum_dim_intlist(1, false, Kind::Float).mean(Kind::Float),
    };
    optim.zero_grad();
    loss.backward();
    optim.step(lr);
    let correct = tch::no_grad(|| logits.argmax(1, false).eq_tensor(y).sum(Kind::Int64).int64_value(&[]));
    (loss.double_value(&[]), correct as usize)
}

/// How long training goes on between checkpoints: an epoch that ends this long or more after the
/// last checkpoint (or the run's start) writes one, as does the last epoch. Writing one costs
/// milliseconds (weights and optimizer state): with one after every epoch, the train stage of
/// logreg's 30 runs of 300 epochs on gtzan-mini took 202 s with burn (which synced each file to
/// disk), against 4.5 s with this interval (README, "Training and evaluation"), while a killed
/// run now redoes about this much training at most (or the one epoch in progress).
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(10);

/// Train one model, tracking validation (when given) and test every epoch, checkpointing into
/// `dir` ([`CHECKPOINT_INTERVAL`]). Resumes from `dir` when it holds a checkpoint of the same
/// spec and settings; a finished (or early-stopped) run is returned as it is.
pub fn train_run(
    spec: &ModelSpec,
    settings: &TrainSettings,
    data: RunData,
    device: Device,
    dir: &Path,
    on_epoch: impl FnMut(&EpochRecord),
) -> Result<RunOutcome, TrainError> {
    train_run_checkpointing(spec, settings, data, device, dir, CHECKPOINT_INTERVAL, on_epoch)
}

/// [`train_run`] with another interval between checkpoints (`Duration::ZERO`: after every
/// epoch). The interval changes what a killed run has to redo, never the results: every epoch's
/// randomness derives from (seed, epoch), so a run resumed from any epoch continues exactly.
pub fn train_run_checkpointing(
    spec: &ModelSpec,
    settings: &TrainSettings,
    data: RunData,
    device: Device,
    dir: &Path,
    interval: Duration,
    mut on_epoch: impl FnMut(&EpochRecord),
) -> Result<RunOutcome, TrainError> {
    let RunData { train, valid, test } = data;
    let recipe = &settings.recipe;
    if train.is_empty() {
        return Err(TrainError::Empty);
    }
    let valid = valid.filter(|v| !v.is_empty());
    if recipe.needs_validation() && valid.is_none() {
        return Err(TrainError::NoValidation);
    }
    let window = recipe.window();
    if let Some((crop, _)) = window
        && crop > train.frames
    {
        return Err(TrainError::CropTooLong { crop, frames: train.frames });
    }
    let width = window.map_or(train.frames, |w| w.0);
    std::fs::create_dir_all(dir).map_err(|e| ckpt_err(dir, e))?;
    tch::manual_seed(settings.seed as i64);
    let mut model = build(spec, device)?;
    let mut optim = Adam::new(&model, recipe.weight_decay);
    let mut progress = Progress { spec: spec.clone(), settings: settings.clone(), history: vec![], best: None, stopped: false, steps: 0 };

    let progress_path = dir.join(PROGRESS);
    if let Some(p) = std::fs::read(&progress_path).ok().and_then(|b| serde_json::from_slice::<Progress>(&b).ok())
        && &p.spec == spec
        && &p.settings == settings
        && !p.history.is_empty()
        && dir.join(WEIGHTS).exists()
    {
        model.load(&dir.join(WEIGHTS)).map_err(|e| ckpt_err(&dir.join(WEIGHTS), e))?;
        optim.load(&dir.join(OPTIMIZER), p.steps).map_err(|e| ckpt_err(&dir.join(OPTIMIZER), e))?;
        tracing::info!(model = %spec.name, epochs_done = p.history.len(), "resuming from the checkpoint");
        progress = p;
    }

    let per_epoch = train.len() * recipe.crops_per_epoch.max(1);
    let steps_per_epoch = per_epoch.div_ceil(recipe.batch_size.max(1));
    let total_steps = steps_per_epoch * recipe.epochs;
    let warmup = steps_per_epoch * recipe.warmup_epochs;
    let mut epoch = progress.history.len();
    let mut last_checkpoint = Instant::now();
    // The weights of a new best validation epoch, until the next checkpoint writes them.
    let mut best_unsaved: Option<Vec<(String, Tensor)>> = None;
    while epoch < recipe.epochs && !progress.stopped {
        let start = Instant::now();
        tch::manual_seed(mix(settings.seed, epoch as u64 + 1) as i64);
        let mut rng = Rng::new(mix(settings.seed ^ 0xA5A5_5A5A, epoch as u64));
        let order = shuffled(per_epoch, mix(settings.seed, epoch as u64));
        let items: Vec<(usize, usize)> = order
            .iter()
            .map(|&i| {
                let r = i % train.len();
                let o = if width < train.frames { rng.below(train.frames - width + 1) } else { 0 };
                (r, o)
            })
            .collect();
        let (mut loss_sum, mut correct) = (0f64, 0usize);
        let mut lr = recipe.learning_rate;
        for (s, chunk) in items.chunks(recipe.batch_size.max(1)).enumerate() {
            lr = recipe.learning_rate_at(epoch * steps_per_epoch + s, total_steps, warmup);
            let (xs, ys, soft) = training_batch(&train, chunk, width, spec.classes, (recipe, &settings.units), &mut rng);
            let x = batch_tensor(&xs, chunk.len(), train.mels, width, device);
            let y = Tensor::from_slice(&ys.iter().map(|&v| v as i64).collect::<Vec<_>>()).to_device(device);
            let soft = soft.map(|t| Tensor::from_slice(&t).view([chunk.len() as i64, spec.classes as i64]).to_device(device));
            let (loss, right) = train_step(&model, &mut optim, &x, &y, soft.as_ref(), lr);
            if !loss.is_finite() {
                return Err(TrainError::NotFinite { epoch: epoch + 1, step: s + 1 });
            }
            correct += right;
            loss_sum += loss * chunk.len() as f64;
        }
        let (valid_loss, valid_acc) = match valid {
            Some(v) => {
                let (l, a) = evaluate(&model, v, window, recipe.eval_batch_size);
                (Some(l), Some(a))
            }
            None => (None, None),
        };
        let (test_loss, test_acc) = evaluate(&model, test, window, recipe.eval_batch_size);
        let record = EpochRecord {
            epoch: epoch + 1,
            train_loss: loss_sum / per_epoch as f64,
            train_acc: correct as f64 / per_epoch as f64,
            test_loss,
            test_acc,
            seconds: start.elapsed().as_secs_f64(),
            valid_loss,
            valid_acc,
            learning_rate: Some(lr),
        };
        on_epoch(&record);
        progress.history.push(record);
        progress.steps = optim.step;
        epoch += 1;

        let improved = valid_loss.is_some_and(|l| progress.best.is_none_or(|(_, b)| l < b));
        if improved {
            progress.best = Some((epoch, valid_loss.expect("validation loss")));
            if recipe.select == Select::BestValid {
                best_unsaved = Some(model.snapshot());
            }
        }
        if let (Some(patience), Some((best, _))) = (recipe.patience, progress.best) {
            progress.stopped = epoch - best >= patience && epoch < recipe.epochs;
        }
        if epoch < recipe.epochs && !progress.stopped && last_checkpoint.elapsed() < interval {
            continue;
        }
        // Checkpoint: the best weights, the weights and optimizer under temporary names, then
        // the progress file that makes them count. A kill before its rename resumes from the
        // previous checkpoint, whose epochs replay exactly (new best weights included).
        if let Some(best) = best_unsaved.take() {
            let tmp = dir.join("best.tmp.safetensors");
            save_tensors(&best, &tmp).map_err(|e| ckpt_err(&tmp, e))?;
            std::fs::rename(&tmp, dir.join(BEST_WEIGHTS)).map_err(|e| ckpt_err(dir, e))?;
        }
        let tmp_w = dir.join("model.tmp.safetensors");
        let tmp_o = dir.join("optimizer.tmp.safetensors");
        model.save(&tmp_w).map_err(|e| ckpt_err(&tmp_w, e))?;
        optim.save(&tmp_o).map_err(|e| ckpt_err(&tmp_o, e))?;
        std::fs::rename(&tmp_w, dir.join(WEIGHTS)).map_err(|e| ckpt_err(dir, e))?;
        std::fs::rename(&tmp_o, dir.join(OPTIMIZER)).map_err(|e| ckpt_err(dir, e))?;
        write_json_atomic(&progress_path, &progress)?;
        last_checkpoint = Instant::now();
    }
    if progress.stopped {
        tracing::info!(model = %spec.name, epochs = progress.history.len(), "stopped early: no better validation loss");
    }
    let (epoch, weights, model) = match (recipe.select, progress.best) {
        (Select::BestValid, Some((best, _))) => (best, BEST_WEIGHTS, load_weights(dir, BEST_WEIGHTS, spec, device)?),
        _ => (progress.history.len(), WEIGHTS, model),
    };
    Ok(RunOutcome { model, history: progress.history, epoch, weights, stopped_early: progress.stopped })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_with_a_non_finite_figure_reads_back() {
        let r = EpochRecord {
            epoch: 3,
            train_loss: 0.5,
            train_acc: 0.75,
            test_loss: f64::NAN,
            test_acc: f64::INFINITY,
            seconds: 1.0,
            valid_loss: Some(f64::NAN),
            valid_acc: None,
            learning_rate: Some(1e-3),
        };
        let json = serde_json::to_string(&r).unwrap();
        assert!(json.contains(r#""test_loss":null"#), "{json}");
        let back: EpochRecord = serde_json::from_str(&json).unwrap();
        assert!(back.test_loss.is_nan() && back.test_acc.is_nan() && back.valid_loss.is_none());
        assert_eq!((back.epoch, back.train_loss, back.learning_rate), (3, 0.5, Some(1e-3)));
    }

    #[test]
    fn shuffles_are_permutations_and_seeded() {
        let a = shuffled(50, 3);
        let mut s = a.clone();
        s.sort();
        assert_eq!(s, (0..50).collect::<Vec<_>>());
        assert_eq!(a, shuffled(50, 3));
        assert_ne!(a, shuffled(50, 4));
    }

    #[test]
    fn windows_cover_the_input() {
        assert_eq!(window_offsets(10, 4, 4), [0, 4, 6]);
        assert_eq!(window_offsets(8, 4, 2), [0, 2, 4]);
        assert_eq!(window_offsets(3, 4, 2), [0]);
        assert_eq!(window_offsets(1291, 128, 128).len(), 11);
    }

    #[test]
    fn augmentation_keeps_shape_and_masks_what_it_says() {
        let recipe = Recipe { freq_masks: 1, freq_mask_width: 3, time_masks: 2, time_mask_width: 5, ..Recipe::default() };
        let units = InputUnits::default();
        let mut rng = Rng::new(9);
        for _ in 0..20 {
            let mut s = vec![1.0f32; 8 * 20];
            augment(&mut s, 8, 20, &recipe, &units, &mut rng);
            assert_eq!(s.len(), 160);
            let zeros = s.iter().filter(|v| **v == 0.0).count();
            // At most 3 full mel rows and 2 x 5 full frame columns.
            assert!(zeros <= 3 * 20 + 2 * 5 * 8, "{zeros}");
            assert!(s.iter().all(|v| *v == 0.0 || *v == 1.0));
        }
        let drop = Recipe { band_drop: 1.0, ..Recipe::default() };
        let from5 = InputUnits { band_drop_from: 5, ..units };
        for _ in 0..20 {
            // Band m holds m + 1 in every frame (band 0 the lowest).
            let mut s: Vec<f32> = (0..8 * 4).map(|i| (i / 4 + 1) as f32).collect();
            augment(&mut s, 8, 4, &drop, &from5, &mut rng);
            let bands: Vec<f32> = s.chunks(4).map(|b| b[0]).collect();
            assert!(s.chunks(4).all(|b| b.iter().all(|v| *v == b[0])), "whole bands");
            let cut = (1..8).find(|&m| bands[m] == 1.0).unwrap_or(8);
            assert!((5..8).contains(&cut), "cut at band 5, 6 or 7: {bands:?}");
            assert!(bands[..cut].iter().enumerate().all(|(m, v)| *v == (m + 1) as f32), "bands below the cut kept: {bands:?}");
            assert!(bands[cut..].iter().all(|v| *v == 1.0), "bands from the cut up at the floor: {bands:?}");
        }
        // 3 dB over inputs of 6 dB per unit: up to +-0.5.
        let gain = Recipe { gain_db: 3.0, ..Recipe::default() };
        let mut s = vec![1.0f32; 16];
        augment(&mut s, 2, 8, &gain, &InputUnits { db_per_unit: 6.0, ..units }, &mut rng);
        assert!(s.iter().all(|v| (*v - s[0]).abs() < 1e-7) && (s[0] - 1.0).abs() <= 0.5, "one offset per sample");
    }

    #[test]
    fn mixup_and_smoothing_make_proper_targets() {
        let x: Vec<f32> = (0..4 * 6).map(|v| v as f32).collect();
        let y = [0usize, 1, 2, 1];
        let data = Batchable { x: &x, y: &y, mels: 2, frames: 3 };
        let recipe = Recipe { mixup_alpha: 0.4, label_smoothing: 0.1, ..Recipe::default() };
        let items = [(0, 0), (1, 0), (2, 0), (3, 0)];
        let (xs, ys, t) = training_batch(&data, &items, 3, 3, (&recipe, &InputUnits::default()), &mut Rng::new(1));
        assert_eq!((xs.len(), ys.clone()), (24, vec![0, 1, 2, 1]), "labels are the clips' own");
        let t = t.unwrap();
        for (i, row) in t.chunks(3).enumerate() {
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
            let top = (0..3).max_by(|&a, &b| row[a].total_cmp(&row[b])).unwrap();
            assert!(row[ys[i]] >= row[top] - 1e-6, "the clip's own label keeps the larger share");
            assert!(row.iter().all(|v| *v >= 0.1 / 3.0 - 1e-6));
        }
        let mut rng = Rng::new(5);
        let mean = (0..2000).map(|_| rng.beta(0.4)).sum::<f64>() / 2000.0;
        assert!((mean - 0.5).abs() < 0.05, "Beta(a, a) has mean 1/2: {mean}");
    }

    /// Adam's update, computed by hand (as torch.optim.Adam / AdamW define it) for a linear
    /// model whose loss gradient is known, over three steps with weight decay.
    #[test]
    fn adam_steps_as_pytorch_defines_them() {
        let spec = ModelSpec { name: "linear".into(), mels: 1, frames: 2, classes: 1 };
        let model = build(&spec, Device::Cpu).unwrap();
        let mut optim = Adam::new(&model, 0.1);
        let vars: std::collections::HashMap<String, Tensor> = model.trainable().into_iter().collect();
        let w0 = Vec::<f32>::try_from(vars["fc.weight"].flatten(0, -1)).unwrap();
        let (lr, wd) = (0.01f64, 0.1f64);
        // loss = sum(w * c) has gradient c, the same every step.
        let c = [0.5f64, -2.0];
        let (mut w, mut m, mut v) = (w0.iter().map(|&x| x as f64).collect::<Vec<_>>(), [0.0; 2], [0.0; 2]);
        for t in 1..=3 {
            let loss = (&vars["fc.weight"] * Tensor::from_slice(&[0.5f32, -2.0]).view([1, 2])).sum(Kind::Float);
            optim.zero_grad();
            loss.backward();
            optim.step(lr);
            for i in 0..2 {
                w[i] *= 1.0 - lr * wd;
                m[i] = 0.9 * m[i] + 0.1 * c[i];
                v[i] = 0.999 * v[i] + 0.001 * c[i] * c[i];
                let (mh, vh) = (m[i] / (1.0 - 0.9f64.powi(t)), v[i] / (1.0 - 0.999f64.powi(t)));
                w[i] -= lr * mh / (vh.sqrt() + 1e-8);
            }
        }
        let got = Vec::<f32>::try_from(vars["fc.weight"].flatten(0, -1)).unwrap();
        for (g, e) in got.iter().zip(&w) {
            assert!((*g as f64 - e).abs() < 1e-6, "{got:?} against {w:?}");
        }
        assert_eq!(optim.step, 3);
        // The bias got no gradient from this loss (it is not in it): left as it was.
        assert!(!vars["fc.bias"].grad().defined() || vars["fc.bias"].grad().abs().sum(Kind::Float).double_value(&[]) == 0.0);
    }

    #[test]
    fn cosine_schedule_warms_up_then_decays_to_zero() {
        let r = Recipe { schedule: Schedule::Cosine, learning_rate: 1.0, ..Recipe::default() };
        assert!((r.learning_rate_at(0, 100, 10) - 0.1).abs() < 1e-12);
        assert!((r.learning_rate_at(9, 100, 10) - 1.0).abs() < 1e-12);
        assert!((r.learning_rate_at(10, 100, 10) - 1.0).abs() < 1e-12);
        assert!((r.learning_rate_at(55, 100, 10) - 0.5).abs() < 1e-12);
        assert!(r.learning_rate_at(99, 100, 10) < 0.01);
        assert_eq!(Recipe { learning_rate: 0.3, ..Recipe::default() }.learning_rate_at(50, 100, 10), 0.3);
    }
}

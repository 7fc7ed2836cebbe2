//! Prediction on audio files with the trained checkpoints: the same decoding and feature code as
//! training, with the feature configuration and normalisation stored in each checkpoint.
//!
//! A file is cut into windows of the training clip length (1,291 frames = 29.98 s by default);
//! the last, shorter window counts when it is at least half as long (or is the only one) and is
//! padded as training clips were. Class probabilities are averaged over windows and over the
//! runs (seeds, folds) of the chosen model: an ensemble, so no run is picked by its test score.

use std::path::{Path, PathBuf};

use genrelab_models::default_device;
use genrelab_models::train::{Batchable, load_model, predict_proba};
use serde::Serialize;

use crate::StageError;
use crate::audio::decode_wav;
use crate::evaluate::read_evaluation;
use crate::logmel::LogMel;
use crate::train::{Checkpoint, read_checkpoints};

#[derive(Debug, Clone, Serialize)]
pub struct Prediction {
    pub file: String,
    pub seconds: f64,
    pub windows: usize,
    /// The best genres, most probable first.
    pub top: Vec<(String, f64)>,
    pub error: Option<String>,
}

/// The model to use: `name`, else the one with the best mean test accuracy in the last evaluation.
pub fn choose_model(report_dir: &Path, name: Option<&str>) -> Result<String, StageError> {
    if let Some(n) = name {
        return Ok(n.to_string());
    }
    read_evaluation(report_dir)?
        .best_model()
        .map(|m| m.model.clone())
        .ok_or_else(|| StageError::Source(format!("{}: no models", report_dir.display())))
}

/// Cut `samples` into windows of `len` samples (see the module doc).
pub fn windows(samples: &[f32], len: usize) -> Vec<&[f32]> {
    if samples.len() <= len {
        return vec![samples];
    }
    let mut out: Vec<&[f32]> = samples.chunks(len).collect();
    if out.len() > 1 && out.last().is_some_and(|w| w.len() * 2 < len) {
        out.pop();
    }
    out
}

pub struct Predictor {
    pub model: String,
    runs: Vec<(genrelab_models::Model, Checkpoint)>,
    lm: LogMel,
    device: burn::prelude::Device,
}

impl Predictor {
    pub fn load(train_dir: &Path, model: &str) -> Result<Predictor, StageError> {
        let device = default_device();
        let mut runs = vec![];
        for (dir, c) in read_checkpoints(train_dir)?.into_iter().filter(|(_, c)| c.spec.name == model) {
            let m = load_model(&dir, &c.spec, &device).map_err(|e| StageError::Failed(e.to_string()))?;
            runs.push((m, c));
        }
        let first = runs.first().ok_or_else(|| StageError::Source(format!("no trained runs of model `{model}` in {}", train_dir.display())))?;
        let lm = LogMel::new(&first.1.feature_config).map_err(StageError::Config)?;
        Ok(Predictor { model: model.to_string(), runs, lm, device })
    }

    pub fn labels(&self) -> &[String] {
        &self.runs[0].1.labels
    }

    /// Mean class probabilities of a recording and the number of windows used.
    pub fn probabilities(&self, samples: &[f32]) -> (Vec<f64>, usize) {
        let cfg = self.lm.config();
        let wins = windows(samples, cfg.window_samples());
        let k = self.labels().len();
        let mut total = vec![0f64; k];
        for (model, c) in &self.runs {
            let x: Vec<f32> = wins
                .iter()
                .flat_map(|w| self.lm.features(w).small.values)
                .map(|v| (v - c.normalize_mean) / c.normalize_std)
                .collect();
            let y = vec![0usize; wins.len()];
            let p = predict_proba(model, Batchable { x: &x, y: &y, mels: cfg.out_mels, frames: cfg.out_frames }, 64, &self.device);
            for row in p.chunks(k) {
                for (t, v) in total.iter_mut().zip(row) {
                    *t += *v as f64;
                }
            }
        }
        let n = (wins.len() * self.runs.len()) as f64;
        (total.into_iter().map(|t| t / n).collect(), wins.len())
    }

    /// Predict one file; failures are reported in the result, not raised.
    pub fn predict_file(&self, path: &Path, top: usize) -> Prediction {
        let file = path.display().to_string();
        let fail = |e: String| Prediction { file: file.clone(), seconds: 0.0, windows: 0, top: vec![], error: Some(e) };
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) => return fail(e.to_string()),
        };
        let decoded = match decode_wav(&bytes, self.lm.config().sample_rate) {
            Ok(d) => d,
            Err(e) => return fail(e.to_string()),
        };
        let (p, windows) = self.probabilities(&decoded.samples);
        let mut ranked: Vec<(String, f64)> = self.labels().iter().cloned().zip(p).collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
        ranked.truncate(top);
        Prediction { file, seconds: decoded.samples.len() as f64 / self.lm.config().sample_rate as f64, windows, top: ranked, error: None }
    }
}

/// Predict every file; the checkpoints are loaded once.
pub fn predict_files(report_dir: &Path, train_dir: &Path, files: &[PathBuf], model: Option<&str>, top: usize) -> Result<(String, Vec<Prediction>), StageError> {
    let name = choose_model(report_dir, model)?;
    let p = Predictor::load(train_dir, &name)?;
    Ok((name, files.iter().map(|f| p.predict_file(f, top)).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_cover_long_files_and_keep_short_ones() {
        let x = vec![0f32; 1000];
        assert_eq!(windows(&x[..300], 400).len(), 1);
        let w = windows(&x, 400); // 400 + 400 + 200: the last is half a window, kept
        assert_eq!(w.iter().map(|w| w.len()).collect::<Vec<_>>(), [400, 400, 200]);
        let w = windows(&x[..900], 400); // 400 + 400 + 100: the last is dropped
        assert_eq!(w.len(), 2);
    }
}

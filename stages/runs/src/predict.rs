//! Prediction on audio files with the trained checkpoints: the same decoding and feature code as
//! training, with the feature configuration and normalisation stored in each checkpoint.
//!
//! Files may be WAV, FLAC, MP3, Ogg Vorbis, or AAC or ALAC in MP4 (.m4a) at any sample rate and
//! channel count (averaged to mono and resampled to the features' rate). A recording is cut
//! into windows of the training clip length (1,291 frames = 29.98 s by default), `hop` apart
//! (default: one window length); the last, shorter window counts when it is at least half as
//! long (or is the only one) and is padded as training clips were. Crop models average their crops inside each window, as in
//! evaluation (windows the runs' own hop apart, or the last evaluation's `[evaluate]
//! window_hop`). Class probabilities are averaged over the runs (seeds, folds) of the chosen
//! model, an ensemble, so no run is picked by its test score; the file's are the mean over its
//! windows, and `--timeline` shows each window's.

use std::path::{Path, PathBuf};

use genrelab_models::train::predict_proba;
use genrelab_models::{Input, default_device};
use serde::Serialize;

use crate::StageError;
use crate::audio::{Limits, decode_within};
use crate::descriptors::describe;
use crate::evaluate::{Evaluation, read_evaluation};
use crate::logmel::{FeatureConfig, Features, LogMel};
use crate::train::{Checkpoint, RawInputs, batch, read_checkpoints};

/// One window's result.
#[derive(Debug, Clone, Serialize)]
pub struct WindowPrediction {
    pub start: f64,
    pub end: f64,
    pub top: Vec<(String, f64)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Prediction {
    pub file: String,
    pub seconds: f64,
    pub sample_rate: u32,
    pub channels: u16,
    pub windows: usize,
    /// The best genres, most probable first.
    pub top: Vec<(String, f64)>,
    /// Each window's best genres (filled with `timeline`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub timeline: Vec<WindowPrediction>,
    pub error: Option<String>,
    /// Why the prediction is less reliable, when it is (several joined with "; "): the file's
    /// band is narrower than what the models read (its Nyquist frequency below their highest
    /// frequency), it is shorter than half a training clip (padded as short clips were), or it
    /// is silent (peak below -80 dBFS: the features of silence are noise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

/// The model or ensemble across models (`a+b`) with the best mean test accuracy in the last
/// evaluation (read from `report_dir`): what predict uses when no model is named.
pub fn best_model(evaluation: &Evaluation, report_dir: &Path) -> Result<String, StageError> {
    evaluation.best().map(|b| b.0.to_string()).ok_or_else(|| StageError::Source(format!("{}: no models", report_dir.display())))
}

/// Start offsets of the windows of `len` samples, `hop` apart, over `n` samples (see the module doc).
pub fn window_starts(n: usize, len: usize, hop: usize) -> Vec<usize> {
    if n <= len {
        return vec![0];
    }
    let hop = hop.max(1);
    let mut out = vec![];
    let mut s = 0;
    while s < n {
        let remaining = n - s;
        if remaining < len && !out.is_empty() && (remaining * 2 < len || s + len - hop >= n) {
            break;
        }
        out.push(s);
        if s + len >= n {
            break;
        }
        s += hop;
    }
    out
}

pub struct Predictor {
    pub model: String,
    /// Each run with its weight in the average.
    runs: Vec<(genrelab_models::Model, Checkpoint, f64)>,
    lm: LogMel,
    /// Crop models: the hop between the windows inside each 30 s window, when the evaluation
    /// set one (`[evaluate] window_hop`); None: each run's own.
    window_hop: Option<usize>,
}

impl Predictor {
    /// Load every run of `model`, or of each member of an ensemble across models `a+b` (each
    /// member's runs averaged, then the members with equal weight, as evaluate scores it).
    pub fn load(train_dir: &Path, model: &str) -> Result<Predictor, StageError> {
        let device = default_device().map_err(|e| StageError::Config(e.to_string()))?;
        let checkpoints = read_checkpoints(train_dir)?;
        let members: Vec<&str> = model.split('+').collect();
        let mut runs = vec![];
        for member in &members {
            let mine: Vec<_> = checkpoints.iter().filter(|(_, c)| c.spec.name == *member).collect();
            if mine.is_empty() {
                return Err(StageError::Source(format!("no trained runs of model `{member}` in {}", train_dir.display())));
            }
            let weight = 1.0 / (members.len() * mine.len()) as f64;
            for (dir, c) in mine {
                let m = c.load_model(dir, device)?;
                runs.push((m, c.clone(), weight));
            }
        }
        let first = &runs[0].1;
        if let Some((_, c, _)) = runs.iter().find(|(_, c, _)| c.labels != first.labels || c.feature_config != first.feature_config) {
            return Err(StageError::Source(format!("run {} has other labels or features than run {}; train them again", c.run, first.run)));
        }
        let lm = LogMel::new(&first.feature_config)?;
        Ok(Predictor { model: model.to_string(), runs, lm, window_hop: None })
    }

    /// Average crop models over windows `hop` frames apart (None: each run's own), as
    /// `[evaluate] window_hop` makes evaluate do.
    pub fn with_window_hop(mut self, hop: Option<usize>) -> Predictor {
        self.window_hop = hop;
        self
    }

    pub fn labels(&self) -> &[String] {
        &self.runs[0].1.labels
    }

    pub fn sample_rate(&self) -> u32 {
        self.lm.config().sample_rate
    }

    /// Class probabilities of every window (`hop` samples apart; 0 = one window length), each
    /// averaged over the runs, with the windows' start sample and length.
    pub fn window_probabilities(&self, samples: &[f32], hop: usize) -> Vec<(usize, usize, Vec<f64>)> {
        let cfg = self.lm.config();
        let len = cfg.window_samples();
        let starts = window_starts(samples.len(), len, if hop == 0 { len } else { hop });
        let wins: Vec<&[f32]> = starts.iter().map(|&s| &samples[s..(s + len).min(samples.len())]).collect();
        // Log-mel features only where a spectrogram model needs them.
        let feats: Vec<_> = if self.runs.iter().any(|(_, c, _)| c.input != Input::Stats) {
            wins.iter().map(|w| self.lm.features(w)).collect()
        } else {
            vec![]
        };
        // Descriptors of every window, once per band limit the descriptor runs were trained with.
        let mut stats: Vec<(Option<f64>, Vec<Vec<f32>>)> = vec![];
        for (_, c, _) in self.runs.iter().filter(|(_, c, _)| c.input == Input::Stats) {
            if !stats.iter().any(|(hz, _)| *hz == c.max_hz) {
                stats.push((c.max_hz, wins.iter().map(|w| describe(&self.lm, w, c.max_hz)).collect()));
            }
        }
        let raw = Windows { cfg, feats, stats };
        let items: Vec<usize> = (0..wins.len()).collect();
        let y = vec![0usize; wins.len()];
        let k = self.labels().len();
        let mut total = vec![vec![0f64; k]; wins.len()];
        for (model, c, weight) in &self.runs {
            let x = batch(c, &raw, &items).expect("every window's inputs are computed above");
            let p = predict_proba(model, x.with_labels(&y), c.test_window(self.window_hop), 16);
            for (t, row) in total.iter_mut().zip(p.chunks(k)) {
                for (t, v) in t.iter_mut().zip(row) {
                    *t += *v as f64 * weight;
                }
            }
        }
        starts.into_iter().zip(wins.iter().map(|w| w.len())).zip(total).map(|((s, l), p)| (s, l, p)).collect()
    }

    /// The highest frequency any loaded run reads (its band limit, else the features' top).
    pub fn highest_hz(&self) -> f64 {
        let top = self.lm.config().fmax();
        self.runs
            .iter()
            .map(|(_, c, _)| match c.input {
                Input::Clip => top,
                Input::Crops | Input::Stats => c.max_hz.map_or(top, |hz| hz.min(top)),
            })
            .fold(0.0, f64::max)
    }

    /// A warning when a file recorded at `rate` holds no content in part of the band the models read.
    fn band_warning(&self, rate: u32) -> Option<String> {
        let (nyquist, read) = (rate as f64 / 2.0, self.highest_hz());
        (nyquist < read - 1.0).then(|| {
            format!("recorded at {rate} Hz: nothing above {nyquist:.0} Hz, but the models read up to {read:.0} Hz (set max_hz when training for such sources)")
        })
    }

    /// Every warning for a decoded file: its band, its length, silence.
    fn warnings(&self, samples: &[f32], rate: u32) -> Option<String> {
        let sr = self.sample_rate() as f64;
        let clip = self.lm.config().window_samples();
        let mut w: Vec<String> = self.band_warning(rate).into_iter().collect();
        if samples.len() * 2 < clip {
            let secs = samples.len() as f64 / sr;
            let length = if secs < 0.1 { format!("{:.0} ms", secs * 1000.0) } else { format!("{secs:.1} s") };
            w.push(format!("only {length} of audio, padded to the models' {:.1} s clip: too short to tell much", clip as f64 / sr));
        }
        let peak = samples.iter().fold(0f32, |m, x| m.max(x.abs()));
        if peak < SILENT_PEAK {
            let level = if peak > 0.0 { format!("peak {:.0} dBFS", 20.0 * peak.log10()) } else { "digital silence".into() };
            w.push(format!("silent ({level}): the prediction means nothing"));
        }
        (!w.is_empty()).then(|| w.join("; "))
    }

    fn ranked(&self, p: &[f64], top: usize) -> Vec<(String, f64)> {
        let mut ranked: Vec<(String, f64)> = self.labels().iter().cloned().zip(p.iter().copied()).collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
        ranked.truncate(top);
        ranked
    }

    /// Predict one file; failures are reported in the result, not raised.
    pub fn predict_file(&self, path: &Path, opts: &PredictOptions) -> Prediction {
        let file = path.display().to_string();
        let fail = |e: String| Prediction {
            file: file.clone(),
            seconds: 0.0,
            sample_rate: 0,
            channels: 0,
            windows: 0,
            top: vec![],
            timeline: vec![],
            error: Some(e),
            warning: None,
        };
        if let Err(e) =
            std::fs::metadata(path).map_err(|e| e.to_string()).and_then(|m| opts.limits.check_bytes(m.len()).map_err(|e| e.to_string()))
        {
            return fail(e);
        }
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) => return fail(e.to_string()),
        };
        let ext = path.extension().and_then(|e| e.to_str());
        let decoded = match decode_within(&bytes, ext, self.sample_rate(), &opts.limits) {
            Ok(d) => d,
            Err(e) => return fail(e.to_string()),
        };
        let sr = self.sample_rate() as f64;
        let per_window = self.window_probabilities(&decoded.samples, (opts.hop_seconds.unwrap_or(0.0) * sr).round() as usize);
        let k = self.labels().len();
        let mut mean = vec![0f64; k];
        for (_, _, p) in &per_window {
            for (m, v) in mean.iter_mut().zip(p) {
                *m += v / per_window.len() as f64;
            }
        }
        let timeline = if opts.timeline {
            per_window
                .iter()
                .map(|(s, l, p)| WindowPrediction { start: *s as f64 / sr, end: (*s + *l) as f64 / sr, top: self.ranked(p, opts.top) })
                .collect()
        } else {
            vec![]
        };
        Prediction {
            file,
            seconds: decoded.samples.len() as f64 / sr,
            sample_rate: decoded.source_rate,
            channels: decoded.channels,
            windows: per_window.len(),
            top: self.ranked(&mean, opts.top),
            timeline,
            error: None,
            warning: self.warnings(&decoded.samples, decoded.source_rate),
        }
    }
}

/// A file whose peak stays below -80 dBFS is silent: the features (dB relative to the clip's
/// maximum, floored 80 dB below it) would turn its noise floor into a full-scale spectrogram.
const SILENT_PEAK: f32 = 1e-4;

/// How to predict.
#[derive(Debug, Clone)]
pub struct PredictOptions {
    pub top: usize,
    /// Seconds between window starts (None: one window length, no overlap).
    pub hop_seconds: Option<f64>,
    /// Keep every window's result.
    pub timeline: bool,
    /// The largest file and longest clip read (`[limits]`).
    pub limits: Limits,
}

/// The extensions (any case) that a folder given to predict is searched for.
pub const AUDIO_EXTENSIONS: [&str; 8] = ["wav", "wave", "flac", "mp3", "ogg", "oga", "m4a", "mp4"];

/// The files to predict: each file as given (whatever its name: the decoder reads its bytes),
/// each folder replaced by the audio files under it ([`AUDIO_EXTENSIONS`], sub-folders
/// included, in path order; names starting with `.` are skipped, such as the `._song.mp3`
/// metadata files that macOS leaves on other disks; links to folders are not followed). A folder without any audio file is an
/// error naming it, as is one that cannot be read; a missing file is left for its prediction to
/// report, so that the other files are still predicted.
pub fn audio_files(inputs: &[PathBuf]) -> Result<Vec<PathBuf>, StageError> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), StageError> {
        let entries = std::fs::read_dir(dir).map_err(|e| StageError::io(dir, e))?;
        let mut paths = entries.map(|e| e.map(|e| e.path())).collect::<Result<Vec<_>, _>>().map_err(|e| StageError::io(dir, e))?;
        paths.sort();
        for path in paths {
            if path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.')) {
                continue;
            }
            // A link to a folder is not followed (a link to `.` would repeat the folder forever).
            let link = std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink());
            if path.is_dir() {
                if link {
                    tracing::debug!(path = %path.display(), "a link to a folder: not followed");
                } else {
                    walk(&path, out)?;
                }
            } else if path.extension().and_then(|e| e.to_str()).is_some_and(|e| AUDIO_EXTENSIONS.iter().any(|a| a.eq_ignore_ascii_case(e)))
            {
                out.push(path);
            }
        }
        Ok(())
    }
    let mut files = Vec::new();
    for input in inputs {
        if input.is_dir() {
            let before = files.len();
            walk(input, &mut files)?;
            if files.len() == before {
                return Err(StageError::Source(format!(
                    "{}: a folder without audio files (searched for .{}, sub-folders included)",
                    input.display(),
                    AUDIO_EXTENSIONS.join(", .")
                )));
            }
        } else {
            files.push(input.clone());
        }
    }
    Ok(files)
}

/// Predict every file, and every audio file in the folders among `inputs` ([`audio_files`]);
/// the checkpoints are loaded once. A progress bar counts the files (on a terminal).
pub fn predict_files(
    report_dir: &Path,
    train_dir: &Path,
    inputs: &[PathBuf],
    model: Option<&str>,
    opts: &PredictOptions,
) -> Result<(String, Vec<Prediction>), StageError> {
    let files = audio_files(inputs)?;
    let evaluation = read_evaluation(report_dir);
    // Crop windows as the evaluation scored them.
    let hop = evaluation.as_ref().ok().and_then(|e| e.window_hop);
    let name = match model {
        Some(n) => n.to_string(),
        None => best_model(&evaluation?, report_dir)?,
    };
    let p = Predictor::load(train_dir, &name)?.with_window_hop(hop);
    let bar = crate::progress::bar(files.len() as u64, "predict");
    let preds = files.iter().map(|f| p.predict_file(f, opts)).inspect(|_| bar.inc(1)).collect();
    bar.finish_and_clear();
    Ok((name, preds))
}

/// The inputs of an audio file's windows: their log-mel features (when a spectrogram model
/// reads them) and their descriptors for each band limit a descriptor model was trained with.
struct Windows<'a> {
    cfg: &'a FeatureConfig,
    feats: Vec<Features>,
    stats: Vec<(Option<f64>, Vec<Vec<f32>>)>,
}

impl RawInputs for Windows<'_> {
    fn dims(&self, c: &Checkpoint) -> (usize, usize) {
        match c.input {
            Input::Clip => (self.cfg.out_mels, self.cfg.out_frames),
            Input::Crops => (self.cfg.n_mels, self.cfg.frames),
            Input::Stats => (1, c.stats_mean.len()),
        }
    }

    fn clip(&self, i: usize) -> Result<&[f32], StageError> {
        self.feats.get(i).map(|f| f.small.values.as_slice()).ok_or_else(|| StageError::Failed("no log-mel computed".into()))
    }

    fn full(&self, i: usize) -> Result<&[f32], StageError> {
        self.feats.get(i).map(|f| f.full.values.as_slice()).ok_or_else(|| StageError::Failed("no log-mel computed".into()))
    }

    fn stats(&self, i: usize, max_hz: Option<f64>) -> Result<&[f32], StageError> {
        self.stats
            .iter()
            .find(|(hz, _)| *hz == max_hz)
            .and_then(|(_, d)| d.get(i))
            .map(Vec::as_slice)
            .ok_or_else(|| StageError::Failed(format!("no descriptors computed for max_hz {max_hz:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn a_folder_linking_to_itself_is_searched_once() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("music");
        std::fs::create_dir_all(d.join("sub")).unwrap();
        std::fs::write(d.join("a.wav"), b"x").unwrap();
        std::fs::write(d.join("sub/b.mp3"), b"x").unwrap();
        std::os::unix::fs::symlink(".", d.join("self")).unwrap();
        std::os::unix::fs::symlink("..", d.join("sub/up")).unwrap();
        std::os::unix::fs::symlink("a.wav", d.join("link to a.wav")).unwrap();
        let files = audio_files(std::slice::from_ref(&d)).unwrap();
        assert_eq!(files, [d.join("a.wav"), d.join("link to a.wav"), d.join("sub/b.mp3")]);
    }

    #[test]
    fn windows_cover_long_files_and_keep_short_ones() {
        assert_eq!(window_starts(300, 400, 400), [0]);
        // 400 + 400 + 200: the last is half a window, kept.
        assert_eq!(window_starts(1000, 400, 400), [0, 400, 800]);
        // 400 + 400 + 100: the last is dropped.
        assert_eq!(window_starts(900, 400, 400), [0, 400]);
        // Overlapping windows, hop 200: the last window that still starts inside is kept.
        assert_eq!(window_starts(1000, 400, 200), [0, 200, 400, 600]);
    }

    #[test]
    fn folders_stand_for_the_audio_files_under_them_and_files_are_kept_as_given() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("music");
        for f in ["b.mp3", "a.WAV", "notes.txt", ".hidden.mp3", "sub/c.flac", "sub/d.ogg", "sub/cover.jpg", ".cache/e.wav"] {
            let path = root.join(f);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, b"").unwrap();
        }
        let named = dir.path().join("named.bin");
        let missing = dir.path().join("missing.wav");
        let got = audio_files(&[named.clone(), root.clone(), missing.clone()]).unwrap();
        let expected = [named, root.join("a.WAV"), root.join("b.mp3"), root.join("sub/c.flac"), root.join("sub/d.ogg"), missing];
        assert_eq!(got, expected);
        // A folder without audio files is an error naming it.
        let empty = root.join("empty");
        std::fs::create_dir(&empty).unwrap();
        std::fs::write(empty.join("readme.md"), b"").unwrap();
        let err = audio_files(&[root.join("a.WAV"), empty.clone()]).unwrap_err().to_string();
        assert!(err.starts_with(&format!("{}: a folder without audio files", empty.display())), "{err}");
        assert!(err.contains(".wav, .wave, .flac, .mp3, .ogg, .oga, .m4a, .mp4"), "{err}");
    }
}

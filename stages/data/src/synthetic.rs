//! The built-in synthetic genre set: ten "genres" of generated audio in GTZAN's layout, so the
//! whole pipeline runs anywhere with nothing downloaded (`make demo`, the tests).
//!
//! Each genre is a recipe (drones, drum pulses, chirps, chords, ...). Every clip draws its own
//! pitch, tempo, loudness and noise level from a seeded generator and mixes in another genre's
//! recipe 12-26 dB lower, so the classes overlap a little and models have something to learn.
//! The same seed always gives the same bytes.

use std::f32::consts::PI;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::audio::wav_bytes_i16;

pub const GENRES: [&str; 10] = ["arpeggio", "bass", "bells", "chirp", "chords", "clicks", "drone", "noise", "pulse", "tremolo"];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SyntheticConfig {
    /// How many of the ten recipes to use (2..=10).
    pub genres: usize,
    pub clips_per_genre: usize,
    /// Clip length in seconds (GTZAN: 30).
    pub seconds: f32,
    pub sample_rate: u32,
    pub seed: u64,
}

impl Default for SyntheticConfig {
    fn default() -> Self {
        SyntheticConfig { genres: 10, clips_per_genre: 10, seconds: 30.0, sample_rate: 22_050, seed: 7 }
    }
}

/// SplitMix64: tiny, seedable, good enough for test signals.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
    pub fn range(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.uniform()
    }
    /// Uniform integer in 0..n.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f32 {
        let u = self.uniform().max(1e-7);
        let v = self.uniform();
        (-2.0 * u.ln()).sqrt() * (2.0 * PI * v).cos()
    }
}

/// Render one recipe into `out` (added, scaled by `gain`).
fn render(recipe: usize, rng: &mut Rng, sr: f32, gain: f32, out: &mut [f32]) {
    let n = out.len();
    let base = rng.range(0.8, 1.25); // pitch variation of this clip
    let tempo = rng.range(0.85, 1.15);
    let t = |i: usize| i as f32 / sr;
    match GENRES[recipe] {
        "arpeggio" => {
            let step = (0.12 / tempo * sr) as usize;
            let notes = [1.0, 1.26, 1.5, 2.0];
            for (k, chunk) in out.chunks_mut(step).enumerate() {
                let f = 520.0 * base * notes[k % 4];
                for (j, o) in chunk.iter_mut().enumerate() {
                    *o += gain * 0.5 * (2.0 * PI * f * t(j)).sin() * (-(j as f32) / (0.06 * sr)).exp();
                }
            }
        }
        "bass" => {
            let step = (0.25 / tempo * sr) as usize;
            for chunk in out.chunks_mut(step) {
                let f = 55.0 * base * [1.0, 1.12, 1.33, 1.5, 1.68][rng.below(5)];
                for (j, o) in chunk.iter_mut().enumerate() {
                    let ph = 2.0 * PI * f * t(j);
                    *o += gain * 0.6 * (ph.sin() + 0.4 * (2.0 * ph).sin() + 0.2 * (3.0 * ph).sin()) * (-(j as f32) / (0.2 * sr)).exp();
                }
            }
        }
        "bells" => {
            let mut i = 0;
            while i < n {
                let f = rng.range(600.0, 1800.0) * base;
                let len = ((1.5 * sr) as usize).min(n - i);
                for j in 0..len {
                    let env = (-(j as f32) / (0.4 * sr)).exp();
                    let tt = t(j);
                    out[i + j] += gain
                        * 0.3
                        * env
                        * ((2.0 * PI * f * tt).sin() + 0.6 * (2.0 * PI * f * 2.76 * tt).sin() + 0.4 * (2.0 * PI * f * 5.4 * tt).sin());
                }
                i += (rng.range(0.4, 1.2) * sr / tempo) as usize;
            }
        }
        "chirp" => {
            let period = (1.5 / tempo * sr) as usize;
            let (f0, f1) = (300.0 * base, 3000.0 * base);
            for (i, o) in out.iter_mut().enumerate() {
                let tt = (i % period) as f32 / sr;
                let dur = period as f32 / sr;
                let k = (f1 / f0).ln() / dur;
                *o += gain * 0.4 * (2.0 * PI * f0 * ((k * tt).exp() - 1.0) / k).sin();
            }
        }
        "chords" => {
            let step = (2.0 / tempo * sr) as usize;
            for chunk in out.chunks_mut(step) {
                let root = 220.0 * base * [1.0, 1.33, 1.5, 1.12][rng.below(4)];
                for (j, o) in chunk.iter_mut().enumerate() {
                    let tt = t(j);
                    *o += gain * 0.25 * [1.0, 1.26, 1.5, 2.0].iter().map(|r| (2.0 * PI * root * r * tt).sin()).sum::<f32>();
                }
            }
        }
        "clicks" => {
            let mut i = 0;
            while i < n {
                let len = ((0.004 * sr) as usize).min(n - i);
                for j in 0..len {
                    out[i + j] += gain * 0.9 * rng.normal() * (1.0 - j as f32 / len as f32);
                }
                i += (rng.range(0.05, 0.3) * sr / tempo) as usize;
            }
        }
        "drone" => {
            let f = 70.0 * base;
            for (i, o) in out.iter_mut().enumerate() {
                let tt = t(i);
                let am = 0.7 + 0.3 * (2.0 * PI * 0.2 * tempo * tt).sin();
                *o +=
                    gain * 0.3 * am * ((2.0 * PI * f * tt).sin() + (2.0 * PI * f * 1.5 * tt).sin() + 0.5 * (2.0 * PI * f * 2.0 * tt).sin());
            }
        }
        "noise" => {
            // Brown-ish noise, gated in bursts.
            let mut state = 0.0f32;
            let gate_len = (rng.range(0.3, 0.8) * sr) as usize;
            for (i, o) in out.iter_mut().enumerate() {
                state = 0.98 * state + 0.2 * rng.normal();
                let on = (i / gate_len) % 3 != 2;
                *o += if on { gain * 0.5 * state } else { 0.0 };
            }
        }
        "pulse" => {
            let beat = (60.0 / (120.0 * tempo) * sr) as usize;
            for (i, o) in out.iter_mut().enumerate() {
                let j = i % beat;
                let kick = (2.0 * PI * 60.0 * base * t(j) * (1.0 + 2.0 * (-(j as f32) / (0.02 * sr)).exp())).sin()
                    * (-(j as f32) / (0.12 * sr)).exp();
                let hat = if (i + beat / 2) % beat < (0.03 * sr) as usize { 0.15 * rng.normal() } else { 0.0 };
                *o += gain * (0.8 * kick + hat);
            }
        }
        "tremolo" => {
            let f = 600.0 * base;
            let rate = rng.range(6.0, 12.0);
            for (i, o) in out.iter_mut().enumerate() {
                let tt = t(i);
                *o += gain * 0.4 * (0.5 + 0.5 * (2.0 * PI * rate * tt).sin()) * (2.0 * PI * f * tt).sin();
            }
        }
        other => unreachable!("unknown recipe {other}"),
    }
}

/// One synthetic clip of genre number `genre` (an index into [`GENRES`]).
pub fn clip(cfg: &SyntheticConfig, genre: usize, index: usize) -> Vec<f32> {
    let mut rng = Rng::new(cfg.seed.wrapping_mul(1_000_003).wrapping_add((genre * 100_000 + index) as u64));
    let n = (cfg.seconds * cfg.sample_rate as f32) as usize;
    let sr = cfg.sample_rate as f32;
    // Each recipe is brought to the same loudness (RMS) before mixing, so the clip's own genre
    // dominates and the other genre's part stays 12-26 dB below it.
    let mut out = vec![0f32; n];
    let mut part = vec![0f32; n];
    let mut mix = |recipe: usize, gain: f32, rng: &mut Rng, out: &mut [f32]| {
        part.iter_mut().for_each(|x| *x = 0.0);
        render(recipe, rng, sr, 1.0, &mut part);
        let rms = (part.iter().map(|x| x * x).sum::<f32>() / n.max(1) as f32).sqrt().max(1e-9);
        out.iter_mut().zip(&part).for_each(|(o, p)| *o += gain * 0.1 * p / rms);
    };
    mix(genre, 1.0, &mut rng, &mut out);
    let other = (genre + 1 + rng.below(cfg.genres.max(2) - 1)) % cfg.genres.max(2);
    let gain = rng.range(0.05, 0.25);
    mix(other, gain, &mut rng, &mut out);
    let noise = rng.range(0.002, 0.02);
    for o in out.iter_mut() {
        *o += noise * rng.normal();
    }
    let peak = out.iter().fold(0f32, |m, x| m.max(x.abs())).max(1e-6);
    let level = rng.range(0.3, 0.9) / peak;
    out.iter_mut().for_each(|x| *x *= level);
    out
}

/// Write the set in the Marsyas layout under `root` (`root/genres/<genre>/<genre>.000NN.wav`).
pub fn write_set(cfg: &SyntheticConfig, root: &Path) -> Result<usize, crate::StageError> {
    if !(2..=GENRES.len()).contains(&cfg.genres) || cfg.clips_per_genre == 0 || cfg.seconds <= 0.0 {
        return Err(crate::StageError::Config(format!(
            "synthetic set needs 2..=10 genres, at least one clip per genre and a positive length (got {cfg:?})"
        )));
    }
    use rayon::prelude::*;
    let jobs: Vec<(usize, usize)> = (0..cfg.genres).flat_map(|g| (0..cfg.clips_per_genre).map(move |i| (g, i))).collect();
    jobs.par_iter().try_for_each(|&(g, i)| {
        let name = GENRES[g];
        let path = root.join(format!("genres/{name}/{name}.{i:05}.wav"));
        let bytes = wav_bytes_i16(&clip(cfg, g, i), cfg.sample_rate);
        genrelab_store::atomic::write_atomic(&path, &bytes).map(|_| ())
    })?;
    Ok(jobs.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clips_are_deterministic_bounded_and_distinct() {
        let cfg = SyntheticConfig { seconds: 1.0, ..Default::default() };
        for g in 0..10 {
            let a = clip(&cfg, g, 3);
            assert_eq!(a.len(), 22050);
            assert_eq!(a, clip(&cfg, g, 3), "genre {g} is deterministic");
            assert_ne!(a, clip(&cfg, g, 4));
            assert!(a.iter().all(|x| x.is_finite() && x.abs() <= 0.9 + 1e-6));
            assert!(a.iter().map(|x| x * x).sum::<f32>() > 1.0, "genre {g} is not silent");
        }
    }

    #[test]
    fn write_set_uses_the_marsyas_layout() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = SyntheticConfig { genres: 3, clips_per_genre: 2, seconds: 0.2, ..Default::default() };
        assert_eq!(write_set(&cfg, dir.path()).unwrap(), 6);
        assert!(dir.path().join("genres/bells/bells.00001.wav").exists());
        assert_eq!(crate::layout::detect_folder(dir.path()).unwrap(), crate::layout::Layout::Marsyas);
        assert!(write_set(&SyntheticConfig { genres: 1, ..cfg }, dir.path()).is_err());
    }
}

//! Descriptors: hand-crafted statistics of a clip, the classical baseline's input
//! (the study's side experiment fed such statistics to an SVM).
//!
//! Per clip, over frames of the same STFT as the log-mel (`n_fft`, `hop_length`, centred):
//! mean and variance of 20 MFCCs (DCT-II of the dB mel spectrogram, as `librosa.feature.mfcc`),
//! of the spectral centroid, bandwidth and 85 % roll-off (Hz), of the zero-crossing rate and
//! RMS energy (per frame of `n_fft` samples), of the onset strength (mean rise of the dB mel
//! bands, as `librosa.onset.onset_strength`), of the 12 chroma bins (each frame's pitch-class
//! energy over its largest), and a tempo estimate (BPM: the onset envelope's autocorrelation
//! peak between 30 and 300 BPM under a log-normal prior around 120, as librosa's).
//! With `[descriptors] max_hz`, the clip is first cut to the band below it (an ideal low-pass,
//! [`crate::logmel::lowpass`]), so the statistics mean the same for a 16 kHz recording, an MP3
//! or a CD rip. [`describe`] is the one function used by the descriptors stage and by `predict`.

use crate::logmel::{LogMel, lowpass, power_to_db};

pub const N_MFCC: usize = 20;

/// Column names, in the order [`describe`] returns the values.
pub fn descriptor_names() -> Vec<String> {
    let mut n = vec![];
    for stat in ["mean", "var"] {
        n.extend((0..N_MFCC).map(|k| format!("mfcc{k}_{stat}")));
    }
    for what in ["centroid", "bandwidth", "rolloff", "zcr", "rms", "onset"] {
        n.push(format!("{what}_mean"));
        n.push(format!("{what}_var"));
    }
    for stat in ["mean", "var"] {
        n.extend((0..12).map(|k| format!("chroma{k}_{stat}")));
    }
    n.push("tempo".into());
    n
}

/// Running mean and variance.
#[derive(Default, Clone, Copy)]
struct Stat {
    n: f64,
    sum: f64,
    sq: f64,
}

impl Stat {
    fn add(&mut self, v: f64) {
        self.n += 1.0;
        self.sum += v;
        self.sq += v * v;
    }
    fn mean(&self) -> f64 {
        if self.n > 0.0 { self.sum / self.n } else { 0.0 }
    }
    fn var(&self) -> f64 {
        if self.n > 0.0 { (self.sq / self.n - self.mean().powi(2)).max(0.0) } else { 0.0 }
    }
}

/// The descriptors of one clip (samples at the configuration's rate), named by
/// [`descriptor_names`], of the band below `max_hz` when given.
pub fn describe(lm: &LogMel, samples: &[f32], max_hz: Option<f64>) -> Vec<f32> {
    let cfg = lm.config();
    let limited;
    let samples = match max_hz {
        Some(hz) => {
            limited = lowpass(samples, cfg.sample_rate, hz);
            &limited[..]
        }
        None => samples,
    };
    let (n_fft, hop, n_mels) = (cfg.n_fft, cfg.hop_length, cfg.n_mels);
    let sr = cfg.sample_rate as f64;
    let bin_hz: Vec<f64> = (0..n_fft / 2 + 1).map(|k| k as f64 * sr / n_fft as f64).collect();
    // Pitch class of every bin from C1 (32.7 Hz) up to 5 kHz; None outside.
    let pitch: Vec<Option<usize>> = bin_hz
        .iter()
        .map(|&f| (32.7..5000.0).contains(&f).then(|| ((12.0 * (f / 440.0).log2()).round() as i64 + 9).rem_euclid(12) as usize))
        .collect();

    let n_frames = 1 + samples.len() / hop;
    let mut mel = vec![0f32; n_mels * n_frames];
    let mut frame_mel = vec![0f32; n_mels];
    let (mut centroid, mut bandwidth, mut rolloff) = (Stat::default(), Stat::default(), Stat::default());
    let mut chroma = [Stat::default(); 12];
    lm.power_frames(samples, |t, power| {
        lm.mel_project(power, &mut frame_mel);
        for (m, v) in frame_mel.iter().enumerate() {
            mel[m * n_frames + t] = *v;
        }
        let mag: Vec<f64> = power.iter().map(|p| (*p as f64).sqrt()).collect();
        let total: f64 = mag.iter().sum();
        let c = if total > 0.0 { mag.iter().zip(&bin_hz).map(|(m, f)| m * f).sum::<f64>() / total } else { 0.0 };
        let bw = if total > 0.0 { (mag.iter().zip(&bin_hz).map(|(m, f)| m * (f - c).powi(2)).sum::<f64>() / total).sqrt() } else { 0.0 };
        let mut acc = 0.0;
        let roll = bin_hz[mag
            .iter()
            .position(|m| {
                acc += m;
                acc >= 0.85 * total
            })
            .unwrap_or(0)];
        centroid.add(c);
        bandwidth.add(bw);
        rolloff.add(if total > 0.0 { roll } else { 0.0 });
        let mut pc = [0f64; 12];
        for (p, class) in power.iter().zip(&pitch) {
            if let Some(k) = class {
                pc[*k] += *p as f64;
            }
        }
        let top = pc.iter().copied().fold(0.0, f64::max);
        for (s, v) in chroma.iter_mut().zip(pc) {
            s.add(if top > 0.0 { v / top } else { 0.0 });
        }
    });

    // Zero crossings and RMS over centred frames of n_fft samples.
    let (mut zcr, mut rms) = (Stat::default(), Stat::default());
    for t in 0..n_frames {
        let start = (t * hop) as isize - (n_fft / 2) as isize;
        let lo = start.max(0) as usize;
        let hi = ((start + n_fft as isize).max(0) as usize).min(samples.len());
        let w = &samples[lo.min(hi)..hi];
        let crossings = w.windows(2).filter(|p| (p[0] >= 0.0) != (p[1] >= 0.0)).count();
        zcr.add(crossings as f64 / n_fft as f64);
        rms.add((w.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / n_fft as f64).sqrt());
    }

    // MFCCs and onset strength from the dB mel spectrogram.
    power_to_db(&mut mel, cfg.top_db);
    let mut mfcc = [Stat::default(); N_MFCC];
    let mut onset = Stat::default();
    let mut envelope = Vec::with_capacity(n_frames);
    let dct: Vec<Vec<f64>> = (0..N_MFCC)
        .map(|k| {
            let s = if k == 0 { (1.0 / n_mels as f64).sqrt() } else { (2.0 / n_mels as f64).sqrt() };
            (0..n_mels).map(|m| s * (std::f64::consts::PI * k as f64 * (2 * m + 1) as f64 / (2 * n_mels) as f64).cos()).collect()
        })
        .collect();
    for t in 0..n_frames {
        for (k, row) in dct.iter().enumerate() {
            mfcc[k].add((0..n_mels).map(|m| row[m] * mel[m * n_frames + t] as f64).sum());
        }
        let rise = if t == 0 {
            0.0
        } else {
            (0..n_mels).map(|m| (mel[m * n_frames + t] - mel[m * n_frames + t - 1]).max(0.0) as f64).sum::<f64>() / n_mels as f64
        };
        onset.add(rise);
        envelope.push(rise);
    }
    let tempo = estimate_tempo(&envelope, sr / hop as f64);

    let mut out = vec![];
    out.extend(mfcc.iter().map(Stat::mean));
    out.extend(mfcc.iter().map(Stat::var));
    for s in [centroid, bandwidth, rolloff, zcr, rms, onset] {
        out.push(s.mean());
        out.push(s.var());
    }
    out.extend(chroma.iter().map(Stat::mean));
    out.extend(chroma.iter().map(Stat::var));
    out.push(tempo);
    out.into_iter().map(|v| v as f32).collect()
}

/// Tempo (BPM) of an onset envelope sampled at `frame_rate` Hz: the autocorrelation lag between
/// 30 and 300 BPM with the highest value under a log-normal prior (120 BPM, one octave).
pub fn estimate_tempo(envelope: &[f64], frame_rate: f64) -> f64 {
    let mean = envelope.iter().sum::<f64>() / envelope.len().max(1) as f64;
    let e: Vec<f64> = envelope.iter().map(|v| v - mean).collect();
    let lo = (60.0 * frame_rate / 300.0).floor().max(1.0) as usize;
    let hi = ((60.0 * frame_rate / 30.0).ceil() as usize).min(e.len().saturating_sub(1));
    let mut best = (0.0, f64::NEG_INFINITY);
    for lag in lo..=hi {
        let ac: f64 = e[lag..].iter().zip(&e).map(|(a, b)| a * b).sum::<f64>() / (e.len() - lag) as f64;
        let bpm = 60.0 * frame_rate / lag as f64;
        let score = ac * (-0.5 * (bpm / 120.0).log2().powi(2)).exp();
        if score > best.1 {
            best = (bpm, score);
        }
    }
    best.0
}

/// The samples a clip's descriptors describe: the excerpt its features are made of (the first or
/// middle `frames` frames), or the whole track with `excerpt = "windows"`.
pub fn described_part<'a>(lm: &LogMel, samples: &'a [f32]) -> &'a [f32] {
    if lm.config().excerpt == crate::logmel::Excerpt::Windows { samples } else { lm.excerpt(samples) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logmel::FeatureConfig;

    fn tone(freq: f64, seconds: f64, sr: f64) -> Vec<f32> {
        (0..(seconds * sr) as usize).map(|i| (0.5 * (2.0 * std::f64::consts::PI * freq * i as f64 / sr).sin()) as f32).collect()
    }

    #[test]
    fn a_pure_tone_has_its_pitch_class_centroid_and_crossings() {
        let lm = LogMel::new(&FeatureConfig::default()).unwrap();
        let d = describe(&lm, &tone(440.0, 3.0, 22_050.0), None);
        let names = descriptor_names();
        assert_eq!(d.len(), names.len());
        let get = |n: &str| d[names.iter().position(|x| x == n).unwrap()];
        assert!((get("centroid_mean") - 440.0).abs() < 40.0, "{}", get("centroid_mean"));
        // 440 Hz crosses zero 880 times a second: 880 / 22050 per sample.
        assert!((get("zcr_mean") - 880.0 / 22_050.0).abs() < 0.004, "{}", get("zcr_mean"));
        // A is pitch class 9, and it dominates every frame.
        assert!(get("chroma9_mean") > 0.95 && get("chroma0_mean") < 0.2);
        assert!((get("rms_mean") - 0.5 / 2f32.sqrt()).abs() < 0.05, "{}", get("rms_mean"));
    }

    #[test]
    fn band_limited_descriptors_do_not_change_when_the_clip_comes_at_16_khz() {
        let sr = 22_050.0;
        // Tones up to 9.5 kHz under a slow amplitude envelope.
        let clip: Vec<f32> = (0..(4.0 * sr) as usize)
            .map(|i| {
                let t = i as f64 / sr;
                let env = 0.6 + 0.4 * (2.0 * std::f64::consts::PI * 2.0 * t).sin();
                let s: f64 = [(220.0, 0.4), (1500.0, 0.2), (5000.0, 0.1), (9500.0, 0.15)]
                    .iter()
                    .map(|(f, a)| a * (2.0 * std::f64::consts::PI * f * t).sin())
                    .sum();
                (env * s) as f32
            })
            .collect();
        let via_16k = crate::audio::resample(&crate::audio::resample(&clip, 22_050, 16_000).unwrap(), 16_000, 22_050).unwrap();
        let lm = LogMel::new(&FeatureConfig::default()).unwrap();
        let names = descriptor_names();
        let col = |n: &str| names.iter().position(|x| x == n).unwrap();
        let rel = |a: &[f32], b: &[f32], n: &str| ((a[col(n)] - b[col(n)]) / a[col(n)]).abs();
        let (full, full_16k) = (describe(&lm, &clip, None), describe(&lm, &via_16k, None));
        let (lim, lim_16k) = (describe(&lm, &clip, Some(7000.0)), describe(&lm, &via_16k, Some(7000.0)));
        // Full band: the 9.5 kHz tone is gone from the 16 kHz copy and the centroid drops.
        assert!(rel(&full, &full_16k, "centroid_mean") > 0.2, "{}", rel(&full, &full_16k, "centroid_mean"));
        // Band-limited: the same statistics either way.
        for n in ["centroid_mean", "rolloff_mean", "zcr_mean", "rms_mean", "mfcc1_mean", "mfcc5_mean"] {
            assert!(rel(&lim, &lim_16k, n) < 0.01, "{n}: {} vs {}", lim[col(n)], lim_16k[col(n)]);
        }
        assert!(lim[col("centroid_mean")] < 5000.0);
    }

    #[test]
    fn tempo_of_a_click_track() {
        // Clicks every 0.5 s = 120 BPM; and every 0.4 s = 150 BPM.
        for (period, bpm) in [(0.5, 120.0), (0.4, 150.0)] {
            let sr = 22_050.0;
            let mut s = vec![0f32; (sr * 10.0) as usize];
            let mut t = 0.0;
            while ((t * sr) as usize) + 200 < s.len() {
                for k in 0..200 {
                    s[(t * sr) as usize + k] = if k % 2 == 0 { 0.8 } else { -0.8 };
                }
                t += period;
            }
            let lm = LogMel::new(&FeatureConfig::default()).unwrap();
            let d = describe(&lm, &s, None);
            let tempo = *d.last().unwrap() as f64;
            assert!((tempo - bpm).abs() / bpm < 0.04, "expected {bpm}, got {tempo}");
        }
    }
}

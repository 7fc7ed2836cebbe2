//! The audio front end: samples in, the study's log-mel spectrogram out.
//!
//! One function, [`log_mel`], serves the features stage, prediction and the parity tests, so a
//! model never sees numbers made another way. It follows librosa 0.10 (what the study used):
//!
//! ```text
//! samples (mono f32 at sample_rate)
//!   -> STFT: n_fft-point real FFT, periodic Hann window, frames centred (zero-padded by n_fft/2
//!      on both sides, librosa's pad_mode="constant"), one frame every hop_length samples:
//!      1 + len / hop_length frames of n_fft/2 + 1 bins
//!   -> power |X|^2 through n_mels triangular filters on the Slaney mel scale with Slaney
//!      (area) normalisation, fmin..fmax (librosa.filters.mel defaults):     n_mels x frames
//!   -> dB: 10 log10(max(1e-10, S)) - 10 log10(max(1e-10, max S)), floored at -top_db
//!      (librosa.power_to_db(S, ref=np.max, top_db=80)): 0 dB is the clip's loudest cell
//!   -> pad (with pad_db) or cut to `frames` columns:                         n_mels x frames
//!   -> resize to out_mels x out_frames:                        the study's 64 x 100 input
//! ```
//!
//! With the defaults a 30 s GTZAN clip (661,794 samples) gives 1,293 STFT frames, cut to 1,291.

use std::f64::consts::PI;
use std::sync::Arc;

use realfft::RealFftPlanner;
use rustfft::num_complex::Complex;
use rustfft::{Fft, FftPlanner};
use serde::{Deserialize, Serialize};

/// Runs `$fast(args)` where the CPU has AVX2 and FMA, else `$any(args)`: the same code, which the
/// compiler vectorises with 8-wide registers in the first. Rust never fuses a multiply and an add
/// on its own, so both give the same bits.
macro_rules! simd_dispatch {
    ($avx2:expr, $fast:ident, $any:ident, ($($arg:expr),*)) => {{
        #[cfg(target_arch = "x86_64")]
        let r = if $avx2 {
            // SAFETY: the CPU was found to support AVX2 and FMA (Stft::new).
            unsafe { $fast($($arg),*) }
        } else {
            $any($($arg),*)
        };
        #[cfg(not(target_arch = "x86_64"))]
        let r = $any($($arg),*);
        r
    }};
}

/// Revision of the arithmetic below: bumped when one configuration comes to give other numbers
/// (however slightly), so that stored features made before are not reused beside new ones.
/// 2: mel sums of eight frames at a time and a vectorised log10 (within 2e-5 dB of revision 1).
/// 3: a spectrogram's mean and standard deviation summed in eight lanes (the last bits move).
pub const REVISION: u32 = 3;

/// Whether this CPU runs the AVX2 + FMA versions of the vectorised loops.
fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    return std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma");
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Every number that decides what a feature value means. Hashed into the pipeline's fingerprint
/// and written into the metadata of every feature table; training and prediction read it back
/// from there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FeatureConfig {
    /// Audio is resampled to this rate (Hz) before anything else; GTZAN is 22,050 Hz already.
    pub sample_rate: u32,
    /// FFT size = window length, in samples (2048 = 93 ms at 22,050 Hz).
    pub n_fft: usize,
    /// Samples between frame starts (512 = 23 ms: 43 frames per second).
    pub hop_length: usize,
    /// Mel bands of the full-resolution spectrogram.
    pub n_mels: usize,
    /// Lowest and highest filter edge in Hz; `fmax` unset means sample_rate / 2.
    pub fmin: f64,
    pub fmax: Option<f64>,
    /// Dynamic range kept below the clip's maximum, in dB.
    pub top_db: f32,
    /// Frames kept per clip (1,291 frames = 29.98 s).
    pub frames: usize,
    /// Value of padded frames, in dB. The study padded with numpy's default constant, 0.
    pub pad_db: f32,
    /// Size of the model input after resizing (the study's 64 x 100).
    pub out_mels: usize,
    pub out_frames: usize,
    /// How the resize interpolates.
    pub resize: Resize,
    /// Which part of a track longer than `frames` is kept: its start (the study's, GTZAN's 30 s
    /// clips are kept whole), its middle (skipping intros of full-length songs), or all of it as
    /// consecutive windows, one table row each (`window` 0, 1, ...).
    #[serde(skip_serializing_if = "Excerpt::is_start")]
    pub excerpt: Excerpt,
}

/// The part of a long track the features describe (`features.excerpt`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Excerpt {
    /// The first `frames` frames (what the study did).
    #[default]
    Start,
    /// The `frames` frames in the middle of the track.
    Middle,
    /// Every whole window of `frames` frames, back to back from the start (a track shorter than
    /// one window gives one padded window; a tail shorter than a window is left out).
    Windows,
}

impl Excerpt {
    fn is_start(&self) -> bool {
        *self == Excerpt::Start
    }
}

impl Default for FeatureConfig {
    fn default() -> Self {
        FeatureConfig {
            sample_rate: 22_050,
            n_fft: 2048,
            hop_length: 512,
            n_mels: 128,
            fmin: 0.0,
            fmax: None,
            top_db: 80.0,
            frames: 1291,
            pad_db: 0.0,
            out_mels: 64,
            out_frames: 100,
            resize: Resize::Antialiased,
            excerpt: Excerpt::Start,
        }
    }
}

/// Interpolation used to shrink the spectrogram to the model's input size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resize {
    /// Linear interpolation with a triangle filter widened by the scale factor (PIL's and
    /// torchvision's `Resize(antialias=True)`): every input cell contributes.
    Antialiased,
    /// Plain bilinear between the two nearest cells (OpenCV's `INTER_LINEAR`,
    /// `F.interpolate(mode="bilinear", align_corners=False)`): skips most cells when shrinking.
    Bilinear,
}

impl FeatureConfig {
    pub fn fmax(&self) -> f64 {
        self.fmax.unwrap_or(self.sample_rate as f64 / 2.0)
    }

    /// How many of the lowest mel bands lie wholly at or below `hz` (their filter's upper edge):
    /// a model that reads only these sees nothing above `hz`.
    pub fn bands_below(&self, hz: f64) -> usize {
        let (lo, hi) = (hz_to_mel(self.fmin), hz_to_mel(self.fmax()));
        let point = |i: usize| mel_to_hz(lo + (hi - lo) * i as f64 / (self.n_mels + 1) as f64);
        (0..self.n_mels).take_while(|&m| point(m + 2) <= hz + 1e-9).count()
    }

    /// A stable hash of every field: equal hashes mean identical features.
    pub fn hash(&self) -> String {
        let json = serde_json::to_string(self).expect("config serialises");
        blake3::hash(json.as_bytes()).to_hex()[..16].to_string()
    }

    pub fn validate(&self) -> Result<(), crate::InvalidSetting> {
        // The message below spells the audio module's rates out.
        const _: () = assert!(crate::audio::MIN_RATE == 1000 && crate::audio::MAX_RATE == 768_000);
        let finite = [self.fmin, self.fmax(), self.top_db as f64, self.pad_db as f64].iter().all(|v| v.is_finite());
        let checks = [
            (finite, "fmin, fmax, top_db and pad_db must be numbers (not NaN or infinite)"),
            (
                (crate::audio::MIN_RATE..=crate::audio::MAX_RATE).contains(&self.sample_rate),
                "sample_rate must be between 1000 and 768000 Hz",
            ),
            (self.n_fft >= 16 && self.n_fft <= 65_536 && self.n_fft.is_multiple_of(2), "n_fft must be even, between 16 and 65536"),
            (self.hop_length >= 1 && self.hop_length <= self.n_fft, "hop_length must be between 1 and n_fft"),
            (self.frames <= 100_000, "frames must be at most 100000 (an hour at 43 frames per second)"),
            (self.n_mels >= 1 && self.n_mels <= self.n_fft / 2, "n_mels must be between 1 and n_fft / 2"),
            (self.fmin >= 0.0 && self.fmin < self.fmax(), "need 0 <= fmin < fmax"),
            (self.fmax() <= self.sample_rate as f64 / 2.0, "fmax must not exceed sample_rate / 2"),
            (self.top_db > 0.0, "top_db must be positive"),
            (self.frames >= 1 && self.out_mels >= 1 && self.out_frames >= 1, "frames and output sizes must be positive"),
            (self.out_mels <= self.n_mels && self.out_frames <= self.frames, "the resize may only shrink"),
        ];
        match checks.iter().find(|(ok, _)| !ok) {
            Some((_, msg)) => Err(crate::InvalidSetting(msg.to_string())),
            None => Ok(()),
        }
    }

    /// Samples one `frames`-long window covers: (frames - 1) * hop (661,000 = 29.98 s by default).
    pub fn window_samples(&self) -> usize {
        (self.frames - 1) * self.hop_length
    }
}

/// A spectrogram, row-major `n_mels x n_frames`.
#[derive(Debug, Clone, PartialEq)]
pub struct Spectrogram {
    pub n_mels: usize,
    pub n_frames: usize,
    pub values: Vec<f32>,
}

impl Spectrogram {
    pub fn at(&self, mel: usize, frame: usize) -> f32 {
        self.values[mel * self.n_frames + frame]
    }
    pub fn mean_std(&self) -> (f32, f32) {
        // Sums of f32 blocks (short, exact enough; eight running sums each, so that they are
        // vectorised) accumulated in f64.
        fn block_sum(c: &[f32], f: impl Fn(f32) -> f32) -> f64 {
            let mut acc = [0f32; 8];
            let mut eights = c.chunks_exact(8);
            for x in &mut eights {
                for (a, v) in acc.iter_mut().zip(x) {
                    *a += f(*v);
                }
            }
            for (a, v) in acc.iter_mut().zip(eights.remainder()) {
                *a += f(*v);
            }
            acc.iter().map(|&a| a as f64).sum()
        }
        let n = self.values.len().max(1) as f64;
        let mean = self.values.chunks(1024).map(|c| block_sum(c, |v| v)).sum::<f64>() / n;
        let m = mean as f32;
        let var = self.values.chunks(1024).map(|c| block_sum(c, |v| (v - m) * (v - m))).sum::<f64>() / n;
        (mean as f32, var.sqrt() as f32)
    }
}

/// The model input and the full-resolution spectrogram it was made from.
#[derive(Debug, Clone)]
pub struct Features {
    /// `n_mels x frames`, padded or cut.
    pub full: Spectrogram,
    /// `out_mels x out_frames`.
    pub small: Spectrogram,
}

/// A precomputed STFT + mel filterbank for one configuration. Cheap to clone (shared plan).
#[derive(Clone)]
pub struct LogMel {
    cfg: FeatureConfig,
    stft: Arc<Stft>,
    window: Arc<Vec<f32>>,
    filters: Arc<Vec<MelFilter>>,
}

/// One triangular filter, stored sparsely: weights for bins `start..start + weights.len()`.
#[derive(Debug, Clone)]
struct MelFilter {
    start: usize,
    weights: Vec<f32>,
}

impl LogMel {
    pub fn new(cfg: &FeatureConfig) -> Result<Self, crate::InvalidSetting> {
        cfg.validate()?;
        let stft = Arc::new(Stft::new(cfg.n_fft));
        let window = hann_periodic(cfg.n_fft);
        let dense = mel_filterbank(cfg.sample_rate as f64, cfg.n_fft, cfg.n_mels, cfg.fmin, cfg.fmax());
        let filters = dense
            .iter()
            .map(|row| {
                let start = row.iter().position(|&w| w > 0.0).unwrap_or(0);
                let end = row.iter().rposition(|&w| w > 0.0).map_or(start, |e| e + 1);
                MelFilter { start, weights: row[start..end].iter().map(|&w| w as f32).collect() }
            })
            .collect();
        Ok(LogMel { cfg: cfg.clone(), stft, window: Arc::new(window), filters: Arc::new(filters) })
    }

    pub fn config(&self) -> &FeatureConfig {
        &self.cfg
    }

    /// The centred, zero-padded STFT power spectrum (`n_fft / 2 + 1` bins) of every frame
    /// (`1 + len / hop` of them), handed to `each(frame, power)` in order.
    pub fn power_frames(&self, samples: &[f32], mut each: impl FnMut(usize, &[f32])) {
        let (n_fft, hop) = (self.cfg.n_fft, self.cfg.hop_length);
        let n_frames = 1 + samples.len() / hop;
        let pad = n_fft / 2;
        let mut buffers = self.stft.buffers();
        let mut power = vec![0f32; n_fft / 2 + 1];
        let mut edge = vec![0f32; n_fft];
        for t in 0..n_frames {
            // Frame t covers padded samples t*hop .. t*hop + n_fft, i.e. original samples
            // t*hop - pad .. t*hop - pad + n_fft; outside the signal is zero.
            let start = (t * hop) as isize - pad as isize;
            let src = if start >= 0 && start as usize + n_fft <= samples.len() {
                &samples[start as usize..start as usize + n_fft]
            } else {
                for (i, x) in edge.iter_mut().enumerate() {
                    let idx = start + i as isize;
                    *x = if idx >= 0 && (idx as usize) < samples.len() { samples[idx as usize] } else { 0.0 };
                }
                &edge
            };
            self.stft.frame_power(src, &self.window, &mut buffers, &mut power);
            each(t, &power);
        }
    }

    /// Mel power of one frame's power spectrum into `out` (`n_mels` values).
    pub fn mel_project(&self, power: &[f32], out: &mut [f32]) {
        simd_dispatch!(self.stft.avx2, mel_project_avx2, mel_project_any, (&self.filters, power, out))
    }

    /// Mel power spectrogram (before dB), `n_mels x (1 + len / hop)`. The power spectra of
    /// [`LANES`] frames are gathered side by side, so that each filter weight multiplies a
    /// vector of frames and the filters' outputs land in [`LANES`] neighbouring columns at once.
    pub fn mel_power(&self, samples: &[f32]) -> Spectrogram {
        let n_frames = 1 + samples.len() / self.cfg.hop_length;
        let mut out = vec![0f32; self.cfg.n_mels * n_frames];
        let bins = self.cfg.n_fft / 2 + 1;
        // The power spectra of the batch's frames one after another, then side by side.
        let mut rows = vec![0f32; LANES * bins];
        let mut lanes = vec![[0f32; LANES]; bins];
        self.power_frames(samples, |t, power| {
            let lane = t % LANES;
            rows[lane * bins..][..bins].copy_from_slice(power);
            if lane == LANES - 1 || t + 1 == n_frames {
                simd_dispatch!(self.stft.avx2, transpose_avx2, transpose_any, (&rows, &mut lanes));
                let (first, count) = (t - lane, lane + 1);
                simd_dispatch!(self.stft.avx2, mel_batch_avx2, mel_batch_any, (&self.filters, &lanes, &mut out, n_frames, first, count))
            }
        });
        Spectrogram { n_mels: self.cfg.n_mels, n_frames, values: out }
    }

    /// Full-resolution log-mel of a clip, in dB relative to its maximum, before pad/cut.
    pub fn log_mel_unpadded(&self, samples: &[f32]) -> Spectrogram {
        let mut s = self.mel_power(samples);
        power_to_db(&mut s.values, self.cfg.top_db);
        s
    }

    /// The samples of a clip the features describe: all of a clip up to `frames` frames long
    /// (shorter ones are padded), else the configured excerpt of that length (whole hops, so
    /// frames line up with the track's own).
    pub fn excerpt<'a>(&self, samples: &'a [f32]) -> &'a [f32] {
        let (hop, keep) = (self.cfg.hop_length, self.cfg.frames * self.cfg.hop_length + self.cfg.n_fft);
        if samples.len() <= keep {
            return samples;
        }
        let start = match self.cfg.excerpt {
            Excerpt::Start | Excerpt::Windows => 0,
            Excerpt::Middle => (samples.len() - keep) / 2 / hop * hop,
        };
        &samples[start..start + keep]
    }

    /// The parts of a clip that become table rows: its one excerpt, or with
    /// `excerpt = "windows"` every whole window of `frames` frames (hops of `frames * hop`
    /// samples, each with the `n_fft` samples its last frame reads).
    pub fn windows<'a>(&self, samples: &'a [f32]) -> Vec<&'a [f32]> {
        let (step, keep) = (self.cfg.frames * self.cfg.hop_length, self.cfg.frames * self.cfg.hop_length + self.cfg.n_fft);
        if self.cfg.excerpt != Excerpt::Windows || samples.len() <= keep {
            return vec![self.excerpt(samples)];
        }
        let n = (samples.len() - keep) / step + 1;
        (0..n).map(|w| &samples[w * step..w * step + keep]).collect()
    }

    /// Whether a clip (or window) is shorter than `frames` frames, so that its features are padded.
    pub fn is_padded(&self, samples: &[f32]) -> bool {
        1 + samples.len() / self.cfg.hop_length < self.cfg.frames
    }

    /// The features of one clip (or one window of a longer recording).
    pub fn features(&self, samples: &[f32]) -> Features {
        let samples = self.excerpt(samples);
        let full = fit_frames(&self.log_mel_unpadded(samples), self.cfg.frames, self.cfg.pad_db);
        let small = resize(&full, self.cfg.out_mels, self.cfg.out_frames, self.cfg.resize);
        Features { full, small }
    }
}

/// The real FFT of the frames (`n_fft` samples) as realfft computes it: a complex FFT of
/// `n_fft / 2` points over the even and odd samples, then one pass that separates the halves.
/// That pass, the windowing and the power are done here, vectorised; the result is identical to
/// windowing, `realfft`'s forward transform and `re^2 + im^2` (checked in a test).
struct Stft {
    fft: Arc<dyn Fft<f32>>,
    twiddles: Twiddles,
    avx2: bool,
}

impl Stft {
    fn new(n_fft: usize) -> Stft {
        let m = n_fft / 2;
        let angles = (1..m.div_ceil(2)).map(|k| -2f64 * PI / n_fft as f64 * k as f64);
        let twiddles =
            Twiddles { re: angles.clone().map(|a| a.cos() as f32 * 0.5).collect(), im: angles.map(|a| a.sin() as f32 * 0.5).collect() };
        let avx2 = has_avx2();
        Stft { fft: FftPlanner::<f32>::new().plan_fft_forward(m), twiddles, avx2 }
    }

    fn buffers(&self) -> StftBuffers {
        let (m, pairs) = (self.fft.len(), (self.fft.len() - 1) / 2);
        let zeros = || vec![0f32; pairs];
        StftBuffers {
            frame: vec![Complex::default(); m],
            spectrum: vec![Complex::default(); m],
            scratch: vec![Complex::default(); self.fft.get_outofplace_scratch_len()],
            halves: Halves { a_re: zeros(), a_im: zeros(), b_re: zeros(), b_im: zeros(), lo: zeros(), hi: zeros() },
        }
    }

    /// `|FFT(src * window)|^2`, `n_fft / 2 + 1` bins, into `power`.
    fn frame_power(&self, src: &[f32], window: &[f32], b: &mut StftBuffers, power: &mut [f32]) {
        simd_dispatch!(self.avx2, window_avx2, window_any, (src, window, &mut b.frame));
        self.fft.process_outofplace_with_scratch(&mut b.frame, &mut b.spectrum, &mut b.scratch);
        simd_dispatch!(self.avx2, power_avx2, power_any, (&b.spectrum, &self.twiddles, &mut b.halves, power))
    }
}

/// What one thread needs to compute frames.
struct StftBuffers {
    frame: Vec<Complex<f32>>,
    spectrum: Vec<Complex<f32>>,
    scratch: Vec<Complex<f32>>,
    halves: Halves,
}

/// Even samples into the real parts, odd ones into the imaginary parts, windowed.
#[inline(always)]
fn window_any(src: &[f32], window: &[f32], frame: &mut [Complex<f32>]) {
    // SAFETY: `Complex<f32>` is `repr(C)`, a real and an imaginary f32: the frame's parts in
    // memory order are the samples' own order, so the windowing is one product of flat arrays.
    let flat = unsafe { std::slice::from_raw_parts_mut(frame.as_mut_ptr().cast::<f32>(), frame.len() * 2) };
    for (c, (s, w)) in flat.iter_mut().zip(src.iter().zip(window)) {
        *c = s * w;
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn window_avx2(src: &[f32], window: &[f32], frame: &mut [Complex<f32>]) {
    window_any(src, window, frame)
}

/// The power of the real signal's spectrum from the complex FFT `z` of its sample pairs:
/// realfft's post-processing (the same operations in the same order) followed by `re^2 + im^2`.
#[inline(always)]
fn power_any(z: &[Complex<f32>], tw: &Twiddles, w: &mut Halves, power: &mut [f32]) {
    power_from(z, tw, w, power, 0)
}

/// [`power_any`] but for the first `done` pairs of bins (k and m - k for k = 1 ..= done).
/// Bin k needs bins k and m - k of `z`; they are first copied into separate arrays of real and
/// imaginary parts in that order, so that the arithmetic runs on whole vectors.
#[inline(always)]
fn power_from(z: &[Complex<f32>], tw: &Twiddles, w: &mut Halves, power: &mut [f32], done: usize) {
    let m = z.len();
    let (first, last) = (z[0].re + z[0].im, z[0].re - z[0].im);
    power[0] = first * first;
    power[m] = last * last;
    let pairs = (m - 1) / 2;
    let n = pairs - done;
    for ((a, a_re), a_im) in z[1 + done..=pairs].iter().zip(&mut w.a_re[..n]).zip(&mut w.a_im[..n]) {
        (*a_re, *a_im) = (a.re, a.im);
    }
    for ((b, b_re), b_im) in z[m - pairs..m - done].iter().rev().zip(&mut w.b_re[..n]).zip(&mut w.b_im[..n]) {
        (*b_re, *b_im) = (b.re, b.im);
    }
    let lanes = w.a_re[..n].iter().zip(&w.a_im[..n]).zip(w.b_re[..n].iter().zip(&w.b_im[..n]));
    let out = w.lo[..n].iter_mut().zip(w.hi[..n].iter_mut());
    for ((((ar, ai), (br, bi)), (lo, hi)), (t_re, t_im)) in lanes.zip(out).zip(tw.re[done..].iter().zip(&tw.im[done..])) {
        let (sum_re, sum_im) = (ar + br, ai + bi);
        let (diff_re, diff_im) = (ar - br, ai - bi);
        let twiddled_re = sum_im * t_re + diff_re * t_im;
        let twiddled_im = sum_im * t_im - diff_re * t_re;
        let (half_sum_re, half_diff_im) = (0.5 * sum_re, 0.5 * diff_im);
        let (re, im) = (half_sum_re + twiddled_re, half_diff_im + twiddled_im);
        *lo = re * re + im * im;
        let (re, im) = (half_sum_re - twiddled_re, twiddled_im - half_diff_im);
        *hi = re * re + im * im;
    }
    power[1 + done..=pairs].copy_from_slice(&w.lo[..n]);
    for (p, h) in power[m - pairs..m - done].iter_mut().rev().zip(&w.hi[..n]) {
        *p = *h;
    }
    if m.is_multiple_of(2) {
        let c = z[m / 2];
        power[m / 2] = c.re * c.re + c.im * c.im;
    }
}

/// realfft's twiddles, `exp(-2 pi i k / n_fft) / 2` for k = 1 .. n_fft / 4, real and imaginary
/// parts apart.
struct Twiddles {
    re: Vec<f32>,
    im: Vec<f32>,
}

/// Working arrays of [`power_any`], `(n_fft / 2 - 1) / 2` each.
struct Halves {
    a_re: Vec<f32>,
    a_im: Vec<f32>,
    b_re: Vec<f32>,
    b_im: Vec<f32>,
    lo: Vec<f32>,
    hi: Vec<f32>,
}

/// [`power_any`] eight bins at a time in registers: the pairs of bins k and m - k loaded as they
/// lie (the second run of eight reversed in a register), the same operations in the same order
/// (no fused multiply-adds), so the same bits.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn power_avx2(z: &[Complex<f32>], tw: &Twiddles, w: &mut Halves, power: &mut [f32]) {
    use std::arch::x86_64::*;
    let m = z.len();
    let pairs = (m - 1) / 2;
    let blocks = pairs / 8;
    assert!(power.len() > m && tw.re.len() >= pairs && tw.im.len() >= pairs);
    // Real and imaginary parts of eight complex numbers (two registers as they lie) apart.
    let split = |v0: __m256, v1: __m256| {
        let re = _mm256_castpd_ps(_mm256_permute4x64_pd::<0xD8>(_mm256_castps_pd(_mm256_shuffle_ps::<0x88>(v0, v1))));
        let im = _mm256_castpd_ps(_mm256_permute4x64_pd::<0xD8>(_mm256_castps_pd(_mm256_shuffle_ps::<0xDD>(v0, v1))));
        (re, im)
    };
    let reverse = _mm256_setr_epi32(7, 6, 5, 4, 3, 2, 1, 0);
    let half = _mm256_set1_ps(0.5);
    let (zp, out) = (z.as_ptr().cast::<f32>(), power.as_mut_ptr());
    for b in 0..blocks {
        let k = 1 + 8 * b;
        // SAFETY: bins k .. k + 8 and m - k - 7 ..= m - k lie within 1 ..= m - 1 (k + 7 <= pairs),
        // and twiddles k - 1 .. k + 7 within `pairs` (asserted above).
        unsafe {
            let (a_re, a_im) = split(_mm256_loadu_ps(zp.add(2 * k)), _mm256_loadu_ps(zp.add(2 * k + 8)));
            let (b_re, b_im) = split(_mm256_loadu_ps(zp.add(2 * (m - k - 7))), _mm256_loadu_ps(zp.add(2 * (m - k - 7) + 8)));
            let (b_re, b_im) = (_mm256_permutevar8x32_ps(b_re, reverse), _mm256_permutevar8x32_ps(b_im, reverse));
            let (t_re, t_im) = (_mm256_loadu_ps(tw.re.as_ptr().add(k - 1)), _mm256_loadu_ps(tw.im.as_ptr().add(k - 1)));
            let (sum_re, sum_im) = (_mm256_add_ps(a_re, b_re), _mm256_add_ps(a_im, b_im));
            let (diff_re, diff_im) = (_mm256_sub_ps(a_re, b_re), _mm256_sub_ps(a_im, b_im));
            let twiddled_re = _mm256_add_ps(_mm256_mul_ps(sum_im, t_re), _mm256_mul_ps(diff_re, t_im));
            let twiddled_im = _mm256_sub_ps(_mm256_mul_ps(sum_im, t_im), _mm256_mul_ps(diff_re, t_re));
            let (half_sum_re, half_diff_im) = (_mm256_mul_ps(half, sum_re), _mm256_mul_ps(half, diff_im));
            let (re, im) = (_mm256_add_ps(half_sum_re, twiddled_re), _mm256_add_ps(half_diff_im, twiddled_im));
            _mm256_storeu_ps(out.add(k), _mm256_add_ps(_mm256_mul_ps(re, re), _mm256_mul_ps(im, im)));
            let (re, im) = (_mm256_sub_ps(half_sum_re, twiddled_re), _mm256_sub_ps(twiddled_im, half_diff_im));
            let hi = _mm256_add_ps(_mm256_mul_ps(re, re), _mm256_mul_ps(im, im));
            _mm256_storeu_ps(out.add(m - k - 7), _mm256_permutevar8x32_ps(hi, reverse));
        }
    }
    // The first and last bins, the middle one and the pairs left.
    power_from(z, tw, w, power, 8 * blocks)
}

#[inline(always)]
fn mel_project_any(filters: &[MelFilter], power: &[f32], out: &mut [f32]) {
    for (o, f) in out.iter_mut().zip(filters) {
        *o = dot(&power[f.start..f.start + f.weights.len()], &f.weights);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn mel_project_avx2(filters: &[MelFilter], power: &[f32], out: &mut [f32]) {
    mel_project_any(filters, power, out)
}

/// Frames whose mel power [`LogMel::mel_power`] computes together.
const LANES: usize = 8;

/// `LANES` rows of `lanes.len()` values each, one after another, into `lanes` (`lanes[i][row]`).
#[inline(always)]
fn transpose_any(rows: &[f32], lanes: &mut [[f32; LANES]]) {
    transpose_from(rows, lanes, 0)
}

/// [`transpose_any`] of the values from `start` on.
#[inline(always)]
fn transpose_from(rows: &[f32], lanes: &mut [[f32; LANES]], start: usize) {
    let n = lanes.len();
    for (i, lane) in lanes.iter_mut().enumerate().skip(start) {
        for (r, v) in lane.iter_mut().enumerate() {
            *v = rows[r * n + i];
        }
    }
}

/// [`transpose_any`], eight by eight values at a time in registers.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn transpose_avx2(rows: &[f32], lanes: &mut [[f32; LANES]]) {
    use std::arch::x86_64::*;
    let n = lanes.len();
    assert!(rows.len() >= LANES * n);
    let blocks = n / 8;
    let (src, dst) = (rows.as_ptr(), lanes.as_mut_ptr().cast::<f32>());
    for b in 0..blocks {
        // SAFETY: rows r * n + 8b .. + 8 and lanes 8b .. 8b + 8 are in bounds (asserted above).
        unsafe {
            let r: [__m256; 8] = std::array::from_fn(|k| _mm256_loadu_ps(src.add(k * n + 8 * b)));
            let t0 = _mm256_unpacklo_ps(r[0], r[1]);
            let t1 = _mm256_unpackhi_ps(r[0], r[1]);
            let t2 = _mm256_unpacklo_ps(r[2], r[3]);
            let t3 = _mm256_unpackhi_ps(r[2], r[3]);
            let t4 = _mm256_unpacklo_ps(r[4], r[5]);
            let t5 = _mm256_unpackhi_ps(r[4], r[5]);
            let t6 = _mm256_unpacklo_ps(r[6], r[7]);
            let t7 = _mm256_unpackhi_ps(r[6], r[7]);
            let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
            let u1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
            let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
            let u3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
            let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
            let u5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
            let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
            let u7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
            let out = dst.add(64 * b);
            _mm256_storeu_ps(out, _mm256_permute2f128_ps::<0x20>(u0, u4));
            _mm256_storeu_ps(out.add(8), _mm256_permute2f128_ps::<0x20>(u1, u5));
            _mm256_storeu_ps(out.add(16), _mm256_permute2f128_ps::<0x20>(u2, u6));
            _mm256_storeu_ps(out.add(24), _mm256_permute2f128_ps::<0x20>(u3, u7));
            _mm256_storeu_ps(out.add(32), _mm256_permute2f128_ps::<0x31>(u0, u4));
            _mm256_storeu_ps(out.add(40), _mm256_permute2f128_ps::<0x31>(u1, u5));
            _mm256_storeu_ps(out.add(48), _mm256_permute2f128_ps::<0x31>(u2, u6));
            _mm256_storeu_ps(out.add(56), _mm256_permute2f128_ps::<0x31>(u3, u7));
        }
    }
    transpose_from(rows, lanes, 8 * blocks)
}

/// The mel power of `count` frames from their power spectra side by side (`power[bin][lane]`),
/// into columns `first .. first + count` of the `n_mels x n_frames` spectrogram `out`.
#[inline(always)]
fn mel_batch_any(filters: &[MelFilter], power: &[[f32; LANES]], out: &mut [f32], n_frames: usize, first: usize, count: usize) {
    for (m, f) in filters.iter().enumerate() {
        let mut acc = [0f32; LANES];
        for (w, p) in f.weights.iter().zip(&power[f.start..]) {
            for l in 0..LANES {
                acc[l] += w * p[l];
            }
        }
        out[m * n_frames + first..][..count].copy_from_slice(&acc[..count]);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn mel_batch_avx2(filters: &[MelFilter], power: &[[f32; LANES]], out: &mut [f32], n_frames: usize, first: usize, count: usize) {
    mel_batch_any(filters, power, out, n_frames, first, count)
}

/// Dot product with eight independent partial sums, so the compiler can vectorise it (a plain
/// `.sum()` of f32 is one long dependency chain).
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let mut tail = 0f32;
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
        tail += x * y;
    }
    let mut acc = [0f32; 8];
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// `w[n] = 0.5 - 0.5 cos(2 pi n / N)`: scipy's `get_window("hann", N, fftbins=True)`.
pub fn hann_periodic(n: usize) -> Vec<f32> {
    (0..n).map(|i| (0.5 - 0.5 * (2.0 * PI * i as f64 / n as f64).cos()) as f32).collect()
}

/// Slaney's mel scale (librosa `htk=False`): linear below 1 kHz, logarithmic above.
/// Remove everything above `max_hz` (an ideal low-pass: the spectrum of the whole signal cut
/// at `max_hz`). A source recorded at any rate whose band reaches `max_hz` gives the same result.
pub fn lowpass(samples: &[f32], sample_rate: u32, max_hz: f64) -> Vec<f32> {
    let n = samples.len();
    if n == 0 || max_hz >= sample_rate as f64 / 2.0 {
        return samples.to_vec();
    }
    let mut planner = RealFftPlanner::<f64>::new();
    let fwd = planner.plan_fft_forward(n);
    let inv = planner.plan_fft_inverse(n);
    let mut x: Vec<f64> = samples.iter().map(|v| *v as f64).collect();
    let mut spec = fwd.make_output_vec();
    fwd.process(&mut x, &mut spec).expect("fft lengths match");
    let keep = (max_hz * n as f64 / sample_rate as f64).floor() as usize + 1;
    spec.iter_mut().skip(keep).for_each(|c| *c = Default::default());
    // realfft wants the imaginary parts of the DC (and Nyquist) bins at zero.
    spec[0].im = 0.0;
    if let Some(last) = spec.last_mut().filter(|_| n.is_multiple_of(2)) {
        last.im = 0.0;
    }
    inv.process(&mut spec, &mut x).expect("fft lengths match");
    x.iter().map(|v| (v / n as f64) as f32).collect()
}

pub fn hz_to_mel(hz: f64) -> f64 {
    const F_SP: f64 = 200.0 / 3.0;
    const MIN_LOG_HZ: f64 = 1000.0;
    let min_log_mel = MIN_LOG_HZ / F_SP;
    let logstep = 6.4f64.ln() / 27.0;
    if hz >= MIN_LOG_HZ { min_log_mel + (hz / MIN_LOG_HZ).ln() / logstep } else { hz / F_SP }
}

pub fn mel_to_hz(mel: f64) -> f64 {
    const F_SP: f64 = 200.0 / 3.0;
    const MIN_LOG_HZ: f64 = 1000.0;
    let min_log_mel = MIN_LOG_HZ / F_SP;
    let logstep = 6.4f64.ln() / 27.0;
    if mel >= min_log_mel { MIN_LOG_HZ * (logstep * (mel - min_log_mel)).exp() } else { F_SP * mel }
}

/// `librosa.filters.mel(sr, n_fft, n_mels, fmin, fmax, htk=False, norm="slaney")`, dense,
/// `n_mels x (n_fft/2 + 1)`, computed in f64 as librosa does before its cast to f32.
pub fn mel_filterbank(sr: f64, n_fft: usize, n_mels: usize, fmin: f64, fmax: f64) -> Vec<Vec<f64>> {
    let n_bins = n_fft / 2 + 1;
    let fftfreqs: Vec<f64> = (0..n_bins).map(|k| k as f64 * sr / n_fft as f64).collect();
    let (lo, hi) = (hz_to_mel(fmin), hz_to_mel(fmax));
    let mel_f: Vec<f64> = (0..n_mels + 2).map(|i| mel_to_hz(lo + (hi - lo) * i as f64 / (n_mels + 1) as f64)).collect();
    (0..n_mels)
        .map(|m| {
            let (f0, f1, f2) = (mel_f[m], mel_f[m + 1], mel_f[m + 2]);
            let enorm = 2.0 / (f2 - f0);
            fftfreqs
                .iter()
                .map(|&f| {
                    let lower = (f - f0) / (f1 - f0);
                    let upper = (f2 - f) / (f2 - f1);
                    lower.min(upper).max(0.0) * enorm
                })
                .collect()
        })
        .collect()
}

/// librosa's `amin`: powers below it count as it (-100 dB).
const AMIN: f32 = 1e-10;

/// In place: `librosa.power_to_db(S, ref=np.max, amin=1e-10, top_db)`.
pub fn power_to_db(values: &mut [f32], top_db: f32) {
    let reference = values.iter().copied().fold(0f32, f32::max).max(AMIN);
    let ref_db = 10.0 * log10(reference);
    let max_db = simd_dispatch!(has_avx2(), to_db_avx2, to_db_any, (values, ref_db));
    let floor = max_db - top_db;
    for v in values.iter_mut() {
        *v = v.max(floor);
    }
}

/// `10 log10(max(v, 1e-10)) - ref_db` in place; returns the largest result.
#[inline(always)]
fn to_db_any(values: &mut [f32], ref_db: f32) -> f32 {
    let mut max_db = [f32::NEG_INFINITY; 8];
    let mut chunks = values.chunks_exact_mut(8);
    for c in &mut chunks {
        for (v, m) in c.iter_mut().zip(&mut max_db) {
            *v = 10.0 * log10(v.max(AMIN)) - ref_db;
            *m = m.max(*v);
        }
    }
    for v in chunks.into_remainder() {
        *v = 10.0 * log10(v.max(AMIN)) - ref_db;
        max_db[0] = max_db[0].max(*v);
    }
    max_db.into_iter().fold(f32::NEG_INFINITY, f32::max)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn to_db_avx2(values: &mut [f32], ref_db: f32) -> f32 {
    to_db_any(values, ref_db)
}

/// `log10(x)` for positive normal `x` (and infinity), without branches so that it vectorises:
/// Cephes' `logf` (x = 2^e m with m in [sqrt(1/2), sqrt(2)), a degree-9 polynomial in m - 1),
/// then a multiplication. Within 2 units in the last place of the correctly rounded result
/// (checked against f64 in a test), i.e. a few millionths of a decibel.
#[inline(always)]
pub fn log10(x: f32) -> f32 {
    let bits = x.to_bits();
    // Exponent and mantissa in [1/2, 1).
    let mut e = ((bits >> 23) & 0xff) as i32 - 126;
    let mut m = f32::from_bits((bits & 0x007f_ffff) | 0x3f00_0000);
    let small = m < std::f32::consts::FRAC_1_SQRT_2;
    e -= small as i32;
    m = if small { m + m - 1.0 } else { m - 1.0 };
    let z = m * m;
    let mut y = 7.037_683_6e-2_f32;
    for c in
        [-1.151_461e-1, 1.167_699_9e-1, -1.242_014_1e-1, 1.424_932_3e-1, -1.666_805_8e-1, 2.000_071_4e-1, -2.499_999_4e-1, 3.333_333e-1]
    {
        y = y * m + c;
    }
    y *= m * z;
    let e = e as f32;
    y += -2.121_944_4e-4 * e;
    y += -0.5 * z;
    let ln = m + y + 0.693_359_4 * e;
    let r = ln * std::f32::consts::LOG10_E;
    if x == f32::INFINITY { f32::INFINITY } else { r }
}

/// Pad (with `pad_value`) or cut a spectrogram to exactly `frames` columns.
pub fn fit_frames(s: &Spectrogram, frames: usize, pad_value: f32) -> Spectrogram {
    let mut values = vec![pad_value; s.n_mels * frames];
    let keep = s.n_frames.min(frames);
    for m in 0..s.n_mels {
        values[m * frames..m * frames + keep].copy_from_slice(&s.values[m * s.n_frames..m * s.n_frames + keep]);
    }
    Spectrogram { n_mels: s.n_mels, n_frames: frames, values }
}

/// Interpolation weights along one axis: for each output index, (first input index, weights).
fn axis_weights(n_in: usize, n_out: usize, method: Resize) -> Vec<(usize, Vec<f32>)> {
    let scale = n_in as f64 / n_out as f64;
    (0..n_out)
        .map(|o| {
            let center = (o as f64 + 0.5) * scale;
            match method {
                Resize::Bilinear => {
                    let x = (center - 0.5).max(0.0);
                    let i0 = (x.floor() as usize).min(n_in - 1);
                    let i1 = (i0 + 1).min(n_in - 1);
                    let f = (x - i0 as f64) as f32;
                    if i1 == i0 { (i0, vec![1.0]) } else { (i0, vec![1.0 - f, f]) }
                }
                Resize::Antialiased => {
                    // PIL's triangle filter, support widened by the scale when shrinking.
                    let support = scale.max(1.0);
                    let lo = ((center - support).floor().max(0.0)) as usize;
                    let hi = ((center + support).ceil() as usize).min(n_in);
                    let mut w: Vec<f64> = (lo..hi).map(|i| (1.0 - ((i as f64 + 0.5 - center) / support).abs()).max(0.0)).collect();
                    let total: f64 = w.iter().sum();
                    w.iter_mut().for_each(|x| *x /= total);
                    (lo, w.into_iter().map(|x| x as f32).collect())
                }
            }
        })
        .collect()
}

/// Resize a spectrogram (separably: frames first, then mels).
pub fn resize(s: &Spectrogram, out_mels: usize, out_frames: usize, method: Resize) -> Spectrogram {
    let wf = axis_weights(s.n_frames, out_frames, method);
    let wm = axis_weights(s.n_mels, out_mels, method);
    let mut tmp = vec![0f32; s.n_mels * out_frames];
    for m in 0..s.n_mels {
        let row = &s.values[m * s.n_frames..(m + 1) * s.n_frames];
        for (o, (start, w)) in wf.iter().enumerate() {
            tmp[m * out_frames + o] = dot(&row[*start..start + w.len()], w);
        }
    }
    let mut values = vec![0f32; out_mels * out_frames];
    for (o, (start, w)) in wm.iter().enumerate() {
        for (k, w) in w.iter().enumerate() {
            let src = &tmp[(start + k) * out_frames..(start + k + 1) * out_frames];
            for (d, x) in values[o * out_frames..(o + 1) * out_frames].iter_mut().zip(src) {
                *d += w * x;
            }
        }
    }
    Spectrogram { n_mels: out_mels, n_frames: out_frames, values }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(freq: f64, sr: u32, seconds: f64, amp: f32) -> Vec<f32> {
        let n = (sr as f64 * seconds) as usize;
        (0..n).map(|i| amp * (2.0 * PI * freq * i as f64 / sr as f64).sin() as f32).collect()
    }

    /// The vectorised STFT gives exactly the bits of windowing, realfft's transform and
    /// `re^2 + im^2` (what the features were made with before it), for even and odd halves,
    /// on this CPU's fast path and on the portable one.
    #[test]
    fn frame_power_is_realfft_bit_for_bit() {
        for n_fft in [16usize, 18, 30, 34, 50, 2046, 2048] {
            let r2c = RealFftPlanner::<f32>::new().plan_fft_forward(n_fft);
            let window = hann_periodic(n_fft);
            // Deterministic noise with a tone: every bin non-trivial.
            let mut state = 12345u64;
            let src: Vec<f32> = (0..n_fft)
                .map(|i| {
                    state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5 + (i as f32 * 0.3).sin()
                })
                .collect();
            let mut x: Vec<f32> = src.iter().zip(&window).map(|(s, w)| s * w).collect();
            let mut spec = r2c.make_output_vec();
            r2c.process(&mut x, &mut spec).unwrap();
            let want: Vec<u32> = spec.iter().map(|c| (c.re * c.re + c.im * c.im).to_bits()).collect();
            let mut stft = Stft::new(n_fft);
            for fast in [false, stft.avx2] {
                stft.avx2 = fast;
                let mut buffers = stft.buffers();
                let mut power = vec![f32::NAN; n_fft / 2 + 1];
                stft.frame_power(&src, &window, &mut buffers, &mut power);
                let got: Vec<u32> = power.iter().map(|p| p.to_bits()).collect();
                assert_eq!(got, want, "n_fft {n_fft}, avx2 {fast}");
            }
        }
    }

    /// The vectorisable log10 agrees with f64's over the whole range power_to_db sees, within
    /// 2 units in the last place (a few millionths of a decibel), and keeps infinity.
    #[test]
    fn mean_and_std_are_those_of_f64_arithmetic() {
        let values: Vec<f32> = (0..5003).map(|i| -80.0 + (i as f32 * 0.37).sin() * 30.0 + (i % 7) as f32).collect();
        let n = values.len() as f64;
        let mean = values.iter().map(|&v| v as f64).sum::<f64>() / n;
        let std = (values.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n).sqrt();
        let (m, sd) = Spectrogram { n_mels: 1, n_frames: values.len(), values }.mean_std();
        assert!((m as f64 - mean).abs() < 1e-5 * mean.abs(), "{m} vs {mean}");
        assert!((sd as f64 - std).abs() < 1e-5 * std, "{sd} vs {std}");
    }

    #[test]
    fn log10_is_within_two_ulps_of_f64() {
        let mut state = 7u64;
        for i in 0..200_000 {
            // Log-spaced from 1e-10 to 1e10, then random bit patterns in that range.
            let x = if i < 100_000 {
                10f64.powf(-10.0 + 20.0 * i as f64 / 100_000.0) as f32
            } else {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let (lo, hi) = (1e-10f32.to_bits(), 1e10f32.to_bits());
                f32::from_bits(lo + (state >> 33) as u32 % (hi - lo))
            };
            let (got, exact) = (log10(x) as f64, (x as f64).log10());
            let ulp = {
                let e = (exact as f32).abs();
                (f32::from_bits(e.to_bits() + 1) - e) as f64
            };
            // Near x = 1 the result is tiny and its ulp tinier: there the absolute error counts.
            assert!((got - exact).abs() <= 2.0 * ulp || (got - exact).abs() < 1e-7, "x {x:e}: {got} vs {exact}");
        }
        assert_eq!(log10(f32::INFINITY), f32::INFINITY);
        assert_eq!(log10(1.0), 0.0);
    }

    /// Mel power from frames gathered side by side equals the filters applied frame by frame
    /// (up to the order of the additions), for a frame count that does not fill the last batch.
    #[test]
    fn batched_mel_power_equals_frame_by_frame() {
        let lm = LogMel::new(&FeatureConfig::default()).unwrap();
        let mut state = 99u64;
        let x: Vec<f32> = (0..512 * 21 + 100)
            .map(|i| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                0.2 * ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) + 0.3 * (i as f32 * 0.05).sin()
            })
            .collect();
        let s = lm.mel_power(&x);
        assert_eq!(s.n_frames, 22);
        let mut column = vec![0f32; 128];
        lm.power_frames(&x, |t, power| {
            lm.mel_project(power, &mut column);
            for (m, want) in column.iter().enumerate() {
                let got = s.at(m, t);
                assert!((got - want).abs() <= 1e-5 * want.abs().max(1e-12), "mel {m}, frame {t}: {got} vs {want}");
            }
        });
    }

    #[test]
    fn bands_below_counts_the_filters_that_end_below_a_frequency() {
        let cfg = FeatureConfig::default();
        // librosa.mel_frequencies(130, fmax=11025): band m spans points m .. m + 2; band 109
        // ends at 6,830 Hz, band 110 at 7,014 Hz.
        assert_eq!(cfg.bands_below(7000.0), 110);
        assert_eq!(cfg.bands_below(11025.0), 128);
        assert_eq!(cfg.bands_below(1.0), 0);
        let fb = mel_filterbank(22050.0, cfg.n_fft, cfg.n_mels, 0.0, 11025.0);
        let top_bin = |m: usize| fb[m].iter().rposition(|w| *w > 0.0).unwrap() as f64 * 22050.0 / cfg.n_fft as f64;
        assert!(top_bin(109) <= 7000.0 && top_bin(110) > 7000.0, "{} {}", top_bin(109), top_bin(110));
    }

    #[test]
    fn lowpass_keeps_what_is_below_and_removes_what_is_above() {
        // Whole-second tones at whole hertz: exact FFT bins.
        let low = tone(440.0, 22050, 1.0, 0.5);
        let high = tone(9000.0, 22050, 1.0, 0.3);
        let mix: Vec<f32> = low.iter().zip(&high).map(|(a, b)| a + b).collect();
        let out = lowpass(&mix, 22050, 7000.0);
        let err = out.iter().zip(&low).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(err < 1e-5, "{err}");
        assert_eq!(lowpass(&mix, 22050, 11025.0), mix, "nothing to remove at the Nyquist frequency");
    }

    #[test]
    fn dot_matches_the_plain_sum() {
        for n in [0, 1, 7, 8, 9, 31, 100] {
            let a: Vec<f32> = (0..n).map(|i| i as f32 * 0.5 - 3.0).collect();
            let b: Vec<f32> = (0..n).map(|i| 1.0 / (i as f32 + 1.0)).collect();
            let plain: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            assert!((dot(&a, &b) - plain).abs() <= 1e-4 * plain.abs().max(1.0), "n = {n}");
        }
    }

    #[test]
    fn mel_scale_round_trips_and_matches_slaney_anchor_points() {
        assert!((hz_to_mel(1000.0) - 15.0).abs() < 1e-12);
        assert!((hz_to_mel(200.0) - 3.0).abs() < 1e-12);
        for hz in [0.0, 50.0, 999.0, 1000.0, 4000.0, 11025.0] {
            assert!((mel_to_hz(hz_to_mel(hz)) - hz).abs() < 1e-6);
        }
    }

    #[test]
    fn filterbank_is_slaney_normalised_triangles() {
        let fb = mel_filterbank(22050.0, 2048, 128, 0.0, 11025.0);
        assert_eq!((fb.len(), fb[0].len()), (128, 1025));
        for row in &fb {
            assert!(row.iter().all(|w| *w >= 0.0));
            // Slaney norm: each triangle's area (in Hz) is 1, so sum(w) * bin_width ~ 1 once the
            // filter is wider than a few bins.
        }
        let bin_hz = 22050.0 / 2048.0;
        let area: f64 = fb[100].iter().sum::<f64>() * bin_hz;
        assert!((area - 1.0).abs() < 0.02, "area {area}");
    }

    #[test]
    fn tone_peaks_in_its_mel_band_and_shapes_are_right() {
        let cfg = FeatureConfig::default();
        let lm = LogMel::new(&cfg).unwrap();
        let x = tone(1000.0, 22050, 30.03, 0.5);
        let s = lm.log_mel_unpadded(&x);
        assert_eq!(s.n_mels, 128);
        assert_eq!(s.n_frames, 1 + x.len() / 512);
        let mid = s.n_frames / 2;
        let peak = (0..128).max_by(|&a, &b| s.at(a, mid).total_cmp(&s.at(b, mid))).unwrap();
        let mel_f: Vec<f64> = (0..130).map(|i| mel_to_hz(hz_to_mel(11025.0) * i as f64 / 129.0)).collect();
        assert!(mel_f[peak] < 1000.0 && 1000.0 < mel_f[peak + 2], "peak band {peak}");
        assert!(s.values.iter().all(|v| v.is_finite() && *v <= 0.0 && *v >= -80.0));
        assert_eq!(s.values.iter().copied().fold(f32::MIN, f32::max), 0.0);

        let f = lm.features(&x);
        assert_eq!((f.full.n_mels, f.full.n_frames), (128, 1291));
        assert_eq!((f.small.n_mels, f.small.n_frames), (64, 100));
    }

    #[test]
    fn windows_cover_a_long_track_back_to_back_and_a_short_one_once() {
        let cfg = FeatureConfig { frames: 50, out_frames: 10, excerpt: Excerpt::Windows, ..Default::default() };
        let lm = LogMel::new(&cfg).unwrap();
        let (step, keep) = (50 * 512, 50 * 512 + 2048);
        let ramp: Vec<f32> = (0..100_000).map(|i| i as f32).collect();
        let w = lm.windows(&ramp);
        // Whole windows only: starts 0, 25,600, 51,200 (+27,648 <= 100,000); 76,800 would end past it.
        assert_eq!(w.iter().map(|w| (w[0] as usize, w.len())).collect::<Vec<_>>(), [(0, keep), (step, keep), (2 * step, keep)]);
        let f = lm.features(w[1]);
        assert_eq!(f.full.n_frames, 50);
        assert!(!lm.is_padded(w[1]));
        assert_eq!(lm.windows(&ramp[..keep]).len(), 1, "a track of one window");
        let short = lm.windows(&ramp[..5000]);
        assert_eq!((short.len(), lm.is_padded(short[0])), (1, true), "a short track: one padded window");
        let start = LogMel::new(&FeatureConfig { excerpt: Excerpt::Start, ..cfg.clone() }).unwrap();
        assert_eq!(start.windows(&ramp), [&ramp[..keep]], "one excerpt otherwise");
        assert_ne!(cfg.hash(), start.config().hash());
    }

    #[test]
    fn short_clips_are_padded_with_pad_db_and_long_ones_cut() {
        let cfg = FeatureConfig { frames: 50, out_frames: 10, ..Default::default() };
        let lm = LogMel::new(&cfg).unwrap();
        let mid = LogMel::new(&FeatureConfig { excerpt: Excerpt::Middle, ..lm.config().clone() }).unwrap();
        let (n, keep) = (100_000usize, lm.config().frames * lm.config().hop_length + lm.config().n_fft);
        let ramp: Vec<f32> = (0..n).map(|i| i as f32).collect();
        assert_eq!(lm.excerpt(&ramp), &ramp[..keep], "the start by default");
        let m = mid.excerpt(&ramp);
        assert_eq!(m.len(), keep);
        assert!(
            (m[0] as usize).is_multiple_of(lm.config().hop_length) && (m[0] as usize).abs_diff((n - keep) / 2) < lm.config().hop_length
        );
        assert_eq!(mid.excerpt(&ramp[..keep]), &ramp[..keep], "a clip that fits is kept whole");
        assert_eq!(FeatureConfig::default().hash(), FeatureConfig { excerpt: Excerpt::Start, ..FeatureConfig::default() }.hash());
        assert_ne!(FeatureConfig::default().hash(), mid.config().hash(), "the excerpt is part of the configuration");
        let short = lm.features(&tone(440.0, 22050, 0.5, 0.3)); // 22 frames
        assert_eq!(short.full.n_frames, 50);
        assert_eq!(short.full.at(5, 49), 0.0);
        assert!(short.full.at(5, 30) == cfg.pad_db);
        let long = lm.features(&tone(440.0, 22050, 3.0, 0.3));
        assert_eq!(long.full.n_frames, 50);
    }

    #[test]
    fn silence_is_all_zero_db_and_power_to_db_matches_formula() {
        let lm = LogMel::new(&FeatureConfig::default()).unwrap();
        let s = lm.log_mel_unpadded(&vec![0.0; 22050]);
        assert!(s.values.iter().all(|&v| v == 0.0), "amin/amin = 0 dB everywhere");
        let mut v = vec![1.0, 0.1, 1e-12, 0.0];
        power_to_db(&mut v, 80.0);
        assert_eq!(v[0], 0.0);
        assert!((v[1] + 10.0).abs() < 1e-5);
        assert_eq!(v[2], -80.0);
        assert_eq!(v[3], -80.0);
    }

    #[test]
    fn resize_preserves_constants_and_linear_ramps() {
        let s = Spectrogram { n_mels: 8, n_frames: 40, values: vec![-3.5; 320] };
        for m in [Resize::Bilinear, Resize::Antialiased] {
            let r = resize(&s, 4, 10, m);
            assert!(r.values.iter().all(|v| (v + 3.5).abs() < 1e-5), "{m:?}");
        }
        // A ramp along frames stays a ramp sampled at output centres (away from the edges).
        let ramp = Spectrogram { n_mels: 1, n_frames: 40, values: (0..40).map(|i| i as f32).collect() };
        let r = resize(&ramp, 1, 10, Resize::Antialiased);
        for o in 2..8 {
            assert!((r.values[o] - ((o as f32 + 0.5) * 4.0 - 0.5)).abs() < 1e-4, "{:?}", r.values);
        }
        let b = resize(&ramp, 1, 10, Resize::Bilinear);
        assert!((b.values[3] - 13.5).abs() < 1e-5);
    }

    #[test]
    fn config_hash_changes_with_any_field_and_validation_names_the_problem() {
        let a = FeatureConfig::default();
        let b = FeatureConfig { hop_length: 256, ..a.clone() };
        assert_ne!(a.hash(), b.hash());
        assert_eq!(a.hash(), FeatureConfig::default().hash());
        let bad = FeatureConfig { n_fft: 1023, ..a };
        assert!(bad.validate().unwrap_err().0.contains("n_fft"));
    }
}

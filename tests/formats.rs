//! Decoding of every supported format (fixtures written by tests/data/formats/make_fixtures.py):
//! the samples are the signal that was encoded, mono, at the requested rate.

use genrelab_audio::audio::{decode_any, resample};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/formats");

/// The fixtures' signal, mixed to mono: 0.15 sin(440 t) + 0.15 sin(660 t).
fn reference(rate: u32, seconds: f64) -> Vec<f32> {
    (0..(rate as f64 * seconds) as usize)
        .map(|i| {
            let t = i as f64 / rate as f64;
            (0.15 * (2.0 * std::f64::consts::PI * 440.0 * t).sin() + 0.15 * (2.0 * std::f64::consts::PI * 660.0 * t).sin()) as f32
        })
        .collect()
}

/// Power of `x` at `freq` (Goertzel), normalised by length.
fn power_at(x: &[f32], rate: f64, freq: f64) -> f64 {
    let w = 2.0 * std::f64::consts::PI * freq / rate;
    let (mut s1, mut s2) = (0.0, 0.0);
    for v in x {
        let s = *v as f64 + 2.0 * w.cos() * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    (s1 * s1 + s2 * s2 - 2.0 * w.cos() * s1 * s2) / (x.len() as f64).powi(2)
}

fn decode(name: &str) -> genrelab_audio::audio::Decoded {
    let bytes = std::fs::read(format!("{DIR}/{name}")).unwrap();
    let ext = name.rsplit('.').next();
    decode_any(&bytes, ext, 22_050).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// A lossless stereo 44.1 kHz fixture of `seconds` decodes to the reference signal, up to the
/// 16-bit quantisation.
fn assert_lossless(name: &str, seconds: f64) {
    let d = decode(name);
    assert_eq!((d.source_rate, d.channels, d.source_frames), (44_100, 2, (44_100.0 * seconds) as u64), "{name}");
    let want = resample(&reference(44_100, seconds), 44_100, 22_050).unwrap();
    assert_eq!(d.samples.len(), want.len(), "{name}");
    let worst = d.samples.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(worst < 1e-3, "{name}: 16-bit quantisation only: {worst}");
}

#[test]
fn flac_decodes_losslessly_to_the_same_samples_as_the_signal() {
    assert_lossless("stereo44k.flac", 2.0);
    let m = decode("mono16k.flac");
    assert_eq!((m.source_rate, m.channels), (16_000, 1));
    assert_eq!(m.samples.len(), 44_100, "2 s at 22,050 Hz");
}

#[test]
fn alac_in_m4a_decodes_losslessly_to_the_same_samples_as_the_signal() {
    assert_lossless("stereo44k_alac.m4a", 0.5);
}

#[test]
fn lossy_formats_keep_the_signal() {
    for name in ["stereo44k.ogg", "stereo44k.mp3", "stereo44k_aac.m4a"] {
        let d = decode(name);
        assert_eq!((d.source_rate, d.channels), (44_100, 2), "{name}");
        // Encoders may add a little padding at the ends.
        assert!((d.samples.len() as i64 - 44_100).abs() < 3_000, "{name}: {} samples", d.samples.len());
        let rms = (d.samples.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / d.samples.len() as f64).sqrt();
        assert!((rms - 0.15).abs() < 0.02, "{name}: rms {rms}");
        let (a, b, off) =
            (power_at(&d.samples, 22_050.0, 440.0), power_at(&d.samples, 22_050.0, 660.0), power_at(&d.samples, 22_050.0, 550.0));
        assert!(a > 100.0 * off && b > 100.0 * off, "{name}: 440 Hz {a}, 660 Hz {b}, 550 Hz {off}");
    }
}

#[test]
fn bad_bytes_are_clear_errors() {
    let e = decode_any(b"", Some("mp3"), 22_050).unwrap_err().to_string();
    assert!(e.contains("empty"), "{e}");
    let e = decode_any(b"this is not audio at all, not even close", Some("flac"), 22_050).unwrap_err().to_string();
    assert!(e.contains("not a supported audio format"), "{e}");
    let mut truncated = std::fs::read(format!("{DIR}/stereo44k.ogg")).unwrap();
    truncated.truncate(200);
    assert!(decode_any(&truncated, Some("ogg"), 22_050).is_err());
}

//! Parity with librosa, what the study used. `tests/parity/make_reference.py` wrote librosa's
//! log-mels (and PIL's 64 x 100 resize) for synthetic signals and two gtzan-mini clips; our front
//! end must agree within TOLERANCE_DB wherever librosa's value is above its -80 dB floor.

mod common;

use genrelab_audio::audio::decode_wav;
use genrelab_audio::logmel::{FeatureConfig, LogMel, fit_frames, resize};

/// The agreement we require, in dB, before and after resizing.
const TOLERANCE_DB: f32 = 0.05;

fn read_f32(path: &std::path::Path) -> Vec<f32> {
    std::fs::read(path).unwrap().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}

struct Report {
    max_err: f32,
    compared: usize,
}

fn compare_case(case: &serde_json::Value, root: &std::path::Path) -> Option<Report> {
    let name = case["name"].as_str().unwrap();
    let wav = match (case.get("wav"), case.get("gtzan_mini")) {
        (Some(w), _) => root.join(w.as_str().unwrap()),
        (None, Some(clip)) => {
            let mini = common::gtzan_mini().expect("../shared/data/gtzan-mini was here when the tests were built");
            mini.join("genres").join(clip.as_str().unwrap())
        }
        _ => panic!("bad case {case}"),
    };
    let step = case["frame_step"].as_u64().unwrap() as usize;
    let frames = case["frames"].as_u64().unwrap() as usize;
    let reference = read_f32(&root.join(format!("tests/parity/{name}.mel.f32")));
    let reference_small = read_f32(&root.join(format!("tests/parity/{name}.small.f32")));

    let cfg = FeatureConfig::default();
    let lm = LogMel::new(&cfg).unwrap();
    let decoded = decode_wav(&std::fs::read(&wav).unwrap(), 22050).unwrap();
    assert_eq!(decoded.samples.len() as u64, case["samples"].as_u64().unwrap(), "{name}: sample count");
    let ours = lm.log_mel_unpadded(&decoded.samples);
    assert_eq!(ours.n_frames as u64, case["total_frames"].as_u64().unwrap(), "{name}: frame count");
    let kept = case["kept_frames"].as_u64().unwrap() as usize;
    assert_eq!(reference.len(), 128 * kept);

    let (mut max_err, mut compared) = (0f32, 0usize);
    for m in 0..128 {
        for k in 0..kept {
            let r = reference[m * kept + k];
            let o = ours.at(m, k * step);
            if r > -80.0 + TOLERANCE_DB {
                let e = (o - r).abs();
                assert!(e <= TOLERANCE_DB, "{name}: mel {m}, frame {}: ours {o} dB, librosa {r} dB", k * step);
                max_err = max_err.max(e);
                compared += 1;
            } else {
                assert!(o <= -80.0 + 2.0 * TOLERANCE_DB, "{name}: mel {m}, frame {}: ours {o}, librosa at its floor", k * step);
            }
        }
    }
    let small = resize(&fit_frames(&ours, frames, cfg.pad_db), 64, 100, cfg.resize);
    for (i, (o, r)) in small.values.iter().zip(&reference_small).enumerate() {
        assert!((o - r).abs() <= TOLERANCE_DB, "{name}: resized cell {i}: ours {o}, PIL {r}");
    }
    eprintln!("{name}: {compared} cells compared, max |error| {max_err:.5} dB");
    Some(Report { max_err, compared })
}

/// The cases of `cases.json` with (`gtzan_mini`) or without a gtzan-mini clip.
fn run_cases(gtzan: bool) -> usize {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(root.join("tests/parity/cases.json")).unwrap()).unwrap();
    let mut ran = 0;
    for case in meta["cases"].as_array().unwrap().iter().filter(|c| c.get("gtzan_mini").is_some() == gtzan) {
        let r = compare_case(case, root).expect("compared");
        assert!(r.compared > 1000, "{}: too few cells above the floor to mean anything", case["name"]);
        assert!(r.max_err.is_finite());
        ran += 1;
    }
    ran
}

#[test]
fn log_mel_matches_librosa_on_synthetic_signals() {
    assert_eq!(run_cases(false), 4);
}

#[test]
#[cfg_attr(not(gtzan_mini), ignore = "needs ../shared/data/gtzan-mini, absent when the tests were built")]
fn log_mel_matches_librosa_on_gtzan_mini_clips() {
    assert_eq!(run_cases(true), 2);
}

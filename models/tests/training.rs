//! Training is deterministic, resumes exactly after a crash, and checkpoints round-trip.

use genrelab_models::train::{Batchable, TrainSettings, load_model, predict_proba, train_run};
use genrelab_models::ModelSpec;
use burn::prelude::*;

/// Two separable classes of 8 x 12 "spectrograms": a bright top half or a bright bottom half.
fn data(n: usize) -> (Vec<f32>, Vec<usize>) {
    let (mut x, mut y) = (vec![], vec![]);
    for i in 0..n {
        let class = i % 2;
        for m in 0..8 {
            for f in 0..12 {
                let bright = (m < 4) == (class == 0);
                let noise = (((i * 97 + m * 13 + f * 7) % 17) as f32 - 8.0) / 40.0;
                x.push(if bright { 1.0 } else { -1.0 } + noise);
            }
        }
        y.push(class);
    }
    (x, y)
}

fn settings(epochs: usize) -> TrainSettings {
    TrainSettings { epochs, learning_rate: 1e-2, batch_size: 8, eval_batch_size: 16, seed: 3, data: "toy".into() }
}

fn spec() -> ModelSpec {
    ModelSpec { name: "simple_cnn".into(), mels: 8, frames: 12, classes: 2 }
}

#[test]
fn same_seed_same_history_and_a_crash_resumes_exactly() {
    let (x, y) = data(32);
    let b = Batchable { x: &x, y: &y, mels: 8, frames: 12 };
    let device = Device::flex();
    let a = tempfile::tempdir().unwrap();
    let (_, h1) = train_run(&spec(), &settings(4), b, b, &device, a.path(), |_| {}).unwrap();
    let c = tempfile::tempdir().unwrap();
    let (_, h2) = train_run(&spec(), &settings(4), b, b, &device, c.path(), |_| {}).unwrap();
    let strip = |h: &[genrelab_models::train::EpochRecord]| h.iter().map(|r| (r.epoch, r.train_loss, r.train_acc, r.test_loss, r.test_acc)).collect::<Vec<_>>();
    assert_eq!(strip(&h1), strip(&h2), "same seed, same figures");
    assert!(h1.last().unwrap().train_loss < h1[0].train_loss, "it learns: {:?}", strip(&h1));

    // Crash during epoch 3 (after epoch 2's checkpoint), then run again: it resumes and ends
    // exactly where the uninterrupted run ended.
    let d = tempfile::tempdir().unwrap();
    let crashed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        train_run(&spec(), &settings(4), b, b, &device, d.path(), |r| {
            if r.epoch == 3 {
                panic!("simulated kill");
            }
        })
    }));
    assert!(crashed.is_err());
    let mut seen = vec![];
    let (_, h3) = train_run(&spec(), &settings(4), b, b, &device, d.path(), |r| seen.push(r.epoch)).unwrap();
    assert_eq!(seen, [3, 4], "only the unfinished epochs run again");
    assert_eq!(strip(&h3), strip(&h1));
}

#[test]
fn a_reloaded_checkpoint_predicts_identically() {
    let (x, y) = data(16);
    let b = Batchable { x: &x, y: &y, mels: 8, frames: 12 };
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    let (model, _) = train_run(&spec(), &settings(2), b, b, &device, dir.path(), |_| {}).unwrap();
    let before = predict_proba(&model, b, 5, &device);
    let loaded = load_model(dir.path(), &spec(), &device).unwrap();
    let after = predict_proba(&loaded, b, 7, &device);
    assert_eq!(before.len(), 32);
    assert_eq!(before, after);
    for row in after.chunks(2) {
        assert!((row[0] + row[1] - 1.0).abs() < 1e-5);
    }
}

//! Training is deterministic, resumes exactly after a crash, and checkpoints round-trip.

use genrelab_models::Device;
use genrelab_models::ModelSpec;
use std::time::Duration;

use genrelab_models::train::{
    Batchable, InputUnits, Recipe, RunData, Select, TrainSettings, load_model, load_weights, predict_proba, train_run,
    train_run_checkpointing,
};

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
    let recipe = Recipe { epochs, learning_rate: 1e-2, batch_size: 8, eval_batch_size: 16, ..Recipe::default() };
    TrainSettings { seed: 3, data: "toy".into(), recipe: recipe.for_input(genrelab_models::Input::Clip), units: InputUnits::default() }
}

fn spec() -> ModelSpec {
    ModelSpec { name: "simple_cnn".into(), mels: 8, frames: 12, classes: 2 }
}

#[test]
fn same_seed_same_history_and_a_crash_resumes_exactly() {
    let (x, y) = data(32);
    let b = Batchable { x: &x, y: &y, mels: 8, frames: 12 };
    let device = Device::Cpu;
    let a = tempfile::tempdir().unwrap();
    let h1 = train_run(&spec(), &settings(4), RunData { train: b, valid: None, test: b }, device, a.path(), |_| {}).unwrap().history;
    let c = tempfile::tempdir().unwrap();
    let h2 = train_run(&spec(), &settings(4), RunData { train: b, valid: None, test: b }, device, c.path(), |_| {}).unwrap().history;
    let strip = |h: &[genrelab_models::train::EpochRecord]| {
        h.iter().map(|r| (r.epoch, r.train_loss, r.train_acc, r.test_loss, r.test_acc)).collect::<Vec<_>>()
    };
    assert_eq!(strip(&h1), strip(&h2), "same seed, same figures");
    assert!(h1.last().unwrap().train_loss < h1[0].train_loss, "it learns: {:?}", strip(&h1));

    // Crash during epoch 3, then run again: it resumes from the last checkpoint and ends exactly
    // where the uninterrupted run ended. With a checkpoint after every epoch (interval zero) the
    // last is epoch 2's; with none due before the end (an interval longer than the run) the run
    // starts over.
    for (interval, redone) in [(Duration::ZERO, vec![3, 4]), (Duration::MAX, vec![1, 2, 3, 4])] {
        let d = tempfile::tempdir().unwrap();
        let crashed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            train_run_checkpointing(&spec(), &settings(4), RunData { train: b, valid: None, test: b }, device, d.path(), interval, |r| {
                if r.epoch == 3 {
                    panic!("simulated kill");
                }
            })
        }));
        assert!(crashed.is_err());
        let mut seen = vec![];
        let h3 = train_run(&spec(), &settings(4), RunData { train: b, valid: None, test: b }, device, d.path(), |r| seen.push(r.epoch))
            .unwrap()
            .history;
        assert_eq!(seen, redone, "only the epochs after the last checkpoint run again ({interval:?})");
        assert_eq!(strip(&h3), strip(&h1));
    }
}

#[test]
fn a_reloaded_checkpoint_predicts_identically() {
    let (x, y) = data(16);
    let b = Batchable { x: &x, y: &y, mels: 8, frames: 12 };
    let device = Device::Cpu;
    let dir = tempfile::tempdir().unwrap();
    let model = train_run(&spec(), &settings(2), RunData { train: b, valid: None, test: b }, device, dir.path(), |_| {}).unwrap().model;
    let before = predict_proba(&model, b, None, 5);
    let loaded = load_model(dir.path(), &spec(), device).unwrap();
    let after = predict_proba(&loaded, b, None, 5);
    assert_eq!(before.len(), 32);
    assert_eq!(before, after, "the weights round-trip exactly");
    // Another batch size changes how libtorch blocks its kernels: float rounding, no more.
    let other = predict_proba(&loaded, b, None, 7);
    assert!(other.iter().zip(&after).all(|(a, b)| (a - b).abs() < 1e-5), "{other:?} {after:?}");
    for row in after.chunks(2) {
        assert!((row[0] + row[1] - 1.0).abs() < 1e-5);
    }
}

/// The recipe options: every augmentation on, crops with window averaging, cosine schedule,
/// weight decay, selection and early stopping on the validation part.
#[test]
fn a_full_recipe_trains_on_crops_and_selects_on_validation() {
    // 8 x 40 inputs; crops of 16 frames; the classes differ in every frame, so any crop tells.
    let (mut x, mut y) = (vec![], vec![]);
    for i in 0..24 {
        let class = i % 2;
        for m in 0..8 {
            for f in 0..40 {
                let bright = (m < 4) == (class == 0);
                x.push(if bright { 1.0 } else { -1.0 } + (((i * 31 + m * 7 + f * 3) % 11) as f32 - 5.0) / 30.0);
            }
        }
        y.push(class);
    }
    let all = Batchable { x: &x, y: &y, mels: 8, frames: 40 };
    let d = 8 * 40;
    let (train, valid, test) = (
        Batchable { x: &x[..16 * d], y: &y[..16], ..all },
        Batchable { x: &x[16 * d..20 * d], y: &y[16..20], ..all },
        Batchable { x: &x[20 * d..], y: &y[20..], ..all },
    );
    let recipe = Recipe {
        weight_decay: 1e-3,
        label_smoothing: 0.1,
        mixup_alpha: 0.4,
        gain_db: 1.0,
        time_masks: 1,
        time_mask_width: 4,
        freq_masks: 1,
        freq_mask_width: 2,
        band_drop: 0.5,
        band_drop_hz: 3000.0,
        schedule: genrelab_models::train::Schedule::Cosine,
        warmup_epochs: 1,
        patience: Some(2),
        select: Select::BestValid,
        crop_frames: 16,
        crops_per_epoch: 2,
        window_hop: 8,
        ..settings(12).recipe
    };
    // 1 dB at 5 dB per unit: a gain of up to +-0.2; band drop from band 4.
    let settings = TrainSettings { recipe, units: InputUnits { db_per_unit: 5.0, band_drop_from: 4 }, ..settings(12) };
    let spec = ModelSpec { name: "simple_cnn".into(), mels: 8, frames: 16, classes: 2 };
    let device = Device::Cpu;
    let dir = tempfile::tempdir().unwrap();
    let run =
        |dir: &std::path::Path| train_run(&spec, &settings, RunData { train, valid: Some(valid), test }, device, dir, |_| {}).unwrap();
    let out = run(dir.path());
    let h = &out.history;
    assert!(h.iter().all(|r| r.valid_loss.is_some() && r.learning_rate.is_some()));
    let best = h.iter().min_by(|a, b| a.valid_loss.unwrap().total_cmp(&b.valid_loss.unwrap())).unwrap().epoch;
    assert_eq!(out.epoch, best, "the selected epoch is the best validation epoch");
    assert_eq!(out.weights, "best.safetensors");
    if out.stopped_early {
        assert!(h.len() < 12 && h.len() - best == 2, "stops `patience` epochs after the best: {} / {best}", h.len());
    }
    // The returned model is the selected one, and a second call reuses the finished run.
    let p = predict_proba(&out.model, test, Some((16, 8)), 4);
    assert_eq!(p.len(), 4 * 2);
    let again = run(dir.path());
    assert_eq!(again.history, out.history);
    assert_eq!(predict_proba(&again.model, test, Some((16, 8)), 4), p);
    // One checkpoint at the end only: the best epoch's weights are kept until then, so the same
    // epoch and the same model are selected.
    let once = tempfile::tempdir().unwrap();
    let late =
        train_run_checkpointing(&spec, &settings, RunData { train, valid: Some(valid), test }, device, once.path(), Duration::MAX, |_| {})
            .unwrap();
    assert_eq!((late.epoch, late.weights, late.stopped_early), (out.epoch, out.weights, out.stopped_early));
    assert_eq!(predict_proba(&late.model, test, Some((16, 8)), 4), p);
    let best = load_weights(once.path(), late.weights, &spec, device).unwrap();
    assert_eq!(predict_proba(&best, test, Some((16, 8)), 4), p, "the best weights as written");
    // Validation is required by best_valid selection.
    let none = train_run(&spec, &settings, RunData { train, valid: None, test }, device, tempfile::tempdir().unwrap().path(), |_| {});
    assert!(none.err().unwrap().to_string().contains("validation"));
}

/// Every model of the registry trains an epoch on its kind of input and predicts.
#[test]
fn every_registered_model_trains_a_step_and_predicts() {
    use genrelab_models::{Input, registry};
    let device = Device::Cpu;
    for info in registry() {
        let (mels, frames, crop) = match info.input {
            Input::Clip => (32, 40, 0),
            Input::Crops => (32, 48, 32),
            Input::Stats => (1, 10, 0),
        };
        let n = 6;
        let x: Vec<f32> = (0..n * mels * frames).map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0).collect();
        let y: Vec<usize> = (0..n).map(|i| i % 3).collect();
        let b = Batchable { x: &x, y: &y, mels, frames };
        let recipe = Recipe { crop_frames: crop, window_hop: crop / 2, ..settings(1).recipe };
        let settings = TrainSettings { recipe, ..settings(1) };
        let spec = ModelSpec { name: info.name.into(), mels, frames: if crop > 0 { crop } else { frames }, classes: 3 };
        let dir = tempfile::tempdir().unwrap();
        let out = train_run(&spec, &settings, RunData { train: b, valid: None, test: b }, device, dir.path(), |_| {})
            .unwrap_or_else(|e| panic!("{}: {e}", info.name));
        assert_eq!(out.history.len(), 1, "{}", info.name);
        assert!(out.history[0].train_loss.is_finite(), "{}", info.name);
        let p = predict_proba(&out.model, b, settings.recipe.window(), 4);
        assert_eq!(p.len(), n * 3, "{}", info.name);
        for row in p.chunks(3) {
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-4, "{}: {row:?}", info.name);
        }
    }
}

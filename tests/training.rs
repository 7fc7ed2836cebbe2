//! Training and evaluation as pipeline stages, on a tiny synthetic set: what they write, that a
//! training parameter reruns only train and evaluate, and prediction on files.

mod common;
use common::*;

const TRAIN: &str = "[train]\nmodels = [\"linear\", \"simple_cnn\"]\nseeds = 2\nepochs = 3\nlearning_rate = 0.003\nbatch_size = 8\neval_batch_size = 16\n";

fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        &format!("[download]\nsource = \"synthetic\"\n[download.synthetic]\ngenres = 3\nclips_per_genre = 6\nseconds = 1.5\n{SMALL_FEATURES}{TRAIN}"),
    );
    dir
}

#[test]
fn train_and_evaluate_stages_write_metrics_report_and_rerun_alone_on_a_training_change() {
    let dir = setup();
    assert_eq!(ran(&run_stages(dir.path(), &[])), ["download", "features", "split", "train", "evaluate"]);

    let runs = query(dir.path(), "SELECT model, COUNT(*) AS runs, MIN(test_clips) AS test FROM metrics GROUP BY model ORDER BY model");
    assert_eq!(runs, serde_json::json!([{"model": "linear", "runs": 2, "test": 4}, {"model": "simple_cnn", "runs": 2, "test": 4}]));
    let acc = query(dir.path(), "SELECT MIN(accuracy) AS lo, MAX(accuracy) AS hi FROM metrics");
    assert!(acc[0]["lo"].as_f64().unwrap() >= 0.0 && acc[0]["hi"].as_f64().unwrap() <= 1.0);
    let hist = query(dir.path(), "SELECT COUNT(*) AS n, MAX(epoch) AS last FROM history");
    assert_eq!(hist, serde_json::json!([{"n": 12, "last": 3}]));
    let pg = query(dir.path(), "SELECT COUNT(*) AS n, SUM(support) AS s FROM per_genre");
    assert_eq!(pg, serde_json::json!([{"n": 12, "s": 16}]), "4 runs x 3 genres; ceil(0.2 x 18) = 4 test clips per run");

    let report = dir.path().join("work/report");
    for f in ["metrics.json", "report.md", "report.html", "curves_linear_accuracy.svg", "curves_all_test_accuracy.svg", "confusion_simple_cnn.svg"] {
        assert!(report.join(f).is_file(), "missing {f}");
    }
    let md = std::fs::read_to_string(report.join("report.md")).unwrap();
    assert!(md.contains("| linear | 963 |"), "parameters of the linear model on 16 x 20 inputs, 3 classes:\n{md}");
    let o = genrelab(dir.path(), &["results"]);
    assert!(o.status.success() && String::from_utf8_lossy(&o.stdout).contains("study (1 run)"), "{}", text(&o));

    // A training parameter: only train and evaluate run again.
    let cfg = dir.path().join("genrelab.toml");
    std::fs::write(&cfg, std::fs::read_to_string(&cfg).unwrap().replace("epochs = 3", "epochs = 2")).unwrap();
    let st = status(dir.path());
    assert_eq!(st.iter().map(|s| s.1).collect::<Vec<_>>(), [true, true, true, false, false], "{st:?}");
    assert_eq!(st[3].2, ["parameter train.epochs: 3 -> 2"]);
    assert_eq!(ran(&run_stages(dir.path(), &[])), ["train", "evaluate"]);
    let hist = query(dir.path(), "SELECT MAX(epoch) AS last FROM history");
    assert_eq!(hist[0]["last"], 2);

    // Other data (another synthetic seed): every run retrains; no checkpoint of the old data is reused.
    let ckpt = dir.path().join("work/train/linear/seed0/checkpoint.json");
    let data_of = || -> serde_json::Value { serde_json::from_slice::<serde_json::Value>(&std::fs::read(&ckpt).unwrap()).unwrap()["settings"]["data"].clone() };
    let before = data_of();
    std::fs::write(&cfg, std::fs::read_to_string(&cfg).unwrap().replace("seconds = 1.5", "seconds = 1.5\nseed = 99")).unwrap();
    assert_eq!(ran(&run_stages(dir.path(), &[])), ["download", "features", "split", "train", "evaluate"]);
    assert_ne!(data_of(), before);

    // Prediction: a 5-minute recording and a file that is not audio.
    let long = dir.path().join("long.wav");
    std::fs::write(&long, clip_wav(1, 5, 300.0, 22050)).unwrap();
    let bad = dir.path().join("bad.wav");
    std::fs::write(&bad, b"definitely not a wav").unwrap();
    let o = genrelab(dir.path(), &["predict", "--json", long.to_str().unwrap(), bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "a failed file makes the exit code 2: {}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let preds = v["predictions"].as_array().unwrap();
    // Windows are the training clip length: 40 frames = 39 x 512 samples here (30 s by default);
    // 300 s hold 331.3 of them, and the last third of a window is dropped.
    assert_eq!(preds[0]["windows"], (300 * 22050) / (39 * 512));
    let top = preds[0]["top"].as_array().unwrap();
    assert_eq!(top.len(), 3);
    let total: f64 = top.iter().map(|t| t[1].as_f64().unwrap()).sum();
    assert!((total - 1.0).abs() < 1e-4, "3 genres: the top 3 hold all the probability ({total})");
    assert!(preds[1]["error"].as_str().unwrap().contains("not a readable WAV"), "{}", preds[1]);
}

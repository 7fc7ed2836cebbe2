//! Training and evaluation as pipeline stages, on a tiny synthetic set: what they write, that a
//! training parameter reruns only train and evaluate, and prediction on files.

mod common;
use common::*;

const TRAIN: &str =
    "[train]\nmodels = [\"linear\", \"simple_cnn\"]\nseeds = 2\nepochs = 3\nlearning_rate = 0.003\nbatch_size = 8\neval_batch_size = 16\n";

fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        &format!(
            "[download]\nsource = \"synthetic\"\n[download.synthetic]\ngenres = 3\nclips_per_genre = 6\nseconds = 1.5\n{SMALL_FEATURES}{TRAIN}"
        ),
    );
    dir
}

#[test]
fn train_and_evaluate_stages_write_metrics_report_and_rerun_alone_on_a_training_change() {
    let dir = setup();
    assert_eq!(ran(&run_stages(dir.path(), &[])), ["download", "features", "descriptors", "split", "train", "evaluate"]);

    let runs = query(dir.path(), "SELECT model, COUNT(*) AS runs, MIN(test_clips) AS test FROM metrics GROUP BY model ORDER BY model");
    assert_eq!(runs, serde_json::json!([{"model": "linear", "runs": 2, "test": 4}, {"model": "simple_cnn", "runs": 2, "test": 4}]));
    let acc = query(dir.path(), "SELECT MIN(accuracy) AS lo, MAX(accuracy) AS hi FROM metrics");
    assert!(acc[0]["lo"].as_f64().unwrap() >= 0.0 && acc[0]["hi"].as_f64().unwrap() <= 1.0);
    let hist = query(dir.path(), "SELECT COUNT(*) AS n, MAX(epoch) AS last FROM history");
    assert_eq!(hist, serde_json::json!([{"n": 12, "last": 3}]));
    let pg = query(dir.path(), "SELECT COUNT(*) AS n, SUM(support) AS s FROM per_genre");
    assert_eq!(pg, serde_json::json!([{"n": 12, "s": 16}]), "4 runs x 3 genres; ceil(0.2 x 18) = 4 test clips per run");

    let report = dir.path().join("work/report");
    for f in [
        "metrics.json",
        "report.md",
        "report.html",
        "curves_linear_accuracy.svg",
        "curves_all_test_accuracy.svg",
        "confusion_simple_cnn.svg",
        "confusion_simple_cnn_seeds.svg",
    ] {
        assert!(report.join(f).is_file(), "missing {f}");
    }
    // The page is well-formed (XHTML with inline SVG): header cells, every figure inlined.
    let html = std::fs::read_to_string(report.join("report.html")).unwrap();
    let mut reader = quick_xml::Reader::from_str(html.split_once('\n').unwrap().1);
    let (mut th, mut svg) = (0, 0);
    loop {
        match reader.read_event().unwrap_or_else(|e| panic!("report.html at {}: {e}", reader.buffer_position())) {
            quick_xml::events::Event::Start(e) if e.name().as_ref() == b"th" => th += 1,
            quick_xml::events::Event::Start(e) if e.name().as_ref() == b"svg" => svg += 1,
            quick_xml::events::Event::Eof => break,
            _ => {}
        }
    }
    let figures = std::fs::read_dir(&report).unwrap().flatten().filter(|e| e.file_name().to_string_lossy().ends_with(".svg")).count();
    assert!(th >= 11 && svg == figures && svg > 0, "th {th}, inline svg {svg}, figures {figures}");
    // Each model's two seeds averaged: scored on the one test part, every test clip once.
    let metrics: serde_json::Value = serde_json::from_slice(&std::fs::read(report.join("metrics.json")).unwrap()).unwrap();
    for m in metrics["models"].as_array().unwrap() {
        let seeds = &m["seeds_averaged"];
        assert_eq!(seeds["parts"], 1, "{m}");
        let tested: u64 =
            seeds["confusion"].as_array().unwrap().iter().flat_map(|r| r.as_array().unwrap()).map(|v| v.as_u64().unwrap()).sum();
        assert_eq!(tested, 4, "{m}");
        assert!((0.0..=1.0).contains(&seeds["macro_f1"]["mean"].as_f64().unwrap()), "{m}");
    }
    let md = std::fs::read_to_string(report.join("report.md")).unwrap();
    assert!(md.contains("| linear | 963 |"), "parameters of the linear model on 16 x 20 inputs, 3 classes:\n{md}");
    let o = genrelab(dir.path(), &["results"]);
    // The synthetic set borrows GTZAN's genre names but is not GTZAN: no study figures beside it.
    assert!(o.status.success() && !String::from_utf8_lossy(&o.stdout).contains("study (1 run)"), "{}", text(&o));
    // The cost: a run's training time is the sum of its epochs' in the history, and the report
    // says where the runs trained.
    let cost = query(
        dir.path(),
        "SELECT m.run, MIN(m.train_seconds) AS t, SUM(h.seconds) AS s FROM metrics m JOIN history h ON m.run = h.run GROUP BY m.run",
    );
    assert_eq!(cost.as_array().unwrap().len(), 4, "{cost}");
    for r in cost.as_array().unwrap() {
        let (t, s) = (r["t"].as_f64().unwrap(), r["s"].as_f64().unwrap());
        assert!(t > 0.0 && (t - s).abs() < 1e-9, "{r}");
    }
    let results = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        results.contains("Cost: ") && results.contains("for the 4 runs") && results.contains("on CPU (libtorch 2.13.0), "),
        "{results}"
    );
    // One test part: a seed ensemble's accuracy has no spread to show.
    let row = results.lines().find(|l| l.starts_with("| linear | linear, 2 seeds averaged |")).expect(&results);
    assert!(!row.contains("+-") && results.contains("| test acc (one test part) |"), "{results}");

    // A training parameter: only train and evaluate run again.
    let cfg = dir.path().join("genrelab.toml");
    std::fs::write(&cfg, std::fs::read_to_string(&cfg).unwrap().replace("epochs = 3", "epochs = 2")).unwrap();
    let st = status(dir.path());
    assert_eq!(st.iter().map(|s| s.1).collect::<Vec<_>>(), [true, true, true, true, false, false], "{st:?}");
    assert_eq!(st[4].2, ["parameter train.epochs: 3 -> 2"]);
    // `results` still shows the last evaluation, and says it is stale and why.
    let o = genrelab(dir.path(), &["results"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success() && err.contains("evaluate is stale now") && err.contains("train.epochs: 3 -> 2"), "{}", text(&o));
    assert_eq!(ran(&run_stages(dir.path(), &[])), ["train", "evaluate"]);
    let o = genrelab(dir.path(), &["results"]);
    assert!(o.status.success() && !String::from_utf8_lossy(&o.stderr).contains("stale"), "{}", text(&o));
    let hist = query(dir.path(), "SELECT MAX(epoch) AS last FROM history");
    assert_eq!(hist[0]["last"], 2);

    // Other data (another synthetic seed): every run retrains; no checkpoint of the old data is reused.
    let ckpt = dir.path().join("work/train/linear/seed0/checkpoint.json");
    let data_of = || -> serde_json::Value {
        serde_json::from_slice::<serde_json::Value>(&std::fs::read(&ckpt).unwrap()).unwrap()["settings"]["data"].clone()
    };
    let before = data_of();
    std::fs::write(&cfg, std::fs::read_to_string(&cfg).unwrap().replace("seconds = 1.5", "seconds = 1.5\nseed = 99")).unwrap();
    assert_eq!(ran(&run_stages(dir.path(), &[])), ["download", "features", "descriptors", "split", "train", "evaluate"]);
    assert_ne!(data_of(), before);

    // Prediction: a 5-minute recording and a file that is not audio.
    let long = dir.path().join("long.wav");
    std::fs::write(&long, clip_wav(1, 5, 300.0, 22050)).unwrap();
    let bad = dir.path().join("bad.wav");
    std::fs::write(&bad, b"definitely not a wav").unwrap();
    let narrow = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/formats/mono16k.flac");
    // Half a training clip (0.45 s here) of sound, 0.4 s of sound, and a clip of digital silence.
    let (half, short, silent) = (dir.path().join("half.wav"), dir.path().join("short.wav"), dir.path().join("silent.wav"));
    std::fs::write(&half, clip_wav(1, 5, 0.46, 22050)).unwrap();
    std::fs::write(&short, clip_wav(1, 5, 0.4, 22050)).unwrap();
    std::fs::write(&silent, silence_wav(1.0, 22050, 0)).unwrap();
    let quiet = dir.path().join("quiet.wav");
    std::fs::write(&quiet, silence_wav(1.0, 22050, 1)).unwrap();
    let files = [&long, &bad, std::path::Path::new(narrow), &half, &short, &silent, &quiet].map(|p| p.to_str().unwrap().to_string());
    let mut args = vec!["predict", "--json"];
    args.extend(files.iter().map(String::as_str));
    let o = genrelab(dir.path(), &args);
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
    assert!(preds[1]["error"].as_str().unwrap().contains("not a supported audio format"), "{}", preds[1]);
    // These models read the whole band (to 11,025 Hz): a 16 kHz file is predicted, with a warning.
    assert!(preds[0].get("warning").is_none(), "{}", preds[0]);
    assert!(preds[2]["warning"].as_str().unwrap().contains("recorded at 16000 Hz: nothing above 8000 Hz"), "{}", preds[2]);
    // Short and silent files are predicted, and say why the prediction means little.
    assert!(preds[3].get("warning").is_none(), "at least half a clip: {}", preds[3]);
    assert!(preds[4]["warning"].as_str().unwrap().contains("only 0.4 s of audio, padded to the models' 0.9 s clip"), "{}", preds[4]);
    assert_eq!(preds[5]["warning"], "silent (digital silence): the prediction means nothing", "{}", preds[5]);
    // One 16-bit step: 20 log10(1 / 32768) = -90.3 dBFS.
    assert_eq!(preds[6]["warning"], "silent (peak -90 dBFS): the prediction means nothing", "{}", preds[6]);
    assert!(preds[3..].iter().all(|p| p["top"].as_array().unwrap().len() == 3 && p["error"].is_null()));

    // A folder stands for the audio files under it, sub-folders included, in path order.
    let library = dir.path().join("library");
    std::fs::create_dir_all(library.join("album")).unwrap();
    std::fs::copy(&half, library.join("album/1.wav")).unwrap();
    std::fs::copy(narrow, library.join("2.FLAC")).unwrap();
    std::fs::write(library.join("album/cover.jpg"), b"not audio").unwrap();
    let o = genrelab(dir.path(), &["predict", "--json", library.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let in_folder = v["predictions"].as_array().unwrap();
    let files: Vec<&str> = in_folder.iter().map(|p| p["file"].as_str().unwrap()).collect();
    assert_eq!(files, [library.join("2.FLAC").to_str().unwrap(), library.join("album/1.wav").to_str().unwrap()]);
    assert_eq!(in_folder[0]["top"], preds[2]["top"], "the same file, the same prediction");
    assert_eq!(in_folder[1]["top"], preds[3]["top"]);
    let notes = dir.path().join("notes");
    std::fs::create_dir(&notes).unwrap();
    std::fs::write(notes.join("todo.txt"), b"").unwrap();
    let o = genrelab(dir.path(), &["predict", library.to_str().unwrap(), notes.to_str().unwrap()]);
    assert!(!o.status.success() && text(&o).contains(&format!("{}: a folder without audio files", notes.display())), "{}", text(&o));
}

/// A WAV of digital silence, or of a square wave of `level` (16-bit steps).
fn silence_wav(seconds: f32, rate: u32, level: i16) -> Vec<u8> {
    let spec = hound::WavSpec { channels: 1, sample_rate: rate, bits_per_sample: 16, sample_format: hound::SampleFormat::Int };
    let mut c = std::io::Cursor::new(Vec::new());
    let mut w = hound::WavWriter::new(&mut c, spec).unwrap();
    (0..(seconds * rate as f32) as usize).for_each(|i| w.write_sample(if i % 2 == 0 { level } else { -level }).unwrap());
    w.finalize().unwrap();
    c.into_inner()
}

/// 32 Slaney bands over 0 - 11,025 Hz: the lowest this many end at or below 3 kHz (librosa).
const BANDS_BELOW_3K: u64 = 19;

/// The models beyond the study (a crop model and the descriptor baseline) under 5-fold
/// cross-validation with validation-based selection and every recipe option, through the CLI.
#[test]
fn crop_and_descriptor_models_train_under_kfold_with_validation_selection() {
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        &format!(
            "threads = 1\n[download]\nsource = \"synthetic\"\n[download.synthetic]\ngenres = 3\nclips_per_genre = 5\nseconds = 1.5\n{SMALL_FEATURES}\
             [split]\nprotocol = \"kfold\"\nfolds = 5\n\
             [train]\nmodels = [\"resnet\", \"logreg\"]\nseeds = 1\nepochs = 4\nlearning_rate = 0.003\nbatch_size = 8\n\
             select = \"best_valid\"\npatience = 2\ncrop_frames = 16\nwindow_hop = 8\ncrops_per_epoch = 2\nmixup_alpha = 0.2\n\
             label_smoothing = 0.1\ngain_db = 3.0\ntime_masks = 1\ntime_mask_width = 3\nfreq_masks = 1\nfreq_mask_width = 2\n\
             schedule = \"cosine\"\nwarmup_epochs = 1\nweight_decay = 0.0001\n\
             [train.model.logreg]\nepochs = 6\nlearning_rate = 0.01\nmixup_alpha = 0.0\n\
             [train.model.resnet]\nmax_hz = 5000.0\nband_drop = 0.5\nband_drop_hz = 3000.0\n[descriptors]\nmax_hz = 7000.0\n\
             [evaluate]\nensembles = [[\"resnet\", \"logreg\"]]\n"
        ),
    );
    let ran_stages = run_stages(dir.path(), &[]);
    assert_eq!(ran(&ran_stages), ["download", "features", "descriptors", "split", "train", "evaluate"], "{ran_stages:?}");

    // Every track is in exactly one fold; a run never trains on its validation or test fold.
    for (dir_name, model) in [("resnet", "resnet"), ("logreg", "logreg")] {
        for fold in 0..5 {
            let p = dir.path().join(format!("work/train/{dir_name}/fold{fold}-seed0/checkpoint.json"));
            let c: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
            assert_eq!(c["spec"]["name"], model);
            assert_eq!(c["valid_clips"], 3, "one fold of 15 clips validates");
            let sel = c["selected_epoch"].as_u64().unwrap() as usize;
            let hist = c["history"].as_array().unwrap();
            let best = hist.iter().min_by(|a, b| a["valid_loss"].as_f64().unwrap().total_cmp(&b["valid_loss"].as_f64().unwrap())).unwrap();
            assert_eq!(sel as u64, best["epoch"].as_u64().unwrap(), "selected on validation loss, not on test");
            assert_eq!(c["weights"], "best.safetensors");
            assert_eq!(c["settings"]["recipe"]["select"], "best_valid");
            // `threads = 1` sizes the pool libtorch trains on, and the checkpoint records it.
            let on = c["trained_on"].as_str().unwrap();
            assert!(on == "CPU (libtorch 2.13.0), 1 thread" || on.starts_with("CPU (libtorch 2.13.0), 1 thread, "), "{on}");
            if model == "resnet" {
                assert_eq!(c["settings"]["recipe"]["crop_frames"], 16);
                assert_eq!(c["spec"]["frames"], 16);
                // 32 Slaney bands over 0 - 11,025 Hz: the lowest 24 end at or below 5 kHz.
                assert_eq!((c["spec"]["mels"].as_u64(), c["max_hz"].as_f64()), (Some(24), Some(5000.0)));
                assert_eq!(c["settings"]["units"]["band_drop_from"], BANDS_BELOW_3K, "band drop from the bands above 3 kHz");
                assert_eq!(c["settings"]["recipe"]["band_drop_hz"], 3000.0, "the recipe as configured");
                // The gain in input units: 3 dB over the normalisation's 15.5 dB.
                let (db, per_unit) =
                    (c["settings"]["recipe"]["gain_db"].as_f64().unwrap(), c["settings"]["units"]["db_per_unit"].as_f64().unwrap());
                assert!((db / per_unit - 3.0 / 15.5).abs() < 1e-6);
            } else {
                assert_eq!(c["settings"]["recipe"]["crop_frames"], 0);
                assert_eq!(c["settings"]["recipe"]["mixup_alpha"], 0.0, "per-model override");
                assert_eq!(c["spec"]["mels"], 1);
                assert_eq!(c["max_hz"], 7000.0, "the descriptors' band limit travels with the run");
                assert_eq!(c["stats_mean"].as_array().unwrap().len(), c["spec"]["frames"].as_u64().unwrap() as usize);
            }
        }
    }
    let folds = query(dir.path(), "SELECT COUNT(DISTINCT fold) AS folds, COUNT(*) AS rows, COUNT(DISTINCT track_id) AS tracks FROM split");
    assert_eq!(folds, serde_json::json!([{"folds": 5, "rows": 15, "tracks": 15}]));
    let m = query(dir.path(), "SELECT model, COUNT(*) AS runs, SUM(test_clips) AS tested FROM metrics GROUP BY model ORDER BY model");
    assert_eq!(
        m,
        serde_json::json!([{"model": "logreg", "runs": 5, "tested": 15}, {"model": "resnet", "runs": 5, "tested": 15}]),
        "every clip tested once per model"
    );
    let d = query(dir.path(), "SELECT COUNT(*) AS n, MIN(tempo) AS lo, MAX(tempo) AS hi FROM descriptors");
    assert_eq!(d[0]["n"], 15);
    assert!(d[0]["lo"].as_f64().unwrap() >= 30.0 && d[0]["hi"].as_f64().unwrap() <= 300.0, "{d}");

    // The declared ensemble across models is scored per fold, and is what predict uses by name.
    let ev: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.path().join("work/report/metrics.json")).unwrap()).unwrap();
    let ens = &ev["ensembles"][0];
    assert_eq!(ens["name"], "resnet+logreg");
    assert_eq!(ens["parts"], 5);
    let tested: u64 = ens["confusion"].as_array().unwrap().iter().flat_map(|r| r.as_array().unwrap()).map(|v| v.as_u64().unwrap()).sum();
    assert_eq!(tested, 15, "every clip scored once by the ensemble");
    let report = std::fs::read_to_string(dir.path().join("work/report/report.md")).unwrap();
    assert!(report.contains("| resnet+logreg | resnet, logreg |"), "{report}");

    // A recipe change of one model reruns train (only that model's runs retrain) and evaluate.
    let cfg = dir.path().join("genrelab.toml");
    std::fs::write(&cfg, std::fs::read_to_string(&cfg).unwrap().replace("epochs = 6", "epochs = 5")).unwrap();
    let before = std::fs::metadata(dir.path().join("work/train/resnet/fold0-seed0/checkpoint.json")).unwrap().modified().unwrap();
    assert_eq!(ran(&run_stages(dir.path(), &[])), ["train", "evaluate"]);
    let after = std::fs::metadata(dir.path().join("work/train/resnet/fold0-seed0/checkpoint.json")).unwrap().modified().unwrap();
    assert_eq!(before, after, "the resnet runs are reused");

    // Every run is also scored on its validation part: with the run's own test windows, that is
    // the validation loss of the epoch it selected, as training measured it.
    let metrics = |dir: &std::path::Path| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(dir.join("work/report/metrics.json")).unwrap()).unwrap()
    };
    let ev = metrics(dir.path());
    let runs = ev["runs"].as_array().unwrap();
    for r in runs {
        let p = dir.path().join(format!("work/train/{}/checkpoint.json", r["run"].as_str().unwrap()));
        let c: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        let sel = &c["history"][c["selected_epoch"].as_u64().unwrap() as usize - 1];
        assert_eq!(r["valid"]["clips"], 3, "{r}");
        let (loss, acc) = (r["valid"]["loss"].as_f64().unwrap(), r["valid"]["accuracy"].as_f64().unwrap());
        assert!((loss - sel["valid_loss"].as_f64().unwrap()).abs() < 1e-4, "{}: {loss} vs {}", r["run"], sel["valid_loss"]);
        assert!((acc - sel["valid_acc"].as_f64().unwrap()).abs() < 1e-9, "{}: {acc} vs {}", r["run"], sel["valid_acc"]);
    }
    assert!(ev["window_hop"].is_null());
    // The test windows' hop is an evaluation setting: only evaluate runs again, the crop model's
    // scores change and the descriptor model's do not.
    std::fs::write(&cfg, std::fs::read_to_string(&cfg).unwrap().replace("[evaluate]\n", "[evaluate]\nwindow_hop = 3\n")).unwrap();
    assert_eq!(ran(&run_stages(dir.path(), &[])), ["evaluate"]);
    let ev2 = metrics(dir.path());
    assert_eq!(ev2["window_hop"], 3);
    let loss_of = |ev: &serde_json::Value, model: &str| -> Vec<f64> {
        ev["runs"].as_array().unwrap().iter().filter(|r| r["model"] == model).map(|r| r["test_loss"].as_f64().unwrap()).collect()
    };
    assert_eq!(loss_of(&ev, "logreg"), loss_of(&ev2, "logreg"));
    assert_ne!(loss_of(&ev, "resnet"), loss_of(&ev2, "resnet"), "resnet scored over windows 3 frames apart");
    let report = std::fs::read_to_string(dir.path().join("work/report/report.md")).unwrap();
    assert!(report.contains("windows: 3 frames apart (`[evaluate] window_hop`)"), "{report}");
    // predict averages the crops as the last evaluation did.
    let hop_wav = dir.path().join("hop.wav");
    std::fs::write(&hop_wav, stereo_wav(2.0, 22_050)).unwrap();
    let resnet_top = || -> serde_json::Value {
        let o = genrelab(dir.path(), &["predict", "--json", "--top", "3", "--model", "resnet", hop_wav.to_str().unwrap()]);
        assert!(o.status.success(), "{}", text(&o));
        serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()["predictions"][0]["top"].clone()
    };
    let with_hop_3 = resnet_top();
    // `--set` overrides the file for one command: the stages see the effective value.
    let o = genrelab(dir.path(), &["--set", "evaluate.window_hop=5", "status", "--json"]);
    assert!(o.status.success() && text(&o).contains("evaluate.window_hop: 3 -> 5"), "{}", text(&o));
    let o = genrelab(dir.path(), &["--set", "evaluate.window_hop=0", "run"]);
    assert!(!o.status.success() && text(&o).contains("window_hop must be at least 1"), "{}", text(&o));
    std::fs::write(&cfg, std::fs::read_to_string(&cfg).unwrap().replace("window_hop = 3\n", "")).unwrap();
    assert_eq!(ran(&run_stages(dir.path(), &[])), ["evaluate"]);
    assert_eq!(loss_of(&metrics(dir.path()), "resnet"), loss_of(&ev, "resnet"), "the runs' own windows again");
    assert_ne!(resnet_top(), with_hop_3);

    // Prediction with both models on a stereo 44.1 kHz FLAC-less WAV and a timeline.
    let wav = dir.path().join("stereo.wav");
    std::fs::write(&wav, stereo_wav(4.0, 44_100)).unwrap();
    for model in ["resnet", "logreg"] {
        let o = genrelab(dir.path(), &["predict", "--json", "--timeline", "--hop", "0.5", "--model", model, wav.to_str().unwrap()]);
        assert!(o.status.success(), "{}", text(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let p = &v["predictions"][0];
        assert_eq!(p["channels"], 2);
        assert_eq!(p["sample_rate"], 44_100);
        let tl = p["timeline"].as_array().unwrap();
        assert!(tl.len() > 3 && tl.len() == p["windows"].as_u64().unwrap() as usize, "{p}");
        assert!((tl[1]["start"].as_f64().unwrap() - 0.5).abs() < 0.01);
    }

    // The ensemble's probabilities are the mean of its members' (3 genres: --top 3 is all of them).
    let probs = |model: &str| -> std::collections::BTreeMap<String, f64> {
        let o = genrelab(dir.path(), &["predict", "--json", "--top", "3", "--model", model, wav.to_str().unwrap()]);
        assert!(o.status.success(), "{}", text(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        v["predictions"][0]["top"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| (t[0].as_str().unwrap().to_string(), t[1].as_f64().unwrap()))
            .collect()
    };
    let (r, l, both) = (probs("resnet"), probs("logreg"), probs("resnet+logreg"));
    for (genre, p) in &both {
        assert!((p - (r[genre] + l[genre]) / 2.0).abs() < 1e-6, "{genre}: {p} vs {} and {}", r[genre], l[genre]);
    }
    let o = genrelab(dir.path(), &["predict", "--model", "resnet+nosuch", wav.to_str().unwrap()]);
    assert!(!o.status.success() && text(&o).contains("no trained runs of model `nosuch`"), "{}", text(&o));

    // Every format, any rate and channel count.
    let formats = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/formats");
    let files: Vec<String> =
        ["stereo44k.flac", "stereo44k.ogg", "stereo44k.mp3", "mono16k.flac", "stereo44k_aac.m4a", "stereo44k_alac.m4a"]
            .iter()
            .map(|f| format!("{formats}/{f}"))
            .collect();
    let mut args = vec!["predict", "--json", "--model", "resnet"];
    args.extend(files.iter().map(String::as_str));
    let o = genrelab(dir.path(), &args);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let rates: Vec<i64> = v["predictions"].as_array().unwrap().iter().map(|p| p["sample_rate"].as_i64().unwrap()).collect();
    assert_eq!(rates, [44_100, 44_100, 44_100, 16_000, 44_100, 44_100]);
    let channels: Vec<i64> = v["predictions"].as_array().unwrap().iter().map(|p| p["channels"].as_i64().unwrap()).collect();
    assert_eq!(channels, [2, 2, 2, 1, 2, 2]);
    assert!(v["predictions"][3].get("warning").is_none(), "the resnet reads below 5 kHz only: {}", v["predictions"][3]);
}

/// A stereo 16-bit WAV: a tone on the left, its octave on the right.
fn stereo_wav(seconds: f32, rate: u32) -> Vec<u8> {
    let spec = hound::WavSpec { channels: 2, sample_rate: rate, bits_per_sample: 16, sample_format: hound::SampleFormat::Int };
    let mut cursor = std::io::Cursor::new(Vec::new());
    {
        let mut w = hound::WavWriter::new(&mut cursor, spec).unwrap();
        for i in 0..(seconds * rate as f32) as usize {
            let t = i as f32 / rate as f32;
            w.write_sample(((2.0 * std::f32::consts::PI * 330.0 * t).sin() * 8000.0) as i16).unwrap();
            w.write_sample(((2.0 * std::f32::consts::PI * 660.0 * t).sin() * 8000.0) as i16).unwrap();
        }
        w.finalize().unwrap();
    }
    cursor.into_inner()
}

/// `genrelab tune`: two trials on a tiny synthetic set, scored on validation folds, kept in the
/// store and reused by a second call.
#[test]
fn tune_runs_two_trials_on_validation_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        &format!(
            "[download]\nsource = \"synthetic\"\n[download.synthetic]\ngenres = 3\nclips_per_genre = 4\nseconds = 1.5\n{SMALL_FEATURES}\
             [split]\nprotocol = \"kfold\"\nfolds = 4\n\
             [train]\nmodels = [\"linear\"]\nepochs = 3\nbatch_size = 8\n\
             [tune]\nmodel = \"logreg\"\ntrials = 2\n[tune.space]\nlearning_rate = [0.01, 0.1]\nweight_decay = [0.0]\n"
        ),
    );
    let o = genrelab(dir.path(), &["tune", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let trials: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let trials = trials.as_array().unwrap();
    assert_eq!(trials.len(), 2);
    let mut lrs: Vec<f64> = trials.iter().map(|t| t["params"]["learning_rate"].as_f64().unwrap()).collect();
    lrs.sort_by(f64::total_cmp);
    assert_eq!(lrs, [0.01, 0.1]);
    for t in trials {
        assert_eq!(t["runs"], 4, "one run per fold");
        let acc = t["valid_acc"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&acc) && t["valid_loss"].as_f64().unwrap() > 0.0, "{t}");
    }
    assert!(trials[0]["valid_loss"].as_f64() <= trials[1]["valid_loss"].as_f64(), "best first");
    let table = query(dir.path(), "SELECT COUNT(*) AS n FROM tune");
    assert_eq!(table[0]["n"], 2);
    // The runs validated on the next fold and never trained on it.
    let c: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.path().join(format!("work/tune/{}/logreg/fold0-seed0/checkpoint.json", trials[0]["trial"].as_str().unwrap())))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(c["valid_clips"], 3);
    assert_eq!(c["settings"]["recipe"]["select"], "best_valid");
    // A second call reuses both trials: same figures, no training.
    let o = genrelab(dir.path(), &["tune", "--json"]);
    let again: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    for (a, b) in again.as_array().unwrap().iter().zip(trials) {
        assert_eq!(a["valid_loss"], b["valid_loss"]);
        assert!(a["seconds"].as_f64().unwrap() < 1.0, "reused, not retrained: {a}");
    }

    // `[tune] folds`: scored on the first 2 folds only, from the runs already trained...
    let selected_loss = |trial: &str, fold: usize| -> f64 {
        let p = dir.path().join(format!("work/tune/{trial}/logreg/fold{fold}-seed0/checkpoint.json"));
        let c: serde_json::Value = serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap();
        c["history"][c["selected_epoch"].as_u64().unwrap() as usize - 1]["valid_loss"].as_f64().unwrap()
    };
    let o = genrelab(dir.path(), &["--set", "tune.folds=2", "tune", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let two: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    for t in two.as_array().unwrap() {
        let id = t["trial"].as_str().unwrap();
        assert_eq!(t["runs"], 2, "{t}");
        let mean = (selected_loss(id, 0) + selected_loss(id, 1)) / 2.0;
        assert!((t["valid_loss"].as_f64().unwrap() - mean).abs() < 1e-12, "{t}: {mean}");
        assert!(dir.path().join(format!("work/tune/{id}/logreg/fold3-seed0")).exists(), "other folds' runs are kept");
    }
    // ... and a new trial trains those folds alone.
    let o = genrelab(dir.path(), &["--set", "tune.folds=2", "--set", "tune.space.learning_rate=[0.03]", "tune", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let new: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let id = new[0]["trial"].as_str().unwrap();
    let runs: Vec<bool> = (0..4).map(|f| dir.path().join(format!("work/tune/{id}/logreg/fold{f}-seed0")).exists()).collect();
    assert_eq!(runs, [true, true, false, false]);
    let o = genrelab(dir.path(), &["--set", "tune.folds=5", "tune"]);
    assert!(
        !o.status.success()
            && text(&o).contains("[tune] folds = 5: needs a k-fold split with at least that many folds (this split: kfold with 4 folds)"),
        "{}",
        text(&o)
    );
}

/// The histories of every run of a work folder, by run id, without the wall times (the figures a
/// run's training produced, to the last bit).
fn histories(work: &std::path::Path) -> std::collections::BTreeMap<String, (Vec<[f64; 6]>, u64)> {
    let mut out = std::collections::BTreeMap::new();
    for model in std::fs::read_dir(work.join("train")).unwrap() {
        for run in std::fs::read_dir(model.unwrap().path()).unwrap() {
            let run = run.unwrap().path();
            let c: serde_json::Value = serde_json::from_slice(&std::fs::read(run.join("checkpoint.json")).unwrap()).unwrap();
            let f = |r: &serde_json::Value, k: &str| r[k].as_f64().unwrap_or(f64::NAN);
            let rows = c["history"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| {
                    [f(r, "train_loss"), f(r, "train_acc"), f(r, "valid_loss"), f(r, "valid_acc"), f(r, "test_loss"), f(r, "test_acc")]
                })
                .collect();
            out.insert(c["run"].as_str().unwrap().to_string(), (rows, c["selected_epoch"].as_u64().unwrap()));
        }
    }
    out
}

#[test]
fn jobs_train_runs_side_by_side_in_worker_processes_with_the_same_results() {
    let body = format!(
        "[download]\nsource = \"synthetic\"\n[download.synthetic]\ngenres = 3\nclips_per_genre = 4\nseconds = 1.5\n{SMALL_FEATURES}\
         [split]\nprotocol = \"kfold\"\nfolds = 4\n\
         [train]\nmodels = [\"simple_cnn\", \"logreg\"]\nseeds = 1\nepochs = 3\nlearning_rate = 0.003\nbatch_size = 4\n\
         select = \"best_valid\"\nmixup_alpha = 0.2\n\
         [tune]\nmodel = \"logreg\"\ntrials = 2\n[tune.space]\nlearning_rate = [0.01, 0.1]\n"
    );
    // One process on one thread, and two workers on one thread each: the same runs to the bit.
    let one = tempfile::tempdir().unwrap();
    write_config(one.path(), &format!("threads = 1\njobs = 1\n{body}"));
    let o = genrelab(one.path(), &["run"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(!text(&o).contains("worker processes"), "{}", text(&o));

    let two = tempfile::tempdir().unwrap();
    write_config(two.path(), &format!("threads = 2\njobs = 2\n{body}"));
    let o = genrelab(two.path(), &["run"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("training in worker processes jobs=2 runs=8 threads_each=1"), "{}", text(&o));
    let expected = histories(&one.path().join("work"));
    assert_eq!(expected.len(), 8, "2 models x 4 folds");
    assert_eq!(histories(&two.path().join("work")), expected, "each run trains the same in a worker as in one process");

    // On two threads libtorch splits some reductions differently: the same runs up to float
    // rounding (the README says so), not to the bit.
    let wide = tempfile::tempdir().unwrap();
    write_config(wide.path(), &format!("threads = 2\njobs = 1\n{body}"));
    assert!(genrelab(wide.path(), &["run", "train"]).status.success());
    let other = histories(&wide.path().join("work"));
    assert_eq!(other.keys().collect::<Vec<_>>(), expected.keys().collect::<Vec<_>>());
    // The losses (train, validation, test) agree within 1 % (measured: 6e-4 at most after 3
    // epochs; another seed or shuffle moves them by tenths); an accuracy could flip on a clip
    // whose two top classes tie to rounding, so they are not compared.
    let mut worst = 0f64;
    for (run, (rows, _)) in &other {
        for (a, b) in rows.iter().zip(&expected[run].0) {
            for (x, y) in [(a[0], b[0]), (a[2], b[2]), (a[4], b[4])] {
                assert!((x.is_nan() && y.is_nan()) || (x - y).abs() <= 1e-2 * (1.0 + y.abs()), "{run}: {a:?} on 2 threads, {b:?} on 1");
                worst = worst.max((x - y).abs());
            }
        }
    }
    eprintln!("largest loss difference between 1 and 2 threads: {worst:e}");
    for run in ["simple_cnn/fold0-seed0", "logreg/fold3-seed0"] {
        let c: serde_json::Value =
            serde_json::from_slice(&std::fs::read(two.path().join(format!("work/train/{run}/checkpoint.json"))).unwrap()).unwrap();
        assert_eq!(c["trained_on"].as_str().unwrap().split(", ").nth(1), Some("1 thread"), "each worker on threads / jobs");
    }
    let rows = query(two.path(), "SELECT COUNT(*) AS n FROM history");
    assert_eq!(rows[0]["n"], 8 * 3, "the history table has every run's epochs");

    // `jobs` is not a parameter of any result: changing it leaves every stage current.
    let ran_stages = run_stages(two.path(), &["--set", "jobs=3"]);
    assert!(ran(&ran_stages).is_empty(), "{ran_stages:?}");
    // A folder that lost two runs trains those two again, in workers, and only them.
    let kept = two.path().join("work/train/logreg/fold1-seed0/checkpoint.json");
    let kept_before = std::fs::metadata(&kept).unwrap().modified().unwrap();
    for run in ["simple_cnn/fold2-seed0", "logreg/fold0-seed0"] {
        std::fs::remove_dir_all(two.path().join(format!("work/train/{run}"))).unwrap();
    }
    // `status` says what the folder holds: one run part-trained (as a killed stage leaves it).
    let part = two.path().join("work/train/simple_cnn/fold2-seed0");
    std::fs::create_dir_all(&part).unwrap();
    std::fs::write(part.join("progress.json"), r#"{"history": [{}, {}]}"#).unwrap();
    let o = genrelab(two.path(), &["status"]);
    let line = String::from_utf8_lossy(&o.stdout).lines().skip_while(|l| !l.starts_with("train ")).nth(1).unwrap_or_default().to_string();
    assert_eq!(
        line.trim(),
        "done so far: 6 of 8 runs have a checkpoint, 1 part-trained (simple_cnn/fold2-seed0 at epoch 2 of 3)",
        "{}",
        text(&o)
    );
    let o = genrelab(two.path(), &["run", "train"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("training in worker processes jobs=2 runs=2"), "{}", text(&o));
    assert_eq!(histories(&two.path().join("work")), expected);
    assert_eq!(std::fs::metadata(&kept).unwrap().modified().unwrap(), kept_before, "a trained run is not trained again");
    let epochs = "SELECT run, epoch, train_loss, test_acc FROM history ORDER BY run, epoch";
    let rows = query(two.path(), epochs);
    assert_eq!(rows.as_array().unwrap().len(), 8 * 3, "the history table has the kept runs' epochs and the retrained ones'");
    assert_eq!(rows, query(one.path(), epochs));

    // `tune` trains each trial's runs in workers too, with the same results.
    let trials = |dir: &std::path::Path| -> (Vec<(String, f64)>, String) {
        let o = genrelab(dir, &["tune", "--json"]);
        assert!(o.status.success(), "{}", text(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let t =
            v.as_array().unwrap().iter().map(|t| (t["trial"].as_str().unwrap().to_string(), t["valid_loss"].as_f64().unwrap())).collect();
        (t, text(&o))
    };
    let ((one_trials, one_log), (two_trials, two_log)) = (trials(one.path()), trials(two.path()));
    assert_eq!(one_trials.len(), 2);
    assert_eq!(two_trials, one_trials);
    assert!(!one_log.contains("worker processes") && two_log.contains("training in worker processes jobs=2 runs=4"), "{two_log}");

    let o = genrelab(two.path(), &["--set", "jobs=0", "run"]);
    assert!(!o.status.success() && text(&o).contains("jobs must be 1 or more"), "{}", text(&o));
}

#[test]
fn damaged_weights_are_refused_by_evaluate_and_the_run_is_trained_again() {
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        &format!(
            "[download]\nsource = \"synthetic\"\n[download.synthetic]\ngenres = 3\nclips_per_genre = 4\nseconds = 1.0\n{SMALL_FEATURES}[train]\nmodels = [\"linear\"]\nseeds = 1\nepochs = 2\n"
        ),
    );
    run_stages(dir.path(), &[]);
    let run = dir.path().join("work/train/linear/seed0");
    let ckpt = |key: &str| -> String {
        let c: serde_json::Value = serde_json::from_slice(&std::fs::read(run.join("checkpoint.json")).unwrap()).unwrap();
        c[key].as_str().unwrap().to_string()
    };
    let weights = run.join(ckpt("weights"));
    let good = std::fs::read(&weights).unwrap();
    assert_eq!(ckpt("weights_blake3"), blake3::hash(&good).to_hex().as_str());

    // One byte flipped, size and modification time kept: the hash cache cannot see it, evaluate can.
    let mtime = std::fs::metadata(&weights).unwrap().modified().unwrap();
    let mut bad = good.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x40;
    std::fs::write(&weights, &bad).unwrap();
    std::fs::File::options().write(true).open(&weights).unwrap().set_modified(mtime).unwrap();
    let o = genrelab(dir.path(), &["run", "evaluate", "--force", "evaluate"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("run linear/seed0: damaged weights:") && text(&o).contains("genrelab run train"), "{}", text(&o));
    assert_eq!(std::fs::read(&weights).unwrap(), bad, "evaluate leaves the file as it found it");

    // Once the file is seen to have changed, train trains that run again (not re-stamped as it is).
    std::fs::write(&weights, &bad).unwrap();
    let o = genrelab(dir.path(), &["run", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("damaged weights: the run is trained again"), "{}", text(&o));
    let again = std::fs::read(&weights).unwrap();
    assert_ne!(again, bad);
    assert_eq!(ckpt("weights_blake3"), blake3::hash(&again).to_hex().as_str());
}

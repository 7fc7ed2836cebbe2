//! The whole pipeline through the CLI on small generated data: outputs, rejects, incremental
//! reruns, resuming after a kill, queries.

mod common;
use common::*;

fn tree_with_bad_clips(root: &std::path::Path) {
    write_tree(root, &GENRES, 5, 1.5);
    // Three clips that cannot be decoded, each for another reason.
    std::fs::write(root.join("genres/jazz/jazz.00054.wav"), b"RIFF\x24\x00\x00\x00WAVEjunk").unwrap();
    std::fs::write(root.join("genres/pop/pop.00077.wav"), b"").unwrap();
    let good = clip_wav(0, 0, 1.0, 22050);
    std::fs::write(root.join("genres/metal/metal.00066.wav"), &good[..good.len() / 2]).unwrap();
}

#[test]
fn folder_source_end_to_end_with_rejects_split_and_queries() {
    let dir = tempfile::tempdir().unwrap();
    tree_with_bad_clips(&dir.path().join("data"));
    write_config(dir.path(), &format!("[download]\nsource = \"folder\"\npath = \"data\"\n{SMALL_FEATURES}[split]\ntest_fraction = 0.2\n"));

    assert_eq!(ran(&run_stages(dir.path(), &["split"])), ["download", "features", "split"]);

    let per_genre = query(dir.path(), "SELECT genre, COUNT(*) AS n FROM features GROUP BY genre ORDER BY genre");
    let counts: Vec<i64> = per_genre.as_array().unwrap().iter().map(|r| r["n"].as_i64().unwrap()).collect();
    assert_eq!(counts, [5, 5, 5, 5], "{per_genre}");

    let rejects = query(dir.path(), "SELECT track_id, reason FROM rejects ORDER BY track_id");
    let rejects = rejects.as_array().unwrap();
    assert_eq!(rejects.len(), 3, "{rejects:?}");
    let reason = |id: &str| rejects.iter().find(|r| r["track_id"] == id).unwrap()["reason"].as_str().unwrap().to_string();
    assert!(reason("jazz.00054").contains("not a readable WAV"), "{}", reason("jazz.00054"));
    assert!(reason("pop.00077").contains("empty file"));
    assert!(reason("metal.00066").contains("truncated"));

    // Shapes and values are what the feature configuration says.
    let shape = query(
        dir.path(),
        "SELECT n_mels, n_frames, sample_rate, channels, MAX(mean_db) AS top FROM features GROUP BY n_mels, n_frames, sample_rate, channels",
    );
    assert_eq!(shape[0]["n_mels"], 16);
    assert_eq!(shape[0]["n_frames"], 20);
    assert_eq!(shape[0]["sample_rate"], 22050);
    assert!(shape[0]["top"].as_f64().unwrap() < 0.0);

    // 20 clips, 4 genres: 4 test clips, one per genre.
    let parts = query(dir.path(), "SELECT part, genre, COUNT(*) AS n FROM split GROUP BY part, genre ORDER BY part, genre");
    let test: Vec<i64> = parts.as_array().unwrap().iter().filter(|r| r["part"] == "test").map(|r| r["n"].as_i64().unwrap()).collect();
    assert_eq!(test, [1, 1, 1, 1], "{parts}");

    // The pipeline's data stages, as `make split` runs them (train and evaluate have their own tests).
    assert_eq!(ran(&run_stages(dir.path(), &["split"])), Vec::<&str>::new());
    assert!(status(dir.path()).iter().filter(|(n, _, _)| n != "descriptors").take(3).all(|(_, current, _)| *current));

    // A split parameter: only split.
    let cfg = dir.path().join("genrelab.toml");
    let text0 = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, text0.replace("test_fraction = 0.2", "test_fraction = 0.4")).unwrap();
    let st = status(dir.path());
    assert!(st[0].1 && st[1].1, "{st:?}");
    assert_eq!(st[3].2, ["parameter split.test_fraction: 0.2 -> 0.4"]);
    assert_eq!(ran(&run_stages(dir.path(), &["split"])), ["split"]);

    // A feature parameter: features and, since its output changed, split.
    std::fs::write(&cfg, std::fs::read_to_string(&cfg).unwrap().replace("frames = 40", "frames = 30")).unwrap();
    assert_eq!(status(dir.path())[1].2, ["parameter features.frames: 40 -> 30"]);
    assert_eq!(ran(&run_stages(dir.path(), &["split"])), ["features", "split"]);

    // Touching an input changes nothing; editing one reruns everything downstream of it.
    let clip = dir.path().join("data/genres/blues/blues.00001.wav");
    let bytes = std::fs::read(&clip).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(&clip, &bytes).unwrap();
    assert_eq!(ran(&run_stages(dir.path(), &["split"])), Vec::<&str>::new());
    std::fs::write(&clip, clip_wav(3, 99, 1.5, 22050)).unwrap();
    assert_eq!(ran(&run_stages(dir.path(), &["split"])), ["download", "features", "split"]);

    // --force reruns one stage; the split it feeds is unchanged, so split stays current.
    assert_eq!(ran(&run_stages(dir.path(), &["split", "--force", "features"])), ["features"]);

    // The CLI table for people.
    let o = genrelab(dir.path(), &["status"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("download") && out.contains("current"), "{out}");
}

#[test]
fn killed_during_a_stage_resumes_with_only_that_stage() {
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        &format!(
            "[download]\nsource = \"synthetic\"\n[download.synthetic]\ngenres = 3\nclips_per_genre = 4\nseconds = 1.0\n{SMALL_FEATURES}"
        ),
    );
    assert_eq!(ran(&run_stages(dir.path(), &["split"])), ["download", "features", "split"]);

    // Change a feature parameter and die after features wrote its tables, before its stamp.
    let cfg = dir.path().join("genrelab.toml");
    std::fs::write(&cfg, std::fs::read_to_string(&cfg).unwrap().replace("n_mels = 32", "n_mels = 24")).unwrap();
    let o = genrelab_env(dir.path(), &["run", "split"], &[("GENRELAB_FAULT", "abort-before-stamp:features")]);
    assert!(!o.status.success(), "the fault must kill the run: {}", text(&o));

    let st = status(dir.path());
    assert!(st[0].1, "download stays current: {st:?}");
    assert!(!st[1].1 && st[1].2.len() == 1 && st[1].2[0].starts_with("last run did not finish (started "), "features has no stamp: {st:?}");
    assert_eq!(st[3].0, "split");
    assert_eq!(st[3].2[0], "upstream `features` is stale", "{st:?}");
    assert_eq!(ran(&run_stages(dir.path(), &["split"])), ["features", "split"]);
    let n = query(dir.path(), "SELECT COUNT(*) AS n FROM features");
    assert_eq!(n[0]["n"], 12);
}

#[test]
fn synthetic_demo_set_classes_are_distinct_in_feature_space() {
    // The demo data must be learnable: per-genre mean spectra differ more between genres than
    // clips of one genre differ from their genre's mean.
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        "[download]\nsource = \"synthetic\"\n[download.synthetic]\ngenres = 4\nclips_per_genre = 6\nseconds = 2.0\n[features]\nframes = 86\nout_mels = 32\nout_frames = 43\n",
    );
    run_stages(dir.path(), &["split"]);
    let m = genrelab_store::read_features(&dir.path().join("work/store/features.parquet")).unwrap();
    assert_eq!(m.len(), 24);
    let genres: Vec<String> = {
        let mut g = m.genres.clone();
        g.dedup();
        g
    };
    let dim = m.n_mels * m.n_frames;
    // Mean and standard deviation over frames of each band: spectrum and modulation.
    let profile = |i: usize| -> Vec<f32> {
        (0..m.n_mels)
            .flat_map(|b| {
                let band = &m.row(i)[b * m.n_frames..(b + 1) * m.n_frames];
                let mean = band.iter().sum::<f32>() / band.len() as f32;
                let var = band.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / band.len() as f32;
                [mean, var.sqrt()]
            })
            .collect()
    };
    let centroid = |g: &str| -> Vec<f32> {
        let rows: Vec<usize> = (0..m.len()).filter(|&i| m.genres[i] == g).collect();
        (0..2 * m.n_mels).map(|b| rows.iter().map(|&i| profile(i)[b]).sum::<f32>() / rows.len() as f32).collect()
    };
    let dist = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum::<f32>().sqrt();
    let cents: Vec<Vec<f32>> = genres.iter().map(|g| centroid(g)).collect();
    let mut correct = 0;
    for i in 0..m.len() {
        let p = profile(i);
        let best = (0..cents.len()).min_by(|&a, &b| dist(&p, &cents[a]).total_cmp(&dist(&p, &cents[b]))).unwrap();
        correct += usize::from(genres[best] == m.genres[i]);
    }
    assert!(dim > 0 && correct >= 20, "nearest-centroid got {correct}/24");
}

#[test]
fn local_tarball_source_streams_clips_and_rejects_bad_members() {
    // A Kaggle-style archive built in the test, with one member that is not audio.
    let dir = tempfile::tempdir().unwrap();
    let tarball = dir.path().join("genres.tar.gz");
    let mut members = vec![];
    for (g, genre) in ["blues", "rock"].iter().enumerate() {
        for i in 0..3 {
            members.push((format!("Data/genres_original/{genre}/{genre}.{i:05}.wav"), clip_wav(g, i, 1.0, 22050)));
        }
    }
    members.push(("Data/genres_original/rock/rock.00009.wav".into(), b"garbage".to_vec()));
    // A member the archive holds twice (issue 26, row 14): the first copy is used.
    members.push(("Data/genres_original/blues/blues.00001.wav".into(), clip_wav(0, 50, 1.0, 22050)));
    members.push(("Data/features_30_sec.csv".into(), b"filename,label\n".to_vec()));
    write_tarball(&tarball, &members);
    write_config(dir.path(), &format!("[download]\nsource = \"tarball\"\npath = \"genres.tar.gz\"\n{SMALL_FEATURES}"));
    assert_eq!(ran(&run_stages(dir.path(), &["split"])), ["download", "features", "split"]);
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("work/download/source.json")).unwrap()).unwrap();
    assert_eq!(manifest["layout"], "kaggle");
    assert_eq!(manifest["clips"].as_array().unwrap().len(), 7);
    assert_eq!(manifest["sha256"].as_str().unwrap().len(), 64);
    let n = query(dir.path(), "SELECT COUNT(*) AS n FROM features");
    assert_eq!(n[0]["n"], 6);
    let rejects = query(dir.path(), "SELECT track_id, source, reason FROM rejects ORDER BY track_id");
    assert_eq!(rejects.as_array().unwrap().len(), 2, "{rejects}");
    assert_eq!(rejects[0]["track_id"], "blues.00001");
    assert!(
        rejects[0]["reason"].as_str().unwrap().starts_with("listed twice: ")
            && rejects[0]["reason"].as_str().unwrap().contains("the first copy is used"),
        "{rejects}"
    );
    assert_eq!(rejects[1]["track_id"], "rock.00009");
    assert!(rejects[1]["source"].as_str().unwrap().ends_with("genres.tar.gz!Data/genres_original/rock/rock.00009.wav"), "{rejects}");
    let blues1 = query(dir.path(), "SELECT COUNT(*) AS n FROM features WHERE track_id = 'blues.00001'");
    assert_eq!(blues1[0]["n"], 1, "one row per track");
    // A changed archive makes download (and what follows) stale.
    std::fs::write(&tarball, b"not a tarball any more").unwrap();
    let st = status(dir.path());
    assert!(!st[0].1 && st[0].2[0].ends_with("genres.tar.gz changed"), "{st:?}");
    let o = genrelab(dir.path(), &["run", "split"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("not a readable tar(.gz) archive"), "{}", text(&o));
}

/// Every shipped configuration parses, names registered models only, and plans its runs.
#[test]
fn shipped_configurations_are_valid() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![root.join("genrelab.toml")];
    for dir in ["configs", "experiments"] {
        for e in std::fs::read_dir(root.join(dir)).unwrap().flatten() {
            if e.path().extension().is_some_and(|x| x == "toml") {
                files.push(e.path());
            }
        }
    }
    assert!(files.len() >= 6, "{files:?}");
    for f in files {
        let o =
            std::process::Command::new(env!("CARGO_BIN_EXE_genrelab")).args(["--config", f.to_str().unwrap(), "config"]).output().unwrap();
        assert!(o.status.success(), "{}: {}", f.display(), String::from_utf8_lossy(&o.stderr));
        let cfg = genrelab::Config::load(&f).unwrap();
        for m in &cfg.train.models {
            assert!(genrelab_models::info(m).is_ok(), "{}: unknown model {m}", f.display());
            cfg.train.for_model(m).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        }
        for m in cfg.train.model.keys() {
            assert!(genrelab_models::info(m).is_ok(), "{}: [train.model.{m}] is not a registered model", f.display());
        }
        for m in cfg.evaluate.ensembles.iter().flatten() {
            assert!(cfg.train.models.contains(m), "{}: ensemble member {m} is not trained", f.display());
        }
    }
}

#[test]
fn output_to_a_reader_that_stopped_reading_ends_quietly() {
    // `genrelab ... | head`: standard output is a pipe whose reading end is closed before the
    // command writes, so every write fails with a broken pipe.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_genrelab")).arg("stages").stdout(writer).output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success() && !stderr.contains("panicked"), "{:?}: {stderr}", o.status);
}

#[test]
fn a_second_run_on_a_work_folder_says_who_holds_it_and_waits() {
    use std::io::{BufRead, Write};
    let dir = tempfile::tempdir().unwrap();
    write_tree(&dir.path().join("data"), &GENRES, 3, 1.0);
    write_config(dir.path(), &format!("[download]\nsource = \"folder\"\npath = \"data\"\n{SMALL_FEATURES}"));
    // This test holds the lock, as a running `genrelab run` would.
    let state = dir.path().join("work/.genrelab");
    std::fs::create_dir_all(&state).unwrap();
    let mut lock = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(state.join("lock")).unwrap();
    lock.lock().unwrap();
    write!(lock, "pid 4242 (genrelab run, since 2026-12-02T10:00:00Z)").unwrap();

    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_genrelab"))
        .arg("--config")
        .arg(dir.path().join("genrelab.toml"))
        .args(["run", "features", "--json"])
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // It says who holds the folder before waiting; nothing is written while it waits.
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut said = String::new();
    while !said.contains("waiting") {
        let mut line = String::new();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "ended without waiting: {said}");
        said += &line;
    }
    assert!(said.contains("is in use by pid 4242 (genrelab run, since 2026-12-02T10:00:00Z)"), "{said}");
    assert!(child.try_wait().unwrap().is_none(), "it waits while the lock is held");
    assert!(!dir.path().join("work/store").exists(), "nothing written while waiting");

    drop(lock);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ran: Vec<&str> = v.as_array().unwrap().iter().filter(|s| s["action"] == "ran").map(|s| s["stage"].as_str().unwrap()).collect();
    assert_eq!(ran, ["download", "features"]);
    // The holder line now names the process that ran.
    let holder = std::fs::read_to_string(state.join("lock")).unwrap();
    assert!(holder.starts_with("pid ") && holder.contains("(genrelab run, since ") && !holder.contains("4242"), "{holder}");
}

#[cfg(unix)]
#[test]
fn gtzan_folder_with_odd_entries_lists_the_rest_and_rejects_them_by_name() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    write_tree(&data, &GENRES, 3, 1.0);
    std::os::unix::fs::symlink(data.join("nowhere.wav"), data.join("genres/jazz/jazz.00007.wav")).unwrap();
    std::fs::write(data.join("genres/pop").join(std::ffi::OsStr::from_bytes(b"pop.000\xfe8.wav")), b"x").unwrap();
    std::os::unix::fs::symlink(data.join("genres"), data.join("genres/blues/loop")).unwrap();
    write_config(dir.path(), &format!("[download]\nsource = \"folder\"\npath = \"data\"\n{SMALL_FEATURES}"));
    assert_eq!(ran(&run_stages(dir.path(), &["features"])), ["download", "features"]);
    let n = query(dir.path(), "SELECT COUNT(*) AS n FROM features");
    assert_eq!(n[0]["n"], 12, "every good clip, each once");
    let rejects = query(dir.path(), "SELECT track_id, genre, reason FROM rejects ORDER BY track_id");
    let rows = rejects.as_array().unwrap();
    assert_eq!(rows.len(), 2, "{rejects}");
    assert_eq!((rows[0]["track_id"].as_str(), rows[0]["genre"].as_str()), (Some("jazz.00007"), Some("jazz")));
    assert!(rows[0]["reason"].as_str().unwrap().starts_with("cannot read: "), "{rejects}");
    assert!(rows[1]["reason"].as_str().unwrap().contains("not valid UTF-8"), "{rejects}");
}

#[test]
fn files_and_clips_beyond_the_limits_are_rejects_and_the_stage_goes_on() {
    // A tarball whose members are small when compressed but one is 2.6 MiB of samples and one
    // announces 20 s: with limits of 2 MiB and 10 s both are rejects, the rest is read.
    let dir = tempfile::tempdir().unwrap();
    let tarball = dir.path().join("genres.tar.gz");
    let mut members = vec![];
    for (g, genre) in ["blues", "rock"].iter().enumerate() {
        for i in 0..3 {
            members.push((format!("genres/{genre}/{genre}.{i:05}.wav"), clip_wav(g, i, 1.0, 22050)));
        }
    }
    members.push(("genres/rock/rock.00007.wav".into(), clip_wav(1, 7, 60.0, 22050)));
    members.push(("genres/blues/blues.00008.wav".into(), clip_wav(0, 8, 20.0, 22050)));
    write_tarball(&tarball, &members);
    write_config(
        dir.path(),
        &format!(
            "[download]\nsource = \"tarball\"\npath = \"genres.tar.gz\"\n{SMALL_FEATURES}[limits]\nmax_file_mb = 2\nmax_seconds = 10\n"
        ),
    );
    assert_eq!(ran(&run_stages(dir.path(), &["features", "descriptors"])), ["download", "features", "descriptors"]);
    let n = query(dir.path(), "SELECT COUNT(*) AS n FROM features");
    assert_eq!(n[0]["n"], 6);
    let rejects = query(dir.path(), "SELECT track_id, reason FROM rejects ORDER BY track_id");
    assert_eq!(
        rejects,
        serde_json::json!([
            {"track_id": "blues.00008", "reason": "20 s of audio, longer than limits.max_seconds = 10 (not decoded)"},
            {"track_id": "rock.00007", "reason": "the file is 2.5 MiB, larger than limits.max_file_mb = 2"},
        ])
    );
    let d = query(dir.path(), "SELECT COUNT(*) AS n FROM descriptors");
    assert_eq!(d[0]["n"], 6, "descriptors read within the same limits");

    // Raising a limit is a parameter change: the rejected clip is read, the others reused.
    let cfg = dir.path().join("genrelab.toml");
    std::fs::write(&cfg, std::fs::read_to_string(&cfg).unwrap().replace("max_seconds = 10", "max_seconds = 30")).unwrap();
    let o = genrelab(dir.path(), &["run", "features", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let summary = &v.as_array().unwrap().iter().find(|s| s["stage"] == "features").unwrap()["summary"];
    assert_eq!((summary["clips"].as_u64(), summary["decoded"].as_u64()), (Some(7), Some(1)), "{summary}");
}

#[test]
fn a_collection_of_one_class_is_an_error_at_the_split_not_a_perfect_score() {
    let dir = tempfile::tempdir().unwrap();
    write_tree(&dir.path().join("data"), &["rock"], 4, 1.0);
    write_config(dir.path(), &format!("[download]\nsource = \"folder\"\npath = \"data\"\n{SMALL_FEATURES}"));
    let o = genrelab(dir.path(), &["run", "split"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("every clip has the label `rock`: a classifier needs at least two classes"), "{err}");
    assert_eq!(err.matches("every clip has the label").count(), 1, "said once: {err}");
    assert_eq!(query(dir.path(), "SELECT COUNT(*) AS n FROM features")[0]["n"], 4, "the features stay");
}

#[test]
fn people_get_short_lines_and_the_detailed_log_goes_to_a_file_or_with_v() {
    let dir = tempfile::tempdir().unwrap();
    write_tree(&dir.path().join("data"), &GENRES, 2, 1.0);
    write_config(dir.path(), &format!("[download]\nsource = \"folder\"\npath = \"data\"\n{SMALL_FEATURES}"));
    let o = genrelab(dir.path(), &["run", "features"]);
    assert!(o.status.success(), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.lines().any(|l| l == "features: running why=never run"), "{err}");
    assert!(err.lines().any(|l| l.starts_with("features: features written clips=8 decoded=8")), "{err}");
    assert!(
        !err.contains(" INFO ") && !err.contains("time.busy") && !err.contains('\x1b'),
        "no timestamps, levels, timings or colours: {err}"
    );
    let log = std::fs::read_to_string(dir.path().join("work/.genrelab/last-run.log")).unwrap();
    assert!(log.contains(r#" INFO stage{name="features"}: running why=never run"#) && log.contains("time.busy="), "{log}");
    assert!(!log.contains('\x1b'), "{log}");

    let o = genrelab(dir.path(), &["-v", "run", "features", "--force", "features"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success() && err.contains(r#" INFO stage{name="features"}: running why=forced"#), "{err}");
}

#[test]
fn stamps_from_before_canonical_fingerprints_stay_valid() {
    let dir = tempfile::tempdir().unwrap();
    write_tree(&dir.path().join("data"), &GENRES, 2, 1.0);
    write_config(dir.path(), &format!("[download]\nsource = \"folder\"\npath = \"data\"\n{SMALL_FEATURES}"));
    run_stages(dir.path(), &["split"]);
    // Rewrite each stamp's fingerprint as the engine used to compute it: the JSON in its
    // insertion order (struct field order), not with sorted keys.
    let stamps = dir.path().join("work/.genrelab/stamps");
    let set = |stage: &str, f: &dyn Fn(&serde_json::Value) -> String| {
        let p = stamps.join(format!("{stage}.json"));
        let mut s: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        let old = serde_json::json!({"stage": s["stage"], "version": s["version"], "params": s["params"], "deps": s["deps"], "externals": s["externals"]});
        let legacy = f(&old);
        assert_ne!(s["fingerprint"].as_str().unwrap(), legacy, "{stage}: the canonical form differs from the legacy one");
        s["fingerprint"] = legacy.into();
        std::fs::write(&p, serde_json::to_vec(&s).unwrap()).unwrap();
    };
    let legacy = |v: &serde_json::Value| blake3::hash(serde_json::to_string(v).unwrap().as_bytes()).to_hex().to_string();
    for stage in ["download", "features", "split"] {
        set(stage, &legacy);
    }
    assert!(
        status(dir.path()).iter().take(4).filter(|(n, _, _)| n != "descriptors").all(|(_, current, _)| *current),
        "{:?}",
        status(dir.path())
    );
    assert_eq!(ran(&run_stages(dir.path(), &["split"])), Vec::<&str>::new());
    // Anything else in the stamp is stale, as before.
    set("split", &|_| "0".repeat(64));
    let st = status(dir.path());
    assert_eq!(st.iter().find(|(n, _, _)| n == "split").unwrap().2, ["fingerprint changed"]);

    // status --json gives each reason's kind and facts beside its sentence.
    let cfg = dir.path().join("genrelab.toml");
    std::fs::write(&cfg, std::fs::read_to_string(&cfg).unwrap().replace("frames = 40", "frames = 30")).unwrap();
    let o = genrelab(dir.path(), &["status", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let features = v.as_array().unwrap().iter().find(|s| s["stage"] == "features").unwrap();
    assert_eq!(
        features["reasons"],
        serde_json::json!([{"kind": "parameter", "key": "features.frames", "old": 40, "new": 30, "text": "parameter features.frames: 40 -> 30"}])
    );
    let split = v.as_array().unwrap().iter().find(|s| s["stage"] == "split").unwrap();
    assert_eq!(
        split["reasons"][0],
        serde_json::json!({"kind": "upstream_stale", "stage": "features", "text": "upstream `features` is stale"})
    );
}

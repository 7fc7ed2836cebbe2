//! Any labelled collection through the whole pipeline: a folder of class sub-folders (any names,
//! nested, every format), a CSV manifest with groups, and a hub dataset stored as Parquet (served
//! by the test on loopback). Labels come from the data; the study's GTZAN figures stay away.

mod common;
use common::*;

use std::io::Write;
use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;

const TRAIN: &str = "[train]\nmodels = [\"linear\"]\nseeds = 1\nepochs = 2\nbatch_size = 8\neval_batch_size = 16\n";

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/formats").join(name)).unwrap()
}

fn put(root: &Path, rel: &str, bytes: &[u8]) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, bytes).unwrap();
}

#[test]
fn a_folder_of_class_folders_with_any_names_and_formats_runs_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("music");
    // Three classes; WAVs with free names, nested; every encoded format once.
    for (c, class) in ["ambient", "noise rock", "synth"].iter().enumerate() {
        for i in 0..4 {
            put(&data, &format!("{class}/album {i}/{}.wav", i + 1), &clip_wav(c, i, 1.5, 22050));
        }
    }
    put(&data, "ambient/x.flac", &fixture("stereo44k.flac"));
    put(&data, "noise rock/y.mp3", &fixture("stereo44k.mp3"));
    put(&data, "synth/z.ogg", &fixture("stereo44k.ogg"));
    put(&data, "synth/w.m4a", &fixture("stereo44k_aac.m4a"));
    put(&data, "synth/broken.mp3", b"ID3 this is not audio at all");
    // A header that says 1 Hz (resampling it once aborted the whole stage).
    put(&data, "synth/one hz.wav", &clip_wav(2, 7, 4000.0, 1));
    put(&data, "synth/cover.jpg", b"\xff\xd8 not a clip");
    write_config(
        dir.path(),
        &format!("[download]\nsource = \"folder\"\npath = \"music\"\n[split]\ntest_fraction = 0.25\n{SMALL_FEATURES}{TRAIN}"),
    );
    let stages = run_stages(dir.path(), &[]);
    assert!(ran(&stages).contains(&"evaluate"), "{stages:?}");

    let classes = query(dir.path(), "SELECT genre, COUNT(*) AS n FROM features GROUP BY genre ORDER BY genre");
    assert_eq!(
        classes,
        serde_json::json!([{"genre": "ambient", "n": 5}, {"genre": "noise rock", "n": 5}, {"genre": "synth", "n": 6}]),
        "labels from the top-level folders; every format decoded"
    );
    let ids =
        query(dir.path(), "SELECT track_id, sample_rate, channels FROM features WHERE track_id LIKE '%.m4a' OR track_id LIKE '%.flac'");
    assert_eq!(
        ids,
        serde_json::json!([{"track_id": "ambient/x.flac", "sample_rate": 44100, "channels": 2}, {"track_id": "synth/w.m4a", "sample_rate": 44100, "channels": 2}])
    );
    let rejects = query(dir.path(), "SELECT track_id, reason FROM rejects ORDER BY track_id");
    assert_eq!(rejects.as_array().unwrap().len(), 2, "{rejects}");
    assert_eq!(rejects[0]["track_id"], "synth/broken.mp3");
    assert!(rejects[0]["reason"].as_str().unwrap().contains("not a supported audio format"), "{rejects}");
    assert_eq!(
        rejects[1],
        serde_json::json!({"track_id": "synth/one hz.wav", "reason": "sample rate 1 Hz is outside what genrelab reads (1000 - 768000 Hz)"})
    );

    let o = genrelab(dir.path(), &["results"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success() && out.contains("3 classes") && !out.contains("study (1 run)"), "{}", text(&o));
    let report = std::fs::read_to_string(dir.path().join("work/report/report.md")).unwrap();
    assert!(!report.contains("50.5") && !report.contains("62.5"), "the study's GTZAN figures appear only next to GTZAN");
    let metrics: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.path().join("work/report/metrics.json")).unwrap()).unwrap();
    assert_eq!(metrics["labels"], serde_json::json!(["ambient", "noise rock", "synth"]));

    // Adding one file decodes one file.
    put(&data, "ambient/late addition.wav", &clip_wav(0, 9, 1.5, 22050));
    let summary = run_summary(dir.path(), "features");
    assert_eq!(
        (summary["clips"].as_u64(), summary["decoded"].as_u64(), summary["reused"].as_u64()),
        (Some(17), Some(1), Some(16)),
        "{summary}"
    );
}

#[test]
fn with_excerpt_windows_a_long_track_is_several_rows_of_one_track_and_one_prediction() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("music");
    // Windows of 40 frames (20,480 samples + n_fft): 0.5 s is one padded window, 1.5 s one,
    // 3 s three (the tail shorter than a window is left out).
    for (c, class) in ["a", "b", "c"].iter().enumerate() {
        for (i, seconds) in [0.5, 1.5, 3.0, 3.0].iter().enumerate() {
            put(&data, &format!("{class}/{i}.wav"), &clip_wav(c, i, *seconds, 22050));
        }
    }
    write_config(
        dir.path(),
        &format!(
            "[download]\nsource = \"folder\"\npath = \"music\"\n[split]\ntest_fraction = 0.25\n{SMALL_FEATURES}excerpt = \"windows\"\n{TRAIN}"
        ),
    );
    let summary = run_summary(dir.path(), "features");
    assert_eq!((summary["clips"].as_u64(), summary["rows"].as_u64()), (Some(12), Some(24)), "{summary}");
    let rows = query(
        dir.path(),
        "SELECT track_id, COUNT(*) AS n, MAX(\"window\") AS last, SUM(CAST(padded AS INT)) AS padded FROM features WHERE genre = 'b' GROUP BY track_id ORDER BY track_id",
    );
    assert_eq!(
        rows,
        serde_json::json!([
            {"track_id": "b/0.wav", "n": 1, "last": 0, "padded": 1},
            {"track_id": "b/1.wav", "n": 1, "last": 0, "padded": 0},
            {"track_id": "b/2.wav", "n": 3, "last": 2, "padded": 0},
            {"track_id": "b/3.wav", "n": 3, "last": 2, "padded": 0}
        ])
    );
    // One split row per track, every window of a track in its part; one prediction per test track.
    let split = query(dir.path(), "SELECT COUNT(*) AS n, SUM(CAST(part = 'test' AS INT)) AS test FROM split");
    assert_eq!(split[0]["n"], 12, "{split}");
    let test = split[0]["test"].as_u64().unwrap();
    let predicted = query(dir.path(), "SELECT COUNT(*) AS n, COUNT(DISTINCT track_id) AS tracks FROM predictions");
    assert_eq!((predicted[0]["n"].as_u64(), predicted[0]["tracks"].as_u64()), (Some(test), Some(test)), "{predicted}");
    let metrics: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.path().join("work/report/metrics.json")).unwrap()).unwrap();
    assert_eq!(metrics["runs"][0]["test_clips"].as_u64(), Some(test), "{}", metrics["runs"]);

    // What a run killed during evaluate leaves (issue 26, row 12) is swept by the next run.
    let left = [
        dir.path().join("work/report/.report.md.4294967295.genrelab-tmp"),
        dir.path().join("work/.genrelab/.hashes.json.4294967295.genrelab-tmp"),
    ];
    for p in &left {
        std::fs::write(p, b"half").unwrap();
    }
    assert_eq!(ran(&run_stages(dir.path(), &["--force", "evaluate"])), ["evaluate"]);
    assert!(left.iter().all(|p| !p.exists()), "temporaries swept");
}

/// `genrelab run --json`, and the summary `stage` returned.
fn run_summary(dir: &Path, stage: &str) -> serde_json::Value {
    let o = genrelab(dir, &["run", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v.as_array().unwrap().iter().find(|s| s["stage"] == stage).map(|s| s["summary"].clone()).unwrap_or_default()
}

#[test]
fn a_csv_manifest_with_groups_keeps_every_group_in_one_fold_and_rejects_bad_rows() {
    let dir = tempfile::tempdir().unwrap();
    let mut csv = String::from("file,style,artist\n");
    // 3 classes x 4 artists x 2 tracks.
    for (c, class) in ["a", "b", "c"].iter().enumerate() {
        for artist in 0..4 {
            for t in 0..2 {
                let rel = format!("audio/{class}_{artist}_{t}.wav");
                put(dir.path(), &rel, &clip_wav(c, artist * 2 + t, 1.5, 22050));
                csv.push_str(&format!("{rel},{class},artist{c}{artist}\n"));
            }
        }
    }
    csv.push_str("audio/missing.wav,a,artist00\naudio/a_0_0.wav,,artist00\n");
    put(dir.path(), "list.csv", csv.as_bytes());
    write_config(
        dir.path(),
        &format!(
            "[download]\nsource = \"manifest\"\npath = \"list.csv\"\n[download.columns]\npath = \"file\"\nlabel = \"style\"\ngroup = \"artist\"\n[split]\nprotocol = \"kfold\"\nfolds = 4\n{SMALL_FEATURES}{TRAIN}"
        ),
    );
    run_stages(dir.path(), &[]);
    let rejects = query(dir.path(), "SELECT reason FROM rejects ORDER BY reason");
    let reasons: Vec<&str> = rejects.as_array().unwrap().iter().map(|r| r["reason"].as_str().unwrap()).collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(reasons[0].starts_with("line 26: ") && reasons[0].contains("missing.wav"), "{reasons:?}");
    assert!(reasons[1].starts_with("line 27: empty label"), "{reasons:?}");
    // Each artist in exactly one fold; each fold holds every class.
    let folds = query(dir.path(), "SELECT fold, COUNT(DISTINCT genre) AS classes, COUNT(*) AS n FROM split GROUP BY fold ORDER BY fold");
    assert_eq!(folds.as_array().unwrap().len(), 4, "{folds}");
    for f in folds.as_array().unwrap() {
        assert_eq!((f["classes"].as_u64(), f["n"].as_u64()), (Some(3), Some(6)), "{folds}");
    }
    let artists = query(
        dir.path(),
        "SELECT COUNT(DISTINCT s.fold) AS folds FROM split s JOIN features f ON s.track_id = f.track_id GROUP BY substr(f.track_id, 7, 3) ORDER BY folds DESC LIMIT 1",
    );
    assert_eq!(artists, serde_json::json!([{"folds": 1}]), "no artist in two folds");
    let report = std::fs::read_to_string(dir.path().join("work/report/report.md")).unwrap();
    assert!(report.contains("keeping each of the 12 groups"), "the report says the split is by group");

    // The missing file appears: the manifest is listed again, and only that clip is decoded.
    put(dir.path(), "audio/missing.wav", &clip_wav(0, 40, 1.5, 22050));
    let summary = run_summary(dir.path(), "features");
    assert_eq!((summary["clips"].as_u64(), summary["decoded"].as_u64()), (Some(25), Some(1)), "{summary}");
}

#[test]
fn a_class_with_too_few_clips_for_the_split_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..4 {
        put(dir.path(), &format!("data/big/{i}.wav"), &clip_wav(0, i, 1.0, 22050));
    }
    put(dir.path(), "data/lonely/only.wav", &clip_wav(1, 0, 1.0, 22050));
    write_config(dir.path(), &format!("[download]\nsource = \"folder\"\npath = \"data\"\n{SMALL_FEATURES}{TRAIN}"));
    let o = genrelab(dir.path(), &["run"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("class \"lonely\" has 1 clips; a train / test split needs at least 2"), "{}", text(&o));
}

#[test]
fn a_split_without_a_test_part_is_an_error_at_the_split_naming_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..6 {
        put(dir.path(), &format!("data/{}/{i}.wav", ["a", "b"][i % 2]), &clip_wav(i % 2, i, 1.0, 22050));
    }
    write_config(
        dir.path(),
        &format!("[download]\nsource = \"folder\"\npath = \"data\"\n[split]\ntest_fraction = 0\n{SMALL_FEATURES}{TRAIN}"),
    );
    let o = genrelab(dir.path(), &["run"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("split.test_fraction must be in (0, 1), got 0"), "{}", text(&o));
    // What ran before the split is kept: fixing the setting runs the split and what follows only.
    write_config(
        dir.path(),
        &format!("[download]\nsource = \"folder\"\npath = \"data\"\n[split]\ntest_fraction = 0.5\n{SMALL_FEATURES}{TRAIN}"),
    );
    assert_eq!(ran(&run_stages(dir.path(), &[])), ["split", "train", "evaluate"]);

    // The same config named by a relative path from its own folder (issue 26, row 11): current.
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_genrelab"))
        .current_dir(dir.path())
        .args(["--config", "./genrelab.toml", "run", "--json"])
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let stages: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(stages.as_array().unwrap().iter().all(|s| s["action"] != "ran"), "{stages}");
}

/// A hub dataset file: `audio` {bytes, path} and a ClassLabel `genre` with its names in the
/// `huggingface` metadata, as `datasets` writes them.
fn hub_parquet(rows: &[(Vec<u8>, &str, i64)], names: &[&str]) -> Vec<u8> {
    use arrow_array::{ArrayRef, BinaryArray, Int64Array, StringArray, StructArray};
    use arrow_schema::{DataType, Field, Fields, Schema};
    let fields = Fields::from(vec![Field::new("bytes", DataType::Binary, true), Field::new("path", DataType::Utf8, true)]);
    let audio = StructArray::new(
        fields.clone(),
        vec![
            Arc::new(BinaryArray::from_iter_values(rows.iter().map(|r| r.0.as_slice()))) as ArrayRef,
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1))) as ArrayRef,
        ],
        None,
    );
    let genre = Int64Array::from_iter_values(rows.iter().map(|r| r.2));
    let schema =
        Arc::new(Schema::new(vec![Field::new("audio", DataType::Struct(fields), true), Field::new("genre", DataType::Int64, true)]));
    let batch = arrow_array::RecordBatch::try_new(schema.clone(), vec![Arc::new(audio), Arc::new(genre)]).unwrap();
    let hf = serde_json::json!({"info": {"features": {"audio": {"_type": "Audio"}, "genre": {"_type": "ClassLabel", "names": names}}}});
    let props = parquet::file::properties::WriterProperties::builder()
        .set_key_value_metadata(Some(vec![parquet::file::metadata::KeyValue::new("huggingface".into(), hf.to_string())]))
        .build();
    let mut out = vec![];
    let mut w = parquet::arrow::ArrowWriter::try_new(&mut out, schema, Some(props)).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    out
}

/// Serve `files` (path under the repo's `resolve/main/`) as a hub would; returns the endpoint.
fn serve(repo: &str, files: Vec<(String, Vec<u8>)>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let repo = repo.to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(40) {
            let Ok(mut stream) = stream else { continue };
            stream.set_read_timeout(Some(std::time::Duration::from_secs(5))).ok();
            let (_reader, request, range) = read_request(&stream);
            // The file list (`download.files` patterns), as the hub's API gives it.
            if request.starts_with(&format!("GET /api/datasets/{repo}/revision/main ")) {
                let siblings: Vec<serde_json::Value> = files
                    .iter()
                    .map(|(name, _)| serde_json::json!({"rfilename": name}))
                    .chain([serde_json::json!({"rfilename": "README.md"})])
                    .collect();
                let body = serde_json::json!({"siblings": siblings, "sha": "c0ffee".repeat(6) + "c0ff"}).to_string();
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.shutdown(std::net::Shutdown::Both);
                continue;
            }
            let found = files.iter().find(|(name, _)| request.starts_with(&format!("GET /datasets/{repo}/resolve/main/{name} ")));
            let response = match found {
                None => b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_vec(),
                Some((_, body)) => {
                    let total = body.len();
                    let (start, end) = match range {
                        Some((a, Some(b))) => (a, (b + 1).min(total)),
                        Some((a, None)) => (a, total),
                        None => (0, total),
                    };
                    // The hub names an LFS file by its SHA-256 (genrelab checks the bytes against it).
                    let tmp = tempfile::NamedTempFile::new().unwrap();
                    std::fs::write(tmp.path(), body).unwrap();
                    let etag = genrelab_data::download::sha256_file(tmp.path()).unwrap().1;
                    let mut head = format!(
                        "HTTP/1.1 206 Partial Content\r\netag: \"{etag}\"\r\nx-repo-commit: {}\r\ncontent-range: bytes {start}-{}/{total}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                        "c0ffee".repeat(6) + "c0ff",
                        end.saturating_sub(1),
                        end - start
                    )
                    .into_bytes();
                    head.extend_from_slice(&body[start..end]);
                    head
                }
            };
            let _ = stream.write_all(&response);
            let _ = stream.flush();
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
    });
    format!("http://{addr}")
}

#[test]
fn a_hub_dataset_stored_as_parquet_is_read_in_place_with_class_names_from_its_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let names = ["calm", "loud"];
    let mut shards = vec![];
    for shard in 0..2 {
        let rows: Vec<(Vec<u8>, String, i64)> =
            (0..5).map(|i| (clip_wav(i % 2, shard * 10 + i, 1.5, 22050), format!("clip{shard}{i}.wav"), (i % 2) as i64)).collect();
        let mut rows_ref: Vec<(Vec<u8>, &str, i64)> = rows.iter().map(|(b, n, l)| (b.clone(), n.as_str(), *l)).collect();
        if shard == 1 {
            rows_ref[4].0 = vec![]; // a row without audio: a reject
        }
        shards.push((format!("data/train-0000{shard}-of-00002.parquet"), hub_parquet(&rows_ref, &names)));
    }
    let endpoint = serve("test/tiny", shards);
    let hf_home = dir.path().join("hf");
    write_config(
        dir.path(),
        &format!(
            "[download]\nsource = \"hub\"\nrepo = \"test/tiny\"\nfiles = [\"data/train-*.parquet\"]\n[download.columns]\nlabel = \"genre\"\n{SMALL_FEATURES}{TRAIN}"
        ),
    );
    let env =
        [("HF_ENDPOINT", endpoint.as_str()), ("HF_HOME", hf_home.to_str().unwrap()), ("HF_TOKEN", ""), ("NO_PROXY", "127.0.0.1,localhost")];
    let o = genrelab_env(dir.path(), &["run"], &env);
    assert!(o.status.success(), "{}", text(&o));
    let classes = query(dir.path(), "SELECT genre, COUNT(*) AS n FROM features GROUP BY genre ORDER BY genre");
    assert_eq!(classes, serde_json::json!([{"genre": "calm", "n": 5}, {"genre": "loud", "n": 4}]), "ClassLabel names from the metadata");
    let one = query(dir.path(), "SELECT track_id, source FROM features WHERE track_id = 'clip13.wav'");
    assert!(one[0]["source"].as_str().unwrap().ends_with("data/train-00001-of-00002.parquet#3"), "{one}");
    let rejects = query(dir.path(), "SELECT track_id, reason FROM rejects");
    assert_eq!(rejects, serde_json::json!([{"track_id": "clip14.wav", "reason": "no audio bytes (column \"audio\")"}]));
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("work/download/source.json")).unwrap()).unwrap();
    assert!(
        manifest["origin"].as_str().unwrap().ends_with("data/train-00000-of-00002.parquet,data/train-00001-of-00002.parquet"),
        "the pattern matched both shards: {}",
        manifest["origin"]
    );
    // Nothing was unpacked: the work folder holds no audio files.
    let wavs = walk(&dir.path().join("work")).into_iter().filter(|p| p.ends_with(".wav")).count();
    assert_eq!(wavs, 0);
}

fn walk(dir: &Path) -> Vec<String> {
    let mut out = vec![];
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p.to_string_lossy().into_owned());
        }
    }
    out
}

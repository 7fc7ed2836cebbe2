//! The real pipeline on the 100 real GTZAN clips of ../shared/data/gtzan-mini, when it exists
//! (compiled as ignored, so reported as skipped, when it is not: build.rs): folder source, the study's exact features, all three split protocols.

mod common;
use common::*;

#[test]
#[cfg_attr(not(gtzan_mini), ignore = "needs ../shared/data/gtzan-mini, absent when the tests were built")]
fn pipeline_on_gtzan_mini() {
    let mini = gtzan_mini().expect("../shared/data/gtzan-mini was here when the tests were built (`touch build.rs` after removing it)");
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &format!("[download]\nsource = \"folder\"\npath = \"{}\"\n", mini.display()));
    assert_eq!(ran(&run_stages(dir.path(), &["split"])), ["download", "features", "split"]);

    let by_genre = query(
        dir.path(),
        "SELECT genre, COUNT(*) AS n, MIN(n_frames) AS frames, MIN(n_mels) AS mels, MAX(sample_rate) AS sr FROM features GROUP BY genre ORDER BY genre",
    );
    let rows = by_genre.as_array().unwrap();
    assert_eq!(rows.len(), 10);
    for r in rows {
        assert_eq!(r["n"], 10, "{r}");
        assert_eq!((r["mels"].as_i64(), r["frames"].as_i64(), r["sr"].as_i64()), (Some(64), Some(100), Some(22050)));
    }
    let full = query(dir.path(), "SELECT MIN(n_mels) AS mels, MIN(n_frames) AS frames, COUNT(*) AS n FROM features_full");
    assert_eq!((full[0]["mels"].as_i64(), full[0]["frames"].as_i64(), full[0]["n"].as_i64()), (Some(128), Some(1291), Some(100)));
    let rejects = query(dir.path(), "SELECT COUNT(*) AS n FROM rejects");
    assert_eq!(rejects[0]["n"], 0);

    // Study protocol on 100 clips: 80 / 20, 2 test clips per genre.
    let parts = query(dir.path(), "SELECT part, COUNT(*) AS n FROM split GROUP BY part ORDER BY part");
    assert_eq!(parts[0]["n"], 20);
    assert_eq!(parts[1]["n"], 80);

    // Other protocols are a parameter away and touch only the split.
    let cfg = dir.path().join("genrelab.toml");
    let base = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, format!("{base}[split]\nprotocol = \"kfold\"\nfolds = 5\n")).unwrap();
    assert_eq!(ran(&run_stages(dir.path(), &["split"])), ["split"]);
    let folds = query(dir.path(), "SELECT fold, COUNT(*) AS n FROM split GROUP BY fold ORDER BY fold");
    assert!(folds.as_array().unwrap().iter().all(|r| r["n"] == 20), "{folds}");

    std::fs::write(&cfg, format!("{base}[split]\nprotocol = \"filtered\"\n")).unwrap();
    assert_eq!(ran(&run_stages(dir.path(), &["split"])), ["split"]);
    let parts = query(dir.path(), "SELECT COALESCE(part, 'unused') AS part, COUNT(*) AS n FROM split GROUP BY part ORDER BY part");
    let total: i64 = parts.as_array().unwrap().iter().map(|r| r["n"].as_i64().unwrap()).sum();
    assert_eq!(total, 100, "{parts}");
}

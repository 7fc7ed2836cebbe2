//! The study's split on a fake 999-clip GTZAN tree (jazz.00054 corrupt, as in the real archive),
//! through the whole pipeline: 799 train (79 jazz) and 200 test (20 per genre).

mod common;
use common::*;

const GTZAN: [&str; 10] = ["blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae", "rock"];

#[test]
fn study_split_on_a_fake_gtzan_tree_is_799_200_79() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("gtzan");
    // 1,000 tiny clips (0.05 s) in the Kaggle layout; jazz.00054 is garbage.
    let tiny = clip_wav(1, 1, 0.05, 22050);
    for g in GTZAN {
        let d = root.join(format!("Data/genres_original/{g}"));
        std::fs::create_dir_all(&d).unwrap();
        for i in 0..100 {
            std::fs::write(d.join(format!("{g}.{i:05}.wav")), &tiny).unwrap();
        }
    }
    std::fs::write(root.join("Data/genres_original/jazz/jazz.00054.wav"), b"\x00\x01 not audio").unwrap();
    write_config(
        dir.path(),
        "[download]\nsource = \"folder\"\npath = \"gtzan\"\n[features]\nn_mels = 16\nframes = 8\nout_mels = 8\nout_frames = 4\n",
    );
    assert_eq!(ran(&run_stages(dir.path(), &["split"])), ["download", "features", "split"]);

    let rejects = query(dir.path(), "SELECT track_id FROM rejects");
    assert_eq!(rejects, serde_json::json!([{"track_id": "jazz.00054"}]));
    let parts = query(
        dir.path(),
        "SELECT part, COUNT(*) AS n, SUM(CASE WHEN genre = 'jazz' THEN 1 ELSE 0 END) AS jazz FROM split GROUP BY part ORDER BY part",
    );
    assert_eq!(parts[0]["part"], "test");
    assert_eq!(parts[0]["n"], 200);
    assert_eq!(parts[0]["jazz"], 20);
    assert_eq!(parts[1]["part"], "train");
    assert_eq!(parts[1]["n"], 799);
    assert_eq!(parts[1]["jazz"], 79);
    let per_genre = query(dir.path(), "SELECT genre, COUNT(*) AS n FROM split WHERE part = 'test' GROUP BY genre");
    assert!(per_genre.as_array().unwrap().iter().all(|r| r["n"] == 20), "{per_genre}");

    // The fault-filtered protocol on the same tree: 443 / 197 / 290 less the corrupt jazz.00054.
    let cfg = dir.path().join("genrelab.toml");
    std::fs::write(&cfg, format!("{}[split]\nprotocol = \"filtered\"\n", std::fs::read_to_string(&cfg).unwrap())).unwrap();
    assert_eq!(ran(&run_stages(dir.path(), &["split"])), ["split"]);
    let parts = query(dir.path(), "SELECT part, COUNT(*) AS n FROM split WHERE part IS NOT NULL GROUP BY part ORDER BY part");
    let n: Vec<i64> = parts.as_array().unwrap().iter().map(|r| r["n"].as_i64().unwrap()).collect();
    assert_eq!(n, [290, 442, 197], "test, train (less jazz.00054), valid: {parts}");
}

//! Helpers shared by the end-to-end tests: audio written in the test, the CLI as a subprocess.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A sine-plus-noise clip as 16-bit mono WAV bytes; `genre` picks the pitch, `index` the noise seed.
pub fn clip_wav(genre: usize, index: usize, seconds: f32, rate: u32) -> Vec<u8> {
    let n = (seconds * rate as f32) as usize;
    let f = 220.0 * (1.0 + genre as f32 * 0.5);
    let mut state = (genre * 1000 + index + 1) as u32;
    let spec = hound::WavSpec { channels: 1, sample_rate: rate, bits_per_sample: 16, sample_format: hound::SampleFormat::Int };
    let mut c = std::io::Cursor::new(Vec::new());
    {
        let mut w = hound::WavWriter::new(&mut c, spec).unwrap();
        for i in 0..n {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let noise = (state >> 8) as f32 / (1u32 << 24) as f32 - 0.5;
            let x = 0.4 * (2.0 * std::f32::consts::PI * f * i as f32 / rate as f32).sin() + 0.05 * noise;
            w.write_sample((x * 32767.0) as i16).unwrap();
        }
        w.finalize().unwrap();
    }
    c.into_inner()
}

pub const GENRES: [&str; 4] = ["blues", "jazz", "metal", "pop"];

/// A Marsyas-layout tree `root/genres/<genre>/<genre>.000NN.wav` of `per_genre` short clips.
pub fn write_tree(root: &Path, genres: &[&str], per_genre: usize, seconds: f32) {
    for (g, name) in genres.iter().enumerate() {
        for i in 0..per_genre {
            let p = root.join(format!("genres/{name}/{name}.{i:05}.wav"));
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, clip_wav(g, i, seconds, 22050)).unwrap();
        }
    }
}

/// A `.tar.gz` at `path` holding `members` (name, bytes) in order, as GNU tar writes them.
pub fn write_tarball(path: &Path, members: &[(String, Vec<u8>)]) {
    let gz = flate2::write::GzEncoder::new(std::fs::File::create(path).unwrap(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    for (name, bytes) in members {
        let mut h = tar::Header::new_gnu();
        h.set_size(bytes.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        tar.append_data(&mut h, name, bytes.as_slice()).unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap();
}

/// Small features so tests run in seconds: 32 mels, 40 frames, resized to 16 x 20.
pub const SMALL_FEATURES: &str = "[features]\nn_mels = 32\nframes = 40\nout_mels = 16\nout_frames = 20\n";

pub fn write_config(dir: &Path, body: &str) -> PathBuf {
    let p = dir.join("genrelab.toml");
    std::fs::write(&p, format!("workdir = \"work\"\n{body}")).unwrap();
    p
}

/// Run the genrelab binary with `--config <dir>/genrelab.toml`.
pub fn genrelab(dir: &Path, args: &[&str]) -> Output {
    genrelab_env(dir, args, &[])
}

pub fn genrelab_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_genrelab"));
    cmd.arg("--config").arg(dir.join("genrelab.toml")).args(args).env_remove("RUST_LOG");
    for v in ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"] {
        cmd.env_remove(v);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

pub fn text(o: &Output) -> String {
    format!("--- stdout\n{}\n--- stderr\n{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// `genrelab run --json`; returns (stage, action) pairs. Panics with the output on failure.
pub fn run_stages(dir: &Path, extra: &[&str]) -> Vec<(String, String)> {
    let mut args = vec!["run", "--json"];
    args.extend_from_slice(extra);
    let o = genrelab(dir, &args);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v.as_array().unwrap().iter().map(|s| (s["stage"].as_str().unwrap().to_string(), s["action"].as_str().unwrap().to_string())).collect()
}

pub fn ran(outcomes: &[(String, String)]) -> Vec<&str> {
    outcomes.iter().filter(|(_, a)| a == "ran").map(|(s, _)| s.as_str()).collect()
}

/// `genrelab query --json SQL` parsed.
pub fn query(dir: &Path, sql: &str) -> serde_json::Value {
    let o = genrelab(dir, &["query", "--json", sql]);
    assert!(o.status.success(), "{}", text(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// `status --json` as (stage, current, reasons).
pub fn status(dir: &Path) -> Vec<(String, bool, Vec<String>)> {
    let o = genrelab(dir, &["status", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let reasons = s["reasons"].as_array().unwrap().iter().map(|r| r["text"].as_str().unwrap().to_string()).collect();
            (s["stage"].as_str().unwrap().to_string(), s["current"].as_bool().unwrap(), reasons)
        })
        .collect()
}

/// The shared gtzan-mini folder, when this checkout has one beside it.
pub fn gtzan_mini() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/gtzan-mini");
    p.join("genres").is_dir().then(|| p.canonicalize().unwrap())
}

/// A byte range asked for by an HTTP request: `(start, inclusive end)`.
pub type Range = Option<(usize, Option<usize>)>;

/// Read an HTTP request's head from `stream` (for the fake hubs): its request line and range.
pub fn read_request(stream: &std::net::TcpStream) -> (std::io::BufReader<std::net::TcpStream>, String, Range) {
    use std::io::BufRead;
    let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
    let (mut request, mut line, mut range) = (String::new(), String::new(), None);
    while reader.read_line(&mut line).unwrap_or(0) > 0 && line != "\r\n" {
        if request.is_empty() {
            request = line.clone();
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("range: bytes=") {
            let (a, b) = v.trim().split_once('-').unwrap();
            range = Some((a.parse::<usize>().unwrap(), b.parse::<usize>().ok()));
        }
        line.clear();
    }
    (reader, request, range)
}

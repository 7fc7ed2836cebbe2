//! The download stage against a fake Hugging Face hub served on loopback by the test: a good
//! download, a body cut short, a server error and corrupted bytes. A broken download must fail
//! with a message that names the URL and leave nothing half-written.

mod common;
use common::*;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Good,
    /// Announce the full length, send half, close.
    Truncated,
    /// 500 on every request.
    ServerError,
    /// Send the full length with one byte flipped (the checksum must catch it).
    Corrupt,
}

/// A `genres.tar.gz` with `per_genre` clips of 3 genres.
fn tarball(per_genre: usize) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    {
        let mut tar = tar::Builder::new(&mut gz);
        for (g, name) in ["blues", "jazz", "rock"].iter().enumerate() {
            for i in 0..per_genre {
                let bytes = clip_wav(g, i, 1.0, 22050);
                let mut h = tar::Header::new_gnu();
                h.set_size(bytes.len() as u64);
                h.set_mode(0o644);
                h.set_cksum();
                tar.append_data(&mut h, format!("genres/{name}/{name}.{i:05}.wav"), &bytes[..]).unwrap();
            }
        }
        tar.finish().unwrap();
    }
    gz.finish().unwrap()
}

fn sha256_hex(b: &[u8]) -> String {
    use std::fmt::Write as _;
    // Tiny SHA-256 via the stages crate's dependency would need a dev-dependency; compute with
    // the same library the product uses, through a temp file.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x");
    std::fs::write(&p, b).unwrap();
    let (_, h) = genrelab_data::download::sha256_file(&p).unwrap();
    let mut s = String::new();
    write!(s, "{h}").unwrap();
    s
}

/// Serve `body` as `/datasets/test/gtzan/resolve/main/data/genres.tar.gz`; returns the endpoint.
fn serve(body: Vec<u8>, mode: Mode, requests: Arc<AtomicUsize>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let etag = sha256_hex(&body);
    std::thread::spawn(move || {
        // Bounded: a download needs a handful of requests (metadata, body, retries).
        for stream in listener.incoming().take(50) {
            let Ok(mut stream) = stream else { continue };
            stream.set_read_timeout(Some(std::time::Duration::from_secs(5))).ok();
            requests.fetch_add(1, Ordering::SeqCst);
            let (mut reader, request, range) = read_request(&stream);
            let path_ok = request.starts_with("GET /datasets/test/gtzan/resolve/main/data/genres.tar.gz ");
            let total = body.len();
            let response: Vec<u8> = if mode == Mode::ServerError {
                b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 5\r\nconnection: close\r\n\r\noops!".to_vec()
            } else if !path_ok {
                b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_vec()
            } else {
                let (start, end) = match range {
                    Some((a, Some(b))) => (a, b + 1),
                    Some((a, None)) => (a, total),
                    None => (0, total),
                };
                let mut part = body[start.min(total)..end.min(total)].to_vec();
                if mode == Mode::Corrupt && part.len() > 100 {
                    let mid = part.len() / 2;
                    part[mid] ^= 0xff;
                }
                let announced = part.len();
                if mode == Mode::Truncated && part.len() > 1 {
                    part.truncate(part.len() / 2);
                }
                let mut head = format!(
                    "HTTP/1.1 206 Partial Content\r\netag: \"{etag}\"\r\nx-repo-commit: {}\r\ncontent-range: bytes {start}-{}/{total}\r\ncontent-length: {announced}\r\nconnection: close\r\n\r\n",
                    "c0ffee".repeat(6) + "c0ff",
                    end.min(total).saturating_sub(1)
                )
                .into_bytes();
                head.extend_from_slice(&part);
                head
            };
            let _ = stream.write_all(&response);
            let _ = stream.flush();
            let _ = stream.shutdown(std::net::Shutdown::Both);
            let _ = reader.read(&mut [0u8; 1]);
        }
    });
    format!("http://{addr}")
}

fn setup(mode: Mode) -> (tempfile::TempDir, String, Arc<AtomicUsize>, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let body = tarball(3);
    let requests = Arc::new(AtomicUsize::new(0));
    let endpoint = serve(body.clone(), mode, requests.clone());
    write_config(dir.path(), &format!("[download]\nsource = \"hub\"\nrepo = \"test/gtzan\"\n{SMALL_FEATURES}"));
    (dir, endpoint, requests, body)
}

fn env<'a>(dir: &'a std::path::Path, endpoint: &'a str, hf_home: &'a str) -> Vec<(&'a str, &'a str)> {
    let _ = dir;
    vec![("HF_ENDPOINT", endpoint), ("HF_HOME", hf_home), ("HF_TOKEN", ""), ("NO_PROXY", "127.0.0.1,localhost")]
}

/// Every file under `dir`, recursively (symlinks included).
fn files(dir: &std::path::Path) -> Vec<String> {
    let mut out = vec![];
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() && !p.is_symlink() {
            out.extend(files(&p));
        } else {
            out.push(p.display().to_string());
        }
    }
    out
}

#[test]
fn downloads_from_the_hub_verifies_and_builds_the_store() {
    let (dir, endpoint, requests, body) = setup(Mode::Good);
    let hf_home = dir.path().join("hf").display().to_string();
    let o = genrelab_env(dir.path(), &["run", "features", "--json"], &env(dir.path(), &endpoint, &hf_home));
    assert!(o.status.success(), "{}", text(&o));
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("work/download/source.json")).unwrap()).unwrap();
    assert_eq!(manifest["sha256"], sha256_hex(&body));
    assert_eq!(manifest["clips"].as_array().unwrap().len(), 9);
    assert_eq!(manifest["origin"], "hub:test/gtzan@main/data/genres.tar.gz");
    let n = query(dir.path(), "SELECT COUNT(*) AS n FROM features");
    assert_eq!(n[0]["n"], 9);
    // The archive went to HF_HOME's hub cache, as with every Hugging Face tool.
    assert!(files(&dir.path().join("hf")).iter().any(|f| f.contains("datasets--test--gtzan")));

    // Current now: no request reaches the hub.
    let before = requests.load(Ordering::SeqCst);
    let o = genrelab_env(dir.path(), &["run", "features", "--json"], &env(dir.path(), &endpoint, &hf_home));
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(requests.load(Ordering::SeqCst), before);
}

fn assert_fails_cleanly(mode: Mode, expect: &[&str]) {
    let (dir, endpoint, _, _) = setup(mode);
    let hf_home = dir.path().join("hf").display().to_string();
    let o = genrelab_env(dir.path(), &["run", "features"], &env(dir.path(), &endpoint, &hf_home));
    assert!(!o.status.success(), "must fail: {}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("stage `download` failed") && err.contains("genres.tar.gz"), "{err}");
    for e in expect {
        assert!(err.contains(e), "expected {e:?} in: {err}");
    }
    // Nothing half-written: no manifest, no stamp, no blob or partial file in the cache.
    assert!(!dir.path().join("work/download/source.json").exists());
    assert!(!dir.path().join("work/.genrelab/stamps/download.json").exists());
    let blobs: Vec<String> = files(&dir.path().join("hf")).into_iter().filter(|f| f.contains("/blobs/")).collect();
    assert!(blobs.is_empty(), "left behind: {blobs:?}");
    let st = status(dir.path());
    let why = &st[0].2;
    assert!(why.len() == 1 && why[0].starts_with("last run failed (started ") && why[0].contains("genres.tar.gz failed"), "{why:?}");
}

#[test]
fn a_truncated_body_fails_clearly_and_leaves_nothing() {
    assert_fails_cleanly(Mode::Truncated, &[]);
}

#[test]
fn a_server_error_fails_clearly_and_leaves_nothing() {
    assert_fails_cleanly(Mode::ServerError, &["500"]);
}

#[test]
fn corrupted_bytes_fail_the_checksum_and_are_removed() {
    assert_fails_cleanly(Mode::Corrupt, &["checksum mismatch"]);
}

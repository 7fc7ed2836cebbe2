//! Decoders and parsers never panic or abort on any bytes (issue 26): random bytes and mutations
//! of valid files (WAV of each sample format, FLAC, MP3, Ogg, M4A, tar and tar.gz archives) go
//! to the decoders and the archive lister, random text to the manifest reader. Each must give a
//! value or an error; a panic fails the property, an abort (an allocation a damaged header asks
//! for) fails the test binary. The seed is fixed (every run tries the same inputs) and failures
//! are not persisted (nothing is written into the source tree).

use std::io::Cursor;
use std::path::Path;

use genrelab_audio::audio::{Limits, decode_within};
use genrelab_data::manifest::{Columns, manifest_clips};
use genrelab_data::source::scan_tarball;
use proptest::prelude::*;
use proptest::test_runner::Config;

/// Small limits: what a mutated header may claim is bounded the way a user's limits bound it.
const LIMITS: Limits = Limits { max_file_mb: 8, max_seconds: 120.0 };

/// `cases` cases from a fixed seed, so every run tries the same inputs; GENRELAB_FUZZ_CASES and
/// GENRELAB_FUZZ_SEED explore further (`GENRELAB_FUZZ_CASES=100000 cargo nextest run -E 'binary(fuzz)'`).
fn config(cases: u32) -> Config {
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok());
    Config {
        cases: env("GENRELAB_FUZZ_CASES").map_or(cases, |c| c as u32),
        rng_seed: proptest::test_runner::RngSeed::Fixed(env("GENRELAB_FUZZ_SEED").unwrap_or(26)),
        failure_persistence: None,
        ..Config::default()
    }
}

fn wav(format: hound::SampleFormat, bits: u16, channels: u16, rate: u32, frames: usize) -> Vec<u8> {
    let spec = hound::WavSpec { channels, sample_rate: rate, bits_per_sample: bits, sample_format: format };
    let mut c = Cursor::new(Vec::new());
    {
        let mut w = hound::WavWriter::new(&mut c, spec).unwrap();
        for i in 0..frames * channels as usize {
            let x = (i as f64 * 0.07).sin() * 0.5;
            match (format, bits) {
                (hound::SampleFormat::Float, _) => w.write_sample(x as f32).unwrap(),
                (_, 8) => w.write_sample((x * 127.0) as i8).unwrap(),
                (_, 16) => w.write_sample((x * 32767.0) as i16).unwrap(),
                (_, b) => w.write_sample((x * ((1i64 << (b - 1)) - 1) as f64) as i32).unwrap(),
            }
        }
        w.finalize().unwrap();
    }
    c.into_inner()
}

/// Valid files of every format the sources read, with the extension that hints their format.
fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    use hound::SampleFormat::{Float, Int};
    let mut out = vec![
        ("wav", wav(Int, 16, 1, 22_050, 3000)),
        ("wav", wav(Int, 8, 2, 8000, 2000)),
        ("wav", wav(Int, 24, 2, 44_100, 2000)),
        ("wav", wav(Float, 32, 1, 16_000, 2000)),
    ];
    let formats = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/formats");
    for (ext, name) in [("flac", "mono16k.flac"), ("mp3", "stereo44k.mp3"), ("ogg", "stereo44k.ogg"), ("m4a", "stereo44k_aac.m4a")] {
        out.push((ext, std::fs::read(formats.join(name)).unwrap()));
    }
    out
}

/// A change to a file: bytes overwritten, a cut, a slice repeated, a header field set.
#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Truncate(usize),
    Repeat(usize, usize),
    /// A little-endian u32 written where a WAV header keeps its numbers (sizes, rate, ...).
    Field(usize, u32),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        1 => any::<usize>().prop_map(Mutation::Truncate),
        1 => (any::<usize>(), 1usize..512).prop_map(|(i, n)| Mutation::Repeat(i, n)),
        2 => (0usize..11, prop_oneof![Just(0u32), Just(1), Just(u32::MAX), Just(0x8000_0000), any::<u32>()])
            .prop_map(|(f, v)| Mutation::Field(4 + 4 * f, v)),
    ]
}

fn mutate(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        if bytes.is_empty() {
            break;
        }
        let n = bytes.len();
        match *m {
            Mutation::Flip(i, b) => bytes[i % n] = b,
            Mutation::Truncate(i) => bytes.truncate(i % n),
            Mutation::Repeat(i, len) => {
                let start = i % n;
                let slice = bytes[start..(start + len).min(n)].to_vec();
                bytes.splice(start..start, slice);
            }
            Mutation::Field(at, v) => {
                if at + 4 <= n {
                    bytes[at..at + 4].copy_from_slice(&v.to_le_bytes());
                }
            }
        }
    }
    bytes
}

proptest! {
    #![proptest_config(config(160))]

    #[test]
    fn decoding_random_bytes_gives_a_value_or_an_error(bytes in prop::collection::vec(any::<u8>(), 0..2048), ext in prop_oneof![Just(None), Just(Some("wav")), Just(Some("mp3")), Just(Some("flac")), Just(Some("ogg"))]) {
        let _ = decode_within(&bytes, ext, 22_050, &LIMITS);
        // A RIFF/WAVE header in front of random bytes reaches the WAV parser's deeper paths.
        let mut riff = b"RIFF\x00\x00\x00\x00WAVEfmt ".to_vec();
        riff.extend(&bytes);
        let _ = decode_within(&riff, ext, 22_050, &LIMITS);
    }

    #[test]
    fn decoding_mutated_files_gives_a_value_or_an_error(seed in 0usize..8, mutations in prop::collection::vec(mutation(), 1..6)) {
        let (ext, bytes) = seeds().swap_remove(seed);
        let bytes = mutate(bytes, &mutations);
        if let Ok(d) = decode_within(&bytes, Some(ext), 22_050, &LIMITS) {
            // What is decoded is within the limits and finite.
            prop_assert!(d.samples.len() as f64 <= LIMITS.max_seconds * 22_050.0 + 1.0);
            prop_assert!(d.samples.iter().all(|v| v.is_finite()));
        }
    }
}

fn tarball(gz: bool) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    for (i, genre) in ["blues", "rock"].iter().enumerate() {
        let bytes = wav(hound::SampleFormat::Int, 16, 1, 22_050, 500 + i);
        let mut h = tar::Header::new_gnu();
        h.set_size(bytes.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        tar.append_data(&mut h, format!("genres/{genre}/{genre}.00000.wav"), bytes.as_slice()).unwrap();
    }
    let raw = tar.into_inner().unwrap();
    if !gz {
        return raw;
    }
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut e, &raw).unwrap();
    e.finish().unwrap()
}

proptest! {
    #![proptest_config(config(120))]

    #[test]
    fn listing_mutated_archives_gives_a_value_or_an_error(gz in any::<bool>(), mutations in prop::collection::vec(mutation(), 1..6)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(if gz { "g.tar.gz" } else { "g.tar" });
        std::fs::write(&path, mutate(tarball(gz), &mutations)).unwrap();
        match scan_tarball(&path).map_err(|e| e.to_string()) {
            Ok((_, clips)) => prop_assert!(clips.len() <= 2),
            // Errors are one printable line naming the archive.
            Err(e) => prop_assert!(e.contains("g.tar") && !e.chars().any(|c| c.is_control() || c == char::REPLACEMENT_CHARACTER), "{}", e),
        }
    }

    #[test]
    fn reading_random_manifests_gives_clips_rejects_or_an_error(
        text in "[a-z0-9,;\t\"'./ {}:_\n-]{0,400}",
        template in prop_oneof![Just(None), "[a-z{}:0-9.]{0,24}".prop_map(Some)],
        header_rows in 0usize..4,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let manifest = dir.path().join("m.csv");
        std::fs::write(&manifest, format!("path,label,id\n{text}")).unwrap();
        let cols = Columns { path_template: template, id: Some("id".into()), header_rows, ..Columns::default() };
        let missing = |p: &Path| -> genrelab_data::source::FileHash {
            Err(genrelab_store::StoreError::Io { path: p.to_path_buf(), source: std::io::ErrorKind::NotFound.into() })
        };
        if let Ok((clips, _rejects)) = manifest_clips(&manifest, &cols, missing) {
            prop_assert!(clips.is_empty(), "no file exists, so no row is a clip");
        }
    }
}

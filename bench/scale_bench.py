"""A generated collection at scale through download, features and split, and adding 10 files.

    PY=$(bench/venv.sh); $PY bench/scale_bench.py --tracks 10000   # writes bench/results/scale.md

The collection: 4 classes (class sub-folders), half MP3 and half FLAC, tracks of 30 s, 1, 2 and
5 minutes. Making 10,000 distinct recordings would take longer than the bench, so 8 recordings
(4 lengths x 2 formats, a different mix of tones per class) are encoded once with soundfile and
every file is a copy with bytes of its own: an ID3v2 tag (MP3) or an APPLICATION metadata block
(FLAC) holding its number, so every file has a distinct blake3 and is decoded in full.

Measured, with `genrelab run split --json` (download, features and split; no training): each
stage's time, the clips per second of the features stage, the process's peak memory (the
features stage's `peak_rss_mib`, with `--compare` at a second, smaller size to show that it does
not grow with the collection), then the same run after adding 10 files.
"""

import argparse
import datetime
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time

import numpy as np
import soundfile as sf

sys.path.insert(0, os.path.dirname(__file__))
from machine import cpu_line  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "debug", "genrelab")
SR = 22050
LENGTHS = [30, 60, 120, 300]
CLASSES = ["drone", "pulse", "chirp", "noise"]


def recording(cls, seconds):
    t = np.arange(int(seconds * SR)) / SR
    rng = np.random.default_rng(cls * 100 + seconds)
    if cls == 0:
        x = 0.3 * np.sin(2 * np.pi * 110 * t) + 0.1 * np.sin(2 * np.pi * 165 * t)
    elif cls == 1:
        x = 0.4 * np.sin(2 * np.pi * 440 * t) * (np.sin(2 * np.pi * 2 * t) > 0.6)
    elif cls == 2:
        x = 0.3 * np.sin(2 * np.pi * (200 + 800 * (t % 2)) * t)
    else:
        x = 0.2 * rng.standard_normal(t.size)
    return x.astype(np.float32)


def id3_tag(n):
    """An ID3v2.3 tag with one TXXX frame holding `n`."""
    text = b"\x00genrelab\x00" + str(n).encode()
    frame = b"TXXX" + struct.pack(">I", len(text)) + b"\x00\x00" + text
    size = len(frame)
    syncsafe = bytes([(size >> 21) & 0x7F, (size >> 14) & 0x7F, (size >> 7) & 0x7F, size & 0x7F])
    return b"ID3\x03\x00\x00" + syncsafe + frame


def flac_with_block(flac, n):
    """`flac` with an APPLICATION metadata block holding `n` after STREAMINFO."""
    assert flac[:4] == b"fLaC"
    head = flac[4]
    last = head & 0x80
    info_len = int.from_bytes(flac[5:8], "big")
    payload = b"gnrl" + str(n).encode()
    block = bytes([0x02 | last]) + len(payload).to_bytes(3, "big") + payload
    return b"fLaC" + bytes([head & 0x7F]) + flac[5:8 + info_len] + block + flac[8 + info_len:]


def make_collection(root, tracks):
    base = {}
    tmp = tempfile.mkdtemp()
    for c in range(len(CLASSES)):
        for s in LENGTHS:
            x = recording(c, s)
            for fmt, ext, sub in [("MP3", "mp3", "MPEG_LAYER_III"), ("FLAC", "flac", "PCM_16")]:
                p = os.path.join(tmp, f"{c}-{s}.{ext}")
                sf.write(p, x, SR, format=fmt, subtype=sub)
                with open(p, "rb") as f:
                    base[(c, s, ext)] = f.read()
    shutil.rmtree(tmp)
    total = 0
    for i in range(tracks):
        add_track(root, i, base)
        total += 1
    return base


def add_track(root, i, base):
    c = i % len(CLASSES)
    s = LENGTHS[(i // len(CLASSES)) % len(LENGTHS)]
    ext = "mp3" if (i // (len(CLASSES) * len(LENGTHS))) % 2 == 0 else "flac"
    data = base[(c, s, ext)]
    data = id3_tag(i) + data if ext == "mp3" else flac_with_block(data, i)
    d = os.path.join(root, CLASSES[c], f"album {i % 37}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"track {i}.{ext}"), "wb") as f:
        f.write(data)


def run(cfg):
    start = time.perf_counter()
    out = subprocess.run([BIN, "--config", cfg, "--quiet", "run", "split", "--json"], check=True, stdout=subprocess.PIPE,
                         env=dict(os.environ, RUST_LOG="warn")).stdout
    wall = time.perf_counter() - start
    stages = {s["stage"]: s for s in json.loads(out)}
    return wall, stages


def measure(tracks, work):
    music = os.path.join(work, f"music-{tracks}")
    t0 = time.perf_counter()
    base = make_collection(music, tracks)
    made = time.perf_counter() - t0
    size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(music) for f in fs)
    cfg = os.path.join(work, f"scale-{tracks}.toml")
    with open(cfg, "w") as f:
        f.write(f'workdir = "work-{tracks}"\n[download]\nsource = "folder"\npath = "{music}"\n[split]\nprotocol = "kfold"\nfolds = 5\n')
    wall, stages = run(cfg)
    for i in range(tracks, tracks + 10):
        add_track(music, i, base)
    wall_add, stages_add = run(cfg)
    return {"tracks": tracks, "bytes": size, "made_s": made, "wall": wall, "stages": stages, "wall_add": wall_add, "stages_add": stages_add}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tracks", type=int, default=10000)
    ap.add_argument("--compare", type=int, default=0, help="a second, smaller collection, for peak memory")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "scale.md"))
    a = ap.parse_args()
    subprocess.run(["cargo", "build", "--quiet", "--bin", "genrelab"], cwd=ROOT, check=True)
    work = tempfile.mkdtemp(prefix="genrelab-scale-")
    try:
        results = [measure(n, work) for n in ([a.compare] if a.compare else []) + [a.tracks]]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    cmd = f"python3 bench/scale_bench.py --tracks {a.tracks}" + (f" --compare {a.compare}" if a.compare else "")
    lines = [
        "# A generated collection at scale: download, features, split, and adding 10 files",
        "",
        f"- date: {now}",
        f"- machine: {cpu_line()}",
        f"- command: `{cmd}` (with bench/venv.sh's python)",
        "- collection: class sub-folders, half MP3 and half FLAC, 30 s / 1 / 2 / 5 min tracks (mean 2.1 min), 8 encoded recordings copied "
        "with a tag of their own per file (see the script); `genrelab run split`: download (list and hash), features (decode whole file, "
        "log-mel of the first 30 s), descriptors are not run, split (5-fold)",
        "- rows copied as they were: whole row groups of the previous `features_full` table copied byte for byte (the others are re-encoded)",
        "- the engine hashes the stage's inputs (every file, blake3) before the download stage runs, so that hashing is in \"whole run\", "
        "not in \"download\"; the download stage then reads the hashes from its cache",
        "",
        "| tracks | audio on disk | download | features | clips/s (features) | split | whole run | peak memory (features stage) | adding 10 files: whole run | then: features stage | clips decoded | rows copied as they were |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        st, sa = r["stages"], r["stages_add"]
        f = st["features"]["summary"]
        lines.append(
            f"| {r['tracks']:,} | {r['bytes'] / 2**30:.2f} GiB | {st['download']['seconds']:.1f} s | {st['features']['seconds']:.1f} s | "
            f"{f['clips_per_second']:.1f} | {st['split']['seconds']:.2f} s | {r['wall']:.1f} s | {f['peak_rss_mib']:.0f} MiB | "
            f"{r['wall_add']:.1f} s | {sa['features']['seconds']:.1f} s | {sa['features']['summary']['decoded']} of {sa['features']['summary']['clips']} | "
            f"{sa['features']['summary'].get('copied', 0):,} |"
        )
    lines.append("")
    with open(a.out, "w") as fh:
        fh.write("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()

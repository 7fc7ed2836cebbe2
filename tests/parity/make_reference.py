#!/usr/bin/env python3
"""Reference log-mels from librosa, for tests/parity.rs.

Run from the repository root:  python3 tests/parity/make_reference.py
Needs: pip install librosa pillow soundfile   (never needed by the Rust build or tests).

For each case it writes, under tests/parity/:
  <case>.wav            the input (synthetic cases only; gtzan-mini clips are read in place)
  <case>.mel.f32        librosa's log-mel before pad/cut: 128 x frames, float32 little-endian,
                        every `frame_step`-th frame kept to keep the files small
  <case>.small.f32      the 64 x 100 model input: PIL's antialiased bilinear resize of the log-mel
                        padded with 0 / cut to `frames` columns, float32 little-endian
and cases.json describing them (shapes, steps, library versions).
The pipeline follows the study: librosa.load(sr=22050) -> melspectrogram(n_fft=2048,
hop_length=512, n_mels=128) -> power_to_db(ref=np.max) [top_db=80 is librosa's default].
"""
import json
import os
import sys

import librosa
import numpy as np
import PIL
import soundfile as sf
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
MINI = os.path.join(ROOT, "..", "shared", "data", "gtzan-mini", "genres")
SR = 22050


def synthetic_cases():
    t = np.arange(int(3.0 * SR)) / SR
    rng = np.random.default_rng(1234)
    return {
        "tone440": 0.5 * np.sin(2 * np.pi * 440 * t),
        "chirp": 0.4 * librosa.chirp(fmin=100, fmax=8000, sr=SR, duration=3.0),
        "noise": 0.1 * rng.standard_normal(len(t)),
        "clicks_and_tone": 0.3 * np.sin(2 * np.pi * 1500 * t) * (np.arange(len(t)) % 2205 < 200),
    }


def log_mel(y):
    S = librosa.feature.melspectrogram(y=y, sr=SR, n_fft=2048, hop_length=512, n_mels=128)
    return librosa.power_to_db(S, ref=np.max)


def small(db, frames):
    fitted = np.zeros((db.shape[0], frames), dtype=np.float32)  # np.pad's constant 0
    keep = min(frames, db.shape[1])
    fitted[:, :keep] = db[:, :keep]
    img = Image.fromarray(fitted, mode="F").resize((100, 64), Image.BILINEAR)
    return np.asarray(img, dtype=np.float32)


def main():
    cases = []
    for name, y in synthetic_cases().items():
        wav = os.path.join(HERE, f"{name}.wav")
        sf.write(wav, y.astype(np.float32), SR, subtype="PCM_16")
        cases.append({"name": name, "wav": f"tests/parity/{name}.wav", "frame_step": 1, "frames": 120})
    for clip in ["blues/blues.00000.wav", "classical/classical.00001.wav"]:
        path = os.path.join(MINI, clip)
        if not os.path.exists(path):
            sys.exit(f"missing {path}: the gtzan-mini references need ../shared/data/gtzan-mini")
        name = os.path.basename(clip)[:-4]
        cases.append({"name": name, "gtzan_mini": clip, "frame_step": 8, "frames": 1291})

    for case in cases:
        path = os.path.join(ROOT, case["wav"]) if "wav" in case else os.path.join(MINI, case["gtzan_mini"])
        y, _ = librosa.load(path, sr=SR)
        db = log_mel(y).astype(np.float32)
        kept = db[:, :: case["frame_step"]]
        kept.astype("<f4").tofile(os.path.join(HERE, f"{case['name']}.mel.f32"))
        small(db, case["frames"]).astype("<f4").tofile(os.path.join(HERE, f"{case['name']}.small.f32"))
        case.update(n_mels=128, total_frames=int(db.shape[1]), kept_frames=int(kept.shape[1]), samples=int(len(y)))
        print(f"{case['name']}: {db.shape} -> kept {kept.shape}")

    meta = {
        "generator": "tests/parity/make_reference.py",
        "librosa": librosa.__version__,
        "numpy": np.__version__,
        "pillow": PIL.__version__,
        "cases": cases,
    }
    with open(os.path.join(HERE, "cases.json"), "w") as f:
        json.dump(meta, f, indent=2)


if __name__ == "__main__":
    main()

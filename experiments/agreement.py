#!/usr/bin/env python3
"""Does a prediction survive re-encoding? Top-1 agreement of `genrelab predict` between the
gtzan-mini WAVs and the same clips re-encoded (16 kHz, 44.1 kHz, stereo 44.1 kHz, MP3, AAC).

    python3 experiments/agreement.py [--config experiments/mini_accuracy.toml] [--model NAME]

Needs a trained work folder for the config (experiments/accuracy.sh) and: pip install soundfile
librosa av (librosa's soxr resampler makes the re-encoded copies, PyAV's FFmpeg the AAC one;
genrelab resamples them back with rubato). The model's runs are those of every fold, so each clip was in the training part of most of
them: this measures how stable predictions are across formats, not accuracy. Appends its table
to experiments/results/agreement.md.
"""
import argparse
import datetime
import json
import os
import subprocess

import av
import librosa
import numpy as np
import soundfile as sf

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MINI = os.path.join(ROOT, "..", "shared", "data", "gtzan-mini")


def clips():
    out = []
    for genre in sorted(os.listdir(os.path.join(MINI, "genres"))):
        d = os.path.join(MINI, "genres", genre)
        out += [os.path.join(d, f) for f in sorted(os.listdir(d)) if f.endswith(".wav")]
    return out


def write_aac(path, stereo, rate):
    """AAC-LC at 128 kbit/s in an MP4 container (.m4a), as music stores and phones write it."""
    with av.open(path, "w", format="ipod") as out:
        stream = out.add_stream("aac", rate=rate, layout="stereo")
        stream.bit_rate = 128_000
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(stereo.T.astype(np.float32)), format="fltp", layout="stereo")
        frame.sample_rate = rate
        for packet in list(stream.encode(frame)) + list(stream.encode(None)):
            out.mux(packet)


def predict(bin, config, model, files):
    cmd = [bin, "--config", config, "--quiet", "predict", "--json", "--top", "1"]
    if model:
        cmd += ["--model", model]
    out = subprocess.run(cmd + files, capture_output=True, text=True, cwd=ROOT)
    if out.returncode not in (0, 2):
        raise SystemExit(out.stderr)
    v = json.loads(out.stdout)
    return v["model"], [p["top"][0][0] if p["top"] else None for p in v["predictions"]]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="experiments/mini_accuracy.toml")
    ap.add_argument("--model")
    ap.add_argument("--copies", default=os.path.join(ROOT, "work", "agreement-copies"), help="where the re-encoded copies are kept")
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "debug", "genrelab"), help="the genrelab binary")
    args = ap.parse_args()
    files = clips()
    # The copies are made once and kept (work/ is not committed): later calls reuse them.
    tmp = args.copies
    os.makedirs(tmp, exist_ok=True)
    variants = {
        "16 kHz mono WAV": [],
        "44.1 kHz mono WAV": [],
        "44.1 kHz stereo WAV": [],
        "MP3 (22.05 kHz mono, libsndfile default quality)": [],
        "AAC in .m4a (44.1 kHz stereo, 128 kbit/s, FFmpeg's encoder)": [],
    }
    for f in files:
        name = os.path.splitext(os.path.basename(f))[0]
        paths = [os.path.join(tmp, f"{name}.{k}") for k in ("16k.wav", "44k.wav", "stereo.wav", "mp3", "m4a")]
        for (k, _), p in zip(variants.items(), paths):
            variants[k].append(p)
        if all(os.path.exists(p) for p in paths):
            continue
        y, sr = sf.read(f, dtype="float32")
        if y.ndim > 1:
            y = y.mean(axis=1)
        y16 = librosa.resample(y, orig_sr=sr, target_sr=16000)
        y44 = librosa.resample(y, orig_sr=sr, target_sr=44100)
        sf.write(paths[0], y16, 16000, subtype="PCM_16")
        sf.write(paths[1], y44, 44100, subtype="PCM_16")
        # Stereo: the clip on the left, the clip 2 dB quieter on the right.
        stereo = np.stack([y44, y44 * 10 ** (-2 / 20)], axis=1)
        sf.write(paths[2], stereo, 44100, subtype="PCM_16")
        sf.write(paths[3], y, sr, format="MP3")
        write_aac(paths[4], stereo, 44100)
    model, base = predict(args.bin, args.config, args.model, files)
    rows = []
    for k, paths in variants.items():
        _, pred = predict(args.bin, args.config, model, paths)
        same = sum(a == b and a is not None for a, b in zip(base, pred))
        rows.append((k, same, len(files)))
        print(f"{k}: {same}/{len(files)} top-1 unchanged", flush=True)
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "unknown CPU")
    with open(os.path.join(ROOT, "experiments", "results", "agreement.md"), "a") as out:
        out.write(f"## Agreement of top-1 predictions across formats, model `{model}`\n\n")
        out.write(f"- date: {datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC; machine: {cpu}, {os.cpu_count()} cores\n")
        out.write(f"- command: `python3 experiments/agreement.py --config {args.config} --model {model}`; {len(files)} gtzan-mini clips\n\n")
        out.write("| copy of the clip | top-1 unchanged |\n|---|---:|\n")
        for k, same, n in rows:
            out.write(f"| {k} | {same}/{n} = {100 * same / n:.0f}% |\n")
        out.write("\n")


if __name__ == "__main__":
    main()

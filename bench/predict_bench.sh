#!/usr/bin/env bash
# How long `genrelab predict` takes: for the default model of a trained work folder, the wall time
# of one command on (a) one 30 s GTZAN-like clip and (b) a 10-minute recording (20 windows of 30 s),
# the median of 3 runs each, and the model's number of runs (every run of the model is loaded and
# averaged). Writes bench/results/predict.md (appends one section per config).
# Usage: bench/predict_bench.sh [CONFIG...]   default: configs/demo.toml (train it first: make demo)
# Needs python3 with numpy and soundfile to write the test files (not the Rust build).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet --bin genrelab   # the dev profile is optimised (Cargo.toml), as `make` builds it
bin=target/debug/genrelab
out=bench/results/predict.md
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
python3 - "$tmp" <<'PY'
import sys, numpy as np, soundfile as sf
rng = np.random.default_rng(0)
sr = 22050
t = np.arange(30 * sr) / sr
clip = 0.3 * np.sin(2 * np.pi * 220 * t) * (1 + 0.5 * np.sin(2 * np.pi * 2 * t)) + 0.05 * rng.standard_normal(t.size)
sf.write(f"{sys.argv[1]}/clip30s.wav", clip.astype(np.float32), sr, subtype="PCM_16")
sf.write(f"{sys.argv[1]}/rec10min.flac", np.tile(clip, 20).astype(np.float32), sr)
PY
machine="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores"
median() { sort -n | sed -n 2p; }
for cfg in "${@:-configs/demo.toml}"; do
  model="$("$bin" --config "$cfg" --quiet predict --json "$tmp/clip30s.wav" | python3 -c 'import json,sys; print(json.load(sys.stdin)["model"])')"
  runs="$(find "$("$bin" --config "$cfg" --quiet config | sed -n 's/^workdir = "\(.*\)"$/\1/p')/train" -name checkpoint.json | wc -l)"
  row=""
  for f in clip30s.wav rec10min.flac; do
    t="$(for i in 1 2 3; do s=$(date +%s.%N); "$bin" --config "$cfg" --quiet predict "$tmp/$f" >/dev/null; echo "$(date +%s.%N) - $s" | bc; done | median)"
    row="$row | $(printf '%.2f' "$t") s"
  done
  {
    echo "## \`${cfg}\`: default model \`${model}\` (${runs} trained runs in the work folder)"
    echo
    echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'); machine: ${machine}; the dev profile (optimised) as make builds it, libtorch 2.13.0 (CPU); command: \`bench/predict_bench.sh ${cfg}\`"
    echo
    echo "| model | 30 s WAV (1 window) | 10 min FLAC (20 windows) |"
    echo "|---|---:|---:|"
    echo "| ${model}${row} |"
    echo
  } | tee -a "$out"
done

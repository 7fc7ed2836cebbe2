#!/usr/bin/env bash
# genrelab on a CUDA GPU in one short run: does it train, evaluate and predict there, do the GPU's
# and the CPU's results agree on the same checkpoints (both ways), and how fast is it against
# PyTorch on the same GPU.
#
#   bench/gpu_check.sh GENRELAB_BIN THROUGHPUT_BIN OUTDIR [AUDIO_FILE]
#
# GENRELAB_BIN and THROUGHPUT_BIN are `genrelab` and the `train_throughput` example built against a
# CUDA libtorch 2.13.0 (`GENRELAB_TORCH=cuda make build` and `cargo build --example
# train_throughput -p genrelab-models`; with LIBTORCH or python3's torch 2.13.0 built with CUDA
# they link it too). The machine needs the NVIDIA driver, that libtorch (its path is in the
# binaries), and python3 with the same torch for the side-by-side throughput (bench/venv.sh);
# nothing else: no cargo, no data.
#
# Steps (each bounded by a timeout, each writing what it measured to OUTDIR):
#  1. throughput: bench/train_bench.py --device cuda (genrelab beside PyTorch, same GPU) -> train_gpu.md
#  2. the best recipe's training on the GPU: experiments/mini_accuracy_long.toml's 4-crop resnet,
#     10-fold, 1 seed, on a synthetic set of gtzan-mini's shape (100 clips of 30 s; the real clips
#     are not on that machine). The figures are its cost; its accuracy on synthetic clips means
#     nothing for GTZAN.
#  3. GPU-trained checkpoints evaluated again on the CPU (GENRELAB_DEVICE=cpu): every run's test
#     loss and accuracy compared; predict AUDIO_FILE on both.
#  4. the same recipe on the machine's CPU for 2 epochs: the per-epoch cost beside the GPU's, and
#     those CPU-trained checkpoints evaluated on the GPU (the other way round).
set -uo pipefail
# A dry run on a machine without a GPU: THROUGHPUT_BIN "-" skips steps 0 and 1, and
# GPU_CHECK_SET="train.model.resnet.epochs=1" (space-separated KEY=VALUE) shortens the recipe.
bin="$(realpath "$1")"; ex="$2"; out="$(realpath -m "$3")"; clip="${4:+$(realpath "$4")}"
cd "$(dirname "$0")/.."
mkdir -p "$out"
w="$(mktemp -d)"
# One deadline for the whole check (GPU_CHECK_BUDGET seconds, default 540): each step's timeout
# is its own limit or what is left, whichever is less.
deadline=$(( $(date +%s) + ${GPU_CHECK_BUDGET:-540} ))
left() { local r=$(( deadline - $(date +%s) )); [ "$r" -lt "$1" ] && echo $(( r > 1 ? r : 1 )) || echo "$1"; }
summary="$out/summary.md"
say() { echo "$*" | tee -a "$summary"; }
: >"$summary"
say "# genrelab on CUDA: $(date -u '+%Y-%m-%d %H:%M UTC')"
say "- GPU: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1)"
say "- host: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores"
say "- libtorch: $(ldd "$bin" | grep -o '/[^ ]*libtorch_cuda.so' || echo 'no libtorch_cuda linked: a CPU-only build')"

if [ "$ex" != - ]; then
ex="$(realpath "$ex")"
say "## 0. smoke: one resnet step on the GPU"
if ! GENRELAB_DEVICE=cuda timeout "$(left 120)" "$ex" 2 8 resnet 2>&1 | tee -a "$summary" | grep -q '"genrelab-tch-cuda"'; then
  say "FAILED: genrelab does not run on CUDA here; stopping"
  exit 1
fi

say "## 1. throughput"
timeout "$(left 180)" "${PYTHON:-python3}" bench/train_bench.py --device cuda --exe "$ex" --steps 20 >"$out/throughput.log" 2>&1 \
  && cp bench/results/train_gpu.md "$out/" && cat bench/results/train_gpu.md >>"$summary" \
  || { say "throughput FAILED (rc $?):"; tail -20 "$out/throughput.log" | tee -a "$summary"; }
fi

cfg=experiments/mini_accuracy_long.toml
shape=(--config "$cfg" --set download.source=synthetic --set download.synthetic.genres=10
  --set download.synthetic.clips_per_genre=10 --set download.synthetic.seconds=30.0
  --set 'train.models=["resnet"]' --set train.model.resnet.seeds=1 --set 'evaluate.ensembles=[]')
for kv in ${GPU_CHECK_SET:-}; do shape+=(--set "$kv"); done
runs_table() { # metrics.json -> per-run seconds, accuracy, loss
  python3 - "$1" <<'PY'
import json, sys, statistics as st
m = json.load(open(sys.argv[1]))
runs = [r for r in m["runs"] if r["model"] == "resnet"]
secs = [r["train_seconds"] for r in runs]
print(f"- trained on: {m.get('trained_on')}; {len(runs)} runs, epochs {m.get('epochs')}")
print(f"- train seconds per run: mean {st.mean(secs):.1f}, min {min(secs):.1f}, max {max(secs):.1f}; total {sum(secs):.0f} s")
PY
}

say "## 2. the 4-crop resnet recipe, 10 folds x 1 seed, on the GPU"
s=$(date +%s)
gpu_ok=
if GENRELAB_DEVICE=cuda timeout "$(left 330)" "$bin" "${shape[@]}" --set workdir="$w/gpu" --quiet run >"$out/gpu_run.log" 2>&1; then
  gpu_ok=1
  say "- wall time of \`genrelab run\` (synthetic download, features, split, train, evaluate): $(( $(date +%s) - s )) s"
  runs_table "$w/gpu/report/metrics.json" | tee -a "$summary"
  cp "$w/gpu/report/metrics.json" "$out/metrics_gpu.json"
  cp "$w/gpu/report/metrics.json" "$w/metrics_gpu.json"

  say "## 3. the same checkpoints evaluated on the CPU (GENRELAB_DEVICE=cpu)"
  if GENRELAB_DEVICE=cpu timeout "$(left 150)" "$bin" "${shape[@]}" --set workdir="$w/gpu" --quiet run --force evaluate >>"$out/gpu_run.log" 2>&1; then
    python3 - "$w/metrics_gpu.json" "$w/gpu/report/metrics.json" <<'PY' | tee -a "$summary"
import json, sys
g, c = (json.load(open(p)) for p in sys.argv[1:])
print(f"- runs trained on {g.get('trained_on')}; evaluated on the GPU, then again with GENRELAB_DEVICE=cpu")
gr = {r["run"]: r for r in g["runs"]}
worst = max(abs(gr[r["run"]]["test_loss"] - r["test_loss"]) for r in c["runs"])
same = sum(gr[r["run"]]["scores"]["accuracy"] == r["scores"]["accuracy"] for r in c["runs"])
print(f"- {len(c['runs'])} runs: test accuracy identical in {same}; largest test-loss difference {worst:.2e}")
PY
  else
    say "CPU evaluate FAILED"; tail -20 "$out/gpu_run.log" | tee -a "$summary"
  fi
  if [ -n "$clip" ]; then
    for d in cuda cpu; do
      GENRELAB_DEVICE=$d timeout "$(left 120)" "$bin" "${shape[@]}" --set workdir="$w/gpu" --quiet \
        predict --json --timeline --hop 5 "$clip" >"$w/predict_$d.json" 2>>"$out/gpu_run.log" || say "predict on $d FAILED"
    done
    python3 - "$w/predict_cuda.json" "$w/predict_cpu.json" <<'PY' | tee -a "$summary"
import json, sys
g, c = (json.load(open(p))["predictions"][0] for p in sys.argv[1:])
tops = lambda p: [p["top"]] + [w["top"] for w in p["timeline"]]
pairs = list(zip(tops(g), tops(c)))
same = sum([l for l, _ in a] == [l for l, _ in b] for a, b in pairs)
diff = max(abs(x - y) for a, b in pairs for (_, x), (_, y) in zip(a, b))
print(f"- predict --hop 5 --timeline on {g['file']} ({g['windows']} windows): clip and windows with the same top-3 order on both: {same} of {len(pairs)}; largest probability difference {diff:.2e}")
PY
  fi
else
  say "GPU run FAILED or timed out (rc $?)"; tail -30 "$out/gpu_run.log" | tee -a "$summary"
fi

[ -n "$gpu_ok" ] || { say "done (no GPU run to compare with): $(date -u '+%H:%M:%S')"; exit 1; }
say "## 4. the same recipe on this machine's CPU ($(nproc) threads), 2 epochs; its checkpoints evaluated on the GPU"
s=$(date +%s)
GENRELAB_DEVICE=cpu timeout "$(left 200)" "$bin" "${shape[@]}" --set workdir="$w/cpu" --set train.model.resnet.epochs=2 \
    --set train.model.resnet.warmup_epochs=0 --quiet run train >"$out/cpu_run.log" 2>&1 \
  || say "CPU run FAILED or timed out (rc $?); the runs that finished:"
epoch_seconds() { # LABEL WORKDIR: mean seconds per epoch over the runs' histories (checkpoint.json)
  python3 - "$@" <<'PY' | tee -a "$summary"
import json, glob, statistics as st, sys
label, workdir = sys.argv[1:]
secs = [e["seconds"] for p in glob.glob(f"{workdir}/train/resnet/*/checkpoint.json") for e in json.load(open(p)).get("history", [])]
print(f"- {label}: {len(secs)} epochs, seconds per epoch mean {st.mean(secs):.2f}" if secs else f"- {label}: no per-epoch history found")
PY
}
epoch_seconds CPU "$w/cpu"
epoch_seconds GPU "$w/gpu"
if [ -f "$w/cpu/train/resnet/fold0-seed0/checkpoint.json" ]; then
  GENRELAB_DEVICE=cpu timeout "$(left 120)" "$bin" "${shape[@]}" --set workdir="$w/cpu" --set train.model.resnet.epochs=2 \
      --set train.model.resnet.warmup_epochs=0 --quiet run evaluate >>"$out/cpu_run.log" 2>&1 && cp "$w/cpu/report/metrics.json" "$w/metrics_cpu.json"
  GENRELAB_DEVICE=cuda timeout "$(left 120)" "$bin" "${shape[@]}" --set workdir="$w/cpu" --set train.model.resnet.epochs=2 \
      --set train.model.resnet.warmup_epochs=0 --quiet run --force evaluate >>"$out/cpu_run.log" 2>&1 \
    && python3 - "$w/metrics_cpu.json" "$w/cpu/report/metrics.json" <<'PY' | tee -a "$summary"
import json, sys
c, g = (json.load(open(p)) for p in sys.argv[1:])
cr = {r["run"]: r for r in c["runs"]}
worst = max(abs(cr[r["run"]]["test_loss"] - r["test_loss"]) for r in g["runs"])
same = sum(cr[r["run"]]["scores"]["accuracy"] == r["scores"]["accuracy"] for r in g["runs"])
print(f"- CPU-trained checkpoints evaluated on the CPU, then on the GPU: {len(g['runs'])} runs, test accuracy identical in {same}; largest test-loss difference {worst:.2e}")
PY
fi
say "done: $(date -u '+%H:%M:%S')"

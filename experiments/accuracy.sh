#!/usr/bin/env bash
# Every model under 10-fold cross-validation by track on gtzan-mini (experiments/mini_accuracy.toml):
# the study's three models with the study's recipe, the classical baseline (logreg on the
# descriptors) and the crop models (resnet, short_chunk_cnn) with their recipe.
# Usage: experiments/accuracy.sh      Writes experiments/results/accuracy_mini.md.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet --bin genrelab
mkdir -p experiments/results
cfg=experiments/mini_accuracy.toml
out=experiments/results/accuracy_mini.md
machine="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores"
start=$(date +%s)
target/debug/genrelab --config "$cfg" --quiet run
wall=$(( $(date +%s) - start ))
{
  echo "## gtzan-mini, 10-fold cross-validation by track"
  echo
  echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'); machine: ${machine}"
  echo "- command: \`experiments/accuracy.sh\` (config \`${cfg}\`); wall time of this run: ${wall} s"
  echo "  (runs whose checkpoint matched their model, recipe and data fingerprint were reused, not retrained)"
  echo
  target/debug/genrelab --config "$cfg" --quiet results | sed '/^report:/d'
  echo
  echo "Training time per run and selected epochs (from the store):"
  echo
  echo '```'
  target/debug/genrelab --config "$cfg" --quiet query "SELECT model, COUNT(DISTINCT run) AS runs, ROUND(SUM(seconds) / COUNT(DISTINCT run), 1) AS seconds_per_run, MAX(epoch) AS max_epochs FROM history GROUP BY model ORDER BY seconds_per_run"
  echo '```'
} > "$out"
cat "$out"

#!/usr/bin/env bash
# The study's comparison on gtzan-mini (100 real GTZAN clips), through the real pipeline:
# local-folder source, the study's features and recipe (150 epochs, Adam 1e-4, batch 128).
#   part "study": the study's stratified 80/20 split, 5 seeds per model;
#   part "kfold": stratified 10-fold cross-validation, 1 seed per model and fold.
# Usage: experiments/seed_reproduction.sh [study] [kfold]     (default: both)
# Appends the measured tables, with date, machine and wall time, to experiments/results/.
set -euo pipefail
cd "$(dirname "$0")/.."
parts=("${@:-study kfold}")
cargo build --quiet --bin genrelab
mkdir -p experiments/results
machine="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores"
for part in ${parts[@]}; do
  cfg="experiments/mini_${part}.toml"
  out="experiments/results/seed_reproduction_${part}.md"
  start=$(date +%s)
  target/debug/genrelab --config "$cfg" --quiet run
  wall=$(( $(date +%s) - start ))
  {
    echo "## gtzan-mini, part \`${part}\`"
    echo
    echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'); machine: ${machine}"
    echo "- command: \`experiments/seed_reproduction.sh ${part}\` (config \`${cfg}\`); wall time of this run: ${wall} s"
    echo "  (0 s or close to it means every stage was already current and nothing was retrained)"
    echo
    target/debug/genrelab --config "$cfg" --quiet results | sed '/^report:/d'
    echo
    echo "Training time per run (from the store's history table):"
    echo
    echo '```'
    target/debug/genrelab --config "$cfg" --quiet query "SELECT model, COUNT(DISTINCT run) AS runs, ROUND(SUM(seconds) / COUNT(DISTINCT run), 1) AS seconds_per_run FROM history GROUP BY model ORDER BY seconds_per_run"
    echo '```'
  } > "$out"
  cat "$out"
done

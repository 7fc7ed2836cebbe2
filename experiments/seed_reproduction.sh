#!/usr/bin/env bash
# The study's comparison on gtzan-mini (100 real GTZAN clips), through the real pipeline:
# local-folder source, the study's features and recipe (150 epochs, Adam 1e-4, batch 128).
#   part "study": the study's stratified 80/20 split, 5 seeds per model;
#   part "kfold": stratified 10-fold cross-validation, 1 seed per model and fold.
# Usage: experiments/seed_reproduction.sh [study] [kfold]     (default: both)
# Writes the measured tables, with date, machine and wall time, to experiments/results/.
set -euo pipefail
cd "$(dirname "$0")/.."
source experiments/report.sh
parts=("${@:-study kfold}")
genrelab_bin
for part in ${parts[@]}; do
  run_and_report "experiments/mini_${part}.toml" "experiments/results/seed_reproduction_${part}.md" "gtzan-mini, part \`${part}\`" \
    "experiments/seed_reproduction.sh ${part}" "0 s or close to it means every stage was already current and nothing was retrained"
done

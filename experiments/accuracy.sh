#!/usr/bin/env bash
# Every model under 10-fold cross-validation by track on gtzan-mini (experiments/mini_accuracy.toml):
# the study's three models with the study's recipe, the classical baseline (logreg on the
# descriptors) and the crop models (resnet, short_chunk_cnn) with their recipe, and the
# ensembles across models. Other configs of the same experiment: pass them as arguments
# (experiments/mini_accuracy_fullband.toml, experiments/mini_banddrop.toml).
# Usage: experiments/accuracy.sh [CONFIG...]   Writes experiments/results/accuracy_mini*.md.
set -euo pipefail
cd "$(dirname "$0")/.."
source experiments/report.sh
genrelab_bin
for cfg in "${@:-experiments/mini_accuracy.toml}"; do
  name="$(basename "$cfg" .toml)"   # mini_accuracy -> accuracy_mini.md, mini_banddrop -> accuracy_mini_banddrop.md
  case "$name" in
    mini_accuracy*) out="experiments/results/${name/#mini_accuracy/accuracy_mini}.md" ;;
    *) out="experiments/results/accuracy_${name}.md" ;;
  esac
  run_and_report "$cfg" "$out" "gtzan-mini, 10-fold cross-validation by track (\`${cfg}\`)" \
    "experiments/accuracy.sh ${cfg}" "runs whose checkpoint matched their model, recipe and data fingerprint were reused, not retrained"
done

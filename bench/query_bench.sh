#!/usr/bin/env bash
# Wall time of `genrelab query` (polars SQL over the store), best of 5, for three queries: a
# light aggregate over features_full, one that decodes its whole log-mel column, and one over
# the history table. Needs a store that holds features_full and history (a trained run).
#   bench/query_bench.sh [BIN] [CONFIG]     # defaults: target/debug/genrelab, experiments/mini_accuracy_wide.toml
set -euo pipefail
bin=${1:-target/debug/genrelab}
config=${2:-experiments/mini_accuracy_wide.toml}
echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores; $bin, $config"
for q in "SELECT genre, AVG(std_db) AS s FROM features_full GROUP BY genre" \
         "SELECT COUNT(feature) AS n FROM features_full" \
         "SELECT model, fold, AVG(valid_loss) AS v, MAX(test_acc) AS t FROM history GROUP BY model, fold ORDER BY fold"; do
  best=""
  for _ in 1 2 3 4 5; do
    s=$(date +%s%N)
    "$bin" --config "$config" query "$q" > /dev/null
    t=$(( ($(date +%s%N) - s) / 1000000 ))
    if [ -z "$best" ] || [ "$t" -lt "$best" ]; then best=$t; fi
  done
  printf '%6d ms  %s\n' "$best" "$q"
done

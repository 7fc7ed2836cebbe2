# Shared by the experiment scripts (source it): run a config through the pipeline and write its
# results, with date, machine and wall time, to a markdown file.
#   run_and_report CONFIG OUT TITLE COMMAND NOTE
# The binary is target/debug/genrelab, built by `genrelab_bin` (with libtorch from
# tools/libtorch.sh); GENRELAB_BIN names another (one built elsewhere against a CUDA libtorch,
# say), which is then not built.
genrelab_bin() {
  if [ -z "${GENRELAB_BIN:-}" ]; then tools/libtorch.sh && cargo build --quiet --bin genrelab; fi
}
genrelab() { "${GENRELAB_BIN:-target/debug/genrelab}" "$@"; }
# The machine, for the results' header: CPU and cores, and the GPU when a CUDA build runs there.
machine_line() {
  local machine
  machine="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores"
  if command -v nvidia-smi >/dev/null && [ "${GENRELAB_DEVICE:-}" != cpu ] && nvidia-smi -L >/dev/null 2>&1; then
    machine="${machine}; GPU $(nvidia-smi --query-gpu=name --format=csv,noheader | head -1) (GENRELAB_DEVICE=${GENRELAB_DEVICE:-unset}; the report's cost line says where the runs trained)"
  fi
  echo "$machine"
}
run_and_report() {
  local cfg="$1" out="$2" title="$3" command="$4" note="$5"
  local machine start wall
  machine="$(machine_line)"
  mkdir -p "$(dirname "$out")"
  start=$(date +%s)
  genrelab --config "$cfg" --quiet run
  wall=$(( $(date +%s) - start ))
  {
    echo "## ${title}"
    echo
    echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'); machine: ${machine}"
    echo "- command: \`${command}\` (config \`${cfg}\`); wall time of this run: ${wall} s"
    echo "  (${note})"
    echo
    genrelab --config "$cfg" --quiet results | sed '/^report:/d'
    echo
    echo "Training time per run and selected epochs (from the store's history table):"
    echo
    echo '```'
    genrelab --config "$cfg" --quiet query "SELECT model, COUNT(DISTINCT run) AS runs, ROUND(SUM(seconds) / COUNT(DISTINCT run), 1) AS seconds_per_run, MAX(epoch) AS max_epochs FROM history GROUP BY model ORDER BY seconds_per_run"
    echo '```'
  } > "$out"
  cat "$out"
}

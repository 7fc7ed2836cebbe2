#!/usr/bin/env bash
# The Python side of the benchmarks, in bench/.venv (never system-wide): librosa and PIL for the
# study's feature pipeline, and PyTorch 2.13.0, the version whose libtorch genrelab links, so that
# both sides of bench/train_bench.py and bench/study_bench.py run the same kernels. PyPI's torch
# wheel loads its CUDA libraries even on a CPU, so this installs them too (about 3.5 GB to
# download, 7 GB on disk, a few minutes; the project's own .libtorch holds only the wheel, 1.3 GB).
# Prints the venv's python.
#
#   PY=$(bench/venv.sh) && $PY bench/train_bench.py
set -euo pipefail
cd "$(dirname "$0")/.."
tools/libtorch.sh
venv=bench/.venv
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import librosa, PIL, torch" >/dev/null 2>&1; then
  echo "bench/venv.sh: creating $venv (librosa, pillow, soundfile, torch 2.13.0 with its CUDA libraries: about 3.5 GB, a few minutes)" >&2
  python3 -m venv "$venv"
  rm -f "$venv"/lib/python*/site-packages/genrelab-libtorch.pth
  "$venv/bin/pip" install --quiet --disable-pip-version-check librosa pillow soundfile numpy "torch==2.13.0" >&2
fi
echo "$(pwd)/$venv/bin/python"

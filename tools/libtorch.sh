#!/usr/bin/env bash
# libtorch for genrelab's training engine (tch 0.26 binds libtorch 2.13.0). Run by `make` before
# every cargo command, and by .ci/run; after its first run plain `cargo build` / `cargo test` work
# too (.cargo/config.toml points LIBTORCH at .libtorch/current). It picks, in this order:
#   1. LIBTORCH, when set: used as it is (cargo passes it to tch's build); nothing is installed;
#   2. the `torch` of `python3`, when it imports and is version 2.13.0 (what tch's
#      LIBTORCH_USE_PYTORCH would use): .libtorch/current links to it;
#   3. otherwise the torch 2.13.0 wheel from PyPI, installed into .libtorch/py (never
#      system-wide). For the CPU (the default): the wheel alone (527 MB to download, 1.2 GB
#      unpacked) and the two small CUDA runtime libraries its CPU library links to (51 MB);
#      .libtorch/cpu holds the CPU libraries only, so the build links no CUDA. With
#      GENRELAB_TORCH=cuda, or when `nvidia-smi -L` lists a GPU: the wheel with its CUDA and
#      cuDNN packages (about 3.5 GB to download, 7 GB unpacked), linked whole.
# Messages go to stderr; nothing is printed when libtorch is already in place.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=2.13.0
# The CUDA runtime packages torch 2.13.0's CPU library needs (the wheel's cuda-toolkit 13.0.3 pins).
CPU_DEPS=("nvidia-cuda-runtime==13.0.96.*" "nvidia-cuda-cupti==13.0.85.*")
DIR=.libtorch
say() { echo "libtorch: $*" >&2; }

if [ -n "${LIBTORCH:-}" ]; then
  [ -d "$LIBTORCH/lib" ] || { say "LIBTORCH=$LIBTORCH has no lib/ folder"; exit 1; }
  exit 0
fi
if [ -e "$DIR/current/lib" ] && [ -f "$DIR/current.ok" ]; then
  exit 0
fi
mkdir -p "$DIR"
rm -f "$DIR/current" "$DIR/current.ok"

py_torch=$(python3 -c "import torch, os; print(torch.__version__.split('+')[0], os.path.dirname(torch.__file__))" 2>/dev/null || true)
if [ "${py_torch%% *}" = "$VERSION" ] && [ -d "${py_torch#* }/lib" ]; then
  ln -s "${py_torch#* }" "$DIR/current"
  say "using python3's torch $VERSION (${py_torch#* })"
  touch "$DIR/current.ok"
  exit 0
fi

want=${GENRELAB_TORCH:-}
if [ -z "$want" ]; then
  if nvidia-smi -L >/dev/null 2>&1; then want=cuda; else want=cpu; fi
fi
command -v python3 >/dev/null || { say "python3 (with pip) is needed to fetch libtorch, or set LIBTORCH"; exit 1; }
case "$want" in
  cpu)
    say "downloading PyTorch $VERSION for the CPU from PyPI (the torch wheel: 527 MB, 1.3 GB in $DIR/; about 1 to 3 minutes)"
    rm -rf "$DIR/py" "$DIR/cpu" "$DIR/py.tmp" "$DIR/cpu.tmp"
    PIP_ROOT_USER_ACTION=ignore python3 -m pip install --disable-pip-version-check --no-deps --target "$DIR/py.tmp" "torch==$VERSION" "${CPU_DEPS[@]}" >&2
    mv "$DIR/py.tmp" "$DIR/py"
    # A libtorch folder of the CPU libraries only: tch links libtorch_cuda when it finds it.
    mkdir -p "$DIR/cpu.tmp/lib"
    ln -s ../py/torch/include "$DIR/cpu.tmp/include"
    for lib in libc10.so libtorch_cpu.so libgomp.so.1 libshm.so libtorch_global_deps.so; do
      ln -s "../../py/torch/lib/$lib" "$DIR/cpu.tmp/lib/$lib"
    done
    ln -s libtorch_cpu.so "$DIR/cpu.tmp/lib/libtorch.so"
    for lib in "$DIR"/py/nvidia/cu13/lib/libcudart.so.13 "$DIR"/py/nvidia/cu13/lib/libcupti.so.13; do
      ln -s "../../py/nvidia/cu13/lib/$(basename "$lib")" "$DIR/cpu.tmp/lib/$(basename "$lib")"
    done
    echo "$VERSION" > "$DIR/cpu.tmp/build-version"
    mv "$DIR/cpu.tmp" "$DIR/cpu"
    ln -s cpu "$DIR/current"
    ;;
  cuda)
    say "downloading PyTorch $VERSION with CUDA 13 and cuDNN from PyPI (about 3.5 GB, 7 GB in $DIR/; several minutes)"
    rm -rf "$DIR/py" "$DIR/cpu" "$DIR/py.tmp" "$DIR/cpu.tmp"
    PIP_ROOT_USER_ACTION=ignore python3 -m pip install --disable-pip-version-check --target "$DIR/py.tmp" "torch==$VERSION" >&2
    mv "$DIR/py.tmp" "$DIR/py"
    ln -s py/torch "$DIR/current"
    ;;
  *) say "GENRELAB_TORCH must be cpu or cuda, not '$want'"; exit 1 ;;
esac
touch "$DIR/current.ok"
say "installed in $DIR ($(du -sh "$DIR" | cut -f1))"

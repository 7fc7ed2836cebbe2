#!/usr/bin/env bash
# Build genrelab for CUDA on a machine that reaches crates.io but not GitHub (and may have no CUDA
# toolkit installed).
#
#   cuda/build.sh [CUDA_VERSION]      e.g. 13000 for CUDA 13.0 (the default), 12080 for 12.8
#   FEATURES=cuda-autotune cuda/build.sh   with burn's autotune and kernel fusion (see the README)
#
# `cargo build --features cuda` is all a machine with internet access needs. Where GitHub cannot
# be reached it fails: burn 0.22's CUDA backend (cubecl-cuda 0.11) depends on cubecl-llvm, whose
# build script downloads an LLVM bundle from GitHub releases (tracel-llvm), even though
# cubecl-cuda can compile every kernel to CUDA C++ for NVRTC instead. This script builds with a
# copy of cubecl-cuda 0.11.3 (from cargo's registry cache) that uses the NVRTC backend only and
# replaces cubecl-llvm by `cuda/cubecl_llvm_stub.rs`; the copy lives in target/ and is applied
# with cargo's `--config patch`, so the committed Cargo.toml and Cargo.lock stay as they are.
# CUDA_VERSION picks cudarc's bindings where no `nvcc` is on the PATH (CUDARC_CUDA_VERSION).
#
# Writes target/cuda/debug/genrelab and target/cuda/debug/examples/train_throughput, built with
# `--features cuda` in their own target folder (CARGO_TARGET_DIR, default target/cuda), so that
# `make` keeps building the CPU binary at target/debug/genrelab without the two rebuilding each
# other. GENRELAB_DEVICE=cpu still selects the CPU. At run time the machine needs the NVIDIA driver
# and CUDA's NVRTC library and headers (the CUDA toolkit, or its pip wheels).
set -euo pipefail
cd "$(dirname "$0")/.."
export CUDARC_CUDA_VERSION="${1:-${CUDARC_CUDA_VERSION:-13000}}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target/cuda}"
crate=cubecl-cuda-0.11.3
cargo fetch --quiet
src="$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"$crate" | head -1)"
[ -d "$src" ] || { echo "cuda/build.sh: $crate is not in cargo's registry cache" >&2; exit 1; }
copy=target/cuda-patch/$crate
# Made afresh in a scratch folder and swapped in only when it differs, so that a rebuild does
# not recompile the CUDA stack for unchanged files' new timestamps.
fresh=target/cuda-patch/fresh
rm -rf "$fresh" && mkdir -p "$fresh" && cp -r "$src" "$fresh/$crate" && chmod -R u+w "$fresh"
# Drop the cubecl-llvm dependency (and the feature naming it), use the stand-in module instead.
python3 - "$fresh/$crate" <<'PY' || { echo "cuda/build.sh: python3 is needed to edit the copy's Cargo.toml" >&2; exit 1; }
import re, sys, pathlib
root = pathlib.Path(sys.argv[1])
toml = root / "Cargo.toml"
t = toml.read_text()
t = t.replace('    "cubecl-llvm/pliron-dump",\n', "")
t = re.sub(r"\n\[dependencies\.cubecl-llvm\]\n(?:[^\[].*\n|\n)*?(?=\n\[|\Z)", "\n", t)
assert "cubecl-llvm" not in t, "cubecl-llvm still named in the copy's Cargo.toml"
toml.write_text(t)
for f in root.glob("src/**/*.rs"):
    s = f.read_text()
    n = s.replace("cubecl_llvm::", "crate::cubecl_llvm::")
    if f.name == "compiler.rs":
        # The default backend: CUDA C++ through NVRTC, whatever the features say.
        n = n.replace('if cfg!(feature = "cpp") {', "if true {")
    if n != s:
        f.write_text(n)
lib = root / "src/lib.rs"
lib.write_text(lib.read_text() + "\n#[doc(hidden)]\npub mod cubecl_llvm;\n")
PY
cp cuda/cubecl_llvm_stub.rs "$fresh/$crate/src/cubecl_llvm.rs"
if ! diff -r -q "$fresh/$crate" "$copy" >/dev/null 2>&1; then rm -rf "$copy" && mv "$fresh/$crate" "$copy"; fi
rm -rf "$fresh"
cp Cargo.lock target/cuda-patch/Cargo.lock.committed
trap 'cp target/cuda-patch/Cargo.lock.committed Cargo.lock' EXIT
patch=(--config "patch.crates-io.cubecl-cuda.path=\"$PWD/$copy\"")
features="${FEATURES:-cuda}"
cargo build "${patch[@]}" --features "$features" --bin genrelab
cargo build "${patch[@]}" --features "genrelab-models/$features" -p genrelab-models --example train_throughput
echo "built with CUDA $CUDARC_CUDA_VERSION bindings: $CARGO_TARGET_DIR/debug/genrelab, $CARGO_TARGET_DIR/debug/examples/train_throughput"

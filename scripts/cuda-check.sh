#!/usr/bin/env bash
# Compiles the trainer's CUDA path without a GPU: nvcc 13.0 (the GPU machines' driver series) from
# PyPI into a virtual environment beside the cargo target directory, Candle's CUDA kernels compiled
# by it (PTX and the static MoE library, for compute capability 9.0: H100/H200), and asg-train
# type-checked and linted with --features cuda. It does not link: linking needs the CUDA driver library
# (libcuda), which only a machine with a GPU driver has. Clippy, so the CUDA-only code is linted too.
set -euo pipefail
cd "$(dirname "$0")/.."
target_dir="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
venv="$target_dir/cuda-nvcc-13.0"
# nvcc's pieces are separate wheels since CUDA 13; each is pinned to the 13.0 series, or pip takes
# the newest cicc (nvidia-nvvm), whose PTX 13.0's ptxas refuses ("Unsupported .version").
if ! "$venv/bin/python" -c "import importlib.metadata as m; assert m.version('nvidia-nvvm') == '13.0.88'" 2>/dev/null; then
  echo "cuda-check: installing nvcc 13.0 from PyPI into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check \
    nvidia-cuda-nvcc==13.0.88 nvidia-nvvm==13.0.88 nvidia-cuda-crt==13.0.88 \
    nvidia-cuda-runtime==13.0.96 nvidia-cuda-cccl==13.0.85
fi
cuda="$("$venv/bin/python" -c 'import nvidia, os; print(os.path.join(list(nvidia.__path__)[0], "cu13"))')"
export CUDA_HOME="$cuda" NVCC="$cuda/bin/nvcc" PATH="$cuda/bin:$PATH"
export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}" CUDARC_CUDA_VERSION=13000
"$NVCC" --version | tail -n 1
# A target directory of its own: the cuda feature changes candle's build, which would otherwise
# make the next ordinary build compile candle again.
CARGO_TARGET_DIR="$target_dir/cuda" cargo clippy -p asg-trainer --features cuda --all-targets -- -D warnings
echo "cuda-check: asg-train with --features cuda compiles (kernels by nvcc 13.0, sm_$CUDA_COMPUTE_CAP)"

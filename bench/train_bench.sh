#!/usr/bin/env bash
# Training-step throughput: the ASG model in Candle (trainer/examples/train_bench.rs) against the
# same architecture in PyTorch (bench/train_torch.py), same configs, batches and machine, one after
# the other. Needs a Python with torch: bench/train_bench.sh /path/to/python [STEPS]
# (torch is not part of scripts/setup.sh: the PyPI wheel with its CUDA libraries is ~3 GB).
set -euo pipefail
cd "$(dirname "$0")/.."
python="${1:?usage: bench/train_bench.sh PYTHON_WITH_TORCH [STEPS]}"
steps="${2:-5}"
target_dir="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
cargo build --release -q -p asg-trainer --example train_bench
# As scripts/train-real.sh: mimalloc keeps freed memory mapped instead of returning it to the
# kernel each step (the kernel's page zeroing was a fifth of the step before the fused ops).
export MIMALLOC_PURGE_DELAY=-1
echo "| config | batch | input | parameters | Candle s/step | PyTorch s/step | Candle img/s | PyTorch img/s | Candle / PyTorch time |"
echo "|---|---|---|---|---|---|---|---|---|"
for c in tiny small default real160p real160a; do
  cfg="trainer/configs/$c.toml"
  ours="$("$target_dir/release/examples/train_bench" "$cfg" "$steps")"
  theirs="$("$python" bench/train_torch.py "$cfg" "$steps")"
  python3 - "$c" "$ours" "$theirs" <<'PY'
import json, sys
name, a, b = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
assert a["parameters"] == b["parameters"], (a["parameters"], b["parameters"])
print(f"| {name} | {a['batch']} | {a['input']} | {a['parameters']:,} | {a['seconds_per_step']:.3f} | {b['seconds_per_step']:.3f} | "
      f"{a['images_per_second']:.1f} | {b['images_per_second']:.1f} | {a['seconds_per_step'] / b['seconds_per_step']:.1f}x |")
PY
done

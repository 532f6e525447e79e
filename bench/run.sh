#!/usr/bin/env bash
# Benchmarks the native plugin against the reference tools in one run and prints a Markdown table.
#   bash bench/run.sh [BUNDLE] [DICOM]      (after scripts/setup.sh, which makes .venv)
set -euo pipefail
cd "$(dirname "$0")/.."
target_dir="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
bundle="${1:-target/bench/bundle}"
dicom="${2:-target/bench/dicom/phantom_00000.dcm}"
cargo build --quiet --release -p asg-plugin -p asg-trainer --example bench --bin asg-train
if [ ! -f "$bundle/manifest.json" ]; then "$target_dir/release/asg-train" init --out "$bundle"; fi
if [ ! -f "$dicom" ]; then "$target_dir/release/asg-train" synth --n 1 --size 2048 --out "$(dirname "$dicom")" >/dev/null; fi
ours=$("$target_dir/release/examples/bench" "$bundle" "$dicom" 50)
ref=$(.venv/bin/python bench/reference.py "$bundle" "$dicom" 50)
python3 - "$ours" "$ref" "$dicom" <<'PY'
import json, os, platform, sys
ours, ref, dicom = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]
mb = os.path.getsize(dicom) / 1e6
print(f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; medians of {ours['runs']} runs; onnxruntime {ref['onnxruntime_version']}, pydicom {ref['pydicom_version']}")
print()
print("| work | asg (tract / asg-dicom) | reference |")
print("|---|---|---|")
print(f"| load + optimise image.onnx | {ours['load_ms']:.1f} ms | onnxruntime session: {ref['ort_1thread_load_ms']:.1f} ms |")
print(f"| inference, batch 1, 1 thread | {ours['inference_ms']:.2f} ms (tract, 1 thread) | onnxruntime 1 thread: {ref['ort_1thread_inference_ms']:.2f} ms |")
print(f"| inference, batch 1, all cores | (tract runs 1 thread) | onnxruntime default threads: {ref['ort_default_threads_inference_ms']:.2f} ms |")
print(f"| decode {mb:.1f} MB DICOM (explicit VR LE) to f32 | {ours['decode_ms']:.2f} ms ({mb/ours['decode_ms']*1e3:.0f} MB/s) | pydicom + numpy astype: {ref['pydicom_decode_ms']:.2f} ms ({mb/ref['pydicom_decode_ms']*1e3:.0f} MB/s) |")
print(f"| display window + area resize + letterbox | {ours['preprocess_ms']:.2f} ms | — |")
PY

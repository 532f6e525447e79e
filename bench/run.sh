#!/usr/bin/env bash
# Benchmarks the native plugin against the reference tools in one run and prints a Markdown table.
#   bash bench/run.sh [BUNDLE] [DICOM] [REPORT]   (after scripts/setup.sh, which makes .venv)
# Default: the embedded bundle (models/default) on a 2048 x 2048 phantom with its report.
set -euo pipefail
cd "$(dirname "$0")/.."
target_dir="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
bundle="${1:-models/default}"
dicom="${2:-}"
report="${3:-}"
cargo build --quiet --release -p asg-plugin -p asg-trainer --example bench --bin asg-train
if [ -z "$dicom" ]; then
  rm -rf target/bench/set
  "$target_dir/release/asg-train" synth --n 1 --seed 4 --size 2048 --fixed-format --normal-share 0 --out target/bench/set 2>/dev/null
  dicom="$(find target/bench/set/files -name '*.dcm' | head -n 1)"
  report="$(find target/bench/set/files -name 's*.txt' | head -n 1)"
fi
ours=$("$target_dir/release/examples/bench" "$bundle" "$dicom" 50 $report)
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
print(f"| display window + area resize + letterbox | {ours['preprocess_ms']:.2f} ms | (in the end-to-end row) |")
print(f"| end to end: decode + preprocess + inference (+ regions, heatmaps) | {ours['analysis_ms']:.2f} ms | pydicom + numpy + onnxruntime 1 thread: {ref['reference_end_to_end_ms']:.2f} ms |")
rc = ours.get('report_check_ms')
print(f"| report check (parse, text.onnx per sentence, verdicts) | {rc:.2f} ms |" if rc is not None else "| report check | — |", "— |")
print(f"| peak resident memory of the process | {ours['peak_rss_mb']:.0f} MB | {ref['reference_peak_rss_mb']:.0f} MB (Python + numpy + onnxruntime + pydicom) |")
PY

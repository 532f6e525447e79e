#!/usr/bin/env bash
# Decode throughput per transfer syntax, asg-dicom against pydicom and dcmtk on the same files in
# the same run, and pixel agreement with dcmtk: bash bench/decode_bench.sh (installs dcmtk).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v dcmcjpls >/dev/null 2>&1 || apt-get install -y -q dcmtk >/dev/null
command -v ojph_compress >/dev/null 2>&1 || apt-get install -y -q openjph-tools >/dev/null
target_dir="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
cargo build --release -q -p asg-trainer --bin asg-train
cargo build --release -q -p asg-plugin --bin asg
cargo build --release -q -p asg-dicom --features j2k,jpegls,jpeg12 --example decode_bench
out=target/decode-bench
rm -rf "$out" && mkdir -p "$out"
"$target_dir/release/asg-train" synth --n 1 --seed 11 --size 2048 --fixed-format --out "$out/src" 2>/dev/null
src="$(find "$out/src/files" -name '*.dcm' | head -n 1)"
.venv/bin/python bench/decode_bench.py "$src" "$out" "$target_dir/release/examples/decode_bench" "$target_dir/release/asg"

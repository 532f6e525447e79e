#!/usr/bin/env bash
# Fuzzes asg-dicom with cargo-fuzz (libFuzzer): any bytes -> DICOM image -> display -> model
# tensor must give an error or a tensor, never a panic, a hang or unbounded memory.
#   bash scripts/fuzz.sh [SECONDS]   (default 60; CI runs it for 60 s)
# Seeds: the pydicom wheel's test files (installed into .venv by scripts/setup.sh; not committed).
# A crash is written to dicom/fuzz/artifacts/ and fails the run; turn it into a regression test
# in dicom/tests/ (see a_short_rle_segment_is_an_error_not_a_panic).
set -euo pipefail
cd "$(dirname "$0")/../dicom/fuzz"
secs="${1:-60}"
if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "fuzz: skipped: no nightly Rust toolchain on this machine (cargo-fuzz needs one)"
  exit 0
fi
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked --version 0.13.2
mkdir -p corpus/bytes_to_tensor seeds
# Seeds up to 256 KB (the large ones only slow each run down).
find ../../.venv/lib/python3*/site-packages/pydicom/data/test_files -maxdepth 1 -name '*.dcm' \
  -size -256k -exec cp {} seeds/ \; 2>/dev/null || true
cargo +nightly fuzz run bytes_to_tensor corpus/bytes_to_tensor seeds -- \
  -max_total_time="$secs" -rss_limit_mb=8192 -timeout=20 -max_len=65536 2>&1 | tail -n 3

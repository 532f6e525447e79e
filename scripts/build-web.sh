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
# The manifest and every file it lists (image, text and crop models, tokenizer).
cp "$bundle/manifest.json" web/model/
python3 -c 'import json,sys; print("\n".join(json.load(open(sys.argv[1]))["files"]))' \
  "$bundle/manifest.json" | while read -r f; do cp "$bundle/$f" web/model/; done
echo "web/ built: $(du -sh web/pkg/asg_wasm_bg.wasm | cut -f1) of wasm, model from $bundle"

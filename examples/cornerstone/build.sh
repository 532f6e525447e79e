#!/usr/bin/env bash
# Bundles the example into dist/ with esbuild: main.js and the DICOM image loader's decoding
# worker (which main.js's bundle starts from ./decodeImageFrameWorker.js), plus index.html.
# /asg.js stays external: the page is served beside the built viewer (web/).
set -euo pipefail
cd "$(dirname "$0")"
[ -d node_modules ] || npm ci --no-audit --no-fund --silent
rm -rf dist && mkdir -p dist
npx esbuild main.js node_modules/@cornerstonejs/dicom-image-loader/dist/esm/decodeImageFrameWorker.js \
  --bundle --format=esm --target=es2022 --platform=browser --outdir=dist --entry-names='[name]' \
  --external:/asg.js --external:fs --external:path --external:crypto --external:module --external:worker_threads --external:os \
  --alias:url=./shims/url.cjs --alias:events=./shims/events.cjs --log-level=warning
cp index.html dist/
echo "examples/cornerstone/dist built: $(du -sh dist | cut -f1)"

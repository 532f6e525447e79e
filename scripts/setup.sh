#!/usr/bin/env bash
# Installs what building and testing need, once; safe to re-run (skips what is already there).
# Debian's chromium (browser tests), cmake, dcmtk, openjph-tools, strace, orthanc (+ dicomweb), the wasm32 rustup target, wasm-bindgen-cli at exactly the
# version in Cargo.lock, and the browser tests' npm packages (playwright-core, no browser download).
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

if ! command -v chromium >/dev/null 2>&1; then
  echo "setup: installing Debian's chromium"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi

# cmake builds CharLS (JPEG-LS) for the native DICOM decoders.
if ! command -v cmake >/dev/null 2>&1; then
  echo "setup: installing Debian's cmake"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends cmake >/dev/null
fi

# dcmtk: dsrdump reads our DICOM Structured Reports in the tests.
if ! command -v dsrdump >/dev/null 2>&1; then
  echo "setup: installing Debian's dcmtk"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends dcmtk >/dev/null
fi

# OpenJPH (ojph_compress, ojph_expand): an independent HTJ2K encoder and decoder for the tests.
if ! command -v ojph_compress >/dev/null 2>&1; then
  echo "setup: installing Debian's openjph-tools"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends openjph-tools >/dev/null
fi

# strace: the privacy test traces the CLI's system calls (no network sockets).
if ! command -v strace >/dev/null 2>&1; then
  echo "setup: installing Debian's strace"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends strace >/dev/null
fi

# Orthanc with its DICOMweb plugin: a real PACS on loopback for `asg analyze --dicomweb`'s tests
# (started by the test with a config of its own; the Debian service is left stopped).
if [ ! -x /usr/sbin/Orthanc ] || [ ! -e /usr/share/orthanc/plugins/libOrthancDicomWeb.so ]; then
  echo "setup: installing Debian's orthanc and orthanc-dicomweb"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends orthanc orthanc-dicomweb >/dev/null
fi

# OHIF's released viewer (the npm package @ohif/app ships it built, in dist/) for the OHIF browser
# test: unpacked once beside the cargo target directory (it is 200 MB; npm caches the download).
ohif_version=3.13.2
target_dir="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
ohif="$target_dir/ohif-$ohif_version"
if [ ! -f "$ohif/dist/index.html" ]; then
  echo "setup: unpacking @ohif/app $ohif_version's dist/ into $ohif"
  rm -rf "$ohif" && mkdir -p "$ohif"
  (cd "$ohif" && npm pack --silent "@ohif/app@$ohif_version" >/dev/null \
    && tar xzf "ohif-app-$ohif_version.tgz" --strip-components=1 package/dist package/LICENSE \
    && rm "ohif-app-$ohif_version.tgz")
fi

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  echo "setup: adding the wasm32-unknown-unknown target"
  rustup target add wasm32-unknown-unknown
fi

want=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
have=$(wasm-bindgen --version 2>/dev/null | awk '{print $2}' || true)
if [ "$have" != "$want" ]; then
  echo "setup: installing wasm-bindgen-cli $want (found '${have:-none}'); this takes a few minutes"
  cargo install --quiet wasm-bindgen-cli --version "$want"
fi

(cd tests/browser && npm ci --no-audit --no-fund --silent)

# Reference tools (onnx checker, onnxruntime, pydicom) in a virtual environment of the project's.
if ! .venv/bin/python -c "import onnx, onnxruntime, pydicom, numpy, pylibjpeg, libjpeg, openjpeg, rle, jsonschema, highdicom, data_store, gdcm" 2>/dev/null; then
  echo "setup: installing the Python reference tools into .venv"
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check -r bench/requirements.txt
fi
echo "setup: done"

#!/usr/bin/env bash
# The Python package's tests: `pip install ./python` into a fresh virtual environment (maturin
# builds the wheel), the tests' requirements (pytest, pydicom, Ray Data), then pytest against
# the CLI binaries of the cargo target directory (ASG_BIN, ASG_TRAIN; built by scripts/test.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
target_dir="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
venv="$target_dir/python-venv"

python3 -m venv --clear "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check -r python/tests/requirements.txt
echo "== pip install ./python (a release wheel; maturin shares the cargo target directory)"
"$venv/bin/pip" install --quiet --disable-pip-version-check ./python
"$venv/bin/python" -c 'import asg_cxr; print("asg_cxr", asg_cxr.__version__, asg_cxr.Model())'

export ASG_BIN="${ASG_BIN:-$target_dir/debug/asg}" ASG_TRAIN="${ASG_TRAIN:-$target_dir/debug/asg-train}"
export RAY_USAGE_STATS_ENABLED=0
(cd python/tests && "$venv/bin/python" -m pytest -p no:cacheprovider)

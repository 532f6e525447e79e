#!/usr/bin/env bash
# Builds the release binaries (asg with the default model of models/ embedded, asg-train), a few
# demo phantom studies with reports (target/demo) and the browser viewer (web/, with
# models/default).
set -euo pipefail
cd "$(dirname "$0")/.."
target_dir="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"

# The viewer first: `asg` embeds it for `asg serve`.
bash scripts/build-web.sh models/default
cargo build --release -p asg-plugin -p asg-trainer
rm -rf target/demo
"$target_dir/release/asg-train" synth --n 3 --seed 1 --size 1024 --errors --out target/demo
echo "built: $target_dir/release/asg, $target_dir/release/asg-train, target/demo, web/"

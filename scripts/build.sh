#!/usr/bin/env bash
# Builds the release binaries (asg, asg-train), the thin-slice model bundle (target/bundle), a few
# demo phantom studies (target/demo) and the browser viewer (web/).
set -euo pipefail
cd "$(dirname "$0")/.."
target_dir="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"

cargo build --release -p asg-plugin -p asg-trainer
"$target_dir/release/asg-train" init --out target/bundle
rm -rf target/demo
"$target_dir/release/asg-train" synth --n 3 --seed 1 --size 1024 --out target/demo
bash scripts/build-web.sh target/bundle
echo "built: $target_dir/release/asg, $target_dir/release/asg-train, target/bundle, target/demo, web/"

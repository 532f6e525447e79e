#!/usr/bin/env bash
# Trains the previous, phantom-only default model from nothing, on a 2-core CPU in under an hour,
# and exports it to ${OUT:-target/train-default/bundle} with its evaluation (the default now is
# trained on real films too: scripts/train-real.sh):
#   1. 2,500 phantom studies (256 px; train 2004 / validate 252 / test 244), seed 7;
#   2. asg-train fit with trainer/configs/embedded.toml (3,000 steps of 16 images at 128 px;
#      34 minutes on a 2-core CPU);
#   3. asg-train export: thresholds chosen on the validation split, the test split evaluated
#      through tract into the manifest's metrics and evaluation.json.
# Work files go to ${ASG_WORK:-target/train-default}; same seeds, same model (on the same
# machine and build: floating-point sums are not reproducible across CPUs or thread counts).
set -euo pipefail
cd "$(dirname "$0")/.."
work="${ASG_WORK:-target/train-default}"
target_dir="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
cargo build --release -p asg-trainer
train="$target_dir/release/asg-train"
mkdir -p "$work"
if [ ! -f "$work/phantoms/phantom_set.json" ]; then
  "$train" synth --n 2500 --seed 7 --size 256 --out "$work/phantoms"
fi
"$train" fit --data "$work/phantoms" --config trainer/configs/embedded.toml --out "$work/run" \
  $( [ -f "$work/run/state.json" ] && echo --resume )
"$train" export --run "$work/run" --out "${OUT:-$work/bundle}" --name asg-default \
  --data "$work/phantoms" \
  --data-description "2,500 synthetic phantom studies (asg-train synth --n 2500 --seed 7 --size 256): train 2004, validate 252, test 244" \
  | tee "$work/evaluation.md"
echo "${OUT:-$work/bundle} written; evaluation table in $work/evaluation.md"

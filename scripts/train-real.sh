#!/usr/bin/env bash
# Trains a model on phantoms and real films together, and exports it with thresholds chosen on
# the real validation split (normal films left clean) and its metrics measured on the real test
# split (the realcxr layout: ../shared/realcxr, research-only films: the bundle may be shipped,
# the films never; see its README):
#   1. 1,000 phantom studies (256 px), seed 7;
#   2. asg-train fit on the phantoms and the real films, the real films' training records counted
#      ${REAL_WEIGHT:-3} times, with ${CONFIG:-trainer/configs/real160a.toml} for ${STEPS:-3000} steps;
#   3. asg-train export --data <realcxr> into ${OUT:-target/train-real/bundle} (named
#      ${NAME:-asg-default}), then the phantom test split evaluated too.
# Work files go to ${ASG_WORK:-target/train-real}.
set -euo pipefail
cd "$(dirname "$0")/.."
# mimalloc keeps freed memory mapped instead of handing it back to the kernel after a delay: a
# step allocates and frees the same large feature maps every time, and re-faulting them (the
# kernel zeroing fresh pages) took ~19% of a step; ~8% faster on this CPU (BENCHMARKS.md).
export MIMALLOC_PURGE_DELAY="${MIMALLOC_PURGE_DELAY:--1}"
work="${ASG_WORK:-target/train-real}"
real="${REALCXR:-../shared/realcxr}"
config="${CONFIG:-trainer/configs/real160a.toml}"
out="${OUT:-$work/bundle}"
[ -f "$real/index.jsonl" ] || { echo "train-real: $real/index.jsonl not found (set REALCXR)" >&2; exit 1; }
target_dir="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
cargo build --release -p asg-trainer
train="$target_dir/release/asg-train"
mkdir -p "$work"
sed "s/^steps = .*/steps = ${STEPS:-3000}/" "$config" >"$work/config.toml"
if [ ! -f "$work/phantoms/phantom_set.json" ]; then
  "$train" synth --n 1000 --seed 7 --size 256 --out "$work/phantoms"
fi
"$train" fit --data "$work/phantoms" --data "$real:${REAL_WEIGHT:-3}" --config "$work/config.toml" \
  --out "$work/run" $( [ -f "$work/run/state.json" ] && echo --resume )
"$train" export --run "$work/run" --out "$out" --name "${NAME:-asg-default}" \
  --data "$real" \
  --data-description "1,000 phantom studies (asg-train synth --n 1000 --seed 7 --size 256) and the realcxr films (JSRT/SCR, ieee8023 with GeneralBlockchain and v7labs masks, Brixia scores; training split by patient group, weight ${REAL_WEIGHT:-3})" \
  | tee "$work/evaluation-real.md"
"$train" eval --model "$out" --data "$work/phantoms" --no-probe | tee "$work/evaluation-phantoms.md"
echo "bundle in $out; real-film table in $work/evaluation-real.md, phantoms in $work/evaluation-phantoms.md"

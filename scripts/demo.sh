#!/usr/bin/env bash
# The main job in one command on a fresh Debian machine with rustup: installs cmake if missing
# (the JPEG-LS decoder builds CharLS with it), builds only the `asg` binary (release, the default
# model embedded) and runs `asg demo` with the arguments given (e.g. --real).
set -euo pipefail
cd "$(dirname "$0")/.."
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
if ! command -v cmake >/dev/null 2>&1; then
  echo "demo: installing Debian's cmake"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends cmake >/dev/null
fi
exec cargo run --release -p asg-plugin --bin asg -- demo "$@"

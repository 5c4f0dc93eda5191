#!/usr/bin/env bash
# The main job: build ndisshm (Release with asserts: the `release` preset) and
# run `ndisshm demo`. Extra arguments go to the demo, e.g. scripts/demo.sh
# --json. Installs nothing (scripts/deps.sh does); JOBS=N sets the build's
# parallelism (default: nproc).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh --check
cmake --preset release >/dev/null
cmake --build --preset release -j "${JOBS:-$(nproc)}" --target ndisshm_cli
exec build-release/tools/ndisshm/ndisshm demo "$@"

#!/usr/bin/env bash
# The main job: build ndisshm (Release with asserts) and run `ndisshm demo`.
# Extra arguments go to the demo, e.g. scripts/demo.sh --json.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
# Release optimisation, asserts kept (no NDEBUG): the demo is also a check.
cmake -S . -B build-release -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_FLAGS_RELEASE=-O2 \
      -DCMAKE_C_FLAGS_RELEASE=-O2 -DNDISSHM_BUILD_TESTS=OFF -DNDISSHM_BUILD_BENCH=OFF >/dev/null
ninja -C build-release ndisshm_cli
exec build-release/tools/ndisshm/ndisshm demo "$@"

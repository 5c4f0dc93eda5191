#!/usr/bin/env bash
# The whole test suite, as CI runs it (after scripts/deps.sh, which installs
# what it needs; this script installs nothing and says what is missing):
#   1. Debug build, warnings as errors, every test (unit, conformance, stress,
#      layers, examples, CLI, packaging) plus the C11 header check and a
#      benchmark smoke run;
#   2. ASan+UBSan build: the core and stress suites;
#   3. TSan build: the core and stress suites;
#   4. the fuzz targets, 60 s each (scripts/fuzz.sh: clang, build-fuzz).
# Each build is a preset of CMakePresets.json (test, asan, tsan) in its own
# folder (build-test, build-asan, build-tsan). JOBS=N sets the parallelism
# (default: nproc).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh --check
jobs=${JOBS:-$(nproc)}

run_build() {  # preset
    local preset=$1
    echo "==== build-$preset: configure and build"
    cmake --preset "$preset" >/dev/null
    cmake --build --preset "$preset" -j "$jobs"
    echo "==== build-$preset: tests"
    ${CTEST_PREFIX:-} ctest --preset "$preset" -j "$jobs"
}

run_build test
echo "==== build-test: benchmark smoke run (figures: bench/run.sh)"
build-test/bench/ndisshm_bench --benchmark_min_time=0.001 --benchmark_filter='pair/ndisshm/|routing' >/dev/null
# The rings' paired benchmark once at 64 B: a guest process, the placement, the
# round trip and the bare ring (which checks every packet it carries). A
# benchmark's error does not change the exit status, so its output is read.
paired=$(build-test/bench/ndisshm_bench --benchmark_min_time=0.001 \
    --benchmark_filter='zero_vs_copy_paired_rxonly/bytes:64/' 2>&1) || { echo "$paired"; exit 1; }
if grep -q "ERROR OCCURRED: 'skipped: this process may use" <<<"$paired"; then
    echo "skipped: the paired rings benchmark needs two CPUs"
elif grep -q "ERROR OCCURRED" <<<"$paired" || ! grep -q "bare_ring_ns=" <<<"$paired"; then
    echo "$paired"
    echo "benchmark smoke run: the paired rings benchmark failed" >&2
    exit 1
fi
run_build asan
# TSan maps its shadow at fixed addresses; kernels with high mmap entropy make
# that fail at random, so run it without address randomisation.
CTEST_PREFIX="setarch $(uname -m) -R" run_build tsan
# libFuzzer (clang, ASan+UBSan): each target 60 s (issue 6's bound) from its
# committed corpus and what earlier runs here found (build-fuzz), one after
# the other: 3 minutes in all. Longer runs: scripts/fuzz.sh SECONDS, with the
# figures in docs/reliability.md.
NDISSHM_JOBS=$jobs scripts/fuzz.sh 60
echo "==== all test builds passed"

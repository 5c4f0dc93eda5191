#!/usr/bin/env bash
# Fuzzing: builds tests/fuzz's libFuzzer targets with clang (ASan + UBSan, the
# library instrumented too) in build-fuzz and runs each for SECONDS (default
# 60), one after the other, then prints what each did.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]     targets: ndis_calls channel rings config
#
# Each target starts from its committed seeds (tests/fuzz/corpus/<target>) and
# what earlier runs here found (build-fuzz/corpus/<target>, where new inputs
# go). A crash, leak or failed invariant stops that target with its input in
# build-fuzz/crashes/<target>/ and this script fails; commit such an input
# under tests/fuzz/crashes/<target>/, where fuzz.replay.<target> replays it in
# every test build. docs/reliability.md has the figures and how to refresh
# the committed seeds.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
shift || true
targets=("$@")
((${#targets[@]})) || targets=(ndis_calls channel rings config)
jobs=${NDISSHM_JOBS:-2}  # CI has two cores
dir=build-fuzz

echo "==== $dir: configure and build (clang, libFuzzer, ASan+UBSan)"
# Debug keeps the library's assertions; -O1 keeps executions per second up.
CC=clang CXX=clang++ cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG="-O1 -g" \
    -DCMAKE_C_FLAGS_DEBUG="-O1 -g" -DNDISSHM_FUZZ=ON -DNDISSHM_WERROR=ON -DNDISSHM_BUILD_TESTS=OFF \
    -DNDISSHM_BUILD_BENCH=OFF -DNDISSHM_BUILD_TOOLS=OFF -DNDISSHM_BUILD_DOCS=OFF >/dev/null
ninja -C "$dir" -j"$jobs" "${targets[@]/#/fuzz_}"

# The library's verifier reports are the fuzzers' daily bread: keep them off stderr.
export NDISSHM_QUIET=1
summary=()
failed=0
for t in "${targets[@]}"; do
    mkdir -p "$dir/corpus/$t" "$dir/crashes/$t" "$dir/logs"
    log="$dir/logs/$t.log"
    echo "==== fuzz_$t: $seconds s"
    dict=()
    [[ -f tests/fuzz/$t.dict ]] && dict=(-dict="tests/fuzz/$t.dict")
    rc=0
    "$dir/tests/fuzz/fuzz_$t" -max_total_time="$seconds" -timeout=20 -print_final_stats=1 \
        -artifact_prefix="$dir/crashes/$t/" "${dict[@]}" "$dir/corpus/$t" "tests/fuzz/corpus/$t" >"$log" 2>&1 || rc=$?
    # libFuzzer's last status line ("#N DONE cov: C ft: F corp: U/B ...") and its final stats.
    status=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$status")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$status")
    corp=$(sed -n 's/.* corp: \([0-9]*\).*/\1/p' <<<"$status")
    line=$(printf '%-11s %5ss %11s runs %8s/s  cov %6s  ft %6s  corpus %5s' "$t" "$seconds" "${runs:-?}" \
        "${rate:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}")
    if ((rc != 0)); then
        failed=1
        line+="  FAILED (exit $rc): $(ls -t "$dir/crashes/$t" | head -1)"
        tail -40 "$log"
    fi
    echo "$line"
    summary+=("$line")
done
echo "==== fuzzing summary (logs in $dir/logs)"
printf '%s\n' "${summary[@]}"
exit $failed

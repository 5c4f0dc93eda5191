#!/usr/bin/env bash
# Side by side: the benchmarks of an earlier commit against the working tree's, run in turns on the same
# machine (before, after, before, after, ...) so that the machine's drift hits both alike, and the
# median of each printed with the ratio. Figures of one run of ab.sh compare; figures of two runs do not.
#
#   bench/ab.sh REV FILTER [RUNS]     e.g. bench/ab.sh 375f74d 'pair/ndisshm/bytes:4096/' 5
#
# REV is built Release (-O2, as bench/run.sh builds) in a git worktree under ${TMPDIR:-/tmp}; the working
# tree's build-bench/ is built first. Each run is --benchmark_min_time=0.3; RUNS defaults to 3.
# NDISSHM_AB_COUNTERS='host_cpu_ns packets_per_s' adds the medians of those user counters, after / before.
set -euo pipefail

if [[ ${1:-} == -h || ${1:-} == --help ]]; then
    sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
fi
if [[ $# -lt 2 ]]; then
    echo "usage: bench/ab.sh REV FILTER [RUNS]  (bench/ab.sh --help)" >&2
    exit 2
fi
rev=$1 filter=$2 runs=${3:-3}
root=$(cd "$(dirname "$0")/.." && pwd)
old="${TMPDIR:-/tmp}/ndisshm-ab-$(git -C "$root" rev-parse --short "$rev")"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

if [[ ! -d $old ]]; then
    git -C "$root" worktree add --detach "$old" "$rev" >/dev/null
fi
launcher=()
if command -v ccache >/dev/null; then
    launcher=(-DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
fi
for tree in "$old" "$root"; do
    # The flags bench/run.sh builds with, so the working tree's build-bench/ stays as it left it.
    # ccache when there is one; never more than NDISSHM_BENCH_JOBS (default 2) compilers at once.
    cmake -S "$tree" -B "$tree/build-bench" -G Ninja -DCMAKE_BUILD_TYPE=Release \
        -DCMAKE_C_FLAGS_RELEASE="-O2 -DNDEBUG" -DCMAKE_CXX_FLAGS_RELEASE="-O2 -DNDEBUG" \
        ${launcher[@]+"${launcher[@]}"} \
        -DNDISSHM_BUILD_BENCH=ON -DNDISSHM_BUILD_TESTS=OFF -DNDISSHM_BUILD_TOOLS=OFF >/dev/null
    cmake --build "$tree/build-bench" --target ndisshm_bench -j "${NDISSHM_BENCH_JOBS:-2}" >/dev/null
done
for ((i = 1; i <= runs; i++)); do
    for side in before after; do
        tree=$old
        [[ $side == after ]] && tree=$root
        "$tree/build-bench/bench/ndisshm_bench" --benchmark_filter="$filter" --benchmark_min_time=0.3 \
            --benchmark_format=json >"$out/$side-$i.json" 2>/dev/null
    done
done
python3 - "$out" "$rev" "${NDISSHM_AB_COUNTERS:-}" <<'PY'
import glob, json, statistics, sys
out, rev, wanted = sys.argv[1], sys.argv[2], sys.argv[3].split()
times, counters = {}, {}
for side in ("before", "after"):
    for f in sorted(glob.glob(f"{out}/{side}-*.json")):
        for b in json.load(open(f))["benchmarks"]:
            if b.get("error_occurred"):
                print(f"error ({side}): {b['name']}: {b.get('error_message', '')}")
                continue
            times.setdefault((side, b["name"]), []).append(b["real_time"])
            for k in wanted:
                if k in b:
                    counters.setdefault((side, b["name"], k), []).append(b[k])
names = sorted({n for _, n in times})
print(f"| benchmark | before ({rev}) | after (working tree) | before / after |")
print("|---|---:|---:|---:|")
for n in names:
    b, a = times.get(("before", n)), times.get(("after", n))
    if b and a:
        mb, ma = statistics.median(b), statistics.median(a)
        print(f"| {n} | {mb:,.1f} | {ma:,.1f} | {mb / ma:.2f}x |")
if counters:
    print()
    print(f"| benchmark | counter | before ({rev}) | after (working tree) | after / before |")
    print("|---|---|---:|---:|---:|")
    for n in names:
        for k in wanted:
            b, a = counters.get(("before", n, k)), counters.get(("after", n, k))
            if b and a:
                mb, ma = statistics.median(b), statistics.median(a)
                print(f"| {n} | {k} | {mb:,.2f} | {ma:,.2f} | {ma / mb if mb else float('nan'):.2f} |")
PY

#!/usr/bin/env bash
# bench/run.sh --plot: the side-by-side chart of a run, drawn by gnuplot
# beside the run's JSON (SVG, or PNG with NDISSHM_BENCH_PLOT_FORMAT=png),
# from one file or several merged; and, without gnuplot, a clear message
# and exit 1 (before any benchmark runs). The drawing checks need gnuplot
# (Debian: gnuplot-nox); where it is missing they are reported as not run.
# Usage: bench_plot_test.sh SOURCE_DIR
set -uo pipefail

src=${1:?usage: bench_plot_test.sh SOURCE_DIR}
run="$src/bench/run.sh"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
source "$(dirname "$0")/lib.sh"
results="$src/bench/results"
cp "$results/2026-12-05-memif.json" "$tmp/memif.json"
cp "$results/2026-12-01-memory.json" "$tmp/pairs.json"

# ---- no gnuplot: said clearly, exit 1, no chart, nothing run ------------------
GNUPLOT=/nonexistent/gnuplot bash "$run" --plot "$tmp/memif.json" >"$tmp/none.out" 2>"$tmp/none.err"
rc=$?
[[ $rc == 1 ]] || fail "--plot without gnuplot: exit status $rc, expected 1"
grep -qF "gnuplot is not installed" "$tmp/none.err" || fail "--plot without gnuplot: '$(cat "$tmp/none.err")'"
grep -qF "apt install gnuplot-nox" "$tmp/none.err" || fail "--plot without gnuplot does not say how to get it"
[[ -e $tmp/memif.svg ]] && fail "--plot without gnuplot left a chart"
# Before the suite's build and minute of benchmarks, not after.
GNUPLOT=/nonexistent/gnuplot NDISSHM_BENCH_OUT="$tmp/never.json" timeout 20 bash "$run" --plot \
    --benchmark_filter=none >"$tmp/early.out" 2>"$tmp/early.err"
rc=$?
[[ $rc == 1 ]] || fail "--plot (a run) without gnuplot: exit status $rc, expected 1 at once"
grep -qF "gnuplot is not installed" "$tmp/early.err" || fail "--plot (a run) without gnuplot: '$(cat "$tmp/early.err")'"
[[ -e $tmp/never.json ]] && fail "--plot without gnuplot ran the benchmarks first"
# The summary of an earlier run still prints; then the chart is refused.
GNUPLOT=/nonexistent/gnuplot bash "$run" --summarize "$tmp/memif.json" --plot >"$tmp/sum.out" 2>"$tmp/sum.err"
rc=$?
[[ $rc == 1 ]] || fail "--summarize --plot without gnuplot: exit status $rc, expected 1"
grep -qF "memif (DPDK 22.11, copy mode)" "$tmp/sum.out" || fail "--summarize --plot without gnuplot printed no summary"

# ---- with gnuplot ---------------------------------------------------------------
if ! command -v gnuplot >/dev/null 2>&1; then
    echo "bench plot test: gnuplot not installed: the drawing checks did not run (Debian: gnuplot-nox)"
else
    bash "$run" --summarize "$tmp/memif.json" --plot >"$tmp/one.out" 2>"$tmp/one.err" ||
        fail "--summarize --plot: exit status $?: $(cat "$tmp/one.err")"
    grep -qF "Chart: $tmp/memif.svg" "$tmp/one.out" || fail "--summarize --plot does not name its chart: $(tail -3 "$tmp/one.out")"
    python3 - "$tmp/memif.svg" <<'PY' || fail "the chart of one run: checks failed"
import sys, xml.etree.ElementTree as ET
text = open(sys.argv[1]).read()
ET.fromstring(text)  # well-formed SVG
errors = [w for w in ("Receive into a guest (own cores): packets/s", "Receive into a guest (own cores): Gbit/s",
                      "Allocate+free pair", "memif (DPDK), copy mode", "zero copy, guest checks every byte",
                      "not in this run")
          if w not in text]
# This run has no pairs, no copy path and no rxonly guests: those series are left out, not drawn empty.
errors += [w for w in (">glibc calloc<", ">copy, guest checks every byte<", ">zero copy, rxonly guest<") if w in text]
for e in errors:
    print("chart:", e, file=sys.stderr)
sys.exit(1 if errors else 0)
PY
    # Several runs merged, the chart beside the first; PNG on request.
    NDISSHM_BENCH_PLOT_FORMAT=png bash "$run" --plot "$tmp/pairs.json" "$tmp/memif.json" >"$tmp/two.out" 2>"$tmp/two.err" ||
        fail "--plot A.json B.json: exit status $?: $(cat "$tmp/two.err")"
    [[ $(head -c 8 "$tmp/pairs.png" | od -An -tx1 | tr -d ' \n') == 89504e470d0a1a0a ]] ||
        fail "--plot with NDISSHM_BENCH_PLOT_FORMAT=png made no PNG beside the first file"
    bash "$run" --plot "$tmp/pairs.json" "$tmp/memif.json" >/dev/null 2>&1 || fail "--plot A.json B.json (SVG) failed"
    for want in "glibc calloc" "DPDK rte_memzone" "memif (DPDK), copy mode"; do
        grep -qF "$want" "$tmp/pairs.svg" || fail "the merged chart lacks '$want'"
    done
    # A whole run of the suite: every series of the three panels.
    cp "$results/2026-12-05-s3-full.json" "$tmp/full.json"
    bash "$run" --plot "$tmp/full.json" >/dev/null 2>&1 || fail "--plot of a whole run failed"
    for want in "zero copy, rxonly guest" "copy, rxonly guest" "zero copy, guest checks every byte" \
        "copy, guest checks every byte" "memif (DPDK), copy mode" "glibc calloc" "DPDK rte_malloc"; do
        grep -qF ">$want<" "$tmp/full.svg" || fail "the chart of a whole run lacks '$want'"
    done
fi

if ((failures > 0)); then
    echo "bench plot test: $failures failure(s)" >&2
    exit 1
fi
echo "bench plot test: all checks passed"

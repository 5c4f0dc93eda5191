#!/usr/bin/env bash
# Builds the benchmarks (Release, -O2) in build-bench/, runs the whole suite
# once into a JSON file, and prints the ratios that matter, computed from that
# one run (the machine is shared and noisy: compare figures of one run only).
# Figures are medians of the run's repetitions; errors (a failed allocation, a
# verifier report) are listed first.
#
#   bench/run.sh                         build, run, summarize
#   bench/run.sh --benchmark_filter=pair  extra flags go to ndisshm_bench
#   bench/run.sh --summarize FILE.json   only summarize an earlier run
#   bench/run.sh --plot [FLAGS]          build, run, summarize, and chart the run: FILE.svg beside FILE.json
#   bench/run.sh --summarize FILE.json --plot
#                                        summarize an earlier run and chart it
#   bench/run.sh --plot A.json [B.json...]
#                                        only chart earlier runs, merged (a later file's figure wins):
#                                        A.svg beside A.json
#
# The chart (gnuplot, Debian: gnuplot-nox; GNUPLOT=path picks another) has the side-by-side figures:
# packets/s and Gbit/s against packet size for zero copy and copy receive into a guest (rxonly and every-byte
# guests, host and guest on cores of their own) and DPDK's memif,
# and allocate+free pairs against block size for ndisshm, malloc, calloc, rte_malloc and rte_memzone. Without
# gnuplot, --plot says so and exits 1 (before running anything when it would run the suite).
#
# Environment: NDISSHM_BENCH_OUT=path.json (default build-bench/ndisshm_bench.json),
#              NDISSHM_BENCH_PLOT_FORMAT=svg (default) or png,
#              NDISSHM_BENCH_JOBS (default 2: never more on this machine).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build="$root/build-bench"
out="${NDISSHM_BENCH_OUT:-$build/ndisshm_bench.json}"

summarize() {
    python3 - "$1" <<'PY'
import json, statistics, sys
from collections import defaultdict

data = json.load(open(sys.argv[1]))
scale = {"ns": 1.0, "us": 1e3, "ms": 1e6, "s": 1e9}
runs = defaultdict(list)     # run_name -> ns of each repetition
medians = {}                 # run_name -> ns of Google Benchmark's own median aggregate
counter_runs = defaultdict(list)  # run_name -> the entries of each repetition (for user counters)
counter_medians = {}         # run_name -> the median aggregate entry
cvs = {}                     # run_name -> coefficient of variation over the repetitions
errors, skipped = {}, {}     # run_name -> message (once, however many repetitions failed)
for b in data["benchmarks"]:
    name = b.get("run_name", b["name"])
    if b.get("error_occurred"):
        msg = b.get("error_message", "")
        # "skipped: ..." is a benchmark that cannot run on this machine (no huge pages, no DPDK EAL), not a failure.
        (skipped if msg.startswith("skipped:") else errors)[name] = msg
        continue
    t = b["real_time"] * scale[b.get("time_unit", "ns")]
    if b.get("run_type", "iteration") == "iteration":
        runs[name].append(t)
        counter_runs[name].append(b)
    elif b.get("aggregate_name") == "median":
        medians[name] = t
        counter_medians[name] = b
    elif b.get("aggregate_name") == "cv":
        cvs[name] = b["real_time"]  # a fraction: stddev / mean over the repetitions
ns = {name: statistics.median(v) for name, v in runs.items()}
ns.update(medians)  # the median over repetitions wherever there were several

def counter(name, key):
    """A user counter of a benchmark: its median aggregate, else the median of its repetitions."""
    if name in counter_medians and key in counter_medians[name]:
        return counter_medians[name][key]
    vals = [b[key] for b in counter_runs.get(name, []) if key in b]
    return statistics.median(vals) if vals else None

def get(kind, bytes_=None, outstanding=None, threads=1):
    name = f"{kind}"
    if bytes_ is not None:
        name += f"/bytes:{bytes_}/outstanding:{outstanding}"
    return ns.get(f"{name}/real_time/threads:{threads}")

def fmt(v):
    if v is None:
        return "n/a"
    return f"{v:,.0f}" if v >= 100 else f"{v:.1f}"

def ratio(a, b):
    return "n/a" if a is None or b is None or b == 0 else f"{a / b:.2f}x"

ctx = data.get("context", {})
print(f'# {ctx.get("date", "")} on {ctx.get("host_name", "")}: {ctx.get("num_cpus", "?")} CPUs, '
      f'{ctx.get("cpu_model", "?")}, build: {ctx.get("ndisshm_build", "?")}')
print(f'# DPDK: {ctx.get("dpdk", "?")}; THP: {ctx.get("transparent_hugepage", "?")}; '
      f'shmem THP: {ctx.get("transparent_hugepage_shmem", "?")}; HugePages_Free: {ctx.get("hugepages_free", "?")}')
if errors:
    print("\nERRORS:\n  " + "\n  ".join(f"{k}: {v}" for k, v in errors.items()))
if skipped:
    print("\nSkipped (cannot run here):\n  " + "\n  ".join(f"{k}: {v}" for k, v in skipped.items()))

sizes = [(4096, "4 KiB"), (65536, "64 KiB"), (2097152, "2 MiB")]
print("\n## Allocate+free pairs, ns per pair (real time; with 2 threads: wall time / pairs of both threads)\n")
print("| block | outstanding | threads | ndisshm | malloc | calloc | mmap | ndisshm/malloc | ndisshm/calloc | ndisshm/mmap |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for b, label in sizes:
    for o in (0, 1000):
        for t in (1, 2):
            n, m, c, mm = (get(k, b, o, t) for k in ("pair/ndisshm", "pair/malloc", "pair/calloc", "pair/mmap"))
            print(f"| {label} | {o} | {t} | {fmt(n)} | {fmt(m)} | {fmt(c)} | {fmt(mm)} | "
                  f"{ratio(n, m)} | {ratio(n, c)} | {ratio(n, mm)} |")

# Control: calloc shares nothing between threads, so with two free cores it
# runs close to twice as fast on two threads (at 4 KiB and 64 KiB; glibc's
# 2 MiB path changes with its dynamic mmap threshold and is no control). If it did not, another tenant
# held a core and this run's 2-thread figures say nothing about ndisshm.
controls = [ratio_v for ratio_v in (
    (get("pair/calloc", b, 0, 1) or 0) / (get("pair/calloc", b, 0, 2) or float("inf")) for b in (4096, 65536))]
print(f"\nControl: calloc 2-thread speed-up {', '.join(f'{c:.2f}x' for c in controls)} (4 KiB, 64 KiB).")
if min(controls, default=0) < 1.6:
    print("WARNING: below 1.6x: the second core was not free during (part of) this run; "
          "do not read the 2-thread figures as ndisshm's.")
print("\n## Two threads: what sharing costs (ns per pair, 0 outstanding; speed-up = 1-thread time / 2-thread time)\n")
print("| block | 1 thread | 2 thr, one adapter | 2 thr, adapter each | 2 thr, runtime each | speed-up one adapter | speed-up runtime each | calloc speed-up |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
for b, label in sizes:
    one = get("pair/ndisshm", b, 0, 1)
    sa = get("pair/ndisshm", b, 0, 2)
    ap = get("pair/ndisshm_adapter_per_thread", b, 0, 2)
    rp = get("pair/ndisshm_runtime_per_thread", b, 0, 2)
    c1, c2 = get("pair/calloc", b, 0, 1), get("pair/calloc", b, 0, 2)
    print(f"| {label} | {fmt(one)} | {fmt(sa)} | {fmt(ap)} | {fmt(rp)} | {ratio(one, sa)} | {ratio(one, rp)} | {ratio(c1, c2)} |")

print("\n## Routing (4 KiB, do-nothing provider), ns per pair\n")
print("| variant | 1 thread | 2 threads |")
print("|---|---:|---:|")
for k in ("routing/direct", "routing/ndis", "routing/ndis_verifier_off", "routing/ndis_long_binding_name"):
    print(f"| {k} | {fmt(get(k))} | {fmt(get(k, threads=2))} |")

d, r, off, longn = (get(k) for k in ("routing/direct", "routing/ndis", "routing/ndis_verifier_off",
                                      "routing/ndis_long_binding_name"))
any0, node0 = get("pair/ndisshm", 4096, 0, 1), get("pair/ndisshm_node0", 4096, 0, 1)
print("\n## Ratios (same run)\n")
if None not in (d, r):
    print(f"- routing overhead, 1 thread: {r - d:.1f} ns per pair (NDIS {fmt(r)} ns vs direct {fmt(d)} ns, {r / d:.0f}x)")
if None not in (r, off):
    print(f"- verifier on/off (routing): {r / off:.3f} ({r - off:+.1f} ns per pair)")
if None not in (r, longn):
    print(f"- binding name of 24 bytes vs 4: {longn - r:+.1f} ns per pair")
if None not in (any0, node0):
    print(f"- PreferredNode 0 vs MM_ANY_NODE_OK (4 KiB pair): {node0 / any0:.1f}x ({node0 - any0:+,.0f} ns per pair)")
for b, label in sizes:
    n, m, c = get("pair/ndisshm", b, 0, 1), get("pair/malloc", b, 0, 1), get("pair/calloc", b, 0, 1)
    if None not in (n, m, c):
        print(f"- {label} pair, 1 thread, 0 outstanding: ndisshm/malloc {n / m:.2f}x, ndisshm/calloc {n / c:.2f}x")

# ---- DPDK 22.11 side by side (dpdk_bench.cpp) ----
have_dpdk = any(k.startswith("pair/rte_") for k in ns)
print("\n## DPDK 22.11 side by side, ns per pair (EAL --no-huge --no-pci -m 1024; speed-up = DPDK time / ndisshm time)\n")
if not have_dpdk:
    print(f'DPDK figures not in this run ({ctx.get("dpdk", "dpdk_bench.cpp not built")}).')
else:
    print("| block | outstanding | threads | ndisshm | rte_memzone | rte_malloc | calloc | speed-up vs memzone | speed-up vs rte_malloc |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for b, label in sizes:
        for o in ((0, 1000) if b < 2097152 else (0,)):
            for t in (1, 2):
                n, z, r, c = (get(k, b, o, t) for k in ("pair/ndisshm", "pair/rte_memzone", "pair/rte_malloc", "pair/calloc"))
                print(f"| {label} | {o} | {t} | {fmt(n)} | {fmt(z)} | {fmt(r)} | {fmt(c)} | {ratio(z, n)} | {ratio(r, n)} |")
    z0, z1 = get("pair/rte_memzone", 4096, 0, 1), get("pair/rte_memzone", 4096, 1000, 1)
    if None not in (z0, z1):
        print(f"\nrte_memzone, 4 KiB, 0 vs 1000 outstanding: {fmt(z0)} vs {fmt(z1)} ns ({z1 / z0:.1f}x: the linear scan over every zone)")

# ---- 0, 1000 and 1,000,000 outstanding (alloc_free_bench.cpp) ----
print("\n## Blocks outstanding, 4 KiB pairs, ns per pair\n")
print("| threads | 0 | 1000 | 1,000,000 | 1M / 0 |")
print("|---:|---:|---:|---:|---:|")
for t in (1, 2):
    a, k, m = (get("pair/ndisshm", 4096, o, t) for o in (0, 1000, 1000000))
    print(f"| {t} | {fmt(a)} | {fmt(k)} | {fmt(m)} | {ratio(m, a)} |")

# ---- First touch (first_touch_bench.cpp) ----
print("\n## First touch: ns to make one never-touched page present (one byte written per 4 KiB)\n")
print("| mapping | page | ns per page | ns per 4 KiB | GB/s | huge_backed | cv |")
print("|---|---:|---:|---:|---:|---:|---:|")
ft = {}
for kind in ("anon", "memfd", "anon_thp", "memfd_thp", "memfd_hugetlb"):
    for b, label in ((4096, "4 KiB"), (2097152, "2 MiB")):
        name = f"first_touch/{kind}/bytes:{b}/real_time"
        if name in skipped:
            print(f"| {kind} | {label} | skipped | | | | |")
            continue
        v = ns.get(name)
        if v is None:
            continue
        ft[(kind, b)] = v
        hb = counter(name, "huge_backed")
        cv = cvs.get(name)
        print(f"| {kind} | {label} | {fmt(v)} | {fmt(v / (b / 4096))} | {b / v:.2f} | {'n/a' if hb is None else f'{hb:.2f}'} | "
              f"{'n/a' if cv is None else f'{cv:.0%}'} |")
if ("anon", 2097152) in ft and ("anon_thp", 2097152) in ft:
    a4, th = ft[("anon", 2097152)], ft[("anon_thp", 2097152)]
    print(f"\n2 MiB of anonymous memory: 512 pages of 4 KiB {fmt(a4)} ns, one THP {fmt(th)} ns ({a4 / th:.2f}x as fast with THP)")
if ("anon", 4096) in ft and ("memfd", 4096) in ft:
    print(f"memfd vs anonymous, 4 KiB page: {ft[('memfd', 4096)] / ft[('anon', 4096)]:.2f}x the time")

# ---- Fragmentation (fragmentation_bench.cpp) ----
fname = next((k for k in ns if k.startswith("fragmentation/driver_mix")), None)
print("\n## Fragmentation: driver-like mix on the default provider (4 queues x (4 x 1-4 MiB + 256 x 4-64 KiB), random-order churn)\n")
if fname is None:
    print("not in this run" + (f" ({errors.get(fname)})" if fname in errors else ""))
else:
    mib = lambda v: "n/a" if v is None else f"{v / 1048576:.1f} MiB"
    c = {k: counter(fname, k) for k in ("live_peak_bytes", "high_water_bytes", "file_bytes", "largest_free_bytes",
                                       "in_use_bytes", "live_end_bytes", "frag_high_water", "frag_file", "cache_hit_rate")}
    print(f"- {fmt(ns[fname])} ns per replacement (one free + one allocation and its touch)")
    holes = None if None in (c["high_water_bytes"], c["in_use_bytes"]) else c["high_water_bytes"] - c["in_use_bytes"]
    print(f"- live peak {mib(c['live_peak_bytes'])}; arena high water {mib(c['high_water_bytes'])}; "
          f"memfd {mib(c['file_bytes'])}; free below the high water at the end {mib(holes)} "
          f"(holes and per-CPU caches); largest free range {mib(c['largest_free_bytes'])}"
          + (" (0: not reported by this tree)" if not c["largest_free_bytes"] else
             " (it counts the arena's untouched address space above the high water)"))
    print(f"- in use at the end: {mib(c['in_use_bytes'])} by the provider's stats, {mib(c['live_end_bytes'])} by the benchmark's books")
    if c["frag_high_water"] is not None:
        print(f"- fragmentation: high water / live peak {c['frag_high_water']:.2f}, memfd / live peak {c['frag_file']:.2f}"
              f" (1.00 = no space lost); per-CPU cache hit rate {c['cache_hit_rate']:.2f}")

# ---- Targets of issue 3, computed from this run ----
print("\n## Targets (issue 3), this run\n")
def verdict(ok):
    return "MET" if ok else "NOT MET"
def target(label, value, goal, ok, detail):
    if value is None:
        print(f"- {label}: NOT MEASURED ({detail})")
    else:
        print(f"- {label}: {value:.2f}x, target {goal}: {verdict(ok(value))} ({detail})")
for t in (1, 2):
    n = get("pair/ndisshm", 65536, 1000, t)
    z = get("pair/rte_memzone", 65536, 1000, t)
    r = get("pair/rte_malloc", 65536, 1000, t)
    target(f"{t} thread(s): ndisshm vs rte_memzone pair, 64 KiB, 1000 outstanding, speed-up",
           None if None in (n, z) else z / n, ">= 10x", lambda v: v >= 10,
           f"ndisshm {fmt(n)} ns, rte_memzone {fmt(z)} ns" if None not in (n, z) else "no DPDK figure")
    target(f"{t} thread(s): ndisshm vs rte_malloc pair, 64 KiB, 1000 outstanding, speed-up",
           None if None in (n, r) else r / n, ">= 3x", lambda v: v >= 3,
           f"ndisshm {fmt(n)} ns, rte_malloc {fmt(r)} ns" if None not in (n, r) else "no DPDK figure")
    a, m = get("pair/ndisshm", 4096, 0, t), get("pair/ndisshm", 4096, 1000000, t)
    target(f"{t} thread(s): slowdown 0 -> 1,000,000 outstanding, 4 KiB pair",
           None if None in (a, m) else m / a, "<= 2x", lambda v: v <= 2,
           f"{fmt(a)} vs {fmt(m)} ns" if None not in (a, m) else "no 1M figure")
    for o in (0, 1000):
        n64, g = get("pair/ndisshm", 65536, o, t), get("pair/malloc", 65536, o, t)
        target(f"{t} thread(s): ndisshm / glibc malloc pair, 64 KiB, {o} outstanding",
               None if None in (n64, g) else n64 / g, "<= 2x", lambda v: v <= 2,
               f"ndisshm {fmt(n64)} ns, malloc {fmt(g)} ns" if None not in (n64, g) else "missing")
print("\n(2-thread verdicts mean something only when the calloc control above is near 2.0x.)")
# The floor under both targets that compare a zeroing pair with one that does not zero (or zeroes as we do).
zero64 = ns.get("zero/memset/bytes:65536/real_time")
r1, m1 = get("pair/rte_malloc", 65536, 1000, 1), get("pair/malloc", 65536, 0, 1)
if zero64 is not None:
    print(f"\nFloor: a memset of a warm 64 KiB block alone costs {fmt(zero64)} ns; an ndisshm pair zeroes its block "
          f"only when it changes hands (pair/ndisshm_cross_owner, issue 15), not in pair/ndisshm (one adapter).")
    if r1 is not None:
        print(f"- 3x rte_malloc (1 thread, 1000 outstanding) needs a pair of {fmt(r1 / 3)} ns: "
              f"{'below' if r1 / 3 < zero64 else 'above'} the floor")
    if m1 is not None:
        print(f"- within 2x of malloc (1 thread, 0 outstanding) needs a pair of {fmt(2 * m1)} ns: "
              f"{'below' if 2 * m1 < zero64 else 'above'} the floor")

# ---- Owners, zeroing ahead, huge pages (issue 15) ----
print("\n## Targets (issue 15), this run\n")
print(f'Pages: NDISSHM_PAGES={ctx.get("NDISSHM_PAGES", "?")}, huge pages free at the start: '
      f'{ctx.get("hugepages_free", "?")}; NDISSHM_ZERO_AHEAD={ctx.get("NDISSHM_ZERO_AHEAD", "?")}')
same = get("pair/ndisshm", 65536, 1000, 1)
r1, g1 = get("pair/rte_malloc", 65536, 1000, 1), get("pair/malloc", 65536, 1000, 1)
target("same owner: rte_malloc / ndisshm pair, 64 KiB, 1000 outstanding, 1 thread",
       None if None in (same, r1) else r1 / same, ">= 3x", lambda v: v >= 3,
       f"ndisshm {fmt(same)} ns, rte_malloc {fmt(r1)} ns" if None not in (same, r1) else "no DPDK figure")
target("same owner: ndisshm / glibc malloc pair, 64 KiB, 1000 outstanding, 1 thread",
       None if None in (same, g1) else same / g1, "<= 3x", lambda v: v <= 3,
       f"ndisshm {fmt(same)} ns, malloc {fmt(g1)} ns" if None not in (same, g1) else "missing")
cross_name = "pair/ndisshm_cross_owner/bytes:65536/outstanding:1000/real_time/threads:1"
cross, c1 = ns.get(cross_name), get("pair/calloc", 65536, 1000, 1)
if cross_name in errors:
    print(f"- cross owner: ERROR {errors[cross_name]}")
# The verdicts come from the paired benchmark: its three chunks run within a millisecond, so a machine
# that changes speed for seconds at a time (as the shared VMs do) changes all three alike. The ratios of
# the separate benchmarks, measured seconds apart, follow for reference.
paired = "pair/ndisshm_cross_owner_paired/bytes:65536/outstanding:1000/real_time"
if paired in errors:
    print(f"- cross owner, paired: ERROR {errors[paired]}")
pv_m, pv_c = counter(paired, "vs_memset"), counter(paired, "vs_calloc")
p_n, p_m, p_c = (counter(paired, k) for k in ("ndisshm_ns", "memset_ns", "calloc_ns"))
target("cross owner (every block changes hands): ndisshm pair / memset floor, 64 KiB, 1000 outstanding, paired",
       pv_m, "<= 1.15x", lambda v: v <= 1.15,
       f"chunks of ndisshm {fmt(p_n)} ns, memset {fmt(p_m)} ns" if pv_m is not None else "no paired figure")
target("cross owner: ndisshm / calloc pair, 64 KiB, 1000 outstanding, paired",
       pv_c, "<= 1x", lambda v: v <= 1,
       f"chunks of ndisshm {fmt(p_n)} ns, calloc {fmt(p_c)} ns" if pv_c is not None else "no paired figure")
if None not in (cross, zero64, c1):
    print(f"- (unpaired, for reference: ndisshm {fmt(cross)} ns / memset {fmt(zero64)} ns = {cross / zero64:.2f}x, "
          f"/ calloc {fmt(c1)} ns = {cross / c1:.2f}x)")
for b, label in ((4096, "4 KiB"), (65536, "64 KiB")):
    for k, what in (("pair/ndisshm_cross_owner", "zeroer off"), ("pair/ndisshm_cross_owner_zero_ahead", "zeroer on")):
        name = f"{k}/bytes:{b}/outstanding:1000/real_time/threads:1"
        if name in ns:
            pz, zc, reuse = (counter(name, c) for c in ("pre_zeroed", "zeroed_in_call", "owner_reuse"))
            print(f"- cross owner, {label}, {what}: {fmt(ns[name])} ns per pair; served pre-zeroed "
                  f"{'n/a' if pz is None else f'{pz:.1%}'}, cleared in the call {'n/a' if zc is None else f'{zc:.1%}'}, "
                  f"own block back {'n/a' if reuse is None else f'{reuse:.1%}'}")
for t in (1, 2):
    a, m = get("pair/ndisshm", 4096, 0, t), get("pair/ndisshm", 4096, 1000000, t)
    target(f"{t} thread(s): flat 0 -> 1,000,000 outstanding, 4 KiB pair",
           None if None in (a, m) else m / a, "<= 1.3x", lambda v: v <= 1.3,
           f"{fmt(a)} vs {fmt(m)} ns" if None not in (a, m) else "no 1M figure")
one4, two4 = get("pair/ndisshm", 4096, 0, 1), get("pair/ndisshm", 4096, 0, 2)
if None not in (one4, two4):
    print(f"- two threads on one adapter, 4 KiB, 0 outstanding: {one4 / two4:.2f}x the pairs of one thread "
          f"(1.64x before issue 15; read it against the calloc control above)")

# ---- Zero-copy receive into a guest process vs. copy (zero_copy_bench.cpp, issue 4) ----
print("\n## Zero-copy receive into a guest process vs. copy receive (issue 4)\n")
rx = lambda path, b: f"guest_rx/{path}/bytes:{b}/real_time"
if not any(k.startswith("guest_rx/") for k in list(ns) + list(errors) + list(skipped)):
    print("not in this run")
else:
    print("Packets the guest read in place per second (headers included in Gbit/s). CPU: ns per packet of the NIC's "
          "thread + the hub's thread + the guest process; with fewer free cores than those three, throughput "
          "follows their sum.\n")
    print("| packet | zero-copy Mpps | zero-copy Gbit/s | copy Mpps | copy Gbit/s | zero-copy / copy | "
          "CPU zero-copy (NIC+hub+guest) | CPU copy (NIC+hub+guest) | NIC thread copy / zero-copy |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    def cpu(name):
        parts = [counter(name, k) for k in ("host_cpu_ns", "hub_cpu_ns", "guest_cpu_ns")]
        return None if None in parts else parts
    def cpu_text(parts):
        return "n/a" if parts is None else f"{sum(parts):,.0f} ({' + '.join(f'{p:,.0f}' for p in parts)})"
    for b in (64, 1500, 9000):
        z, c = rx("zero_copy", b), rx("copy", b)
        zp, cp, zg, cg = counter(z, "packets_per_s"), counter(c, "packets_per_s"), counter(z, "gbit_per_s"), counter(c, "gbit_per_s")
        zc, cc = cpu(z), cpu(c)
        mp = lambda v: "n/a" if v is None else f"{v / 1e6:.3f}"
        gb = lambda v: "n/a" if v is None else f"{v:.2f}"
        print(f"| {b} B | {mp(zp)} | {gb(zg)} | {mp(cp)} | {gb(cg)} | {ratio(zg, cg)} | {cpu_text(zc)} | {cpu_text(cc)} | "
              f"{ratio(cc[0] if cc else None, zc[0] if zc else None)} |")
    own = lambda path, b: f"guest_rx_own_cores/{path}/bytes:{b}/real_time"
    if any(k.startswith("guest_rx_own_cores/") for k in ns):
        print("\nThe same with the host and the guest on cores of their own (every thread of the benchmark's "
              "process on one CPU, the guest on another). Busy: the share of its CPU each side used; the side "
              "near 1.0 sets the pace.\n")
        print("| packet | zero-copy Mpps | zero-copy Gbit/s | copy Mpps | copy Gbit/s | zero-copy / copy | "
              "busy zero-copy (host, guest) | busy copy (host, guest) | host CPU ns copy / zero-copy |")
        print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for b in (64, 1500, 9000):
            z, c = own("zero_copy", b), own("copy", b)
            zp, cp, zg, cg = counter(z, "packets_per_s"), counter(c, "packets_per_s"), counter(z, "gbit_per_s"), counter(c, "gbit_per_s")
            busy = lambda n: "n/a" if None in (counter(n, "host_busy"), counter(n, "guest_busy")) else \
                f"{counter(n, 'host_busy'):.2f}, {counter(n, 'guest_busy'):.2f}"
            host = lambda n: None if None in (counter(n, "host_cpu_ns"), counter(n, "hub_cpu_ns")) else \
                counter(n, "host_cpu_ns") + counter(n, "hub_cpu_ns")
            mp = lambda v: "n/a" if v is None else f"{v / 1e6:.3f}"
            gb = lambda v: "n/a" if v is None else f"{v:.2f}"
            print(f"| {b} B | {mp(zp)} | {gb(zg)} | {mp(cp)} | {gb(cg)} | {ratio(zg, cg)} | {busy(z)} | {busy(c)} | "
                  f"{ratio(host(c), host(z))} |")
    for n in sorted(k for k in skipped if k.startswith("guest_rx_own_cores")):
        print(f"\n{n}: {skipped[n]}")
    alone = lambda path, b: counter(f"guest_rx_nic_alone/{path}/bytes:{b}/real_time", "host_cpu_ns")
    print("\nThe NIC's thread alone (the guest stopped, so nothing gives slots back meanwhile: no lock is "
          "contended), CPU ns per packet:\n")
    print("| packet | zero-copy | copy | copy / zero-copy |")
    print("|---:|---:|---:|---:|")
    for b in (64, 1500, 9000):
        za, ca = alone("zero_copy", b), alone("copy", b)
        print(f"| {b} B | {fmt(za)} | {fmt(ca)} | {ratio(ca, za)} |")
    for n in sorted(k for k in errors if k.startswith("guest_rx")):
        print(f"\nERROR {n}: {errors[n]}")
    print("\nmemcpy in the same run (half the working set into the other half):\n")
    for k, label in (("in_l1", "in L1"), ("in_l2", "in L2"), ("beyond_llc", "beyond the LLC")):
        name = f"memcpy/{k}/real_time"
        g, ws = counter(name, "gbit_per_s"), counter(name, "working_set_bytes")
        print(f"- {label}: " + ("n/a" if g is None else f"{g:,.1f} Gbit/s ({g / 8:.1f} GB/s), working set {ws / 1048576:,.2f} MiB"))
    z9, dram = counter(rx("zero_copy", 9000), "gbit_per_s"), counter("memcpy/beyond_llc/real_time", "gbit_per_s")
    if None not in (z9, dram):
        print(f"- zero-copy at 9000 B moves {z9:.1f} Gbit/s, {z9 / dram:.0%} of memcpy beyond the LLC")
    print("\n## Targets (issue 4), this run\n")
    z, c = counter(rx("zero_copy", 1500), "gbit_per_s"), counter(rx("copy", 1500), "gbit_per_s")
    target("zero-copy / copy receive into a guest, 1500 B, Gbit/s, three threads sharing the cores",
           None if None in (z, c) or c == 0 else z / c,
           ">= 1.8x", lambda v: v >= 1.8,
           f"zero-copy {z:.2f} Gbit/s, copy {c:.2f} Gbit/s" if None not in (z, c) else "no guest_rx figure")
    zo, co = counter(own("zero_copy", 1500), "gbit_per_s"), counter(own("copy", 1500), "gbit_per_s")
    target("zero-copy / copy receive into a guest, 1500 B, Gbit/s, host and guest on cores of their own",
           None if None in (zo, co) or co == 0 else zo / co,
           ">= 1.8x", lambda v: v >= 1.8,
           f"zero-copy {zo:.2f} Gbit/s, copy {co:.2f} Gbit/s" if None not in (zo, co) else "no guest_rx_own_cores figure")
    # Like the calloc control above: with other tenants on the cores, the three
    # busy threads of this benchmark get the CPU by luck, and the verdict can
    # flip from one run to the next. The spread of the repetitions says so.
    gcv = {b.get("run_name"): b.get("gbit_per_s") for b in data["benchmarks"] if b.get("aggregate_name") == "cv"}
    for label, name in (("shared cores", rx), ("own cores", own)):
        spread = [gcv.get(name(p, 1500)) for p in ("zero_copy", "copy")]
        if None in spread:
            continue
        print(f"  spread over the repetitions, {label} (cv of Gbit/s): zero-copy {spread[0]:.0%}, copy {spread[1]:.0%}")
        if max(spread) > 0.10:
            print("  WARNING: above 10%: other load shared the cores during this run; this verdict is not a "
                  "measurement of ndisshm (see bench/README.md)")

# ---- DPDK's memif PMD against ndisshm's zero-copy receive (memif_bench.cpp) ----
print("\n## memif (DPDK 22.11, copy mode) side by side with zero-copy receive into a guest\n")
mem = lambda b: f"memif/copy/bytes:{b}/real_time"
if not any(k.startswith("memif/") for k in list(ns) + list(errors) + list(skipped)):
    print(f'not in this run ({ctx.get("dpdk", "memif_bench.cpp not built")})')
else:
    print("memif: a sender thread and a receiver thread on CPUs of their own, polling; it copies every packet twice "
          "(into the shared ring on tx, into an mbuf on rx), its receiver reads 64 bytes of each. ndisshm zero copy: "
          "the NIC writes each packet once, into the guest's memory, and the guest reads every byte. CPU: ns per "
          "packet, sender + receiver (memif) or NIC thread + hub thread + guest (ndisshm).\n")
    print("| packet | memif Mpps | memif Gbit/s | memif CPU (tx + rx) | zero-copy own cores Mpps | zero-copy / memif "
          "| zero-copy shared Mpps | zero-copy shared / memif |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    mp = lambda v: "n/a" if v is None else f"{v / 1e6:.3f}"
    for b in (64, 1500, 9000):
        m = mem(b)
        mpps, mg = counter(m, "packets_per_s"), counter(m, "gbit_per_s")
        mt, mr = counter(m, "host_cpu_ns"), counter(m, "guest_cpu_ns")
        mc = "n/a" if None in (mt, mr) else f"{mt + mr:,.0f} ({mt:,.0f} + {mr:,.0f})"
        zo = counter(f"guest_rx_own_cores/zero_copy/bytes:{b}/real_time", "packets_per_s")
        zs = counter(f"guest_rx/zero_copy/bytes:{b}/real_time", "packets_per_s")
        print(f"| {b} B | {mp(mpps)} | {'n/a' if mg is None else f'{mg:.2f}'} | {mc} | {mp(zo)} | {ratio(zo, mpps)} | "
              f"{mp(zs)} | {ratio(zs, mpps)} |")
    for n in sorted(k for k in list(errors) + list(skipped) if k.startswith("memif/")):
        print(f"\n{n}: {errors.get(n) or skipped.get(n)}")
    mcv = {b.get("run_name"): b.get("packets_per_s") for b in data["benchmarks"] if b.get("aggregate_name") == "cv"}
    spread = [mcv.get(mem(b)) for b in (64, 1500, 9000)]
    if None not in spread:
        print(f"\nspread over the repetitions (cv of memif packets/s): {', '.join(f'{v:.0%}' for v in spread)} "
              "(64, 1500, 9000 B)")
        if max(spread) > 0.10:
            print("WARNING: above 10%: other load shared the cores; read the ratios as a range, not a figure")
    # The rings issue: guests that read what a switch reads (rxonly), beside memif's rxonly receiver.
    ro = lambda p, b: f"guest_rx_own_cores/{p}_rxonly/bytes:{b}/real_time"
    print("\nndisshm with an rxonly guest (descriptors and the first 64 bytes, bursts of 32, busy polling), as memif's "
          "receiver reads; host CPU is the NIC thread's ns per packet:\n")
    print("| packet | zero-copy rxonly Mpps | / memif | host CPU ns | guest CPU ns | copy rxonly Mpps | / memif "
          "| zero-copy / copy Gbit/s |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for b in (64, 1500, 9000):
        mpps = counter(mem(b), "packets_per_s")
        z, c = counter(ro("zero_copy", b), "packets_per_s"), counter(ro("copy", b), "packets_per_s")
        zh, zg = counter(ro("zero_copy", b), "host_cpu_ns"), counter(ro("zero_copy", b), "guest_cpu_ns")
        zgb, cgb = counter(ro("zero_copy", b), "gbit_per_s"), counter(ro("copy", b), "gbit_per_s")
        f0 = lambda v: "n/a" if v is None else f"{v:,.0f}"
        print(f"| {b} B | {mp(z)} | {ratio(z, mpps)} | {f0(zh)} | {f0(zg)} | {mp(c)} | {ratio(c, mpps)} | "
              f"{ratio(zgb, cgb)} |")
    print("\n## Targets (the rings issue), this run\n")
    for b in (64, 1500):
        z, m = counter(ro("zero_copy", b), "packets_per_s"), counter(mem(b), "packets_per_s")
        target(f"zero-copy rxonly / memif, {b} B, packets/s, cores of their own",
               None if None in (z, m) or m == 0 else z / m, ">= 1.0x", lambda v: v >= 1.0,
               f"zero-copy {z / 1e6:.2f} Mpps, memif {m / 1e6:.2f} Mpps" if None not in (z, m) else "not in this run")
    zg, cg = counter(ro("zero_copy", 1500), "gbit_per_s"), counter(ro("copy", 1500), "gbit_per_s")
    target("zero-copy / copy, 1500 B, Gbit/s, rxonly guests on cores of their own",
           None if None in (zg, cg) or cg == 0 else zg / cg, ">= 1.8x", lambda v: v >= 1.8,
           f"zero-copy {zg:.2f} Gbit/s, copy {cg:.2f} Gbit/s" if None not in (zg, cg) else "not in this run")
    # The same two in slices taken in turns on one rig (a few ms each): a machine that changes speed for
    # seconds at a time changes both alike, where the two benchmarks above may fall into different spells.
    pr = lambda b: f"guest_rx_own_cores/zero_vs_copy_paired_rxonly/bytes:{b}/real_time"
    pz, pzm, pcm, prt, pbare = (counter(pr(1500), k) for k in ("zero_over_copy", "zero_mpps", "copy_mpps",
                                                                 "core_round_trip_ns", "bare_ring_ns"))
    rt = lambda v: "" if v is None or v == 0 else f"; the two CPUs' cache-line round trip {v:.0f} ns"
    # bench/bare_ring.hpp: the same work with nothing of ours in it, on the same two CPUs. A zero copy that
    # ran at the bare ring's speed would make the ratio at most copy's ns / the bare ring's ns.
    bare = lambda v: "" if v is None or v == 0 else f"; a bare ring on the same CPUs: {v:.1f} ns a packet"
    best = lambda c, b: "" if None in (c, b) or 0 in (c, b) else \
        f", so a zero copy as fast as it would show {1e3 / c / b:.2f}x at most"
    target("zero-copy / copy, 1500 B, rxonly guests on cores of their own, paired slices",
           pz, ">= 1.8x", lambda v: v >= 1.8,
           f"slices of zero-copy {pzm:.2f} Mpps ({1e3 / pzm:.1f} ns a packet), copy {pcm:.2f} Mpps"
           f"{bare(pbare)}{best(pcm, pbare)}{rt(prt)}" if pz is not None and pzm else "not in this run")
    def measured(label, value, shown, goal, ok, detail=""):
        if value is None:
            print(f"- {label}: NOT MEASURED (not in this run)")
        else:
            print(f"- {label}: {shown}, target {goal}: {verdict(ok(value))}" + (f" ({detail})" if detail else ""))
    h = counter("guest_rx_nic_alone/zero_copy/bytes:64/real_time", "host_cpu_ns")
    measured("host CPU per packet, 64 B, zero copy, the NIC thread alone", h,
             "n/a" if h is None else f"{h:.1f} ns", "<= 30 ns", lambda v: v <= 30)
    hp, hrt, hbare = (counter(pr(64), k) for k in ("zero_host_cpu_ns", "core_round_trip_ns", "bare_ring_ns"))
    measured("host CPU per packet, 64 B, zero copy, the NIC thread with the guest on its own core, paired slices", hp,
             "n/a" if hp is None else f"{hp:.1f} ns", "<= 30 ns", lambda v: v <= 30,
             (bare(hbare) + rt(hrt)).removeprefix("; "))
    if hbare is not None and hbare > 30:
        print("  (a bare ring of the same shape, nothing of ours in it, took over 30 ns a 64 B packet on these two "
              "CPUs: no ring of this shape meets that target here)")
    if any(v is not None and v > 300 for v in (prt, hrt)):
        # The development VM (bench/README.md, fifth session): 58-82 ns apart, the paired 64 B slices cost the
        # NIC thread 22-30 ns a packet; 389-503 ns apart, 42-60.
        print("  (the two CPUs were far apart in this run: a line took over 300 ns to go and come back, "
              "and the rings' figures follow that time; see bench/README.md)")
    for r, limit in ((0, 0.01), (100000, 0.10)):
        n = f"guest_rx_interrupt/packets_per_s:{r}/iterations:10/real_time"
        hs, gs = counter(n, "host_cpu_share"), counter(n, "guest_cpu_share")
        worst = None if None in (hs, gs) else max(hs, gs)
        measured(f"interrupt mode, {r:,} packets/s: the busier side's share of a core", worst,
                 "n/a" if worst is None else f"{worst:.2%}", f"< {limit:.0%}", lambda v, limit=limit: v < limit,
                 f"host {hs:.2%}, guest {gs:.2%}" if worst is not None else "")
PY
}

gnuplot=${GNUPLOT:-gnuplot}
format=${NDISSHM_BENCH_PLOT_FORMAT:-svg}
[[ $format == svg || $format == png ]] || { echo "bench/run.sh: NDISSHM_BENCH_PLOT_FORMAT is svg or png, not '$format'" >&2; exit 2; }
have_gnuplot() {
    command -v "$gnuplot" >/dev/null 2>&1 && return 0
    echo "bench/run.sh --plot: gnuplot is not installed ('$gnuplot' not found), so no chart was drawn;" \
        "install it (Debian: apt install gnuplot-nox) or point GNUPLOT= at one" >&2
    return 1
}

# plot OUT.svg|OUT.png FILE.json...: the side-by-side chart of one or more runs.
plot() {
    local svg=$1
    shift
    have_gnuplot || return 1
    local work
    work=$(mktemp -d)
    python3 - "$work" "$svg" "$@" <<'PY' || { rm -rf "$work"; return 1; }
import json, os, statistics, sys
from collections import defaultdict

work, svg, files = sys.argv[1], sys.argv[2], sys.argv[3:]
scale = {"ns": 1.0, "us": 1e3, "ms": 1e6, "s": 1e9}
entries = {}  # run_name -> its median entry (the aggregate, else the median repetition's), later files win
for f in files:
    reps = defaultdict(list)
    medians = {}
    for b in json.load(open(f))["benchmarks"]:
        if b.get("error_occurred"):
            continue
        name = b.get("run_name", b["name"])
        if b.get("run_type", "iteration") == "iteration":
            reps[name].append(b)
        elif b.get("aggregate_name") == "median":
            medians[name] = b
    for name, bs in reps.items():
        bs = sorted(bs, key=lambda b: b["real_time"])
        entries[name] = bs[len(bs) // 2]
    entries.update(medians)

def ns(name):
    b = entries.get(name)
    return None if b is None else b["real_time"] * scale[b.get("time_unit", "ns")]

def counter(name, key):
    b = entries.get(name)
    return None if b is None else b.get(key)

def table(path, xs, series):
    """Writes x and one column per series that has a figure; returns the columns' titles."""
    kept = [(t, f) for t, f in series if any(f(x) is not None for x in xs)]
    with open(os.path.join(work, path), "w") as out:
        out.write("x " + " ".join('"%s"' % t for t, _ in kept) + "\n")
        for x in xs:
            vals = [f(x) for _, f in kept]
            out.write(f"{x} " + " ".join("NaN" if v is None else repr(v) for v in vals) + "\n")
    return [t for t, _ in kept]

rx = lambda kind, b: f"{kind}/bytes:{b}/real_time"
# Host and guest on cores of their own, as memif's two threads run. "rxonly": the guest reads each descriptor
# and the packet's first 64 bytes, as memif's receiver does (the like-for-like figure); "every byte": the guest
# checks the whole packet.
receive = [("zero copy, rxonly guest", "guest_rx_own_cores/zero_copy_rxonly"),
           ("copy, rxonly guest", "guest_rx_own_cores/copy_rxonly"),
           ("zero copy, guest checks every byte", "guest_rx_own_cores/zero_copy"),
           ("copy, guest checks every byte", "guest_rx_own_cores/copy"),
           ("memif (DPDK), copy mode", "memif/copy")]
sizes = (64, 1500, 9000)
mpps = table("mpps.dat", sizes, [(t, lambda b, k=k: None if counter(rx(k, b), "packets_per_s") is None
                                  else counter(rx(k, b), "packets_per_s") / 1e6) for t, k in receive])
gbit = table("gbit.dat", sizes, [(t, lambda b, k=k: counter(rx(k, b), "gbit_per_s")) for t, k in receive])
pair = lambda kind, b: ns(f"{kind}/bytes:{b}/outstanding:0/real_time/threads:1")
allocators = [("ndisshm", "pair/ndisshm"), ("glibc malloc", "pair/malloc"), ("glibc calloc", "pair/calloc"),
              ("DPDK rte_malloc", "pair/rte_malloc"), ("DPDK rte_memzone", "pair/rte_memzone")]
pairs = table("pairs.dat", (4096, 65536, 2097152), [(t, lambda b, k=k: pair(k, b)) for t, k in allocators])

def panel(title, path, columns, xlabel, ylabel, xtics, logy):
    lines = [f'set title "{title}"', f'set xlabel "{xlabel}"', f'set ylabel "{ylabel}"', "set logscale x",
             f"set xtics ({xtics})", "set logscale y" if logy else "unset logscale y", "unset label"]
    if not columns:
        lines += ['set label 1 "not in this run" at graph 0.5, graph 0.5 center', "set yrange [0:1]",
                  "plot [1:10000] 2 notitle", "set autoscale y"]
    else:
        lines.append(f"plot for [i=2:{len(columns) + 1}] '{os.path.join(work, path)}' using 1:i "
                     "with linespoints linewidth 2 pointsize 1 title columnheader(i)")
    return "\n".join(lines)

ctx_files = ", ".join(os.path.basename(f) for f in files)
script = "\n".join([
    (f"set terminal pngcairo size 1500,520 noenhanced font 'sans,10' background '#ffffff'" if svg.endswith(".png") else
     f"set terminal svg size 1500,520 dynamic noenhanced font 'sans,11' background '#ffffff'"),
    f"set output '{svg}'",
    "set datafile missing 'NaN'",
    "set key below",
    "set grid",
    f'set multiplot layout 1,3 title "ndisshm benchmarks ({ctx_files}): medians"',
    panel("Receive into a guest (own cores): packets/s", "mpps.dat", mpps, "packet bytes", "Mpps", '"64" 64, "1500" 1500, "9000" 9000', True),
    panel("Receive into a guest (own cores): Gbit/s", "gbit.dat", gbit, "packet bytes", "Gbit/s", '"64" 64, "1500" 1500, "9000" 9000', True),
    panel("Allocate+free pair, 1 thread, 0 outstanding", "pairs.dat", pairs, "block bytes", "ns per pair (lower is better)",
          '"4 KiB" 4096, "64 KiB" 65536, "2 MiB" 2097152', True),
    "unset multiplot",
])
open(os.path.join(work, "chart.gp"), "w").write(script + "\n")
PY
    "$gnuplot" "$work/chart.gp" || { rm -rf "$work"; echo "bench/run.sh --plot: gnuplot failed" >&2; return 1; }
    rm -rf "$work"
    echo "Chart: $svg"
}

if [[ "${1:-}" == "--summarize" ]]; then
    summarize "${2:?usage: run.sh --summarize FILE.json [--plot]}"
    if [[ "${3:-}" == "--plot" ]]; then
        echo
        plot "${2%.json}.$format" "$2" || exit 1
    fi
    exit 0
fi
plot_after=0
if [[ "${1:-}" == "--plot" ]]; then
    shift
    if [[ "${1:-}" == *.json && -f "${1:-}" ]]; then
        plot "${1%.json}.$format" "$@" || exit 1
        exit 0
    fi
    have_gnuplot || exit 1  # before a minute of benchmarks, not after
    plot_after=1
fi

cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_C_FLAGS_RELEASE="-O2 -DNDEBUG" -DCMAKE_CXX_FLAGS_RELEASE="-O2 -DNDEBUG" \
    -DNDISSHM_BUILD_BENCH=ON -DNDISSHM_BUILD_TESTS=OFF -DNDISSHM_BUILD_TOOLS=OFF >/dev/null
ninja -C "$build" -j"${NDISSHM_BENCH_JOBS:-2}" ndisshm_bench
mkdir -p "$(dirname "$out")"
# Three repetitions of 0.1 s each, interleaved at random so that a burst of
# load from another tenant hits different benchmarks in different repetitions;
# the summary takes the median. About 60 s on 2 cores (the 1M-outstanding
# set-up, DPDK's memzone scan and the fragmentation churn are most of it).
"$build/bench/ndisshm_bench" --benchmark_min_time=0.1 --benchmark_repetitions=3 \
    --benchmark_enable_random_interleaving=true --benchmark_report_aggregates_only=true \
    --benchmark_out="$out" --benchmark_out_format=json "$@"
echo
summarize "$out"
echo
echo "JSON: $out"
if ((plot_after)); then
    plot "${out%.json}.$format" "$out" || exit 1
fi

#!/usr/bin/env bash
# `ndisshm demo`, the live one, in a short form: a host, guest processes,
# checked traffic on both paths. Its JSON summary is held to the contract (no
# drops, no loss, no leak, no verifier finding, the zero-copy/copy ratio
# present), its text form to its shape, and `ndisshm stat` is run against it
# while it runs. Usage: live_demo_test.sh PATH/TO/ndisshm
set -uo pipefail

cli=${1:?usage: live_demo_test.sh PATH/TO/ndisshm}
tmp=$(mktemp -d)
demo_pid=
cleanup() {
    [[ -n $demo_pid ]] && kill -KILL "$demo_pid" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
source "$(dirname "$0")/lib.sh"

# ---- JSON: three guests, two host queues, three packet sizes ---------------
"$cli" demo --duration 1 --json --quiet --guests 3 --queues 5 --packet-size 64,1500,9000 \
    >"$tmp/json.out" 2>"$tmp/json.err"
rc=$?
[[ $rc == 0 ]] || fail "demo --json: exit status $rc; stderr: $(head -c 600 "$tmp/json.err")"
[[ ! -s $tmp/json.err ]] || fail "demo --json --quiet wrote to stderr: $(head -c 400 "$tmp/json.err")"
python3 - "$tmp/json.out" <<'PY' || fail "demo --json: checks failed"
import json, sys
d = json.load(open(sys.argv[1]))
RING_BLOCK_BYTES = 12288  # a guest queue's rings: 512 entries each, 10496 bytes in whole pages
errors = []
def expect(ok, what):
    if not ok:
        errors.append(what)
expect(d["ok"] is True and d["problems"] == [], f"ok {d['ok']}, problems {d['problems']}")
for k in ("drops", "lost", "out_of_order", "corrupt", "outstanding_blocks", "outstanding_bytes", "host_memory_blocks_left"):
    expect(d[k] == 0, f"{k} is {d[k]}")
expect(d["verifier_findings"] == [], f"verifier findings: {d['verifier_findings']}")
c = d["config"]
expect(c["guests"] == 3 and c["queues"] == 5 and c["packet_sizes"] == [64, 1500, 9000], f"config {c}")
expect(c["slot_size"] >= 9000, f"slot size {c['slot_size']} cannot hold 9000 bytes")
for path in ("zero_copy", "copy"):
    p = d["paths"][path]
    expect(p["packets"] > 0 and p["bytes"] > 0 and p["gbps"] > 0 and p["host_cpu_ns_per_packet"] > 0, f"{path}: {p}")
r = d["ratio"]
expect(r["zero_copy_over_copy_gbps"] > 0 and r["copy_over_zero_copy_host_cpu"] > 0, f"ratio {r}")
guests = d["guests"]
expect(len(guests) == 3, f"{len(guests)} guests")
for g in guests:
    where = g["name"]
    expect(g["sent"] > 0 and g["verified"] == g["sent"] and g["packets"] == g["sent"], f"{where}: {g}")
    expect(g["drops"] == 0 and g["lost"] == 0 and g["out_of_order"] == 0 and g["corrupt"] == 0, f"{where}: {g}")
    expect(g["zero_copy_bytes"] + g["copy_bytes"] == g["bytes"], f"{where}: bytes sent {g['zero_copy_bytes']} + {g['copy_bytes']}, received {g['bytes']}")
    expect(g["end"] == "HOST_BYE" and g["exit_status"] == 0, f"{where}: ended {g['end']}, status {g['exit_status']}")
    expect(g["zero_copy_gbps"] > 0 and g["copy_gbps"] > 0, f"{where}: {g}")
queues = d["queues"]
guest_q = [q for q in queues if q["kind"] == "guest"]
host_q = [q for q in queues if q["kind"] == "host"]
expect(len(guest_q) == 3 and len(host_q) == 2, f"queues {[(q['id'], q['kind']) for q in queues]}")
expect({q["path"] for q in guest_q} == {"zero-copy"} and {q["path"] for q in host_q} == {"copy"}, "paths of queues")
# Lookahead split on one queue: the first guest's, read in place across both segments by its guest.
split = [q for q in queues if q["lookahead_split"]]
expect(len(split) == 1 and split[0]["kind"] == "guest" and split[0]["id"] == 1 and split[0]["lookahead_size"] == 128,
       f"lookahead: {split}")
# 512 packet slots (16 blocks of 32): their 128-byte lookaheads fill one more 64 KiB block.
expect(split and split[0]["lookahead_blocks"] == 1 and split[0]["post_lookahead_blocks"] == 16, f"split blocks: {split}")
for q in queues:
    b = q["books"]
    where = f"queue {q['id']}"
    expect(q["drops"] == 0 and q["packets"] > 0, f"{where}: {q}")
    # Just before teardown each queue holds its receive buffers: 16 of 64 KiB, and the split one its
    # lookahead block too; a guest's queue also its rings (RING_BLOCK_BYTES, Usage Other).
    n = 17 if q["lookahead_split"] else 16
    rings = 1 if q["kind"] == "guest" else 0
    expect(b["blocks"] == n + rings and b["bytes"] == n * 65536 + rings * RING_BLOCK_BYTES and
           b["peak_blocks"] == n + rings, f"{where} books {b}")
    expect(b["failures"] == 0 and b["frees"] == 0, f"{where} books {b}")
    if not q["lookahead_split"]:
        expect(q["lookahead_blocks"] == 0 and q["post_lookahead_blocks"] == 0, f"{where}: {q}")
split_guest = [g for g in guests if g["queue"] == 1]
expect(len(split_guest) == 1 and split_guest[0]["verified"] == split_guest[0]["sent"] > 0,
       f"the split queue's guest verified every packet: {split_guest}")
expect(sum(q["packets"] for q in host_q) == d["paths"]["copy"]["packets"], "host queues carry the copy path")
expect(sum(q["packets"] for q in guest_q) == d["paths"]["zero_copy"]["packets"], "guest queues carry zero copy")
h = d["hub"]
expect(h["refused"] == 0 and h["accepted"] == 3 and h["returned"] == h["delivered"], f"hub {h}")
expect(h["copied"] == d["paths"]["copy"]["packets"], f"hub copied {h['copied']}")
for e in errors:
    print(e, file=sys.stderr)
sys.exit(1 if errors else 0)
PY

# ---- text form, and `ndisshm stat` against the demo while it runs ----------
sock="$tmp/run/demo.sock"
"$cli" demo --duration 1.5 --rate 20000 --socket "$sock" >"$tmp/text.out" 2>"$tmp/text.err" &
demo_pid=$!
stat_ok=0
for _ in $(seq 100); do
    if "$cli" stat --socket "$sock" --json >"$tmp/stat.json" 2>"$tmp/stat.err" &&
        python3 -c 'import json,sys; sys.exit(0 if json.load(open(sys.argv[1]))["hub"]["running"] == 2 else 1)' \
            "$tmp/stat.json"; then
        stat_ok=1
        break
    fi
    sleep 0.05
done
[[ $stat_ok == 1 ]] || fail "stat never saw the demo's 2 guests: $(cat "$tmp/stat.err")"
"$cli" stat --socket "$sock" >"$tmp/stat.txt" 2>&1 || fail "stat (text) against the demo: $(cat "$tmp/stat.txt")"
grep -q "guest-hub" "$tmp/stat.txt" || fail "stat text names no guest-hub provider"
wait "$demo_pid"
rc=$?
demo_pid=
[[ $rc == 0 ]] || fail "demo (text): exit status $rc; stderr: $(head -c 600 "$tmp/text.err")"
for want in "zero copy: the NIC writes each packet into the guest's own memory" "zero-copy/copy:" \
    "drops: 0, lost: 0, out of order: 0, corrupt: 0" "teardown: 0 blocks outstanding" "verifier findings: none" \
    "demo: ok" "lookahead split at 128 bytes"; do
    grep -qF -- "$want" "$tmp/text.out" || fail "demo (text): stdout lacks '$want'"
done
grep -qE '^ +1 +guest +zero-copy +guest-[12] +split 128 \(1\+16\) ' "$tmp/text.out" ||
    fail "demo (text): no row for guest queue 1 with lookahead split and its 1+16 blocks"
grep -qF "queue 1: lookahead split at 128 bytes: 1 ReceiveLookahead + 16 ReceivePostLookahead blocks" "$tmp/text.out" ||
    fail "demo (text): the narration does not name the split queue's blocks"
# Not a terminal: progress comes as plain lines, never carriage returns.
! grep -q $'\r' "$tmp/text.out" || fail "demo (text): carriage returns in output that is not a terminal"
[[ ! -e $sock ]] || fail "the demo left its socket file behind"

# ---- --hold: after the traffic the host stays up for stat; the hint runs as printed ----
hsock="$tmp/run/hold.sock"
PATH="$(cd "$(dirname "$cli")" && pwd -P):$PATH" "$cli" demo --guests 1 --queues 2 --duration 0.2 --hold 3 \
    --socket "$hsock" >"$tmp/hold.out" 2>"$tmp/hold.err" &
demo_pid=$!
held=0
for _ in $(seq 200); do
    grep -qF "holding the host for 3 s (Ctrl-C ends it): ndisshm stat --socket $hsock" "$tmp/hold.out" && held=1 && break
    sleep 0.05
done
[[ $held == 1 ]] || fail "demo --hold: no 'holding the host' line: $(cat "$tmp/hold.out" "$tmp/hold.err")"
grep -qF "watch it live: ndisshm stat --socket $hsock --watch 1" "$tmp/hold.out" || fail "demo: the watch hint: $(head -5 "$tmp/hold.out")"
# The phases are over and the guest is still there.
"$cli" stat --socket "$hsock" --json >"$tmp/hold.json" 2>&1 || fail "stat during --hold: $(cat "$tmp/hold.json")"
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); sys.exit(0 if d["hub"]["running"] == 1 and d["hub"]["delivered"] > 0 else 1)' \
    "$tmp/hold.json" || fail "stat during --hold: not one running guest with packets delivered"
kill -INT "$demo_pid"  # Ctrl-C ends the hold: not an interruption of the runs
wait "$demo_pid"
rc=$?
demo_pid=
[[ $rc == 0 ]] || fail "demo --hold ended by SIGINT: exit status $rc: $(cat "$tmp/hold.err")"
"$cli" demo --duration 0.2 >"$tmp/nohold.out" 2>&1 &
demo_pid=$!
for _ in $(seq 100); do grep -q "watch it live" "$tmp/nohold.out" && break; sleep 0.05; done
grep -qF -- "--hold SECONDS keeps the host up after the traffic" "$tmp/nohold.out" || fail "demo without --hold does not mention it"
wait "$demo_pid"
demo_pid=

if ((failures > 0)); then
    echo "cli live demo test: $failures failure(s)" >&2
    exit 1
fi
echo "cli live demo test: all checks passed"

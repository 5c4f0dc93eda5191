#!/usr/bin/env bash
# A host restart loses no guest. Three `ndisshm guest --verify` processes
# under a host's checked traffic; the host is killed with SIGKILL and a new
# one started on the same socket path (taking over the stale socket files),
# then that one is stopped with SIGTERM (BYE) and a third started. Every
# guest must reconnect twice, verify each new stream from its start with
# nothing lost, out of order or corrupt, and end clean; each new host's books
# must show all three guests, and its shutdown nothing outstanding. A second
# host on a live socket is a clear error. Usage: reconnect_test.sh PATH/TO/ndisshm
set -uo pipefail

cli=${1:?usage: reconnect_test.sh PATH/TO/ndisshm}
tmp=$(mktemp -d)
host_pid=
guest_pids=()
cleanup() {
    for p in "${guest_pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
    [[ -n $host_pid ]] && kill -KILL "$host_pid" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
source "$(dirname "$0")/lib.sh"

mkdir "$tmp/run"
sock="$tmp/run/host.sock"

# start_host N: the host of generation N, its output in host-N.*.
start_host() {
    "$cli" host --socket "$sock" --rate 3000 --packet-size 64,1500 >"$tmp/host-$1.out" 2>"$tmp/host-$1.err" &
    host_pid=$!
    wait_for 10 grep -q "listening on $sock" "$tmp/host-$1.out" ||
        fail "host $1 never listened: $(cat "$tmp/host-$1.err")"
}
# all_running N: host N's books show the three guests, each receiving.
all_running() {
    "$cli" stat --socket "$sock" --json >"$tmp/stat-$1.json" 2>/dev/null &&
        python3 - "$tmp/stat-$1.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
names = sorted(g["name"] for g in d["guests"])
guest_queues = [q for q in d["queues"] if q["kind"] == "guest"]
ok = (d["hub"]["running"] == 3 and names == ["vm1", "vm2", "vm3"]
      and len(guest_queues) == 3 and all(q["received"] > 20 for q in guest_queues))
sys.exit(0 if ok else 1)
PY
}

# 20 s: the three hosts need about 5 s on a quiet machine; the rest is slack for a
# loaded CI runner, where each "all running" wait may take several seconds.
start_host 1
for n in 1 2 3; do
    "$cli" guest --socket "$sock" --name "vm$n" --memory 8M --verify --json --reconnect 30 --duration 20 \
        >"$tmp/vm$n.out" 2>"$tmp/vm$n.err" &
    guest_pids+=($!)
done
wait_for 10 all_running 1 || fail "host 1 never ran the three guests: $(cat "$tmp/stat-1.json" 2>/dev/null)"

# ---- SIGKILL: no BYE, stale socket files left behind ------------------------
kill -KILL "$host_pid"
wait "$host_pid" 2>/dev/null
[[ -S $sock ]] || fail "a killed host left no socket file (the takeover below would prove nothing)"
sleep 0.3  # the guests see the loss and start retrying against nobody
start_host 2
wait_for 15 all_running 2 || fail "after SIGKILL the guests did not all come back: $(cat "$tmp/stat-2.json" 2>/dev/null)"

# Two live hosts on one path: the second one refuses to start, and says why.
"$cli" host --socket "$sock" >"$tmp/second.out" 2>"$tmp/second.err"
rc=$?
[[ $rc == 1 ]] || fail "a second host on a live socket: exit status $rc, expected 1"
grep -qF "another host is listening on $sock" "$tmp/second.err" ||
    fail "a second host on a live socket: '$(cat "$tmp/second.err")'"

# ---- SIGTERM: a graceful restart (BYE) ---------------------------------------
kill -TERM "$host_pid"
wait "$host_pid"
rc=$?
[[ $rc == 0 ]] || fail "host 2 after SIGTERM: exit status $rc; $(tail -c 600 "$tmp/host-2.err")"
grep -qF "teardown: 0 blocks outstanding (0 B), 0 in host memory; verifier findings: 0" "$tmp/host-2.out" ||
    fail "host 2 teardown: $(grep teardown "$tmp/host-2.out")"
start_host 3
wait_for 15 all_running 3 || fail "after SIGTERM the guests did not all come back: $(cat "$tmp/stat-3.json" 2>/dev/null)"

# ---- the guests end at --duration (they say BYE) ------------------------------
for i in 0 1 2; do
    wait "${guest_pids[$i]}"
    rc=$?
    [[ $rc == 0 ]] || fail "vm$((i + 1)): exit status $rc; $(cat "$tmp/vm$((i + 1)).err")"
done
guest_pids=()
for n in 1 2 3; do
    grep -qF "reconnected to $sock" "$tmp/vm$n.err" || fail "vm$n reported no reconnection: $(cat "$tmp/vm$n.err")"
    python3 - "$tmp/vm$n.out" <<'PY' || fail "vm$n: summary checks failed"
import json, sys
g = json.load(open(sys.argv[1]))
v = g["verify"]
r = g["reconnections"]
errors = []
def expect(ok, what):
    if not ok:
        errors.append(what)
expect(g["end"] == "LIMIT" and g["exit_status"] == 0, f"end {g['end']}")
expect(g["sessions_lost"] == 2 and g["reconnects"] == 2 and len(r) == 2, f"reconnections {r}")
expect("without BYE" in r[0]["reason"] and "BYE" in r[1]["reason"], f"reasons {[x['reason'] for x in r]}")
expect(all(x.get("back_at_s", -1) > x["lost_at_s"] for x in r), f"times {r}")
expect(v["lost"] == 0 and v["out_of_order"] == 0 and v["corrupt"] == 0, f"verify {v}")
expect(v["verified"] == g["packets"], f"verified {v['verified']} of {g['packets']}")
# Each new host's stream was verified from its start: packets after each reconnection.
expect(r[0]["verified_before"] > 20 and r[1]["verified_before"] > r[0]["verified_before"] + 20
       and v["verified"] > r[1]["verified_before"] + 20, f"verified before each loss {r}, total {v['verified']}")
for e in errors:
    print(e, file=sys.stderr)
sys.exit(1 if errors else 0)
PY
done

# ---- the last host: its books empty after the guests' BYE, a clean end --------
kill -TERM "$host_pid"
wait "$host_pid"
rc=$?
host_pid=
[[ $rc == 0 ]] || fail "host 3 after SIGTERM: exit status $rc; $(tail -c 600 "$tmp/host-3.err")"
grep -qF "teardown: 0 blocks outstanding (0 B), 0 in host memory; verifier findings: 0" "$tmp/host-3.out" ||
    fail "host 3 teardown: $(grep teardown "$tmp/host-3.out")"

if ((failures > 0)); then
    echo "cli reconnect test: $failures failure(s)" >&2
    exit 1
fi
echo "cli reconnect test: all checks passed"

#!/usr/bin/env bash
# `ndisshm host` with a real `ndisshm guest`, and `ndisshm stat` against it:
# the host's books over the control socket must show exactly what one guest
# with one queue of 4 x 64 KiB receive buffers holds; the host's traffic must
# reach the guest intact; SIGTERM must end both cleanly (exit 0, nothing
# outstanding, socket files gone). Usage: host_stat_test.sh PATH/TO/ndisshm
set -uo pipefail

cli=${1:?usage: host_stat_test.sh PATH/TO/ndisshm}
tmp=$(mktemp -d)
host_pid=
guest_pid=
cleanup() {
    [[ -n $guest_pid ]] && kill -KILL "$guest_pid" 2>/dev/null
    [[ -n $host_pid ]] && kill -KILL "$host_pid" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
source "$(dirname "$0")/lib.sh"

mkdir "$tmp/run"  # host --socket makes no directory
sock="$tmp/run/host.sock"
ctl="$tmp/run/host.ctl"

# ---- no host: stat says so ----------------------------------------------------
"$cli" stat --socket "$sock" --timeout 500 >"$tmp/none.out" 2>"$tmp/none.err"
rc=$?
[[ $rc == 1 ]] || fail "stat without a host: exit status $rc, expected 1"
grep -qF "no host serves $ctl" "$tmp/none.err" || fail "stat without a host: '$(cat "$tmp/none.err")'"
PATH="$(cd "$(dirname "$cli")" && pwd -P):$PATH" "$cli" stat --socket "$ctl" --timeout 500 >/dev/null 2>"$tmp/none.err"
grep -qF "is a host running? start one with: ndisshm host --socket $sock" "$tmp/none.err" ||
    fail "stat without a host: no hint to start one: '$(cat "$tmp/none.err")'"

# ---- a host, one guest, traffic ---------------------------------------------
"$cli" host --socket "$sock" --blocks-per-queue 4 --block-size 65536 --rate 2000 --packet-size 64,1500 \
    >"$tmp/host.out" 2>"$tmp/host.err" &
host_pid=$!
wait_for 5 grep -q "listening on $sock" "$tmp/host.out" || fail "host never said it listens: $(cat "$tmp/host.err")"
[[ $(stat -c %a "$ctl" 2>/dev/null) == 600 ]] || fail "control socket is not 0600: $(stat -c %a "$ctl" 2>&1)"

"$cli" guest --socket "$sock" --name vm1 --memory 8M --verify --json --no-reconnect >"$tmp/guest.out" 2>"$tmp/guest.err" &
guest_pid=$!
running_one() {
    "$cli" stat --socket "$sock" --json >"$tmp/stat.json" 2>"$tmp/stat.err" &&
        python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); sys.exit(0 if d["hub"]["running"] == 1 and d["queues"][-1]["received"] > 50 else 1)' "$tmp/stat.json"
}
wait_for 10 running_one || fail "stat never showed one running guest receiving: $(cat "$tmp/stat.err" "$tmp/host.err")"

python3 - "$tmp/stat.json" <<'PY' || fail "stat --json: checks failed"
import json, sys
d = json.load(open(sys.argv[1]))
errors = []
def expect(ok, what):
    if not ok:
        errors.append(what)
expect(d["version"] == 1 and d["running"] is True, f"version {d['version']}, running {d['running']}")
a = d["adapters"]
expect(len(a) == 1 and a[0]["name"] == "nic0" and a[0]["provider"] == "guest-hub", f"adapters {a}")
t = a[0]["total"]
# One guest queue: 4 receive buffers of 64 KiB and its rings (one block of Usage Other, 512 entries:
# 10496 bytes in whole pages), nothing else on the adapter.
RINGS = 12288
expect(t["blocks"] == 5 and t["bytes"] == 4 * 65536 + RINGS and t["peak_blocks"] == 5 and t["allocations"] == 5
       and t["frees"] == 0 and t["failures"] == 0, f"adapter total {t}")
expect(sorted(a[0]["by_usage"]) == ["Other", "Receive"] and a[0]["by_usage"]["Receive"]["blocks"] == 4
       and a[0]["by_usage"]["Other"]["bytes"] == RINGS, f"by usage {a[0]['by_usage']}")
expect(sum(u["blocks"] for u in a[0]["by_node"].values()) in (0, 5), f"by node {a[0]['by_node']}")
p = d["providers"]
expect(len(p) == 1 and p[0]["binding"] == "guest-hub" and p[0]["guests"] == 1 and p[0]["guest_blocks"] == 5
       and p[0]["host_blocks"] == 0, f"providers {p}")
q = d["queues"]
expect([x["id"] for x in q] == [0, 1], f"queue ids {[x['id'] for x in q]}")
g = q[1]
expect(g["kind"] == "guest" and g["guest_id"] == 1 and g["slots"] == 4 * 65536 // 2048, f"guest queue {g}")
expect(g["books"]["blocks"] == 5 and g["books"]["bytes"] == 4 * 65536 + RINGS, f"guest queue books {g['books']}")
expect(q[0]["kind"] == "default" and q[0]["books"]["blocks"] == 0, f"default queue {q[0]}")
gs = d["guests"]
expect(len(gs) == 1 and gs[0]["name"] == "vm1" and gs[0]["queue"] == 1 and gs[0]["memory_bytes"] == 8 << 20,
       f"guests {gs}")
h = d["hub"]
expect(h["accepted"] == 1 and h["refused"] == 0 and h["delivered"] > 0, f"hub {h}")
v = d["verifier"]
expect(v["total"] == 0 and v["by_kind"] == {} and v["recent"] == [], f"verifier {v}")
m = d["memory"]
expect(m["page_bytes"] in (4096, 2097152) and "blocks_in_use" in m, f"memory {m}")
for e in errors:
    print(e, file=sys.stderr)
sys.exit(1 if errors else 0)
PY

# Text form and --watch: two refreshes, then it stops by itself.
"$cli" stat --socket "$ctl" >"$tmp/stat.txt" 2>&1 || fail "stat (text): $(cat "$tmp/stat.txt")"
for want in "adapters" "blocks by usage" "nic0/Receive" "queues (adapter nic0)" "guests" "vm1" "verifier: 0 findings" \
    "its memory" "host memory (NDIS's default provider; guests' memory is theirs, above): "; do
    grep -qF -- "$want" "$tmp/stat.txt" || fail "stat (text) lacks '$want'"
done
"$cli" stat --socket "$sock" --json --watch 0.1 --count 2 >"$tmp/watch.out" 2>&1 || fail "stat --watch: $(cat "$tmp/watch.out")"
[[ $(wc -l <"$tmp/watch.out") == 2 ]] || fail "stat --json --watch --count 2 printed $(wc -l <"$tmp/watch.out") lines"
# Watching the table: rates per second beside the totals from the second refresh on.
"$cli" stat --socket "$sock" --watch 0.3 --count 2 >"$tmp/watch.txt" 2>&1 || fail "stat --watch (text): $(cat "$tmp/watch.txt")"
[[ $(grep -c "^rates: " "$tmp/watch.txt") == 1 ]] || fail "stat --watch --count 2: expected one rates line: $(cat "$tmp/watch.txt")"
grep -qE "^rates: [1-9][0-9.]*k? packets/s delivered, [0-9.]+k?/s dropped, [0-9.]+k?/s given back \(last 0\.[0-9] s\)$" \
    "$tmp/watch.txt" || fail "stat --watch: no rate of the traffic (2000/s): $(grep rates "$tmp/watch.txt")"
grep -qF "received/s" "$tmp/watch.txt" || fail "stat --watch: no received/s column for the queues"
grep -qF "received/s" "$tmp/stat.txt" && fail "stat without --watch shows a rate column"

# ---- SIGTERM: clean shutdown ------------------------------------------------
kill -TERM "$host_pid"
wait "$host_pid"
rc=$?
host_pid=
[[ $rc == 0 ]] || fail "host after SIGTERM: exit status $rc; stderr: $(tail -c 600 "$tmp/host.err")"
grep -qF "host: clean shutdown" "$tmp/host.out" || fail "host did not report a clean shutdown: $(cat "$tmp/host.out")"
grep -qF "teardown: 0 blocks outstanding (0 B), 0 in host memory; verifier findings: 0" "$tmp/host.out" ||
    fail "host teardown line: $(cat "$tmp/host.out")"
wait "$guest_pid"
rc=$?
guest_pid=
[[ $rc == 0 ]] || fail "guest after the host's shutdown: exit status $rc; stderr: $(cat "$tmp/guest.err")"
python3 - "$tmp/guest.out" <<'PY' || fail "guest summary: checks failed"
import json, sys
g = json.load(open(sys.argv[1]))
v = g["verify"]
ok = (g["end"] == "HOST_BYE" and g["packets"] > 50 and v["verified"] == g["packets"] and v["lost"] == 0
      and v["out_of_order"] == 0 and v["corrupt"] == 0 and v["last_seq"] == g["packets"])
if not ok:
    print(f"guest: {g}", file=sys.stderr)
sys.exit(0 if ok else 1)
PY
[[ ! -e $sock && ! -e $ctl ]] || fail "socket files left behind: $(ls "$tmp/run")"

if ((failures > 0)); then
    echo "cli host/stat test: $failures failure(s)" >&2
    exit 1
fi
echo "cli host/stat test: all checks passed"

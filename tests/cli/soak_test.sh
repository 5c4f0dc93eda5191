#!/usr/bin/env bash
# `ndisshm soak`, short: 6 s of two threads allocating, freeing and creating
# and freeing queues while two guest processes connect, receive checked
# packets and are SIGKILLed and replaced. Asserts its JSON: no failure, every
# kind of operation and every invariant check ran, nothing leaked, no verifier
# finding, every session the hub accepted closed, host restarts survived.
# Then the bounds (--ops ends
# a long run early) and bad usage. Usage: soak_test.sh PATH/TO/ndisshm
set -uo pipefail

cli=${1:?usage: soak_test.sh PATH/TO/ndisshm}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
source "$(dirname "$0")/lib.sh"

# ---- the short soak ------------------------------------------------------------
"$cli" soak --seconds 6 --threads 2 --guests 2 --seed 20261125 --json >"$tmp/soak.json" 2>"$tmp/soak.err"
rc=$?
[[ $rc == 0 ]] || fail "soak: exit status $rc; stderr: $(head -c 2000 "$tmp/soak.err")"
# Progress from the start (not a first line after 10 s): a line a second off a terminal.
lines=$(grep -cE "^ndisshm soak: [0-9]+ s of 6 \([0-9]+%\), [0-9.]+[kM]? operations \([0-9.]+[kM]?/s\), [0-9.]+[kM]? checks, 0 failures$" "$tmp/soak.err")
((lines >= 4)) || fail "soak: expected a progress line a second, got $lines: $(head -c 1000 "$tmp/soak.err")"
grep -qE "^ndisshm soak: 1 s of 6 " "$tmp/soak.err" || fail "soak: no progress line after 1 s: $(head -c 1000 "$tmp/soak.err")"
python3 - "$tmp/soak.json" <<'PY' || fail "soak --json: checks failed (above)"
import json, sys
j = json.load(open(sys.argv[1]))
bad = []
def want(cond, what):
    if not cond:
        bad.append(what)
want(j["failures"] == 0, f"failures {j['failures']}: {j['failure_messages']}")
want(j["verifier_findings"] == 0, f"verifier findings {j['verifier_findings']}")
want(j["leaks"]["total"] == 0, f"leaks {j['leaks']}")
for op, n in j["operations"].items():
    want(n > 0, f"no {op} operation ran")
want(j["operations_total"] == sum(j["operations"].values()), "operations_total is not the sum of the kinds")
for check, n in j["invariant_checks"].items():
    want(n > 0, f"invariant check {check} never ran")
# Every block allocated was freed, every queue created was freed (the threads give everything back).
want(j["operations"]["allocate"] == j["operations"]["free"], "allocations != frees")
want(j["operations"]["queue_create"] == j["operations"]["queue_free"], "queue creations != queue frees")
# Every guest the hub accepted is gone, none refused; killed ones were noticed.
hub = j["hub"]
want(hub["accepted"] == hub["closed"], f"hub accepted {hub['accepted']}, closed {hub['closed']}")
want(hub["refused"] == 0, f"hub refused {hub['refused']}")
want(j["invariant_checks"]["guest_gone"] == j["operations"]["guest_kill"], "a killed guest was not seen to go")
# Host restarts: the guests came back and verified the new hosts' streams.
want(j["host_restarts"] == j["operations"]["host_restart"] > 0, f"host restarts {j['host_restarts']}")
want(j["guests_reconnected"] > 0 and j["packets_verified_after_reconnect"] > 0,
     f"reconnected {j['guests_reconnected']}, verified after {j['packets_verified_after_reconnect']}")
want(5.5 <= j["duration_s"] < 30, f"duration {j['duration_s']} s for --seconds 6")
want(j["seed"] == 20261125, "seed not reported")
for b in bad:
    print("soak:", b, file=sys.stderr)
sys.exit(1 if bad else 0)
PY

# ---- text form ---------------------------------------------------------------------
"$cli" soak --seconds 1 --guests 1 --quiet >"$tmp/text.out" 2>"$tmp/text.err" || fail "soak (text): exit status $?"
for needle in "operations:" "allocate" "guest_kill" "invariant checks:" "leaks: 0 blocks, 0 fds, 0 mappings" "failures: 0"; do
    grep -qF -- "$needle" "$tmp/text.out" || fail "soak (text): no '$needle' in: $(cat "$tmp/text.out")"
done

# ---- --ops ends a run --seconds would make long ------------------------------------
"$cli" soak --ops 20000 --seconds 120 --guests 0 --json -q >"$tmp/ops.json" 2>"$tmp/ops.err" || fail "soak --ops: exit status $?"
python3 - "$tmp/ops.json" <<'PY' || fail "soak --ops: checks failed (above)"
import json, sys
j = json.load(open(sys.argv[1]))
bad = []
if not 20000 <= j["operations_total"] < 21000: bad.append(f"operations_total {j['operations_total']} for --ops 20000")
if j["duration_s"] >= 60: bad.append(f"ran {j['duration_s']} s despite --ops")
if j["failures"] != 0 or j["leaks"]["total"] != 0: bad.append(f"failures {j['failures']}, leaks {j['leaks']}")
if j["operations"]["guest_connect"] != 0: bad.append("guests ran with --guests 0")
for b in bad:
    print("soak --ops:", b, file=sys.stderr)
sys.exit(1 if bad else 0)
PY

# ---- usage -------------------------------------------------------------------------
"$cli" soak --help >"$tmp/help.out" 2>&1 || fail "soak --help: exit status $?"
for flag in --seconds --ops --threads --guests --seed --json --quiet --max-block-size --max-outstanding --kill-after; do
    grep -qF -- "$flag" "$tmp/help.out" || fail "soak --help lacks $flag"
done
grep -qF -- "--guest-worker" "$tmp/help.out" && fail "soak --help shows the hidden --guest-worker"
"$cli" soak --seconds 0 >/dev/null 2>"$tmp/unbounded.err"
[[ $? == 2 ]] || fail "soak --seconds 0 without --ops: expected exit status 2"
grep -qF -- "--seconds" "$tmp/unbounded.err" || fail "soak --seconds 0: the message does not name --seconds"
"$cli" soak --threads 0 >/dev/null 2>&1
[[ $? == 2 ]] || fail "soak --threads 0: expected exit status 2"

if ((failures != 0)); then
    echo "soak_test: $failures failure(s)" >&2
    exit 1
fi
echo "soak_test: ok"

#!/usr/bin/env bash
# The ndisshm CLI, run as a user would: --help, --version, bad usage, and
# `ndisshm demo --api-tour` (the self-contained API scenario) in table and
# JSON form. The live demo has live_demo_test.sh. Usage: demo_test.sh PATH/TO/ndisshm
set -uo pipefail

cli=${1:?usage: demo_test.sh PATH/TO/ndisshm}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
source "$(dirname "$0")/lib.sh"


# run NAME ARGS...: runs the CLI, keeps stdout, stderr and the exit status.
run() {
    local name=$1
    shift
    "$cli" "$@" >"$tmp/$name.out" 2>"$tmp/$name.err"
    echo $? >"$tmp/$name.rc"
}
rc() { cat "$tmp/$1.rc"; }
expect_rc() {  # name, expected status
    [[ $(rc "$1") == "$2" ]] ||
        fail "$1: exit status $(rc "$1"), expected $2; stderr: $(head -c 400 "$tmp/$1.err")"
}
expect_in() {  # name, stream (out|err), fixed string
    grep -qF -- "$3" "$tmp/$1.$2" || fail "$1: std$2 lacks '$3'"
}
expect_not_in() {
    ! grep -qF -- "$3" "$tmp/$1.$2" || fail "$1: std$2 has '$3'"
}

# ---- --help: true to what exists -------------------------------------------
run help --help
expect_rc help 0
expect_in help out "Usage: ndisshm"
expect_in help out "--version"
# The subcommands listed are exactly the ones that exist.
listed=$(awk '/^Subcommands:/ {on = 1; next} on && /^$/ {on = 0} on {print $1}' "$tmp/help.out" |
    sort | tr '\n' ' ')
[[ $listed == "demo guest host soak stat " ]] ||
    fail "help: subcommands listed are '$listed', expected 'demo guest host soak stat '"
expect_in help out "--config"
run demo_help demo --help
expect_rc demo_help 0
for flag in --api-tour --json --queues --blocks-per-queue --block-size --quiet --guests --packet-size --rate \
    --duration --batch --lookahead --socket; do
    expect_in demo_help out "$flag"
done
run host_help host --help
expect_rc host_help 0
for flag in --socket --max-guests --blocks-per-queue --block-size --slot-size --lookahead-split --rate \
    --packet-size --batch --duration --json --quiet; do
    expect_in host_help out "$flag"
done
run stat_help stat --help
expect_rc stat_help 0
for flag in --socket --json --watch --count --timeout; do expect_in stat_help out "$flag"; done
run guest_help guest --help
expect_rc guest_help 0
expect_in guest_help out "--verify"

# ---- --version --------------------------------------------------------------
run version --version
expect_rc version 0
grep -qxE 'ndisshm [0-9]+\.[0-9]+\.[0-9]+' "$tmp/version.out" ||
    fail "version: stdout is '$(cat "$tmp/version.out")', expected 'ndisshm MAJOR.MINOR.PATCH'"

# ---- bad usage: refused with status 2, the flag named -----------------------
run no_subcommand
expect_rc no_subcommand 2
run unknown_flag demo --bogus
expect_rc unknown_flag 2
expect_in unknown_flag err "--bogus"
run zero_queues demo --queues 0
expect_rc zero_queues 2
expect_in zero_queues err "--queues"
run too_many_queues demo --queues 33
expect_rc too_many_queues 2
expect_in too_many_queues err "--queues"
run bad_size demo --block-size lots
expect_rc bad_size 2
expect_in bad_size err "--block-size"
run zero_blocks demo --blocks-per-queue 0
expect_rc zero_blocks 2
expect_in zero_blocks err "--blocks-per-queue"
run over_budget demo --api-tour --queues 32 --blocks-per-queue 1024 --block-size 16777216
expect_rc over_budget 2
expect_in over_budget err "--block-size"
run live_over_budget demo --queues 32 --blocks-per-queue 1024 --block-size 16777216
expect_rc live_over_budget 2
expect_in live_over_budget err "--blocks-per-queue"
# Flags of the live demo make no sense on the tour, and combinations are checked.
run tour_guests demo --api-tour --guests 3
expect_rc tour_guests 2
expect_in tour_guests err "--guests"
run few_queues demo --guests 3 --queues 3
expect_rc few_queues 2
expect_in few_queues err "--queues"
run small_block demo --packet-size 9000 --block-size 8192
expect_rc small_block 2
expect_in small_block err "--block-size"
run small_packet demo --packet-size 64,32
expect_rc small_packet 2
expect_in small_packet err "--packet-size"
run zero_guests demo --guests 0
expect_rc zero_guests 2
expect_in zero_guests err "--guests"
run big_lookahead demo --lookahead 4096
expect_rc big_lookahead 2
expect_in big_lookahead err "--lookahead"
run short_duration demo --duration 0
expect_rc short_duration 2
expect_in short_duration err "--duration"
run host_slot host --slot-size 128 --packet-size 1500
expect_rc host_slot 2
expect_in host_slot err "--packet-size"
run stat_watch stat --watch 0
expect_rc stat_watch 2
expect_in stat_watch err "--watch"
for name in no_subcommand unknown_flag zero_queues bad_size over_budget live_over_budget tour_guests few_queues \
    small_block small_packet host_slot stat_watch; do
    [[ ! -s $tmp/$name.out ]] || fail "$name: bad usage printed to stdout"
done

# ---- demo --api-tour, table form ----------------------------------------------
run table demo --api-tour
expect_rc table 0
expect_in table out "[1/"
expect_in table out "NdisSetOptionalHandlers"
expect_in table out "caught on purpose: double-free in NdisFreeSharedMemory"
expect_in table out "verifier findings: 1 (1 on purpose, 0 unexpected)"
expect_in table out "outstanding blocks: 0"
expect_in table out "demo: ok"
grep -qE '^adapter +queue +usage +provider +blocks +bytes +peak +frees +failures$' "$tmp/table.out" ||
    fail "table: no summary table header"
grep -qE '^nic0 +2 +ReceiveLookahead +vswitch +4 ' "$tmp/table.out" ||
    fail "table: no lookahead row for nic0 queue 2"
grep -qE '^nic1 +1 +Receive +default +4 ' "$tmp/table.out" ||
    fail "table: no default-provider row for nic1 queue 1"
[[ ! -s $tmp/table.err ]] || fail "table: stderr not empty: $(head -c 400 "$tmp/table.err")"

# ---- demo --api-tour --quiet: the summary only --------------------------------
run quiet demo --api-tour --quiet
expect_rc quiet 0
expect_not_in quiet out "[1/"
expect_in quiet out "outstanding blocks: 0"

# ---- demo --api-tour --json: stdout is JSON and nothing else -----------------
check_json() {  # name, queues, blocks per queue, block size
    python3 - "$tmp/$1.out" "$2" "$3" "$4" <<'PY' || fail "$1: JSON checks failed"
import json, sys
path, queues, per_queue, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
d = json.load(open(path))
errors = []
def expect(ok, what):
    if not ok:
        errors.append(what)
expect(d["ok"] is True, "ok is not true")
expect(d["problems"] == [], f"problems: {d['problems']}")
expect(d["outstanding_blocks"] == 0, "outstanding_blocks is not 0")
expect(d["workload"] == {"queues": queues, "blocks_per_queue": per_queue, "block_size": size},
       f"workload {d['workload']}")
f = d["findings"]
expect(len(f) == 1 and f[0]["kind"] == "double-free" and f[0]["on_purpose"] is True
       and f[0]["call"] == "NdisFreeSharedMemory", f"findings: {f}")
rows = d["rows"]
for nic, provider in (("nic0", "vswitch"), ("nic1", "default")):
    mine = [r for r in rows if r["adapter"] == nic]
    # The Hyper-V shape: the switch serves the VMQ queues it allocated; queue 0 is NDIS's own memory.
    for r in mine:
        want = "default" if r["queue"] == 0 else provider
        expect(r["provider"] == want, f"{nic} queue {r['queue']}: provider {r['provider']}, not {want}")
    ids = {r["queue"] for r in mine}
    expect(ids == set(range(queues + 1)), f"{nic} queues {sorted(ids)}")
    if queues >= 3:
        expect({r["usage_value"] for r in mine} == set(range(10)), f"{nic} does not use every usage")
    for r in mine:
        where = f"{nic} queue {r['queue']} {r['usage']}"
        expect(r["blocks"] == r["frees"], f"{where}: {r['blocks']} blocks, {r['frees']} frees")
        expect(r["peak"] >= 1 and r["bytes"] >= r["blocks"], f"{where}: {r}")
    receive = [r for r in mine if r["queue"] == 1 and r["usage"] == "Receive"]
    expect(len(receive) == 1 and receive[0]["blocks"] == per_queue, f"{nic} queue 1 Receive: {receive}")
failed = [(r["adapter"], r["queue"], r["usage"], r["failures"]) for r in rows if r["failures"]]
expect(failed == [("nic0", 1, "Receive", 1)], f"failures: {failed} (expected only the refusal on purpose)")
for a in d["adapters"]:
    b = a["books"]
    expect(b["blocks"] == 0 and b["allocations"] == b["frees"], f"{a['name']} books: {b}")
expect(d["figures_compared"] > 0, "no figures compared")
for e in errors:
    print(f"{path}: {e}", file=sys.stderr)
sys.exit(1 if errors else 0)
PY
}
run json demo --api-tour --json
expect_rc json 0
check_json json 3 4 65536
expect_in json err "[1/"  # narration moved to stderr
run json_sized demo --api-tour --json --quiet --queues 5 --blocks-per-queue 2 --block-size 8192
expect_rc json_sized 0
check_json json_sized 5 2 8192
[[ ! -s $tmp/json_sized.err ]] || fail "json_sized: --quiet still wrote to stderr"

if ((failures > 0)); then
    echo "cli demo test: $failures failure(s)" >&2
    exit 1
fi
echo "cli demo test: all checks passed"

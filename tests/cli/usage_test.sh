#!/usr/bin/env bash
# Bad usage, told the way people can act on: a value that is not a number
# is called that, one out of range names the range, sizes take units and
# fractions (1.5K), a mistyped subcommand or flag gets "did you mean".
# Every case exits 2. Usage: usage_test.sh PATH/TO/ndisshm
set -uo pipefail

cli=${1:?usage: usage_test.sh PATH/TO/ndisshm}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
source "$(dirname "$0")/lib.sh"
# usage WANT ARGS...: exit 2, and stderr holds WANT (a fixed string).
usage() {
    local want=$1
    shift
    "$cli" "$@" >"$tmp/out" 2>"$tmp/err"
    local rc=$?
    [[ $rc == 2 ]] || fail "'$*': exit status $rc, expected 2"
    grep -qF -- "$want" "$tmp/err" || fail "'$*': stderr lacks '$want': $(cat "$tmp/err")"
}

# ---- numbers ----------------------------------------------------------------
usage "--guests: 'abc' is not a number" demo --guests abc
usage "--guests: 99 is out of range 1..16" demo --guests 99
usage "--guests: -1 is out of range 1..16" demo --guests -1
usage "--guests: 1.5 is not a whole number (1..16)" demo --guests 1.5
usage "--duration: 'soon' is not a number" host --duration soon
usage "--packets: 'many' is not a number" guest --packets many
usage "--packet-size: 'big' is not a number" demo --packet-size 64,big
usage "--watch: 0 is out of range 0.1..3600" stat --watch 0
usage "--handshake-timeout: 0 is out of range 1..3600000" host --handshake-timeout 0
usage "--handshake-timeout: 'soon' is not a number" host --handshake-timeout soon
usage "--handshake-timeout: 2.5 is not a whole number (1..3600000)" host --handshake-timeout 2.5
usage "--ops: 'x' is not a number" soak --ops x
"$cli" demo --guests abc >/dev/null 2>"$tmp/err"
grep -q "range" "$tmp/err" && fail "a value that is not a number is called out of range: $(cat "$tmp/err")"

usage "--hold: belongs to the live demo, not to --api-tour" demo --api-tour --hold 1

# ---- sizes ------------------------------------------------------------------
"$cli" demo --api-tour --block-size 1.5K --json >"$tmp/tour.json" 2>/dev/null || fail "demo --api-tour --block-size 1.5K failed"
python3 -c 'import json,sys; sys.exit(0 if json.load(open(sys.argv[1]))["workload"]["block_size"] == 1536 else 1)' \
    "$tmp/tour.json" || fail "--block-size 1.5K is not 1536 bytes"
"$cli" demo --api-tour --block-size 2KiB --json >"$tmp/tour.json" 2>/dev/null || fail "demo --api-tour --block-size 2KiB failed"
python3 -c 'import json,sys; sys.exit(0 if json.load(open(sys.argv[1]))["workload"]["block_size"] == 2048 else 1)' \
    "$tmp/tour.json" || fail "--block-size 2KiB is not 2048 bytes"
echo '{"block-size": "1.5K"}' >"$tmp/c.json"
"$cli" demo --api-tour --json --config "$tmp/c.json" >"$tmp/tour.json" 2>/dev/null || fail "--config with a size failed"
python3 -c 'import json,sys; sys.exit(0 if json.load(open(sys.argv[1]))["workload"]["block_size"] == 1536 else 1)' \
    "$tmp/tour.json" || fail "block-size \"1.5K\" in --config is not 1536 bytes"
usage "--memory: '1.5Q': unknown unit 'Q'" guest --memory 1.5Q
usage "--memory: 0.3 is not a whole number" guest --memory 0.3
usage "--memory: 1.0000001K is not a whole number of bytes" guest --memory 1.0000001K
usage "--block-size: 1024 is out of range 4096..16777216" host --block-size 1K
"$cli" host --help >"$tmp/help" 2>&1
grep -qE -- "--block-size SIZE" "$tmp/help" || fail "host --help does not call --block-size a SIZE"
"$cli" --help >"$tmp/help" 2>&1
grep -qF "1.5G" "$tmp/help" || fail "--help does not say sizes take units"

# ---- did you mean ---------------------------------------------------------------
usage "did you mean demo?" demoo
usage "did you mean host?" hots --socket x
usage "--gusts: did you mean --guests?" demo --gusts 2
usage "--jsn: did you mean --json?" stat --jsn
usage "--wach: did you mean --watch?" stat --wach=1
usage "--verion: did you mean --version?" --verion
"$cli" xyzzy >/dev/null 2>"$tmp/err"
grep -q "did you mean" "$tmp/err" && fail "a word like no subcommand gets a suggestion: $(cat "$tmp/err")"

if ((failures > 0)); then
    echo "cli usage test: $failures failure(s)" >&2
    exit 1
fi
echo "cli usage test: all checks passed"

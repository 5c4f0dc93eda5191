#!/usr/bin/env bash
# `--config FILE`: JSON with the same keys as the flags. A good file runs; a
# bad value is refused with the flag's name, as on the command line; an
# unknown key or a file that is not JSON is refused by name; the command line
# wins over the file. Usage: config_test.sh PATH/TO/ndisshm
set -uo pipefail

cli=${1:?usage: config_test.sh PATH/TO/ndisshm}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
source "$(dirname "$0")/lib.sh"

# case NAME EXPECTED_STATUS 'JSON' NEEDLE_IN_STDERR ARGS...: writes the file,
# runs the CLI with --config and ARGS, checks the status and stderr.
case_() {
    local name=$1 want=$2 json=$3 needle=$4
    shift 4
    printf '%s\n' "$json" >"$tmp/$name.json"
    "$cli" "$@" --config "$tmp/$name.json" >"$tmp/$name.out" 2>"$tmp/$name.err"
    local rc=$?
    [[ $rc == "$want" ]] || fail "$name: exit status $rc, expected $want; stderr: $(head -c 400 "$tmp/$name.err")"
    [[ -z $needle ]] || grep -qF -- "$needle" "$tmp/$name.err" ||
        fail "$name: stderr lacks '$needle': $(head -c 400 "$tmp/$name.err")"
}

# Good files: flat keys, and a section per subcommand (others' ignored).
case_ tour_flat 0 '{"api-tour": true, "json": true, "quiet": true, "queues": 2, "blocks-per-queue": 2}' "" demo
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); sys.exit(0 if d["ok"] and d["workload"]["queues"] == 2 and d["workload"]["blocks_per_queue"] == 2 else 1)' \
    "$tmp/tour_flat.out" || fail "tour_flat: the file's values were not used"
case_ tour_section 0 '{"demo": {"api-tour": true, "quiet": true, "queues": 4}, "host": {"rate": 5}}' "" demo
grep -q "outstanding blocks: 0" "$tmp/tour_section.out" || fail "tour_section: no summary"
# The command line wins over the file.
case_ override 0 '{"api-tour": true, "quiet": true, "json": true, "queues": 2}' "" demo --queues 3
python3 -c 'import json,sys; sys.exit(0 if json.load(open(sys.argv[1]))["workload"]["queues"] == 3 else 1)' \
    "$tmp/override.out" || fail "override: the command line did not win"
# --config before the subcommand works too.
printf '{"api-tour": true, "quiet": true}\n' >"$tmp/before.json"
"$cli" --config "$tmp/before.json" demo >"$tmp/before.out" 2>&1 || fail "--config before the subcommand: $(cat "$tmp/before.out")"

# Bad values: refused with the flag's name, status 2, nothing run.
case_ zero_guests 2 '{"guests": 0}' "--guests" demo
case_ small_packet 2 '{"packet-size": [64, 10]}' "--packet-size" demo
case_ bad_duration 2 '{"demo": {"duration": -1}}' "--duration" demo
case_ text_rate 2 '{"rate": "fast"}' "--rate" demo
case_ few_queues 2 '{"guests": 4, "queues": 2}' "--queues" demo
case_ host_block 2 '{"block-size": 100}' "--block-size" host
case_ host_slot 2 '{"slot-size": 1024, "packet-size": [1500]}' "--packet-size" host
case_ stat_watch 2 '{"watch": 0}' "--watch" stat
case_ guest_name 2 '{"socket": "/nonexistent.sock", "name": ""}' "--name" guest
# Not flags, not JSON, not an object.
case_ unknown_key 2 '{"bogus": 1}' "unknown key 'bogus'" demo
case_ unknown_section 2 '{"nosuch": {"rate": 1}}' "unknown section 'nosuch'" demo
case_ nested_value 2 '{"rate": {"per": 1}}' "unknown section 'rate'" demo
case_ object_in_list 2 '{"packet-size": [{"a": 1}]}' "key 'packet-size'" demo
case_ not_json 2 'guests = 3' "not JSON" demo
case_ not_object 2 '[1, 2]' "one JSON object" demo
"$cli" demo --config "$tmp/missing.json" >/dev/null 2>"$tmp/missing.err"
rc=$?
[[ $rc == 2 ]] || fail "missing config file: exit status $rc, expected 2"
grep -qF -- "--config" "$tmp/missing.err" || fail "missing config file: '$(cat "$tmp/missing.err")'"

for name in zero_guests small_packet bad_duration unknown_key not_json; do
    [[ ! -s $tmp/$name.out ]] || fail "$name: printed to stdout although refused"
done

if ((failures > 0)); then
    echo "cli config test: $failures failure(s)" >&2
    exit 1
fi
echo "cli config test: all checks passed"

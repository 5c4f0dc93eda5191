#!/usr/bin/env bash
# `ndisshm host` as a service logs: a status line every --status-interval
# seconds (rates since the last line, guests running, drops), none with 0;
# lines with the journal's priority prefixes ("<6>" info, "<4>" warning,
# "<3>" error, sd-daemon(3)) when JOURNAL_STREAM names its stderr, plain
# otherwise; refusals before the hub starts: a --socket in a missing
# directory, and a second host on a live socket (which the first host must
# not count as a guest); a connection that says nothing, refused and closed
# once --handshake-timeout has passed. Usage: host_log_test.sh PATH/TO/ndisshm
set -uo pipefail

cli=${1:?usage: host_log_test.sh PATH/TO/ndisshm}
tmp=$(mktemp -d)
host_pid=
cleanup() {
    [[ -n $host_pid ]] && kill -KILL "$host_pid" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
source "$(dirname "$0")/lib.sh"
mkdir "$tmp/run"
sock="$tmp/run/host.sock"

# ---- status lines with a guest and traffic, plain (no JOURNAL_STREAM) -------
env -u JOURNAL_STREAM "$cli" host --socket "$sock" --rate 2000 --status-interval 0.3 --duration 2.5 \
    >"$tmp/plain.out" 2>"$tmp/plain.err" &
host_pid=$!
wait_for 5 grep -q "listening on $sock" "$tmp/plain.out" || fail "host never said it listens: $(cat "$tmp/plain.err")"
"$cli" guest --socket "$sock" --memory 8M --duration 1.5 >"$tmp/guest.out" 2>&1 || fail "guest against the host failed"
# The guest's summary: human units, its duration and rate.
grep -qF "8.0 MiB of its own memory given to the host" "$tmp/guest.out" || fail "guest summary: memory: $(cat "$tmp/guest.out")"
grep -qE "^duration: 1\.[0-9] s; [1-9][0-9.]*k? packets/s, [0-9.]+ Gbit/s \([0-9.]+ [KMG]?i?B read in place\)$" "$tmp/guest.out" ||
    fail "guest summary: no duration and rate: $(cat "$tmp/guest.out")"
grep -q "no packets after" "$tmp/guest.out" && fail "a guest fed packets says the host is quiet"
wait "$host_pid"
rc=$?
host_pid=
[[ $rc == 0 ]] || fail "host: exit status $rc: $(cat "$tmp/plain.err")"
status_lines=$(grep -c "^ndisshm host: status: " "$tmp/plain.err")
((status_lines >= 4)) || fail "expected >= 4 status lines in 2.5 s at 0.3 s, got $status_lines: $(cat "$tmp/plain.err")"
grep -qE "^ndisshm host: status: 1 guest running; [0-9.]+k? packets/s delivered, 0/s dropped over 0\.[0-9] s; totals: [0-9.]+k? delivered, 0 dropped, 1 guests connected, 0 refused$" \
    "$tmp/plain.err" || fail "no status line with a running guest: $(cat "$tmp/plain.err")"
# Traffic moved: some line's rate is not 0.
grep -qE "status: .* [1-9][0-9.]*k? packets/s delivered" "$tmp/plain.err" || fail "no status line shows a rate: $(cat "$tmp/plain.err")"
grep -q '^<' "$tmp/plain.err" && fail "priority prefixes without JOURNAL_STREAM: $(cat "$tmp/plain.err")"

# ---- --status-interval 0: none; no --rate: it says there is no traffic ------
"$cli" host --socket "$sock" --status-interval 0 --duration 3.2 >/dev/null 2>"$tmp/off.err" &
host_pid=$!
wait_for 5 grep -q "listening on $sock" "$tmp/off.err" || fail "host --status-interval 0 never listened: $(cat "$tmp/off.err")"
# A guest on a host that sends nothing says so rather than look hung.
PATH="$(cd "$(dirname "$cli")" && pwd -P):$PATH" "$cli" guest --socket "$sock" --memory 8M --duration 2.5 \
    >/dev/null 2>"$tmp/quiet.err" || fail "guest on a quiet host failed"
grep -qF "no packets after 2 s: waiting; a host sends none unless told to ('ndisshm host --rate PPS')" "$tmp/quiet.err" ||
    fail "a guest on a quiet host does not say so: $(cat "$tmp/quiet.err")"
wait "$host_pid" || fail "host --status-interval 0 failed"
host_pid=
grep -q "status:" "$tmp/off.err" && fail "--status-interval 0 still logs status: $(cat "$tmp/off.err")"
grep -qF "sending no traffic" "$tmp/off.err" || fail "host without --rate does not say it sends none: $(cat "$tmp/off.err")"
"$cli" host --help >"$tmp/help.out" 2>&1
grep -qE -- "--status-interval.*60" "$tmp/help.out" || fail "host --help lacks --status-interval (default 60)"

# ---- under the journal: levels; a JOURNAL_STREAM naming another file: plain --
: >"$tmp/journal.err"
journal=$(stat -c '%d:%i' "$tmp/journal.err")
JOURNAL_STREAM=$journal "$cli" host --socket "$sock" --status-interval 0.2 --duration 2 \
    >"$tmp/journal.out" 2>>"$tmp/journal.err" &
host_pid=$!
wait_for 5 grep -q "listening on $sock" "$tmp/journal.err" || fail "host under the journal never listened: $(cat "$tmp/journal.err")"
# A connection that sends garbage: the hub refuses it, a warning.
python3 - "$sock" <<'PY'
import socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
s.connect(sys.argv[1])
s.send(b"not a HELLO at all, just bytes")
time.sleep(0.3)
PY
# A second host on the same live socket: an error, before any guest handshake.
JOURNAL_STREAM=$journal "$cli" host --socket "$sock" --duration 1 >/dev/null 2>>"$tmp/journal.err"
[[ $? == 1 ]] || fail "a second host on a live socket: expected exit 1"
wait "$host_pid"
host_pid=
grep -qF "<6>ndisshm host: listening on $sock" "$tmp/journal.err" || fail "no <6> on the listening line: $(cat "$tmp/journal.err")"
grep -qE "^<6>ndisshm host: status: 0 guests running" "$tmp/journal.err" || fail "no <6> status line: $(cat "$tmp/journal.err")"
grep -qE "^<4>ndisshm host: session refused: " "$tmp/journal.err" || fail "no <4> for a refused session: $(cat "$tmp/journal.err")"
grep -qF "<3>ndisshm host: another host is listening on $sock" "$tmp/journal.err" ||
    fail "no <3> 'another host is listening': $(cat "$tmp/journal.err")"
grep -vE '^<[346]>' "$tmp/journal.err" | grep -q . && fail "lines without a priority under the journal: $(grep -vE '^<[346]>' "$tmp/journal.err")"
grep -qE "guest [0-9]+ '.*' connected" "$tmp/journal.err" && fail "the second host showed up as a guest: $(cat "$tmp/journal.err")"
: >"$tmp/other"
JOURNAL_STREAM=$(stat -c '%d:%i' "$tmp/other") "$cli" host --socket "$sock" --status-interval 0.2 --duration 0.5 \
    >/dev/null 2>"$tmp/redirected.err"
grep -q '^<' "$tmp/redirected.err" && fail "prefixes on a stderr that is not the journal's: $(cat "$tmp/redirected.err")"
grep -q "status:" "$tmp/redirected.err" || fail "no status line on a redirected stderr: $(cat "$tmp/redirected.err")"

# ---- --handshake-timeout: a connection that says nothing is closed then -----
# 400 ms, far from the default 5000: the close must come from the flag.
"$cli" host --socket "$sock" --handshake-timeout 400 --status-interval 0 --duration 6 \
    >"$tmp/silent.out" 2>"$tmp/silent.err" &
host_pid=$!
wait_for 5 grep -q "listening on $sock" "$tmp/silent.out" || fail "host --handshake-timeout never listened: $(cat "$tmp/silent.err")"
# Connects, sends nothing, and reports what came back and when: the ERROR's
# status and reason (header: magic, version, type, length, sequence), then
# the end of the stream.
python3 - "$sock" >"$tmp/silent.client" <<'PY' || fail "the silent client failed: $(cat "$tmp/silent.client")"
import socket, struct, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
s.connect(sys.argv[1])
s.settimeout(4.5)
start = time.monotonic()
error = s.recv(65536)
closed = s.recv(65536)
elapsed = time.monotonic() - start
magic, version, kind, length, seq = struct.unpack_from("<IHHII", error)
code, _ = struct.unpack_from("<II", error, 16)
reason = error[24:16 + length].split(b"\0")[0].decode()
print(f"type {kind} status 0x{code:08X} closed {closed == b''} after {elapsed:.2f} s: {reason}")
PY
wait "$host_pid"
host_pid=
grep -qE "^type 12 status 0xC0000001 closed True after [0-9.]+ s: handshake not finished within 400 ms$" \
    "$tmp/silent.client" || fail "a silent connection: not an ERROR then a close: $(cat "$tmp/silent.client")"
elapsed=$(sed -nE 's/.* after ([0-9.]+) s.*/\1/p' "$tmp/silent.client")
python3 -c 'import sys; sys.exit(0 if 0.35 <= float(sys.argv[1]) < 3.0 else 1)' "${elapsed:-99}" ||
    fail "a silent connection closed after ${elapsed:-?} s, expected about 0.4 s (--handshake-timeout 400)"
grep -qE "session refused: guest [0-9]+ '.*': handshake not finished within 400 ms" "$tmp/silent.err" ||
    fail "the host does not log the handshake timeout: $(cat "$tmp/silent.err")"
"$cli" host --help >"$tmp/help.out" 2>&1
grep -qE -- "--handshake-timeout.*5000" "$tmp/help.out" || fail "host --help lacks --handshake-timeout (default 5000)"

# ---- refused before starting: a --socket in a directory that does not exist ---
"$cli" host --socket "$tmp/nowhere/host.sock" --duration 0.2 >/dev/null 2>"$tmp/nodir.err"
[[ $? == 1 ]] || fail "host --socket in a missing directory: expected exit 1"
grep -qF "directory $tmp/nowhere does not exist" "$tmp/nodir.err" || fail "missing directory not named: $(cat "$tmp/nodir.err")"
[[ -e $tmp/nowhere ]] && fail "host made the missing directory"

if ((failures > 0)); then
    echo "cli host log test: $failures failure(s)" >&2
    exit 1
fi
echo "cli host log test: all checks passed"

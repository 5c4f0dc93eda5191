#!/usr/bin/env bash
# `ndisshm guest` run as a separate process against a fake host (Python,
# speaking src/ipc/protocol.hpp and driving src/ipc/ring.hpp's rings byte for
# byte): the host checks the memfd it receives (size, seals), writes packets
# into it (some split in two chained segments, as lookahead split sends them),
# announces them in the receive ring and waits for their cookies in the
# completion ring, and reads them back through the guest's checksum; then it
# ends the session each way a host can: BYE
# (exit 0), SIGKILL of the host process (exit 3), refusing the memory (exit
# 1), or the guest stopping at --packets (it says BYE itself, exit 0).
# Usage: guest_test.sh PATH/TO/ndisshm
set -uo pipefail

cli=${1:?usage: guest_test.sh PATH/TO/ndisshm}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
source "$(dirname "$0")/lib.sh"

cat >"$tmp/host.py" <<'PY'
import fcntl, mmap, os, select, signal, socket, struct, sys, time
path, mode, out = sys.argv[1], sys.argv[2], sys.argv[3]
MAGIC, VERSION, HDR = 0x4D53444E, 5, struct.Struct('<IHHII')
seq = 0
srv = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
srv.bind(path)
srv.listen(1)
c, _ = srv.accept()
def send(t, payload, fds=()):
    global seq
    seq += 1
    data = HDR.pack(MAGIC, VERSION, t, len(payload), seq) + payload
    if fds:
        socket.send_fds(c, [data], list(fds))
    else:
        c.send(data)
def send_quietly(t, payload):  # the guest may have said BYE and closed already
    try:
        send(t, payload)
    except BrokenPipeError:
        pass
def recv():
    try:
        data, fds, _, _ = socket.recv_fds(c, 16 + 65536, 4)
    except ConnectionResetError:  # closed with our data unread; what it sent first is still queued
        data, fds, _, _ = socket.recv_fds(c, 16 + 65536, 4)
    if not data:
        return None, b'', fds
    magic, version, t, length, _ = HDR.unpack_from(data)
    assert magic == MAGIC and version == VERSION and length == len(data) - 16, data[:16]
    return t, data[16:], fds
report = open(out, 'w')
t, p, _ = recv()
assert t == 1, t
report.write('name=%s\n' % p[:32].split(b'\0')[0].decode())
send(2, struct.pack('<II', 9, 0))
t, p, fds = recv()
assert t == 3 and len(fds) == 1, (t, fds)
size, base = struct.unpack('<QQ', p)
assert os.fstat(fds[0]).st_size == size
seals = fcntl.fcntl(fds[0], 1034)  # F_GET_SEALS
report.write('size=%d sealed_shrink=%d\n' % (size, (seals & 2) != 0))  # F_SEAL_SHRINK
if mode == 'refuse':
    # ERROR: the status, then the reason, as long as the datagram (198 bytes here:
    # more than version 3's 119, within the 256 bytes 'ndisshm guest' keeps for an error).
    send(12, struct.pack('<II', 0xC000009A, 0) + b'guest memory too small: 4 queues need more' + b', and more' * 14
         + b' (end of reason)')
    sys.exit(0)
mem = mmap.mmap(fds[0], size)
send(4, struct.pack('<Q', size))
send(5, struct.pack('<IIII', 1, 0, 0, 0))
send(7, struct.pack('<QQIIII', 0xB10C, 4096, 65536, 1, 4, 3))  # index 3: what ring entries name it by
# The rings (ring.hpp): one block of Usage Other (9) at 128 KiB; the receive
# ring at its start, the completion ring at DONE; each ring a producer line,
# a consumer line (flags at +4), then SIZE entries.
RING, SIZE = 131072, 64
DONE = 128 + SIZE * 16
send(7, struct.pack('<QQIIII', 0x5160, RING, 4096, 1, 9, 0))
rx_kick = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
done_kick = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
send(13, struct.pack('<IIQII', 1, SIZE, 0x5160, DONE, 0), (rx_kick, done_kick))
u32 = struct.Struct('<I')
DESC = struct.Struct('<IIIHH')  # offset, length, cookie, block index, flags (1: a segment follows)
prod, done_cons = 0, 0
c.setblocking(False)
for b in range(5):
    descs, cookies = [], []
    for i in range(4):
        off = i * 2048
        cookies.append(b * 4 + i)
        if i == 3:  # lookahead split: 128 bytes here, the other 1372 further on; the guest reads across both
            tail = 32768 + b * 2048
            mem[4096 + off:4096 + off + 128] = bytes([(b * 4 + i) & 255]) * 128
            mem[4096 + tail:4096 + tail + 1372] = bytes([(b * 4 + i) & 255]) * 1372
            descs.append(DESC.pack(off, 128, b * 4 + i, 3, 1))
            descs.append(DESC.pack(tail, 1372, b * 4 + i, 3, 0))
            continue
        mem[4096 + off:4096 + off + 1500] = bytes([(b * 4 + i) & 255]) * 1500
        descs.append(DESC.pack(off, 1500, b * 4 + i, 3, 0))
    if b == 0:
        descs.append(DESC.pack(65000, 1500, 99, 3, 0))  # past the block's end
        cookies.append(99)
    for d in descs:
        mem[RING + 128 + (prod % SIZE) * 16:RING + 128 + (prod % SIZE) * 16 + 16] = d
        prod += 1
    mem[RING:RING + 4] = u32.pack(prod)  # publish
    if u32.unpack_from(mem, RING + 68)[0] & 1:  # the guest sleeps: kick it
        os.eventfd_write(rx_kick, 1)
    got = []
    def reap():
        global done_cons
        done_prod = u32.unpack_from(mem, RING + DONE)[0]
        while done_cons != done_prod:
            got.append(struct.unpack_from('<I', mem, RING + DONE + 128 + (done_cons % SIZE) * 4)[0])
            done_cons += 1
        mem[RING + DONE + 64:RING + DONE + 68] = u32.pack(done_cons)
    deadline = time.time() + 10
    while len(got) < len(cookies) and time.time() < deadline:
        reap()
        if len(got) < len(cookies):
            select.select([c], [], [], 0.002)
            try:
                t, p, _ = recv()
            except BlockingIOError:
                continue
            if t == 11:
                reap()  # what it gave back before its BYE
                report.write('guest said bye after %d batches\n' % (b + (len(got) == len(cookies))))
                sys.exit(0)
    assert sorted(got) == sorted(cookies), (got, cookies)
report.write('batches returned\n')
report.flush()
if mode == 'vanish':
    os.kill(os.getpid(), signal.SIGKILL)
c.setblocking(True)
send(8, struct.pack('<Q', 0x5160))
send(8, struct.pack('<Q', 0xB10C))
send(6, struct.pack('<II', 1, 0))
send(11, struct.pack('<II', 0, 0))
PY

# run_pair NAME MODE GUEST-ARGS...: starts the fake host, waits for its
# socket, runs the guest against it; keeps the guest's stdout, stderr, status.
run_pair() {
    local name=$1 mode=$2
    shift 2
    local sock=$tmp/$name.sock
    # In a subshell, so that the vanish case's SIGKILL is reported (if at
    # all) into host_err, not on the test's own stderr.
    (python3 "$tmp/host.py" "$sock" "$mode" "$tmp/$name.host"; exit $?) 2>"$tmp/$name.host_err" &
    local host=$!
    for _ in $(seq 100); do [[ -S $sock ]] && break; sleep 0.05; done
    "$cli" guest --socket "$sock" --name "$name" "$@" >"$tmp/$name.out" 2>"$tmp/$name.err"
    echo $? >"$tmp/$name.rc"
    wait "$host" 2>/dev/null
}
expect_rc() {
    [[ $(cat "$tmp/$1.rc") == "$2" ]] ||
        fail "$1: exit status $(cat "$tmp/$1.rc"), expected $2; stderr: $(head -c 400 "$tmp/$1.err")"
}
expect_in() {  # name, file suffix, fixed string
    grep -qF -- "$3" "$tmp/$1.$2" || fail "$1: $2 lacks '$3': $(head -c 400 "$tmp/$1.$2")"
}

# ---- the host says BYE: exit 0, every good packet read in place ------------
run_pair bye bye --memory 1M --no-reconnect
expect_rc bye 0
expect_in bye host "name=bye"
expect_in bye host "size=1048576 sealed_shrink=1"
expect_in bye host "batches returned"
expect_in bye out "host closed the connection (BYE)"
expect_in bye out "packets: 20"
expect_in bye out "bytes: 30000"
expect_in bye out "bad descriptors: 1"
expect_in bye out "blocks known: 0"
# Each packet is 1500 copies of its index (one in four in two segments: the
# hash runs across them); the guest XORs FNV-1a hashes.
want=$(python3 -c '
h_all = 0
for i in range(20):
    h = 1469598103934665603
    for _ in range(1500):
        h = ((h ^ i) * 1099511628211) % 2**64
    h_all ^= h
print("checksum: %016x" % h_all)')
expect_in bye out "$want"

# ---- the host process is killed: the guest reports it, exit 3 -------------
run_pair vanish vanish --memory 1M --json --no-reconnect
expect_rc vanish 3
expect_in vanish err "host closed the connection without BYE"
python3 - "$tmp/vanish.out" <<'PY' || fail "vanish: JSON checks failed"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["end"] == "HOST_GONE" and d["exit_status"] == 3, d
assert d["packets"] == 20 and d["bad_descriptors"] == 1 and d["blocks_known"] == 2, d  # receive + rings
assert d["guest_id"] == 9 and d["memory_bytes"] == 1048576, d
PY

# ---- the host is killed and never comes back: the guest tries, then exit 3 -
run_pair retry vanish --memory 1M --json --reconnect 0.6
expect_rc retry 3
expect_in retry err "lost the host at"
expect_in retry err "reconnecting for up to"
expect_in retry err "gave up reconnecting after"
python3 - "$tmp/retry.out" <<'PY' || fail "retry: JSON checks failed"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["end"] == "HOST_GONE" and d["exit_status"] == 3, d
assert d["sessions_lost"] == 1 and d["reconnects"] == 0 and 3 <= d["reconnect_attempts"] <= 8, d
assert d["blocks_known"] == 0, d  # the lost session's blocks are forgotten
(r,) = d["reconnections"]
assert "without BYE" in r["reason"] and r["packets_before"] == 20 and "back_at_s" not in r, d
PY

# ---- the host refuses the memory: exit 1 with its reason ------------------
run_pair refuse refuse --memory 64K
expect_rc refuse 1
expect_in refuse err "guest memory too small: 4 queues need more, and more"
expect_in refuse err "and more (end of reason)"  # whole: version 3 cut a reason at 119 bytes
expect_in refuse host "size=65536"

# ---- a packet limit: the guest says BYE itself, exit 0 ---------------------
run_pair limit limit --memory 1M --packets 8
expect_rc limit 0
expect_in limit out "limit reached"
expect_in limit host "guest said bye after 2 batches"

# ---- no host: what to do; no --socket: the host's default socket -----------
# The hint is a command that works where the user stands: "ndisshm" when
# that is this binary on PATH, else the binary's own path.
clidir=$(cd "$(dirname "$cli")" && pwd -P)
PATH="$clidir:$PATH" "$cli" guest --socket "$tmp/nobody.sock" >"$tmp/nohost.out" 2>"$tmp/nohost.err"
echo $? >"$tmp/nohost.rc"
expect_rc nohost 1
expect_in nohost err "connect($tmp/nobody.sock)"
expect_in nohost err "is a host running? start one with: ndisshm host --socket $tmp/nobody.sock"
(cd / && PATH=/usr/bin:/bin "$clidir/ndisshm" guest --socket "$tmp/nobody.sock") >/dev/null 2>"$tmp/offpath.err"
grep -qF "start one with: $clidir/ndisshm host --socket $tmp/nobody.sock" "$tmp/offpath.err" ||
    fail "off PATH, the hint does not name the binary's path: $(cat "$tmp/offpath.err")"
# Without --socket the guest goes where 'ndisshm host' listens by default.
PATH="$clidir:$PATH" XDG_RUNTIME_DIR=$tmp/xdg "$cli" guest --memory 1M >"$tmp/nosocket.out" 2>"$tmp/nosocket.err"
echo $? >"$tmp/nosocket.rc"
expect_rc nosocket 1
expect_in nosocket err "connect($tmp/xdg/ndisshm/host.sock)"
expect_in nosocket err "start one with: ndisshm host"
grep -qF -- "--socket" "$tmp/nosocket.err" && fail "guest without --socket: hint names a --socket: $(cat "$tmp/nosocket.err")"
"$cli" guest --socket "$tmp/nowhere/host.sock" >/dev/null 2>"$tmp/nodir.err"
grep -qF "directory $tmp/nowhere does not exist" "$tmp/nodir.err" || fail "guest in a missing directory: $(cat "$tmp/nodir.err")"
"$cli" guest --socket "$tmp/host.ctl" >/dev/null 2>"$tmp/ctl.err"
grep -qF "that is a host's control socket" "$tmp/ctl.err" && grep -qF "$tmp/host.sock" "$tmp/ctl.err" ||
    fail "guest on a control socket path: $(cat "$tmp/ctl.err")"
"$cli" guest --help >"$tmp/help.out" 2>&1
grep -qE -- "--socket.*default" "$tmp/help.out" || fail "guest --help does not give --socket's default"

# ---- bad usage ------------------------------------------------------------
"$cli" guest --socket x --memory 0 >/dev/null 2>&1
[[ $? == 2 ]] || fail "guest --memory 0: expected exit 2"

if ((failures > 0)); then
    echo "cli guest test: $failures failure(s)" >&2
    exit 1
fi
echo "cli guest test: all checks passed"

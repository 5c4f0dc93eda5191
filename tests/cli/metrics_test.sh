#!/usr/bin/env bash
# Prometheus metrics of a running host: `ndisshm host --metrics-listen` with a
# real guest and traffic; what /metrics serves passes `promtool check
# metrics`; `ndisshm stat --format prometheus|openmetrics` prints the same
# families; and a real Prometheus server, started here on the loopback,
# scrapes the host and answers a query for a counter that the traffic moved.
# Usage: metrics_test.sh PATH/TO/ndisshm
set -uo pipefail

cli=${1:?usage: metrics_test.sh PATH/TO/ndisshm}
for tool in promtool prometheus python3; do
    command -v "$tool" >/dev/null || { echo "FAIL: $tool is missing (scripts/deps.sh installs it)" >&2; exit 1; }
done
tmp=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do { kill -KILL "$p" && wait "$p"; } 2>/dev/null; done
    rm -rf "$tmp"
}
trap cleanup EXIT
source "$(dirname "$0")/lib.sh"
get() { python3 -c 'import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())' "$1"; }

mkdir "$tmp/run"  # host --socket makes no directory
sock="$tmp/run/host.sock"
"$cli" host --socket "$sock" --rate 5000 --metrics-listen 127.0.0.1:0 >"$tmp/host.out" 2>"$tmp/host.err" &
pids+=($!)
wait_for 10 grep -q 'metrics on http' "$tmp/host.out" || { echo "FAIL: no metrics line: $(cat "$tmp/host.err")" >&2; exit 1; }
port=$(grep -o 'port [0-9]*' "$tmp/host.out" | awk '{print $2}')
"$cli" guest --socket "$sock" --name vm1 --memory 8M --verify >"$tmp/guest.out" 2>"$tmp/guest.err" &
pids+=($!)

delivered() {  # the counter on /metrics, > 0
    get "http://127.0.0.1:$port/metrics" >"$tmp/metrics.txt" 2>/dev/null &&
        awk '$1 == "ndisshm_packets_delivered_total" && $2 > 0 {ok = 1} END {exit !ok}' "$tmp/metrics.txt"
}
wait_for 10 delivered || fail "ndisshm_packets_delivered_total never moved: $(head -c 400 "$tmp/metrics.txt")"
promtool check metrics <"$tmp/metrics.txt" >"$tmp/promtool.out" 2>&1 || fail "promtool check metrics: $(cat "$tmp/promtool.out")"
for family in ndisshm_guests ndisshm_adapter_blocks ndisshm_queue_packets_received_total ndisshm_memory_in_use_bytes \
              ndisshm_queue_packets_dropped_total; do
    grep -q "^$family[{ ]" "$tmp/metrics.txt" || fail "/metrics lacks $family"
done
grep -q '^ndisshm_queue_packets_received_total{.*guest="1"' "$tmp/metrics.txt" ||
    fail "no per-guest queue counter: $(grep queue_packets_received "$tmp/metrics.txt")"

# stat prints the same once, in both text formats.
"$cli" stat --socket "$sock" --format prometheus >"$tmp/stat.prom" 2>"$tmp/stat.err" || fail "stat --format prometheus: $(cat "$tmp/stat.err")"
promtool check metrics <"$tmp/stat.prom" >"$tmp/promtool2.out" 2>&1 || fail "promtool on stat's output: $(cat "$tmp/promtool2.out")"
grep -q '^ndisshm_packets_delivered_total ' "$tmp/stat.prom" || fail "stat --format prometheus lacks the delivered counter"
"$cli" stat --socket "$sock" --format openmetrics >"$tmp/stat.om" 2>"$tmp/stat.err" || fail "stat --format openmetrics: $(cat "$tmp/stat.err")"
[[ $(tail -n 1 "$tmp/stat.om") == "# EOF" ]] || fail "openmetrics text does not end in # EOF"
grep -q '^# TYPE ndisshm_packets_delivered counter$' "$tmp/stat.om" || fail "openmetrics: the counter's family is not named without _total"
grep -q '^ndisshm_packets_delivered_total ' "$tmp/stat.om" || fail "openmetrics: the counter's sample lacks _total"

# A real Prometheus server scrapes the host and answers a query.
pport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$tmp/prometheus.yml" <<YML
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: ndisshm
    static_configs:
      - targets: ["127.0.0.1:$port"]
YML
prometheus --config.file="$tmp/prometheus.yml" --storage.tsdb.path="$tmp/tsdb" \
    --web.listen-address="127.0.0.1:$pport" >"$tmp/prometheus.log" 2>&1 &
pids+=($!)
answered() {
    get "http://127.0.0.1:$pport/api/v1/query?query=ndisshm_packets_delivered_total" >"$tmp/query.json" 2>/dev/null &&
        python3 - "$tmp/query.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
r = d["data"]["result"]
sys.exit(0 if d["status"] == "success" and r and float(r[0]["value"][1]) > 0 and r[0]["metric"]["job"] == "ndisshm" else 1)
PY
}
wait_for 30 answered || fail "Prometheus never answered for ndisshm_packets_delivered_total: $(cat "$tmp/query.json" 2>/dev/null; tail -5 "$tmp/prometheus.log")"

kill -TERM "${pids[0]}"
wait "${pids[0]}"
rc=$?
[[ $rc == 0 ]] || fail "host exit status $rc after SIGTERM: $(cat "$tmp/host.err")"
if ((failures)); then
    echo "metrics: $failures failure(s)" >&2
    exit 1
fi
echo "metrics: /metrics passes promtool, stat prints both formats, Prometheus scraped the host and answered"

#!/usr/bin/env bash
# End to end with a real Prometheus server (Debian package `prometheus`):
#
# 1. starts the demo on a free loopback port: 40 s of steady load, then a
#    20 s allocation spike (10x per request);
# 2. starts Prometheus on loopback, scraping the demo every second and
#    evaluating examples/prometheus/allocmeter-spike-test.rules.yml (the
#    spike alert with short windows) every second;
# 3. waits, at most $SPIKE_TIMEOUT seconds, until Prometheus's HTTP API
#    reports AllocmeterAllocationRateSpikeTest as firing, and fails if it
#    does not, or if it fires during the steady load before the spike;
# 4. checks that the counters Prometheus scraped agree with the demo's own
#    figures (the service's share of allocmeter::stats_split(), served at
#    /api/stats): a sample scraped after one
#    read of the demo's stats and before another lies between the two.
#
# Every process it started is stopped on exit, pass or fail.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

SPIKE_TIMEOUT=${SPIKE_TIMEOUT:-180}
for tool in prometheus curl python3; do
  command -v "$tool" >/dev/null || { echo "check-prometheus: $tool not found" >&2; exit 1; }
done

# The demo: steady for 40 s (the baseline), then 20 s at 10x (every 60 s).
source .ci/demo.sh --spike-every 60 --spike-for 20
demo_t0=$(date +%s) # the demo starts its clock just after printing its URL
spike_at=$((demo_t0 + 40))

work=$(mktemp -d)
prom_pid=""
stop_all() {
  if [ -n "$prom_pid" ]; then
    kill "$prom_pid" 2>/dev/null || true
    wait "$prom_pid" 2>/dev/null || true
  fi
  stop_demo
  rm -rf "$work"
}
trap stop_all EXIT

demo_hostport=${url#http://}
demo_hostport=${demo_hostport%/}
prom_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
prom="http://127.0.0.1:$prom_port"

cat >"$work/prometheus.yml" <<YAML
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - $root/examples/prometheus/allocmeter-spike-test.rules.yml
scrape_configs:
  - job_name: demo
    static_configs:
      - targets: ["$demo_hostport"]
YAML
promtool check config "$work/prometheus.yml" >/dev/null

prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/data" \
  --web.listen-address="127.0.0.1:$prom_port" --log.level=warn >"$work/prometheus.log" 2>&1 &
prom_pid=$!

# Up and scraping the demo.
up=""
for _ in $(seq 1 300); do
  kill -0 "$prom_pid" 2>/dev/null || { echo "check-prometheus: prometheus exited:" >&2; cat "$work/prometheus.log" >&2; exit 1; }
  up=$(curl -sS --max-time 2 "$prom/api/v1/query?query=up%7Bjob%3D%22demo%22%7D" 2>/dev/null \
    | python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else "")' 2>/dev/null || true)
  [ "$up" = "1" ] && break
  sleep 0.2
done
[ "$up" = "1" ] || { echo "check-prometheus: Prometheus never scraped the demo" >&2; cat "$work/prometheus.log" >&2; exit 1; }
echo "check-prometheus: Prometheus on $prom scrapes the demo on $url"

# The alert must fire.
state=""
start=$(date +%s)
while :; do
  state=$(curl -sS --max-time 2 "$prom/api/v1/alerts" | python3 -c '
import json, sys
alerts = json.load(sys.stdin)["data"]["alerts"]
states = [a["state"] for a in alerts if a["labels"].get("alertname") == "AllocmeterAllocationRateSpikeTest"]
print("firing" if "firing" in states else (states[0] if states else "inactive"))' || echo "error")
  now=$(date +%s)
  elapsed=$(( now - start ))
  if [ "$state" = "firing" ]; then
    if [ "$now" -lt $((spike_at - 2)) ]; then
      echo "check-prometheus: FAILED: the spike alert fired $((spike_at - now)) s before the spike, on steady load" >&2
      exit 1
    fi
    break
  fi
  if [ "$elapsed" -ge "$SPIKE_TIMEOUT" ]; then
    echo "check-prometheus: FAILED: the spike alert did not fire within ${SPIKE_TIMEOUT} s (state: $state)" >&2
    curl -sS --max-time 2 "$prom/api/v1/query?query=instance%3Aallocmeter_alloc_bytes%3Arate5s" >&2 || true
    exit 1
  fi
  sleep 1
done
echo "check-prometheus: AllocmeterAllocationRateSpikeTest quiet on steady load, firing $((now - spike_at)) s after the spike began"

# Scraped counters against the process's own stats(): read A, wait for a
# scrape that started after A, read B; A <= scraped <= B.
stats() { curl -sS --max-time 5 "${url}api/stats"; }
a=$(stats)
python3 - "$prom" "$url" "$a" <<'PY'
import json, sys, time, urllib.request

prom, url, a = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
pairs = {"allocmeter_allocs_total": "allocs", "allocmeter_alloc_bytes_total": "alloc_bytes",
         "allocmeter_frees_total": "frees", "allocmeter_free_bytes_total": "free_bytes"}

def last_sample(metric):
    q = urllib.parse.quote(f'{metric}{{job="demo"}}[10s]')
    with urllib.request.urlopen(f"{prom}/api/v1/query?query={q}", timeout=5) as r:
        result = json.load(r)["data"]["result"]
    ts, value = result[0]["values"][-1]
    return float(ts), float(value)

import urllib.parse
deadline = time.time() + 30
scraped = {}
for metric in pairs:
    while True:
        ts, value = last_sample(metric)
        if ts * 1000 > a["unix_ms"]:
            scraped[metric] = (ts, value)
            break
        if time.time() > deadline:
            sys.exit(f"check-prometheus: no scrape of {metric} after the first read")
        time.sleep(0.2)
with urllib.request.urlopen(f"{url}api/stats", timeout=5) as r:
    b = json.load(r)
bad = []
for metric, field in pairs.items():
    ts, value = scraped[metric]
    lo, hi = a["stats"][field], b["stats"][field]
    ok = lo <= value <= hi
    print(f"check-prometheus: {metric} scraped at {ts:.3f}: {value:.0f}, "
          f"process stats() {lo} .. {hi} -> {'ok' if ok else 'MISMATCH'}")
    if not ok:
        bad.append(metric)
if bad:
    sys.exit(f"check-prometheus: FAILED: scraped counters outside the process's own reads: {bad}")
PY
echo "check-prometheus: OK"

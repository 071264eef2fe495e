#!/usr/bin/env bash
# Starts the demo on a free loopback port, scrapes /metrics over HTTP, and
# checks the exposition with promtool (Debian package `prometheus`).
# Fails if the demo does not come up, the scrape fails, or promtool reports
# any problem (errors or lint findings).
set -euo pipefail
cd "$(dirname "$0")/.."

command -v promtool >/dev/null || { echo "check-metrics: promtool not found (apt-get install prometheus)" >&2; exit 1; }

cargo build --release --example demo
out=$(mktemp) err=$(mktemp) scrape=$(mktemp)
./target/release/examples/demo --bind 127.0.0.1:0 >"$out" 2>"$err" &
demo=$!
cleanup() { kill "$demo" 2>/dev/null || true; wait "$demo" 2>/dev/null || true; rm -f "$out" "$err" "$scrape"; }
trap cleanup EXIT

url=""
for _ in $(seq 1 100); do
  url=$(head -n1 "$out" || true)
  [ -n "$url" ] && break
  kill -0 "$demo" 2>/dev/null || { echo "check-metrics: demo exited early:" >&2; cat "$err" >&2; exit 1; }
  sleep 0.1
done
[ -n "$url" ] || { echo "check-metrics: demo printed no URL within 10 s" >&2; exit 1; }
echo "check-metrics: demo serving on $url"
sleep 1.5 # let the workload allocate a little

headers=$(curl -sS --max-time 10 -D - -o "$scrape" "${url}metrics")
echo "$headers" | grep -qi '^content-type: text/plain; version=0.0.4; charset=utf-8' \
  || { echo "check-metrics: wrong content type:" >&2; echo "$headers" >&2; exit 1; }

report=$(promtool check metrics <"$scrape" 2>&1) || { echo "$report" >&2; echo "check-metrics: promtool failed" >&2; exit 1; }
if [ -n "$report" ]; then
  echo "$report" >&2
  echo "check-metrics: promtool reported problems" >&2
  exit 1
fi
families=$(grep -c '^# TYPE allocmeter_' "$scrape")
echo "check-metrics: promtool check metrics: OK ($families allocmeter_* families, $(wc -l <"$scrape") lines)"

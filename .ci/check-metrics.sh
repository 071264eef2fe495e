#!/usr/bin/env bash
# Starts the demo on a free loopback port, scrapes /metrics over HTTP, and
# checks the exposition with promtool (Debian package `prometheus`).
# Fails if the demo does not come up, the scrape fails, or promtool reports
# any problem (errors or lint findings).
set -euo pipefail
cd "$(dirname "$0")/.."

command -v promtool >/dev/null || { echo "check-metrics: promtool not found (apt-get install prometheus)" >&2; exit 1; }

source .ci/demo.sh
scrape=$(mktemp)
sleep 1.5 # let the workload allocate a little

headers=$(curl -sS --max-time 10 -D - -o "$scrape" "${url}metrics")
grep -qi '^content-type: text/plain; version=0.0.4; charset=utf-8' <<<"$headers" \
  || { echo "check-metrics: wrong content type:" >&2; echo "$headers" >&2; exit 1; }

report=$(promtool check metrics <"$scrape" 2>&1) || { echo "$report" >&2; echo "check-metrics: promtool failed" >&2; exit 1; }
if [ -n "$report" ]; then
  echo "$report" >&2
  echo "check-metrics: promtool reported problems" >&2
  exit 1
fi
families=$(grep -c '^# TYPE allocmeter_' "$scrape")
echo "check-metrics: promtool check metrics: OK ($families allocmeter_* families, $(wc -l <"$scrape") lines)"
rm -f "$scrape"

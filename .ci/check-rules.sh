#!/usr/bin/env bash
# Checks the shipped Prometheus and Grafana configs (examples/prometheus,
# examples/grafana) with promtool (Debian package `prometheus`):
#   - promtool check rules and check config;
#   - every PromQL query of the Grafana dashboard parses;
#   - every allocmeter_* and process_* metric name the configs mention is one
#     the exporter emits (the family tables in exporter/src/render/prometheus/,
#     the prometheus crate's
#     process collector), so a renamed metric cannot silently empty a panel
#     or disarm an alert. Recording-rule names (with a ':') are allowed;
#   - promtool test rules on the rules' unit tests.
# Fails with a message naming what is wrong.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v promtool >/dev/null || { echo "check-rules: promtool not found (apt-get install prometheus)" >&2; exit 1; }
command -v python3 >/dev/null || { echo "check-rules: python3 not found" >&2; exit 1; }

prom=examples/prometheus
dashboard=examples/grafana/allocmeter.json
rules=("$prom/allocmeter.rules.yml" "$prom/allocmeter-spike-test.rules.yml")
tests=("$prom/allocmeter.rules.test.yml" "$prom/allocmeter-spike-test.rules.test.yml")

echo "== promtool check rules"
promtool check rules "${rules[@]}"

echo "== promtool check config (rule_files resolve relative to the config)"
promtool check config "$prom/prometheus.yml"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "== dashboard queries parse"
# Each query becomes a recording rule, with Grafana's variables replaced by
# values, so that promtool parses it.
python3 - "$dashboard" >"$tmp/dashboard.rules.yml" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
exprs = []
def walk(panels):
    for p in panels:
        for t in p.get("targets", []):
            if t.get("expr"):
                exprs.append((p.get("title", "?"), t["expr"]))
        walk(p.get("panels", []))
walk(d["panels"])
subst = {"$__rate_interval": "1m", "$__range": "1h", "$__interval": "1m",
         "$job": "job", "$instance": ".*"}
print("groups:\n  - name: dashboard\n    rules:")
for i, (title, e) in enumerate(exprs):
    for k, v in subst.items():
        e = e.replace(k, v)
    print(f"      # {title}\n      - record: dashboard:query:{i}\n        expr: {json.dumps(e)}")
EOF
promtool check rules "$tmp/dashboard.rules.yml" >/dev/null || {
  promtool check rules "$tmp/dashboard.rules.yml" >&2 || true
  echo "check-rules: a query in $dashboard does not parse" >&2; exit 1; }
echo "  SUCCESS: $(grep -c 'record:' "$tmp/dashboard.rules.yml") queries parse"

echo "== metric names exist"
# Known names: every family in the family tables (families.rs, and the inner
# allocators' in inner/mod.rs), with _bucket/_sum/_count for the
# histograms, and what prometheus::process_collector::ProcessCollector emits.
awk '
  match($0, /name: "allocmeter_[a-z0-9_]+"/) { name = substr($0, RSTART + 7, RLENGTH - 8); print name }
  /kind: MetricType::HISTOGRAM/ && name != "" { print name "_bucket"; print name "_sum"; print name "_count" }
' exporter/src/render/prometheus/families.rs exporter/src/render/prometheus/inner/mod.rs >"$tmp/known"
[ "$(grep -c . "$tmp/known")" -ge 10 ] || { echo "check-rules: found too few metric names in exporter/src/render/prometheus/; has its layout changed?" >&2; exit 1; }
cat >>"$tmp/known" <<'EOF'
process_cpu_seconds_total
process_open_fds
process_max_fds
process_virtual_memory_bytes
process_resident_memory_bytes
process_start_time_seconds
process_threads
EOF
sort -u -o "$tmp/known" "$tmp/known"

files=("$dashboard" "$prom"/*.yml)
# The metric names a file mentions: words containing allocmeter_ or process_,
# except recording rules (with a ':') and prefixes in prose (ending in '_').
names() {
  { grep -oE '[A-Za-z0-9_:]*(allocmeter|process)_[A-Za-z0-9_:]*' "$1" || true; } \
    | awk '!/:/ && !/_$/ && /^(allocmeter|process)_/' | sort -u
}
: >"$tmp/unknown"
: >"$tmp/used"
for f in "${files[@]}"; do
  names "$f" >"$tmp/names"
  cat "$tmp/names" >>"$tmp/used"
  { grep -vxF -f "$tmp/known" "$tmp/names" || true; } | sed "s|^|  $f: |" >>"$tmp/unknown"
done
if [ -s "$tmp/unknown" ]; then
  echo "check-rules: unknown metric names (not in exporter/src/render/prometheus/ or the process collector):" >&2
  cat "$tmp/unknown" >&2
  exit 1
fi
echo "  SUCCESS: $(sort -u "$tmp/used" | wc -l) distinct metric names in ${#files[@]} files, all emitted ($(wc -l <"$tmp/known") known)"
echo "== promtool test rules"
promtool test rules "${tests[@]}"

echo "check-rules: OK"

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
#   - the spike alerts use the statistic and factor of the exporter's spike
#     detector: over DEFAULT_SPIKE_FACTOR x a median (quantile 0.5) of the
#     recorded rate, and (the production rule) over DEFAULT_SPIKE_MIN_RATE,
#     the defaults in exporter/src/aggregate/detector.rs, so that the page
#     and the alert cannot drift apart;
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
echo "== spike alerts agree with the exporter's detector"
python3 - exporter/src/aggregate/detector.rs "${rules[@]}" <<'EOF'
import re, sys
detector, rule_files = sys.argv[1], sys.argv[2:]
src = open(detector).read()
def const(name):
    m = re.search(rf"pub const {name}: \w+ = ([0-9_.]+|1 << [0-9]+);", src)
    if not m:
        sys.exit(f"check-rules: {name} not found in {detector} (a number or 1 << n); has it moved?")
    v = m.group(1).replace("_", "")
    return float(1 << int(v.split("<<")[1])) if "<<" in v else float(v)
factor, floor = const("DEFAULT_SPIKE_FACTOR"), const("DEFAULT_SPIKE_MIN_RATE")
bad = []
for path in rule_files:
    text = open(path).read()
    alert = re.search(r"- alert: (AllocmeterAllocationRateSpike\w*)\s+expr: \|\n(.*?)\n\s+for:", text, re.S)
    if not alert:
        bad.append(f"{path}: no AllocmeterAllocationRateSpike* alert with an expr block")
        continue
    name, expr = alert.group(1), alert.group(2)
    m = re.search(r"> ([0-9.]+) \* \((instance:allocmeter_alloc_bytes:[a-z0-9_]+) offset", expr)
    if not m:
        bad.append(f"{path}: {name} is not `rate > K * (BASELINE offset ...)`")
        continue
    k, baseline = float(m.group(1)), m.group(2)
    if k != factor:
        bad.append(f"{path}: {name} uses factor {k:g}, the detector's default is {factor:g}")
    rec = re.search(rf"- record: {re.escape(baseline)}\s+expr: (.*)", text)
    if not rec or not rec.group(1).startswith("quantile_over_time(0.5, "):
        bad.append(f"{path}: the baseline {baseline} is not a median "
                   "(quantile_over_time(0.5, ...)), the detector's statistic")
    # The production rule's floor is the detector's; the end-to-end variant
    # has its own (the demo's rate).
    if "spike-test" not in path:
        floors = [float(f) for f in re.findall(r"rate5m > ([0-9]+)", expr)]
        if floors != [floor]:
            bad.append(f"{path}: {name} has floor {floors}, the detector's default is {floor:.0f} bytes/s")
    print(f"  {path}: {name}: over {k:g}x {baseline}")
if bad:
    sys.exit("check-rules: the spike alert and the exporter's spike detector disagree:\n  " + "\n  ".join(bad))
print(f"  SUCCESS: factor {factor:g}, median baseline, floor {floor:.0f} bytes/s, as the detector's defaults")
EOF

echo "== promtool test rules"
promtool test rules "${tests[@]}"

echo "check-rules: OK"

#!/usr/bin/env bash
# Starts the demo on a free loopback port, lets it run, and reads its heap
# profiles over HTTP with `go tool pprof` (Debian package `golang-go`):
# the demo's allocating function, build_report, must top both the in-use and
# the allocated-space views. Fails if pprof cannot read a profile.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v go >/dev/null || { echo "check-pprof: go not found (apt-get install golang-go)" >&2; exit 1; }
export PPROF_TMPDIR=$(mktemp -d) HOME=${HOME:-/tmp}

# A small sampling rate, so that a few seconds give plenty of samples.
source .ci/demo.sh --sample-rate 65536
sleep 4

fail=0
for view in "heap" "heap -sample_index=alloc_space" "allocs"; do
  set -- $view
  endpoint=$1; shift
  report=$(go tool pprof -top -nodecount=5 "$@" "${url}debug/pprof/$endpoint" 2>&1) || {
    echo "$report" >&2; echo "check-pprof: go tool pprof failed on /debug/pprof/$endpoint $*" >&2; exit 1; }
  echo "== go tool pprof -top $* ${url}debug/pprof/$endpoint"
  echo "$report"
  # The first entry after the column header is the top function by flat value.
  top=$(echo "$report" | awk '/flat%/ { getline; print; exit }')
  if ! echo "$top" | grep -q 'build_report'; then
    echo "check-pprof: build_report is not at the top of /debug/pprof/$endpoint $*" >&2
    fail=1
  fi
done
[ "$fail" = 0 ] && echo "check-pprof: OK (build_report tops in-use and allocated views)"
exit "$fail"

#!/usr/bin/env bash
# Starts the demo on a free loopback port, lets it run, and reads its heap
# profiles over HTTP with `go tool pprof` (Debian package `golang-go`):
# the demo's allocating function, build_report, must top both the in-use and
# the allocated-space views, and the legacy text form (?debug=1); every
# variant served passes Go's own profile package (Parse, CheckValid; Debian's
# golang-github-google-pprof-dev, installed if missing) and
# go tool pprof -raw. The index
# answers, and the profiles not served get their 404. Fails if pprof cannot
# read a profile.
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
  top=$(awk '/flat%/ { getline; print; exit }' <<<"$report")
  if ! grep -q 'build_report' <<<"$top"; then
    echo "check-pprof: build_report is not at the top of /debug/pprof/$endpoint $*" >&2
    fail=1
  fi
done
# Trait impls' frames keep their whole names (<T as Trait>::f): the profile's
# system_name is the mangled symbol, which pprof does not strip as it does
# names it takes for demangled C++.
report=$(go tool pprof -top -cum -nodecount=30 "${url}debug/pprof/heap" 2>&1)
if grep -qE '<[^ ]+ as [^>]+>>?::' <<<"$report"; then
  echo "== trait-impl frames named whole:"; grep -m3 -E '<[^ ]+ as [^>]+>>?::' <<<"$report"
else
  echo "$report" >&2; echo "check-pprof: no <T as Trait>::f frame named whole in -top -cum" >&2; fail=1
fi

# (Pipes into a reader that may stop early, grep -q or awk's exit, are
# written as here-strings: under pipefail the writer's SIGPIPE would fail the
# script, once in a while.)
#
# Every variant served (the peak profile too), read by Go's own profile package (Parse and
# CheckValid: what Pyroscope and Parca read pprof with) and by
# go tool pprof -raw.
if [ ! -d /usr/share/gocode/src/github.com/google/pprof/profile ]; then
  echo "check-pprof: installing golang-github-google-pprof-dev"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends golang-github-google-pprof-dev >/dev/null
fi
validator="$PPROF_TMPDIR/pprof-validate"
(cd .ci/pprof-validate && GO111MODULE=off GOPATH=/usr/share/gocode GOCACHE="$PPROF_TMPDIR/gocache" \
  go build -o "$validator" .)
for variant in "heap" "allocs" "heap?debug=1" "allocs?debug=1" "heap?gc=1" "allocs?gc=1&debug=0" "allocs?seconds=2" "heap?seconds=2" "peak" "peak?window=1&debug=1"; do
  file="$PPROF_TMPDIR/profile-$(echo "$variant" | tr '?=&' '___')"
  curl -sf "${url}debug/pprof/$variant" -o "$file" || { echo "check-pprof: GET $variant failed" >&2; fail=1; continue; }
  "$validator" "$file" || fail=1
  go tool pprof -raw "$file" >/dev/null 2>"$PPROF_TMPDIR/raw.err" || {
    cat "$PPROF_TMPDIR/raw.err" >&2; echo "check-pprof: go tool pprof -raw failed on $variant" >&2; fail=1; }
done

# Go's legacy text form (?debug=1), read by go tool pprof with the binary
# beside it (the text names the frames for people and carries the memory
# map; pprof symbolizes from the binary).
curl -sf "${url}debug/pprof/heap?debug=1" -o "$PPROF_TMPDIR/heap.txt"
head -n 3 "$PPROF_TMPDIR/heap.txt"
report=$(go tool pprof -top -nodecount=5 target/release/examples/demo "$PPROF_TMPDIR/heap.txt" 2>&1) || {
  echo "$report" >&2; echo "check-pprof: go tool pprof could not read ?debug=1" >&2; exit 1; }
echo "== go tool pprof -top demo heap?debug=1"
echo "$report"
top=$(awk '/flat%/ { getline; print; exit }' <<<"$report")
grep -q 'build_report' <<<"$top" || { echo "check-pprof: build_report is not at the top of ?debug=1" >&2; fail=1; }
# The index, and the profiles a continuous profiler asks for that are not served.
index=$(curl -sf "${url}debug/pprof/" || true)
grep -q "href='heap?debug=1'" <<<"$index" || { echo "check-pprof: no index at /debug/pprof/" >&2; fail=1; }
for p in "profile?seconds=14" block mutex goroutine; do
  code=$(curl -s -o "$PPROF_TMPDIR/body" -w '%{http_code}' "${url}debug/pprof/$p")
  if [ "$code" != 404 ] || ! grep -q "not served" "$PPROF_TMPDIR/body"; then
    echo "check-pprof: /debug/pprof/$p answered $code: $(cat "$PPROF_TMPDIR/body")" >&2; fail=1
  fi
done
[ "$fail" = 0 ] && echo "check-pprof: OK (build_report tops in-use and allocated views, and the text form; index and not-served answers)"
exit "$fail"

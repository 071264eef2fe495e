#!/usr/bin/env bash
# What the demo tells the person who runs it, read from its stdout:
# 1. it starts the demo on a free loopback port with a short spike schedule
#    (a 10x spike for 5 s every 15 s: the first from 10 s to 15 s);
# 2. checks the start-up lines: the URL first (the other checks read it
#    there), then the live page, /metrics, a ready-to-paste
#    `go tool pprof -http=: URL/debug/pprof/allocs` line, the other profiles
#    and one line per /api endpoint; every URL printed must answer 200;
# 3. waits (60 s at most) for one line when the spike starts and one when it
#    ends, each naming the demo's spiking function (demo::build_report) and
#    its file:line, the end line with its peak rate;
# 4. sends SIGINT and expects, within 20 s, exit status 0 and the summary
#    line (`demo: stopped on SIGINT ...`);
# 5. starts it again and does the same with SIGTERM (what `kill`, systemd
#    and the other checks send).
# On a failure it prints what the demo wrote to stdout and stderr.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
target=${CARGO_TARGET_DIR:-target}
started=$(date +%s)

cargo build --release --example demo
# A copy under a name of its own: whatever stops demo processes by name on a
# shared machine (another check's clean-up) leaves this one running.
work=$(mktemp -d)
pid=""
cleanup() {
  if [ -n "$pid" ]; then kill -KILL "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
demo="$work/allocmeter-demo-check"
cp "$target/release/examples/demo" "$demo"

fail() {
  echo "check-demo: FAILED: $*" >&2
  echo "--- the demo's stdout:" >&2
  cat "$work/out" >&2 || true
  echo "--- the demo's stderr:" >&2
  cat "$work/err" >&2 || true
  exit 1
}

# start ARGS...: starts the demo, waits for its URL (10 s at most).
start() {
  : >"$work/out"
  : >"$work/err"
  "$demo" --bind 127.0.0.1:0 "$@" >"$work/out" 2>"$work/err" &
  pid=$!
  wait_for '^http://' 10
  url=$(head -n1 "$work/out")
  [[ $url =~ ^http://127\.0\.0\.1:[0-9]+/$ ]] || fail "the first line is not the URL: '$url'"
}

# wait_for REGEX SECS: waits until a line of the demo's stdout matches.
wait_for() {
  local deadline=$((SECONDS + $2))
  until grep -Eq -- "$1" "$work/out"; do
    kill -0 "$pid" 2>/dev/null || fail "the demo exited before printing a line matching /$1/"
    [ "$SECONDS" -lt "$deadline" ] || fail "no line matching /$1/ within $2 s"
    sleep 0.2
  done
}

# has REGEX WHAT: the demo's stdout has a line matching REGEX.
has() {
  grep -Eq -- "$1" "$work/out" || fail "no line $2 (/$1/)"
}

# stop SIGNAL: sends it; the demo must exit 0 within 20 s with its summary.
stop() {
  local sig=$1 t0=$SECONDS status=0
  kill -s "$sig" "$pid"
  while kill -0 "$pid" 2>/dev/null; do
    if [ $((SECONDS - t0)) -ge 20 ]; then
      fail "the demo was still running 20 s after SIG$sig"
    fi
    sleep 0.1
  done
  wait "$pid" || status=$?
  pid=""
  [ "$status" -eq 0 ] || fail "exit status $status after SIG$sig (128+N: killed by signal N)"
  has "^demo: stopped on SIG$sig after [0-9.]+ s: .*requests" "with the summary after SIG$sig"
  echo "check-demo: SIG$sig: exit status 0 after $((SECONDS - t0)) s; $(grep -E '^demo: stopped' "$work/out")"
}

re() { sed 's/[.[\*^$()+?{|]/\\&/g' <<<"$1"; } # a literal for grep -E

start --spike-every 15 --spike-for 5
u=$(re "$url")
wait_for "api/spikes" 5
has "^ +page +${u}( |\$)" "naming the live page"
has "^ +metrics +${u}metrics( |\$)" "naming /metrics"
has "go tool pprof -http=: ${u}debug/pprof/allocs\$" "with a ready-to-paste go tool pprof line"
for path in debug/pprof/heap debug/pprof/peak; do
  has " ${u}${path}( |\$)" "naming /$path"
done
for path in api/snapshot api/history api/sites api/spikes api/hints api/peak; do
  has "^ +(api +)?${u}${path}[^ ]* +[a-z]" "for /$path, with what it serves"
done
# Every URL it printed answers.
urls=$(grep -Eo "${u}[^ ]*" "$work/out" | sort -u)
for each in $urls; do
  code=$(curl -s -o /dev/null --max-time 30 -w '%{http_code}' "$each") || code="none ($?)"
  [ "$code" = 200 ] || fail "$each answered $code"
done
echo "check-demo: start-up lines name the page, /metrics, the profiles and the API; all $(wc -w <<<"$urls") URLs answer 200"

wait_for '^spike 1 started' 60
has '^spike 1 started .*demo::build_report .*demo\.rs:[0-9]+' "for the spike's start naming demo::build_report and its file:line"
wait_for '^spike 1 ended' 30
has '^spike 1 ended .*peak [0-9.]+ [kMG]?B/s.*demo::build_report .*demo\.rs:[0-9]+' \
  "for the spike's end with its peak and demo::build_report at its file:line"
grep -E '^spike 1 ' "$work/out" | sed 's/^/check-demo: /'
stop INT

start
wait_for "api/spikes" 5
stop TERM
echo "check-demo: OK ($(($(date +%s) - started)) s)"

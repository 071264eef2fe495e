#!/usr/bin/env bash
# The live page in a real browser: Debian's Chromium, headless,
# driven by playwright-core (pinned in .ci/browser/package-lock.json; it
# never downloads a browser of its own) against the demo:
#
# 1. installs chromium (apt) and playwright-core (npm ci) if missing;
# 2. builds the demo and starts it on a free loopback port with a 5 s
#    allocation spike every 20 s;
# 3. runs .ci/browser/check-dashboard.js, which checks that the page loads
#    and runs for 40 s with no console or page errors, that every chart draws
#    data, that the figures move, that a spike is marked on the rate chart and
#    listed with the demo's allocating function among its top sites, that the
#    Hints panel shows a hint on that function (technique, site, saving, and
#    its details on demand), its empty state and a declined row (from
#    rewritten answers), and says "not exposed", with no error, when
#    /api/hints answers 404 or call sites are off, that the page fits a
#    phone's width, that failing /api requests show a
#    "Reconnecting…" banner over the last data and that the page recovers,
#    and that it follows the demo through a restart; screenshots at 1440x900
#    and 390x844 go to target/dashboard-artifacts/{desktop,phone}.png.
#
# Every demo it started is stopped on exit, pass or fail. On a failure it
# says whether the demo was still running, with the end of its stderr.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
started=$(date +%s)

if [ ! -x /usr/bin/chromium ]; then
  echo "check-dashboard: installing chromium"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
if ! command -v npm >/dev/null; then
  echo "check-dashboard: installing nodejs and npm"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi
echo "check-dashboard: $(/usr/bin/chromium --version 2>/dev/null || echo 'chromium: version unknown'), node $(node --version)"
# playwright-core downloads no browser; the variable makes sure nothing tries.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
(cd .ci/browser && npm ci --no-audit --no-fund --loglevel=error)

# The demo: steady load with a 5 s spike (10x per request) every 20 s. With
# --spike-factor (when the demo has it) the detector's threshold is set
# explicitly rather than left at the library's default.
cargo build --release --example demo
demo_args=(--spike-every 20 --spike-for 5)
demo_help=$(./target/release/examples/demo --help 2>&1 || true) # usage, exit code 2
if grep -q -- --spike-factor <<<"$demo_help"; then
  demo_args+=(--spike-factor 4)
fi
source .ci/demo.sh "${demo_args[@]}"

# The browser check restarts the demo once on the same address; it writes
# the new pid here so that it is stopped too.
pidfile=$(mktemp)
stop_all() {
  while read -r pid; do
    kill "$pid" 2>/dev/null || true
  done <"$pidfile"
  rm -f "$pidfile"
  stop_demo
}
trap stop_all EXIT

hostport=${url#http://}
hostport=${hostport%/}
demo_cmd=$(python3 -c 'import json, sys; print(json.dumps(sys.argv[1:]))' \
  "$root/target/release/examples/demo" --bind "$hostport" "${demo_args[@]}")

export DASHBOARD_URL="$url"
export DEMO_PID="$demo"
export DEMO_CMD="$demo_cmd"
export DEMO_PIDFILE="$pidfile"
export ARTIFACTS="$root/target/dashboard-artifacts"
export SPIKE_FUNCTION=build_report # examples/demo.rs: the demo's allocating function
status=0
timeout 600 node .ci/browser/check-dashboard.js || status=$?
if [ "$status" -ne 0 ]; then
  if kill -0 "$demo" 2>/dev/null; then
    echo "check-dashboard: the demo (pid $demo) was still running"
  else
    demo_status=0
    wait "$demo" 2>/dev/null || demo_status=$?
    echo "check-dashboard: the demo (pid $demo) was no longer running, exit status $demo_status (128+N: signal N; the restart check stops it on purpose); its stderr ends:"
    tail -n 20 "$demo_err" | sed 's/^/  /'
  fi
fi
echo "check-dashboard: took $(($(date +%s) - started)) s"
exit "$status"

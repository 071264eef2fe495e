# Sourced by the check scripts: builds the demo, starts it on a free loopback
# port, and sets $url (http://IP:PORT/) and $demo (its pid). The demo is killed
# when the sourcing script exits, whether it passes or fails (SIGTERM: it
# shuts down cleanly and exits 0). Its stdout is in $demo_out: the URL on the
# first line, then what it serves, then a line per spike start and end.
cargo build --release --example demo
demo_out=$(mktemp) demo_err=$(mktemp)
"${CARGO_TARGET_DIR:-target}/release/examples/demo" --bind 127.0.0.1:0 "$@" >"$demo_out" 2>"$demo_err" &
demo=$!
stop_demo() {
  kill "$demo" 2>/dev/null || true
  wait "$demo" 2>/dev/null || true
  rm -f "$demo_out" "$demo_err"
}
trap stop_demo EXIT

url=""
for _ in $(seq 1 100); do
  url=$(head -n1 "$demo_out" || true)
  [ -n "$url" ] && break
  kill -0 "$demo" 2>/dev/null || { echo "demo exited early:" >&2; cat "$demo_err" >&2; exit 1; }
  sleep 0.1
done
[ -n "$url" ] || { echo "demo printed no URL within 10 s" >&2; exit 1; }
echo "demo serving on $url"

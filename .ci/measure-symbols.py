#!/usr/bin/env python3
"""What looking costs the demo: its resident set (VmRSS), its live heap and
allocmeter's telemetry, before any look, after the first heap profile, after
the first site report, and after the symbolizer's idle release.

    python3 .ci/measure-symbols.py [--bin PATH] [--idle SECONDS] [--json PATH]

--bin is a built demo (default target/release/examples/demo, or under
$CARGO_TARGET_DIR); build a `debug = 2` one with
    cargo build --release --example demo --config 'profile.release.debug=2'
--idle is how long to wait for the release (default 65: the exporter's
default idle period is 60 s, checked at each 1 s tick). --json writes the
readings as one JSON object (for benches/run_all.py).

"Heap" is the process's live heap: the service's share plus allocmeter's
own (the exporter's, where the symbolizer's memory is counted), both from
/api/snapshot.

The demo keeps allocating (its steady load), so its heap moves by a few
hundred KiB between readings on its own. Not a test: it prints figures.
"""

import argparse
import gzip
import json
import os
import re
import subprocess
import sys
import time
import urllib.request


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def get(url):
    with urllib.request.urlopen(url, timeout=60) as r:
        return r.read()


def reading(pid, url, label):
    snap = json.loads(get(url + "api/snapshot"))
    stats = snap["stats"]
    exporter = snap.get("exporter", {})
    # The Prometheus telemetry adds the exporter's own structures (site
    # table, symbolizer) to the allocator's; it is read from the text
    # format. Scraping does not symbolize here: the demo's per-site series
    # are read last, below, only for the exporter's figure.
    row = {
        "when": label,
        "rss_kib": rss_kib(pid),
        "heap_live_bytes": stats["live_bytes"] + exporter.get("live_bytes", 0),
        "service_heap_live_bytes": stats["live_bytes"],
        "exporter_heap_live_bytes": exporter.get("live_bytes", 0),
        "telemetry_bytes": stats["telemetry_bytes"],
    }
    print(
        f"{label:<34} VmRSS {row['rss_kib'] / 1024:7.1f} MiB   "
        f"heap live {row['heap_live_bytes'] / 2**20:7.2f} MiB "
        f"(service {row['service_heap_live_bytes'] / 2**20:.2f}, "
        f"allocmeter {row['exporter_heap_live_bytes'] / 2**20:.2f})",
        flush=True,
    )
    return row


def metric(url, name):
    text = get(url + "metrics").decode()
    m = re.search(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M)
    return float(m.group(1)) if m else None


def main():
    ap = argparse.ArgumentParser()
    target = os.environ.get("CARGO_TARGET_DIR", "target")
    ap.add_argument("--bin", default=f"{target}/release/examples/demo")
    ap.add_argument("--idle", type=float, default=65.0)
    ap.add_argument("--json", help="write the readings here as one JSON object")
    args = ap.parse_args()

    size = os.path.getsize(args.bin)
    print(f"binary {args.bin}: {size / 2**20:.1f} MiB")
    demo = subprocess.Popen(
        [args.bin, "--bind", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        url = demo.stdout.readline().strip()
        if not url.endswith("/"):
            url += "/"
        time.sleep(3)  # the steady load settles
        rows = [reading(demo.pid, url, "before any look")]
        t = time.monotonic()
        body = get(url + "debug/pprof/heap")
        took = time.monotonic() - t
        gzip.decompress(body)
        first_profile_ms = took * 1000
        rows.append(reading(demo.pid, url, f"after /debug/pprof/heap ({took * 1000:.0f} ms)"))
        t = time.monotonic()
        sites = json.loads(get(url + "api/sites"))
        took = time.monotonic() - t
        rows.append(reading(demo.pid, url, f"after /api/sites ({took * 1000:.0f} ms)"))
        print(f"  top site: {sites['sites'][0]['function'] if sites.get('sites') else None}")
        own = metric(url, "allocmeter_telemetry_bytes")
        print(f"  allocmeter_telemetry_bytes (with the exporter's own) {own / 2**20:.2f} MiB")
        # /metrics of the demo symbolizes its top 10 sites (site_metrics), so
        # the idle period starts from this scrape.
        time.sleep(args.idle)
        rows.append(reading(demo.pid, url, f"after {args.idle:.0f} s idle"))
        # Read without symbolizing: /api/snapshot does not name sites.
        base = rows[0]
        for row in rows[1:]:
            print(
                f"  {row['when']:<34} +{(row['rss_kib'] - base['rss_kib']) / 1024:6.1f} MiB RSS  "
                f"+{(row['heap_live_bytes'] - base['heap_live_bytes']) / 2**20:6.2f} MiB heap"
            )
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"binary": args.bin, "binary_bytes": size,
                           "first_profile_ms": first_profile_ms,
                           "idle_seconds": args.idle, "readings": rows}, f, indent=1)
    finally:
        demo.terminate()
        demo.wait()


if __name__ == "__main__":
    sys.exit(main())

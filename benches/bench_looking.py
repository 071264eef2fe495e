"""What looking costs: the figures of the sampled path and the exporter under
load, each measured by a program of its own that prints one JSON object.

- `looking_burst` (benches/src/bin/looking_burst.rs): a sampling burst on
  oversubscribed cores; the estimate's error and the samples lost.
- `.ci/measure-symbols.py`: the heap and RSS the first profile adds to the
  demo, built as the workspace builds it (`debug = 1`) and with `debug = 2`,
  and what is left after the symbolizer's idle release.
- `looking_scrapes` (benches/src/bin/looking_scrapes.rs): `/metrics` latency
  while 40 clients stall on large reports.
- `exporter_bill` (benches/src/bin/exporter_bill.rs): the exporter's own
  bill: CPU, wall time and heap blocks per scrape and per profile at 1,000
  and 10,000 call sites, and its threads' CPU and wake-ups, idle and while
  the service allocates 1 GB/s (its own section, `section_bill`, which
  `section_looking` ends with).

This module gives the commands (`looking_commands`, run by bench_run.py) and
the report's section (`section_looking`). Python 3 stdlib only.
"""

import json
from pathlib import Path

from bench_tables import NA, md_table

BURST = "target/looking_burst.json"
SCRAPES = "target/looking_scrapes.json"
SYMBOLS = "target/looking_symbols.json"
SYMBOLS_DEBUG2 = "target/looking_symbols_debug2.json"
BILL = "target/exporter_bill.json"
DEBUG2_DIR = "target/looking-debug2"


def looking_commands(quick):
    """[(argv, env)]: argv ending in [">", path] writes its stdout there."""
    q = ".quick" if quick else ""
    burst = ["cargo", "run", "--release", "-q", "-p", "allocmeter-benches", "--bin",
             "looking_burst", "--"] + (["1", "1"] if quick else ["5", "2"])
    # The dev profile: there the call-site generator's stacks stay thousands
    # of sites, a report of several MB (see the program's docs).
    scrapes = ["cargo", "run", "-q", "-p", "allocmeter-benches", "--bin", "looking_scrapes"] + (
        ["--", "--seconds", "3"] if quick else [])
    demo = ["cargo", "build", "--release", "-q", "--example", "demo"]
    # Without --bin: the demo that `demo` built, under $CARGO_TARGET_DIR if set.
    symbols = ["python3", ".ci/measure-symbols.py",
               "--json", SYMBOLS.replace(".json", q + ".json")] + (["--idle", "2"] if quick else [])
    bill = ["cargo", "run", "--release", "-q", "-p", "allocmeter-benches", "--bin",
            "exporter_bill"] + (["--", "--quick"] if quick else [])
    cmds = [(burst + [">", BURST.replace(".json", q + ".json")], {}),
            (scrapes + [">", SCRAPES.replace(".json", q + ".json")], {}),
            (bill + [">", BILL.replace(".json", q + ".json")], {}),
            (demo, {}), (symbols, {})]
    if not quick:
        cmds += [(demo + ["--config", "profile.release.debug=2", "--target-dir", DEBUG2_DIR], {}),
                 (["python3", ".ci/measure-symbols.py", "--bin",
                   f"{DEBUG2_DIR}/release/examples/demo", "--json", SYMBOLS_DEBUG2], {})]
    return cmds


def load(root, path):
    try:
        return json.loads((Path(root) / path).read_text())
    except (OSError, ValueError):
        return None


def mib(v):
    return NA if v is None else f"{v / 2**20:.2f} MiB"


def burst_rows(b):
    if not b:
        return [["burst", NA, NA, NA, NA, NA]]
    rows = []
    for i, r in enumerate(b.get("runs", []), 1):
        rows.append([f"burst {i}", f"{r['expected_bytes'] / 2**30:.2f} GiB",
                     f"{r['relative_error'] * 100:+.2f} %", f"{r['samples_taken']:,}",
                     f"{r['samples_dropped']:,}", f"{r['samples_carried']:,}"])
    return rows


def symbols_row(label, s):
    if not s:
        return [label, NA, NA, NA, NA, NA, NA]
    before, profile, _sites, idle = (s["readings"] + [None] * 4)[:4]
    kib = 1024
    return [label, f"{s['binary_bytes'] / 2**20:.1f} MiB", f"{s['first_profile_ms']:.0f} ms",
            f"+{(profile['heap_live_bytes'] - before['heap_live_bytes']) / 2**20:.2f} MiB",
            f"+{(profile['rss_kib'] - before['rss_kib']) / kib:.1f} MiB",
            f"{(profile['service_heap_live_bytes'] - before['service_heap_live_bytes']) / 2**20:+.2f} MiB",
            NA if not idle else
            f"{(idle['heap_live_bytes'] - before['heap_live_bytes']) / 2**20:+.2f} MiB "
            f"after {s['idle_seconds']:.0f} s"]


# The targets: estimates within this of the truth in a burst (where at least
# 1,000 samples are expected); what the first profile may add to the demo;
# the slowest scrape while clients stall.
TARGET_BURST_ERROR = 0.10
TARGET_FIRST_LOOK_HEAP = 8 << 20
TARGET_FIRST_LOOK_RSS = 16 << 20
TARGET_SCRAPE_MS = 1000.0


def looking_targets(burst, symbols, symbols2, scrapes, quick):
    """The targets, each met or NOT met by this run's figures (none in a
    smoke run: it measures nothing)."""
    if quick:
        return []
    out = []

    def line(ok, text):
        out.append(f"- {'met' if ok else '**NOT met**'}: {text}")

    if burst and burst.get("runs"):
        worst = max(abs(r["relative_error"]) for r in burst["runs"])
        lost = sum(r["samples_dropped"] for r in burst["runs"])
        line(worst <= TARGET_BURST_ERROR and lost == 0,
             f"burst on oversubscribed cores: worst estimate error {worst * 100:.1f} % "
             f"(target ≤ {TARGET_BURST_ERROR * 100:.0f} %), {lost} samples dropped")
    for label, s in (("`debug = 1`", symbols), ("`debug = 2`", symbols2)):
        if not s:
            continue
        before, profile = s["readings"][0], s["readings"][1]
        heap = profile["heap_live_bytes"] - before["heap_live_bytes"]
        rss = (profile["rss_kib"] - before["rss_kib"]) * 1024
        line(heap <= TARGET_FIRST_LOOK_HEAP and rss <= TARGET_FIRST_LOOK_RSS,
             f"the demo's first profile ({label}): +{heap / 2**20:.2f} MiB heap, "
             f"+{rss / 2**20:.1f} MiB RSS (targets ≤ 8 MiB, ≤ 16 MiB)")
    if scrapes:
        worst = scrapes["scrape_latency_ms"]["max"]
        line(worst <= TARGET_SCRAPE_MS and scrapes["scrape_failures"] == 0,
             f"scrapes with {scrapes['clients']} clients stalled: slowest {worst:.1f} ms, "
             f"{scrapes['scrape_failures']} not 200 (target: all 200 within 1 s)")
    return out + [""] if out else []


def ms(v):
    return NA if v is None else (f"{v:.2f} ms" if v < 10 else f"{v:.1f} ms")


def share(v):
    return NA if v is None else f"{v * 100:.3f} %"


def bill_request_rows(label, part):
    """One row per size and path of a scrape part of `exporter_bill`."""
    rows = []
    for size in (part or {}).get("sizes", []):
        for p in size["paths"]:
            rows.append([label, f"{size['table_sites']:,}", f"`{p['path']}`",
                         ms(p["service_cpu_ms"]["median"]), ms(p["service_cpu_ms"]["p90"]),
                         ms(p["process_cpu_ms"]["median"]),
                         ms(p["wall_ms"]["median"]), ms(p["wall_ms"]["p90"]),
                         f"{p['allocs']['median']:,.0f}",
                         f"{p['response_bytes'] / 1024:,.1f} KiB",
                         f"{ms(p['first']['service_cpu_ms'])}, {p['first']['allocs']:,}"])
    return rows


def bill_thread_rows(label, window):
    """The exporter's threads over one window: the aggregator, the HTTP I/O
    thread, and the three render workers summed."""
    if not window:
        return []
    threads = window["threads"]

    def row(name, ts):
        if not ts:
            return None
        return [label, name, share(sum(t["cpu_share"] for t in ts)),
                f"{sum(t['wakeups_per_sec'] for t in ts):.1f}"]

    rows = [row("aggregator", [t for t in threads if t["thread"] == "allocmeter-aggr"]),
            row("HTTP I/O", [t for t in threads if t["thread"] == "allocmeter-http (I/O)"]),
            row("HTTP workers (3, summed)",
                [t for t in threads if t["thread"] == "allocmeter-http (worker)"])]
    return [r for r in rows if r]


def bill_slopes(label, part):
    """What each site adds to a request of a scrape part, from its smallest
    table to its largest: a line per path."""
    sizes = (part or {}).get("sizes", [])
    if len(sizes) < 2:
        return []
    lo, hi = sizes[0], sizes[-1]
    added = hi["table_sites"] - lo["table_sites"]
    out = []
    for a, b in zip(lo["paths"], hi["paths"]):
        cpu = (b["service_cpu_ms"]["median"] - a["service_cpu_ms"]["median"]) * 1e3 / added
        blocks = (b["allocs"]["median"] - a["allocs"]["median"]) / added
        out.append(f"- {label}, `{a['path']}`: {cpu:+.2f} µs of service CPU and "
                   f"{blocks:+.2f} heap blocks per site")
    return out


def section_bill(root, quick):
    """BENCHMARKS.md's section on the exporter's own bill (`exporter_bill`)."""
    bill = load(root, BILL.replace(".json", ".quick.json" if quick else ".json"))
    doc = ["## The exporter's own bill: CPU, heap blocks and wake-ups\n"]
    if quick:
        doc.append("Smoke run: small tables, a few requests, 1 s windows; the figures show\n"
                   "that the program runs, not what looking costs.\n")
    sizes = [z["table_sites"] for z in ((bill or {}).get("scrapes") or {}).get("sizes", [])]
    paths = ((bill or {}).get("scrapes") or {}).get("sizes", [{}])[0].get("paths", [{}])
    requests = paths[0].get("requests", 50) if paths else 50
    doc.append("```sh\ncargo run --release -q -p allocmeter-benches --bin exporter_bill"
               + (" -- --quick" if quick else "") + " > " + BILL.replace(".json", ".quick.json"
                                                          if quick else ".json")
               + "   # about a minute\n```\n")
    doc.append("`exporter_bill` (release build): what looking costs the service, on the\n"
               "exporter's side. An exporter with the builder's defaults over a site table\n"
               "built at sample rate 1 from `distinct_call_sites` (one kept block per\n"
               "site, one site per stack in a release build), of "
               + " and then ".join(f"{n:,}" for n in sizes or [1000, 10000]) + " sites\n"
               "(10,000 is the table's default limit); then, sampling off, each path asked\n"
               "over a new connection, one request at a time, 3 times to warm up and then\n"
               f"{requests} times. **Service CPU** is the process's CPU time over the request\n"
               "less the client thread's (the exporter's threads, and the kernel's work on\n"
               "their behalf); **process CPU** includes the client's; both from\n"
               "`CLOCK_*_CPUTIME_ID`, median and 90th percentile of the requests.\n"
               "**Heap blocks**: what the exporter's threads allocated for the request,\n"
               "exactly (`allocmeter::stats_split`'s internal share; the process\n"
               "collector's share in a release build is smaller than the debug build's\n"
               "that `alloc_budgets` pins). **First**: the first request's service CPU and\n"
               "heap blocks (the first profile loads the symbolizer).\n"
               "`/debug/pprof/allocs` is the same render as `/debug/pprof/heap` with\n"
               "another default sample type. The second configuration adds per-site\n"
               "series to `/metrics` (`Builder::site_metrics(50)`, the most it takes).\n")
    if not bill:
        doc.append("n/a\n")
        return doc
    doc.append(md_table(
        ["settings", "sites", "request", "service CPU", "p90", "process CPU", "wall", "p90",
         "heap blocks", "response", "first (CPU, blocks)"],
        bill_request_rows("default", bill.get("scrapes"))
        + bill_request_rows("`site_metrics(50)`", bill.get("scrapes_site_metrics")),
        ["---", "---:", "---"] + ["---:"] * 8))
    slopes = (bill_slopes("default", bill.get("scrapes"))
              + bill_slopes("`site_metrics(50)`",
                            {"sizes": [dict(z, paths=z["paths"][:1]) for z in
                                       (bill.get("scrapes_site_metrics") or {}).get("sizes", [])]}))
    if slopes:
        doc.append("What each site adds (from the smaller table to the larger, medians):\n")
        doc.append("\n".join(slopes) + "\n")
        doc.append("`/metrics` reads only the table's size and overflow, so its cost does not\n"
                   "move with the sites. A profile copies every site out of the aggregator,\n"
                   "trims and merges them (a block each for the copied and the trimmed\n"
                   "stack) and encodes them (a block each for a sample's locations and\n"
                   "values). The per-site series rank the sites merged as a profile merges\n"
                   "them, so their 50 series cost a scrape about what a profile's merge\n"
                   "costs. The merge took two blocks more per site before each trimmed stack\n"
                   "was built once and moved instead of copied (at 10,000 sites: a profile\n"
                   "60,451 blocks, the per-site series' scrape 40,930 and 30 ms).\n")
    load_avg = bill.get("load_average")
    if load_avg:
        doc.append(f"The machine's one-minute load average was {load_avg[0]:.1f} before the run "
                   f"and {load_avg[1]:.1f} after\n(other work on its {bill.get('cores', 0)} cores); "
                   "CPU times per request move with it, by half and more.\n")
    t = bill.get("threads") or {}
    idle_table = (bill.get("scrapes") or {}).get("idle_with_table")
    window = t.get("idle", {}).get("seconds")
    doc.append(f"The exporter's threads, with the builder's defaults (a tick every\n"
               f"{t.get('interval_ms', 1000) / 1000:.0f} s, the default 512 KiB sample rate), "
               f"over {window or 0:.0f} s windows: each\n"
               "thread's CPU time (`/proc/self/task/TID/schedstat`) as a share of one core,\n"
               "and its wake-ups (voluntary and involuntary context switches). Idle: the\n"
               "service does nothing and nobody scrapes. 1 GB/s: one service thread\n"
               "allocates and frees a 64 KiB block and 16 blocks of 16 B to 4 KiB per turn,\n"
               "paced to 1 GB/s, on a machine of "
               f"{bill.get('cores', 0)} cores.\n")
    rows = (bill_thread_rows("idle", t.get("idle"))
            + bill_thread_rows("1 GB/s", t.get("allocating"))
            + bill_thread_rows(f"idle, {sizes[-1]:,}-site table" if sizes else "idle, table",
                               idle_table))
    doc.append(md_table(["service", "thread", "CPU share", "wake-ups/s"], rows,
                        ["---", "---", "---:", "---:"]))
    if t:
        doc.append(f"Reached {t['reached_bytes_per_sec'] / 1e9:.2f} GB/s "
                   f"({t['blocks_per_sec'] / 1e3:,.0f} thousand blocks/s); "
                   f"{t['samples']:,} samples taken, {t['dropped']} dropped, "
                   f"{t['carried']} carried.\n")
    doc.append("An idle aggregator used to wake at the allocator's longest drain interval,\n"
               "20 times a second (0.079 % of a core, mostly the wake-ups themselves);\n"
               "once its drains have found nothing for a whole interval it now sleeps\n"
               "until its next tick, and a ring half full, or the first drain that finds\n"
               "samples, brings back the polling.\n")
    return doc


def section_looking(root, quick):
    """BENCHMARKS.md's section on what looking costs (or, in a smoke run,
    that its programs ran)."""
    q = ".quick" if quick else ""
    burst = load(root, BURST.replace(".json", q + ".json"))
    scrapes = load(root, SCRAPES.replace(".json", q + ".json"))
    symbols = load(root, SYMBOLS.replace(".json", q + ".json"))
    symbols2 = None if quick else load(root, SYMBOLS_DEBUG2)
    doc = ["## What looking costs\n"]
    doc += looking_targets(burst, symbols, symbols2, scrapes, quick)
    if quick:
        doc.append("Smoke run: each program ran once at a small scale; the figures below show\n"
                   "that it works, not what it costs.\n")
    doc.append("### Samples kept under oversubscription\n")
    doc.append("`looking_burst`: one thread allocates and frees 48 KiB blocks as fast as it\n"
               "can from a 30-frame stack at the default 512 KiB rate, while four threads\n"
               "per core spin; an exporter drains. The site's allocated-bytes estimate\n"
               "against the bytes allocated (one estimate's relative standard deviation\n"
               "is about 1/√samples: 1.6 % at 3,900 samples).\n")
    doc.append(md_table(["run", "allocated", "estimate error", "samples", "dropped", "carried"],
                        burst_rows(burst), ["---", "---:", "---:", "---:", "---:", "---:"]))
    if burst:
        doc.append(f"Sample rings at their peak: {burst['ring_bytes_peak'] / 2**20:.2f} MiB "
                   f"(after the bursts: {burst['ring_bytes_after'] / 2**10:.0f} KiB); "
                   f"{burst['spinning_threads']} spinning threads on {burst['cores']} cores.\n")
    doc.append("### The first profile's memory\n")
    doc.append("`.ci/measure-symbols.py`: the demo's heap (the service's share plus\n"
               "allocmeter's, from `/api/snapshot`) and RSS before any look and after the\n"
               "first `/debug/pprof/heap`, which loads the symbolizer; the service's share\n"
               "must not move; then after the symbolizer's idle release (60 s). The demo\n"
               "keeps its steady load running, so its heap moves by some 100 KiB on its own.\n")
    doc.append(md_table(["demo build", "binary", "first profile", "heap added", "RSS added",
                         "service's heap moved", "heap vs. before, after idle"],
                        [symbols_row("release, `debug = 1` (the workspace's)", symbols),
                         symbols_row("release, `debug = 2`", symbols2)]
                        if not quick else [symbols_row("release, `debug = 1`", symbols)],
                        ["---", "---:", "---:", "---:", "---:", "---:", "---:"]))
    doc.append("### Scrapes while clients stall on large reports\n")
    doc.append("`looking_scrapes`: 40 clients ask for `/api/sites?top=1000` and read none of\n"
               "it while `/metrics` is scraped every 100 ms (dev build, where the call-site\n"
               "generator's stacks stay thousands of sites).\n")
    if scrapes:
        lat = scrapes["scrape_latency_ms"]
        doc.append(md_table(
            ["scrapes", "not 200", "p50", "p99", "max", "report", "reports refused (503)",
             "RSS growth", "response budget"],
            [[f"{scrapes['scrapes']}", f"{scrapes['scrape_failures']}", f"{lat['p50']:.1f} ms",
              f"{lat['p99']:.1f} ms", f"{lat['max']:.1f} ms",
              f"{scrapes['report_bytes'] / 2**20:.1f} MiB", f"{scrapes['refused_503']}",
              f"{scrapes['rss_growth_bytes'] / 2**20:.1f} MiB",
              f"{scrapes['budget_bytes'] / 2**20:.0f} MiB"]],
            ["---:"] * 9))
    else:
        doc.append("n/a\n")
    return doc + section_bill(root, quick)

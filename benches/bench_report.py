"""The prose and tables of BENCHMARKS.md (and of the smoke run's
target/BENCHMARKS.quick.md), one `section_*` per section, each a list of
Markdown blocks; `header`, `quick_sections` and `full_sections` put them
together in the report's order. The Targets section is `bench_targets`'s,
the chart `bench_svg`'s.

Everything here takes results already loaded (`bench_load`) and returns
text: nothing runs a benchmark or writes a file. Python 3 stdlib only.
"""

import contextlib
import datetime
import io
import math
import os
import re

import bench_details
from bench_load import load_wholeprogram
from bench_names import (CAPS, INNERS, baseline_of, capability_cells, groups_of, order, rate_key,
                         thread_key, workload_groups)
from bench_looking import section_looking
from bench_run import ROOT, machine, shell_line
from bench_tables import NA, md_table, num, ratio
from bench_targets import section_targets


def timing_table(results, groups, extra_cols=None, us=False):
    """Rows: allocators; per group (thread count): median ns/op and ratio to its bare inner."""
    names = set()
    for g in groups:
        names |= set(results.get(g, {}))
    extra_cols = extra_cols or ([], lambda n: [])
    header = ["allocator"]
    for g in groups:
        t = g.rsplit("/", 1)[-1]
        header += [f"ns/op {t}", f"ratio {t}"]
    header += extra_cols[0]
    rows = []
    for name in order(names, extra_cols[2] if len(extra_cols) > 2 else ()):
        row = [name]
        for g in groups:
            funcs = results.get(g, {})
            r = funcs.get(name)
            base_name = baseline_of(name)
            row += [num(r.median, us) if r else NA,
                    ("—" if base_name is None else ratio(r, funcs.get(base_name)))]
        cells = extra_cols[1](name)
        if cells and rows and name.startswith("Instrumented<") and rows[-1][0].startswith("Instrumented<"):
            cells = ["″"] * len(cells)  # same as the row above
        row += cells
        rows.append(row)
    if not rows:
        rows = [["n/a (no results)"] + [NA] * (len(header) - 1)]
    align = ["---"] + ["---:"] * (2 * len(groups)) + ["---"] * len(extra_cols[0])
    return md_table(header, rows, align)


def interleaved_table(inter, columns):
    """A table of an interleaved measurement's groups ({group: {variant: extras}}):
    a row per variant in the benchmark's `order`, and per thread count the columns
    `columns` gives as (header, cell(extras) -> str) pairs, bare allocators showing
    only the columns whose cell is marked for them (`("ns/op", f, True)`)."""
    groups = sorted(inter, key=thread_key)
    order_of = {n: e.get("order", math.inf) for g in groups for n, e in inter[g].items()}
    names = sorted(order_of, key=lambda n: (order_of[n], n))
    header = ["allocator"] + [f"{h} {g.rsplit('/', 1)[1]}" for g in groups for h, _, _ in columns]
    rows = []
    for n in names:
        row = [n]
        for g in groups:
            e = inter[g].get(n, {})
            row += [cell(e) if (for_bare or n not in INNERS) else "—" for _, cell, for_bare in columns]
        rows.append(row)
    rounds = {int(e.get("rounds", 0)) for g in groups for e in inter[g].values()}
    return [md_table(header, rows),
            f"Rounds per thread: {', '.join(str(r) for r in sorted(rounds))}.\n"]


# Columns of the interleaved tables: (header, cell(extras) -> str, shown for bare
# allocators too).
COL_NS = ("ns/op", lambda e: num(e.get("median_ns")), True)
COL_P10 = ("p10", lambda e: num(e.get("p10_ns")), True)
COL_ADDED = ("added ns", lambda e: f"{e.get('added_ns', math.nan):+.2f}", False)
COL_ADDED_QUARTILES = ("quartiles", lambda e: f"{e.get('added_p25', math.nan):+.2f} to "
                                              f"{e.get('added_p75', math.nan):+.2f}", False)
COL_RATIO = ("ratio", lambda e: f"{e.get('ratio', math.nan):.3f}×", False)
COL_RATIO_QUARTILES = ("quartiles", lambda e: f"{e.get('ratio_p25', math.nan):.3f}× to "
                                              f"{e.get('ratio_p75', math.nan):.3f}×", False)


def section_interleaved(inter):
    """The interleaved 64 B measurement: the figures the 64 B target is checked against."""
    if not inter:
        return []
    out = ["### pair_64B, interleaved (the 64 B target's figures)\n",
           "The same 64 B loop outside criterion: each thread alternates the variants in slices\n"
           "of 20,000 pairs (0.1 to 0.3 ms), in an order rotated each round, the threads starting\n"
           "each round together (`interleaved` in `benches/benches/pairs.rs`). ns/op is the median\n"
           "(and 10th percentile) over all slices; the ratio is the median over the rounds of a\n"
           "slice's time over its inner allocator's slice in the same round, with the quartiles.\n"
           "`(sampling suspended)` counts but does not sample on the measuring thread.\n"]
    return out + interleaved_table(inter, [COL_NS, COL_P10, COL_RATIO, COL_RATIO_QUARTILES])


def section_floor(finter):
    """The floor measurement: what recording costs at least, rung by rung."""
    if not finter:
        return []
    out = ["## floor: what recording costs at least\n",
           "`benches/benches/floor.rs`. Wrappers around `System` that keep their records in bare\n"
           "thread-local cells (no slot, no reader, nothing kept at thread exit: lower bounds, not\n"
           "usable allocators), each rung recording more, interleaved with `System` and\n"
           "`Instrumented<System>` as the peers are (slices of 0.1 to 0.3 ms, order rotated each\n"
           "round, threads together between spinning barriers). `classes, bytes, clock, free check`\n"
           "records what allocmeter's hot path records: counts by size class, bytes, the sampling\n"
           "clock, and the filter check a free needs before it can know whether its block was\n"
           "sampled. `exact sizes` counts sizes up to 1 KiB in one counter each (count and bytes\n"
           "at once) at the price of a size-dependent branch. Added ns and ratio: median over the\n"
           "threads' rounds against `System`'s slice of the same round.\n"]
    for workload in ["64B", "mixed_16B-64KiB"]:
        groups = groups_of(finter, "floor", workload)
        if not groups:
            continue
        out.append(f"### floor/{workload}\n")
        out += interleaved_table(groups, [COL_NS, COL_ADDED, COL_RATIO, COL_RATIO_QUARTILES])
    return out


def section_pairs(results, inter=None):
    out = ["## pairs: one alloc+free pair\n",
           "`benches/benches/pairs.rs`. Median ns per pair per thread (criterion); ratio to the\n"
           "bare inner allocator in the same run. `Instrumented<X>` samples at the default\n"
           "512 KiB; `(sampling off)` is rate 0. Thread counts from\n"
           "`ALLOCMETER_BENCH_THREADS` (default 1 and 2). The 64 B workload runs in rounds\n"
           "(`ALLOCMETER_PAIR_ROUNDS`, default 15), every variant once per round in an order\n"
           "rotated each round; its figures are the median of the per-round medians, and its\n"
           "ratios the median of the per-round ratios (one measurement per variant varied by\n"
           "±5 % between runs on this machine, and more on a day its host's speed swings).\n"]
    groups = workload_groups(results, "pair_")
    for workload in ["64B", "mixed_16B-4KiB"]:
        gs = groups.get(workload) or [f"pair_{workload}/1thread", f"pair_{workload}/2threads"]
        out.append(f"### pair_{workload}\n")
        out.append(timing_table(results, gs))
        if workload == "64B":
            out += section_interleaved(inter or {})
    return out


def section_peers_interleaved(pinter, workload):
    """The interleaved peers measurement of one workload: the figures the peers targets are
    checked against."""
    pinter = groups_of(pinter, "peers", workload)
    if not pinter:
        return []
    out = [f"### peers/{workload}, interleaved (the peers targets' figures)\n",
           "The same loop outside criterion, `System`, `Instrumented<System>` (default rate)\n"
           "and every peer: each round runs every variant for one slice of about 0.5 ms, in an order\n"
           "rotated each round, all threads together between spinning barriers\n"
           "(`peers_interleaved` in `benches/benches/peers.rs`). ns/op is the median over all\n"
           "slices; added ns is the median over the threads' rounds of a slice's ns/op minus\n"
           "`System`'s in the same round (quartiles beside it); ratio likewise, divided.\n"]
    return out + interleaved_table(pinter, [COL_NS, COL_ADDED, COL_ADDED_QUARTILES, COL_RATIO])


def section_peers(results, pinter=None):
    cap_header, _, cap_names = CAPS
    out = ["## peers: allocmeter next to other instrumented allocators\n",
           "`benches/benches/peers.rs`, wiring and versions in `benches/peers.md`. Median ns per\n"
           "op per thread (µs where marked); ratio to the bare inner allocator in the same run\n"
           "(`System` for every peer). `Instrumented<X>` is the default 512 KiB sampling rate.\n"
           "In the first table the last columns say what each records (from `benches/peers.md`:\n"
           "Y = kept, ~ = derivable or partial, N = not kept, — = bare allocator, ″ = as\n"
           "above). Two-thread figures on a small machine vary a lot between runs (see\n"
           "`benches/peers.md`).\n"]
    groups = workload_groups(results, "peers/")
    for workload in ["64B", "mixed_16B-64KiB", "realloc_8B-1MiB"]:
        gs = groups.get(workload) or [f"peers/{workload}/1thread", f"peers/{workload}/2threads"]
        out.append(f"### peers/{workload}\n")
        caps = (cap_header, capability_cells, cap_names) if workload == "64B" else ([], lambda n: [], cap_names)
        out.append(timing_table(results, gs, caps, us=workload.startswith("realloc")))
        out += section_peers_interleaved(pinter, workload)
    return out


def section_sampling(results):
    out = ["## sampling: what sampling costs\n",
           "`benches/benches/sampling.rs`. Median ns per op; ratio to `System` where the group\n"
           "has it, else to the group's rate-0 or unsampled-block variant. Per-group\n"
           "explanations and derived figures (cost per sample, false positives...) are in\n"
           "the details below; what the hints' evidence added to the sampled path, in its\n"
           "own section.\n"]
    prefixes = ["sample_cost/", "unsampled_free/", "sampled_free/", "sampled_realloc/",
                "realloc_chain/", "amortized/", "cross_thread/"]
    found = False
    for prefix in prefixes:
        for g in sorted((g for g in results if g.startswith(prefix)),
                        key=lambda g: (re.sub(r"\d+", "", g), [int(x) for x in re.findall(r"\d+", g)])):
            found = True
            funcs = results[g]
            base_name = "System" if "System" in funcs else next(
                (n for n in funcs if n.endswith("rate 0") or n == "unsampled block"), None)
            base = funcs.get(base_name) if base_name else None
            rows = []
            for name in sorted(funcs, key=lambda n: (n != base_name, rate_key(n), n)):
                r = funcs[name]
                rows.append([name, num(r.median), num(r.fastest),
                             "—" if name == base_name else ratio(r, base)])
            out.append(f"### {g}\n")
            out.append(md_table(["variant", "median ns/op", "fastest ns/op",
                                 f"ratio to {base_name or NA}"], rows))
    if not found:
        out.append("n/a: no `sampling` results.\n")
    return out


def section_details(results):
    """benches/report.py's own tables (`bench_details`), captured."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        for fn in (bench_details.report_pairs, bench_details.report_sample_cost,
                   bench_details.report_unsampled_free, bench_details.report_amortized,
                   bench_details.report_cross_thread,
                   bench_details.report_default_rate_estimate):
            try:
                fn(results)
            except Exception as e:  # a partial result set must not stop the report
                print(f"({fn.__name__}: n/a, {type(e).__name__}: {e})\n")
    text = buf.getvalue().strip()
    if not text:
        return []
    text = re.sub(r"^## ", "### ", text, flags=re.M)
    return ["## Details (`benches/report.py`)\n",
            "The same criterion results as summarised by `python3 benches/report.py`.\n",
            text + "\n"]


def wp_fmt(v, spec, scale=1.0):
    return NA if v is None else format(v / scale, spec)


def section_wholeprogram(path, smoke):
    out = ["## Whole program\n"]
    doc = load_wholeprogram(path)
    if doc is None:
        out.append(f"n/a: no `{os.path.relpath(path, ROOT)}` (run `benches/wholeprogram.py`).\n")
        return out
    quick = smoke or doc.get("mode") == "quick"
    out.append(f"`benches/wholeprogram.py` ({doc.get('mode', NA)} mode, {doc.get('runs', NA)} run(s) "
               f"per cell at scale {doc.get('scale', NA)}): each allocator is the real\n"
               "`#[global_allocator]` of its own binary. Medians over the runs; a ratio is the median\n"
               "over the rounds of the run's figure over the bare inner allocator's run in the same\n"
               "round (every round runs every binary once), and `wall × range` the lowest and highest\n"
               "of those wall ratios; ± is half the range of wall times over the runs; telemetry =\n"
               "allocmeter's own memory (`Exporter::telemetry_bytes()`: slots, rings, sampled-pointer\n"
               "table, the exporter's site table, symbol cache and history) as a share of peak RSS.\n\n"
               "Every workload runs on a worker thread that `main` spawns, as a service's work does.\n"
               "glibc's malloc skips its arena locks' atomics until a process starts a second thread;\n"
               "a service has lost that fast path anyway, but a single-threaded baseline would charge\n"
               "it to allocmeter's aggregator thread. `System (single-threaded process)` is json_map\n"
               "on the main thread with no other thread: its ratio to `System` is that effect alone.\n")
    if quick:
        out.append("**Smoke run** (tiny scale, one run): these figures only show that everything\n"
                   "runs; they say nothing about overhead.\n")
    by_workload = {}
    for s in doc.get("summary", []):
        by_workload.setdefault(s.get("workload", NA), []).append(s)
    for workload, rows in by_workload.items():
        out.append(f"### {workload}\n")
        table = []
        for s in rows:
            bare = "baseline" not in s  # a bare inner allocator: no ratios
            r = (lambda k, spec: "—" if bare else wp_fmt(s.get(k), spec))
            table.append([s.get("variant", s.get("binary", NA)),
                          wp_fmt(s.get("wall_s"), ".3f"),
                          wp_fmt(None if s.get("wall_spread_pct") is None
                                 else s["wall_spread_pct"] / 2, ".1f"),
                          wp_fmt(s.get("cpu_s"), ".3f"),
                          wp_fmt(s.get("peak_rss_bytes"), ".1f", 2**20),
                          r("wall_ratio", ".3f"),
                          "—" if bare or s.get("wall_ratio_min") is None else
                          f"{s['wall_ratio_min']:.2f} to {s['wall_ratio_max']:.2f}",
                          r("inner_wall_ratio", ".3f"),
                          r("cpu_ratio", ".3f"), r("peak_rss_ratio", ".3f"),
                          "—" if bare else wp_fmt(s.get("telemetry_bytes"), ".0f", 1024),
                          r("telemetry_pct_of_peak_rss", ".2f")])
        out.append(md_table(["allocator", "wall s", "± %", "CPU s", "peak RSS MiB", "wall ×",
                             "wall × range", "in-process wall ×", "CPU ×", "peak RSS ×", "telemetry KiB",
                             "telemetry % RSS"], table))
    targets = doc.get("targets", [])
    if targets and not quick:
        out.append("Targets for `Instrumented<System>` (≤ 1.05× System wall, telemetry ≤ 1 % of "
                   "peak RSS):\n")
        out.append("\n".join(f"- {'met' if t['met'] else 'NOT met'}: {t['check']}"
                             for t in targets) + "\n")
    return out


def results_date(crit):
    files = list(crit.glob("*/*/new/estimates.json")) if crit.exists() else []
    if not files:
        return NA
    ts = [f.stat().st_mtime for f in files]
    fmt = lambda t: datetime.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M")
    return fmt(min(ts)) + " to " + fmt(max(ts))


def header(quick, report_only, threads, crit, cmds, ran):
    """The title, how and when the report was made, the machine, and the
    commands (`ran`: each run's line, exit code and seconds, or None when
    nothing ran)."""
    now = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    doc = ["# allocmeter benchmarks" + (" (smoke run)" if quick else "") + "\n",
           f"Generated {now} by `python3 benches/run_all.py"
           + (" --quick" if quick else "") + (" --report-only" if report_only else "")
           + (f" --threads {threads}" if threads else "") + "`"
           + (" from the results already in `target/` (criterion results dated "
              + results_date(crit) + ")" if report_only else "") + ".\n"]
    if quick:
        doc.append("**Smoke run**: every benchmark ran once (criterion `--test`) and the whole\n"
                   "program at a tiny scale. It shows that everything builds and runs; it\n"
                   "measures nothing, so no timing tables and no claims. Run without `--quick`\n"
                   "for figures.\n")
    doc.append("## Machine\n")
    doc.append(md_table(["", ""], [[k, v] for k, v in machine()], ["---", "---"]))
    doc.append("## Commands\n")
    doc.append("Run from the workspace root, in this order"
               + (" (exit status and time of this run)" if ran else "") + ":\n")
    if ran:
        doc.append("```sh\n" + "\n".join(f"{line}   # exit {code}, {secs:.0f} s"
                                         for line, code, secs in ran) + "\n```\n")
    else:
        doc.append("```sh\n" + "\n".join(shell_line(a, e) for a, e in cmds) + "\n```\n")
    doc.append("or all of it, and this file: `python3 benches/run_all.py`. `--threads N,M` sets\n"
               "`ALLOCMETER_BENCH_THREADS` (default `1,2`): the thread counts of `pairs` (its criterion\n"
               "groups and the interleaved 64 B timing), `peers` (its criterion groups and interleaved\n"
               "tables), `floor` and `sampling`'s amortized mixed pairs, each count with its own\n"
               "columns or group. On a machine with more cores,\n"
               "`python3 benches/run_all.py --threads 1,2,4,8,16` measures up to 16 threads. On 2\n"
               "cores that takes much longer, as threads above the cores take turns: these four\n"
               "benches at 16 threads alone took about 12 minutes (`pairs` 161 s, `peers` 315 s,\n"
               "`sampling` 127 s, `floor` 97 s; at 1 and 2 threads, about 11), so the five counts\n"
               "should add roughly half an hour to the run there (not timed whole). With more\n"
               "threads than cores the interleaved measurements' threads wait at a sleeping barrier\n"
               "instead of spinning, and their figures show threads taking turns, not contention at\n"
               "that count.\n")
    return doc


def quick_sections(crit, wp_json):
    """The smoke run's sections: what ran, and the whole program's smoke figures."""
    doc = []
    extras = sorted((crit / "allocmeter-extra").glob("*.json")) if crit.exists() else []
    doc.append("## What ran\n")
    doc.append(md_table(["bench", "benchmarks that recorded extras"],
                        [[b, sum(1 for f in extras if f.name.startswith(p))]
                         for b, p in (("pairs", "pair_"), ("peers", "peers_"),
                                      ("sampling", ("sample_cost", "unsampled_free",
                                                    "sampled_free", "sampled_realloc",
                                                    "realloc_chain", "amortized",
                                                    "cross_thread")),
                                      ("floor", "floor_"))],
                        ["---", "---:"]))
    doc += section_wholeprogram(wp_json, smoke=True)
    doc += section_looking(ROOT, quick=True)
    return doc


def full_sections(results, inter, pinter, finter, wp_json):
    """BENCHMARKS.md's sections after the header, in order."""
    doc = []
    doc += section_targets(results, wp_json, inter, pinter, finter)
    doc += section_pairs(results, inter)
    doc += section_floor(finter)
    doc += section_peers(results, pinter)
    doc.append("![Overhead ratio per allocator, 64 B pairs, 2 threads](benches/overhead.svg)\n")
    doc += section_sampling(results)
    doc += section_wholeprogram(wp_json, smoke=False)
    doc += section_looking(ROOT, quick=False)
    doc += section_details(results)
    return doc

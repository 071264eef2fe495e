#!/usr/bin/env python3
"""Run every allocmeter benchmark and write BENCHMARKS.md and benches/overhead.svg.

    python3 benches/run_all.py                   # full: about 10 min + whole program (6 min)
    python3 benches/run_all.py --quick           # smoke run: every benchmark once
    python3 benches/run_all.py --threads 1,2,4   # thread counts for pairs, peers, sampling
    python3 benches/run_all.py --report-only     # no runs: report existing results

Full mode runs, from the workspace root:

    cargo bench -p allocmeter-benches --bench pairs -- --noplot
    cargo bench -p allocmeter-benches --bench peers -- --noplot
    cargo bench -p allocmeter-benches --bench sampling -- --noplot
    cargo bench -p allocmeter-benches --bench floor -- --noplot
    python3 benches/wholeprogram.py --out target/wholeprogram.json

then writes BENCHMARKS.md (repository root) and benches/overhead.svg from
target/criterion and target/wholeprogram.json. `--threads N,M` is passed to
the benches as ALLOCMETER_BENCH_THREADS (default 1,2): the thread counts of
`pairs`, `peers` and `sampling`'s amortized mixed pairs.

--quick runs each bench with criterion's `-- --test` (every benchmark once, no
measurement) and `wholeprogram.py --quick`, with CRITERION_HOME set to
target/criterion-quick and the whole-program JSON written to
target/wholeprogram.quick.json, so the full results are left alone; it writes
target/BENCHMARKS.quick.md (never the committed report) and no SVG.

--report-only skips every run and writes BENCHMARKS.md and the SVG from the
results already there. A missing result shows as "n/a".

Criterion output is read with benches/report.py's `load`. Python 3 stdlib only.
"""

import argparse
import contextlib
import datetime
import io
import json
import math
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
import report  # noqa: E402  (benches/report.py)

BENCHES = ["pairs", "peers", "sampling", "floor"]
INNERS = ["System", "MiMalloc", "Jemalloc"]
NA = "n/a"


# --------------------------------------------------------------------------
# running


def commands(quick, threads):
    """[(argv, env additions, label)] in the order they run."""
    env = {"ALLOCMETER_BENCH_THREADS": threads} if threads else {}
    if quick:
        env = dict(env, CRITERION_HOME=str(ROOT / "target" / "criterion-quick"))
    cmds = []
    for bench in BENCHES:
        tail = ["--test"] if quick else ["--noplot"]
        cmds.append((["cargo", "bench", "-p", "allocmeter-benches", "--bench", bench, "--"] + tail,
                     env))
    wp_out = "target/wholeprogram.quick.json" if quick else "target/wholeprogram.json"
    wp = ["python3", "benches/wholeprogram.py", "--out", wp_out] + (["--quick"] if quick else [])
    cmds.append((wp, {}))
    return cmds


def shell_line(argv, env):
    prefix = " ".join(f"{k}={v}" for k, v in sorted(env.items()))
    return (prefix + " " if prefix else "") + " ".join(argv)


def run_all(cmds):
    """Runs every command; returns [(line, exit code, seconds)]. Keeps going on failure."""
    done = []
    for argv, env in cmds:
        if "pairs" in argv:
            # Rounds left from a run with more of them would be folded in.
            crit = Path(env.get("CRITERION_HOME", ROOT / "target" / "criterion"))
            for old in crit.glob("pair_64B_*"):
                shutil.rmtree(old, ignore_errors=True)
        line = shell_line(argv, env)
        print(f"$ {line}", file=sys.stderr, flush=True)
        start = time.perf_counter()
        code = subprocess.run(argv, cwd=ROOT, env=dict(os.environ, **env)).returncode
        secs = time.perf_counter() - start
        print(f"  -> exit {code} after {secs:.0f} s", file=sys.stderr, flush=True)
        done.append((line, code, secs))
    return done


# --------------------------------------------------------------------------
# machine


def sh(argv):
    try:
        return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              text=True).stdout.strip() or NA
    except OSError:
        return NA


def machine():
    cpu = NA
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = NA
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 2**20:.1f} GiB"
                break
    except (OSError, ValueError):
        pass
    return [("CPU", cpu), ("CPUs (nproc)", sh(["nproc"])), ("memory", mem),
            ("kernel", sh(["uname", "-srm"])), ("rustc", sh(["rustc", "-V"])),
            ("python", platform.python_version())]


# --------------------------------------------------------------------------
# tables


def num(v, unit_us=False):
    """ns with sensible precision; µs when large."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return NA
    if unit_us and v >= 10_000:
        return f"{v / 1000:,.1f} µs"
    if v >= 100:
        return f"{v:,.0f}"
    return f"{v:.2f}" if v < 10 else f"{v:.1f}"


def ratio(r, base):
    if r is None or base is None or not base.median or math.isnan(r.median) or math.isnan(base.median):
        return NA
    # Groups measured in rounds: the median of the per-round ratios.
    per_round = report.round_ratios(r, base)
    x = statistics.median(per_round) if per_round else r.median / base.median
    return f"{x:.3f}×" if x < 10 else f"{x:.1f}×"


def md_table(header, rows, align=None):
    align = align or ["---"] + ["---:"] * (len(header) - 1)
    out = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out) + "\n"


def thread_key(group):
    m = re.search(r"(\d+)thread", group)
    return int(m.group(1)) if m else 0


def workload_groups(results, prefix, sep="/"):
    """{workload: [group, ...] sorted by thread count} for groups `prefix<workload>/<N>thread(s)`."""
    out = {}
    for g in results:
        if g.startswith(prefix) and sep in g[len(prefix):]:
            workload, _ = g[len(prefix):].rsplit(sep, 1)
            out.setdefault(workload, []).append(g)
    return {w: sorted(gs, key=thread_key) for w, gs in out.items()}


def baseline_of(name):
    """The bare allocator a variant is compared with."""
    inner = report.inner_of(name)
    if inner:
        return inner
    if name in INNERS:
        return None
    return "System"  # every peer here wraps System (benches/peers.md)


def order(names, tail_order=()):
    first = []
    for inner in INNERS:
        first += [inner, f"Instrumented<{inner}> (sampling off)", f"Instrumented<{inner}>",
                  f"Instrumented<{inner}> (64 KiB)"]
    ranked = [n for n in first if n in names]
    for key in tail_order:
        ranked += [n for n in sorted(names) if n not in ranked and capability_key(n) == key]
    ranked += sorted(n for n in names if n not in ranked)
    return ranked


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


# what each peer records, from benches/peers.md


def capabilities():
    """(header, {row name: cells}, row order) of peers.md's "What each records" table."""
    try:
        text = (HERE / "peers.md").read_text()
    except OSError:
        return [], {}, []
    section = text.split("## What each records", 1)
    if len(section) < 2:
        return [], {}, []
    body = section[1].split("\n## ", 1)[0]  # this section only
    lines = [l for l in body.splitlines() if l.startswith("|")]
    if len(lines) < 3:
        return [], {}, []
    split = lambda l: [c.strip() for c in l.strip().strip("|").split("|")]
    header = split(lines[0])[1:]
    rows, names = {}, []
    for l in lines[2:]:
        cells = split(l)
        rows[cells[0]] = cells[1:]
        names.append(cells[0])
    return header, rows, names


def capability_key(name):
    """The peers.md row for a criterion function name, or None for a bare allocator."""
    if name in INNERS:
        return None
    if name.startswith("Instrumented<"):
        return "allocmeter `Instrumented`"
    _, rows, names = CAPS
    first = name.split()[0]
    matches = [n for n in names if n.split()[0].strip("`,") == first]
    if len(matches) > 1:
        want = "callstacks on" if "callstacks on" in name else "callstacks off"
        matches = [n for n in matches if want in n] or matches
    return matches[0] if matches else None


CAPS = capabilities()


def capability_cells(name):
    header, rows, _ = CAPS
    key = capability_key(name)
    if key is None:
        return ["—" if name in INNERS else NA] * len(header)
    return rows.get(key, [NA] * len(header))


# --------------------------------------------------------------------------
# sections


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


def groups_of(inter, bench, workload):
    """The groups `<bench>_<workload>_interleaved/<threads>` of an interleaved measurement."""
    return {g: f for g, f in (inter or {}).items()
            if g.startswith(f"{bench}_{workload}_interleaved/")}


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


TARGET_MICRO_RATIO = 1.10
TARGET_CALL_SITE_FACTOR = 10.0


def records(name, column):
    """Whether peers.md says `name` keeps `column` (a cell starting with Y, or
    kept by the tracker we wire in, for tracking-allocator)."""
    header, _, _ = CAPS
    if column not in header:
        return False
    cell = capability_cells(name)[header.index(column)]
    return cell.startswith("Y") or cell.startswith("via tracker")


FLOOR_SAME_RECORDS = "floor: classes, bytes, clock, free check"


def section_targets(results, wp_path, inter=None, pinter=None, finter=None):
    """The issue's targets, checked against this run's figures."""
    out = ["## Targets\n",
           "The targets set for these benchmarks, checked against the figures below (same run,\n"
           "same machine). Added cost = ns/op of the variant minus ns/op of `System` in the same\n"
           "group.\n"]
    lines = []
    # 1. 64 B pairs, Instrumented<System> at the default rate vs System:
    # from the interleaved measurement where it ran, else criterion's rounds.
    for g in sorted(inter or {}, key=thread_key):
        e = inter[g].get("Instrumented<System>")
        base = inter[g].get("System")
        if e and base:
            x = e["ratio"]
            floor = (finter or {}).get(g.replace("pair_64B", "floor_64B"), {}).get(FLOOR_SAME_RECORDS)
            floor = (f"; the floor, a bare thread-local wrapper recording the same, "
                     f"{floor['ratio']:.3f}×: see floor/64B") if floor else ""
            lines.append((x <= TARGET_MICRO_RATIO,
                          f"`{g}`: Instrumented<System> {x:.3f}× System (median of "
                          f"{int(e['rounds'])} interleaved rounds per thread, quartiles "
                          f"{e['ratio_p25']:.3f}× to {e['ratio_p75']:.3f}×; {e['median_ns']:.2f} vs "
                          f"{base['median_ns']:.2f} ns; target ≤ {TARGET_MICRO_RATIO}×{floor})"))
    for g in ([] if inter else workload_groups(results, "pair_").get("64B", [])):
        funcs = results[g]
        inst, base = funcs.get("Instrumented<System>"), funcs.get("System")
        if inst and base and base.median:
            per_round = report.round_ratios(inst, base)
            if per_round:
                # The median of the per-round ratios: each pairs two
                # measurements taken about a second apart.
                x = statistics.median(per_round)
                how = (f"median of {len(per_round)} per-round ratios, from "
                       f"{min(per_round):.3f}× to {max(per_round):.3f}×, "
                       f"{sum(r <= TARGET_MICRO_RATIO for r in per_round)} within the target; "
                       f"medians over the rounds {inst.median:.2f} vs {base.median:.2f} ns")
            else:
                x = inst.median / base.median
                how = f"{inst.median:.2f} vs {base.median:.2f} ns"
            lines.append((x <= TARGET_MICRO_RATIO,
                          f"`{g}`: Instrumented<System> {x:.3f}× System "
                          f"({how}; target ≤ {TARGET_MICRO_RATIO}×)"))
    # 2. Peers at 2 threads: lower added cost than every peer recording counts
    # and bytes; the factor against peers recording call sites.
    # From the interleaved measurement where it ran (each variant's median
    # added ns per round); else from criterion's medians.
    rows = []
    for workload in ["64B", "mixed_16B-64KiB"]:
        g = f"peers/{workload}/2threads"
        funcs = results.get(g, {})
        added = {n: f.median - funcs["System"].median for n, f in funcs.items()} \
            if "System" in funcs else {}
        pg = f"peers_{workload}_interleaved/2threads"
        if (pinter or {}).get(pg):
            g = pg
            funcs = pinter[pg]
            added = {n: e.get("added_ns", math.nan) for n, e in funcs.items()}
        if "Instrumented<System>" not in added:
            continue
        ours = added["Instrumented<System>"]
        cb, cs = [], []
        for name in order(set(funcs)):
            if name in INNERS or name.startswith("Instrumented<"):
                continue
            counts_bytes = records(name, "counts") and records(name, "bytes total")
            sites = records(name, "call sites")
            if not (counts_bytes or sites):
                continue
            theirs = added[name]
            factor = theirs / ours if ours > 0 else None
            what = " and ".join(w for w, k in (("counts + bytes", counts_bytes),
                                               ("call sites", sites)) if k)
            rows.append([workload, name, what, f"{theirs:+.1f}", f"{ours:+.2f}",
                         "yes" if theirs > ours else "**no**",
                         "n/a (allocmeter ≤ System here)" if factor is None
                         else f"{factor:,.1f}×"])
            if counts_bytes:
                cb.append((theirs, name))
            if sites:
                cs.append((factor, name))
        if cb:
            least = min(cb)
            lines.append((all(t > ours for t, _ in cb),
                          f"`{g}`: allocmeter adds {ours:+.2f} ns; each of the {len(cb)} peers that "
                          f"record counts and bytes adds more (least: {least[1]}, {least[0]:+.1f} ns)"))
        if cs and ours > 0:
            lo, hi = min(cs), max(cs)
            lines.append((lo[0] >= TARGET_CALL_SITE_FACTOR,
                          f"`{g}`: peers that record call sites add {lo[0]:,.1f}× ({lo[1]}) to "
                          f"{hi[0]:,.0f}× ({hi[1]}) what allocmeter adds (aim ≥ "
                          f"{TARGET_CALL_SITE_FACTOR:.0f}×)"))
        elif cs:
            lines.append((True, f"`{g}`: allocmeter measured no slower than System here, so no "
                                f"factor; peers that record call sites add "
                                f"{min(added[n] for _, n in cs):+.1f} ns or more"))
    # 3. Whole program.
    try:
        wp = json.loads(Path(wp_path).read_text())
        if wp.get("mode") != "quick":
            lines += [(t["met"], t["check"]) for t in wp.get("targets", [])]
    except (OSError, ValueError):
        pass
    if not lines:
        out.append("n/a: no results.\n")
        return out
    out.append("\n".join(f"- {'met' if met else '**NOT met**'}: {text}" for met, text in lines) + "\n")
    if rows:
        out.append("Peers at 2 threads that record at least counts and bytes, or call sites "
                   "(what each records: `benches/peers.md`):\n")
        out.append(md_table(["workload", "peer", "records", "peer added ns", "allocmeter added ns",
                             "allocmeter lower", "factor"], rows,
                            ["---", "---", "---", "---:", "---:", "---", "---:"]))
    return out


def section_sampling(results):
    out = ["## sampling: what sampling costs\n",
           "`benches/benches/sampling.rs`. Median ns per op; ratio to `System` where the group\n"
           "has it, else to the group's rate-0 variant. Per-group explanations and derived\n"
           "figures (cost per sample, false positives...) are in the details below.\n"]
    prefixes = ["sample_cost/", "unsampled_free/", "amortized/", "cross_thread/"]
    found = False
    for prefix in prefixes:
        for g in sorted((g for g in results if g.startswith(prefix)),
                        key=lambda g: (re.sub(r"\d+", "", g), [int(x) for x in re.findall(r"\d+", g)])):
            found = True
            funcs = results[g]
            base_name = "System" if "System" in funcs else next(
                (n for n in funcs if n.endswith("rate 0")), None)
            base = funcs.get(base_name) if base_name else None
            rows = []
            for name in sorted(funcs, key=lambda n: (n != base_name, report.rate_key(n), n)):
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
    """benches/report.py's own tables, captured."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        for fn in (report.report_pairs, report.report_sample_cost, report.report_unsampled_free,
                   report.report_amortized, report.report_cross_thread,
                   report.report_default_rate_estimate):
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
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, ValueError):
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


# --------------------------------------------------------------------------
# SVG


def svg_chart(results, path, pinter=None, group="peers/64B/2threads"):
    """Horizontal bars, log scale: each allocator's ratio to its bare inner
    allocator; from the interleaved peers measurement where it ran (its
    median per-round ratios), else from criterion's medians."""
    bars = []
    interleaved = (pinter or {}).get("peers_64B_interleaved/2threads")
    if interleaved:
        group = "peers_64B_interleaved/2threads"
        for name in order(set(interleaved), CAPS[2]):
            x = interleaved[name].get("ratio", math.nan)
            if name not in INNERS and not math.isnan(x):
                bars.append((name, x))
    funcs = {} if interleaved else results.get(group, {})
    for name in order(set(funcs), CAPS[2]):
        base_name = baseline_of(name)
        r, base = funcs[name], funcs.get(base_name) if base_name else None
        if base is None or not base.median or math.isnan(r.median) or math.isnan(base.median):
            continue
        bars.append((name, r.median / base.median))
    esc = lambda s: s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    left, bar_h, gap, top, plot_w, right = 330, 18, 6, 50, 480, 70
    height = top + max(len(bars), 1) * (bar_h + gap) + 50
    width = left + plot_w + right
    lo = 0.5
    hi = 10 ** math.ceil(math.log10(max([x for _, x in bars] + [10])))
    xpos = lambda v: left + plot_w * (math.log10(max(v, lo)) - math.log10(lo)) / (
        math.log10(hi) - math.log10(lo))
    s = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
         f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
         f'<rect width="{width}" height="{height}" fill="white"/>',
         f'<text x="{width / 2}" y="20" text-anchor="middle" font-size="15" font-weight="bold">'
         f'Overhead per 64 B alloc+free pair, 2 threads ({esc(group)})</text>',
         f'<text x="{width / 2}" y="37" text-anchor="middle" fill="#555">'
         + ('median per-round ratio to System, interleaved' if interleaved else
            'ratio of median ns/op to the bare inner allocator')
         + ', log scale (1 = no overhead)</text>']
    bottom = top + len(bars) * (bar_h + gap)
    tick = 1.0
    while tick <= hi:
        for t in (tick, 2 * tick, 5 * tick) if tick < hi else (tick,):
            if lo <= t <= hi:
                x = xpos(t)
                major = t == tick
                s.append(f'<line x1="{x:.1f}" y1="{top - 4}" x2="{x:.1f}" y2="{bottom}" '
                         f'stroke="{"#bbb" if major else "#e5e5e5"}"/>')
                if major or t < 10:
                    s.append(f'<text x="{x:.1f}" y="{bottom + 16}" text-anchor="middle">{t:g}×</text>')
        tick *= 10
    s.append(f'<line x1="{xpos(1):.1f}" y1="{top - 4}" x2="{xpos(1):.1f}" y2="{bottom}" '
             'stroke="#000" stroke-width="1.5"/>')
    for i, (name, x) in enumerate(bars):
        y = top + i * (bar_h + gap)
        color = "#2b7bba" if name.startswith("Instrumented<") else "#d9822b"
        x0, x1 = xpos(1), xpos(x)
        s.append(f'<text x="{left - 8}" y="{y + bar_h - 5}" text-anchor="end">{esc(name)}</text>')
        s.append(f'<rect x="{min(x0, x1):.1f}" y="{y}" width="{max(abs(x1 - x0), 1):.1f}" '
                 f'height="{bar_h}" fill="{color}"><title>{esc(name)}: {x:.2f}×</title></rect>')
        s.append(f'<text x="{max(x0, x1) + 4:.1f}" y="{y + bar_h - 5}">{x:.2f}×</text>')
    if not bars:
        s.append(f'<text x="{width / 2}" y="{top + 12}" text-anchor="middle">n/a: no results '
                 f'for {esc(group)}</text>')
    s.append(f'<text x="{left}" y="{height - 12}" fill="#2b7bba">■ allocmeter Instrumented</text>')
    s.append(f'<text x="{left + 190}" y="{height - 12}" fill="#d9822b">■ peers (vs System)</text>')
    s.append("</svg>")
    Path(path).write_text("\n".join(s) + "\n")


# --------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: criterion --test, wholeprogram --quick; "
                         "writes target/BENCHMARKS.quick.md")
    ap.add_argument("--threads", metavar="N,M",
                    help="ALLOCMETER_BENCH_THREADS for the benches (default 1,2)")
    ap.add_argument("--report-only", action="store_true",
                    help="run nothing; write the report from existing results")
    args = ap.parse_args()
    if args.threads and not re.fullmatch(r"\s*\d+(\s*,\s*\d+)*\s*", args.threads):
        ap.error("--threads takes a comma-separated list of counts, e.g. 1,2,4")
    if args.quick and args.report_only:
        ap.error("--quick and --report-only exclusive")

    cmds = commands(args.quick, args.threads)
    ran = None if args.report_only else run_all(cmds)

    crit = ROOT / "target" / ("criterion-quick" if args.quick else "criterion")
    crit = Path(os.environ.get("CRITERION_HOME", crit)) if not args.quick else crit
    wp_json = ROOT / "target" / ("wholeprogram.quick.json" if args.quick else "wholeprogram.json")
    results = report.load(crit) if crit.exists() else {}
    inter = report.load_interleaved(crit) if crit.exists() else {}
    pinter = {} if not crit.exists() else {
        **report.load_interleaved(crit, "peers_64B_interleaved"),
        **report.load_interleaved(crit, "peers_mixed_16B-64KiB_interleaved")}
    finter = {} if not crit.exists() else {
        **report.load_interleaved(crit, "floor_64B_interleaved"),
        **report.load_interleaved(crit, "floor_mixed_16B-64KiB_interleaved")}

    now = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    doc = ["# allocmeter benchmarks" + (" (smoke run)" if args.quick else "") + "\n",
           f"Generated {now} by `python3 benches/run_all.py"
           + (" --quick" if args.quick else "") + (" --report-only" if args.report_only else "")
           + (f" --threads {args.threads}" if args.threads else "") + "`"
           + (" from the results already in `target/` (criterion results dated "
              + results_date(crit) + ")" if args.report_only else "") + ".\n"]
    if args.quick:
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
    doc.append("or all of it, and this file: `python3 benches/run_all.py` (`--threads N,M` sets\n"
               "`ALLOCMETER_BENCH_THREADS`, default `1,2`: the thread counts of `pairs`, `peers` and\n"
               "`sampling`'s amortized mixed pairs).\n")

    if args.quick:
        extras = sorted((crit / "allocmeter-extra").glob("*.json")) if crit.exists() else []
        doc.append("## What ran\n")
        doc.append(md_table(["bench", "benchmarks that recorded extras"],
                            [[b, sum(1 for f in extras if f.name.startswith(p))]
                             for b, p in (("pairs", "pair_"), ("peers", "peers_"),
                                          ("sampling", ("sample_cost", "unsampled_free",
                                                        "amortized", "cross_thread")),
                                          ("floor", "floor_"))],
                            ["---", "---:"]))
        doc += section_wholeprogram(wp_json, smoke=True)
        out = ROOT / "target" / "BENCHMARKS.quick.md"
    else:
        doc += section_targets(results, wp_json, inter, pinter, finter)
        doc += section_pairs(results, inter)
        doc += section_floor(finter)
        doc += section_peers(results, pinter)
        doc.append("![Overhead ratio per allocator, 64 B pairs, 2 threads](benches/overhead.svg)\n")
        doc += section_sampling(results)
        doc += section_wholeprogram(wp_json, smoke=False)
        doc += section_details(results)
        out = ROOT / "BENCHMARKS.md"
        svg_chart(results, HERE / "overhead.svg", pinter)
        print(f"wrote {HERE / 'overhead.svg'}", file=sys.stderr)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(doc))
    print(f"wrote {out}", file=sys.stderr)
    if ran and any(code for _, code, _ in ran):
        sys.exit(1)


def results_date(crit):
    files = list(crit.glob("*/*/new/estimates.json")) if crit.exists() else []
    if not files:
        return NA
    ts = [f.stat().st_mtime for f in files]
    fmt = lambda t: datetime.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M")
    return fmt(min(ts)) + " to " + fmt(max(ts))


if __name__ == "__main__":
    main()

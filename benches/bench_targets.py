"""BENCHMARKS.md's Targets section: the project's cost targets, each checked
against the figures of the run it reports.

- the 64 B pair: `Instrumented<System>` at most `TARGET_MICRO_RATIO` times
  `System`, from the interleaved measurement where it ran, else from
  criterion's rounds;
- the peers at 2 threads: allocmeter adds less than every peer that records
  counts and bytes, and peers that record call sites add at least
  `TARGET_CALL_SITE_FACTOR` times what allocmeter adds;
- the whole programs: the checks `wholeprogram.py` made (its own targets).

Python 3 stdlib only.
"""

import math
import statistics

from bench_load import load_wholeprogram, round_ratios
from bench_names import INNERS, order, records, thread_key, workload_groups
from bench_tables import md_table

# At most this many times `System` per 64 B pair, for `Instrumented<System>`.
TARGET_MICRO_RATIO = 1.10
# Peers that record call sites add at least this many times what allocmeter adds.
TARGET_CALL_SITE_FACTOR = 10.0

# The floor rung that records what allocmeter records (benches/benches/floor.rs).
FLOOR_SAME_RECORDS = "floor: classes, bytes, clock, free check"


def section_targets(results, wp_path, inter=None, pinter=None, finter=None):
    """The project's cost targets (the constants above), checked against this
    run's figures: BENCHMARKS.md's Targets section."""
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
            per_round = round_ratios(inst, base)
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
    wp = load_wholeprogram(wp_path)
    if wp is not None and wp.get("mode") != "quick":
        lines += [(t["met"], t["check"]) for t in wp.get("targets", [])]
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

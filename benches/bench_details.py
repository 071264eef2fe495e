"""The details tables of the criterion results of `pairs` and `sampling`,
printed to stdout as Markdown: what `python3 benches/report.py` prints (its
docstring says what each table holds), and BENCHMARKS.md's "Details" section
(`bench_report.section_details`, which captures them).

Each `report_*` takes `bench_load.load`'s results and prints nothing when
they hold none of its groups. Python 3 stdlib only.
"""

import re

from bench_load import NAN
from bench_names import inner_of, rate_key
from bench_tables import count, fmt, md_table, ns_ci

ALLOCATORS = ["System", "Instrumented<System>", "Instrumented<System> (sampling off)",
              "MiMalloc", "Instrumented<MiMalloc>", "Instrumented<MiMalloc> (sampling off)"]
FILTER_BITS = 1 << 17  # the sampled-pointer filter (allocator/src/lockfree/sampled/)


def apart(a, b):
    """Whether the 95% CIs of two medians do not overlap."""
    return a.lo > b.hi or a.hi < b.lo


def noisy(value, a, b, spec=".0f"):
    """`value` (derived from a - b), or a note if a and b are within noise."""
    return fmt(value, spec) if apart(a, b) else "within noise"


def report_pairs(results):
    groups = sorted(g for g in results if g.startswith("pair_"))
    if not groups:
        return
    print("## pairs: ns per alloc+free pair (per thread)\n")
    print("Criterion's median, with the 95% CI of the median in brackets, and the\n"
          "fastest of the samples (less sensitive to interference from other load\n"
          "on the machine). `Instrumented<X>` samples at the rate shown (512 KiB is\n"
          "the default), with a drainer thread emptying the rings as the exporter\n"
          "would; `(sampling off)` is rate 0. Added ns and ratios are against `X`.\n"
          "Criterion's CIs understate the noise: on a small shared machine the mixed\n"
          "workload moves by a nanosecond or more between benchmarks of one run, so\n"
          "compare runs, or use `sampling`'s estimate for sampling's share.\n")
    rows = []
    for group in groups:
        funcs = results[group]
        names = [n for n in ALLOCATORS if n in funcs]
        names += sorted(n for n in funcs if n not in ALLOCATORS)
        for name in names:
            r = funcs[name]
            inner = inner_of(name)
            base = funcs.get(inner)
            added = ratio = added_f = ratio_f = "–"
            if base:
                added, ratio = fmt(r.median - base.median, sign=True), fmt(r.median / base.median, ".3f")
                added_f = fmt(r.fastest - base.fastest, sign=True)
                ratio_f = fmt(r.fastest / base.fastest, ".3f")
            rate = r.x("rate")
            rows.append([group, name, ns_ci(r), added, ratio, fmt(r.fastest), added_f, ratio_f,
                         "–" if rate != rate else f"{int(rate) // 1024} KiB" if rate else "off",
                         count(r.x("samples")), count(r.x("dropped"))])
    print(md_table(["group", "allocator", "median ns/pair", "added ns", "ratio", "fastest sample",
                    "added ns", "ratio", "sample rate", "samples taken", "dropped"], rows,
                   ["---", "---"] + ["---:"] * 9))

    rows = []
    for group in groups:
        funcs = results[group]
        on, off = funcs.get("Instrumented<System>"), funcs.get("Instrumented<System> (sampling off)")
        if on and off:
            rows.append([group, fmt(on.median - off.median, sign=True),
                         fmt(on.fastest - off.fastest, sign=True),
                         "no" if apart(on, off) else "yes",
                         fmt(on.samples_per_op() * 1e6, ".0f")])
    if rows:
        print("What sampling at the default rate adds to `Instrumented<System>`\n"
              "(default rate minus sampling off, same run):\n")
        print(md_table(["group", "added ns (median)", "added ns (fastest)", "CIs overlap",
                        "samples per 1M pairs"], rows))


def report_sample_cost(results):
    groups = sorted((g for g in results if g.startswith("sample_cost/")),
                    key=lambda g: int(g.rsplit("_", 1)[1]))
    if not groups:
        return
    print("## sample_cost: one sample, by stack depth and capture method\n")
    print("64 B alloc+free pairs through `Instrumented<System>`, D calls below the\n"
          "benchmark thread's entry, stack depth 64. At rate 1 every allocation is\n"
          "sampled; rate 0 is the baseline (both timed in chunks of 32 pairs, the\n"
          "rings drained between chunks, untimed). Cost per sample = (rate 1 - rate 0)\n"
          "/ samples per pair: capture + table insert + ring push, and on the free\n"
          "table remove + ring push. The allocation reuses one address, so the\n"
          "table's and filter's lines stay in cache: a lower bound on those parts.\n")
    rows = []
    for group in groups:
        funcs = results[group]
        base = funcs.get("rate 0")
        for name in sorted(funcs):
            if name == "rate 0":
                continue
            r = funcs[name]
            spp = r.samples_per_op()
            cost = (r.median - base.median) / spp if base and spp else NAN
            cost_f = (r.fastest - base.fastest) / spp if base and spp else NAN
            rows.append([group.split("/", 1)[1], name.split(", ", 1)[-1], fmt(r.x("frames_mean"), ".1f"),
                         ns_ci(base) if base else "–", ns_ci(r), fmt(spp, ".4f"),
                         fmt(cost / 1000, ".3f"), fmt(cost_f / 1000, ".3f"),
                         fmt(cost / r.x("frames_mean"), ".1f"),
                         count(r.x("dropped")), count(r.x("frees_lost")),
                         fmt(r.x("drain_ns_per_event"), ".0f")])
    print(md_table(["depth", "method", "frames/sample", "rate 0 ns/pair", "rate 1 ns/pair",
                    "samples/pair", "µs/sample (median)", "µs/sample (fastest)", "ns/frame",
                    "dropped", "frees lost", "drain ns/event"], rows,
                   ["---", "---"] + ["---:"] * 10))


def report_unsampled_free(results):
    groups = sorted(g for g in results if g.startswith("unsampled_free/"))
    for group in groups:
        funcs = results[group]
        system = funcs.get("System")
        empty = funcs.get("Instrumented<System> (no sampled blocks)")
        print(f"## {group}: the sampled-pointer check on unsampled frees\n")
        print("Batches of 1024 allocations (16 B to 4 KiB) then 1024 frees, rate 0; ns per\n"
              "pair. The replica adds only the check (same hash, an empty 16 KiB filter)\n"
              "to `System`. With sampled blocks live, frees whose filter bit is set look\n"
              "the table up for nothing (false positives; expected rate = live / 2^17,\n"
              "observed by hashing the freed addresses). ns per false positive =\n"
              "(ns/pair - ns/pair with no sampled blocks) / observed FP rate.\n")
        rows = []

        def key(n):
            m = re.search(r"\((\d+) sampled", n)
            return (n != "System", "replica" not in n, int(m.group(1)) if m else 0)

        for name in sorted(funcs, key=key):
            r = funcs[name]
            live = r.x("live_samples", 0)
            m = re.search(r"\((\d+) sampled", name)
            nominal = int(m.group(1)) if m else 0
            checked = r.x("fp_checked", 0)
            fp = r.x("fp_hits", 0) / checked if checked else NAN
            per_fp = "–"
            if nominal and empty and fp:
                per_fp = noisy((r.median - empty.median) / fp, r, empty)
            rows.append([name, count(live if nominal else 0), ns_ci(r), fmt(r.fastest),
                         fmt(r.median - system.median, sign=True) if system else "–",
                         fmt(r.fastest - system.fastest, sign=True) if system else "–",
                         fmt(r.median - empty.median, sign=True) if empty and nominal else "–",
                         fmt(100 * live / FILTER_BITS, ".2f") + " %" if nominal else "–",
                         fmt(100 * fp, ".2f") + " %" if nominal else "–",
                         per_fp])
        print(md_table(["variant", "sampled blocks live", "median ns/pair", "fastest", "added vs System",
                        "(fastest)", "added vs none live", "expected FP", "observed FP", "ns per FP"],
                       rows, ["---"] + ["---:"] * 9))


def report_amortized(results):
    groups = sorted(g for g in results if g.startswith("amortized/"))
    if not groups:
        return
    print("## amortized: sampling's cost in realistic workloads\n")
    print("ns per op: an alloc+free pair (mixed), or one build-and-drop of a\n"
          "`Vec<String>` and a `HashMap` (collections; its allocator calls per\n"
          "iteration are shown). Timed in chunks of ~1000 allocator calls, the rings\n"
          "drained between chunks (untimed; drain time shown per op). Ratios are\n"
          "against `System` in the same run; ns per sample = (ns/op - rate 0 ns/op) /\n"
          "samples per op, the effective cost of one sample (\"within noise\" when the\n"
          "two medians' 95% CIs overlap).\n")
    rows = []
    for group in groups:
        funcs = results[group]
        system = funcs.get("System")
        off = next((r for n, r in funcs.items() if n.endswith("rate 0")), None)
        for name in sorted(funcs, key=rate_key):
            r = funcs[name]
            spp = r.samples_per_op()
            sampling = name != "System" and not name.endswith("rate 0")
            calls = r.x("calls_per_iter", 0)
            rows.append([
                group.split("/", 1)[1], name, ns_ci(r), fmt(r.fastest),
                fmt(r.median - system.median, sign=True) if system and r is not system else "–",
                fmt(r.median / system.median, ".3f") if system and r is not system else "–",
                fmt(r.fastest / system.fastest, ".3f") if system and r is not system else "–",
                fmt(r.median - off.median, sign=True) if off and sampling else "–",
                count(r.x("samples")) if name != "System" else "–",
                fmt(spp * 1e6, ".0f") if name != "System" else "–",
                count(r.x("dropped")) if name != "System" else "–",
                fmt(r.x("frames_mean"), ".1f") if sampling else "–",
                noisy((r.median - off.median) / spp, r, off) if off and sampling and spp else "–",
                fmt(r.x("drain_ns_total") / r.x("ops"), ".3f") if sampling else "–",
                fmt(calls, ".0f") if calls else "–",
            ])
    print(md_table(["workload", "variant", "median ns/op", "fastest", "added vs System", "ratio",
                    "ratio (fastest)", "added vs rate 0", "samples taken", "samples per 1M ops",
                    "dropped", "frames/sample", "ns per sample", "drain ns/op", "calls/op"], rows,
                   ["---", "---"] + ["---:"] * 13))


def report_cross_thread(results):
    groups = sorted(g for g in results if g.startswith("cross_thread/"))
    for group in groups:
        funcs = results[group]
        base = next((r for n, r in funcs.items() if n.endswith("rate 0")), None)
        print(f"## {group}\n")
        print("Two threads run the mixed pairs through `Instrumented<System>`: one\n"
              "samples (and drains), the other has sampling suspended. Times are the\n"
              "non-sampling thread's; what it loses is what another thread's sampling\n"
              "costs it through shared cache lines (filter words, table shards, the\n"
              "live-sample counter). Samples per pair = the sampling thread's samples\n"
              "per pair of the non-sampling thread.\n")
        rows = []
        for name in sorted(funcs, key=rate_key):
            r = funcs[name]
            per = r.x("samples") / (r.x("ops") / 2) if r.x("ops") else NAN
            added = r.median - base.median if base and r is not base else NAN
            rows.append([name, ns_ci(r), fmt(r.fastest), fmt(added, sign=True),
                         fmt(r.fastest - base.fastest, sign=True) if base and r is not base else "–",
                         fmt(per * 1e6, ".0f"),
                         noisy(added / per, r, base) if per and r is not base else "–"])
        print(md_table(["variant", "median ns/pair", "fastest", "added (median)", "added (fastest)",
                        "other thread's samples per 1M pairs", "ns per sample of the other thread"],
                       rows, ["---"] + ["---:"] * 6))


def report_default_rate_estimate(results):
    """Sampling's cost per pair at the default rate, which the direct
    measurements above cannot resolve from noise, estimated as (cost of one
    sample) x (samples per pair at 512 KiB)."""
    rows = []
    for group in sorted(g for g in results if g.startswith("amortized/mixed")):
        funcs = results[group]
        off = next((r for n, r in funcs.items() if n.endswith("rate 0")), None)
        dense = next((r for n, r in funcs.items() if n.endswith("rate 8 KiB")), None)
        default = next((r for n, r in funcs.items() if n.endswith("rate 512 KiB")), None)
        if not (off and dense and default and dense.samples_per_op()
                and default.samples_per_op()):
            continue
        cost = (dense.median - off.median) / dense.samples_per_op()
        cost_f = (dense.fastest - off.fastest) / dense.samples_per_op()
        spp = default.samples_per_op()
        rows.append([group.split("/", 1)[1], "frame pointers (as built)",
                     fmt(dense.x("frames_mean"), ".1f"),
                     fmt(cost, ".0f") + f" (fastest {fmt(cost_f, '.0f')})",
                     f"1 per {1 / spp:.0f}", fmt(cost * spp, ".2f"),
                     fmt(default.median - off.median, sign=True)])
    mixed = results.get("amortized/mixed_16B-4KiB_1thread", {})
    default = next((r for n, r in mixed.items() if n.endswith("rate 512 KiB")), None)
    if default and not default.samples_per_op():
        default = None  # no samples recorded (e.g. a smoke run): nothing to scale by
    for group in sorted((g for g in results if g.startswith("sample_cost/")),
                        key=lambda g: int(g.rsplit("_", 1)[1])):
        funcs = results[group]
        base = funcs.get("rate 0")
        for name, r in sorted(funcs.items()):
            if name == "rate 0" or not base or not r.samples_per_op() or not default:
                continue
            cost = (r.median - base.median) / r.samples_per_op()
            spp = default.samples_per_op()
            rows.append([f"mixed_16B-4KiB_1thread at {group.split('/', 1)[1]}",
                         name.split(", ", 1)[-1] + " (sample_cost)", fmt(r.x("frames_mean"), ".1f"),
                         fmt(cost, ".0f"), f"1 per {1 / spp:.0f}", fmt(cost * spp, ".2f"), "–"])
    if not rows:
        return
    print("## estimate: sampling's cost per mixed pair at the default rate (512 KiB)\n")
    print("Cost of one sample times samples per pair at 512 KiB. From `amortized`:\n"
          "the effective cost of a sample at 8 KiB, (ns/pair at 8 KiB - at rate 0) /\n"
          "samples per pair, with this benchmark's shallow stacks and real cache\n"
          "behaviour (the direct 512 KiB - rate 0 difference is shown for comparison;\n"
          "it is within the noise). From `sample_cost`: by depth and method, with hot\n"
          "table lines, so it errs low by a cache miss or two per sample.\n")
    print(md_table(["workload", "capture", "frames/sample", "ns per sample", "samples at 512 KiB",
                    "estimated ns per pair", "measured 512 KiB - rate 0"], rows,
                   ["---", "---"] + ["---:"] * 5))

#!/usr/bin/env python3
"""Summarise the `pairs` and `sampling` criterion benchmarks as markdown tables.

Reads target/criterion/*/*/new/{benchmark,estimates,sample}.json (criterion
replaces characters such as '/', '<' and '>' with '_' in directory names, so
the real group and function names are taken from benchmark.json), and the
counts the benchmarks record next to them in
target/criterion/allocmeter-extra/*.json (samples taken and dropped, frames
per sample, false positives...). Prints, for whichever benchmarks have
results:

- pairs: the median ns per alloc+free pair of each allocator, and for each
  `Instrumented<X>` variant the ns it adds over `X` and the ratio; the same
  again for the fastest sample (from sample.json), which is less affected by
  other load on the machine; and the samples taken and dropped.
- sampling: the cost of one sample by stack depth and capture method; the
  sampled-pointer check on unsampled frees; the amortized cost of sampling
  at 0, 64 KiB and 512 KiB in realistic workloads; what one thread's sampling
  costs another thread; and the cost at the default rate these imply.

Usage: python3 benches/report.py [CRITERION_DIR]   (default: target/criterion,
relative to the workspace root, i.e. the parent of this script's folder).
"""

import json
import math
import re
import statistics
import sys
from pathlib import Path

ALLOCATORS = ["System", "Instrumented<System>", "Instrumented<System> (sampling off)",
              "MiMalloc", "Instrumented<MiMalloc>", "Instrumented<MiMalloc> (sampling off)"]
FILTER_BITS = 1 << 17  # the sampled-pointer filter (allocator/src/sampled.rs)
NAN = float("nan")


class Result:
    """One benchmark: criterion's median (and its 95% CI), the fastest sample,
    all in ns per iteration, and the benchmark's extras (may be empty)."""

    def __init__(self, median, lo, hi, fastest, extra):
        self.median, self.lo, self.hi, self.fastest = median, lo, hi, fastest
        self.extra = extra

    def x(self, key, default=NAN):
        value = self.extra.get(key)
        return default if value is None else value

    def samples_per_op(self):
        ops = self.x("ops")
        return self.x("samples") / ops if ops and ops == ops else NAN


def load(root):
    """{group_id: {function_id: Result}}"""
    extras = {}
    for f in sorted((root / "allocmeter-extra").glob("*.json")):
        e = json.loads(f.read_text())
        extras[(e["group"], e["function"])] = e
    results = {}
    for bench_file in sorted(root.glob("*/*/new/benchmark.json")):
        estimates_file = bench_file.with_name("estimates.json")
        if not estimates_file.exists():
            continue
        bench = json.loads(bench_file.read_text())
        median = json.loads(estimates_file.read_text())["median"]
        ci = median["confidence_interval"]
        fastest = NAN
        sample_file = bench_file.with_name("sample.json")
        if sample_file.exists():
            sample = json.loads(sample_file.read_text())
            fastest = min(t / n for n, t in zip(sample["iters"], sample["times"]))
        group = bench["group_id"]
        function = bench.get("function_id") or bench.get("title")
        results.setdefault(group, {})[function] = Result(
            median["point_estimate"], ci["lower_bound"], ci["upper_bound"], fastest,
            extras.get((group, function), {}))
    return fold_rounds(results)


def load_interleaved(root, group="pair_64B_interleaved"):
    """{group: {function: extras}} of an interleaved measurement: groups
    `<group>/<threads>` (`pair_64B_interleaved`: `interleaved` in
    benches/benches/pairs.rs; `peers_<workload>_interleaved`: in peers.rs;
    `floor_<workload>_interleaved`: floor.rs), which have
    no criterion results, only extras (median_ns, p10_ns, ratio, ratio_p25,
    ratio_p75, added_ns, added_p25, added_p75, rounds, order, ...)."""
    out = {}
    # File names are the group's with every other character than a letter or
    # digit made `_` (benches/src/lib.rs, `write_extra`).
    stem = re.sub(r"[^A-Za-z0-9]", "_", group)
    for f in sorted((root / "allocmeter-extra").glob(f"{stem}_*.json")):
        e = json.loads(f.read_text())
        out.setdefault(e["group"], {})[e["function"]] = e
    return out


ROUND = re.compile(r"^(.*)/round(\d+)$")
SUMMED_EXTRAS = ("ops", "samples", "dropped", "frees_lost")


def fold_rounds(results):
    """Folds groups `<group>/round<k>` (the 64 B pairs, measured in rounds:
    benches/benches/pairs.rs) into one group `<group>`. Each function's
    median is the median of its per-round medians; lo and hi are the lowest
    and highest per-round median (the spread over rounds, not a CI); fastest
    is the fastest sample of any round; the extras `ops`, `samples`,
    `dropped` and `frees_lost` are summed, and `round_medians` maps each
    round to its median, so that per-round ratios can be formed."""
    rounds = {}
    for group in list(results):
        m = ROUND.match(group)
        if m:
            rounds.setdefault(m.group(1), {})[int(m.group(2))] = results.pop(group)
    for group, by_round in rounds.items():
        folded = {}
        functions = {f for funcs in by_round.values() for f in funcs}
        for f in functions:
            per = {k: funcs[f] for k, funcs in by_round.items() if f in funcs}
            medians = [r.median for r in per.values()]
            extra = {}
            for key in SUMMED_EXTRAS:
                values = [r.extra[key] for r in per.values() if r.extra.get(key) is not None]
                if values:
                    extra[key] = sum(values)
            rates = [r.extra["rate"] for r in per.values() if r.extra.get("rate") is not None]
            if rates:
                extra["rate"] = rates[0]
            extra["round_medians"] = {k: r.median for k, r in per.items()}
            folded[f] = Result(statistics.median(medians), min(medians), max(medians),
                               min(r.fastest for r in per.values()), extra)
        results[group] = folded
    return results


def round_ratios(a, b):
    """The per-round ratios a/b of two folded results (rounds both ran)."""
    ra, rb = a.extra.get("round_medians", {}), b.extra.get("round_medians", {})
    return [ra[k] / rb[k] for k in sorted(ra) if k in rb and rb[k]]


def fmt(v, spec=".2f", sign=False):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return format(v, ("+" if sign else "") + spec)


def count(v):
    return "–" if v is None or v != v else f"{int(v):,}"


def ns_ci(r):
    return f"{r.median:.2f} [{r.lo:.2f}, {r.hi:.2f}]"


def apart(a, b):
    """Whether the 95% CIs of two medians do not overlap."""
    return a.lo > b.hi or a.hi < b.lo


def noisy(value, a, b, spec=".0f"):
    """`value` (derived from a - b), or a note if a and b are within noise."""
    return fmt(value, spec) if apart(a, b) else "within noise"


def table(header, rows, align=None):
    align = align or ["---"] + ["---:"] * (len(header) - 1)
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join(align) + "|")
    for row in rows:
        print("| " + " | ".join(str(c) for c in row) + " |")
    print()


def inner_of(name):
    m = re.match(r"^Instrumented<(.+)>( \(.*\))?$", name)
    return m.group(1) if m else None


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
    table(["group", "allocator", "median ns/pair", "added ns", "ratio", "fastest sample",
           "added ns", "ratio", "sample rate", "samples taken", "dropped"], rows,
          ["---", "---"] + ["---:"] * 9)

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
        table(["group", "added ns (median)", "added ns (fastest)", "CIs overlap",
               "samples per 1M pairs"], rows)


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
    table(["depth", "method", "frames/sample", "rate 0 ns/pair", "rate 1 ns/pair",
           "samples/pair", "µs/sample (median)", "µs/sample (fastest)", "ns/frame",
           "dropped", "frees lost", "drain ns/event"], rows,
          ["---", "---"] + ["---:"] * 10)


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
        table(["variant", "sampled blocks live", "median ns/pair", "fastest", "added vs System",
               "(fastest)", "added vs none live", "expected FP", "observed FP", "ns per FP"],
              rows, ["---"] + ["---:"] * 9)


def rate_key(name):
    if name == "System":
        return -1
    m = re.search(r"rate (\d+)", name)
    return int(m.group(1)) if m else 0


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
    table(["workload", "variant", "median ns/op", "fastest", "added vs System", "ratio",
           "ratio (fastest)", "added vs rate 0", "samples taken", "samples per 1M ops",
           "dropped", "frames/sample", "ns per sample", "drain ns/op", "calls/op"], rows,
          ["---", "---"] + ["---:"] * 13)


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
        table(["variant", "median ns/pair", "fastest", "added (median)", "added (fastest)",
               "other thread's samples per 1M pairs", "ns per sample of the other thread"],
              rows, ["---"] + ["---:"] * 6)


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
    table(["workload", "capture", "frames/sample", "ns per sample", "samples at 512 KiB",
           "estimated ns per pair", "measured 512 KiB - rate 0"], rows,
          ["---", "---"] + ["---:"] * 5)


def main():
    default = Path(__file__).resolve().parent.parent / "target" / "criterion"
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else default
    results = load(root)
    if not results:
        sys.exit(f"no criterion results under {root}; run "
                 "`cargo bench -p allocmeter-benches --bench pairs` "
                 "(or `--bench sampling`) first")
    report_pairs(results)
    report_sample_cost(results)
    report_unsampled_free(results)
    report_amortized(results)
    report_cross_thread(results)
    report_default_rate_estimate(results)


if __name__ == "__main__":
    main()

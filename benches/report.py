#!/usr/bin/env python3
"""Summarise the `pairs` criterion benchmark as a markdown table.

Reads target/criterion/*/*/new/{benchmark,estimates}.json (criterion replaces
characters such as '/', '<' and '>' with '_' in directory names, so the real
group and function names are taken from benchmark.json) and prints, per
group, the median ns per alloc+free pair of each allocator, and for each
`Instrumented<X>` the ns it adds over `X` and the ratio Instrumented / X; the
same again for the fastest sample (from sample.json), which is less affected
by other load on the machine.

Usage: python3 benches/report.py [CRITERION_DIR]   (default: target/criterion,
relative to the workspace root, i.e. the parent of this script's folder).
"""

import json
import sys
from pathlib import Path

ALLOCATORS = ["System", "Instrumented<System>", "MiMalloc", "Instrumented<MiMalloc>"]


def load(root):
    """{group_id: {function_id: (median_ns, ci_low_ns, ci_high_ns, fastest_ns)}}"""
    results = {}
    for bench_file in sorted(root.glob("*/*/new/benchmark.json")):
        estimates_file = bench_file.with_name("estimates.json")
        if not estimates_file.exists():
            continue
        bench = json.loads(bench_file.read_text())
        median = json.loads(estimates_file.read_text())["median"]
        ci = median["confidence_interval"]
        fastest = float("nan")
        sample_file = bench_file.with_name("sample.json")
        if sample_file.exists():
            sample = json.loads(sample_file.read_text())
            fastest = min(t / n for n, t in zip(sample["iters"], sample["times"]))
        group = bench["group_id"]
        function = bench.get("function_id") or bench.get("title")
        results.setdefault(group, {})[function] = (
            median["point_estimate"],
            ci["lower_bound"],
            ci["upper_bound"],
            fastest,
        )
    return results


def main():
    default = Path(__file__).resolve().parent.parent / "target" / "criterion"
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else default
    results = load(root)
    if not results:
        sys.exit(f"no criterion results under {root}; run "
                 "`cargo bench -p allocmeter-benches --bench pairs` first")

    print("ns per alloc+free pair (per thread): criterion's median, with the 95% CI\n"
          "of the median in brackets; and the fastest of the samples (less\n"
          "sensitive to interference from other load on the machine).\n")
    print("| group | allocator | median ns/pair | added ns | ratio "
          "| fastest sample | added ns | ratio |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for group in sorted(results):
        funcs = results[group]
        names = [n for n in ALLOCATORS if n in funcs]
        names += sorted(n for n in funcs if n not in ALLOCATORS)
        for name in names:
            median, lo, hi, fastest = funcs[name]
            added = ratio = added_f = ratio_f = ""
            inner = name[len("Instrumented<"):-1] if name.startswith("Instrumented<") else None
            if inner in funcs:
                base, base_f = funcs[inner][0], funcs[inner][3]
                added = f"{median - base:+.2f}"
                ratio = f"{median / base:.3f}"
                added_f = f"{fastest - base_f:+.2f}"
                ratio_f = f"{fastest / base_f:.3f}"
            print(f"| {group} | {name} | {median:.2f} [{lo:.2f}, {hi:.2f}] "
                  f"| {added} | {ratio} | {fastest:.2f} | {added_f} | {ratio_f} |")


if __name__ == "__main__":
    main()

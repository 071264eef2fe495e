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

The tables are bench_details.py's, the reading bench_load.py's.

Usage: python3 benches/report.py [CRITERION_DIR]   (default: target/criterion,
relative to the workspace root, i.e. the parent of this script's folder).
"""

import sys
from pathlib import Path

from bench_details import (report_amortized, report_cross_thread, report_default_rate_estimate,
                           report_pairs, report_sample_cost, report_unsampled_free)
from bench_load import load


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

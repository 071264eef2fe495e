#!/usr/bin/env python3
"""Allocations per operation (benches/benches/allocs.rs): its command and
its section of BENCHMARKS.md, the table of allocs/op, B/op and ns/op before
and after each technique, from criterion's results.

    python3 benches/bench_allocs.py [CRITERION_DIR]   # print the section

`run_all.py` runs `allocs_commands` after the other commands and puts
`section_allocs` before the report's Details. Python 3 stdlib only.
"""

import math
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_load import load  # noqa: E402
from bench_tables import NA, md_table, num  # noqa: E402

ROOT = HERE.parent
COMMAND = ["cargo", "bench", "-p", "allocmeter-benches", "--bench", "allocs", "--"]

# (pair, what the two versions are, why the count dropped), in the bench's order.
PAIRS = [
    ("vec_1000",
     "`Vec<u64>` of 1000: `push` from `Vec::new()` → `Vec::with_capacity(1000)`",
     "`push` on a full vector doubles its capacity, so 1000 elements from empty take one "
     "allocation of 4 elements and then a reallocation at 8, 16, … 1024 (allocmeter counts "
     "each as an allocation of the new size, as Go counts a grown slice): about twice the "
     "final size in bytes; reserving the 1000 first is one allocation of exactly 8000 bytes."),
    ("format_100",
     "100 lines: `format!` each → `write!` into one `String`, cleared per line",
     "`format!` builds a new `String` per line, starting with no capacity (its format string "
     "begins with an argument) and growing it as the pieces are written (8, 16, then 32 "
     "bytes for these 23-byte lines), so every line pays those steps again; `clear` keeps the capacity, so the reused `String` grows to "
     "the longest line once and the other lines allocate nothing."),
    ("hashmap_1000",
     "`HashMap<u64, u64>` of 1000: `insert` into `HashMap::new()` → `with_capacity(1000)`",
     "the table doubles its buckets each time it is 7/8 full, and each growth allocates a "
     "new table and moves every entry into it; `with_capacity` allocates the final table "
     "once (the same 2048 buckets the growing map ends with)."),
]


def allocs_commands(quick):
    """[(argv, env additions)]: the bench, in `run_all.py`'s form."""
    if quick:
        return [(COMMAND + ["--test"], {"CRITERION_HOME": str(ROOT / "target" / "criterion-quick")})]
    return [(COMMAND + ["--noplot"], {})]


def count(v):
    """An exact count: whole, or with the fraction when iterations differ."""
    if v is None or math.isnan(v):
        return NA
    if v < 1e-6:  # criterion is given 1e-9 for a sample of 0 allocations
        return "0"
    if abs(v - round(v)) < 1e-6:
        return f"{round(v):,}"
    return f"{v:,.2f}"


def section_allocs(results):
    """The section's Markdown blocks; `results` as `bench_load.load` returns them."""
    def fig(prefix, pair, version):
        r = results.get(f"{prefix}/{pair}", {}).get(version)
        return r.median if r else None

    out = ["## allocs: allocations per operation, before and after\n",
           "`benches/benches/allocs.rs`, with `allocmeter::criterion`'s measurements:\n"
           "`Allocations` (Go's `allocs/op`) and `AllocatedBytes` (`B/op`: bytes requested, a\n"
           "realloc counting its new size), and criterion's wall time (median ns per op). The\n"
           "counts are exact: the same at every sample and in every run; the times, on a small\n"
           "shared machine, vary by ±10 % and more between runs. Run on its own with\n"
           "`cargo bench -p allocmeter-benches --bench allocs -- --noplot`.\n"]
    rows = []
    for pair, what, _ in PAIRS:
        row = [what]
        for prefix, cell in (("allocs_per_op", count), ("bytes_per_op", count),
                             ("ns_per_op", num)):
            row += [cell(fig(prefix, pair, "before")), cell(fig(prefix, pair, "after"))]
        rows.append(row)
    out.append(md_table(["before → after", "allocs/op before", "after", "B/op before", "after",
                         "ns/op before", "after"], rows))
    out.append("Fewer allocations do not always show in the time: a few reallocations next to\n"
               "1000 pushes weigh little, while a hash table's growth also moves every entry.\n")
    out.append("Why the count dropped:\n")
    out.append("\n".join(f"- `{pair}`: {why}" for pair, _, why in PAIRS) + "\n")
    return out


def with_section(doc, results):
    """`doc` (a list of Markdown blocks) with the section before the Details."""
    at = next((i for i, block in enumerate(doc) if block.startswith("## Details")), len(doc))
    return doc[:at] + section_allocs(results) + doc[at:]


if __name__ == "__main__":
    crit = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "target" / "criterion"
    print("\n".join(section_allocs(load(crit))))

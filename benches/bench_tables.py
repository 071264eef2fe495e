"""Markdown tables and the number formats of their cells.

`md_table` is the one table writer of BENCHMARKS.md, `report.py` and
`wholeprogram.py`. The formats differ on purpose, and each keeps its own
mark for a missing figure: `num` and `ratio` (BENCHMARKS.md's tables, "n/a"),
`fmt`, `count` and `ns_ci` (the details tables of `report.py`, "–").
Python 3 stdlib only.
"""

import math
import statistics

from bench_load import round_ratios

NA = "n/a"


def md_table(header, rows, align=None):
    """A Markdown table, ending in a newline: `header`, then `align` (a
    "---" or "---:" per column; default: the first column left, the others
    right), then one line per row of cells."""
    align = align or ["---"] + ["---:"] * (len(header) - 1)
    out = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out) + "\n"


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
    """The ratio of result `r` to result `base`, as a cell."""
    if r is None or base is None or not base.median or math.isnan(r.median) or math.isnan(base.median):
        return NA
    # Groups measured in rounds: the median of the per-round ratios.
    per_round = round_ratios(r, base)
    x = statistics.median(per_round) if per_round else r.median / base.median
    return f"{x:.3f}×" if x < 10 else f"{x:.1f}×"


def fmt(v, spec=".2f", sign=False):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return format(v, ("+" if sign else "") + spec)


def count(v):
    return "–" if v is None or v != v else f"{int(v):,}"


def ns_ci(r):
    return f"{r.median:.2f} [{r.lo:.2f}, {r.hi:.2f}]"

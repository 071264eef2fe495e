"""The floor in the instruction counts: `System` recording what one rung of
benches/src/floor_rungs.rs records in bare thread-locals (one
`instr_ops_floor_<rung>` binary each), counted per operation as
benches/instructions.py counts the allocators, and its subsection of the
report, "The floor: what recording the same costs at least": what each rung
records, instructions per call, added over `System`, and what allocmeter adds
over the rung that records what it records.

instructions.py runs the binaries and writes the section; this module says
which rungs, on which operations, against which rows, and renders the
subsection. Python 3 stdlib only.
"""

import sys
import textwrap

from bench_tables import md_table

# The floor (benches/src/floor_rungs.rs): `System` recording what one rung
# records in bare thread-locals, one `instr_ops_floor_<rung>` binary each, in
# the ladder's order: (label, binary, what it records).
FLOOR = [
    ("floor: counts", "instr_ops_floor_counts", "one count per allocation and per free"),
    ("floor: counts, bytes", "instr_ops_floor_bytes", "and the bytes of each"),
    ("floor: classes, bytes, clock", "instr_ops_floor_classes_clock",
     "counts by size class (allocmeter's `ceil(log2(size))` cell) instead, bytes, and the "
     "sampling clock (a thread-local countdown from 512 KiB that takes no sample)"),
    ("floor: classes, bytes, clock, free check", "instr_ops_floor_classes_clock_check",
     "and the check a free (and a realloc, before its call) makes before it can know whether "
     "the block was sampled: allocmeter's filter hash and one load from a 16 KiB bit filter; "
     "on allocs and frees, what allocmeter records but for the null check that counts "
     "refused requests"),
    ("floor: exact sizes, clock, free check", "instr_ops_floor_exact_clock_check",
     "one counter per exact size up to 1 KiB (count and bytes at once), classes and bytes "
     "above, the clock and the check"),
    ("floor: classes, bytes, clock, free check, realloc kinds",
     "instr_ops_floor_realloc_kinds",
     "the check rung, and on a realloc also its kind (grown in place, shrunk in place, moved) "
     "and its grown or shrunk bytes, after a null check: on reallocs too, what allocmeter "
     "records"),
    ("floor: realloc kinds, check gated by a 256 B alignment", "instr_ops_floor_aligned_gate",
     "the realloc-kinds rung with its check made only for a block at a multiple of 256 B: "
     "what the check would cost if every sampled block were served at that alignment, which "
     "allocmeter does not do (not a floor: the measure of an idea)"),
]
FLOOR_TITLE = "### The floor: what recording the same costs at least"
# The operations the floor is counted on: a realloc records the new block as
# an allocation and the old one as a free in every rung.
FLOOR_OPS = ["alloc", "free", "realloc_grown_in_place", "realloc_shrunk_in_place",
             "realloc_moved", "pair_64", "growth_chain"]
# The allocmeter rows the floor is compared with, from the per-operation runs.
FLOOR_AGAINST = ["Instrumented<System>, off", "Instrumented<System>"]
# The rung that records what allocmeter records (on allocs and frees the
# check rung records the same; on reallocs only this one does).
FLOOR_SAME = "floor: classes, bytes, clock, free check, realloc kinds"
# The project's targets for what allocmeter adds over `System`, instructions
# per call: the 64 B pair, and each realloc; and the whole programs'
# instructions over `System`'s, in percent.
TARGETS = {"pair_64": 22, "realloc": 25, "wp_percent": 3.5}

REALLOC_OPS = ["realloc_grown_in_place", "realloc_shrunk_in_place", "realloc_moved"]


def fmt(v, digits=1):
    return "n/a" if v is None else f"{v:,.{digits}f}"


def span(values):
    """`a to b` of the smallest and largest of `values`, rounded, or `a` if they round alike."""
    lo, hi = f"{min(values):,.0f}", f"{max(values):,.0f}"
    return lo if lo == hi else f"{lo} to {hi}"


def floor_section(data, realloc_notes):
    """The floor's subsection from the saved figures `data`: what each rung
    records, its instructions per call and added over `System`, and
    allocmeter's over the rung that records what it records (none if `data`
    has no floor). `realloc_notes(ops, labels, calls, instrumented)` is
    instructions.py's check of each realloc's kind."""
    floor, ops = data.get("floor"), data["ops"]
    if not floor:
        return []
    ir = lambda label, op: (floor.get(label) or ops.get(label) or {}).get(op, {}).get("ir")
    rungs = [f for f in FLOOR if f[0] in floor]
    against = [a for a in FLOOR_AGAINST if a in ops]
    n1, n2 = data["calls"]
    doc = [FLOOR_TITLE + "\n"]
    doc.append(
        "What a wrapper around `System` that records what allocmeter records, and no more,\n"
        "needs: `benches/src/floor_rungs.rs`'s rungs (the ladder the `floor` benchmark times,\n"
        "and one that records reallocs as allocmeter does), each the global allocator of its\n"
        "own `instr_ops_floor_<rung>` binary, counted as above (the same operations and calls,\n"
        f"{n2:,} and {n1:,}). They keep their records in plain thread-local cells: no slot, no\n"
        "registry, no reader, nothing kept when a thread exits, no null check on an alloc;\n"
        "lower bounds, not usable allocators. In every rung a realloc forwards to\n"
        "`System.realloc` and counts as the allocation of the new block and the free of the\n"
        "old one, as allocmeter counts it. Each rung records (adding to the one before it,\n"
        "but for the exact sizes):\n")
    doc.append("| rung | records |\n|---|---|\n" + "\n".join(
        f"| {label} | {what} |" for label, _, what in rungs) + "\n")
    header = ["allocator"] + [f"`{op}`" for op in FLOOR_OPS]
    align = ["---"] + ["---:"] * len(FLOOR_OPS)
    labels = ["System"] + against + [f[0] for f in rungs]
    doc.append("Instructions per call:\n")
    doc.append(md_table(header, [[label] + [fmt(ir(label, op)) for op in FLOOR_OPS]
                                 for label in labels], align))
    added = lambda label, op: (None if None in (ir(label, op), ir("System", op))
                               else ir(label, op) - ir("System", op))
    sign = lambda v: "n/a" if v is None else f"{v:+,.1f}"
    doc.append("Added over `System` (instructions per call):\n")
    doc.append(md_table(header, [[label] + [sign(added(label, op)) for op in FLOOR_OPS]
                                 for label in labels[1:]], align))
    if FLOOR_SAME in floor and against:
        gap = lambda label, op: (None if None in (ir(label, op), ir(FLOOR_SAME, op))
                                 else ir(label, op) - ir(FLOOR_SAME, op))
        doc.append(f"allocmeter over the rung that records what it records ({FLOOR_SAME}):\n")
        doc.append(md_table(header, [[label] + [sign(gap(label, op)) for op in FLOOR_OPS]
                                     for label in against], align))
        reallocs = [added(FLOOR_SAME, op) for op in REALLOC_OPS]
        pair, chain = added(FLOOR_SAME, "pair_64"), added(FLOOR_SAME, "growth_chain")
        if None not in (pair, chain, *reallocs):
            doc.append(textwrap.fill(
                f"So a bare wrapper that records what allocmeter records needs {pair:,.0f} "
                f"instructions more than `System` per 64 B pair and {span(reallocs)} per "
                f"realloc (about {(chain - pair) / 4:,.0f} per realloc in the growth chain), "
                f"against the targets of at most {TARGETS['pair_64']} added per pair and "
                f"{TARGETS['realloc']} per realloc: a target below the floor is not met by "
                "recording the same in the plainest form tried here, so meeting it means "
                "recording less. The last table is what how allocmeter records costs over "
                "what it records (where its per-thread state lives and how a call reaches it, "
                "the null checks). The rungs show what each record costs; of `floor: counts`' "
                "alloc, most is the shape of the call, not the count: a record made after "
                "`malloc` returns turns the shim's tail jump into a call with a stack frame, "
                "where a free records before its tail jump to `free` (and a realloc keeps its "
                "arguments in saved registers across the call).", 88) + "\n")
    doc += gate_paragraph(data, ir)
    notes = realloc_notes(floor, [f[0] for f in rungs], n2, {})
    if notes:
        doc.append("Where a rung did not do the realloc kind asked for:\n\n"
                   + "\n".join(notes) + "\n")
    return doc


GATE = "floor: realloc kinds, check gated by a 256 B alignment"


def gate_paragraph(data, ir):
    """What the aligned-address gate would save: per call (where the figures
    depend on the harness's one address) and on the whole programs."""
    if ir(GATE, "free") is None or ir(FLOOR_SAME, "free") is None:
        return []
    wp = data.get("wp") or {}
    whole = []
    for w, d in wp.items():
        base, same, gate = (d["ir"].get(b) for b in ("wp_system", "wp_floor",
                                                      "wp_floor_aligned_gate"))
        if None not in (base, same, gate):
            whole.append(f"{w} {(same / base - 1) * 100:+.1f} % without it and "
                         f"{(gate / base - 1) * 100:+.1f} % with it")
    text = (
        "The last rung measures an idea rather than a floor: sampled blocks served at a "
        "larger alignment (256 B), so that a free or realloc of a block at any other address "
        "skips the filter's hash and load after one test. Per call its figures depend on the "
        "one address each operation's loop frees or reallocates over and over: "
        f"`free` {ir(GATE, 'free'):,.0f} against {ir(FLOOR_SAME, 'free'):,.0f} (that block sits "
        "at a multiple of 256 B, so it pays the test and the check), "
        f"`realloc_grown_in_place` {ir(GATE, 'realloc_grown_in_place'):,.0f} against "
        f"{ir(FLOOR_SAME, 'realloc_grown_in_place'):,.0f} (it does not)."
        + (" On the whole programs (below: `wp_floor` and `wp_floor_aligned_gate` against "
           "`System`), where addresses vary, " + "; ".join(whole) + "."
           if whole else ""))
    return [textwrap.fill(text, 88) + "\n"]


def splice_floor(report, block, title):
    """`report` with the floor's subsection of its instructions section (the
    section `title`) replaced by `block`, or put before the subsection on what instruction
    counts do not capture (or at the section's end) if it has none."""
    lines = report.split("\n")
    start = next((i for i, ln in enumerate(lines) if ln.startswith(title)), None)
    if start is None:
        sys.exit(f"no {title!r} in the report: run the whole of benches/instructions.py")
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")),
               len(lines))
    at = next((i for i in range(start, end) if lines[i].startswith(FLOOR_TITLE)), None)
    if at is None:
        at = next((i for i in range(start, end)
                   if lines[i].startswith("### What instruction counts")), end)
        stop = at
    else:
        stop = next((i for i in range(at + 1, end) if lines[i].startswith("#")), end)
    return "\n".join(lines[:at] + block.rstrip("\n").split("\n") + [""] + lines[stop:])

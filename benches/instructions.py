#!/usr/bin/env python3
"""Instructions executed, counted by valgrind: what allocmeter adds per
allocator operation and per whole program, a figure a busy host cannot blur.

    python3 benches/instructions.py                 # full: about 4 min on 2 cores
    python3 benches/instructions.py --quick         # tiny sizes: checks the path runs
    python3 benches/instructions.py --section       # print the section from saved JSON
    python3 benches/instructions.py --write-report  # put it into BENCHMARKS.md, alone
    python3 benches/instructions.py --floor-only    # the floor's rows alone: about 2 min
    python3 benches/instructions.py --floor-only --write-report  # only its subsection
    python3 benches/instructions.py --before REV    # and REV's summary, measured beside

It builds the `instr_ops_*` and `wp_*` binaries (release) and runs:

- per operation (`benches/src/instr_ops.rs`): each operation of each
  allocator in its own process under `valgrind --tool=callgrind
  --toggle-collect='*instr_ops::measured_<op>'`, which counts only inside
  the operation (its set-up and clean-up run outside), at two numbers of
  calls; instructions per operation are the difference divided by the
  difference in calls, which cancels the first calls' one-off work. The
  allocators: `System` (glibc), `MiMalloc`, `Jemalloc`, bare and as
  `Instrumented<_>` at sample rate 0 (off), 512 KiB (default) and 64 KiB.
- the floor: the same per-operation counts (alloc, free, the three realloc
  kinds, the 64 B pair, the growth chain) of the `instr_ops_floor_<rung>`
  binaries, `System` recording what each rung of benches/src/floor_rungs.rs
  records in bare thread-locals, rate `bare`; the report compares them with
  `System` and `Instrumented<System>` (the subsection "The floor: what
  recording the same costs at least").
- the 64 B pair again with `--cache-sim=yes --branch-sim=yes` (`System` and
  `Instrumented<System>`): cache misses and mispredicted branches per pair,
  which instruction counts do not show.
- whole programs: every `wp_*` binary (benches/wholeprogram.py's) under
  `valgrind --tool=cachegrind --cache-sim=no`, json_map at scale 0.2 and
  producer_consumer at scale 0.1: instructions of the whole process (the
  median of 3 runs for `System` and `Instrumented<System>`, the summary's:
  how the threads interleave moves a run by up to a few percent).
- with `--before REV`, the summary's binaries built at revision REV, counted
  the same way (instr_before.py): the "Before and after" table. A later run
  without it keeps the saved REV figures.

It writes target/instructions.json (--quick: target/instructions.quick.json,
with one floor rung; --floor-only: target/instructions.floor.json, with only
the floor, `System` and `Instrumented<System>` at rates 0 and 512 KiB on the
floor's operations) and prints the section (--floor-only: the floor's
subsection); `run_all.py` puts the section into BENCHMARKS.md
(`run_all.py --instructions-only` runs this and replaces only this section
of the committed report). The floor's rungs, operations and subsection are
instructions_floor.py's. Python 3 stdlib only; needs valgrind.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from bench_tables import md_table  # noqa: E402
import instr_before  # noqa: E402  (benches/instr_before.py)
from instructions_floor import (FLOOR, FLOOR_AGAINST, FLOOR_OPS, FLOOR_SAME,  # noqa: E402
                                REALLOC_OPS, TARGETS, floor_section, splice_floor)

TITLE = "## Instructions: what allocmeter adds, counted by valgrind"

# (label, binary, rate argument, label of its bare inner allocator or None)
CONFIGS = [
    ("System", "instr_ops_system", "bare", None),
    ("Instrumented<System>, off", "instr_ops_instrumented_system", "off", "System"),
    ("Instrumented<System>", "instr_ops_instrumented_system", "default", "System"),
    ("Instrumented<System>, 64 KiB", "instr_ops_instrumented_system", "64k", "System"),
    ("MiMalloc", "instr_ops_mimalloc", "bare", None),
    ("Instrumented<MiMalloc>, off", "instr_ops_instrumented_mimalloc", "off", "MiMalloc"),
    ("Instrumented<MiMalloc>", "instr_ops_instrumented_mimalloc", "default", "MiMalloc"),
    ("Instrumented<MiMalloc>, 64 KiB", "instr_ops_instrumented_mimalloc", "64k", "MiMalloc"),
    ("Jemalloc", "instr_ops_jemalloc", "bare", None),
    ("Instrumented<Jemalloc>, off", "instr_ops_instrumented_jemalloc", "off", "Jemalloc"),
    ("Instrumented<Jemalloc>", "instr_ops_instrumented_jemalloc", "default", "Jemalloc"),
    ("Instrumented<Jemalloc>, 64 KiB", "instr_ops_instrumented_jemalloc", "64k", "Jemalloc"),
]

# (op, what it is, how it is measured), in benches/src/instr_ops.rs's order.
OPS = [
    ("none", "an empty call of a `measured_*` function (in every figure below)"),
    ("alloc", "`alloc` of 64 B (freed outside the count)"),
    ("alloc_zeroed", "`alloc_zeroed` of 64 B (freed outside the count)"),
    ("free", "`dealloc` of a 64 B block (allocated outside the count)"),
    ("realloc_grown_in_place", "`realloc` 33 B → 40 B: within the block's slack"),
    ("realloc_shrunk_in_place", "`realloc` 1024 B → 960 B"),
    ("realloc_moved", "`realloc` 64 B → 4096 B, a live 48 B block allocated after it"),
    ("pair_64", "`Vec::<u8>::with_capacity(64)` dropped: alloc+free"),
    ("zeroed_pair_64", "`vec![0u8; 64]` dropped: alloc_zeroed+free"),
    ("growth_chain", "`Vec<u64>` pushed from empty to 64 elements, dropped: "
                     "1 alloc, 4 reallocs, 1 free, and the 64 pushes"),
]
REALLOC_KIND = {"realloc_grown_in_place": "grown_in_place",
                "realloc_shrunk_in_place": "shrunk_in_place", "realloc_moved": "moved"}

# (binary, label, bare binary or None); wholeprogram.py's binaries.
WP = [
    ("wp_system", "System", None),
    ("wp_instrumented_system_off", "Instrumented<System>, off", "wp_system"),
    ("wp_instrumented_system", "Instrumented<System>", "wp_system"),
    ("wp_instrumented_system_64k", "Instrumented<System>, 64 KiB", "wp_system"),
    ("wp_floor", "floor: classes, bytes, clock, free check, realloc kinds", "wp_system"),
    ("wp_floor_aligned_gate", "floor: realloc kinds, check gated by a 256 B alignment",
     "wp_system"),
    ("wp_mimalloc", "MiMalloc", None),
    ("wp_instrumented_mimalloc", "Instrumented<MiMalloc>", "wp_mimalloc"),
    ("wp_jemalloc", "Jemalloc", None),
    ("wp_instrumented_jemalloc", "Instrumented<Jemalloc>", "wp_jemalloc"),
]
WP_SCALES = {"json_map": 0.2, "producer_consumer": 0.1}

FULL = {"calls": (2000, 4000), "cache_calls": (20000, 40000), "wp_scales": WP_SCALES,
        "configs": None, "wp": None, "floor": None}
# One bare and one instrumented allocator, one floor rung, tiny sizes: it
# runs, no claims.
QUICK = {"calls": (20, 40), "cache_calls": (20, 40),
         "wp_scales": {"json_map": 0.002, "producer_consumer": 0.002},
         "configs": {"System", "Instrumented<System>"},
         "wp": {"wp_system", "wp_instrumented_system"},
         "floor": {"floor: classes, bytes, clock, free check, realloc kinds"}}
# `--floor-only`: the floor and the rows it is compared with, on its operations.
FLOOR_ONLY = dict(FULL, configs={"System", *FLOOR_AGAINST})


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def target_dir():
    out = subprocess.run(["cargo", "metadata", "--format-version", "1", "--no-deps"],
                         cwd=ROOT, check=True, stdout=subprocess.PIPE).stdout
    return Path(json.loads(out)["target_directory"]) / "release"


def build(bins):
    cmd = ["cargo", "build", "--release", "-p", "allocmeter-benches"]
    for b in sorted(set(bins)):
        cmd += ["--bin", b]
    log("$", " ".join(cmd))
    subprocess.run(cmd, cwd=ROOT, check=True)


def run(argv):
    """Runs argv; returns its stdout and stderr, or raises with the stderr."""
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       stdin=subprocess.DEVNULL)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited with {p.returncode}\n{p.stderr[-2000:]}")
    return p.stdout, p.stderr


def callgrind(binary, args, op, extra=()):
    """Runs `binary args` under callgrind counting only inside `measured_<op>`;
    returns ({event: count}, the binary's stdout)."""
    with tempfile.TemporaryDirectory() as d:
        out_file = Path(d) / "cg.out"
        stdout, _ = run(["valgrind", "--tool=callgrind", *extra,
                         f"--toggle-collect=*instr_ops::measured_{op}",
                         f"--callgrind-out-file={out_file}", str(binary), *args])
        text = out_file.read_text()
    events = re.search(r"^events:\s*(.+)$", text, re.M).group(1).split()
    summary = re.search(r"^(?:summary|totals):\s*(.+)$", text, re.M).group(1).split()
    return dict(zip(events, (int(v) for v in summary))), stdout


def parse_stdout(stdout, op):
    """The binary's report: how many reallocs moved (its own check) and
    allocmeter's realloc counters by kind."""
    moved = int(re.search(rf"^op {op} \d+ moved=(\d+)$", stdout, re.M).group(1))
    r = re.search(r"^reallocs grown_in_place=(\d+) shrunk_in_place=(\d+) moved=(\d+)$",
                  stdout, re.M)
    s = re.search(r"^samples taken=(\d+) dropped=(\d+)$", stdout, re.M)
    return {"moved": moved,
            "allocmeter_reallocs": {"grown_in_place": int(r.group(1)),
                                    "shrunk_in_place": int(r.group(2)),
                                    "moved": int(r.group(3))},
            "samples": int(s.group(1)), "dropped": int(s.group(2))}


def per_op(binary, rate, op, calls, extra=()):
    """{event: per call} from the difference between two runs, and both runs' reports."""
    (n1, n2), counts, reports = calls, [], []
    for n in calls:
        c, stdout = callgrind(binary, [rate, str(n), op], op, extra)
        counts.append(c)
        reports.append(parse_stdout(stdout, op))
    return {e: (counts[1][e] - counts[0][e]) / (n2 - n1) for e in counts[0]}, reports


def measure_ops(bindir, mode, ops=None):
    """{label: {op: {"ir": per call, "runs": reports}}} of CONFIGS (those of
    `mode`), on `ops` (all of OPS if None)."""
    results = {}
    for label, binary, rate, _ in CONFIGS:
        if mode["configs"] is not None and label not in mode["configs"]:
            continue
        results[label] = measure_one(bindir, label, binary, rate, mode,
                                     ops or [op for op, _ in OPS])
    return results


def measure_floor(bindir, mode):
    """measure_ops' figures for the floor's rungs (those of `mode`), on FLOOR_OPS."""
    return {label: measure_one(bindir, label, binary, "bare", mode, FLOOR_OPS)
            for label, binary, _ in FLOOR
            if mode["floor"] is None or label in mode["floor"]}


def measure_one(bindir, label, binary, rate, mode, ops):
    """{op: {"ir": per call, "runs": reports}} of one allocator (`binary` at `rate`)."""
    results = {}
    for op in ops:
        t = time.monotonic()
        per, reports = per_op(bindir / binary, rate, op, mode["calls"])
        results[op] = {"ir": per["Ir"], "runs": reports}
        log(f"{label:34} {op:24} {per['Ir']:10.2f} instr/op  ({time.monotonic() - t:.1f} s)")
    return results


def measure_cache(bindir, mode):
    """The 64 B pair with the cache and branch simulators, System and Instrumented<System>."""
    out = {}
    for label, binary, rate, _ in CONFIGS[:3:2]:
        per, _ = per_op(bindir / binary, rate, "pair_64", mode["cache_calls"],
                        ["--cache-sim=yes", "--branch-sim=yes"])
        out[label] = per
        log(f"{label:34} pair_64 with cache-sim: {per}")
    return out


def cachegrind_ir(binary, args):
    """Instructions of a whole process, from cachegrind's `I refs` line."""
    _, stderr = run(["valgrind", "--tool=cachegrind", "--cache-sim=no",
                     "--cachegrind-out-file=/dev/null", str(binary), *args])
    m = re.search(r"I\s+refs:\s+([\d,]+)", stderr)
    if not m:
        raise RuntimeError(f"no `I refs` in cachegrind's output of {binary}:\n{stderr[-2000:]}")
    return int(m.group(1).replace(",", ""))


# The whole programs counted 3 times (the median goes into the report): the
# summary's pair. A run's count moves with how its threads interleave (the
# aggregator's drains and ticks under valgrind's one-thread-at-a-time), by
# 0.2 % as a rule and up to 3 % once in 8 runs on the project's machine.
WP_MEDIAN_OF = {"wp_system": 3, "wp_instrumented_system": 3}


def wp_ir(binary, workload, scale, runs=1):
    """Instructions of `binary` running `workload` at `scale`: the median of
    `runs` runs, and every run's count."""
    counts = sorted(cachegrind_ir(binary, ["--workload", workload, "--scale", repr(scale)])
                    for _ in range(runs))
    return counts[len(counts) // 2], counts


def measure_wp(bindir, mode):
    out = {}
    for workload, scale in mode["wp_scales"].items():
        out[workload] = {"scale": scale, "ir": {}, "runs": {}}
        for binary, label, _ in WP:
            if mode["wp"] is not None and binary not in mode["wp"]:
                continue
            t = time.monotonic()
            runs = 1 if mode is QUICK else WP_MEDIAN_OF.get(binary, 1)
            ir, counts = wp_ir(bindir / binary, workload, scale, runs)
            out[workload]["ir"][binary] = ir
            out[workload]["runs"][binary] = counts
            log(f"{workload:18} {label:34} {ir:>15,} instr  ({time.monotonic() - t:.0f} s)")
    return out


def fmt(v, digits=1):
    return "n/a" if v is None else f"{v:,.{digits}f}"


def section(data, quick=False):
    """The report's Markdown blocks from the saved JSON (None: nothing saved)."""
    doc = [TITLE + "\n"]
    if data is None:
        doc.append("n/a: no results; run `python3 benches/instructions.py`.\n")
        return doc
    doc.append(
        "Time is the figure that matters to a program, but on a shared host it swings by more\n"
        "than allocmeter costs. Instructions executed do not: valgrind counts them the same on\n"
        "every run of the same binary (sampling's random intervals come from a fixed seed;\n"
        "only the whole-program counts vary a little, with how their threads interleave).\n"
        "Measured by `python3 benches/instructions.py` "
        f"({data['seconds']:.0f} s on this machine), with {data['valgrind']}.\n")
    if quick:
        doc.append("**Smoke run**: tiny sizes and two allocators; the figures only show that it "
                   "runs.\n")
    ops = data["ops"]
    labels = [c[0] for c in CONFIGS if c[0] in ops]
    n1, n2 = data["calls"]
    doc += summary(data)
    doc += instr_before.table(data, md_table)
    doc.append("### Per operation\n")
    doc.append(
        "Each operation runs through the process's `#[global_allocator]`, as in a program\n"
        "(`benches/src/instr_ops.rs`, one `instr_ops_*` binary per allocator), inside its own\n"
        "`#[inline(never)]` function, and callgrind counts only inside it (`--toggle-collect`).\n"
        "That is the only way to count an alloc without its free, a free without its alloc, or a\n"
        "realloc without the blocks set up around it: the difference of two run lengths (as\n"
        "`pair_loop` measures the pair) counts everything the loop does. The pairs and the\n"
        "growth chain, which the difference of run lengths could measure, are counted the same\n"
        "way so that every row is comparable. Instructions per call are the difference between\n"
        f"{n2:,} and {n1:,} calls (one process per operation and allocator), which cancels the\n"
        "first calls' one-off work (the thread's slot, the allocator's first pages); they include\n"
        "the measured function's own call (`none`: 4 instructions), the same for every\n"
        "allocator. Sampling: `off` is rate 0, no suffix the default 512 KiB; the sampled\n"
        "figures include their share of the samples (one per 512 KiB allocated on average, about\n"
        "one per 8,000 64 B allocations), one sample being taken first, outside the count, so\n"
        "that the stack walker's set-up lands in no run.\n")
    doc.append("| operation | what |\n|---|---|\n" + "\n".join(
        f"| `{op}` | {what} |" for op, what in OPS) + "\n")
    header = ["allocator"] + [f"`{op}`" for op, _ in OPS]
    rows = []
    for label in labels:
        rows.append([label] + [fmt(ops[label].get(op, {}).get("ir")) for op, _ in OPS])
    doc.append("Instructions per call:\n")
    doc.append(md_table(header, rows, ["---"] + ["---:"] * len(OPS)))
    base_of = {c[0]: c[3] for c in CONFIGS}
    rows = []
    for label in labels:
        base = base_of[label]
        if base is None or base not in ops:
            continue
        row = [label]
        for op, _ in OPS[1:]:
            a, b = ops[label].get(op, {}).get("ir"), ops[base].get(op, {}).get("ir")
            row.append("n/a" if a is None or b is None else f"{a - b:+,.1f}")
        rows.append(row)
    doc.append("Added by allocmeter (instructions per call over the bare inner allocator):\n")
    doc.append(md_table(["allocator"] + [f"`{op}`" for op, _ in OPS[1:]], rows,
                        ["---"] + ["---:"] * (len(OPS) - 1)))
    doc.append(
        "Where the added instructions go, for the unsampled path (`callgrind_annotate` of\n"
        "one operation's run, `Instrumented<System>` at rate 0, per call; allocmeter's code is\n"
        "inlined into the `__rust_alloc`/`__rust_dealloc`/`__rust_realloc` shims, so callgrind\n"
        "attributes it by source file): a free adds the sampled-pointer filter's check\n"
        "(`lockfree/sampled`, 9: the address hash and one relaxed load), the thread's counters\n"
        "(relaxed atomics, 3) and the shim and `Instrumented` around them; a realloc, whatever its\n"
        "kind, adds about 61: the same filter check (9, for `take_if_sampled`), `instrumented.rs`\n"
        "(14: the kind's classification and the record), the shim (20), the size arithmetic (7),\n"
        "the counters (7 + 4) and the thread-local slot lookup. Reproduce with\n"
        "`valgrind --tool=callgrind --toggle-collect='*instr_ops::measured_free' "
        "--callgrind-out-file=cg.out target/release/instr_ops_instrumented_system off 10000 free`\n"
        "then `callgrind_annotate cg.out`.\n")
    doc.append(
        "With sampling on, some of the added instructions are not allocmeter's: a sample\n"
        "allocates (its record, the sampled-pointer table) and the rings are drained between\n"
        "calls, which leaves glibc's heap in another state, and glibc's own work per call\n"
        "changes with it. `Instrumented<System>`'s `realloc_moved` at the default rate adds\n"
        "about 90 instructions per call over rate 0, of which about 53 are glibc's\n"
        "`_int_malloc` taking a slower path; the growth chain at 64 KiB adds about 770 over\n"
        "rate 0, of which about 610 are glibc's (`_int_free`, `_int_malloc`, `unlink_chunk`)\n"
        "and about 30 allocmeter's sampling (`stack::walker::walk`, `local::push_event`). The\n"
        "same operations on `MiMalloc` and `Jemalloc` add 5 to 10 times less at those rates.\n")
    # Which realloc kind really happened: the binary's own pointer check, and
    # allocmeter's counters for the instrumented runs.
    notes = realloc_notes(ops, labels, n2, {c[0]: c[3] is not None for c in CONFIGS})
    doc.append(
        "Each realloc's kind is checked on every call (the binary compares the addresses, and\n"
        "for the instrumented allocators allocmeter's own counters by kind, "
        "`allocmeter::stats().reallocs`, must agree): "
        + ("every allocator did every kind on every call.\n" if not notes
           else "where they did not:\n\n" + "\n".join(notes) + "\n"))
    doc += floor_section(data, realloc_notes)
    cache = data.get("cache")
    if cache:
        ev = lambda c, *names: sum(c.get(n, 0) for n in names)
        rows = []
        for label, c in cache.items():
            rows.append([label, fmt(ev(c, "Ir")), fmt(ev(c, "I1mr"), 3),
                         fmt(ev(c, "D1mr", "D1mw"), 3), fmt(ev(c, "ILmr", "DLmr", "DLmw"), 3),
                         fmt(ev(c, "Bc", "Bi")), fmt(ev(c, "Bcm", "Bim"), 3)])
        c1, c2 = data["cache_calls"]
        doc.append("### What instruction counts do not capture\n")
        doc.append(
            "An instruction count weighs a cache miss or a mispredicted branch like any other\n"
            "instruction, and shows no wait on memory, on an atomic or on another thread; and\n"
            "valgrind runs the threads of a process one at a time, so contention between\n"
            "threads does not show. The 64 B pair again, with valgrind's cache and branch\n"
            "simulators (`--cache-sim=yes --branch-sim=yes`, callgrind, difference between\n"
            f"{c2:,} and {c1:,} pairs in a loop, per pair):\n")
        doc.append(md_table(["allocator", "instructions", "I1 misses", "D1 misses", "LL misses",
                             "branches", "mispredicted"], rows,
                            ["---"] + ["---:"] * 6))
        doc.append(
            "In a hot loop the counters, the slot and the allocator's free lists stay in the\n"
            "first-level cache and the branches go the same way each time, so the misses and\n"
            "mispredictions per pair are near zero for both: allocmeter's cost here is its\n"
            "instructions. In a real program, whose other work evicts them, each operation may\n"
            "also pay the misses of the cache lines it touches (the thread's slot and counters),\n"
            "which only timings show.\n")
    wp = data.get("wp")
    if wp:
        doc.append("### Whole program\n")
        doc.append(
            "The `wp_*` binaries of the whole-program benchmark, each its own\n"
            "`#[global_allocator]`, under `valgrind --tool=cachegrind --cache-sim=no`: every\n"
            "instruction of the process, start to exit (the exporter's aggregator thread\n"
            "included, without HTTP).\n")
        header = ["allocator"]
        for w, d in wp.items():
            header += [f"{w} (scale {d['scale']}) instructions", "ratio"]
        rows = []
        for binary, label, bare in WP:
            if not any(binary in d["ir"] for d in wp.values()):
                continue
            row = [label]
            for d in wp.values():
                ir, base = d["ir"].get(binary), d["ir"].get(bare) if bare else None
                row.append("n/a" if ir is None else f"{ir / 1e9:.3f} G")
                row.append("—" if bare is None else
                           ("n/a" if ir is None or base is None
                            else f"{ir / base:.3f}× ({(ir / base - 1) * 100:+.1f} %)"))
            rows.append(row)
        doc.append(md_table(header, rows, ["---"] + ["---:"] * (len(header) - 1)))
    return doc


def realloc_notes(ops, labels, calls, instrumented):
    """Lines saying where an allocator did not do the realloc kind asked for
    on every one of `calls` calls (by its addresses, and for the
    `instrumented` labels by allocmeter's own counters); none if all did."""
    notes = []
    for label in labels:
        for op, kind in REALLOC_KIND.items():
            r = ops[label].get(op)
            if not r:
                continue
            run2 = r["runs"][-1]
            moved = run2["moved"]
            want_moved = kind == "moved"
            if moved != (calls if want_moved else 0):
                notes.append(f"- {label}: `{op}`: {moved:,} of {calls:,} calls moved the block, "
                             f"so this allocator did not do the kind asked for every call.")
            am = run2["allocmeter_reallocs"]
            if instrumented.get(label) and am[kind] < calls:
                notes.append(f"- {label}: `{op}`: allocmeter counted {am} for {calls:,} calls.")
    return notes


def target_lines(data):
    """The targets, met or not, each with the floor's figure (what recording
    the same in bare thread-locals costs): a list of Markdown blocks."""
    ops, floor, wp = data["ops"], data.get("floor") or {}, data.get("wp") or {}

    def added(table, label, op):
        a = ops.get("System", {}).get(op, {}).get("ir")
        b = table.get(label, {}).get(op, {}).get("ir")
        return None if None in (a, b) else b - a

    def verdict(value, target):
        return "met" if value <= target else "**NOT met**"

    lines = []
    pair, pair_floor = (added(ops, "Instrumented<System>", "pair_64"),
                        added(floor, FLOOR_SAME, "pair_64"))
    if pair is not None:
        floor_note = "" if pair_floor is None else f"; the floor, {pair_floor:+,.0f}"
        lines.append(f"- {verdict(pair, TARGETS['pair_64'])}: the 64 B pair adds {pair:+,.0f} "
                     f"(target ≤ {TARGETS['pair_64']}{floor_note})")
    kinds = REALLOC_OPS
    off = [added(ops, "Instrumented<System>, off", k) for k in kinds]
    fl = [added(floor, FLOOR_SAME, k) for k in kinds]
    if None not in off:
        worst = max(off)
        lo, hi = f"{min(off):+,.0f}", f"{worst:+,.0f}"
        text = (f"- {verdict(worst, TARGETS['realloc'])}: a realloc adds {lo}"
                + ("" if lo == hi else f" to {hi}")
                + f" by kind, sampling off (target ≤ {TARGETS['realloc']}")
        if None not in fl:
            lo, hi = f"{min(fl):+,.0f}", f"{max(fl):+,.0f}"
            text += f"; the floor, {lo}" + ("" if lo == hi else f" to {hi}")
        lines.append(text + "; with sampling the moved kind adds glibc's own work, see below)")
    for w, d in wp.items():
        a, b = d["ir"].get("wp_system"), d["ir"].get("wp_instrumented_system")
        f = d["ir"].get("wp_floor")
        if None in (a, b):
            continue
        pct = (b / a - 1) * 100
        text = (f"- {verdict(pct, TARGETS['wp_percent'])}: whole program {w} "
                f"{pct:+.1f} % (target ≤ {TARGETS['wp_percent']} %")
        if f is not None:
            text += f"; the floor, `wp_floor`, {(f / a - 1) * 100:+.1f} %"
        lines.append(text + ")")
    if not lines:
        return []
    return ["Targets (instructions added over `System`, default rate; the floor is the "
            "wrapper below that records the same in bare thread-locals):\n",
            "\n".join(lines) + "\n"]


def summary(data):
    """The headline table: `System` against `Instrumented<System>` at the
    default rate, per operation and per whole program."""
    ops, wp = data["ops"], data.get("wp") or {}
    bare, inst = ops.get("System", {}), ops.get("Instrumented<System>", {})
    ir = lambda d, op: d.get(op, {}).get("ir")
    rows = []
    for op, what in (("pair_64", "64 B alloc+free pair (`Vec::with_capacity(64)` dropped)"),
                     ("growth_chain", "a `Vec<u64>` pushed from empty to 64 elements "
                                      "(1 alloc, 4 reallocs, 1 free)"),
                     ("zeroed_pair_64", "`vec![0u8; 64]` dropped (alloc_zeroed+free)")):
        a, b = ir(bare, op), ir(inst, op)
        added = "n/a" if a is None or b is None else f"{b - a:+,.0f}"
        if op == "growth_chain" and added != "n/a" and None not in (ir(bare, "pair_64"),
                                                                     ir(inst, "pair_64")):
            per = (b - a - (ir(inst, "pair_64") - ir(bare, "pair_64"))) / 4
            added += f" (about {per:+,.0f} per realloc)"
        rows.append([what, fmt(a, 0), fmt(b, 0), added])
    for w, d in wp.items():
        a, b = d["ir"].get("wp_system"), d["ir"].get("wp_instrumented_system")
        rows.append([f"whole program {w} (`wp_*`, scale {d['scale']})",
                     "n/a" if a is None else f"{a / 1e9:.3f} G",
                     "n/a" if b is None else f"{b / 1e9:.3f} G",
                     "n/a" if None in (a, b) else f"{(b / a - 1) * 100:+.1f} %"])
    return ["### Summary: the current hot path\n",
            *target_lines(data),
            "`System` (glibc) against `Instrumented<System>` at the default sample rate\n"
            "(512 KiB), instructions per operation and per whole program (the tables below give\n"
            "every allocator and rate; \"Before and after\" below gives an earlier revision's\n"
            "beside them).\n",
            md_table(["what", "System", "Instrumented<System>", "added"], rows,
                     ["---", "---:", "---:", "---:"])]


def splice(report, block):
    """`report` (BENCHMARKS.md's text) with its instructions section replaced by
    `block`, or `block` put before the Details if it has none."""
    lines = report.split("\n")
    start = next((i for i, ln in enumerate(lines) if ln.startswith(TITLE)), None)
    if start is None:
        at = next((i for i, ln in enumerate(lines) if ln.startswith("## Details")), len(lines))
        return "\n".join(lines[:at] + block.rstrip("\n").split("\n") + [""] + lines[at:])
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")),
               len(lines))
    return "\n".join(lines[:start] + block.rstrip("\n").split("\n") + [""] + lines[end:])


COMMAND = ["python3", "benches/instructions.py"]


def commands(quick):
    """[(argv, env additions)]: this script, in `run_all.py`'s form."""
    return [(COMMAND + (["--quick"] if quick else []), {})]


def with_section(doc, quick=False):
    """`doc` (a list of Markdown blocks) with this section before the Details."""
    at = next((i for i, block in enumerate(doc) if block.startswith("## Details")), len(doc))
    return doc[:at] + section(load(quick), quick) + doc[at:]


def update_report(path, line):
    """Replaces only this section of the report at `path` (and puts `line`, the
    command with its exit status and time, into its list of commands if it has
    no line for this script yet), leaving the timing sections as they are."""
    lines = splice(path.read_text(), "\n".join(section(load()))).split("\n")
    start = lines.index("## Commands") if "## Commands" in lines else None
    if start is not None:
        fence = [i for i in range(start, len(lines)) if lines[i].startswith("```")][:2]
        block = lines[fence[0] + 1:fence[1]] if len(fence) == 2 else []
        mine = [i for i, ln in enumerate(block) if ln.startswith(" ".join(COMMAND))]
        if mine:
            lines[fence[0] + 1 + mine[0]] = line
        elif len(fence) == 2:
            lines.insert(fence[1], line)
    path.write_text("\n".join(lines))


def json_path(kind):
    """Where a run saves its figures: `kind` "full" (or False), "quick" (or
    True) or "floor"."""
    kind = {True: "quick", False: "full"}.get(kind, kind)
    name = {"full": "instructions.json", "quick": "instructions.quick.json",
            "floor": "instructions.floor.json"}[kind]
    return ROOT / "target" / name


def load(quick=False, kind=None):
    """The saved figures of the full or `quick` run, or of a run of `kind`
    (see json_path), or None."""
    p = json_path(kind or quick)
    return json.loads(p.read_text()) if p.exists() else None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="tiny sizes, two allocators and one floor rung: it runs")
    ap.add_argument("--floor-only", action="store_true",
                    help="only the floor's rungs, System and Instrumented<System> on the "
                         "floor's operations; with --write-report, replace only the floor's "
                         "subsection")
    ap.add_argument("--section", action="store_true", help="run nothing; print the saved section")
    ap.add_argument("--write-report", action="store_true",
                    help="run nothing; replace this section of BENCHMARKS.md with the saved one")
    ap.add_argument("--no-build", action="store_true", help="use the binaries as built")
    ap.add_argument("--before", metavar="REV",
                    help="also build and count the summary's binaries at git revision REV "
                         "(the 'Before and after' table)")
    args = ap.parse_args()
    if args.quick and args.floor_only:
        ap.error("--quick and --floor-only exclusive")
    if args.before and (args.section or args.write_report or args.floor_only):
        ap.error("--before goes with a full or --quick run")
    kind = "quick" if args.quick else "floor" if args.floor_only else "full"
    if args.section:
        data = load(kind=kind)
        print("\n".join(floor_section(data, realloc_notes) if args.floor_only and data
                        else section(data, args.quick)))
        return
    if args.write_report:
        data = load(kind="floor" if args.floor_only else "full")
        if data is None:
            sys.exit(f"no {json_path(kind)}: run `python3 benches/instructions.py"
                     + (" --floor-only" if args.floor_only else "") + "` first")
        report = ROOT / "BENCHMARKS.md"
        if args.floor_only:
            block = "\n".join(floor_section(data, realloc_notes))
            report.write_text(splice_floor(report.read_text(), block, TITLE))
            log(f"wrote the floor's subsection of the instructions section of {report}")
            return
        update_report(report, f"{' '.join(COMMAND)}   # exit 0, {data['seconds']:.0f} s")
        log(f"wrote the instructions section of {report}")
        return
    mode = QUICK if args.quick else FLOOR_ONLY if args.floor_only else FULL
    t0 = time.monotonic()
    bindir = target_dir()
    floor_bins = [f[1] for f in FLOOR if mode["floor"] is None or f[0] in mode["floor"]]
    # Only what this mode runs (CI's smoke run links a few binaries, not all).
    bins = floor_bins + [c[1] for c in CONFIGS
                         if mode["configs"] is None or c[0] in mode["configs"]]
    if not args.floor_only:
        bins += [w[0] for w in WP if mode["wp"] is None or w[0] in mode["wp"]]
    if not args.no_build:
        build(bins)
    valgrind = run(["valgrind", "--version"])[0].strip()
    data = {"calls": mode["calls"], "cache_calls": mode["cache_calls"], "valgrind": valgrind}
    if args.before:
        # Built first: the current binaries are built (re-linked) after it.
        data["before"] = instr_before.measure(
            args.before, bindir, mode, per_op,
            lambda b, w, sc: wp_ir(b, w, sc, 1 if mode is QUICK else 3)[0], log)
        if not args.no_build:
            build(bins)
    elif (previous := load(kind=kind)) and previous.get("before"):
        data["before"] = previous["before"]
    data["ops"] = measure_ops(bindir, mode, FLOOR_OPS if args.floor_only else None)
    data["floor"] = measure_floor(bindir, mode)
    if not args.floor_only:
        data["cache"] = measure_cache(bindir, mode)
        data["wp"] = measure_wp(bindir, mode)
    data["seconds"] = time.monotonic() - t0
    out = json_path(kind)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=1))
    log(f"wrote {out} ({data['seconds']:.0f} s)")
    print("\n".join(floor_section(data, realloc_notes) if args.floor_only
                    else section(data, args.quick)))


if __name__ == "__main__":
    main()

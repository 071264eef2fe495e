#!/usr/bin/env python3
"""Run every allocmeter benchmark and write BENCHMARKS.md and benches/overhead.svg.

    python3 benches/run_all.py                   # full: about 10 min + whole program (6 min)
    python3 benches/run_all.py --quick           # smoke run: every benchmark once
    python3 benches/run_all.py --threads 1,2,4,8,16   # thread counts for pairs, peers, floor, sampling
    python3 benches/run_all.py --report-only     # no runs: report existing results
    python3 benches/run_all.py --instructions-only   # only the instruction counts (about 4 min)

Full mode runs, from the workspace root:

    cargo bench -p allocmeter-benches --bench pairs -- --noplot
    cargo bench -p allocmeter-benches --bench peers -- --noplot
    cargo bench -p allocmeter-benches --bench sampling -- --noplot
    cargo bench -p allocmeter-benches --bench floor -- --noplot
    python3 benches/wholeprogram.py --out target/wholeprogram.json
    cargo bench -p allocmeter-benches --bench allocs -- --noplot
    python3 benches/instructions.py

then writes BENCHMARKS.md (repository root) and benches/overhead.svg from
target/criterion, target/wholeprogram.json and target/instructions.json. `--threads N,M` is passed to
the benches as ALLOCMETER_BENCH_THREADS (default 1,2): the thread counts of
`pairs`, `peers`, `floor` and `sampling`'s amortized mixed pairs (counts above
the machine's cores run, oversubscribed, and take longer: see BENCHMARKS.md's
Commands).

--quick runs each bench with criterion's `-- --test` (every benchmark once, no
measurement) and `wholeprogram.py --quick`, with CRITERION_HOME set to
target/criterion-quick and the whole-program JSON written to
target/wholeprogram.quick.json, so the full results are left alone; it writes
target/BENCHMARKS.quick.md (never the committed report) and no SVG.

--instructions-only runs only benches/instructions.py (valgrind's
instruction counts, deterministic, so worth regenerating on a busy machine
where the timings are not) and replaces only its section of BENCHMARKS.md,
and its line in the Commands, leaving the timing sections as they are.

--report-only skips every run and writes BENCHMARKS.md and the SVG from the
results already there. A missing result shows as "n/a".

The work is split by job, in the modules beside this script: bench_run.py
(the commands, running them, the machine), bench_load.py (reading results),
bench_names.py (what group and variant names say), bench_tables.py (Markdown
tables and number formats), bench_report.py (the report's sections),
bench_targets.py (the Targets section), bench_details.py (report.py's
tables), bench_svg.py (the chart), bench_allocs.py (the allocs bench's
command and section) and bench_fragments.py (sections measured by other
commands, kept in benches/sections/); instructions.py runs the instruction
counts and writes their section (instructions_floor.py: the floor's rows). Python 3 stdlib only.
"""

import argparse
import os
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_allocs import allocs_commands, with_section  # noqa: E402
from bench_fragments import with_fragments  # noqa: E402
from bench_load import load_all  # noqa: E402  (benches/bench_load.py)
from bench_report import full_sections, header, quick_sections  # noqa: E402
from bench_run import ROOT, commands, run_all  # noqa: E402
from bench_svg import svg_chart  # noqa: E402
import instructions  # noqa: E402  (benches/instructions.py)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: criterion --test, wholeprogram --quick; "
                         "writes target/BENCHMARKS.quick.md")
    ap.add_argument("--threads", metavar="N,M",
                    help="ALLOCMETER_BENCH_THREADS for the benches (default 1,2)")
    ap.add_argument("--report-only", action="store_true",
                    help="run nothing; write the report from existing results")
    ap.add_argument("--instructions-only", action="store_true",
                    help="run only benches/instructions.py; replace only its section")
    args = ap.parse_args()
    if args.threads and not re.fullmatch(r"\s*\d+(\s*,\s*\d+)*\s*", args.threads):
        ap.error("--threads takes a comma-separated list of counts, e.g. 1,2,4")
    if sum((args.quick, args.report_only, args.instructions_only)) > 1:
        ap.error("--quick, --report-only and --instructions-only exclusive")
    if args.instructions_only:
        ran = run_all(instructions.commands(False))
        (line, code, secs), = ran
        if code == 0:
            instructions.update_report(ROOT / "BENCHMARKS.md", f"{line}   # exit 0, {secs:.0f} s")
            print(f"wrote the instructions section of {ROOT / 'BENCHMARKS.md'}", file=sys.stderr)
        sys.exit(code)

    cmds = (commands(args.quick, args.threads) + allocs_commands(args.quick)
            + instructions.commands(args.quick))
    ran = None if args.report_only else run_all(cmds)

    crit = ROOT / "target" / ("criterion-quick" if args.quick else "criterion")
    crit = Path(os.environ.get("CRITERION_HOME", crit)) if not args.quick else crit
    wp_json = ROOT / "target" / ("wholeprogram.quick.json" if args.quick else "wholeprogram.json")
    results, inter, pinter, finter = load_all(crit)

    doc = header(args.quick, args.report_only, args.threads, crit, cmds, ran)
    if args.quick:
        doc += quick_sections(crit, wp_json)
        doc += instructions.section(instructions.load(quick=True), quick=True)
        out = ROOT / "target" / "BENCHMARKS.quick.md"
    else:
        doc += full_sections(results, inter, pinter, finter, wp_json)
        doc = with_section(doc, results)  # allocs/op and B/op (bench_allocs.py)
        doc = instructions.with_section(doc)  # valgrind's counts (instructions.py)
        doc = with_fragments(doc)  # sections measured elsewhere (benches/sections/)
        out = ROOT / "BENCHMARKS.md"
        svg_chart(results, HERE / "overhead.svg", pinter)
        print(f"wrote {HERE / 'overhead.svg'}", file=sys.stderr)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(doc))
    print(f"wrote {out}", file=sys.stderr)
    if ran and any(code for _, code, _ in ran):
        sys.exit(1)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Whole-program comparison of allocmeter against its inner allocators.

Each allocator is the real #[global_allocator] of its own binary
(benches/src/bin/wp_*.rs, all running allocmeter_benches::workload). This
script builds them in release mode, runs every binary on every workload
several times (interleaved, so slow drift of the machine hits all variants
alike), and measures from outside each child process:

- wall time (spawn to exit),
- CPU time (user + system, from the child's rusage),
- peak RSS (the child's VmHWM, which it prints at exit; its ru_maxrss from
  os.wait4 is kept too, but on Linux it is at least this interpreter's own RSS
  at fork time, so it hides peaks below about 15 MiB).

It takes the median of each over the runs; a ratio (Instrumented<System> to
System, and so on) is the median over the rounds of the ratio of the two runs
of one round, which ran close together (on a shared host whose speed swings,
far steadier than the ratio of two medians); and allocmeter's own memory (`telemetry_bytes`, printed by
the instrumented binaries from allocmeter::stats() at the end) as a share of
peak RSS. It writes everything (every run included) as JSON and prints a
markdown table.

    python3 benches/wholeprogram.py            # full: 9 runs, about 6 min on 2 cores
    python3 benches/wholeprogram.py --quick    # CI: 1 run at a tiny scale, checks it runs
    python3 benches/wholeprogram.py --runs 3 --out results.json

Targets (the project's cost targets for a whole program, which
BENCHMARKS.md's Targets section reports): Instrumented<System> at the default
sampling rate at most 1.05x System in wall time, and telemetry at most 1 % of
peak RSS, on both workloads. They are reported, not enforced, unless --check-targets is
given. The exit status is non-zero if a binary fails or two allocators
disagree on a workload's checksum.

Python 3 standard library only.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

from bench_tables import md_table

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# (binary, the binary of its bare inner allocator or None if it is one)
VARIANTS = [
    ("wp_system", None),
    ("wp_instrumented_system", "wp_system"),
    ("wp_instrumented_system_off", "wp_system"),
    ("wp_instrumented_system_64k", "wp_system"),
    ("wp_mimalloc", None),
    ("wp_instrumented_mimalloc", "wp_mimalloc"),
    ("wp_jemalloc", None),
    ("wp_instrumented_jemalloc", "wp_jemalloc"),
    # System again, with json_map on the main thread of a process that starts
    # no other thread: glibc's single-threaded malloc, which any second
    # thread turns off (see benches/src/workload.rs). Its ratio to System is
    # that effect alone; no allocmeter code is involved.
    ("wp_system@main-thread", "wp_system"),
]
BASELINE = dict(VARIANTS)

WORKLOADS = ["json_map", "producer_consumer"]

# Variants that run only some workloads, and how their label reads.
VARIANT_WORKLOADS = {"wp_system@main-thread": ["json_map"]}
VARIANT_LABELS = {"wp_system@main-thread": "System (single-threaded process)"}


def binary_of(variant):
    """The binary a variant runs (`wp_x@flag` runs `wp_x --flag`)."""
    return variant.split("@")[0]


def flags_of(variant):
    """The extra command-line flags of a variant."""
    return ["--" + f for f in variant.split("@")[1:]]


def workloads_of(variant):
    return VARIANT_WORKLOADS.get(variant, WORKLOADS)

# Scale 1: json_map builds 3 x 200k entries, producer_consumer sends 1.5M
# messages; each run takes about 1-2.5 s on a 2-core machine.
FULL_SCALE = 1.0
QUICK_SCALE = 0.01

# The binary the whole-program targets are for, and the targets.
TARGET_VARIANT = "wp_instrumented_system"
TARGET_WALL_RATIO = 1.05
TARGET_TELEMETRY_PCT = 1.0


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def target_dir():
    """The cargo target directory of the workspace."""
    out = subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--no-deps"],
        cwd=ROOT,
        check=True,
        stdout=subprocess.PIPE,
    ).stdout
    return json.loads(out)["target_directory"]


def build():
    cmd = ["cargo", "build", "--release", "-p", "allocmeter-benches", "--bins"]
    log("$", " ".join(cmd))
    subprocess.run(cmd, cwd=ROOT, check=True)


def run_once(path, workload, scale, flags=()):
    """Runs one binary once; returns its measurements and its JSON line."""
    argv = [path, "--workload", workload, "--scale", repr(scale), *flags]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        code = os.waitstatus_to_exitcode(status)
        proc.returncode = code  # reaped here: keep Popen from waiting again
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode(errors="replace")
        stderr = err.read().decode(errors="replace")
    if code != 0:
        raise RuntimeError(
            f"{' '.join(argv)} exited with {code}\n{stderr.strip()}"
        )
    lines = [line for line in stdout.splitlines() if line.strip()]
    if not lines:
        raise RuntimeError(f"{' '.join(argv)} printed nothing\n{stderr.strip()}")
    reported = json.loads(lines[-1])
    result = {
        "wall_s": wall,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "user_s": usage.ru_utime,
        "sys_s": usage.ru_stime,
        # The child's own VmHWM where it reports one: ru_maxrss is at least
        # this interpreter's RSS at fork time (Linux keeps the high-water mark
        # across exec), which hides peaks below about 15 MiB.
        "peak_rss_bytes": reported.get("peak_rss_bytes", usage.ru_maxrss * 1024),
        "ru_maxrss_bytes": usage.ru_maxrss * 1024,  # KiB on Linux
        "inner_wall_s": reported["wall_ns"] / 1e9,
        "checksum": reported["checksum"],
        "variant": reported["variant"],
    }
    for key in ("telemetry_bytes", "samples", "samples_dropped", "sample_rate"):
        if key in reported:
            result[key] = reported[key]
    if "telemetry_bytes" in reported:
        result["telemetry_pct_of_peak_rss"] = (
            100.0 * reported["telemetry_bytes"] / max(result["peak_rss_bytes"], 1)
        )
    return result


def median_of(runs, key):
    values = [r[key] for r in runs if key in r]
    return statistics.median(values) if values else None


def spread_pct(runs, key):
    """(max - min) / median over the runs, in percent."""
    values = [r[key] for r in runs]
    med = statistics.median(values)
    return 100.0 * (max(values) - min(values)) / med if med else 0.0


def paired_ratios(runs, base_runs, key):
    """run[key] / base_run[key] for each round both ran (runs are in round
    order)."""
    return [r[key] / b[key] for r, b in zip(runs, base_runs)
            if key in r and key in b and b[key]]


def summarise(results):
    """Medians and ratios per (binary, workload)."""
    summary = {}
    for (binary, workload), runs in results.items():
        s = {
            "variant": runs[0]["variant"],
            "runs": len(runs),
            "wall_s": median_of(runs, "wall_s"),
            "wall_spread_pct": spread_pct(runs, "wall_s"),
            "cpu_s": median_of(runs, "cpu_s"),
            "user_s": median_of(runs, "user_s"),
            "sys_s": median_of(runs, "sys_s"),
            "peak_rss_bytes": median_of(runs, "peak_rss_bytes"),
            "inner_wall_s": median_of(runs, "inner_wall_s"),
        }
        for key in (
            "telemetry_bytes",
            "telemetry_pct_of_peak_rss",
            "samples",
            "samples_dropped",
            "sample_rate",
        ):
            value = median_of(runs, key)
            if value is not None:
                s[key] = value
        summary[(binary, workload)] = s
    for (binary, workload), s in summary.items():
        base = BASELINE.get(binary)
        if base is None or (base, workload) not in summary:
            continue
        b = summary[(base, workload)]
        s["baseline"] = base
        for key, ratio in (
            ("wall_s", "wall_ratio"),
            ("cpu_s", "cpu_ratio"),
            ("peak_rss_bytes", "peak_rss_ratio"),
            ("inner_wall_s", "inner_wall_ratio"),
        ):
            # Paired: run i of both ran in round i, close in time, so a
            # host that changes speed between rounds moves both alike.
            pairs = paired_ratios(results[(binary, workload)], results[(base, workload)], key)
            s[ratio] = statistics.median(pairs) if pairs else None
            if key == "wall_s" and pairs:
                s["wall_ratio_min"], s["wall_ratio_max"] = min(pairs), max(pairs)
        s["peak_rss_added_bytes"] = s["peak_rss_bytes"] - b["peak_rss_bytes"]
    return summary


def fmt(value, spec, suffix=""):
    return "—" if value is None else format(value, spec) + suffix


def table(summary, binaries, workloads):
    header = ["workload", "allocator", "wall s", "± %", "CPU s", "peak RSS MiB", "wall ×",
              "in-process wall ×", "CPU ×", "RSS ×", "RSS + MiB", "telemetry KiB",
              "telemetry % RSS", "samples"]
    rows = []
    for workload in workloads:
        for binary in binaries:
            s = summary.get((binary, workload))
            if s is None:
                continue
            added = s.get("peak_rss_added_bytes")
            rows.append([
                workload,
                s["variant"],
                fmt(s["wall_s"], ".3f"),
                fmt(s["wall_spread_pct"] / 2, ".1f"),
                fmt(s["cpu_s"], ".3f"),
                fmt(s["peak_rss_bytes"] / 2**20, ".1f"),
                fmt(s.get("wall_ratio"), ".3f"),
                fmt(s.get("inner_wall_ratio"), ".3f"),
                fmt(s.get("cpu_ratio"), ".3f"),
                fmt(s.get("peak_rss_ratio"), ".3f"),
                fmt(None if added is None else added / 2**20, "+.1f"),
                fmt(
                    s["telemetry_bytes"] / 1024 if "telemetry_bytes" in s else None,
                    ".0f",
                ),
                fmt(s.get("telemetry_pct_of_peak_rss"), ".2f"),
                fmt(s.get("samples"), ".0f"),
            ])
    return md_table(header, rows, ["---"] * len(header))


LEGEND = """\
wall: spawn to exit, from outside. in-process wall: the workload alone (the
binary's own timer: no start-up, no exporter shutdown, no exit). CPU: user +
system of the whole process. RSS + MiB: peak RSS above the bare inner
allocator's. telemetry: allocmeter's own memory at the end of the workload,
Exporter::telemetry_bytes() (slots, sample rings, sampled-pointer table, and the
exporter's site table, symbol cache and snapshot history; not the debug info
a first symbolization loads, which these runs never trigger), as a share of
peak RSS. Every workload runs on a worker thread that main spawns, as in a
service (see benches/src/workload.rs); System (single-threaded process) is the
same binary as System with json_map on the main thread and no other thread."""


def check_targets(summary, workloads):
    """The whole-program targets for Instrumented<System>: (description, met) pairs."""
    checks = []
    for workload in workloads:
        s = summary.get((TARGET_VARIANT, workload))
        if s is None or s.get("wall_ratio") is None:
            continue
        checks.append(
            (
                f"{workload}: Instrumented<System> wall {s['wall_ratio']:.3f}x System "
                f"(target <= {TARGET_WALL_RATIO}x; in-process wall "
                f"{s['inner_wall_ratio']:.3f}x)",
                s["wall_ratio"] <= TARGET_WALL_RATIO,
            )
        )
        checks.append(
            (
                f"{workload}: telemetry {s['telemetry_pct_of_peak_rss']:.2f} % of peak RSS "
                f"(target <= {TARGET_TELEMETRY_PCT} %)",
                s["telemetry_pct_of_peak_rss"] <= TARGET_TELEMETRY_PCT,
            )
        )
    return checks


def main():
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="one run at a tiny scale: checks that everything runs (for CI)",
    )
    parser.add_argument("--runs", type=int, help="runs per binary and workload (default 9)")
    parser.add_argument("--scale", type=float, help="workload scale (default 1, quick 0.01)")
    parser.add_argument(
        "--out",
        help="where to write the JSON results (default <target>/wholeprogram.json)",
    )
    parser.add_argument("--no-build", action="store_true", help="use the binaries as built")
    parser.add_argument(
        "--only",
        action="append",
        metavar="BINARY",
        help="run only this binary (repeatable; baselines are not added)",
    )
    parser.add_argument(
        "--check-targets",
        action="store_true",
        help="exit non-zero if Instrumented<System> misses the whole-program targets",
    )
    args = parser.parse_args()

    runs = args.runs if args.runs is not None else (1 if args.quick else 9)
    scale = args.scale if args.scale is not None else (QUICK_SCALE if args.quick else FULL_SCALE)
    if runs < 1 or scale <= 0:
        parser.error("--runs must be at least 1 and --scale positive")
    binaries = [b for b, _ in VARIANTS if not args.only or b in args.only]
    if not binaries:
        parser.error(f"--only names none of {[b for b, _ in VARIANTS]}")

    if not args.no_build:
        build()
    bin_dir = os.path.join(target_dir(), "release")
    paths = {b: os.path.join(bin_dir, binary_of(b)) for b in binaries}
    for b, path in paths.items():
        if not os.access(path, os.X_OK):
            sys.exit(f"missing binary {path}: build it or drop --no-build")

    started = time.perf_counter()
    if not args.quick:
        # Untimed: brings every binary into the page cache.
        log("warming up")
        for b in binaries:
            for workload in workloads_of(b):
                run_once(paths[b], workload, QUICK_SCALE, flags_of(b))

    results = {(b, w): [] for b in binaries for w in workloads_of(b)}
    for i in range(runs):
        for workload in WORKLOADS:
            # Rotate the order each round so that no variant always follows
            # the same one.
            k = i % len(binaries)
            for b in binaries[k:] + binaries[:k]:
                if workload not in workloads_of(b):
                    continue
                r = run_once(paths[b], workload, scale, flags_of(b))
                r["variant"] = VARIANT_LABELS.get(b, r["variant"])
                results[(b, workload)].append(r)
                log(
                    f"run {i + 1}/{runs} {workload:17} {b:28} wall {r['wall_s']:.3f} s "
                    f"cpu {r['cpu_s']:.3f} s rss {r['peak_rss_bytes'] / 2**20:.1f} MiB"
                )
    elapsed = time.perf_counter() - started

    failures = []
    for workload in WORKLOADS:
        sums = {r["checksum"] for (b, w), runs in results.items() if w == workload for r in runs}
        if len(sums) != 1:
            failures.append(f"{workload}: allocators disagree on the checksum: {sorted(sums)}")

    summary = summarise(results)
    checks = check_targets(summary, WORKLOADS)
    out_path = args.out or os.path.join(target_dir(), "wholeprogram.json")
    document = {
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
        },
        "mode": "quick" if args.quick else "full",
        "runs": runs,
        "scale": scale,
        "elapsed_s": elapsed,
        "summary": [
            {"binary": b, "workload": w, **summary[(b, w)]}
            for w in WORKLOADS
            for b in binaries
            if (b, w) in summary
        ],
        "targets": [{"check": c, "met": met} for c, met in checks],
        "runs_detail": [
            {"binary": b, "workload": w, "runs": results[(b, w)]}
            for w in WORKLOADS
            for b in binaries
            if (b, w) in results
        ],
    }
    with open(out_path, "w") as f:
        json.dump(document, f, indent=2)
        f.write("\n")

    print(
        f"Whole program, {runs} run(s) per cell at scale {scale}, medians; "
        f"ratios against the bare inner allocator; ± is half the range of wall "
        f"({elapsed:.0f} s of runs)."
    )
    print()
    print(table(summary, binaries, WORKLOADS))
    print(LEGEND)
    print()
    if args.quick:
        print("(quick mode: a tiny scale and one run, so the figures only show that it runs)")
    else:
        for check, met in checks:
            print(f"- {'met' if met else 'NOT met'}: {check}")
    print(f"\nresults: {out_path}")

    for failure in failures:
        log("error:", failure)
    if failures:
        sys.exit(1)
    if args.check_targets and not args.quick and not all(met for _, met in checks):
        sys.exit(1)


if __name__ == "__main__":
    try:
        main()
    except (RuntimeError, subprocess.CalledProcessError) as e:
        sys.exit(f"error: {e}")

"""Running the benchmarks: the commands `run_all.py` runs, in order, and
running them; and the machine they ran on, for the report's header.

Nothing here reads results or writes the report. Python 3 stdlib only.
"""

import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

from bench_looking import looking_commands
from bench_tables import NA

ROOT = Path(__file__).resolve().parent.parent
BENCHES = ["pairs", "peers", "sampling", "floor"]


def commands(quick, threads):
    """[(argv, env additions)] in the order they run."""
    env = {"ALLOCMETER_BENCH_THREADS": threads} if threads else {}
    if quick:
        env = dict(env, CRITERION_HOME=str(ROOT / "target" / "criterion-quick"))
    cmds = []
    for bench in BENCHES:
        tail = ["--test"] if quick else ["--noplot"]
        cmds.append((["cargo", "bench", "-p", "allocmeter-benches", "--bench", bench, "--"] + tail,
                     env))
    wp_out = "target/wholeprogram.quick.json" if quick else "target/wholeprogram.json"
    wp = ["python3", "benches/wholeprogram.py", "--out", wp_out] + (["--quick"] if quick else [])
    cmds.append((wp, {}))
    cmds += looking_commands(quick)
    return cmds


def shell_line(argv, env):
    prefix = " ".join(f"{k}={v}" for k, v in sorted(env.items()))
    return (prefix + " " if prefix else "") + " ".join(argv)


def run_all(cmds):
    """Runs every command; returns [(line, exit code, seconds)]. Keeps going on failure."""
    done = []
    for argv, env in cmds:
        if "pairs" in argv:
            # Rounds left from a run with more of them would be folded in.
            crit = Path(env.get("CRITERION_HOME", ROOT / "target" / "criterion"))
            for old in crit.glob("pair_64B_*"):
                shutil.rmtree(old, ignore_errors=True)
        line = shell_line(argv, env)
        print(f"$ {line}", file=sys.stderr, flush=True)
        start = time.perf_counter()
        # `argv` ending in [">", path]: its standard output goes to path.
        out = None
        if len(argv) > 2 and argv[-2] == ">":
            argv, out = argv[:-2], ROOT / argv[-1]
            out.parent.mkdir(parents=True, exist_ok=True)
        with open(out, "w") if out else open(os.devnull) as sink:
            code = subprocess.run(argv, cwd=ROOT, env=dict(os.environ, **env),
                                  stdout=sink if out else None).returncode
        secs = time.perf_counter() - start
        print(f"  -> exit {code} after {secs:.0f} s", file=sys.stderr, flush=True)
        done.append((line, code, secs))
    return done



def sh(argv):
    try:
        return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              text=True).stdout.strip() or NA
    except OSError:
        return NA


def machine():
    cpu = NA
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = NA
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 2**20:.1f} GiB"
                break
    except (OSError, ValueError):
        pass
    return [("CPU", cpu), ("CPUs (nproc)", sh(["nproc"])), ("memory", mem),
            ("kernel", sh(["uname", "-srm"])), ("rustc", sh(["rustc", "-V"])),
            ("python", platform.python_version())]

"""The instruction summary of an earlier revision, measured in the same run as the
current one, so that a change to the hot path is shown before and after by one
command:

    python3 benches/instructions.py --before REV

checks REV out into a git worktree (target/before-src), builds there the four
binaries the summary needs into the workspace's target directory (the
dependencies are shared; cargo keeps each revision's own crates apart and
re-links the current ones when `instructions.py` builds them next), copies them
to target/before/<commit>/ and measures them as `instructions.py` measures the
current ones. The result goes into the JSON under "before" and into the report
as the "Before and after" table. Python 3 stdlib only.
"""

import os
import shutil
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

# (label, binary, rate argument): the allocators the summary compares.
CONFIGS = [
    ("System", "instr_ops_system", "bare"),
    ("Instrumented<System>, off", "instr_ops_instrumented_system", "off"),
    ("Instrumented<System>", "instr_ops_instrumented_system", "default"),
]
OPS = ["alloc", "free", "realloc_grown_in_place", "realloc_shrunk_in_place",
       "realloc_moved", "pair_64", "zeroed_pair_64", "growth_chain"]
WP_BINS = ["wp_system", "wp_instrumented_system"]


def git(*args, cwd=ROOT):
    return subprocess.run(["git", *args], cwd=cwd, check=True, text=True,
                          stdout=subprocess.PIPE).stdout.strip()


def build_before(rev, bindir, log):
    """Builds REV's binaries; returns (the commit, the folder they were copied to)."""
    sha = git("rev-parse", "--verify", f"{rev}^{{commit}}")
    out = ROOT / "target" / "before" / sha[:12]
    src = ROOT / "target" / "before-src"
    if src.exists():
        subprocess.run(["git", "worktree", "remove", "--force", str(src)], cwd=ROOT)
        shutil.rmtree(src, ignore_errors=True)
    git("worktree", "add", "--detach", str(src), sha)
    try:
        bins = [c[1] for c in CONFIGS] + WP_BINS
        cmd = ["cargo", "build", "--release", "-p", "allocmeter-benches"]
        for b in sorted(set(bins)):
            cmd += ["--bin", b]
        log(f"$ (in {src}, at {sha[:12]})", " ".join(cmd))
        env = dict(os.environ, CARGO_TARGET_DIR=str(bindir.parent))
        subprocess.run(cmd, cwd=src, env=env, check=True)
        out.mkdir(parents=True, exist_ok=True)
        for b in sorted(set(bins)):
            shutil.copy2(bindir / b, out / b)
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(src)], cwd=ROOT)
    return sha, out


def measure(rev, bindir, mode, per_op, wp_ir, log):
    """{"rev", "commit", "ops": {label: {op: ir}}, "wp": {workload: {binary: ir}}}
    of revision `rev`, with `instructions.py`'s measuring functions."""
    sha, out = build_before(rev, bindir, log)
    ops = {}
    for label, binary, rate in CONFIGS:
        ops[label] = {}
        for op in OPS:
            per, _ = per_op(out / binary, rate, op, mode["calls"])
            ops[label][op] = per["Ir"]
            log(f"before {sha[:12]} {label:28} {op:24} {per['Ir']:10.2f} instr/op")
    wp = {}
    for workload, scale in mode["wp_scales"].items():
        wp[workload] = {}
        for binary in WP_BINS:
            wp[workload][binary] = wp_ir(out / binary, workload, scale)
            log(f"before {sha[:12]} {workload:18} {binary:24} {wp[workload][binary]:>15,} instr")
    return {"rev": rev, "commit": sha, "ops": ops, "wp": wp}


def table(data, md_table):
    """The "Before and after" block: the summary's rows and each operation's
    added instructions, before (the saved revision) and now. [] without one."""
    before = data.get("before")
    if not before:
        return []
    now_ops, now_wp = data["ops"], data.get("wp") or {}
    b_ops, b_wp = before["ops"], before["wp"]

    def now(label, op):
        return now_ops.get(label, {}).get(op, {}).get("ir")

    def added(ops_of, label, op):
        a, b = ops_of("System", op), ops_of(label, op)
        return None if a is None or b is None else b - a

    def was(label, op):
        return b_ops.get(label, {}).get(op)

    def cell(v, sign=True):
        return "n/a" if v is None else (f"{v:+,.0f}" if sign else f"{v:,.0f}")

    rows = []
    named = [("pair_64", "64 B alloc+free pair"), ("growth_chain", "`Vec<u64>` growth chain "
             "(1 alloc, 4 reallocs, 1 free)"), ("zeroed_pair_64", "`vec![0u8; 64]` dropped")]
    for op, what in named:
        rows.append([what, cell(was("System", op), False), cell(was("Instrumented<System>", op), False),
                     cell(added(was, "Instrumented<System>", op)),
                     cell(now("System", op), False), cell(now("Instrumented<System>", op), False),
                     cell(added(now, "Instrumented<System>", op))])
    for w in b_wp:
        a0, b0 = b_wp[w].get("wp_system"), b_wp[w].get("wp_instrumented_system")
        d = now_wp.get(w, {})
        a1, b1 = d.get("ir", {}).get("wp_system"), d.get("ir", {}).get("wp_instrumented_system")

        def g(v):
            return "n/a" if v is None else f"{v / 1e9:.3f} G"

        def pct(a, b):
            return "n/a" if None in (a, b) else f"{(b / a - 1) * 100:+.1f} %"
        rows.append([f"whole program {w}", g(a0), g(b0), pct(a0, b0), g(a1), g(b1), pct(a1, b1)])
    short = before["commit"][:12]
    head = ["what", f"System ({short})", f"Instrumented<System> ({short})", "added",
            "System (now)", "Instrumented<System> (now)", "added"]
    blocks = ["### Before and after\n",
              f"The summary's rows measured at revision `{short}` and at this one, in the same run\n"
              f"(`python3 benches/instructions.py --before {before['rev']}`), default rate:\n",
              md_table(head, rows, ["---"] + ["---:"] * 6)]
    op_rows = []
    for op in OPS:
        op_rows.append([f"`{op}`", cell(added(was, "Instrumented<System>, off", op)),
                        cell(added(now, "Instrumented<System>, off", op))])
    blocks += ["Added instructions per operation over `System`, sampling off:\n",
               md_table(["operation", f"added at `{short}`", "added now"], op_rows,
                        ["---", "---:", "---:"])]
    return blocks

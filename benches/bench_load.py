"""Reading the results the reports are made of.

- criterion's results: target/criterion/*/*/new/{benchmark,estimates,sample}.json
  (criterion replaces characters such as '/', '<' and '>' with '_' in
  directory names, so the real group and function names are taken from
  benchmark.json), with the counts the benchmarks record next to them in
  target/criterion/allocmeter-extra/*.json (`write_extra` in
  benches/src/extras.rs): `load`, which also folds the 64 B pairs' rounds into
  one group (`fold_rounds`);
- the interleaved measurements, which have extras only: `load_interleaved`;
- `wholeprogram.py`'s JSON: `load_wholeprogram`;
- what each peer records, from benches/peers.md: `capabilities`.

Nothing here formats or prints. Python 3 stdlib only.
"""

import json
import re
import statistics
from pathlib import Path

HERE = Path(__file__).resolve().parent
NAN = float("nan")


class Result:
    """One benchmark: criterion's median (and its 95% CI), the fastest sample,
    all in ns per iteration, and the benchmark's extras (may be empty)."""

    def __init__(self, median, lo, hi, fastest, extra):
        self.median, self.lo, self.hi, self.fastest = median, lo, hi, fastest
        self.extra = extra

    def x(self, key, default=NAN):
        value = self.extra.get(key)
        return default if value is None else value

    def samples_per_op(self):
        ops = self.x("ops")
        return self.x("samples") / ops if ops and ops == ops else NAN


def load(root):
    """{group_id: {function_id: Result}}"""
    extras = {}
    for f in sorted((root / "allocmeter-extra").glob("*.json")):
        e = json.loads(f.read_text())
        extras[(e["group"], e["function"])] = e
    results = {}
    for bench_file in sorted(root.glob("*/*/new/benchmark.json")):
        estimates_file = bench_file.with_name("estimates.json")
        if not estimates_file.exists():
            continue
        bench = json.loads(bench_file.read_text())
        median = json.loads(estimates_file.read_text())["median"]
        ci = median["confidence_interval"]
        fastest = NAN
        sample_file = bench_file.with_name("sample.json")
        if sample_file.exists():
            sample = json.loads(sample_file.read_text())
            fastest = min(t / n for n, t in zip(sample["iters"], sample["times"]))
        group = bench["group_id"]
        function = bench.get("function_id") or bench.get("title")
        results.setdefault(group, {})[function] = Result(
            median["point_estimate"], ci["lower_bound"], ci["upper_bound"], fastest,
            extras.get((group, function), {}))
    return fold_rounds(results)


def load_interleaved(root, group="pair_64B_interleaved"):
    """{group: {function: extras}} of an interleaved measurement: groups
    `<group>/<threads>` (`pair_64B_interleaved`: `interleaved` in
    benches/benches/pairs.rs; `peers_<workload>_interleaved`: in peers.rs;
    `floor_<workload>_interleaved`: floor.rs), which have
    no criterion results, only extras (median_ns, p10_ns, ratio, ratio_p25,
    ratio_p75, added_ns, added_p25, added_p75, rounds, order, ...)."""
    out = {}
    # File names are the group's with every other character than a letter or
    # digit made `_` (benches/src/extras.rs, `write_extra`).
    stem = re.sub(r"[^A-Za-z0-9]", "_", group)
    for f in sorted((root / "allocmeter-extra").glob(f"{stem}_*.json")):
        e = json.loads(f.read_text())
        out.setdefault(e["group"], {})[e["function"]] = e
    return out


def load_all(crit):
    """(results, inter, pinter, finter) under the criterion directory `crit`
    (all empty if it does not exist): criterion's results (`load`), and the
    interleaved measurements of `pairs` (the 64 B pair), `peers` and `floor`
    (the 64 B and mixed 16 B-64 KiB pairs)."""
    results = load(crit) if crit.exists() else {}
    inter = load_interleaved(crit) if crit.exists() else {}
    pinter = {} if not crit.exists() else {
        **load_interleaved(crit, "peers_64B_interleaved"),
        **load_interleaved(crit, "peers_mixed_16B-64KiB_interleaved")}
    finter = {} if not crit.exists() else {
        **load_interleaved(crit, "floor_64B_interleaved"),
        **load_interleaved(crit, "floor_mixed_16B-64KiB_interleaved")}
    return results, inter, pinter, finter


ROUND = re.compile(r"^(.*)/round(\d+)$")
SUMMED_EXTRAS = ("ops", "samples", "dropped", "frees_lost")


def fold_rounds(results):
    """Folds groups `<group>/round<k>` (the 64 B pairs, measured in rounds:
    benches/benches/pairs.rs) into one group `<group>`. Each function's
    median is the median of its per-round medians; lo and hi are the lowest
    and highest per-round median (the spread over rounds, not a CI); fastest
    is the fastest sample of any round; the extras `ops`, `samples`,
    `dropped` and `frees_lost` are summed, and `round_medians` maps each
    round to its median, so that per-round ratios can be formed."""
    rounds = {}
    for group in list(results):
        m = ROUND.match(group)
        if m:
            rounds.setdefault(m.group(1), {})[int(m.group(2))] = results.pop(group)
    for group, by_round in rounds.items():
        folded = {}
        functions = {f for funcs in by_round.values() for f in funcs}
        for f in functions:
            per = {k: funcs[f] for k, funcs in by_round.items() if f in funcs}
            medians = [r.median for r in per.values()]
            extra = {}
            for key in SUMMED_EXTRAS:
                values = [r.extra[key] for r in per.values() if r.extra.get(key) is not None]
                if values:
                    extra[key] = sum(values)
            rates = [r.extra["rate"] for r in per.values() if r.extra.get("rate") is not None]
            if rates:
                extra["rate"] = rates[0]
            extra["round_medians"] = {k: r.median for k, r in per.items()}
            folded[f] = Result(statistics.median(medians), min(medians), max(medians),
                               min(r.fastest for r in per.values()), extra)
        results[group] = folded
    return results


def round_ratios(a, b):
    """The per-round ratios a/b of two folded results (rounds both ran)."""
    ra, rb = a.extra.get("round_medians", {}), b.extra.get("round_medians", {})
    return [ra[k] / rb[k] for k in sorted(ra) if k in rb and rb[k]]


def load_wholeprogram(path):
    """`wholeprogram.py`'s JSON document at `path`, or None if it is missing
    or unreadable."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def capabilities():
    """(header, {row name: cells}, row order) of peers.md's "What each records" table."""
    try:
        text = (HERE / "peers.md").read_text()
    except OSError:
        return [], {}, []
    section = text.split("## What each records", 1)
    if len(section) < 2:
        return [], {}, []
    body = section[1].split("\n## ", 1)[0]  # this section only
    lines = [l for l in body.splitlines() if l.startswith("|")]
    if len(lines) < 3:
        return [], {}, []
    split = lambda l: [c.strip() for c in l.strip().strip("|").split("|")]
    header = split(lines[0])[1:]
    rows, names = {}, []
    for l in lines[2:]:
        cells = split(l)
        rows[cells[0]] = cells[1:]
        names.append(cells[0])
    return header, rows, names

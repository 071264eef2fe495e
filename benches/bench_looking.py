"""What looking costs: the figures of the sampled path and the exporter under
load, each measured by a program of its own that prints one JSON object.

- `looking_burst` (benches/src/bin/looking_burst.rs): a sampling burst on
  oversubscribed cores; the estimate's error and the samples lost.
- `.ci/measure-symbols.py`: the heap and RSS the first profile adds to the
  demo, built as the workspace builds it (`debug = 1`) and with `debug = 2`,
  and what is left after the symbolizer's idle release.
- `looking_scrapes` (benches/src/bin/looking_scrapes.rs): `/metrics` latency
  while 40 clients stall on large reports.

This module gives the commands (`looking_commands`, run by bench_run.py) and
the report's section (`section_looking`). Python 3 stdlib only.
"""

import json
from pathlib import Path

from bench_tables import NA, md_table

BURST = "target/looking_burst.json"
SCRAPES = "target/looking_scrapes.json"
SYMBOLS = "target/looking_symbols.json"
SYMBOLS_DEBUG2 = "target/looking_symbols_debug2.json"
DEBUG2_DIR = "target/looking-debug2"


def looking_commands(quick):
    """[(argv, env)]: argv ending in [">", path] writes its stdout there."""
    q = ".quick" if quick else ""
    burst = ["cargo", "run", "--release", "-q", "-p", "allocmeter-benches", "--bin",
             "looking_burst", "--"] + (["1", "1"] if quick else ["5", "2"])
    # The dev profile: there the call-site generator's stacks stay thousands
    # of sites, a report of several MB (see the program's docs).
    scrapes = ["cargo", "run", "-q", "-p", "allocmeter-benches", "--bin", "looking_scrapes",
               "--"] + (["--seconds", "3"] if quick else [])
    demo = ["cargo", "build", "--release", "-q", "--example", "demo"]
    symbols = ["python3", ".ci/measure-symbols.py", "--bin", "target/release/examples/demo",
               "--json", SYMBOLS.replace(".json", q + ".json")] + (["--idle", "2"] if quick else [])
    cmds = [(burst + [">", BURST.replace(".json", q + ".json")], {}),
            (scrapes + [">", SCRAPES.replace(".json", q + ".json")], {}),
            (demo, {}), (symbols, {})]
    if not quick:
        cmds += [(demo + ["--config", "profile.release.debug=2", "--target-dir", DEBUG2_DIR], {}),
                 (["python3", ".ci/measure-symbols.py", "--bin",
                   f"{DEBUG2_DIR}/release/examples/demo", "--json", SYMBOLS_DEBUG2], {})]
    return cmds


def load(root, path):
    try:
        return json.loads((Path(root) / path).read_text())
    except (OSError, ValueError):
        return None


def mib(v):
    return NA if v is None else f"{v / 2**20:.2f} MiB"

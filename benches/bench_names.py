"""What the benchmarks' names say: the thread count in a group's name, the
workload groups of a benchmark, the bare allocator a variant is compared
with, the order variants are listed in, and the row of benches/peers.md
("What each records") a peer's name stands for.

Nothing here reads results or formats them (peers.md is read once, by
`bench_load.capabilities`). Python 3 stdlib only.
"""

import re

from bench_load import capabilities
from bench_tables import NA

INNERS = ["System", "MiMalloc", "Jemalloc"]

# What each peer records: (header, {row name: cells}, row order) of peers.md.
CAPS = capabilities()


def inner_of(name):
    m = re.match(r"^Instrumented<(.+)>( \(.*\))?$", name)
    return m.group(1) if m else None


def rate_key(name):
    if name == "System":
        return -1
    m = re.search(r"rate (\d+)", name)
    return int(m.group(1)) if m else 0


def thread_key(group):
    m = re.search(r"(\d+)thread", group)
    return int(m.group(1)) if m else 0


def workload_groups(results, prefix, sep="/"):
    """{workload: [group, ...] sorted by thread count} for groups `prefix<workload>/<N>thread(s)`."""
    out = {}
    for g in results:
        if g.startswith(prefix) and sep in g[len(prefix):]:
            workload, _ = g[len(prefix):].rsplit(sep, 1)
            out.setdefault(workload, []).append(g)
    return {w: sorted(gs, key=thread_key) for w, gs in out.items()}


def groups_of(inter, bench, workload):
    """The groups `<bench>_<workload>_interleaved/<threads>` of an interleaved measurement."""
    return {g: f for g, f in (inter or {}).items()
            if g.startswith(f"{bench}_{workload}_interleaved/")}


def baseline_of(name):
    """The bare allocator a variant is compared with."""
    inner = inner_of(name)
    if inner:
        return inner
    if name in INNERS:
        return None
    return "System"  # every peer here wraps System (benches/peers.md)


def order(names, tail_order=()):
    first = []
    for inner in INNERS:
        first += [inner, f"Instrumented<{inner}> (sampling off)", f"Instrumented<{inner}>",
                  f"Instrumented<{inner}> (64 KiB)"]
    ranked = [n for n in first if n in names]
    for key in tail_order:
        ranked += [n for n in sorted(names) if n not in ranked and capability_key(n) == key]
    ranked += sorted(n for n in names if n not in ranked)
    return ranked


def capability_key(name):
    """The peers.md row for a criterion function name, or None for a bare allocator."""
    if name in INNERS:
        return None
    if name.startswith("Instrumented<"):
        return "allocmeter `Instrumented`"
    _, rows, names = CAPS
    first = name.split()[0]
    matches = [n for n in names if n.split()[0].strip("`,") == first]
    if len(matches) > 1:
        want = "callstacks on" if "callstacks on" in name else "callstacks off"
        matches = [n for n in matches if want in n] or matches
    return matches[0] if matches else None


def capability_cells(name):
    """The peers.md cells of `name`'s row ("—" for a bare allocator)."""
    header, rows, _ = CAPS
    key = capability_key(name)
    if key is None:
        return ["—" if name in INNERS else NA] * len(header)
    return rows.get(key, [NA] * len(header))


def records(name, column):
    """Whether peers.md says `name` keeps `column` (a cell starting with Y, or
    kept by the tracker we wire in, for tracking-allocator)."""
    header, _, _ = CAPS
    if column not in header:
        return False
    cell = capability_cells(name)[header.index(column)]
    return cell.startswith("Y") or cell.startswith("via tracker")

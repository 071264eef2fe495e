"""benches/overhead.svg: each allocator's overhead on the 64 B pair at 2
threads, as horizontal bars on a log scale, written by hand (no plotting
library). Python 3 stdlib only.
"""

import math
from pathlib import Path

from bench_names import CAPS, INNERS, baseline_of, order


def svg_chart(results, path, pinter=None, group="peers/64B/2threads"):
    """Horizontal bars, log scale: each allocator's ratio to its bare inner
    allocator; from the interleaved peers measurement where it ran (its
    median per-round ratios), else from criterion's medians."""
    bars = []
    interleaved = (pinter or {}).get("peers_64B_interleaved/2threads")
    if interleaved:
        group = "peers_64B_interleaved/2threads"
        for name in order(set(interleaved), CAPS[2]):
            x = interleaved[name].get("ratio", math.nan)
            if name not in INNERS and not math.isnan(x):
                bars.append((name, x))
    funcs = {} if interleaved else results.get(group, {})
    for name in order(set(funcs), CAPS[2]):
        base_name = baseline_of(name)
        r, base = funcs[name], funcs.get(base_name) if base_name else None
        if base is None or not base.median or math.isnan(r.median) or math.isnan(base.median):
            continue
        bars.append((name, r.median / base.median))
    esc = lambda s: s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    left, bar_h, gap, top, plot_w, right = 330, 18, 6, 50, 480, 70
    height = top + max(len(bars), 1) * (bar_h + gap) + 50
    width = left + plot_w + right
    lo = 0.5
    hi = 10 ** math.ceil(math.log10(max([x for _, x in bars] + [10])))
    xpos = lambda v: left + plot_w * (math.log10(max(v, lo)) - math.log10(lo)) / (
        math.log10(hi) - math.log10(lo))
    s = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
         f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
         f'<rect width="{width}" height="{height}" fill="white"/>',
         f'<text x="{width / 2}" y="20" text-anchor="middle" font-size="15" font-weight="bold">'
         f'Overhead per 64 B alloc+free pair, 2 threads ({esc(group)})</text>',
         f'<text x="{width / 2}" y="37" text-anchor="middle" fill="#555">'
         + ('median per-round ratio to System, interleaved' if interleaved else
            'ratio of median ns/op to the bare inner allocator')
         + ', log scale (1 = no overhead)</text>']
    bottom = top + len(bars) * (bar_h + gap)
    tick = 1.0
    while tick <= hi:
        for t in (tick, 2 * tick, 5 * tick) if tick < hi else (tick,):
            if lo <= t <= hi:
                x = xpos(t)
                major = t == tick
                s.append(f'<line x1="{x:.1f}" y1="{top - 4}" x2="{x:.1f}" y2="{bottom}" '
                         f'stroke="{"#bbb" if major else "#e5e5e5"}"/>')
                if major or t < 10:
                    s.append(f'<text x="{x:.1f}" y="{bottom + 16}" text-anchor="middle">{t:g}×</text>')
        tick *= 10
    s.append(f'<line x1="{xpos(1):.1f}" y1="{top - 4}" x2="{xpos(1):.1f}" y2="{bottom}" '
             'stroke="#000" stroke-width="1.5"/>')
    for i, (name, x) in enumerate(bars):
        y = top + i * (bar_h + gap)
        color = "#2b7bba" if name.startswith("Instrumented<") else "#d9822b"
        x0, x1 = xpos(1), xpos(x)
        s.append(f'<text x="{left - 8}" y="{y + bar_h - 5}" text-anchor="end">{esc(name)}</text>')
        s.append(f'<rect x="{min(x0, x1):.1f}" y="{y}" width="{max(abs(x1 - x0), 1):.1f}" '
                 f'height="{bar_h}" fill="{color}"><title>{esc(name)}: {x:.2f}×</title></rect>')
        s.append(f'<text x="{max(x0, x1) + 4:.1f}" y="{y + bar_h - 5}">{x:.2f}×</text>')
    if not bars:
        s.append(f'<text x="{width / 2}" y="{top + 12}" text-anchor="middle">n/a: no results '
                 f'for {esc(group)}</text>')
    s.append(f'<text x="{left}" y="{height - 12}" fill="#2b7bba">■ allocmeter Instrumented</text>')
    s.append(f'<text x="{left + 190}" y="{height - 12}" fill="#d9822b">■ peers (vs System)</text>')
    s.append("</svg>")
    Path(path).write_text("\n".join(s) + "\n")

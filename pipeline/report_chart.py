"""The report's charts: inline SVG line charts (x: step) drawn from metrics.jsonl, no library.

A chart is self-contained markup styled by the page's CSS (report_assets/report.css); a long
run is thinned to at most 1500 points per series.
"""

from __future__ import annotations

import math

from pipeline.report_html import esc, fmt

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22")


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.ceil(lo / step - 1e-9) * step
    ticks, t = [], start
    while t <= hi + step * 1e-9:
        ticks.append(round(t, 12))
        t += step
    return ticks


def svg_chart(title: str, series: dict[str, list[tuple[float, float]]], *, log: bool = False,
              markers: bool = False, width: int = 600, height: int = 250) -> str:
    """An inline SVG line chart (x: step) of `series`, legend on the right; `log`: log-scaled y (values > 0)."""
    left, right, top, bottom = 62, 116, 26, 34
    pw, ph = width - left - right, height - top - bottom
    pts_all = [p for pts in series.values() for p in pts]
    xs = [x for x, _ in pts_all]
    ys = [math.log10(y) if log else y for _, y in pts_all]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    if x1 == x0:
        x0, x1 = x0 - 1, x1 + 1
    if y1 == y0:
        pad = abs(y0) * 0.05 or 1.0
        y0, y1 = y0 - pad, y1 + pad
    else:
        pad = (y1 - y0) * 0.05
        y0, y1 = y0 - pad, y1 + pad

    def px(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * pw

    def py(y: float) -> float:
        return top + ph - ((math.log10(y) if log else y) - y0) / (y1 - y0) * ph

    out = [f'<svg class="chart" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
           f'aria-label="{esc(title)}">',
           f'<text x="{left}" y="16" class="ctitle">{esc(title)}{" (log scale)" if log else ""}</text>',
           f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" class="frame"/>']
    if log:
        yt = [10.0 ** k for k in range(math.floor(y0), math.ceil(y1) + 1)]
        yt = [t for t in yt if y0 <= math.log10(t) <= y1]
        if len(yt) < 2:
            yt = [10 ** t for t in nice_ticks(y0, y1, 4)]
    else:
        yt = nice_ticks(y0, y1)
    for t in yt:
        y = py(t)
        out.append(f'<line x1="{left}" x2="{left + pw}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
                   f'<text x="{left - 4}" y="{y + 4:.1f}" class="ytick">{esc(_tick(t))}</text>')
    for t in nice_ticks(x0, x1, 6):
        x = px(t)
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top + ph}" y2="{top + ph + 4}" class="axis"/>'
                   f'<text x="{x:.1f}" y="{top + ph + 16}" class="xtick">{esc(_tick(t))}</text>')
    out.append(f'<text x="{left + pw / 2}" y="{height - 3}" class="xlabel">step</text>')
    for k, (name, pts) in enumerate(series.items()):
        colour = PALETTE[k % len(PALETTE)]
        pts = [(x, y) for x, y in pts if not log or y > 0]
        if len(pts) > 1500:  # a long run: every n-th point, and the last
            n = math.ceil(len(pts) / 1500)
            pts = pts[::n] + ([pts[-1]] if (len(pts) - 1) % n else [])
        coords = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in pts)
        out.append(f'<polyline points="{coords}" fill="none" stroke="{colour}" stroke-width="1.5"/>')
        if markers or len(pts) == 1:
            out += [f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="2.5" fill="{colour}">'
                    f'<title>{esc(name)} step {esc(_tick(x))}: {esc(fmt(y))}</title></circle>' for x, y in pts]
        out.append(f'<text x="{left + pw + 6}" y="{top + 10 + 14 * k}" class="legend" style="fill:{colour}">{esc(name)}</text>')
    out.append("</svg>")
    return "".join(out)


def _tick(t: float) -> str:
    if t == 0:
        return "0"
    return f"{t:.3g}"

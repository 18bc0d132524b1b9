"""The report's charts: inline SVG line charts (x: step) drawn from metrics.jsonl, no library.

A chart is self-contained markup styled by the page's CSS (report_assets/report.css); a long
run is thinned to at most 1500 points per series. Axis ticks (`nice_ticks`, `tick_labels`) are
round, distinct and labelled distinctly, even for a single dev evaluation or a flat curve.
"""

from __future__ import annotations

import math

from pipeline.report_html import esc, fmt

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22")


def nice_ticks(lo: float, hi: float, n: int = 5, *, integer: bool = False) -> list[float]:
    """Round (1, 2, 2.5 or 5 times a power of ten), evenly spaced, distinct ticks inside [lo, hi], about `n + 1`.

    A range too narrow for its magnitude (a single point: lo == hi, or below float resolution) is widened
    around its centre first, so there are always at least two ticks; `integer`: whole-number ticks only
    (training steps), 1 apart at the least. Non-finite bounds: no ticks.
    """
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return []
    lo, hi = min(lo, hi), max(lo, hi)
    if not math.isfinite(hi - lo):  # wider than the floats
        return [lo, hi]
    n = max(1, int(n))
    scale = max(abs(lo), abs(hi))
    if hi - lo <= scale * 1e-12 or hi - lo < 1e-300:  # one point, or a span too narrow to split in round steps
        pad = scale * 0.05 if scale > 1e-200 else 1.0
        lo, hi = lo - pad, hi + pad
    if integer and hi - lo < 2:
        mid = (lo + hi) / 2
        lo, hi = math.floor(mid) - 1, math.ceil(mid) + 1
    raw = (hi - lo) / n
    e = math.floor(math.log10(raw))
    m = next((m for m in (1, 2, 2.5, 5) if m * 10.0 ** e >= raw * (1 - 1e-12)
              and (not integer or (m * 10.0 ** e >= 1 and float(m * 10.0 ** e).is_integer()))), None)
    if m is None:  # 10 times the power of ten (or, for integers, the next power of ten at least 1)
        m, e = 1, max(e + 1, 0) if integer else e + 1
    step = m * 10.0 ** e
    first, last = math.ceil(lo / step - 1e-9), math.floor(hi / step + 1e-9)
    # k * m / 10**-e, not k * step: each tick is the float nearest its round value (no 0.30000000000000004)
    return [k * m * 10.0 ** e if e >= 0 else k * m / 10.0 ** -e for k in range(first, last + 1)]


def tick_labels(ticks: list[float]) -> list[str]:
    """The axis labels of `ticks`: as few digits as show each tick exactly, so distinct ticks get distinct labels.

    Plain decimals below a million ("149.5", "12.25", "25000"), else powers of ten ("2e+11", "1e-10").
    """
    if not ticks:
        return []
    gaps = [b - a for a, b in zip(ticks, ticks[1:]) if b != a]
    exact = (min(gaps) if gaps else abs(ticks[0]) or 1.0) * 1e-6
    big = max(abs(t) for t in ticks)
    plain = 1e-3 <= big < 1e6 or big == 0
    for p in range(0, 18):
        labels = [_plain(t, p) if plain else _sig(t, p + 1) for t in ticks]
        if len(set(labels)) == len(set(ticks)) and all(abs(float(s) - t) <= exact for s, t in zip(labels, ticks)):
            return labels
    return [repr(t) for t in ticks]


def _plain(t: float, decimals: int) -> str:
    s = f"{t:.{decimals}f}"
    return s.lstrip("-") if float(s) == 0 else s  # no "-0.0"


def _sig(t: float, digits: int) -> str:
    return "0" if t == 0 else f"{t:.{digits}g}"


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
    if x1 - x0 <= max(abs(x0), abs(x1)) * 1e-9:  # one step (a single dev evaluation): a few steps around it
        x0, x1 = x0 - 1, x1 + 1
    if y1 - y0 <= max(abs(y0), abs(y1)) * 1e-9:  # one value (up to float noise)
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
            yt = [t for t in nice_ticks(10.0 ** y0, 10.0 ** y1, 4) if t > 0]  # under a decade: linear ticks
    else:
        yt = nice_ticks(y0, y1)
    for t, label in zip(yt, tick_labels(yt)):
        y = py(t)
        out.append(f'<line x1="{left}" x2="{left + pw}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
                   f'<text x="{left - 4}" y="{y + 4:.1f}" class="ytick">{esc(label)}</text>')
    xt = nice_ticks(x0, x1, 6, integer=all(float(x).is_integer() for x in xs))
    for t, label in zip(xt, tick_labels(xt)):
        x = px(t)
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top + ph}" y2="{top + ph + 4}" class="axis"/>'
                   f'<text x="{x:.1f}" y="{top + ph + 16}" class="xtick">{esc(label)}</text>')
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

"""The HTML pieces of `slt-pipe report`: escaping, number formatting, tables, notes, embedded JSON.

Every text that reaches the page goes through `esc`; inside a <script> block, JSON is
escaped so that no text can close it or open a comment.
"""

from __future__ import annotations

import html
import json
import math
from importlib import resources
from typing import Any, NamedTuple

from train.run_files import is_number


def esc(x: Any) -> str:
    return html.escape(str(x), quote=True)


def fmt(v: Any) -> str:
    """A number as the report shows it: ints as they are, floats with 2 decimals from 10 up, else 4."""
    if isinstance(v, bool) or not is_number(v):
        return str(v)
    if isinstance(v, int):
        return str(v)
    if not math.isfinite(v):
        return str(v)
    return f"{v:.2f}" if abs(v) >= 10 else f"{v:.4f}"


class Interval(NamedTuple):
    """A score with its confidence interval: a table shows it as `27.95 [12.30, 41.00]`."""

    value: Any
    lo: float
    hi: float


def fmt_interval(v: Interval) -> tuple[str, str]:
    """(the value, "[lo, hi]") of `v`, both bounds with the value's decimals (`fmt`'s: 2 from 10 up, else 4)."""
    if isinstance(v.value, float) and math.isfinite(v.value):
        d = 2 if abs(v.value) >= 10 else 4
        return f"{v.value:.{d}f}", f"[{v.lo:.{d}f}, {v.hi:.{d}f}]"
    return fmt(v.value), f"[{fmt(v.lo)}, {fmt(v.hi)}]"


def _cell(v: Any) -> str:
    if isinstance(v, Interval):
        value, ci = fmt_interval(v)
        return f'<td class="num">{esc(value)} <span class="ci">{esc(ci)}</span></td>'
    return f'<td class="num">{esc(fmt(v))}</td>' if is_number(v) else f"<td>{esc(v)}</td>"


def table(header: list[str], rows: list[list[Any]], *, cls: str = "", row_cls: list[str] | None = None,
          titles: dict[str, str] | None = None) -> str:
    """A table in a box of its own width that scrolls sideways when the table is wider (never the page).

    A cell: a number (right-aligned, `fmt`), an `Interval`, or any other value as text.
    """
    titles = titles or {}
    th = "".join(f'<th title="{esc(titles[h])}">{esc(h)}</th>' if h in titles else f"<th>{esc(h)}</th>" for h in header)
    body = []
    for k, r in enumerate(rows):
        tds = "".join(_cell(v) for v in r)
        rc = row_cls[k] if row_cls else ""
        body.append(f'<tr class="{rc}">{tds}</tr>' if rc else f"<tr>{tds}</tr>")
    return (f'<div class="wide"><table class="{cls}"><thead><tr>{th}</tr></thead><tbody>{"".join(body)}</tbody>'
            "</table></div>")


def note(text: str) -> str:
    return f'<p class="note">{esc(text)}</p>'


def json_script(element_id: str, data: Any) -> str:
    text = json.dumps(data, ensure_ascii=False, allow_nan=False)
    # inside <script> nothing may close it or open a comment: escape <, > and & as JSON \u escapes
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return f'<script type="application/json" id="{element_id}">{text}</script>'


def asset(name: str) -> str:
    """A file of pipeline/report_assets/ (the page's CSS and JS), inlined as it is."""
    return resources.files("pipeline").joinpath("report_assets", name).read_text(encoding="utf-8")

"""The consoles slt-pipe prints through: tables that never break a word, a key or a path.

`SltConsole` lays a table out so that its cells wrap between words only (on a terminal too narrow
for that: one record per row); in a pipe or a log file text is never hard-wrapped and no line
ends in blanks (`_Stripped`). It measures columns with rich's table internals (`_measure_column`,
`_extra_width`, `_get_padding_width`): pyproject pins rich to the 14.x those were read from.
"""

from __future__ import annotations

import re
import sys
from typing import Any

from rich.cells import cell_len
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

LOG_WIDTH = 100_000
"""Console width when not on a terminal: text is never hard-wrapped in pipes and log files."""
LOG_TABLE_WIDTH = 120
"""Width a table is laid out for in a pipe or log (wider only where a whole word or a no-wrap cell needs it)."""
LOG_SHORT_CELLS = 40
"""In a pipe or log, a column whose cells are at most this wide is never wrapped (only longer text is)."""
_SGR = re.compile(r"\x1b\[[0-9;]*m")
_TRAILING = re.compile(r"(?:[ \t]|\x1b\[[0-9;]*m)+$")


def rstrip_line(line: str) -> str:
    """`line` without trailing blanks (any colour codes among them are kept)."""
    if "\x1b" not in line:
        return line.rstrip(" \t")
    m = _TRAILING.search(line)
    return line if m is None else line[: m.start()] + "".join(_SGR.findall(m.group()))


class _Stripped:
    """The standard stream a console writes to when it is not a terminal, with no blanks at the end of a
    line. The stream is looked up at each write, so a test that swaps sys.stdout still captures it."""

    def __init__(self, stderr: bool):
        self.stderr = stderr

    @property
    def stream(self) -> Any:
        return sys.stderr if self.stderr else sys.stdout

    def write(self, text: str) -> int:
        *done, last = text.split("\n")
        self.stream.write("\n".join([*(rstrip_line(ln) for ln in done), last]))
        return len(text)

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self.stream.fileno()

    @property
    def encoding(self) -> str:
        return getattr(self.stream, "encoding", None) or "utf-8"


def wrap_words(text: Text, first: int, rest: int) -> list[Text]:
    """`text` as lines of at most `first` cells (the first line) and `rest` (the others), broken only at
    spaces: a word longer than a line (a path, a key, a URL) is kept whole on a line of its own."""
    lines: list[Text] = []
    for para in text.split("\n", allow_blank=True):
        plain, start, end = para.plain, -1, -1
        avail = first if not lines else rest
        for m in re.finditer(r"\S+", plain):
            s, e = m.span()
            if start < 0:
                if not lines and cell_len(plain[s:e]) > avail and avail < rest:
                    lines.append(Text())  # no room beside the label: the text starts on the next line
                    avail = rest
                start, end = s, e
            elif cell_len(plain[start:e]) <= avail:
                end = e
            else:
                lines.append(para[start:end])
                avail, start, end = rest, s, e
        lines.append(para[start:end] if start >= 0 else Text())
    return lines


def _ranges(console: Console, table: Table, short: int = 0) -> list[tuple[int, int]]:
    """(least, most) cells of each column of `table`, padding included: least is its longest word (all of a
    no-wrap cell, or of a column no wider than `short`), most its longest line."""
    wide = console.options.update_width(LOG_WIDTH)
    out = []
    for i, col in enumerate(table.columns):
        m = table._measure_column(console, wide, col)
        short_col = m.maximum <= short + table._get_padding_width(i)
        out.append((m.maximum if col.no_wrap or short_col else m.minimum, m.maximum))
    return out


def table_fits(console: Console, table: Table, width: int) -> bool:
    """Whether `table` lays out in `width` cells with no word broken (its cells wrap between words only)."""
    return sum(lo for lo, _ in _ranges(console, table)) + table._extra_width <= width


def fitted_widths(console: Console, table: Table, width: int, short: int = 0) -> list[int] | None:
    """Column widths (padding included) that fit `table` in `width` with every word whole, narrowing the widest
    columns first but none below its longest word (nor a column of cells up to `short` wide at all); None
    where rich's own layout needs no narrowing."""
    ranges = _ranges(console, table, short)
    avail = width - table._extra_width
    if sum(hi for _, hi in ranges) <= avail:
        return None

    def at(level: int) -> list[int]:
        return [max(lo, min(hi, level)) for lo, hi in ranges]

    lo_level, hi_level = 0, max(hi for _, hi in ranges)  # the highest level whose widths fit avail
    while hi_level - lo_level > 1:
        mid = (lo_level + hi_level) // 2
        lo_level, hi_level = (mid, hi_level) if sum(at(mid)) <= avail else (lo_level, mid)
    widths = at(lo_level)
    spare = avail - sum(widths)
    for i, (_, hi) in enumerate(ranges):  # what rounding left: to the columns that can still grow
        grow = min(spare, hi - widths[i])
        widths[i] += max(grow, 0)
        spare -= max(grow, 0)
    return widths


def _is_table(obj: Any) -> bool:
    return isinstance(obj, Table) and (obj.box is not None or obj.show_header)  # not a layout grid


class SltConsole(Console):
    """rich's Console with tables that never break a word, a key or a path.

    On a terminal a table is drawn when its words fit the width whole (the widest columns narrowed first,
    none below its longest word); otherwise it is printed as one record per row (the first cell, then
    `column  value` lines wrapped between words). In a pipe or a log a table is laid out for
    LOG_TABLE_WIDTH (wider only where a whole word needs it; short cells never wrap there), and no line
    carries trailing blanks. The title and caption are lines of their own, wrapped between words on a terminal.
    """

    def print(self, *objects: Any, **kwargs: Any) -> None:
        # a Group (evaluate's score table and the lines under it) is its parts: its table gets the layout too
        objects = tuple(part for o in objects for part in (o.renderables if isinstance(o, Group) else (o,)))
        if not any(_is_table(o) for o in objects):
            return super().print(*objects, **kwargs)
        for o in objects:
            if _is_table(o):
                self._print_table(o, **kwargs)
            else:
                super().print(o, **kwargs)

    def _print_table(self, table: Table, **kwargs: Any) -> None:
        kwargs.pop("width", None)
        short = 0
        if self.is_terminal:
            width = self.width
            if not table_fits(self, table, width):
                return self._print_records(table)
        else:  # a log: LOG_TABLE_WIDTH, or what the longest words (and the short columns, whole) need
            short = LOG_SHORT_CELLS
            width = max(LOG_TABLE_WIDTH, sum(lo for lo, _ in _ranges(self, table, short)) + table._extra_width)
        widths = fitted_widths(self, table, width, short)
        saved = {k: getattr(table, k) for k in ("title", "caption") if getattr(table, k)}
        fixed = [c.width for c in table.columns]
        try:  # title and caption as lines of their own, wrapped between words (a long path stays whole)
            for k in saved:
                setattr(table, k, None)
            for i, col in enumerate(table.columns if widths else ()):
                col.width = max(1, widths[i] - table._get_padding_width(i))  # type: ignore[index]
            if "title" in saved:
                self._print_lines(self._text(saved["title"]), "table.title")
            super().print(table, width=width, **kwargs)
            if "caption" in saved:
                self._print_lines(self._text(saved["caption"]), "table.caption")
        finally:
            for k, v in saved.items():
                setattr(table, k, v)
            for col, w in zip(table.columns, fixed):
                col.width = w

    def _print_lines(self, text: Text, style: str) -> None:
        lines = wrap_words(text, self.width, self.width) if self.is_terminal else [text]
        super().print(Text.assemble(Text("\n").join(lines), style=style), highlight=False, soft_wrap=True)

    def _text(self, obj: Any) -> Text:
        if isinstance(obj, Text):
            return obj
        if isinstance(obj, str):
            return self.render_str(obj, highlight=False)
        lines = self.render_lines(obj, self.options.update_width(LOG_WIDTH), pad=False)
        return Text("\n").join(Text.assemble(*((s.text, s.style) for s in ln if not s.control)) for ln in lines)

    def _print_records(self, table: Table) -> None:
        """`table` too wide for the terminal: a record per row, its first cell as the heading."""
        width = self.width
        out: list[Text] = []
        if table.title:
            out += [Text.assemble(ln, style="table.title") for ln in wrap_words(self._text(table.title), width, width)]
        columns = table.columns
        labels = [self._text(c.header).plain for c in columns[1:]]
        pad = max((cell_len(lb) for lb in labels), default=0)
        cells = [list(c.cells) for c in columns]
        for i in range(table.row_count):
            if out:
                out.append(Text())
            out += [Text.assemble(ln, style="bold") for ln in wrap_words(self._text(cells[0][i]), width, width)]
            for label, col in zip(labels, cells[1:]):
                value = self._text(col[i])
                if not value.plain.strip():
                    continue
                head = f"  {label}{' ' * (pad - cell_len(label))}  "
                longest = max((cell_len(w) for w in value.plain.split()), default=0)
                first = width - cell_len(head)
                if first >= longest:  # beside the label, the next lines under it
                    hang = cell_len(head)
                else:  # a word too long for that: the value starts under the label, less indented
                    hang, first = max(0, min(4, width - longest)), 0
                for j, ln in enumerate(wrap_words(value, first, width - hang)):
                    lead = head if j == 0 else " " * hang
                    out.append(Text(lead.rstrip(), style="dim") if not ln.plain
                               else Text.assemble(Text(lead, style="dim"), ln))
        if table.caption:
            out += [Text(), *(Text.assemble(ln, style="table.caption")
                              for ln in wrap_words(self._text(table.caption), width, width))]
        super().print(Text("\n").join(out), highlight=False, soft_wrap=True)


def console(*, stderr: bool) -> SltConsole:
    """Results go to stdout, progress and logs to stderr; text never hard-wraps outside a terminal, and
    no line there ends in blanks."""
    if Console(stderr=stderr).is_terminal:
        return SltConsole(stderr=stderr, soft_wrap=True)
    return SltConsole(file=_Stripped(stderr), stderr=stderr, soft_wrap=True, width=LOG_WIDTH)  # type: ignore[arg-type]


def count(n: int, noun: str) -> str:
    """'1 video', '3 videos': a count with its noun in the number it takes (regular plurals)."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"

"""The one TOML writer: `init`, `config show` and every config file slt-pipe writes (load_toml reads it back)."""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path
from typing import Any

from cache.errors import SltPipeError
from pipeline.config import Config, to_dict


def to_toml(obj: Config | dict[str, Any]) -> str:
    """The one TOML writer: a Config (`config show`, old project dumps) or a nested layer (`init`).

    Top-level values first, then a `[section]` per table with its values and, after them, a
    `[section.sub]` per sub-table; None values are dropped (TOML has no null), paths written as
    strings. `load_toml` reads back exactly what was written."""
    data = to_dict(obj) if dataclasses.is_dataclass(obj) else obj
    lines = [*(f"{_toml_key(k)} = {toml_value(v)}" for k, v in data.items() if not isinstance(v, dict) and v is not None),
             ""]

    def table(name: str, values: dict[str, Any]) -> None:
        scalars = [(k, v) for k, v in values.items() if not isinstance(v, dict) and v is not None]
        subs = [(k, v) for k, v in values.items() if isinstance(v, dict)]
        if scalars or not subs:  # a table of sub-tables only needs no header of its own
            lines.append(f"[{name}]")
            lines.extend(f"{_toml_key(k)} = {toml_value(v)}" for k, v in scalars)
            lines.append("")
        for k, v in subs:  # a sub-section (extract.clip): its own table, after the scalars
            table(f"{name}.{_toml_key(k)}", v)

    for section, values in data.items():
        if isinstance(values, dict):
            table(_toml_key(section), values)
    return "\n".join(lines)


_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.match(key) else _toml_string(key)


def _toml_string(text: str) -> str:
    """A TOML basic string; non-ASCII as \\uXXXX (\\UXXXXXXXX beyond the BMP), as json.dumps writes them."""
    out = []
    for ch in text:
        code = ord(ch)
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif 0x20 <= code < 0x7F:
            out.append(ch)
        else:
            out.append(f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}")
    return '"' + "".join(out) + '"'


def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, (str, Path)):
        return _toml_string(str(v))
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {toml_value(x)}" for k, x in v.items() if x is not None) + "}"
    raise SltPipeError(f"cannot write {v!r} ({type(v).__name__}) as a TOML value", fix="use a string, number, "
                       "boolean or a list of them")

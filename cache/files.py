"""Durable file writes and sizes: the one write-then-rename every store and stage uses."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable


def temp_path(path: Path) -> Path:
    """A hidden sibling of `path` that no reader ever opens and no other process picks."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def write_atomic(path: Path, write: Callable[[Path], None], *, fsync: bool = True) -> Path:
    """Call `write(tmp)`, fsync it, rename it onto `path`: readers see the old file or the new one,
    never half; on any error the temporary is removed and `path` is untouched."""
    path = Path(path)
    tmp = temp_path(path)
    try:
        write(tmp)
        if fsync:
            fsync_path(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def write_bytes_atomic(path: Path, data: bytes, *, fsync: bool = True) -> Path:
    return write_atomic(path, lambda tmp: tmp.write_bytes(data), fsync=fsync)


def write_text_atomic(path: Path, text: str, *, fsync: bool = True) -> Path:
    return write_atomic(path, lambda tmp: tmp.write_text(text), fsync=fsync)


def write_json_atomic(path: Path, obj: Any) -> Path:
    """JSON (indent 1, sorted keys, UTF-8 as is), durably: the manifests' and run files' format."""
    return write_text_atomic(path, json.dumps(obj, indent=1, sort_keys=True, ensure_ascii=False))


def fsync_path(path: Path) -> None:
    """fsync a file or a directory (a directory's fsync makes renames inside it durable)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def human_bytes(n: int | float | None) -> str:
    """1536 -> '1.5 KiB'; None -> '?'."""
    if n is None:
        return "?"
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def disk_free(path: Path) -> tuple[Path, int]:
    """(the nearest existing folder at or above `path`, its free bytes): the disk a folder not made yet will be on."""
    import shutil

    p = Path(path).expanduser().absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p, shutil.disk_usage(p).free

"""Durable file writes and sizes: the one write-then-rename every store and stage uses."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable, Iterator

from cache.errors import DiskFullError

LOW_SPACE = 1 << 20
"""Free bytes under which a failed write counts as a full disk when its error does not say so
(torch.save's zip writer reports ENOSPC as `unexpected pos`)."""


def temp_path(path: Path) -> Path:
    """A hidden sibling of `path` that no reader ever opens and no other process picks."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def disk_full(exc: BaseException, path: Path | None = None) -> bool:
    """Whether `exc` (or what caused it) is a full disk: ENOSPC as an OSError, in a library's message
    (safetensors, HDF5), or, for an error that hides it, almost no space left where `path` was written."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if any(s in str(e) for s in ("No space left on device", "errno = 28", "os error 28", "Disk quota exceeded")):
            return True
        e = e.__cause__ or e.__context__
    if path is None:
        return False
    where = Path(path)
    while not where.exists() and where != where.parent:
        where = where.parent
    try:
        return shutil.disk_usage(where).free < LOW_SPACE
    except OSError:
        return False


@contextlib.contextmanager
def writing(path: Path) -> Iterator[None]:
    """Turn a full disk met while writing `path` into the one DiskFullError naming it."""
    try:
        yield
    except DiskFullError:
        raise
    except Exception as e:
        if disk_full(e, path):
            raise DiskFullError(path) from e
        raise


def write_atomic(path: Path, write: Callable[[Path], None], *, fsync: bool = True) -> Path:
    """Call `write(tmp)`, fsync it, rename it onto `path`: readers see the old file or the new one,
    never half; on any error the temporary is removed and `path` is untouched (a full disk is a
    DiskFullError naming `path`)."""
    path = Path(path)
    tmp = temp_path(path)
    try:
        with writing(path):
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

"""Content-addressed keys: a stable hash of exactly what determines an entry's content."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

KEY_CHARS = 20


def canonical_json(obj: Any) -> str:
    """Deterministic JSON: sorted keys, no whitespace, paths as strings, floats via repr."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=_default, ensure_ascii=False)


def make_key(kind: str, inputs: dict[str, Any], *, format_version: int) -> str:
    """Key of an entry of `kind` made from `inputs` by code of `format_version`.

    Bump a stage's format_version whenever its output changes for the same inputs, so
    old entries are not mistaken for new ones.
    """
    payload = canonical_json({"kind": kind, "format": format_version, "inputs": inputs})
    return hashlib.sha256(payload.encode()).hexdigest()[:KEY_CHARS]


def sha256_file(path: Path, *, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_tree(path: Path) -> str:
    """Hash of a file, or of every file under a directory (relative names and bytes)."""
    if path.is_file():
        return sha256_file(path)
    h = hashlib.sha256()
    for p in sorted(q for q in path.rglob("*") if q.is_file()):
        h.update(str(p.relative_to(path)).encode())
        h.update(sha256_file(p).encode())
    return h.hexdigest()


def _default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    raise TypeError(f"cannot hash {type(obj).__name__} into a cache key")

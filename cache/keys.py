"""Content-addressed keys: a stable hash of exactly what determines an entry's content."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from cache.errors import SltPipeError
from cache.files import write_text_atomic

KEY_CHARS = 20
HASH_MEMO = "file-sha256.json"
"""The memo of weight-file hashes, in the cache a command names (`use_memo_dir`): never elsewhere."""


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
    """sha256 of a file's bytes, read in chunks (the one way slt-pipe hashes a whole file)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_memo(path: Path) -> str:
    """sha256 of a file, hashed once per cache while its path, size and mtime stay the same.

    Why: a paper checkpoint is gigabytes, and every command keys its entries from these
    hashes; re-reading them on each run is most of a cached run's time. A rewritten file
    changes size or mtime and is hashed again.
    """
    real = Path(path).resolve()
    st = real.stat()
    stamp = [st.st_size, st.st_mtime_ns]
    key = str(real)
    if key in _MEMO and _MEMO[key][:2] == stamp:
        return _MEMO[key][2]
    disk = _read_memo()
    if key in disk and disk[key][:2] == stamp:
        _MEMO[key] = disk[key]
        return disk[key][2]
    digest = sha256_file(real)
    _MEMO[key] = [*stamp, digest]
    # files gone since (temporary checkouts, deleted snapshots) leave the memo when it is next written
    _write_memo({k: v for k, v in _read_memo().items() if Path(k).exists()} | {key: _MEMO[key]})
    return digest


_MEMO: dict[str, list] = {}
"""This process's view of the memo: path -> [size, mtime_ns, sha256]."""
_MEMO_DIR: Path | None = None


def use_memo_dir(cache_dir: Path | None) -> None:
    """Keep the memo in `cache_dir` (the CLI names the command's --cache); None: this process only."""
    global _MEMO_DIR
    _MEMO_DIR = None if cache_dir is None else Path(cache_dir).expanduser()


def hash_memo_path() -> Path | None:
    return None if _MEMO_DIR is None else _MEMO_DIR / HASH_MEMO


def _read_memo() -> dict[str, list]:
    """The memo on disk; an unreadable or foreign file counts as empty (it is only a memo: files get re-hashed)."""
    path = hash_memo_path()
    if path is None:
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items() if isinstance(v, list) and len(v) == 3 and isinstance(v[2], str)}


def _write_memo(memo: dict[str, list]) -> None:
    """Atomically (temp file + rename): a concurrent reader sees the old memo or the new one, never half.
    A cache that cannot take it (read-only, full) only costs the re-hash next time: the failure is kept
    in MEMO_UNWRITTEN, not raised."""
    global MEMO_UNWRITTEN
    path = hash_memo_path()
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, json.dumps(memo, sort_keys=True), fsync=False)
    except (OSError, SltPipeError) as e:
        MEMO_UNWRITTEN = f"{path}: {e}"


MEMO_UNWRITTEN: str | None = None
"""Why the last write of the memo failed (None: it did not)."""


def _default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    raise TypeError(f"cannot hash {type(obj).__name__} into a cache key")

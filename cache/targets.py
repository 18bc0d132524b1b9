"""HDF5 store of SONAR target embeddings: one file per language entry, `targets.h5`.

The layout (readable with plain h5py; embeddings are NOT normalised) is in the README
("Targets: HDF5"). Embeddings carry HDF5's fletcher32 filter and every string dataset a
`sha256` attr (filters cannot cover variable-length strings), so `TargetReader` detects a
damaged file as it reads; files are written under a temporary name and renamed into place.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from cache.errors import CacheError
from cache.files import write_atomic
from cache.store import CorruptEntryError, check_files, read_manifest

FORMAT = 2
"""2: fletcher32 on embeddings and a sha256 attr on string datasets (1: no checksums)."""
TARGETS_FILE = "targets.h5"
REBUILD = "`slt-pipe embed-targets` with the same settings"


@dataclass
class SplitTargets:
    ids: Sequence[str]
    texts: Sequence[str]
    embeddings: np.ndarray  # [N, D] float32
    sources: Sequence[str]  # per row: "reference" or translation model id


def write_targets(
    path: Path,
    lang: str,
    splits: dict[str, SplitTargets],
    *,
    key: str = "",
    encoder: Any = None,
    translator: Any = None,
) -> Path:
    """Write one language's targets atomically (temp file + rename). Returns `path`."""
    import h5py

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    str_t = h5py.string_dtype(encoding="utf-8")
    dims = {np.asarray(s.embeddings).shape[1] for s in splits.values()
            if np.asarray(s.embeddings).ndim == 2 and (len(s.ids) or np.asarray(s.embeddings).shape[1])}
    if len(dims) > 1:
        raise CacheError(f"embedding widths differ across splits: {sorted(dims)}", path=path)
    dim = int(dims.pop()) if dims else 0

    def write(tmp: Path) -> None:
        # Built in memory, written as one image: HDF5 that meets a full disk crashes the process (a
        # segfault in h5py's close); the image's write is a plain OSError. The bytes are those of a file
        # written in place.
        with h5py.File(tmp, "w", driver="core", backing_store=False) as f:
            f.attrs["format"] = FORMAT
            f.attrs["lang"] = lang
            f.attrs["key"] = key
            f.attrs["encoder"] = _as_json(encoder)
            f.attrs["translator"] = _as_json(translator)
            f.attrs["dim"] = dim
            for split, st in splits.items():
                n = len(st.ids)
                emb = np.asarray(st.embeddings, dtype=np.float32).reshape(n, dim)
                if not (len(st.texts) == len(st.sources) == n):
                    raise CacheError(f"split {split}: ids/texts/sources lengths differ", path=path)
                g = f.create_group(split)
                _strings(g, "ids", st.ids, str_t)
                lg = g.create_group(lang)
                _strings(lg, "text", st.texts, str_t)
                lg.create_dataset("embedding", data=emb, fletcher32=True)
                _strings(lg, "source", st.sources, str_t)
            f.flush()
            image = f.id.get_file_image()
        tmp.write_bytes(image)

    return write_atomic(path, write)


def _strings(group: Any, name: str, values: Sequence[str], dtype: Any) -> None:
    group.create_dataset(name, data=list(values), dtype=dtype).attrs["sha256"] = strings_digest(values)


def strings_digest(values: Sequence[str]) -> str:
    """sha256 of the strings, each utf-8 and ended by NUL (what a string dataset's `sha256` attr holds)."""
    h = hashlib.sha256()
    for v in values:
        h.update(v.encode("utf-8") + b"\0")
    return h.hexdigest()


def _as_json(obj: Any) -> str:
    if obj is None:
        return "reference"
    if isinstance(obj, str):
        return obj
    return json.dumps(obj, sort_keys=True, default=str)


class TargetReader:
    """Read a `targets.h5` file (one language), checked as it reads (see the module docstring).

    `rerun` is the last step of a corrupt entry's fix (a stage passes the exact command).
    """

    def __init__(self, path: Path, *, rerun: str = REBUILD):
        import h5py

        self.path = Path(path)
        if self.path.is_dir():
            self.path = self.path / TARGETS_FILE
        self.rerun = rerun
        manifest = read_manifest(self.path.parent) if self.path.is_file() else None
        if manifest is not None:  # sizes first: a truncated file can fail to open at all
            check_files(self.path.parent, manifest, hash_if=lambda rel: False, rerun=rerun)
        try:
            self._f = h5py.File(self.path, "r")
        except FileNotFoundError:
            raise CacheError("cannot read target embeddings (no such file)", path=self.path,
                             fix="re-run the target-embedding stage") from None
        except OSError as e:
            if manifest is not None:
                raise self.corrupt(TARGETS_FILE, e) from None
            raise CacheError(f"cannot read target embeddings ({e})", path=self.path,
                             fix="re-run the target-embedding stage") from None
        try:
            self.format = int(self._f.attrs.get("format", 1))
            if self.format < 2 and manifest is not None:  # no checksums inside: hash it whole, once
                check_files(self.path.parent, manifest, hash_if=lambda rel: rel == TARGETS_FILE, rerun=rerun)
            self.lang: str = _s(self._f.attrs["lang"])
            self.key: str = _s(self._f.attrs.get("key", ""))
            self.encoder: str = _s(self._f.attrs.get("encoder", ""))
            self.translator: str = _s(self._f.attrs.get("translator", ""))
            self.splits: list[str] = sorted(self._f.keys())
        except (OSError, KeyError, ValueError) as e:
            self._f.close()
            raise self.corrupt(f"{TARGETS_FILE} attributes", e) from None

    def corrupt(self, what: str, error: BaseException | str) -> CorruptEntryError:
        """The error for a read of `what` that failed its checksum or did not decode."""
        return CorruptEntryError(self.path.parent, f"{what} fails to read ({error})", rerun=self.rerun)

    def _group(self, split: str) -> Any:
        if split not in self._f:
            raise CacheError(f"no split {split!r} in target file (has {self.splits})", path=self.path)
        return self._f[split]

    def _read_strings(self, split: str, name: str) -> list[str]:
        where = f"{TARGETS_FILE}:/{split}/{name}"
        try:
            ds = self._group(split)[name]
            values = [_s(x) for x in ds[:]]
            digest = ds.attrs.get("sha256")
        except (OSError, ValueError, UnicodeDecodeError) as e:
            raise self.corrupt(where, e) from None
        if digest is not None and _s(digest) != strings_digest(values):
            raise self.corrupt(where, "its strings do not match their sha256")
        return values

    def ids(self, split: str) -> list[str]:
        return self._read_strings(split, "ids")

    def texts(self, split: str) -> list[str]:
        return self._read_strings(split, f"{self.lang}/text")

    def sources(self, split: str) -> list[str]:
        return self._read_strings(split, f"{self.lang}/source")

    def embeddings(self, split: str) -> np.ndarray:
        try:
            return np.asarray(self._group(split)[self.lang]["embedding"][:], dtype=np.float32)
        except OSError as e:  # fletcher32 mismatch: "filter returned failure during read"
            raise self.corrupt(f"{TARGETS_FILE}:/{split}/{self.lang}/embedding", e) from None

    @property
    def dim(self) -> int:
        d = int(self._f.attrs.get("dim", 0))
        if d:
            return d
        for s in self.splits:
            return int(self._group(s)[self.lang]["embedding"].shape[1])
        return 0

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> "TargetReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _s(x: Any) -> str:
    return x.decode("utf-8") if isinstance(x, bytes) else str(x)

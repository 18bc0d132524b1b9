"""HDF5 store of SONAR target embeddings: one file per language entry, `targets.h5`.

Layout (readable with plain h5py or h5dump; no slt-pipe code needed)::

    targets.h5
      attrs: format = 1
             lang        FLORES-200 code of this entry, e.g. "eng_Latn"
             key         the cache key of the entry
             encoder     JSON of the SONAR encoder identity (asset name or tiny hash)
             translator  JSON of the translator identity ("reference" when none was needed)
             dim         embedding width D
      /{split}/ids                    [N]    utf-8 variable-length strings (sample ids)
      /{split}/{lang}/text            [N]    utf-8 variable-length strings (target sentence)
      /{split}/{lang}/embedding       [N, D] float32 SONAR sentence embeddings (NOT normalised)
      /{split}/{lang}/source          [N]    utf-8 strings: "reference" (gold text) or the
                                             translation model id that produced the text

Row i of every dataset under a split belongs to `ids[i]`. Files are written under a
temporary name in the same directory and renamed into place, so a reader sees either
no file or a complete one.

    import h5py
    f = h5py.File("targets.h5")
    ids = [s.decode() for s in f["train/ids"][:]]
    emb = f["train/eng_Latn/embedding"][:]
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from cache.errors import CacheError

FORMAT = 1
TARGETS_FILE = "targets.h5"


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
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with h5py.File(tmp, "w") as f:
            f.attrs["format"] = FORMAT
            f.attrs["lang"] = lang
            f.attrs["key"] = key
            f.attrs["encoder"] = _as_json(encoder)
            f.attrs["translator"] = _as_json(translator)
            dim = int(dims.pop()) if dims else 0
            f.attrs["dim"] = dim
            for split, st in splits.items():
                n = len(st.ids)
                emb = np.asarray(st.embeddings, dtype=np.float32).reshape(n, dim)
                if not (len(st.texts) == len(st.sources) == n):
                    raise CacheError(f"split {split}: ids/texts/sources lengths differ", path=path)
                g = f.create_group(split)
                g.create_dataset("ids", data=list(st.ids), dtype=str_t)
                lg = g.create_group(lang)
                lg.create_dataset("text", data=list(st.texts), dtype=str_t)
                lg.create_dataset("embedding", data=emb)
                lg.create_dataset("source", data=list(st.sources), dtype=str_t)
            f.flush()
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def _as_json(obj: Any) -> str:
    if obj is None:
        return "reference"
    if isinstance(obj, str):
        return obj
    return json.dumps(obj, sort_keys=True, default=str)


class TargetReader:
    """Read a `targets.h5` file (one language)."""

    def __init__(self, path: Path):
        import h5py

        self.path = Path(path)
        if self.path.is_dir():
            self.path = self.path / TARGETS_FILE
        try:
            self._f = h5py.File(self.path, "r")
        except (OSError, FileNotFoundError) as e:
            raise CacheError(f"cannot read target embeddings ({e})", path=self.path,
                             fix="re-run the target-embedding stage") from None
        self.lang: str = _s(self._f.attrs["lang"])
        self.key: str = _s(self._f.attrs.get("key", ""))
        self.encoder: str = _s(self._f.attrs.get("encoder", ""))
        self.translator: str = _s(self._f.attrs.get("translator", ""))
        self.splits: list[str] = sorted(self._f.keys())

    def _group(self, split: str) -> Any:
        if split not in self._f:
            raise CacheError(f"no split {split!r} in target file (has {self.splits})", path=self.path)
        return self._f[split]

    def ids(self, split: str) -> list[str]:
        return [_s(x) for x in self._group(split)["ids"][:]]

    def texts(self, split: str) -> list[str]:
        return [_s(x) for x in self._group(split)[self.lang]["text"][:]]

    def sources(self, split: str) -> list[str]:
        return [_s(x) for x in self._group(split)[self.lang]["source"][:]]

    def embeddings(self, split: str) -> np.ndarray:
        return np.asarray(self._group(split)[self.lang]["embedding"][:], dtype=np.float32)

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

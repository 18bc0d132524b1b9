"""Per-video features in a Zarr v3 store: shards of videos, an index, crash-safe shard writes.

A store holds one or two arrays per shard: `spatial` [sum T, Ds] and/or `motion` [sum C, Dm].
A stream entry (one encoder, `cache/features.py`) holds the one its encoder fills; an entry
written before per-stream caching holds both. The layout, and how to read a video with plain
zarr, is in the README ("Features: Zarr v3").
Why it is built this way: each shard array is one file (Zarr's sharding codec) with small inner
chunks, so reading one video touches only its rows; a shard is written under `.tmp-*` and
renamed when complete, so an existing shard is finished and a kill -9 loses only the shard in
flight; a finished shard is fixed by its fingerprint, so `adopt_shard` hard-links it into a
repaired entry; every inner chunk ends in a crc32c and small files are hashed against the
manifest, so a flipped byte is a `CorruptEntryError`, never silently wrong features.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from cache.errors import CacheError
from cache.files import fsync_path, writing
from cache.keys import sha256_file
from cache.store import CorruptEntryError, check_files, read_manifest

STORE = "features.zarr"
FORMAT = "slt-pipe.features/2"
"""2: crc32c on every inner chunk of the shard arrays (1: none; still readable, see the module docstring)."""
CHUNK_ROWS = 64
"""Rows per inner Zarr chunk: the read granularity of one video (~2 chunks for a typical video)."""
_SHARD = re.compile(r"^\d{5}$")
ARRAYS = ("spatial", "motion")
"""The arrays a store may hold, in this order: frame encoders' rows, clip encoders' rows."""
_CHUNK_FILE = re.compile(rf"^{re.escape(STORE)}/shards/\d{{5}}/(spatial|motion)/c/")
"""Manifest names of shard array data: covered by crc32c, so not hashed on open."""
READ_ERRORS = (ValueError, RuntimeError, OSError, EOFError)
"""What zarr and its codecs raise on bytes that fail to decode (crc32c mismatch: ValueError)."""
REBUILD = "`slt-pipe extract` with the same settings"


def chunk_codecs(checksums: bool = True) -> tuple[Any, ...]:
    """Bytes-to-bytes codecs of an inner chunk: zarr's default zstd, then crc32c (checked first on read)."""
    from zarr.codecs import Crc32cCodec, ZstdCodec

    return (ZstdCodec(level=0, checksum=False), Crc32cCodec()) if checksums else (ZstdCodec(level=0, checksum=False),)


def has_checksums(array: Any) -> bool:
    """Whether a shard array's inner chunks carry crc32c (format 2) or not (format 1)."""
    from zarr.codecs import Crc32cCodec, ShardingCodec

    for codec in array.metadata.codecs:
        inner = codec.codecs if isinstance(codec, ShardingCodec) else (codec,)
        if any(isinstance(c, Crc32cCodec) for c in inner):
            return True
    return False


def shard_name(k: int) -> str:
    return f"{k:05d}"


@dataclass
class ShardData:
    """One shard's videos (sorted ids) with their features; failed videos carry a reason instead."""

    index: int
    ids: list[str]
    spatial: list[np.ndarray]
    motion: list[np.ndarray]
    failures: list[tuple[str, ...]]
    """(video id, reason, fix) of the shard's videos that were skipped."""
    fingerprint: str = ""
    """sha256 of the shard's samples' identities (`extract.vision.runner.ShardPlan.fingerprint`)."""


class FeatureStoreWriter:
    """Builds `features.zarr` inside a pending cache entry; safe to resume after a crash."""

    def __init__(self, entry_dir: Path, *, spatial_dim: int | None = None, motion_dim: int | None = None, dtype: str,
                 attrs: dict[str, Any], checksums: bool = True):
        """A width per array the store holds (None: not held; a stream entry holds one).
        checksums=False writes format 1 (no crc32c): only to measure and test reading old entries."""
        import zarr

        self.path = Path(entry_dir) / STORE
        self.dtype = dtype
        self.checksums = checksums
        self.arrays = {n: d for n, d in zip(ARRAYS, (spatial_dim, motion_dim)) if d is not None}
        if not self.arrays:
            raise ValueError("a features store holds at least one of spatial and motion")
        root = zarr.open_group(self.path, mode="a", zarr_format=3)
        fmt = FORMAT if checksums else "slt-pipe.features/1"
        root.attrs.update({"format": fmt, **{f"{n}_dim": d for n, d in self.arrays.items()}, "dtype": dtype,
                           "arrays": list(self.arrays), **attrs})
        root.require_group("shards")
        self._drop_temporaries()

    @property
    def shards_dir(self) -> Path:
        return self.path / "shards"

    def _drop_temporaries(self) -> None:
        for p in self.shards_dir.glob(".tmp-*"):
            shutil.rmtree(p)

    def done_shards(self) -> set[int]:
        return {int(p.name) for p in self.shards_dir.iterdir() if _SHARD.match(p.name) and (p / "zarr.json").is_file()}

    def write_shard(self, data: ShardData) -> None:
        """Write one shard under a temporary name, fsync, rename into place (atomic)."""

        tmp = self.shards_dir / f".tmp-{shard_name(data.index)}-{os.getpid()}"
        if tmp.exists():
            shutil.rmtree(tmp)
        try:
            with writing(self.shards_dir / shard_name(data.index)):
                self._write_shard(tmp, data)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)  # a full disk or a crash leaves no half shard taking space
            raise
        self._publish_shard(tmp, data.index)

    def _write_shard(self, tmp: Path, data: ShardData) -> None:
        import zarr

        g = zarr.open_group(tmp, mode="w", zarr_format=3)
        held = {"spatial": data.spatial, "motion": data.motion}
        for name, dim in self.arrays.items():
            parts = held[name]
            rows = np.concatenate(parts).astype(self.dtype) if parts else np.zeros((0, dim), self.dtype)
            if rows.ndim != 2 or rows.shape[1] != dim:
                raise ValueError(f"shard {data.index} {name}: rows of shape {rows.shape}, expected [*, {dim}]")
            outer = max(CHUNK_ROWS, -(-rows.shape[0] // CHUNK_ROWS) * CHUNK_ROWS)
            arr = g.create_array(name, shape=rows.shape, dtype=self.dtype, chunks=(CHUNK_ROWS, dim), shards=(outer, dim),
                                 compressors=chunk_codecs(self.checksums))
            if rows.size:
                arr[:] = rows
        g.attrs.update({
            "ids": list(data.ids),
            **{f"{name}_offsets": _offsets(held[name]) for name in self.arrays},
            "failures": [list(f) for f in data.failures],
            "fingerprint": data.fingerprint,
        })

    def adopt_shard(self, source: Path, index: int) -> None:
        """Hard-link (or copy, across file systems) a finished shard of another entry in as shard `index`."""
        tmp = self.shards_dir / f".tmp-{shard_name(index)}-{os.getpid()}"
        if tmp.exists():
            shutil.rmtree(tmp)
        shutil.copytree(source, tmp, copy_function=_link_or_copy)
        self._publish_shard(tmp, index)

    def adopt_array(self, source: Path, name: str, index: int) -> None:
        """Hard-link array `name` of a finished shard of a store that holds both arrays in as shard
        `index` of this one-array store (`slt-pipe cache migrate`: nothing read or recomputed)."""
        import zarr

        tmp = self.shards_dir / f".tmp-{shard_name(index)}-{os.getpid()}"
        if tmp.exists():
            shutil.rmtree(tmp)
        attrs = zarr.open_group(source, mode="r", zarr_format=3).attrs
        g = zarr.open_group(tmp, mode="w", zarr_format=3)
        g.attrs.update({"ids": attrs["ids"], f"{name}_offsets": attrs[f"{name}_offsets"], "failures": attrs["failures"],
                        "fingerprint": attrs.get("fingerprint", "")})
        shutil.copytree(source / name, tmp / name, copy_function=_link_or_copy)
        self._publish_shard(tmp, index)

    def _publish_shard(self, tmp: Path, index: int) -> None:
        _fsync_tree(tmp)
        os.rename(tmp, self.shards_dir / shard_name(index))
        fsync_path(self.shards_dir)

    def finish(self, shards: Sequence[int]) -> tuple[int, list[tuple[str, ...]]]:
        """Write the index over `shards` (all must be done); returns (videos, failures)."""
        import zarr

        root = zarr.open_group(self.path, mode="a", zarr_format=3)
        ids: list[str] = []
        rows: list[list[int]] = []
        failures: list[tuple[str, ...]] = []
        for k in shards:
            attrs = zarr.open_group(self.shards_dir / shard_name(k), mode="r").attrs
            offsets = [attrs[f"{name}_offsets"] for name in self.arrays]
            for j, vid in enumerate(attrs["ids"]):
                ids.append(vid)
                rows.append([k, *(v for o in offsets for v in (o[j], o[j + 1]))])
            failures.extend(tuple(f) for f in attrs["failures"])
        order = np.argsort(np.array(ids, dtype=str), kind="stable") if ids else np.zeros(0, np.int64)
        index = root.require_group("index")
        for name in ("ids", "rows"):
            if name in index:
                del index[name]
        n, width = len(ids), 1 + 2 * len(self.arrays)
        a = index.create_array("ids", shape=(n,), dtype=str, chunks=(max(1, n),))
        r = index.create_array("rows", shape=(n, width), dtype="int64", chunks=(max(1, n), width))
        if n:
            a[:] = np.array(ids, dtype=str)[order]
            r[:] = np.array(rows, np.int64)[order]
        return n, sorted(failures)


def finished_shard(entry_dir: Path, index: int) -> tuple[Path, str, list[list[str]]] | None:
    """(directory, fingerprint, failures) of shard `index` of a features entry; None if it has none
    (or only one without checksums)."""
    import zarr

    path = Path(entry_dir) / STORE / "shards" / shard_name(index)
    if not (path / "zarr.json").is_file():
        return None
    g = zarr.open_group(path, mode="r", zarr_format=3)
    if not all(has_checksums(g[name]) for name in ARRAYS if name in g):
        return None  # written before crc32c: a new entry recomputes it rather than inherit unchecked chunks
    attrs = g.attrs
    return path, str(attrs.get("fingerprint", "")), [list(f) for f in attrs.get("failures", [])]


def _link_or_copy(src: str, dst: str) -> None:
    # Shard files are never rewritten in place, so sharing them between entries is safe.
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _offsets(parts: list[np.ndarray]) -> list[int]:
    return [0] + np.cumsum([len(p) for p in parts]).astype(int).tolist()


def _fsync_tree(root: Path) -> None:
    for p in sorted(root.rglob("*"), reverse=True):
        fsync_path(p)
    fsync_path(root)


class StoreReader:
    """Read one features store: `.rows(video_id)` reads only that video's rows (one index lookup).
    `cache.features.FeatureReader` puts the stores of a set of streams together.

    Checked as it reads (see the module docstring): corrupt bytes are a `CorruptEntryError`,
    never tensors. `rerun` is the fix's last step (a stage passes the exact command).
    """

    def __init__(self, entry_dir: Path, *, rerun: str = REBUILD):
        import zarr

        self.entry_dir = Path(entry_dir)
        self.path = self.entry_dir / STORE
        self.rerun = rerun
        self._manifest = read_manifest(self.entry_dir)
        if self._manifest is not None:
            check_files(self.entry_dir, self._manifest, hash_if=lambda rel: not _CHUNK_FILE.match(rel), rerun=rerun)
        try:
            self._root = zarr.open_group(self.path, mode="r", zarr_format=3)
            ids = self._root["index/ids"][:]
            rows = self._root["index/rows"][:]
        except (FileNotFoundError, KeyError) as e:
            raise CacheError(f"not a features entry ({e})", path=self.path,
                             fix="re-run `slt-pipe extract` (or `slt-pipe cache gc --corrupt`)") from e
        except READ_ERRORS as e:
            raise self.corrupt("index", e) from None
        attrs = self._root.attrs
        self.ids: list[str] = [str(i) for i in ids]
        self.arrays: tuple[str, ...] = tuple(attrs.get("arrays", ARRAYS))  # before per-stream entries: both
        self.dims = {name: int(attrs[f"{name}_dim"]) for name in self.arrays}
        self.attrs: dict[str, Any] = dict(attrs)
        self._rows = {vid: tuple(int(v) for v in row) for vid, row in zip(self.ids, rows)}
        self._arrays: dict[tuple[int, str], Any] = {}
        self._checked: set[tuple[int, str]] = set()
        self._loaded: dict[tuple[int, str], np.ndarray] = {}

    def corrupt(self, what: str, error: BaseException) -> CorruptEntryError:
        """The error for a read of `what` (a path inside the store) that failed to decode."""
        return CorruptEntryError(self.entry_dir, f"{STORE}/{what} fails to read ({error})", rerun=self.rerun)

    def nbytes(self) -> int:
        """Bytes of both streams of every shard that holds videos (what `preload` would hold)."""
        return sum(self._array(k, name).nbytes for name in self.arrays for k in self._shards())

    def preload(self, max_bytes: int) -> bool:
        """Hold every shard in memory (one contiguous read per array) if they fit in `max_bytes`.

        Why: a training epoch reads every video anyway, and one read per shard costs what one
        per-video read does (zarr's per-call overhead dominates), so the loader outruns the
        trainer. Returns whether it preloaded; `get` is unchanged either way.
        """
        if self.nbytes() > max_bytes:
            return False
        for k in self._shards():
            for name in self.arrays:
                self._loaded[(k, name)] = self._read(k, name, slice(None))
        return True

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, video_id: str) -> bool:
        return video_id in self._rows

    def _shards(self) -> list[int]:
        return sorted({row[0] for row in self._rows.values()})

    def _array(self, shard: int, name: str):
        """The zarr array, opened (metadata only, nothing verified or read)."""
        key = (shard, name)
        if key not in self._arrays:
            try:
                self._arrays[key] = self._root[f"shards/{shard_name(shard)}/{name}"]
            except KeyError:
                raise CorruptEntryError(self.entry_dir, f"{STORE}/shards/{shard_name(shard)}/{name} is missing",
                                        rerun=self.rerun) from None
        return self._arrays[key]

    def _verified(self, shard: int, name: str):
        """The array, its data known to be checked: by crc32c as read, or (format 1) hashed here once."""
        key = (shard, name)
        arr = self._array(shard, name)
        if key not in self._checked:
            if not has_checksums(arr) and self._manifest is not None:
                self._hash_legacy(shard, name)
            self._checked.add(key)
        return arr

    def _hash_legacy(self, shard: int, name: str) -> None:
        prefix = f"{STORE}/shards/{shard_name(shard)}/{name}/c/"
        for rel, meta in self._manifest["files"].items():
            if rel.startswith(prefix) and sha256_file(self.entry_dir / rel) != meta["sha256"]:
                raise CorruptEntryError(self.entry_dir, f"{rel} does not match its sha256 in the manifest",
                                        rerun=self.rerun)

    def _read(self, shard: int, name: str, rows: slice) -> np.ndarray:
        arr = self._verified(shard, name)
        try:
            return arr[rows]
        except READ_ERRORS as e:
            raise self.corrupt(f"shards/{shard_name(shard)}/{name}", e) from None

    def rows(self, video_id: str) -> dict[str, np.ndarray]:
        """Each array's rows of one video, in the dtype the entry stores."""
        try:
            shard, *bounds = self._rows[video_id]
        except KeyError:
            raise CacheError(f"video {video_id!r} has no features in this entry", path=self.path,
                             fix="check the id (failed videos are listed in the entry's manifest)") from None
        return {name: self._slice(shard, name, bounds[2 * i], bounds[2 * i + 1]) for i, name in enumerate(self.arrays)}

    def _slice(self, shard: int, name: str, start: int, stop: int) -> np.ndarray:
        held = self._loaded.get((shard, name))
        return held[start:stop] if held is not None else self._read(shard, name, slice(start, stop))

    def shard_arrays(self, name: str) -> list[Any]:
        """The `name` (spatial or motion) zarr arrays of every shard that holds videos, in order
        (format-1 arrays hashed first; crc32c is checked as they are read)."""
        return [self._verified(k, name) for k in self._shards()]

    def dask(self, name: str):
        """All rows of `name` across shards as one dask array (no data read until computed;
        a decode failure while computing is `corrupt(...)`'s to raise, as in `feature_stats`)."""
        import dask.array as da

        parts = [da.from_zarr(a) for a in self.shard_arrays(name)]
        return da.concatenate(parts) if parts else da.zeros((0, self.dims[name]))

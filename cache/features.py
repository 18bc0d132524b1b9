"""A set of feature streams read as one: each video's spatial and motion features.

Each encoder's features are a `stream` entry of their own (one store, cache/feature_store.py),
keyed by what determines them alone, so sets that share an encoder share its entry. A
`features` entry is a set: `streams.json` names its stream entries in `extract.streams` order,
an index and no copy. `FeatureReader` reads a set, or an entry from before per-stream caching
(one store with both arrays; `slt-pipe cache migrate` splits those), and gives a video's frame
encoders' rows side by side as its spatial features and its clip encoders' as its motion.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from cache.errors import CacheError, SltPipeError
from cache.feature_store import ARRAYS, READ_ERRORS, REBUILD, STORE, StoreReader
from cache.files import write_json_atomic
from cache.store import check_files, read_manifest

ASSEMBLY = "streams.json"
ASSEMBLY_FORMAT = "slt-pipe.feature-set/1"
STREAM_KIND = "stream"
"""The cache kind of one encoder's features (`features` entries are sets of them)."""


def write_assembly(entry_dir: Path, streams: Sequence[dict[str, Any]], attrs: dict[str, Any]) -> None:
    """The set's index: `streams` ({name, kind, array, columns, entry: stream key}) in set order, and
    the attributes a one-store entry of the same set has (models, recipe, layout)."""
    write_json_atomic(Path(entry_dir) / ASSEMBLY, {"format": ASSEMBLY_FORMAT, "streams": list(streams), "attrs": attrs})


def assembly(entry_dir: Path) -> dict[str, Any] | None:
    """The set's index (None: an entry that holds its features in one store)."""
    path = Path(entry_dir) / ASSEMBLY
    return json.loads(path.read_text()) if path.is_file() else None


def stream_dir(entry_dir: Path, key: str) -> Path:
    """Where the stream entry `key` of the cache that holds `entry_dir` lives."""
    return Path(entry_dir).parent.parent / STREAM_KIND / key


def missing_streams(entry_dir: Path) -> list[str]:
    """Stream entries a set names that are not (or no longer) published: such a set is rebuilt."""
    spec = assembly(entry_dir)
    if spec is None:
        return []
    return [s["entry"] for s in spec["streams"] if read_manifest(stream_dir(entry_dir, s["entry"])) is None]


@contextmanager
def dropped_if_unstarted(cache: Any, pendings: Any) -> Iterator[None]:
    """A user-fixable error (SltPipeError: a refused cluster, a bad folder) before any shard was
    written leaves no entry behind; finished shards stay for the re-run to resume. `pendings`:
    one PendingEntry or several."""
    try:
        yield
    except SltPipeError:
        for pending in pendings if isinstance(pendings, (list, tuple)) else [pendings]:
            if not any((pending.dir / STORE / "shards").glob("*/zarr.json")):
                pending.release()
                cache.remove(pending.dir)
        raise


class FeatureReader:
    """Read one features entry: `.get(video_id)` reads only that video's rows in each store.

    Checked as it reads (cache/feature_store.py): corrupt bytes are a `CorruptEntryError`, never
    tensors. `rerun` is the fix's last step (a stage passes the exact command)."""

    def __init__(self, entry_dir: Path, *, rerun: str = REBUILD):
        self.entry_dir = Path(entry_dir)
        self.rerun = rerun
        spec = assembly(self.entry_dir)
        if spec is None:
            self._parts = [StoreReader(self.entry_dir, rerun=rerun)]
            self.attrs: dict[str, Any] = self._parts[0].attrs
        else:
            manifest = read_manifest(self.entry_dir)
            if manifest is not None:
                check_files(self.entry_dir, manifest, hash_if=lambda rel: True, rerun=rerun)
            self._parts = [self._stream(s) for s in spec["streams"]]
            self.attrs = spec["attrs"]
        common = set(self._parts[0].ids).intersection(*(p.ids for p in self._parts[1:]))
        self.ids: list[str] = sorted(common)  # a video a stream skipped has no features in the set
        self.spatial_dim, self.motion_dim = (sum(p.dims[n] for p in self.parts(n)) for n in ARRAYS)

    def _stream(self, stream: dict[str, Any]) -> StoreReader:
        d = stream_dir(self.entry_dir, stream["entry"])
        if read_manifest(d) is None:
            raise CacheError(f"the {stream['name']} features of this set ({STREAM_KIND}/{stream['entry']}) are not in "
                             "the cache", path=self.entry_dir, fix=f"re-run {self.rerun}: only the missing stream is computed")
        return StoreReader(d, rerun=self.rerun)

    def parts(self, name: str) -> list[StoreReader]:
        """The stores that hold array `name` (spatial or motion), in the set's order."""
        return [p for p in self._parts if name in p.arrays]

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, video_id: str) -> bool:
        return all(video_id in p for p in self._parts)

    def nbytes(self) -> int:
        """Bytes of every array of every store (what `preload` would hold)."""
        return sum(p.nbytes() for p in self._parts)

    def preload(self, max_bytes: int) -> bool:
        """Hold every store in memory if all fit in `max_bytes` (see `StoreReader.preload`)."""
        if self.nbytes() > max_bytes:
            return False
        return all(p.preload(max_bytes) for p in self._parts)

    def get(self, video_id: str) -> tuple[np.ndarray, np.ndarray]:
        """(spatial float16 [T, Ds], motion float16 [C, Dm]) of one video."""
        spatial, motion = self.get_stored(video_id)
        return spatial.astype(np.float16, copy=False), motion.astype(np.float16, copy=False)

    def get_stored(self, video_id: str) -> tuple[np.ndarray, np.ndarray]:
        """(spatial [T, Ds], motion [C, Dm]) of one video in the dtype the entry stores: what an export
        writes, so a float32 entry leaves as it came in (`get` rounds to float16 for training)."""
        if video_id not in self:
            raise CacheError(f"video {video_id!r} has no features in this entry", path=self.entry_dir,
                             fix="check the id (failed videos are listed in the entry's manifest)")
        got = [p.rows(video_id) for p in self._parts]
        spatial, motion = (_side_by_side([g[n] for g in got if n in g]) for n in ARRAYS)
        return spatial, motion


def split_store(entry_dir: Path, dest: Path, stream: dict[str, Any], attrs: dict[str, Any]) -> tuple[int, list[tuple[str, ...]]]:
    """Write one stream (`stream`: a row of the entry's `streams` layout) of a one-store entry into
    the pending stream entry `dest`: its shards hard-linked where the stream fills its array alone,
    else its columns copied. Nothing is recomputed. Returns (videos, failures)."""
    import zarr

    from cache.feature_store import FeatureStoreWriter, ShardData

    src = StoreReader(entry_dir)
    array, (a, b) = stream["array"], stream["columns"]
    writer = FeatureStoreWriter(dest, dtype=str(src.attrs["dtype"]), attrs=attrs, **{f"{array}_dim": b - a})
    shards = sorted(int(p.name) for p in (Path(entry_dir) / STORE / "shards").iterdir() if p.name.isdigit())
    for k in sorted(set(shards) - writer.done_shards()):
        source = Path(entry_dir) / STORE / "shards" / f"{k:05d}"
        if (a, b) == (0, src.dims[array]):
            writer.adopt_array(source, array, k)
            continue
        g = zarr.open_group(source, mode="r", zarr_format=3)
        rows, offsets = g[array][:, a:b], g.attrs[f"{array}_offsets"]
        parts = [rows[offsets[j]:offsets[j + 1]] for j in range(len(offsets) - 1)]
        writer.write_shard(ShardData(k, list(g.attrs["ids"]), parts if array == "spatial" else [],
                                     parts if array == "motion" else [], [tuple(f) for f in g.attrs["failures"]],
                                     str(g.attrs.get("fingerprint", ""))))
    return writer.finish(shards)


def _side_by_side(parts: list[np.ndarray]) -> np.ndarray:
    # One stream per array is the common case: its rows as stored, not a copy.
    return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)


def feature_stats(reader: FeatureReader) -> dict[str, dict[str, Any]]:
    """Per-dimension mean/std (float32) and row count of both arrays, chunk by chunk with dask: the
    stores are never loaded whole. Per column, so each store's columns are computed on their own."""
    import dask

    out = {}
    for name in ARRAYS:
        means, stds, rows = [], [], 0
        for part in reader.parts(name):
            x = part.dask(name).astype("float32")
            try:
                mean, std = dask.compute(x.mean(axis=0), x.std(axis=0)) if x.shape[0] else (np.zeros(x.shape[1]), np.ones(x.shape[1]))
            except READ_ERRORS as e:
                raise part.corrupt(f"shards/*/{name}", e) from None
            means.append(np.asarray(mean, np.float32))
            stds.append(np.asarray(std, np.float32))
            rows = int(x.shape[0])
        out[name] = {"rows": rows, "mean": np.concatenate(means), "std": np.concatenate(stds)}
    return out

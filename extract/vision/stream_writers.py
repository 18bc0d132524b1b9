"""The stores of one extraction run, one per stream it computes, written as one.

A run computes the streams of a set that the cache lacks, all from one decode of each video.
The model side hands back one `ShardData` per shard (frame encoders' rows side by side as
spatial, clip encoders' as motion); each stream's columns go to its own store (a pending
`stream` entry). Each store resumes on its own: a shard finished in every store is skipped,
one finished in some is computed again and written only where it is missing (a shard's bytes
are a pure function of the shard, so both copies agree).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from cache.feature_store import FeatureStoreWriter, ShardData, finished_shard
from extract.config import ExtractConfig


@dataclass
class StreamStore:
    name: str
    writer: FeatureStoreWriter
    array: str
    """spatial (a frame encoder) or motion (a clip encoder)."""
    columns: tuple[int, int]
    """Its columns in the run's spatial or motion rows."""
    done: set[int]


class StreamWriters:
    """Write each stream's columns of a shard into that stream's store; `path` for messages."""

    def __init__(self, stores: list[StreamStore]):
        self.stores = stores
        self.path = stores[0].writer.path.parent.parent  # the cache's stream entries: what "kept in" names

    @classmethod
    def open(cls, cfg: ExtractConfig, dirs: Mapping[str, Path], *, random_init: bool = False) -> "StreamWriters":
        """A store in `dirs[name]` for each of `cfg.streams` (in that order, the run's column order)."""
        from extract.vision.streams import encoders

        stores, at = [], {"frame": 0, "clip": 0}
        for enc in encoders(cfg, random_init=random_init):
            array, width = ("spatial" if enc.kind == "frame" else "motion"), enc.width()
            attrs = stream_attrs(cfg.only(enc.name), random_init=random_init)
            writer = FeatureStoreWriter(dirs[enc.name], dtype=cfg.dtype, attrs=attrs, **{f"{array}_dim": width})
            stores.append(StreamStore(enc.name, writer, array, (at[enc.kind], at[enc.kind] + width),
                                      writer.done_shards()))
            at[enc.kind] += width
        return cls(stores)

    def done_shards(self) -> set[int]:
        """Shards finished in every store."""
        return set.intersection(*(s.done for s in self.stores))

    def adopt(self, plan: Sequence[Any], donors: Mapping[str, Sequence[tuple[str, Path]]]) -> dict[str, dict[str, list[int]]]:
        """Hard-link into each store the shards of `plan` it lacks that one of its donors (key, entry dir)
        holds with the same fingerprint and no failures (first donor wins); stream -> donor key -> shards."""
        reused: dict[str, dict[str, list[int]]] = {}
        for store in self.stores:
            got = adopt_shards(store.writer, [s for s in plan if s.index not in store.done], donors.get(store.name, ()))
            for shards in got.values():
                store.done.update(shards)
            if got:
                reused[store.name] = got
        return reused

    def write_shard(self, data: ShardData) -> None:
        """Each store that lacks the shard gets its stream's columns of it."""
        for store in self.stores:
            if data.index in store.done:
                continue
            a, b = store.columns
            rows = [np.ascontiguousarray(r[:, a:b]) for r in (data.spatial if store.array == "spatial" else data.motion)]
            one = ShardData(data.index, data.ids, rows if store.array == "spatial" else [],
                            rows if store.array == "motion" else [], data.failures, data.fingerprint)
            store.writer.write_shard(one)
            store.done.add(data.index)

    def finish(self, shards: Sequence[int]) -> dict[str, tuple[int, list[tuple[str, ...]]]]:
        """Each store's index: stream -> (videos, failures)."""
        return {s.name: s.writer.finish(shards) for s in self.stores}


def stream_attrs(one: ExtractConfig, *, random_init: bool = False) -> dict[str, Any]:
    """The attributes of a stream entry's store (`one.streams`: its encoder alone)."""
    from extract.vision.streams import encoder_identity, encoders

    enc = encoders(one, random_init=random_init)[0]
    array = "spatial" if enc.kind == "frame" else "motion"
    return {"shard_videos": one.shard_videos, "models": encoder_identity(one, random_init=random_init),
            "streams": [{"name": enc.name, "kind": enc.kind, "array": array, "columns": [0, enc.width()]}],
            "spatial_scales": one.spatial_scales, "clip_len": one.clip_len, "clip_stride": one.clip_stride,
            "motion_pool": one.motion_pool}


def adopt_shards(writer: FeatureStoreWriter, todo: Sequence[Any],
                 donors: Sequence[tuple[str, Path]]) -> dict[str, list[int]]:
    """Hard-link into `writer` every shard of `todo` (ShardPlans) that a donor holds with the same
    fingerprint and no failures (first donor wins); returns donor key -> adopted shard indices."""
    reused: dict[str, list[int]] = {}
    for shard in todo:
        if not shard.fingerprint:
            continue
        for key, entry_dir in donors:
            found = finished_shard(entry_dir, shard.index)
            if found is not None and found[1] == shard.fingerprint and not found[2]:
                writer.adopt_shard(found[0], shard.index)
                reused.setdefault(key, []).append(shard.index)
                break
    return reused

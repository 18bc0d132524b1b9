"""Each encoder computed once: features cached per stream, a set of streams assembled from them.

Paper encoders as tiny random-init snapshots (extract/vision/tiny_snapshots.py) on the toy, in this
process (`extract.workers=0`), so that a counter wrapped around each encoder's forward sees every pass.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from cache.feature_store import FeatureStoreWriter, ShardData, StoreReader
from cache.features import STREAM_KIND, FeatureReader, assembly, stream_dir
from cache.store import Cache
from helpers import store_bytes

REPO = Path(__file__).resolve().parents[1]
VIDEOS = 12
QUIET = Console(stderr=True, quiet=True)


@pytest.fixture(scope="module")
def snaps(tmp_path_factory) -> dict[str, Path]:
    from extract.vision.tiny_snapshots import save_paper_snapshots

    return save_paper_snapshots(tmp_path_factory.mktemp("snapshots"))


@pytest.fixture(scope="module")
def toy_root(toy_corpus) -> Path:
    return next(p.parent for p in toy_corpus(VIDEOS).rglob("annotations"))


def settings(snaps: dict[str, Path], streams: list[str]) -> list[str]:
    """The --set options of a run of `streams` on the snapshots (bench/encoder_grid.py's)."""
    sets = [f"extract.{n}.weights={p}" for n, p in snaps.items()] + [f"extract.{n}.arch=snapshot" for n in snaps]
    return sets + ["extract.workers=0", f"extract.streams={streams!r}".replace("'", '"')]


def config(snaps, streams, root: Path, cache: Path):
    from pipeline.config import build_config

    layer = {"dataset": {"name": "toy", "root": str(root), "splits": ["train"]}, "cache": {"dir": str(cache)},
             "extract": {"workers": 0, "streams": streams,
                         **{n: {"weights": str(p), "arch": "snapshot"} for n, p in snaps.items()}}}
    return build_config({"profile": "tiny"}, layer)


@pytest.fixture
def passes(monkeypatch) -> Counter:
    """Forward passes per encoder name (each batch an encoder computes counts one)."""
    from extract.vision.streams import FeatureExtractor

    seen: Counter = Counter()
    run = FeatureExtractor._run

    def counted(self, encs, views):
        seen.update(e.name for e in encs)
        return run(self, encs, views)

    monkeypatch.setattr(FeatureExtractor, "_run", counted)
    return seen


def extract(cfg):
    from pipeline.extract_stage import extract as run

    return run(cfg, QUIET, QUIET)


def test_a_second_set_runs_only_its_new_encoder_and_reads_the_first_sets_bytes(snaps, toy_root, tmp_path, passes):
    cache = tmp_path / "cache"
    first = extract(config(snaps, ["clip", "videomae"], toy_root, cache))
    assert first.streams["train"] == {"clip": "computed", "videomae": "computed"}
    assert passes["clip"] > 0 and passes["videomae"] > 0
    passes.clear()
    second = extract(config(snaps, ["dinov2", "videomae"], toy_root, cache))
    assert passes["videomae"] == 0 and passes["dinov2"] > 0 and passes["clip"] == 0
    assert second.streams["train"] == {"dinov2": "computed", "videomae": "cached"}
    a, b = (FeatureReader(r.entries["train"].dir) for r in (first, second))
    assert a.ids == b.ids and len(a.ids) > 0
    for vid in a.ids:
        assert a.get_stored(vid)[1].tobytes() == b.get_stored(vid)[1].tobytes()  # videomae: the first run's bytes
        assert a.get_stored(vid)[0].shape[1] == a.spatial_dim and b.get_stored(vid)[0].shape[1] == b.spatial_dim
    m = second.entries["train"].manifest["streams"]
    assert m["videomae"]["computed"] is False and m["dinov2"]["computed"] is True
    assert m["videomae"]["entry"] == first.entries["train"].manifest["streams"]["videomae"]["entry"]
    assert len(list((cache / STREAM_KIND).glob("*/manifest.json"))) == 3  # clip, videomae, dinov2: once each
    passes.clear()
    again = extract(config(snaps, ["dinov2", "clip", "videomae"], toy_root, cache))  # two frame streams
    assert sum(passes.values()) == 0 and set(again.streams["train"].values()) == {"cached"}
    both = FeatureReader(again.entries["train"].dir)
    vid = both.ids[0]
    assert np.array_equal(both.get_stored(vid)[0], np.concatenate([b.get_stored(vid)[0], a.get_stored(vid)[0]], axis=1))


def test_a_stream_missing_from_a_set_is_computed_alone_and_gc_takes_a_set_with_its_corrupt_stream(
        snaps, toy_root, tmp_path, passes):
    from cache.gc import plan_gc

    cache = tmp_path / "cache"
    cfg = config(snaps, ["clip", "videomae"], toy_root, cache)
    first = extract(cfg)
    mae = stream_dir(first.entries["train"].dir, assembly(first.entries["train"].dir)["streams"][1]["entry"])
    before = store_bytes(first.entries["train"].dir)
    chunk = next(p for p in sorted((mae / "features.zarr").rglob("c/*/*")) if p.is_file())
    chunk.write_bytes(b"\0" * chunk.stat().st_size)  # same size: only the checksums see it
    plan = plan_gc(Cache(cache), corrupt=True)
    gone = {p for p, _ in plan.remove}
    assert gone == {mae, first.entries["train"].dir}, plan.remove  # the set that uses it goes with it
    for p in gone:
        Cache(cache).remove(p)
    passes.clear()
    again = extract(cfg)
    assert again.streams["train"] == {"clip": "cached", "videomae": "computed"}
    assert passes["clip"] == 0 and passes["videomae"] > 0
    assert store_bytes(again.entries["train"].dir) == before  # recomputed: the same bytes


def _one_store_entry(cache: Path, entry: Path) -> None:
    """Replace the set `entry` and its stream entries by one entry holding both arrays under the same
    key, as slt-pipe wrote before per-stream caching (no `arrays` attribute, index rows [N, 5])."""
    import json

    spec = assembly(entry)
    spatial, motion = (StoreReader(stream_dir(entry, s["entry"])) for s in spec["streams"])
    manifest = json.loads((entry / "manifest.json").read_text())
    shards = {k: sorted(v for v in spatial.ids if spatial._rows[v][0] == k) for k in {r[0] for r in spatial._rows.values()}}
    data = [ShardData(k, ids, [spatial.rows(v)["spatial"] for v in ids], [motion.rows(v)["motion"] for v in ids], [], "")
            for k, ids in sorted(shards.items())]
    c = Cache(cache)
    for s in spec["streams"]:
        c.remove(stream_dir(entry, s["entry"]))
    c.remove(entry)
    with c.begin("features", manifest["key"], manifest["inputs"]) as pending:
        w = FeatureStoreWriter(pending.dir, spatial_dim=spatial.dims["spatial"], motion_dim=motion.dims["motion"],
                               dtype=spec["attrs"]["dtype"], attrs={k: v for k, v in spec["attrs"].items() if k != "dtype"})
        for one in data:
            w.write_shard(one)
        w.finish(sorted(shards))
        root = pending.dir / "features.zarr" / "zarr.json"
        meta = json.loads(root.read_text())
        del meta["attributes"]["arrays"]
        root.write_text(json.dumps(meta))
        pending.publish(**{k: manifest[k] for k in ("dataset", "split", "items", "failures", "config")})


def test_an_entry_from_before_per_stream_caching_is_read_then_migrated_by_hard_links(snaps, toy_root, tmp_path,
                                                                                   passes):
    from pipeline.migrate_stage import migrate

    cache = tmp_path / "cache"
    cfg = config(snaps, ["clip", "videomae"], toy_root, cache)
    fresh = extract(cfg).entries["train"]
    reference = FeatureReader(fresh.dir)
    want = {v: [a.tobytes() for a in reference.get_stored(v)] for v in reference.ids}
    _one_store_entry(cache, fresh.dir)
    assert not list((cache / STREAM_KIND).glob("*/manifest.json"))
    passes.clear()
    cached = extract(cfg)
    assert cached.streams["train"] == {} and sum(passes.values()) == 0  # the old entry is the set, as it is
    old = FeatureReader(cached.entries["train"].dir)
    assert {v: [a.tobytes() for a in old.get_stored(v)] for v in old.ids} == want
    assert migrate(cfg, QUIET, QUIET) == {"train": {"clip": "migrated", "videomae": "migrated"}}
    mae = next(p for p in (cache / STREAM_KIND).iterdir() if (p / "manifest.json").is_file()
               and StoreReader(p).arrays == ("motion",))
    linked = next(p for p in (mae / "features.zarr" / "shards").rglob("motion/c/*/*") if p.is_file())
    source = cached.entries["train"].dir / "features.zarr" / linked.relative_to(mae / "features.zarr")
    assert linked.stat().st_ino == source.stat().st_ino  # a hard link, not a copy
    passes.clear()
    other = extract(config(snaps, ["dinov2", "videomae"], toy_root, cache))
    assert other.streams["train"] == {"dinov2": "computed", "videomae": "cached"} and passes["videomae"] == 0
    new = FeatureReader(other.entries["train"].dir)
    assert all(new.get_stored(v)[1].tobytes() == want[v][1] for v in new.ids)
    assert migrate(cfg, QUIET, QUIET) == {"train": {"clip": "cached", "videomae": "cached"}}  # a second time: nothing


def test_two_extracts_that_share_a_stream_compute_it_once(snaps, toy_root, tmp_path):
    """Two CLI runs at once, clip+videomae and dinov2+videomae: one computes videomae, the other
    reads it (waiting for it if it is being computed)."""
    cache = tmp_path / "cache"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-m", "pipeline.cli", "extract", "--dataset", "toy", "--root",
                               str(toy_root), "--cache", str(cache), "--profile", "tiny", "--split", "train",
                               *[a for s in settings(snaps, streams) for a in ("--set", s)]],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=env)
             for streams in (["clip", "videomae"], ["dinov2", "videomae"])]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [e[-2000:] for _, e in outs]
    said = "".join(o for o, _ in outs)
    assert said.count("videomae computed") == 1 and said.count("videomae cached") == 1, said
    assert "clip computed" in said and "dinov2 computed" in said
    sets = [FeatureReader(p) for p in sorted((cache / "features").iterdir()) if (p / "manifest.json").is_file()]
    assert len(sets) == 2 and sets[0].ids == sets[1].ids
    assert all(sets[0].get_stored(v)[1].tobytes() == sets[1].get_stored(v)[1].tobytes() for v in sets[0].ids)
    shutil.rmtree(cache)

"""Verify on read: a flipped byte in a published cache entry is a CacheError naming the entry
and the fix, never tensors (issue #14, item 2). Small synthetic stores, written with the
real writers into a real cache (`Cache.begin` / `publish`, so the manifest exists).
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from cache.errors import CacheError
from cache.feature_store import FeatureStoreWriter, ShardData
from cache.features import FeatureReader, feature_stats
from cache.store import Cache, Entry
from cache.targets import TARGETS_FILE, SplitTargets, TargetReader, write_targets

DIMS = (8, 4)
IDS = [f"v{k:02d}" for k in range(6)]


def _rows(k: int, n: int, dim: int) -> np.ndarray:
    return np.random.default_rng(k).standard_normal((n, dim)).astype(np.float16)


def make_features(cache_dir: Path, *, checksums: bool = True, key: str = "feat0") -> Entry:
    """Two shards of three videos (200+ rows each, so a shard has several inner chunks)."""
    pending = Cache(cache_dir).begin("features", key, {"test": key})
    w = FeatureStoreWriter(pending.dir, spatial_dim=DIMS[0], motion_dim=DIMS[1], dtype="float16",
                           attrs={"shard_videos": 3}, checksums=checksums)
    for k in range(2):
        ids = IDS[3 * k: 3 * k + 3]
        w.write_shard(ShardData(k, ids, [_rows(int(i[1:]), 70, DIMS[0]) for i in ids],
                                [_rows(100 + int(i[1:]), 9, DIMS[1]) for i in ids], [], f"fp{k}"))
    w.finish([0, 1])
    return pending.publish(items=len(IDS))


def make_targets(cache_dir: Path, key: str = "tgt0") -> Entry:
    pending = Cache(cache_dir).begin("targets", key, {"test": key})
    emb = np.random.default_rng(0).standard_normal((len(IDS), 16)).astype(np.float32)
    write_targets(pending.dir / TARGETS_FILE, "eng_Latn",
                  {"train": SplitTargets(IDS, [f"sentence {i}" for i in IDS], emb, ["reference"] * len(IDS))}, key=key)
    return pending.publish(items=len(IDS))


def flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x5A
    path.write_bytes(bytes(data))


def assert_names_entry_and_fix(err: CacheError, entry: Entry) -> None:
    text = err.render()
    assert f"{entry.kind} entry {entry.key} is corrupt" in text
    assert err.path == str(entry.dir)
    cache = entry.dir.parent.parent
    assert f"slt-pipe cache verify --cache {cache}" in err.fix
    assert f"slt-pipe cache gc --corrupt --cache {cache}" in err.fix
    assert "re-run `slt-pipe" in err.fix


def shard_file(entry: Entry, shard: int = 1, name: str = "spatial") -> Path:
    return entry.dir / f"features.zarr/shards/{shard:05d}/{name}/c/0/0"


def test_intact_store_reads_fine(tmp_path):
    entry = make_features(tmp_path)
    r = FeatureReader(entry.dir)
    spatial, motion = r.get("v04")
    np.testing.assert_array_equal(spatial, _rows(4, 70, DIMS[0]))
    np.testing.assert_array_equal(motion, _rows(104, 9, DIMS[1]))
    assert r.preload(1 << 30)
    assert feature_stats(r)["spatial"]["rows"] == 70 * len(IDS)
    t = make_targets(tmp_path)
    with TargetReader(t.dir) as tr:
        assert tr.ids("train") == IDS and tr.embeddings("train").shape == (len(IDS), 16)
        assert tr.texts("train")[0] == "sentence v00" and tr.sources("train") == ["reference"] * len(IDS)


def test_flipped_byte_in_a_shard_chunk_is_refused(tmp_path):
    entry = make_features(tmp_path)
    flip(shard_file(entry), 40)  # inside the first inner chunk: rows of v03
    r = FeatureReader(entry.dir)  # the small files are intact: opening is fine
    r.get("v00")  # another shard still reads
    for read in (lambda: r.get("v03"), lambda: r.preload(1 << 30), lambda: feature_stats(FeatureReader(entry.dir))):
        with pytest.raises(CacheError) as e:
            read()
        assert_names_entry_and_fix(e.value, entry)
        assert "shards/" in e.value.problem


def test_flipped_byte_in_targets_embedding_is_refused(tmp_path):
    entry = make_targets(tmp_path)
    h5 = entry.dir / TARGETS_FILE
    with h5py.File(h5, "r") as f:
        ds = f["train/eng_Latn/embedding"]
        assert ds.fletcher32
        offset = ds.id.get_offset() if ds.chunks is None else ds.id.get_chunk_info(0).byte_offset
    flip(h5, offset + 20)
    with TargetReader(h5) as r:
        assert r.ids("train") == IDS
        with pytest.raises(CacheError) as e:
            r.embeddings("train")
    assert_names_entry_and_fix(e.value, entry)
    assert "embedding" in e.value.problem


def test_changed_target_strings_are_refused(tmp_path):
    entry = make_targets(tmp_path)
    h5 = entry.dir / TARGETS_FILE
    with h5py.File(h5, "r+") as f:  # what a flipped byte in HDF5's string heap reads as
        f["train/eng_Latn/text"][0] = "sentence v99"
    _republish_sizes(entry)
    with TargetReader(h5) as r, pytest.raises(CacheError) as e:
        r.texts("train")
    assert_names_entry_and_fix(e.value, entry)


def _republish_sizes(entry: Entry) -> None:
    """Make the manifest's sizes match again, so only the checksums inside the file can tell."""
    m = json.loads((entry.dir / "manifest.json").read_text())
    for rel, meta in m["files"].items():
        meta["bytes"] = (entry.dir / rel).stat().st_size
    (entry.dir / "manifest.json").write_text(json.dumps(m))


def test_corrupt_index_is_refused_on_open(tmp_path):
    entry = make_features(tmp_path)
    index = entry.dir / "features.zarr/index/rows/c/0/0"
    flip(index, index.stat().st_size // 2)
    with pytest.raises(CacheError) as e:
        FeatureReader(entry.dir)
    assert_names_entry_and_fix(e.value, entry)
    assert "index/rows" in e.value.problem and "sha256" in e.value.problem


def test_missing_chunk_file_is_refused_on_open(tmp_path):
    entry = make_features(tmp_path)
    shard_file(entry, 0, "motion").unlink()  # zarr alone would read zeros
    with pytest.raises(CacheError) as e:
        FeatureReader(entry.dir)
    assert "missing" in e.value.problem


def test_old_entry_without_checksums_reads_and_is_hashed_on_first_read(tmp_path):
    entry = make_features(tmp_path, checksums=False)
    np.testing.assert_array_equal(FeatureReader(entry.dir).get("v03")[0], _rows(3, 70, DIMS[0]))
    flip(shard_file(entry), 40)
    r = FeatureReader(entry.dir)
    r.get("v00")
    with pytest.raises(CacheError) as e:
        r.get("v03")
    assert_names_entry_and_fix(e.value, entry)


def test_old_targets_file_is_hashed_on_open(tmp_path):
    entry = make_targets(tmp_path)
    h5 = entry.dir / TARGETS_FILE
    with h5py.File(h5, "r+") as f:
        f.attrs["format"] = 1  # as written before the checksums
    _rehash(entry)
    with TargetReader(h5) as r:
        assert r.format == 1 and r.ids("train") == IDS
    with h5py.File(h5, "r+") as f:
        f["train/eng_Latn/embedding"][0, 0] = 123.0
    with pytest.raises(CacheError) as e:
        TargetReader(h5)
    assert_names_entry_and_fix(e.value, entry)


def _rehash(entry: Entry) -> None:
    from cache.keys import sha256_file

    m = json.loads((entry.dir / "manifest.json").read_text())
    for rel, meta in m["files"].items():
        meta["bytes"], meta["sha256"] = (entry.dir / rel).stat().st_size, sha256_file(entry.dir / rel)
    (entry.dir / "manifest.json").write_text(json.dumps(m))


def test_train_refuses_a_corrupt_entry_instead_of_training(tmp_path):
    """Through the trainer's entry that opens the caches: the error, no loss, no checkpoint."""
    from pipeline.config import build_config
    from pipeline.train_stage import rebuild_hint
    from train.model import TrainInputs
    from train.trainer import train

    feats, tgts = make_features(tmp_path), make_targets(tmp_path)
    flip(shard_file(feats), 40)
    cfg = build_config({"profile": "tiny", "dataset": {"name": "toy"}, "cache": {"dir": str(tmp_path)},
                        "train": {"out": str(tmp_path / "run"), "device": "cpu", "steps": 2}})
    inputs = TrainInputs(features={"train": str(feats.dir)}, targets={"eng_Latn": str(tgts.dir / TARGETS_FILE)},
                         source_lang="eng_Latn", decoder_spec="unused", tiny_dir=None, train_split="train",
                         dev_split="dev", dataset="toy")
    with pytest.raises(CacheError) as e, rebuild_hint(cfg):
        train(cfg.train, inputs, resume=False)
    assert_names_entry_and_fix(e.value, feats)
    assert f"re-run `slt-pipe extract --dataset toy --profile tiny --cache {tmp_path}" in e.value.fix
    assert not (tmp_path / "run" / "metrics.jsonl").exists()

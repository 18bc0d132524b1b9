"""Cost of verify-on-read and of per-stream entries: samples/s reading features with crc32c chunks
(format 2) and without (format 1, with and without the manifest hash), and from a set of two stream
entries, side by side in one run, same data.

    .venv/bin/python bench/loader.py                 # 240 videos, paper widths (2048 / 1024)
    .venv/bin/python bench/loader.py --videos 480 --frames 150

Per layout: per-video reads in random order (what the loader does without preload) and one
preload of every shard (what the trainer does when the entry fits in memory).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from cache.feature_store import FeatureStoreWriter, ShardData  # noqa: E402
from cache.features import STREAM_KIND, FeatureReader, write_assembly  # noqa: E402
from cache.store import MANIFEST, Cache  # noqa: E402


def shards_of(videos: int, frames: int, dims: tuple[int, int]) -> list[ShardData]:
    rng = np.random.default_rng(0)  # same data in every layout
    ids = [f"v{i:05d}" for i in range(videos)]
    clips = max(1, (frames - 16) // 8 + 1)
    return [ShardData(k // 32, part, [rng.standard_normal((frames, dims[0])).astype(np.float16) for _ in part],
                      [rng.standard_normal((clips, dims[1])).astype(np.float16) for _ in part], [], f"{k}")
            for k in range(0, videos, 32) for part in [ids[k:k + 32]]]


def build(cache: Path, key: str, data: list[ShardData], dims: tuple[int, int], checksums: bool,
          kind: str = "features", **widths: int) -> Path:
    """An entry of `data` holding both arrays (a one-store entry) or, with `widths`, one of them."""
    pending = Cache(cache).begin(kind, key, {})
    w = FeatureStoreWriter(pending.dir, dtype="float16", attrs={"shard_videos": 32}, checksums=checksums,
                           **(widths or {"spatial_dim": dims[0], "motion_dim": dims[1]}))
    for shard in data:
        w.write_shard(shard)
    w.finish(range(len(data)))
    return pending.publish(items=sum(len(s.ids) for s in data)).dir


def build_set(cache: Path, data: list[ShardData], dims: tuple[int, int]) -> Path:
    """Two stream entries (spatial, motion) of `data` and the set that assembles them."""
    for name, width in (("spatial", dims[0]), ("motion", dims[1])):
        build(cache, f"bench-{name}", data, dims, True, STREAM_KIND, **{f"{name}_dim": width})
    pending = Cache(cache).begin("features", "set", {})
    write_assembly(pending.dir, [{"name": n, "array": n, "entry": f"bench-{n}"} for n in ("spatial", "motion")], {})
    return pending.publish(items=sum(len(s.ids) for s in data)).dir


def measure(entry: Path, repeats: int) -> tuple[float, float, float]:
    """(open s, per-video samples/s, preload samples/s), best of `repeats`."""
    opens, reads, loads = [], [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        r = FeatureReader(entry)
        opens.append(time.perf_counter() - t0)
        order = np.random.default_rng(1).permutation(r.ids)
        t0 = time.perf_counter()
        for vid in order:
            r.get(str(vid))
        reads.append(len(order) / (time.perf_counter() - t0))
        r = FeatureReader(entry)
        t0 = time.perf_counter()
        assert r.preload(1 << 40)
        loads.append(len(r.ids) / (time.perf_counter() - t0))
    return min(opens), max(reads), max(loads)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", type=int, default=240)
    ap.add_argument("--frames", type=int, default=120, help="frames per video (PHOENIX averages ~116)")
    ap.add_argument("--dims", type=int, nargs=2, default=(2048, 1024))
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp)
        data = shards_of(args.videos, args.frames, tuple(args.dims))
        new = build(cache, "crc32c", data, tuple(args.dims), True)
        old = build(cache, "legacy", data, tuple(args.dims), False)
        per_stream = build_set(cache, data, tuple(args.dims))
        bare = cache / "bare"  # format 1 outside a cache: no manifest, nothing verified (the old reader)
        bare.mkdir()
        (old / "features.zarr").rename(bare / "features.zarr")
        size = sum(p.stat().st_size for p in (new / "features.zarr").rglob("*") if p.is_file()) / 2**20
        print(f"{args.videos} videos x {args.frames} frames, dims {args.dims[0]}/{args.dims[1]}, "
              f"{size:.0f} MiB on disk (format 2), best of {args.repeats}")
        print(f"{'layout':44s} {'open s':>8s} {'get/s':>9s} {'preload/s':>10s}")
        rows = [("format 1, no verification (before)", bare),
                ("format 2, crc32c per chunk + small-file sha256", new),
                ("format 2, one entry per stream + the set's index", per_stream)]
        (old / MANIFEST).exists() and rows.append(("format 1 in a cache (sha256 per shard file)", _restore(bare, old)))
        base = None
        for label, entry in rows:
            o, g, p = measure(entry, args.repeats)
            base = base or (g, p)
            print(f"{label:44s} {o:8.3f} {g:9.0f} {p:10.0f}   ({g / base[0]:.2f}x / {p / base[1]:.2f}x)")


def _restore(bare: Path, old: Path) -> Path:
    """Put the bare store back under its published entry (which has the manifest)."""
    import shutil

    shutil.copytree(bare / "features.zarr", old / "features.zarr")
    return old


if __name__ == "__main__":
    main()

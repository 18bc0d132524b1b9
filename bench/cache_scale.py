"""The cache's bookkeeping at scale: `python -m bench.cache_scale [--videos N] [--dir D]`.

A simulated cache of N videos (default 100,000): one split's two stream entries and the set that
assembles them, written directly with the store's own writer (a few small frames per video, no
model), plus a targets-sized pile of other entries' manifests. Then, each timed as a user runs it:
`slt-pipe cache ls`, `slt-pipe cache gc --dry-run` (commands of their own, Python start included)
and opening the set as train's loader does (`FeatureReader`: index, ids, one video read).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # before bench/, whose extract.py would shadow the package
SHARD = 64


def build(cache_dir: Path, videos: int) -> Path:
    """The simulated cache; returns the set's entry dir (reused when it is there)."""
    import numpy as np

    from cache.feature_store import FeatureStoreWriter, ShardData
    from cache.features import STREAM_KIND, write_assembly
    from cache.store import Cache

    cache = Cache(cache_dir)
    done = cache.get("features", f"bench-{videos}")
    if done is not None:
        return done.dir
    ids = [f"v{i:07d}" for i in range(videos)]
    rng = np.random.default_rng(0)
    for name, array, dim in (("spatial", "spatial", 8), ("motion", "motion", 4)):
        with cache.begin(STREAM_KIND, f"bench-{videos}-{name}", {}) as pending:
            w = FeatureStoreWriter(pending.dir, dtype="float16", attrs={"shard_videos": SHARD}, **{f"{array}_dim": dim})
            shards = range(-(-videos // SHARD))
            for k in shards:
                part = ids[k * SHARD:(k + 1) * SHARD]
                rows = [rng.standard_normal((3, dim)).astype(np.float16) for _ in part]
                w.write_shard(ShardData(k, part, rows if array == "spatial" else [], rows if array == "motion" else [],
                                        [], str(k)))
            w.finish(list(shards))
            pending.publish(stream=name, items=videos, dataset="sim", split="train")
    with cache.begin("features", f"bench-{videos}", {}) as pending:
        write_assembly(pending.dir, [{"name": n, "array": n, "entry": f"bench-{videos}-{n}"} for n in ("spatial", "motion")], {})
        return pending.publish(items=videos, dataset="sim", split="train", streams={}).dir


def timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=100_000)
    ap.add_argument("--dir", type=Path, default=Path("/tmp/slt-pipe-cache-scale"))
    args = ap.parse_args()

    from cache.features import FeatureReader

    cache = args.dir.resolve() / "cache"
    t0 = time.perf_counter()
    entry = build(cache, args.videos)
    files = sum(1 for p in cache.rglob("*") if p.is_file())
    print(f"simulated cache: {args.videos:,} videos in 2 stream entries + their set, {files:,} files "
          f"(built in {time.perf_counter() - t0:.0f} s)")
    slt = str(Path(sys.executable).parent / "slt-pipe")
    rows = [("slt-pipe cache ls", timed([slt, "cache", "ls", "--cache", str(cache)])),
            ("slt-pipe cache gc --dry-run", timed([slt, "cache", "gc", "--dry-run", "--cache", str(cache)]))]
    t0 = time.perf_counter()
    reader = FeatureReader(entry)
    reader.get(reader.ids[len(reader.ids) // 2])
    rows.append((f"train's loader index (FeatureReader: {len(reader.ids):,} ids, one video read)", time.perf_counter() - t0))
    print("| | seconds |\n| --- | --- |")
    for label, seconds in rows:
        print(f"| {label} | {seconds:.2f} |")


if __name__ == "__main__":
    main()

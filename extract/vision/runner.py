"""Feature extraction's Ray-free core: shard planning, decoding, video-spanning batches, resume.

The Ray adapter (extract.vision.ray_backend) runs `ShardComputer` in model actors and `decode_video`
in CPU tasks; everything here imports and is tested without Ray.

Flow for one split (`run_extraction`):
  1. Videos sorted by id are cut into shards of `shard_videos`; shards already in the pending
     entry are skipped (a finished shard is never recomputed), and so are shards that an older
     entry of the same split holds with the same fingerprint and no failures: they are
     hard-linked in (repair in place after the user restored a file; see `adopt_shards`).
  2. One `ModelWorker` actor per GPU (or per node: `plan_actors`) claims shards one at a time and
     streams results back (a Ray streaming generator). Inside, it keeps `decode_ahead` videos
     decoding in Ray CPU tasks (decode + resize + crop) while it runs the models, so decoding
     overlaps compute. Batches span videos but never shards: batch composition is a pure
     function of the shard, so a resumed run computes bit-identical features.
  3. The driver writes each finished shard (temporary name + rename; see cache/features.py),
     so no two workers write the same chunk, and a remote cluster needs no shared cache disk.
Bad videos are recorded as (id, reason, fix) in their shard and end up in the manifest's
`failures`; everything else is still extracted. They are the samples a reader marked with
`Sample.problem` (never decoded) and those whose decoding raised a DatasetError.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np
from rich.console import Console
from rich.progress import Progress

from cache.errors import DatasetError, SltPipeError
from cache.feature_store import ShardData
from cache.progress import progress_bar
from extract.config import ExtractConfig
from extract.datasets.base import FrameSource, PngFolder, Sample, split_problem
from extract.vision.stream_writers import StreamWriters

MIN_OBJECT_STORE = 256 * 1024**2
MAX_OBJECT_STORE = 8 * 1024**3
TYPICAL_FRAMES = 200


@dataclass
class ExtractionResult:
    done: int
    """Videos with features in the entry."""
    skipped: list[tuple[str, ...]]
    """(video id, reason, fix) of videos that were skipped."""
    shards: int = 0
    shards_computed: int = 0
    """Shards computed by this call (the rest were already in the pending entry)."""
    frames_forwarded: int = 0
    """Frames through the ViT in this call (0 when everything was resumed)."""
    seconds: float = 0.0
    compute: dict[str, Any] = field(default_factory=dict)
    """Device and precision the features were computed with."""
    reused: dict[str, dict[str, list[int]]] = field(default_factory=dict)
    """Stream -> older stream entry key -> the shards hard-linked from it (repair), for its manifest."""
    streams: dict[str, tuple[int, list[tuple[str, ...]]]] = field(default_factory=dict)
    """Stream -> (videos, failures) of its store (`done`/`skipped`: of the set, every stream's)."""


@dataclass(frozen=True)
class ShardPlan:
    index: int
    samples: tuple[Sample, ...]
    fingerprint: str = ""
    """sha256 over the samples' (id, digest) pairs; "" when no digests were given (not repairable)."""

    def needs_compute(self) -> bool:
        return any(s.problem is None for s in self.samples)


def plan_shards(samples: Sequence[Sample], shard_videos: int,
                digests: Mapping[str, str] | None = None) -> list[ShardPlan]:
    """Deterministic shards: sorted ids cut every `shard_videos` (samples with a problem included,
    so membership does not move when their files are restored). `digests`: `Dataset.sample_digests`."""
    if shard_videos < 1:
        raise ValueError("shard_videos must be >= 1")
    ordered = sorted(samples, key=lambda s: s.id)
    plans = []
    for k, i in enumerate(range(0, len(ordered), shard_videos)):
        part = tuple(ordered[i:i + shard_videos])
        fp = "" if digests is None else hashlib.sha256(
            json.dumps([[s.id, digests[s.id]] for s in part], separators=(",", ":")).encode()).hexdigest()
        plans.append(ShardPlan(k, part, fp))
    return plans


def problem_failure(sample: Sample) -> tuple[str, str, str]:
    """(id, reason, fix) of a sample the reader marked as not extractable."""
    assert sample.problem is not None
    return (sample.id, *split_problem(sample.problem))


# --------------------------------------------------------------------------- CPU side


@dataclass
class Decoded:
    views: dict[int, np.ndarray] | None
    error: tuple[str, str] | None = None
    """(reason naming the file, fix) when the video could not be read."""


def decode_video(src: FrameSource, cfg: ExtractConfig, recipe: Any, *, streamed: bool = True) -> Decoded:
    """Decode + resize + crop one video (`extract.vision.streams.Recipe`); a bad video becomes (reason, fix).

    `streamed` (the default): `read_prepared` prepares the frames in chunks as they are decoded,
    on threads, so full-size frames never pile up; False: decode every frame, then prepare them
    all (the old way, kept for benchmarks). The views are the same bytes either way."""
    from extract.vision.decode import read_frames, read_prepared

    side = recipe.max_decode_side()
    try:
        if streamed:
            return Decoded(dict(read_prepared(src, recipe.prepare, fps=cfg.fps, max_side=side)))
        frames = read_frames(src, fps=cfg.fps, max_side=side)
    except DatasetError as e:
        reason = f"{e.path}: {e.problem}" if e.path else e.problem
        return Decoded(None, (reason, e.fix or ""))
    return Decoded(recipe.prepare(frames))


def decode_ahead(sources: Iterable[FrameSource], submit: Callable[[FrameSource], Any], result: Callable[[Any], Decoded],
                 ahead: int) -> Iterator[Decoded]:
    """Decoded videos in order, keeping `ahead` decodes in flight (across shard boundaries):
    `submit(src)` starts one (a Ray task, a thread-pool job) and `result(handle)` waits for it."""
    pending: deque = deque()
    it = iter(sources)
    for src in it:
        pending.append(submit(src))
        if len(pending) >= max(1, ahead):
            break
    while pending:
        handle = pending.popleft()
        nxt = next(it, None)
        if nxt is not None:
            pending.append(submit(nxt))
        yield result(handle)
        del handle  # a Ray object is freed as soon as it is used


def idle_priority() -> None:
    """The calling thread (and the threads it starts) to the OS's idle priority: SCHED_IDLE, else
    nice 19. Decoding runs so, the model's threads always get a core at once and decoding takes
    every cycle they leave. Linux schedules threads, so the process's other threads keep theirs."""
    import contextlib
    import os

    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        return
    except (AttributeError, OSError):
        pass
    with contextlib.suppress(OSError):
        os.nice(max(0, 19 - os.nice(0)))


# --------------------------------------------------------------------------- model side


class ShardComputer:
    """Runs one shard's videos through a FeatureExtractor in deterministic, video-spanning batches."""

    def __init__(self, extractor: Any, cfg: ExtractConfig, on_video: Callable[[str], None] | None = None):
        self.fx = extractor
        self.cfg = cfg
        self.on_video = on_video
        """Called with each video's id before the model sees it (Ray: the video a lost worker was on)."""

    def run(self, shard: ShardPlan, decoded: Iterator[Decoded]) -> Iterator[tuple[str, Any]]:
        """Yields ("frames", n) after each spatial batch, then ("shard", ShardData).

        `decoded` yields one item per sample without a problem (those are never decoded)."""
        import torch

        cfg = self.cfg
        recipe = self.fx.recipe
        batch_frames, batch_clips = cfg.batches(self.fx.device.type)
        names = ("extract.batch_frames", "extract.batch_clips") if self.fx.device.type != "cpu" else (
            "extract.cpu_batch_frames", "extract.cpu_batch_clips")
        frames_only_count = not recipe.frame_keys  # clip encoders alone: progress still counts frames
        ids: list[str] = []
        lengths: list[int] = []
        clip_counts: list[int] = []
        failures: list[tuple[str, ...]] = []
        views_buf: dict[str, list[np.ndarray]] = {}
        clips_buf: dict[str, list[np.ndarray]] = {}
        n_views = n_clips = 0
        spatial_out: list[Any] = []
        motion_out: list[Any] = []
        from extract.vision.streams import clip_index

        splits: list[dict[str, Any]] = []

        def flush_views(final: bool) -> Iterator[tuple[str, Any]]:
            nonlocal n_views
            while n_views >= batch_frames or (final and n_views):
                take = min(batch_frames, n_views)
                batch = {s: _take(parts, take) for s, parts in views_buf.items()}
                spatial_out.append(_halving(self.fx.spatial_batch, batch, names[0], splits))
                n_views -= take
                yield ("frames", take)
            while splits:
                yield ("split", splits.pop(0))

        def flush_clips(final: bool) -> Iterator[tuple[str, Any]]:
            nonlocal n_clips
            while n_clips >= batch_clips or (final and n_clips):
                take = min(batch_clips, n_clips)
                clips = {k: _take(parts, take) for k, parts in clips_buf.items()}
                motion_out.append(_halving(self.fx.motion_batch, clips, names[1], splits))
                n_clips -= take
            while splits:
                yield ("split", splits.pop(0))

        for sample in shard.samples:
            if sample.problem is not None:
                failures.append(problem_failure(sample))
                continue
            d = next(decoded)
            if d.error is not None:
                failures.append((sample.id, *d.error))
                continue
            assert d.views is not None
            if self.on_video is not None:
                self.on_video(sample.id)
            frames = len(next(iter(d.views.values())))
            index = clip_index(frames, cfg.clip_len, cfg.clip_stride)
            ids.append(sample.id)
            lengths.append(frames)
            clip_counts.append(len(index))
            for k in recipe.frame_keys:
                views_buf.setdefault(k, []).append(d.views[k])
            for k in recipe.clip_keys:
                clips_buf.setdefault(k, []).append(d.views[k][index])
            n_views += frames if recipe.frame_keys else 0
            n_clips += len(index) if recipe.clip_keys else 0
            if frames_only_count:
                yield ("frames", frames)
            yield from flush_views(False)
            yield from flush_clips(False)
        yield from flush_views(True)
        yield from flush_clips(True)
        dtype = np.dtype(cfg.dtype)
        # One device->host sync per shard: the GPU ran ahead while the host prepared batches.
        spatial = torch.cat(spatial_out).cpu().numpy().astype(dtype) if spatial_out else np.zeros((0, self.fx.spatial_dim), dtype)
        motion = torch.cat(motion_out).cpu().numpy().astype(dtype) if motion_out else np.zeros((0, self.fx.motion_dim), dtype)
        yield "shard", ShardData(shard.index, ids, np.split(spatial, np.cumsum(lengths)[:-1]) if ids else [],
                         np.split(motion, np.cumsum(clip_counts)[:-1]) if ids else [], failures,
                         shard.fingerprint)


def _halving(forward: Callable[[dict[str, np.ndarray]], Any], batch: dict[str, np.ndarray], setting: str,
             splits: list[dict[str, Any]]) -> Any:
    """forward(batch); on GPU out of memory, the two halves one after the other (again while they
    do not fit), each split recorded in `splits`. A batch of one that does not fit is an error."""
    import torch

    try:
        return forward(batch)
    except torch.OutOfMemoryError:
        n = len(next(iter(batch.values())))
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        if n <= 1:
            raise SltPipeError(f"GPU out of memory on a batch of one ({setting}=1 cannot fit either)",
                               fix="use a GPU with more free memory (another process may hold it: nvidia-smi), "
                                   "or --set extract.device=cpu") from None
        half = (n + 1) // 2
        splits.append({"setting": setting, "from": n, "to": half})
        parts = [_halving(forward, {k: v[:half] for k, v in batch.items()}, setting, splits),
                 _halving(forward, {k: v[half:] for k, v in batch.items()}, setting, splits)]
        return torch.cat(parts)


def note_split(compute: dict[str, Any], split: dict[str, Any], say: Callable[[str], None]) -> None:
    """Record a batch that `_halving` split (the manifest's compute.oom_splits) and say so once per size."""
    seen = compute.setdefault("oom_splits", [])
    if not any(s["setting"] == split["setting"] and s["to"] == split["to"] for s in seen):
        say(f"GPU out of memory on {split['from']} at once: split, computed {split['to']} at a time; "
            f"--set {split['setting']}={split['to']} (or lower) avoids the retries")
    seen.append(split)


def _take(parts: list[np.ndarray], n: int) -> np.ndarray:
    """Pop the first n rows off a list of arrays (in place) and return them as one array."""
    out, got = [], 0
    while got < n:
        head = parts[0]
        need = n - got
        if len(head) <= need:
            out.append(parts.pop(0))
            got += len(head)
        else:
            out.append(head[:need])
            parts[0] = head[need:]
            got = n
    return out[0] if len(out) == 1 else np.concatenate(out)


# --------------------------------------------------------------------------- driver


def object_store_bytes(cfg: ExtractConfig) -> int:
    """Local Ray's object store holds only the decoded videos in flight: size it from them, modestly."""
    per_frame = sum(3 * (s * cfg.image_size) ** 2 for s in set(cfg.spatial_scales) | {1})
    want = 4 * max(1, cfg.workers or 0) * max(1, cfg.decode_ahead) * TYPICAL_FRAMES * per_frame
    return int(min(MAX_OBJECT_STORE, max(MIN_OBJECT_STORE, want)))


@dataclass(frozen=True)
class ActorPlan:
    """Where one model worker runs and what it reserves."""

    device: str
    num_gpus: int
    num_cpus: float
    threads: int
    node: str | None = None
    """Ray node id to pin the actor to (None: anywhere)."""


def plan_actors(nodes: Sequence[Mapping[str, Any]], workers: int, device: str) -> list[ActorPlan]:
    """Model workers for the alive `nodes` (`ray.nodes()` rows): one per GPU of the cluster, or
    with no GPU (or device=cpu) one per node; `workers` > 0 caps or sets the count.

    Each node keeps one CPU free of actors' reservations: decode tasks must always find a CPU, or
    actors waiting on their decodes would deadlock the cluster. A CPU model still computes with
    every core (`threads`): decoding runs at idle priority and takes only the cycles the model
    leaves, so reserving a core for it left that core idle half the time (bench/peers.py)."""
    alive = [n for n in nodes if n.get("Alive", True)]
    gpus = 0 if device == "cpu" else sum(int(n.get("Resources", {}).get("GPU", 0)) for n in alive)
    cpus = sum(int(n.get("Resources", {}).get("CPU", 0)) for n in alive) or 1
    if gpus:
        n = min(workers or gpus, gpus)
        return [ActorPlan("cuda", 1, max(0.0, min(1.0, (cpus - len(alive)) / n)), 4) for _ in range(n)]
    if workers == 0:  # one per node, computing with its node's CPUs
        return [ActorPlan("cpu", 0, max(0.0, min(1.0, c - 1)), max(1, c), node.get("NodeID"))
                for node in alive for c in [int(node.get("Resources", {}).get("CPU", 1))]] or [
            ActorPlan("cpu", 0, 0.0, 1)]
    share = max(0.0, min(1.0, (cpus - 1) / workers))
    return [ActorPlan("cpu", 0, share, max(1, cpus // workers)) for _ in range(workers)]


def _progress(console: Console | None) -> Progress:
    return progress_bar("frames", console=console, rate_format=",.0f")


def frame_count(sample: Sample, cfg: ExtractConfig) -> int:
    if sample.problem is not None:
        return 0
    if isinstance(sample.frames, PngFolder):
        return len(sample.frames.files)
    from extract.vision.decode import count_frames

    try:
        return count_frames(sample.frames, fps=cfg.fps)
    except DatasetError:
        return 0


def run_extraction(cfg: ExtractConfig, samples: Sequence[Sample], stores: Mapping[str, Path], backend: Callable[..., Any],
                   *, console: Console | None = None, random_init: bool = False,
                   digests: Mapping[str, str] | None = None,
                   donors: Mapping[str, Sequence[tuple[str, Path]]] | None = None) -> ExtractionResult:
    """Extract every sample's features for each of `cfg.streams` into its own store, `stores[name]/features.zarr`
    (a pending stream entry each), resuming finished shards; each video is decoded once for all of them.

    `digests` (`Dataset.sample_digests`) fingerprints each shard; `donors[name]` are (key, entry dir)
    of older published entries of that stream and split whose other key inputs equal ours: a shard
    they hold with our fingerprint and no failures is hard-linked instead of computed.
    `backend` (`backend.pick_backend`) computes the shards that are neither done nor adopted.
    `random_init` (benchmarks only) runs paper-size models with random weights.
    """
    t0 = time.time()
    plan = plan_shards(samples, cfg.shard_videos, digests)
    writers = StreamWriters.open(cfg, stores, random_init=random_init)
    console = console or Console(stderr=True)
    done = writers.done_shards()
    if done:
        console.print(f"resuming: {len(done & {s.index for s in plan})} of {len(plan)} shards already done")
    reused = writers.adopt(plan, donors or {})
    for name, by_key in reused.items():
        for key, shards in by_key.items():
            console.print(f"repair: reusing {len(shards)} of {len(plan)} {name} shards from stream/{key}")
    done = writers.done_shards()
    todo = [s for s in plan if s.index not in done]
    for shard in (s for s in todo if not s.needs_compute()):  # nothing to decode: no Ray needed
        writers.write_shard(ShardData(shard.index, [], [], [], [problem_failure(x) for x in shard.samples],
                                      shard.fingerprint))
    compute_todo = [s for s in todo if s.needs_compute()]
    frames_forwarded = 0
    compute: dict[str, Any] = {}
    if compute_todo:
        frames_forwarded, compute = backend(cfg, compute_todo, writers, _progress(console), random_init)
    per_stream = writers.finish([s.index for s in plan])
    videos = min(v for v, _ in per_stream.values())
    failures = sorted({f for _, fs in per_stream.values() for f in fs})
    console.print(f"extracted {videos} videos ({frames_forwarded} frames forwarded in this run, "
                  f"{len(todo)} of {len(plan)} shards computed)")
    return ExtractionResult(done=videos, skipped=failures, shards=len(plan), shards_computed=len(todo),
                            frames_forwarded=frames_forwarded, seconds=time.time() - t0, compute=compute,
                            reused=reused, streams=per_stream)

"""Feature extraction in this process, without Ray (`extract.workers = 0`).

The same core as the Ray path (extract.vision.runner: `ShardComputer`, `decode_video`), with the
decoding done by a thread pool instead of Ray CPU tasks: `decode_ahead` videos decode on
threads while the model runs (PyAV, PIL and torch release the GIL), at idle priority so the
model's threads always get a core first. The shards, batches and features are those of the
Ray path, byte for byte; what it saves is starting Ray and moving every decoded video through
its object store, which is most of the cost for short videos on a small machine.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from rich.progress import Progress

from extract.config import ExtractConfig
from extract.vision.runner import (
    ShardComputer,
    ShardPlan,
    decode_ahead,
    decode_video,
    frame_count,
    idle_priority,
    note_split,
    plan_actors,
)
from extract.vision.stream_writers import StreamWriters


def run_shards_here(cfg: ExtractConfig, todo: list[ShardPlan], writer: StreamWriters, progress: Progress,
                    random_init: bool = False) -> tuple[int, dict[str, Any]]:
    """Compute `todo` in this process, writing each shard as it is done; (frames forwarded, compute info).

    The model computes with the threads a Ray worker on this machine would get (`plan_actors`:
    every CPU; decoding takes what the model leaves), so both paths give the same bytes."""
    import torch

    from extract.vision.streams import FeatureExtractor

    gpus = torch.cuda.device_count() if cfg.device != "cpu" else 0
    plan = plan_actors([{"Resources": {"CPU": os.cpu_count() or 1, "GPU": gpus}}], 1, cfg.device)[0]
    threads_before = torch.get_num_threads()
    torch.set_num_threads(plan.threads)
    try:
        return _run(cfg, todo, writer, progress, FeatureExtractor(cfg, cfg.device, random_init=random_init))
    finally:
        torch.set_num_threads(threads_before)


def _run(cfg: ExtractConfig, todo: list[ShardPlan], writer: StreamWriters, progress: Progress,
         fx: Any) -> tuple[int, dict[str, Any]]:
    import torch

    compute: dict[str, Any] = {"device": str(fx.device), "autocast": fx.precision.autocast or "float32",
                               "spatial_dim": fx.spatial_dim, "motion_dim": fx.motion_dim, "workers": 0,
                               "threads": torch.get_num_threads(), "batches": list(cfg.batches(fx.device.type))}
    started = time.time()
    total = sum(frame_count(s, cfg) for shard in todo for s in shard.samples)
    sources = [s.frames for shard in todo for s in shard.samples if s.problem is None]
    threads = max(1, min(cfg.decode_ahead, (os.cpu_count() or 1)))
    computer = ShardComputer(fx, cfg)
    with progress, ThreadPoolExecutor(threads, initializer=idle_priority, thread_name_prefix="decode") as pool:
        task = progress.add_task(f"extract (in this process, {compute['device']})", total=total)
        decoded = decode_ahead(sources, lambda src: pool.submit(decode_video, src, cfg, fx.recipe),
                               lambda job: job.result(), cfg.decode_ahead)
        for shard in todo:
            for kind, payload in computer.run(shard, decoded):
                if kind == "frames":
                    progress.advance(task, payload)
                elif kind == "split":
                    note_split(compute, payload, progress.console.print)
                else:
                    writer.write_shard(payload)
    compute["steady_seconds"] = time.time() - started
    return fx.frames_forwarded, compute

"""The Ray adapter of feature extraction: CPU tasks decode, model actors forward, the driver writes.

Everything that decides what is computed (shards, batches, placement) is Ray-free, in
extract.vision.runner; this module only runs it on Ray: `_decode_task` wraps `decode_video`,
`ModelWorker` wraps `ShardComputer`, and `run_shards` streams each worker's shards back to
the driver, which writes them.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

import ray
from rich.progress import Progress

from cache.features import FeatureStoreWriter
from extract.config import ExtractConfig
from extract.datasets.base import FrameSource
from extract.vision.runner import (
    Decoded,
    ShardComputer,
    ShardPlan,
    decode_ahead,
    decode_video,
    frame_count,
    idle_priority,
    plan_actors,
)


@dataclass(frozen=True)
class DecodeTuning:
    """How the CPU side of extraction is scheduled; never what it computes: the views, and so the
    features, are the same bytes with any of these (the model's own thread count is not here)."""

    streamed: bool = True
    """decode_video(streamed=...): frames prepared in chunks on threads as they are decoded."""
    idle_priority: bool = True
    """Decode at the OS's idle priority (SCHED_IDLE, else nice 19), on a thread of the decode
    task's own: the model workers' threads always get a core at once, decoding takes every cycle
    they leave (on a 2-core machine: the second core, and the first whenever the model waits)."""
    task_cpus: float = 1.0
    """CPUs a decode task reserves in Ray's accounting (what it uses is up to the OS). 0.5 would
    run two per CPU the model workers leave; on 2 cores it measured no faster (bench/extract.py)."""
    warm: bool = True
    """start_workers also starts the decode processes (their imports: torch, PIL, PyAV, the
    recipe's modules) while the model workers load, instead of on the first videos."""


DRAIN_THREAD = "slt-extract-drain"
"""Name prefix of run_shards' threads, one per model worker, that stream its shards back and write them."""
OLD_DECODE = DecodeTuning(streamed=False, idle_priority=False, task_cpus=1.0, warm=False)
"""How decoding ran before DecodeTuning (bench/extract.py compares it with the default)."""
TUNING = DecodeTuning()
"""The driver's choice, which start_workers hands to each model worker (for its decode tasks)."""


@ray.remote(num_cpus=1)
def _decode_task(src: FrameSource, cfg: ExtractConfig, recipe: Any, tuning: DecodeTuning = TUNING) -> Decoded:
    import torch

    torch.set_num_threads(1)
    if not tuning.idle_priority:
        return decode_video(src, cfg, recipe, streamed=tuning.streamed)
    # Linux schedules threads: the priority is this thread's (and the threads it starts: prepare
    # threads, FFmpeg's slice threads), so the worker process is left as it was for its next task.
    with ThreadPoolExecutor(1, initializer=idle_priority) as pool:
        return pool.submit(decode_video, src, cfg, recipe, streamed=tuning.streamed).result()


@ray.remote(num_cpus=1)
def _warm_decoder() -> int:
    """Import what decode tasks need, in a worker that Ray then reuses for them."""
    import importlib

    for name in ("torch", "av", "PIL.Image", "extract.vision.decode", "extract.vision.preprocess", "extract.vision.streams"):
        with contextlib.suppress(ImportError):  # only a head start: the decode task imports what it needs anyway
            importlib.import_module(name)
    return os.getpid()


@ray.remote
class ModelWorker:
    """One model replica (one GPU, or CPU threads); streams ("frames", n) and ("shard", ShardData)."""

    def __init__(self, cfg: ExtractConfig, device: str, threads: int, random_init: bool = False,
                 tuning: DecodeTuning = TUNING):
        import torch

        from extract.vision.streams import FeatureExtractor

        self.tuning = tuning  # how this actor's decode tasks run (_prefetch)
        torch.set_num_threads(threads)  # the model's threads: what its features are computed with
        self.cfg = cfg
        self.fx = FeatureExtractor(cfg, device, random_init=random_init)

    def info(self) -> dict[str, Any]:
        return {"device": str(self.fx.device), "autocast": self.fx.precision.autocast or "float32",
                "spatial_dim": self.fx.spatial_dim, "motion_dim": self.fx.motion_dim}

    def frames_forwarded(self) -> int:
        return self.fx.frames_forwarded

    def run(self, queue: Any):
        """Claim shards from `queue` (a ray.util.queue.Queue) one at a time until it is empty, and
        compute them. Decoding runs ahead across shard boundaries: the next shard is claimed as
        soon as its first video is due to start decoding, so the model never waits for a shard's
        first videos; what a shard holds does not depend on who claimed it or when."""
        from ray.util.queue import Empty

        def claim() -> ShardPlan | None:
            try:
                return queue.get_nowait()
            except Empty:
                return None

        first = claim()
        if first is None:
            return
        claimed = deque([first])

        def sources() -> Iterator[FrameSource]:
            shard: ShardPlan | None = first
            while shard is not None:
                yield from (s.frames for s in shard.samples if s.problem is None)
                shard = claim()
                if shard is not None:
                    claimed.append(shard)

        decoded = _prefetch(sources(), self.cfg, self.fx.recipe, self.cfg.decode_ahead, self.tuning)
        computer = ShardComputer(self.fx, self.cfg)
        while claimed:  # a shard's last video is handed over only after the next shard was claimed
            yield from computer.run(claimed.popleft(), decoded)


def _prefetch(sources: Iterable[FrameSource], cfg: ExtractConfig, recipe: Any, ahead: int,
              tuning: DecodeTuning) -> Iterator[Decoded]:
    """Decoded videos in order, keeping `ahead` decode tasks in flight (across shard boundaries)."""
    task = _decode_task if tuning.task_cpus == 1 else _decode_task.options(num_cpus=tuning.task_cpus)
    return decode_ahead(sources, lambda src: task.remote(src, cfg, recipe, tuning), ray.get, ahead)


def start_workers(cfg: ExtractConfig, *, random_init: bool = False) -> list[Any]:
    """The model worker actors of `plan_actors` on the Ray this process is connected to."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    actors = []
    nodes = ray.nodes()
    plans = plan_actors(nodes, cfg.workers or 0, cfg.device)
    for plan in plans:
        options: dict[str, Any] = {"num_gpus": plan.num_gpus, "num_cpus": plan.num_cpus}
        if plan.node is not None:
            options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(plan.node, soft=False)
        actors.append(ModelWorker.options(**options).remote(cfg, plan.device, plan.threads, random_init, TUNING))
    if TUNING.warm:  # fire and forget: a decode task that comes first simply waits its turn
        cpus = sum(float(n.get("Resources", {}).get("CPU", 0)) for n in nodes if n.get("Alive", True))
        slots = int((cpus - sum(p.num_cpus for p in plans)) / TUNING.task_cpus)
        warm = _warm_decoder if TUNING.task_cpus == 1 else _warm_decoder.options(num_cpus=TUNING.task_cpus)
        for _ in range(max(1, min(64, slots, cfg.decode_ahead * len(plans)))):
            warm.remote()
    return actors


def run_shards(cfg: ExtractConfig, todo: list[ShardPlan], writer: FeatureStoreWriter, progress: Progress,
               random_init: bool = False) -> tuple[int, dict[str, Any]]:
    """Compute `todo` on the model workers, writing each shard as it arrives; (frames forwarded, compute info).

    Shards are claimed one at a time from a shared queue, so a fast worker (a bigger GPU, an
    idle node) takes more of them; what each shard holds does not depend on who computed it."""
    from ray.util.queue import Empty, Queue

    workers = start_workers(cfg, random_init=random_init)
    compute = ray.get([w.info.remote() for w in workers])[0]
    compute["workers"] = len(workers)
    started = time.time()
    total = sum(frame_count(s, cfg) for shard in todo for s in shard.samples)
    forwarded = [0] * len(workers)
    errors: list[BaseException] = []
    queue = Queue(actor_options={"num_cpus": 0})
    queue.put_nowait_batch(list(todo))

    with progress:
        task = progress.add_task(f"extract ({len(workers)} {compute['device']} worker(s))", total=total)

        finished = [threading.Event() for _ in workers]

        def drain(k: int) -> None:
            try:
                for ref in workers[k].run.options(num_returns="streaming").remote(queue):
                    kind, payload = ray.get(ref)
                    if kind == "frames":
                        forwarded[k] += payload
                        progress.advance(task, payload)
                    else:
                        writer.write_shard(payload)
            except BaseException as e:  # re-raised on the driver's thread below
                errors.append(e)
                with contextlib.suppress(Empty):  # the other workers claim nothing more
                    while True:
                        queue.get_nowait()
            finally:
                finished[k].set()

        for k in range(len(workers)):
            threading.Thread(target=drain, args=(k,), name=f"{DRAIN_THREAD}-{k}", daemon=True).start()
        try:
            for done in finished:
                done.wait()
        except BaseException:
            # Ctrl-C lands here while the drain threads are inside ray.get; ray.shutdown() under them
            # makes Ray's core exit the process with status 1. Killing the workers ends their streams
            # (a shard being written is finished first); then Ray may go down. Events, not
            # Thread.join: a join that Ctrl-C interrupted reports the thread finished when it is not.
            for w in workers:
                ray.kill(w)
            for done in finished:
                done.wait(timeout=60)
            raise
    compute["steady_seconds"] = time.time() - started  # workers ready -> last shard written
    for w in workers:
        ray.kill(w)
    queue.shutdown()
    if errors:
        raise errors[0]
    return sum(forwarded), compute

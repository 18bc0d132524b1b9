"""The Ray adapter of feature extraction: CPU tasks decode, model actors forward, the driver writes.

Everything that decides what is computed (shards, batches, placement) is Ray-free, in
extract.runner; this module only runs it on Ray: `_decode_task` wraps `decode_video`,
`ModelWorker` wraps `ShardComputer`, and `run_shards` streams each worker's shards back to
the driver, which writes them.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any, Iterator

import ray
from rich.progress import Progress

from cache.features import FeatureStoreWriter
from extract.config import ExtractConfig
from extract.datasets.base import FrameSource
from extract.runner import Decoded, ShardComputer, ShardPlan, frame_count, decode_video, plan_actors


@ray.remote(num_cpus=1)
def _decode_task(src: FrameSource, cfg: ExtractConfig, recipe: Any) -> Decoded:
    import torch

    torch.set_num_threads(1)
    return decode_video(src, cfg, recipe)


@ray.remote
class ModelWorker:
    """One model replica (one GPU, or CPU threads); streams ("frames", n) and ("shard", ShardData)."""

    def __init__(self, cfg: ExtractConfig, device: str, threads: int, random_init: bool = False):
        import torch

        from extract.models import FeatureExtractor

        torch.set_num_threads(threads)
        self.cfg = cfg
        self.fx = FeatureExtractor(cfg, device, random_init=random_init)

    def info(self) -> dict[str, Any]:
        return {"device": str(self.fx.device), "autocast": self.fx.precision.autocast or "float32",
                "spatial_dim": self.fx.spatial_dim, "motion_dim": self.fx.motion_dim}

    def frames_forwarded(self) -> int:
        return self.fx.frames_forwarded

    def run(self, shards: list[ShardPlan]):
        sources = [s.frames for shard in shards for s in shard.samples if s.problem is None]
        decoded = _prefetch(sources, self.cfg, self.fx.recipe, self.cfg.decode_ahead)
        computer = ShardComputer(self.fx, self.cfg)
        for shard in shards:
            yield from computer.run(shard, decoded)


def _prefetch(sources: list[FrameSource], cfg: ExtractConfig, recipe: Any, ahead: int) -> Iterator[Decoded]:
    """Decoded videos in order, keeping `ahead` decode tasks in flight (across shard boundaries)."""
    pending: deque = deque()
    it = iter(sources)
    for src in it:
        pending.append(_decode_task.remote(src, cfg, recipe))
        if len(pending) >= max(1, ahead):
            break
    while pending:
        ref = pending.popleft()
        nxt = next(it, None)
        if nxt is not None:
            pending.append(_decode_task.remote(nxt, cfg, recipe))
        yield ray.get(ref)
        del ref


def start_workers(cfg: ExtractConfig, *, random_init: bool = False) -> list[Any]:
    """The model worker actors of `plan_actors` on the Ray this process is connected to."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    actors = []
    for plan in plan_actors(ray.nodes(), cfg.workers, cfg.device):
        options: dict[str, Any] = {"num_gpus": plan.num_gpus, "num_cpus": plan.num_cpus}
        if plan.node is not None:
            options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(plan.node, soft=False)
        actors.append(ModelWorker.options(**options).remote(cfg, plan.device, plan.threads, random_init))
    return actors


def run_shards(cfg: ExtractConfig, todo: list[ShardPlan], writer: FeatureStoreWriter, progress: Progress,
               random_init: bool = False) -> tuple[int, dict[str, Any]]:
    """Compute `todo` on the model workers, writing each shard as it arrives; (frames forwarded, compute info).

    Shards are claimed one at a time from a shared queue, so a fast worker (a bigger GPU, an
    idle node) takes more of them; what each shard holds does not depend on who computed it."""
    workers = start_workers(cfg, random_init=random_init)
    compute = ray.get([w.info.remote() for w in workers])[0]
    compute["workers"] = len(workers)
    started = time.time()
    total = sum(frame_count(s, cfg) for shard in todo for s in shard.samples)
    forwarded = [0] * len(workers)
    errors: list[BaseException] = []
    queue = deque(todo)
    lock = threading.Lock()

    def claim() -> ShardPlan | None:
        with lock:
            return queue.popleft() if queue and not errors else None

    with progress:
        task = progress.add_task(f"extract ({len(workers)} {compute['device']} worker(s))", total=total)

        def drain(k: int) -> None:
            try:
                while (shard := claim()) is not None:
                    for ref in workers[k].run.options(num_returns="streaming").remote([shard]):
                        kind, payload = ray.get(ref)
                        if kind == "frames":
                            forwarded[k] += payload
                            progress.advance(task, payload)
                        else:
                            writer.write_shard(payload)
            except BaseException as e:  # re-raised on the driver's thread below
                errors.append(e)

        threads = [threading.Thread(target=drain, args=(k,), daemon=True) for k in range(len(workers))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    compute["steady_seconds"] = time.time() - started  # workers ready -> last shard written
    for w in workers:
        ray.kill(w)
    if errors:
        raise errors[0]
    return sum(forwarded), compute

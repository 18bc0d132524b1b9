"""The Ray adapter of feature extraction: CPU tasks decode, model actors forward, the driver writes.

Everything that decides what is computed (shards, batches, placement) is Ray-free, in
extract.vision.runner; this module only runs it on Ray: `_decode_task` wraps `decode_video`,
`ModelWorker` wraps `ShardComputer`, and `run_shards` streams each worker's shards back to
the driver, which writes them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

import ray
from rich.progress import Progress

from cache.errors import WorkersLost
from extract.config import ExtractConfig
from extract.datasets.base import FrameSource, problem_text, source_path
from extract.faults import FaultLog
from extract.ray_session import KEPT, get, keeping
from extract.vision.runner import (
    Decoded,
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
RESTART_WAIT_S = 300.0
"""How long a lost model worker may take to come back (Ray finding it a node, the models loading)."""
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
        self.threads = threads
        torch.set_num_threads(threads)  # the model's threads: what its features are computed with
        self.cfg = cfg
        self.fx = FeatureExtractor(cfg, device, random_init=random_init)

    def info(self) -> dict[str, Any]:
        return {"device": str(self.fx.device), "autocast": self.fx.precision.autocast or "float32",
                "spatial_dim": self.fx.spatial_dim, "motion_dim": self.fx.motion_dim, "threads": self.threads,
                "batches": list(self.cfg.batches(self.fx.device.type))}

    def frames_forwarded(self) -> int:
        return self.fx.frames_forwarded

    def run(self, queue: Any, me: int):
        """Claim shards from `queue` (a ShardQueue) one at a time until it is empty, and compute
        them. Decoding runs ahead across shard boundaries: the next shard is claimed as soon as
        its first video is due to start decoding, so the model never waits for a shard's first
        videos; what a shard holds does not depend on who claimed it or when. The queue records
        what `me` holds and which video its model is on, so a death costs only that work."""
        def claim() -> ShardPlan | None:
            return ray.get(queue.claim.remote(me))

        yield "hello", {"pid": os.getpid(), "node": ray.util.get_node_ip_address()}  # who to blame a loss on
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
        # A round trip per video (not fire-and-forget): it must reach the queue before the model
        # runs on the video, or a video that kills the process would go unnamed.
        computer = ShardComputer(self.fx, self.cfg, on_video=lambda vid: ray.get(queue.started.remote(me, vid)))
        while claimed:  # a shard's last video is handed over only after the next shard was claimed
            yield from computer.run(claimed.popleft(), decoded)


@ray.remote(num_cpus=0)
class ShardQueue:
    """The shards left to compute and what each worker holds. Workers claim one shard at a time
    (a fast worker takes more); when one dies, the driver takes back what it held (`release`)."""

    def __init__(self, shards: list[ShardPlan]):
        self.todo = deque(shards)
        self.held: dict[int, list[ShardPlan]] = {}
        self.current: dict[int, str] = {}

    def claim(self, worker: int) -> ShardPlan | None:
        if not self.todo:
            return None
        shard = self.todo.popleft()
        self.held.setdefault(worker, []).append(shard)
        return shard

    def started(self, worker: int, video: str) -> None:
        self.current[worker] = video

    def release(self, worker: int) -> tuple[list[ShardPlan], str | None]:
        """What `worker` held (finished shards included: the driver knows which it wrote) and
        the video its model was on."""
        return self.held.pop(worker, []), self.current.pop(worker, None)

    def requeue(self, shards: list[ShardPlan]) -> None:
        self.todo.extendleft(reversed(shards))  # first: a lost shard is the oldest work

    def size(self) -> int:
        return len(self.todo)

    def clear(self) -> None:
        self.todo.clear()


def _prefetch(sources: Iterable[FrameSource], cfg: ExtractConfig, recipe: Any, ahead: int,
              tuning: DecodeTuning) -> Iterator[Decoded]:
    """Decoded videos in order, keeping `ahead` decode tasks in flight (across shard boundaries).
    Ray retries a decode task whose process died; after `cfg.item_deaths` deaths the video is a
    failure of its own, like an unreadable file, and the worker goes on."""
    task = _decode_task.options(num_cpus=tuning.task_cpus, max_retries=max(0, cfg.item_deaths - 1))

    def result(handle: tuple[FrameSource, Any]) -> Decoded:
        src, ref = handle
        try:
            return ray.get(ref)
        except (ray.exceptions.WorkerCrashedError, ray.exceptions.OutOfMemoryError,
                ray.exceptions.NodeDiedError) as e:
            where = source_path(src)
            return Decoded(None, (f"{where}: decoding it killed its worker process {cfg.item_deaths} time(s) "
                                  f"({type(e).__name__})", "check the file (ffprobe, or open its frames); "
                                  "re-encode or replace it, then re-run: only its shard is recomputed"))

    return decode_ahead(sources, lambda src: (src, task.remote(src, cfg, recipe, tuning)), result, ahead)


def start_workers(cfg: ExtractConfig, *, random_init: bool = False) -> list[Any]:
    """The model worker actors of `plan_actors` on the Ray this process is connected to."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    actors = []
    nodes = ray.nodes()
    plans = plan_actors(nodes, cfg.workers or 0, cfg.device)
    for plan in plans:
        # Ray restarts a lost worker; the driver re-queues its work (a call is never retried by Ray:
        # the stream's shards would be computed twice)
        options: dict[str, Any] = {"num_gpus": plan.num_gpus, "num_cpus": plan.num_cpus,
                                   "max_restarts": cfg.worker_restarts, "max_task_retries": 0}
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


def run_shards(cfg: ExtractConfig, todo: list[ShardPlan], writer: StreamWriters, progress: Progress,
               random_init: bool = False) -> tuple[int, dict[str, Any]]:
    """Compute `todo` on the model workers, writing each shard as it arrives; (frames forwarded, compute info).

    Shards are claimed one at a time from a shared queue, so a fast worker (a bigger GPU, an
    idle node) takes more of them; what each shard holds does not depend on who computed it.
    A lost worker's unfinished shards go back to the queue and Ray restarts it
    (`extract.worker_restarts`); a video in hand at `extract.item_deaths` deaths is failed."""
    key = repr((cfg, random_init, TUNING))
    kept = KEPT.pop("model-workers", None)
    if kept is not None and kept[0] == key:
        workers = kept[1]  # the previous split's: loaded already
    else:
        for w in kept[1] if kept is not None else []:
            ray.kill(w)  # other models: their GPUs and CPUs go to the new workers
        workers = start_workers(cfg, random_init=random_init)
    compute = ray.get([w.info.remote() for w in workers])[0]
    compute["workers"] = len(workers)
    started = time.time()
    total = sum(frame_count(s, cfg) for shard in todo for s in shard.samples)
    forwarded = [0] * len(workers)
    errors: list[BaseException] = []
    queue = ShardQueue.remote(list(todo))
    shards = {s.index: s for s in todo}
    written: set[int] = set()
    busy = set(range(len(workers)))
    restarting: dict[int, float] = {}
    """worker -> when its calls started to find it unavailable (Ray restarting it)."""
    stop = threading.Event()
    lock = threading.Lock()

    with progress:
        task = progress.add_task(f"extract ({len(workers)} {compute['device']} worker(s))", total=total)
        faults = FaultLog(restarts=cfg.worker_restarts, item_deaths=cfg.item_deaths, noun="model worker",
                          say=lambda line: progress.console.print(line, highlight=False))
        finished = [threading.Event() for _ in workers]

        def lost(k: int, err: BaseException, node: str | None) -> bool:
            """Take back what worker k held; True when Ray brings it back (the call is to be made again)."""
            held, video = ray.get(queue.release.remote(k))
            back = [s for s in held if s.index not in written]
            if node is None and not back:  # a call to a worker Ray is still restarting: not a new loss
                waiting = time.time() - restarting.setdefault(k, time.time())
                if waiting > RESTART_WAIT_S:
                    progress.console.print(f"model worker {k} did not come back within {RESTART_WAIT_S:.0f} s "
                                           "(no node with room for it?): the others go on", highlight=False)
                    return False
                time.sleep(0.5)
                return isinstance(err, ray.exceptions.ActorUnavailableError)
            restarting.pop(k, None)
            verdict = faults.lost(k, err, node=node, requeued=[f"shard {s.index}" for s in back],
                                  blamed=None if video is None else f"video {video}")
            if verdict.poison is not None:
                back = [_fail_video(s, video, verdict.deaths) for s in back]
            ray.get(queue.requeue.remote(back))
            # Ray says whether it restarts the worker: unavailable (restarting) or died (for good)
            return verdict.restart and isinstance(err, ray.exceptions.ActorUnavailableError)

        def more_work(k: int) -> bool:
            """After worker k found the queue empty: wait while others may still hand work back."""
            with lock:
                busy.discard(k)
            while not stop.is_set() and len(written) < len(shards):
                if ray.get(queue.size.remote()):
                    with lock:
                        busy.add(k)
                    return True
                with lock:
                    if not busy:  # nobody holds anything: what is missing was never claimed
                        return False
                time.sleep(0.2)
            return False

        def drain(k: int) -> None:
            try:
                while not stop.is_set():
                    node = None  # the node of this call's worker, once it says hello
                    try:
                        for ref in workers[k].run.options(num_returns="streaming").remote(queue, k):
                            kind, payload = get(ref)  # a worker's own SltPipeError raised as itself
                            if kind == "hello":
                                node = payload["node"]
                                restarting.pop(k, None)
                            elif kind == "frames":
                                forwarded[k] += payload
                                progress.advance(task, payload)
                            elif kind == "split":
                                with lock:
                                    note_split(compute, payload, progress.console.print)
                            else:
                                writer.write_shard(payload)
                                written.add(payload.index)
                    except (ray.exceptions.RayActorError, ray.exceptions.ObjectLostError) as e:
                        if stop.is_set() or not lost(k, e, node):
                            break
                        continue
                    if not more_work(k):
                        break
            except BaseException as e:  # re-raised on the driver's thread below
                errors.append(e)
                stop.set()
                with contextlib.suppress(BaseException):  # the other workers claim nothing more
                    ray.get(queue.clear.remote())
            finally:
                with lock:
                    busy.discard(k)
                finished[k].set()

        for k in range(len(workers)):
            threading.Thread(target=drain, args=(k,), name=f"{DRAIN_THREAD}-{k}", daemon=True).start()
        try:
            for done in finished:
                done.wait()
        except BaseException:
            # Ctrl-C or SIGTERM lands here while the drain threads are inside ray.get; ray.shutdown()
            # under them makes Ray's core exit the process with status 1. Killing the workers ends
            # their streams (a shard being written is finished first); then Ray may go down. Events,
            # not Thread.join: a join that Ctrl-C interrupted reports the thread finished when it is not.
            stop.set()
            for w in workers:
                ray.kill(w)
            for done in finished:
                done.wait(timeout=60)
            raise
    compute["steady_seconds"] = time.time() - started  # workers ready -> last shard written
    compute.update(faults.record())
    missing = sorted(set(shards) - written)
    if keeping() and not errors and not missing and "lost_workers" not in compute:
        KEPT["model-workers"] = (key, workers)  # the next split of this command reuses them
    else:  # a worker that was lost has used restarts a next split would not know of: none is kept
        for w in workers:
            ray.kill(w)
    ray.kill(queue)
    if errors:
        raise errors[0]
    if missing:
        raise WorkersLost(
            f"no extraction worker left: all {len(workers)} died (restarts used up), {len(missing)} of "
            f"{len(shards)} shards not computed; the {len(written)} finished in this run are kept in {writer.path}",
            fix="run the same command again to resume (only the missing shards are computed); on a cluster "
                "check its nodes with `ray status`, or allow more with --set extract.worker_restarts=N")
    return sum(forwarded), compute


def _fail_video(shard: ShardPlan, video: str | None, deaths: int) -> ShardPlan:
    """`shard` with `video` marked as not extractable: it killed its worker `deaths` times."""
    reason = f"its model worker died {deaths} time(s) while computing it (a crash or memory exhaustion on this video)"
    fix = "check the video (its length and frame size); lower extract.batch_frames, or replace it and re-run"
    samples = tuple(dataclasses.replace(s, problem=problem_text(source_path(s.frames), reason, fix)) if s.id == video
                    else s for s in shard.samples)
    return dataclasses.replace(shard, samples=samples)

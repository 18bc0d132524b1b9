"""embed-targets on Ray: `TextWorker` actors (one per GPU, or N CPU workers) run `TextJob`s.

Each actor builds the models of one `TextModelSpec` once and keeps them for the whole run.
The driver hands every idle worker the next job (fast workers take more) and receives each
result as it finishes; it alone writes results to the cache, chunk by chunk, so a crash loses
at most the chunks in flight and the files are those of the in-process path.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import ray

from cache.errors import WorkersLost
from extract.faults import FaultLog
from extract.ray_session import get, ray_session
from extract.text.jobs import LazyTextModels, TextJob, run_job
from extract.text.spec import TextModelSpec

OBJECT_STORE_BYTES = 256 << 20
"""Sentences and 1024-d embeddings are small: a local Ray needs little shared memory."""


@ray.remote
class TextWorker:
    """One replica of the run's text models."""

    def __init__(self, spec: TextModelSpec):
        import torch

        torch.set_num_threads(spec.threads)  # the in-process path's count: the same bytes
        self.models = LazyTextModels(spec)

    def node(self) -> str:
        """Where this worker runs (also: it is up, after a restart)."""
        return ray.util.get_node_ip_address()

    def run(self, job: TextJob) -> tuple[Any, dict[str, int]]:
        """The job's result and the model calls it made (the driver's counters add them)."""
        from extract.text.embed import CALLS

        before = dict(CALLS)
        out = run_job(self.models, job)
        return out, {k: CALLS[k] - before.get(k, 0) for k in CALLS}


class RayPool:
    """`workers` TextWorker actors on a local Ray or the cluster at `address`.

    workers=0: one per GPU of the cluster, or one CPU worker where it has none. Use as a
    context manager; actors and a local Ray are gone when it exits."""

    def __init__(self, spec: TextModelSpec, workers: int, address: str | None,
                 shared: Mapping[str, Path] | None = None, *, restarts: int = 3, item_deaths: int = 3,
                 say: Callable[[str], None] = print):
        self.spec, self.requested, self.address = spec, workers, address
        self.shared = dict(shared or {})
        """Paths every node must see (the cache, a translator's local weights), checked on joining a cluster."""
        self.faults = FaultLog(restarts=restarts, item_deaths=item_deaths, say=say, noun="text worker")
        """Lost workers: Ray restarts each `restarts` times; a chunk in hand at `item_deaths` deaths fails the run."""
        self._stack = contextlib.ExitStack()
        self.actors: list[Any] = []

    def __enter__(self) -> "RayPool":
        self._stack.enter_context(ray_session(self.address, object_store_bytes=OBJECT_STORE_BYTES,
                                                 shared=self.shared))
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0)) if self.spec.device != "cpu" else 0
        cpus = max(1, int(resources.get("CPU", os.cpu_count() or 1)))
        n = self.requested or max(1, gpus)
        # Ray restarts a lost actor; the pool re-submits its job (Ray never retries one: max_task_retries=0)
        restart = {"max_restarts": self.faults.restarts, "max_task_retries": 0}
        if gpus:
            n = min(n, gpus)
            self.actors = [TextWorker.options(num_gpus=1, num_cpus=min(1.0, cpus / n), **restart).remote(self.spec)
                           for _ in range(n)]
        else:
            self.actors = [TextWorker.options(num_cpus=min(self.spec.threads, cpus), **restart).remote(self.spec)
                           for _ in range(n)]
        return self

    def __exit__(self, *exc: Any) -> None:
        for actor in self.actors:
            ray.kill(actor)
        self.actors = []
        self._stack.close()

    def run(self, jobs: list[TextJob], on_done: Callable[[int, Any], None],
            on_batch: Callable[[int], None] | None = None) -> None:
        """Calls `on_done(i, result)` as job i finishes (any order); `on_batch(n)` per finished job of n sentences.

        A worker lost mid-job (its process killed, its node gone) hands the job back to the queue;
        the results are the same bytes, since every job is computed whole by one worker."""
        from extract.text.embed import CALLS

        todo = list(enumerate(jobs))[::-1]
        running: dict[Any, tuple[int | None, int]] = {}
        """ref -> (job index, worker); job None: the worker's `node` call, made while Ray restarts it."""
        alive = list(range(len(self.actors)))
        nodes: dict[int, str] = {}

        def submit(k: int) -> None:
            i, job = todo.pop()
            running[self.actors[k].run.remote(job)] = (i, k)

        def fill() -> None:
            busy = {k for _, k in running.values()}
            for k in alive:
                if todo and k not in busy:
                    submit(k)

        for k in alive:  # every worker up, and where: the one line about a loss names its node
            running[self.actors[k].node.remote()] = (None, k)
        while running:
            [ref], _ = ray.wait(list(running), num_returns=1)
            i, k = running.pop(ref)
            try:
                got = get(ref)
            except ray.exceptions.RayActorError as e:
                if i is None:  # not back yet (unavailable), or gone for good (died)
                    if isinstance(e, ray.exceptions.ActorUnavailableError):
                        time.sleep(0.2)
                        running[self.actors[k].node.remote()] = (None, k)
                    else:
                        self._gone(k, alive)
                        fill()
                    continue
                verdict = self.faults.lost(k, e, requeued=[f"chunk {i}"], blamed=f"chunk {i}", node=nodes.get(k))
                if verdict.poison is not None:
                    raise WorkersLost(
                        f"text chunk {i} ({len(jobs[i].texts)} sentences, from {jobs[i].texts[0][:60]!r}) killed "
                        f"{verdict.deaths} text workers; the chunks finished before are kept",
                        fix=f"lower --set embed.batch_size (now {self.spec.batch_size}) or check those sentences, "
                            "then run the same command again to resume") from None
                todo.append((i, jobs[i]))  # next out: the oldest work
                if verdict.restart and isinstance(e, ray.exceptions.ActorUnavailableError):
                    running[self.actors[k].node.remote()] = (None, k)  # it takes work again once back
                else:
                    self._gone(k, alive)
                fill()
                continue
            if i is None:
                nodes[k] = got
                fill()
                continue
            result, calls = got
            for name, v in calls.items():
                CALLS[name] = CALLS.get(name, 0) + v
            fill()  # before writing: the worker computes while the driver writes
            on_done(i, result)
            if on_batch is not None:
                on_batch(len(jobs[i].texts))
        if todo:
            raise WorkersLost(
                f"no text worker left: all {len(self.actors)} died (restarts used up); {len(todo)} of {len(jobs)} "
                "chunks not computed, the chunks finished before are kept",
                fix="run the same command again to resume; on a cluster check its nodes with `ray status`, "
                    "or allow more with --set embed.worker_restarts=N")

    def _gone(self, k: int, alive: list[int]) -> None:
        if k in alive:
            alive.remove(k)

    def prepare(self, kind: str) -> None:
        """Nothing to do here: each worker loads a model on its first job of that kind."""

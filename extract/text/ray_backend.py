"""embed-targets on Ray: `TextWorker` actors (one per GPU, or N CPU workers) run `TextJob`s.

Each actor builds the models of one `TextModelSpec` once and keeps them for the whole run.
The driver hands every idle worker the next job (fast workers take more) and receives each
result as it finishes; it alone writes results to the cache, chunk by chunk, so a crash loses
at most the chunks in flight and the files are those of the in-process path.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Callable, Mapping

import ray

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
                 shared: Mapping[str, Path] | None = None):
        self.spec, self.requested, self.address = spec, workers, address
        self.shared = dict(shared or {})
        """Paths every node must see (the cache, a translator's local weights), checked on joining a cluster."""
        self._stack = contextlib.ExitStack()
        self.actors: list[Any] = []

    def __enter__(self) -> "RayPool":
        self._stack.enter_context(ray_session(self.address, object_store_bytes=OBJECT_STORE_BYTES,
                                                 shared=self.shared))
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0)) if self.spec.device != "cpu" else 0
        cpus = max(1, int(resources.get("CPU", os.cpu_count() or 1)))
        n = self.requested or max(1, gpus)
        if gpus:
            n = min(n, gpus)
            self.actors = [TextWorker.options(num_gpus=1, num_cpus=min(1.0, cpus / n)).remote(self.spec)
                           for _ in range(n)]
        else:
            self.actors = [TextWorker.options(num_cpus=min(self.spec.threads, cpus)).remote(self.spec)
                           for _ in range(n)]
        return self

    def __exit__(self, *exc: Any) -> None:
        for actor in self.actors:
            ray.kill(actor)
        self.actors = []
        self._stack.close()

    def run(self, jobs: list[TextJob], on_done: Callable[[int, Any], None],
            on_batch: Callable[[int], None] | None = None) -> None:
        """Calls `on_done(i, result)` as job i finishes (any order); `on_batch(n)` per finished job of n sentences."""
        from extract.text.embed import CALLS

        todo = list(enumerate(jobs))[::-1]
        running: dict[Any, tuple[int, Any]] = {}

        def submit(actor: Any) -> None:
            i, job = todo.pop()
            running[actor.run.remote(job)] = (i, actor)

        for actor in self.actors[:len(todo)]:
            submit(actor)
        while running:
            [ref], _ = ray.wait(list(running), num_returns=1)
            i, actor = running.pop(ref)
            result, calls = get(ref)
            for k, v in calls.items():
                CALLS[k] = CALLS.get(k, 0) + v
            if todo:
                submit(actor)  # before writing: the worker computes while the driver writes
            on_done(i, result)
            if on_batch is not None:
                on_batch(len(jobs[i].texts))

    def prepare(self, kind: str) -> None:
        """Nothing to do here: each worker loads a model on its first job of that kind."""

"""Where extraction's shards are computed: in this process, or on Ray workers, picked once per run.

The core (`runner.run_extraction`) takes the backend as a function and never imports either
one, so it runs and is tested without Ray; whoever picks the Ray backend owns Ray's lifetime.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

from cache.errors import SltPipeError
from extract.config import ExtractConfig


class ShardBackend(Protocol):
    def __call__(self, cfg: ExtractConfig, todo: list[Any], writer: Any, progress: Any,
                 random_init: bool = False) -> tuple[int, dict[str, Any]]:
        """Compute every shard of `todo`, writing each as it finishes; (frames forwarded, compute info)."""


def pick_backend(cfg: ExtractConfig, start_ray: Callable[[], None] | None = None) -> ShardBackend:
    """`extract.workers = 0`: this process, decoding on threads; otherwise Ray model workers.

    `start_ray` runs once, just before the first shard is computed on Ray (a run whose shards
    are all cached starts no Ray); without it, Ray must already be running."""
    if cfg.workers == 0:
        if cfg.ray_address:
            raise SltPipeError(f"extract.workers = 0 runs in this process, but extract.ray_address = {cfg.ray_address!r}",
                               fix="drop --ray-address to extract here, or set --workers to 1 or more (or leave it unset)")
        from extract.vision.local_backend import run_shards_here

        return run_shards_here
    from extract.vision.ray_backend import run_shards

    def on_ray(*args: Any, **kwargs: Any) -> tuple[int, dict[str, Any]]:
        if start_ray is not None:
            start_ray()
        return run_shards(*args, **kwargs)

    return on_ray

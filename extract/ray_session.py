"""Start or join Ray for slt-pipe's jobs (extraction actors, ablation trials).

Why a module of its own: Ray puts the driver's working directory first on every worker's
`sys.path` and makes it the workers' working directory. slt-pipe's packages have plain names
(`cache`, `train`, `extract`, `pipeline`), so a user who runs slt-pipe from a folder that
contains, say, a `cache/` directory would have workers import that folder instead of
slt-pipe. `ray.init` is therefore called from the directory that holds slt-pipe's own
packages; everything sent to workers uses absolute paths (datasets resolve their root).

Quiet by default: Ray's own warnings (e.g. "Token authentication is enabled for this Ray
cluster") are noise in slt-pipe's terminal, so unless `SLT_PIPE_VERBOSE` is set to a
non-empty value (the CLI's --verbose) Ray logs only errors and Python warnings raised while
Ray starts are ignored. Workers' output is never forwarded (`log_to_driver=False`); errors
slt-pipe raises are untouched.
"""

from __future__ import annotations

import logging
import os
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import ray

PACKAGES_DIR = Path(__file__).resolve().parents[1]
"""The directory that holds slt-pipe's top-level packages (repo root, or site-packages)."""
VERBOSE_ENV = "SLT_PIPE_VERBOSE"

# slt-pipe always starts or joins Ray explicitly. Ray's auto-connect would otherwise let a
# worker-draining thread that outlives `ray.shutdown()` (Ctrl-C) start a second, orphaned
# local Ray from inside `ray.get`.
from ray._private import auto_init_hook  # noqa: E402

auto_init_hook.enable_auto_connect = False


def verbose() -> bool:
    """Whether the user asked to see library output (`SLT_PIPE_VERBOSE` non-empty)."""
    return bool(os.environ.get(VERBOSE_ENV))


@contextmanager
def ray_session(address: str | None, *, object_store_bytes: int) -> Iterator[None]:
    """Use the Ray already initialised, else join `address`, else start a local Ray; shut down only ours."""
    if ray.is_initialized():
        yield
        return
    loud = verbose()
    level = "INFO" if loud else "ERROR"
    ray_logger = logging.getLogger("ray")
    before = ray_logger.level
    here = os.getcwd()
    os.chdir(PACKAGES_DIR)
    try:
        with warnings.catch_warnings():
            if not loud:
                warnings.simplefilter("ignore")
            if address:
                ray.init(address=address, log_to_driver=False, logging_level=level)
            else:
                ray.init(address="local", num_cpus=os.cpu_count() or 1, include_dashboard=False,
                         object_store_memory=object_store_bytes, log_to_driver=False, logging_level=level)
    finally:
        os.chdir(here)
    try:
        yield
    finally:
        ray.shutdown()
        ray_logger.setLevel(before)

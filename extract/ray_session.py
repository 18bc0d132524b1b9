"""Start or join Ray for slt-pipe's jobs (extraction actors, ablation trials).

Why a module of its own: Ray puts the driver's working directory first on every worker's
`sys.path` and makes it the workers' working directory. slt-pipe's packages have plain names
(`cache`, `train`, `extract`, `pipeline`), so a user who runs slt-pipe from a folder that
contains, say, a `cache/` directory would have workers import that folder instead of
slt-pipe. `ray.init` is therefore called from the directory that holds slt-pipe's own
packages; everything sent to workers uses absolute paths (datasets resolve their root).
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import ray

PACKAGES_DIR = Path(__file__).resolve().parents[1]
"""The directory that holds slt-pipe's top-level packages (repo root, or site-packages)."""


@contextmanager
def ray_session(address: str | None, *, object_store_bytes: int) -> Iterator[None]:
    """Use the Ray already initialised, else join `address`, else start a local Ray; shut down only ours."""
    if ray.is_initialized():
        yield
        return
    here = os.getcwd()
    os.chdir(PACKAGES_DIR)
    try:
        if address:
            ray.init(address=address, log_to_driver=False, logging_level="WARNING")
        else:
            ray.init(address="local", num_cpus=os.cpu_count() or 1, include_dashboard=False,
                     object_store_memory=object_store_bytes, log_to_driver=False, logging_level="WARNING")
    finally:
        os.chdir(here)
    try:
        yield
    finally:
        ray.shutdown()

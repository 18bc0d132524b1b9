"""Session-wide fixtures: the toy corpora and the one embedded cache several test modules read.

Training the tiny SONAR is the slowest setup of the suite, so it happens once per session, here,
and every module that can use the same corpus reads the same cache. A test may add entries to it
(other settings, other languages) but must never change or remove the first run's entries or the
tiny SONAR: a test that does works on a `shutil.copytree` of the cache directory in its tmp_path.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
from pathlib import Path
from typing import Callable

import pytest
from rich.console import Console

from helpers import TOY_EMBED_SETTINGS, TOY_LANGS, TOY_VIDEOS, toy_embed_cfg  # noqa: F401 (shared names)


@pytest.fixture(scope="session")
def toy_corpus(tmp_path_factory) -> Callable[[int], Path]:
    """`toy_corpus(videos)`: the toy corpus of that size (seed 0), written once per session. Read
    only: a test that damages a corpus works on a `shutil.copytree` of it in its tmp_path."""
    from extract.datasets.toy import make_toy

    made: dict[int, Path] = {}

    def get(videos: int) -> Path:
        if videos not in made:
            made[videos] = tmp_path_factory.mktemp(f"toy{videos}")
            make_toy(made[videos], videos=videos, seed=0)
        return made[videos]

    return get


@pytest.fixture(scope="session")
def toy(toy_corpus) -> Path:
    """The TOY_VIDEOS-video toy corpus (seed 0): the demo's size, which the shared embedded cache reads."""
    return toy_corpus(TOY_VIDEOS)


@pytest.fixture(scope="session")
def toy_embedded(tmp_path_factory, toy):
    """(cfg, report, dataset) of a clean first embed-targets run on `toy`: trains the tiny SONAR on the
    train split, builds deu/eng/fra targets with the tiny SONAR translator."""
    from pipeline.dataset import configured_dataset
    from pipeline.embed_stage import embed_targets

    cfg = toy_embed_cfg(tmp_path_factory.mktemp("cache"), toy)
    report = embed_targets(cfg, Console(stderr=True, quiet=True))
    return cfg, report, configured_dataset(cfg)


@pytest.fixture(scope="session")
def toy_tiny_sonar(toy_embedded) -> Path:
    """The shared cache's tiny-SONAR entry (encoder.pt, decoder.pt, config.json, tokenizer.model); read only."""
    from pipeline.embed_stage import sonar_decoder

    cfg, _, ds = toy_embedded
    return sonar_decoder(cfg, ds)[1]


@pytest.fixture(scope="module")
def local_ray():
    """One small local Ray for a module's in-process extractions (ray_session reuses it)."""
    import ray

    if ray.is_initialized():
        yield
        return
    ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=200 * 1024**2,
             log_to_driver=False, logging_level="ERROR")
    yield
    ray.shutdown()


@functools.cache
def _nvidia_gpu_present() -> bool:
    smi = shutil.which("nvidia-smi")
    return smi is not None and subprocess.run([smi, "-L"], capture_output=True, timeout=60).returncode == 0


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    """A `gpu` test on a machine with an NVIDIA GPU (`nvidia-smi -L` succeeds) fails, rather than
    skips, when CUDA does not initialise there: a skip would hide a broken driver or torch build.
    (Runs before the tests' own `skipif(not torch.cuda.is_available())`; without a GPU they skip.)"""
    if item.get_closest_marker("gpu") is None or not _nvidia_gpu_present():
        return
    import torch

    if not torch.cuda.is_available():
        pytest.fail("an NVIDIA GPU is present (nvidia-smi -L) but torch.cuda.is_available() is False: fix the driver "
                    "or the torch build (python -c 'import torch; torch.cuda.init()' shows why)", pytrace=False)

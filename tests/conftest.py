"""Session-wide fixtures: the toy corpora and the one embedded cache several test modules read.

Training the tiny SONAR is the slowest setup of the suite, so it happens once per machine (an
artefact, tests/artefacts.py), and every module that can use the same corpus reads a copy of it. A test may add entries to it
(other settings, other languages) but must never change or remove the first run's entries or the
tiny SONAR: a test that does works on a `shutil.copytree` of the cache directory in its tmp_path.
"""

from __future__ import annotations

import functools
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest
from rich.console import Console

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Several workers (and their subprocesses) share the cores: one OpenMP thread each by default, and
    # idle threads that sleep rather than spin (libgomp's spinning threads outnumbering the cores
    # burned CPU the others needed). Read when torch first loads, which is after this.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from artefacts import artefact  # noqa: E402
from helpers import TOY_EMBED_SETTINGS, TOY_LANGS, TOY_VIDEOS, toy_embed_cfg  # noqa: F401, E402 (shared names)


def toy_corpus_dir(videos: int, seed: int = 0) -> Path:
    """The toy corpus of that size, an artefact built once per machine (tests/artefacts.py); read only."""
    from extract.datasets.toy import make_toy

    return artefact("toy-corpus", lambda d: make_toy(d, videos=videos, seed=seed), inputs={"videos": videos, "seed": seed},
                    code=["extract.datasets.toy"])


@pytest.fixture(scope="session")
def toy_corpus() -> Callable[[int], Path]:
    """`toy_corpus(videos)`: the toy corpus of that size (seed 0). Read only: a test that damages a
    corpus works on a `shutil.copytree` of it in its tmp_path."""
    return toy_corpus_dir


@pytest.fixture(scope="session")
def toy(toy_corpus) -> Path:
    """The TOY_VIDEOS-video toy corpus (seed 0): the demo's size, which the shared embedded cache reads."""
    return toy_corpus(TOY_VIDEOS)


def _embed_toy(d: Path, root: Path) -> None:
    """A clean first embed-targets run into d/cache, its report kept as d/report.pkl (entries as kind/key)."""
    from pipeline.embed_stage import embed_targets

    report = embed_targets(toy_embed_cfg(d / "cache", root), Console(stderr=True, quiet=True))
    report.entries = {lang: (e.kind, e.key) for lang, e in report.entries.items()}
    (d / "report.pkl").write_bytes(pickle.dumps(report))


def toy_embedded_dir(toy: Path) -> Path:
    """The artefact behind `toy_embedded` (read only): the cache of a clean embed-targets run on `toy`."""
    return artefact("toy-embedded", lambda d: _embed_toy(d, toy),
                    inputs={"toy": str(toy), "settings": TOY_EMBED_SETTINGS, "langs": TOY_LANGS},
                    code=["pipeline.embed_stage", "pipeline.dataset"])


def prebuild(which: str) -> None:
    """Build one of the artefacts most test modules wait for (a whole-suite run starts one process per
    artefact at once, beside its workers: `pytest_sessionstart`)."""
    if which == "toy-embedded":
        toy_embedded_dir(toy_corpus_dir(TOY_VIDEOS))
    else:
        from test_pipeline import VIDEOS, pipeline_cache

        pipeline_cache(toy_corpus_dir(VIDEOS))


_PREBUILD: list[subprocess.Popen] = []


def pytest_sessionstart(session):
    """On a whole-suite run (no test named), build the artefacts that several workers would wait for
    in a process of its own from the start: on a fresh machine the tiny SONAR alone is a minute, and
    the workers that need it would otherwise build it, or wait for it, one after another."""
    config = session.config
    if hasattr(config, "workerinput") or config.getoption("collectonly"):
        return
    tests = Path(__file__).resolve().parent
    if any(Path(a.split("::")[0]).resolve() != tests for a in config.args):
        return
    for which in ("toy-embedded", "pipeline-cache"):  # side by side: one after the other, the second came last
        _PREBUILD.append(subprocess.Popen([sys.executable, "-c", f"import conftest; conftest.prebuild({which!r})"],
                                          cwd=tests, env={**os.environ, "PYTHONPATH": f"{tests}:{tests.parent}",
                                                         "OMP_WAIT_POLICY": "PASSIVE"},
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))


def pytest_sessionfinish(session):
    for proc in _PREBUILD:  # done long before the tests that needed it; never left running
        proc.kill()
        proc.wait()


@pytest.fixture(scope="session")
def toy_embedded(tmp_path_factory, toy):
    """(cfg, report, dataset) of a clean first embed-targets run on `toy`: trains the tiny SONAR on the
    train split, builds deu/eng/fra targets with the tiny SONAR translator. Built once per machine
    (an artefact); each session gets its own copy of the cache, which its tests may add entries to."""
    from cache.store import Cache
    from pipeline.dataset import configured_dataset

    d = tmp_path_factory.mktemp("embedded") / "a"
    shutil.copytree(toy_embedded_dir(toy), d, symlinks=True)
    cfg = toy_embed_cfg(d / "cache", toy)
    report = pickle.loads((d / "report.pkl").read_bytes())
    report.entries = {lang: Cache(d / "cache").get(*kk) for lang, kk in report.entries.items()}
    return cfg, report, configured_dataset(cfg)


@pytest.fixture(scope="session")
def toy_tiny_sonar(toy_embedded) -> Path:
    """The shared cache's tiny-SONAR entry (encoder.pt, decoder.pt, config.json, tokenizer.model); read only."""
    from pipeline.embed_stage import sonar_decoder

    cfg, _, ds = toy_embedded
    return sonar_decoder(cfg, ds)[1]


@pytest.fixture(scope="session")
def ray_head():
    """One real Ray head (`ray start --head`) for the session's `--ray-address` runs (tests/ray_head.py)."""
    from ray_head import started_head

    with started_head() as head:
        yield head


@pytest.fixture(scope="session")
def local_ray():
    """One small local Ray for the session's in-process extractions (ray_session reuses it)."""
    import ray

    if ray.is_initialized():
        yield
        return
    ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=200 * 1024**2,
             log_to_driver=False, logging_level="ERROR")
    yield
    ray.shutdown()


def pytest_xdist_auto_num_workers(config) -> int:
    """Workers for `-n auto` (pyproject's addopts). The default run's tests spend much of their time in
    subprocesses, Ray start-up and files, so one worker more than there are cores pays (measured on 2
    cores: README, "Tests"). `-m slow` runs in this one process (0): its tests each keep the cores busy,
    time their own grace periods, and start and kill whole Ray clusters, which a Ray driver sharing the
    machine in another worker did not always survive."""
    if "slow" in (config.option.markexpr or "").replace("not slow", ""):
        return 0
    return (os.cpu_count() or 1) + 1


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

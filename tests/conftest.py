"""Session-wide fixtures: the one toy corpus and the one embedded cache several test modules read.

Training the tiny SONAR is the slowest setup of the suite, so it happens once per session, here,
and every module that can use the same corpus reads the same cache. A test may add entries to it
(other settings, other languages) but must never change or remove the first run's entries or the
tiny SONAR: a test that does works on a `shutil.copytree` of the cache directory in its tmp_path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

TOY_VIDEOS = 240
"""The demo's corpus size: 192 train sentences teach the tiny SONAR (default settings)."""
TOY_LANGS = ["deu_Latn", "eng_Latn", "fra_Latn"]
TOY_EMBED_SETTINGS: dict[str, Any] = {"translator": "sonar", "beam_size": 1, "batch_size": 128, "references": False}
"""Greedy tiny-SONAR translation (exact on this toy, and quick) of every language, the toy's own eng/fra
set aside so that the translation machinery is what the tests exercise."""


def toy_embed_cfg(cache: Path, root: Path, langs=TOY_LANGS, splits=("train", "dev", "test"), **embed: object):
    """The tiny-profile config of the shared cache; `embed` overrides TOY_EMBED_SETTINGS."""
    from pipeline.config import build_config

    embed = {**TOY_EMBED_SETTINGS, **embed}
    return build_config({
        "profile": "tiny",
        "dataset": {"name": "toy", "root": str(root), "splits": list(splits)},
        "cache": {"dir": str(cache)},
        "embed": {"langs": list(langs), "device": "cpu", **embed},
    })


@pytest.fixture(scope="session")
def toy(tmp_path_factory) -> Path:
    """The TOY_VIDEOS-video toy corpus (seed 0), written once."""
    from extract.datasets.toy import make_toy

    root = tmp_path_factory.mktemp("toy")
    make_toy(root, videos=TOY_VIDEOS, seed=0)
    return root


@pytest.fixture(scope="session")
def toy_embedded(tmp_path_factory, toy):
    """(cfg, report, dataset) of a clean first embed-targets run on `toy`: trains the tiny SONAR on the
    train split, builds deu/eng/fra targets with the tiny SONAR translator."""
    from pipeline.dataset import open_dataset
    from pipeline.embed_stage import embed_targets

    cfg = toy_embed_cfg(tmp_path_factory.mktemp("cache"), toy)
    report = embed_targets(cfg, Console(stderr=True, quiet=True))
    return cfg, report, open_dataset(cfg)


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

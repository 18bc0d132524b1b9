"""Orchestration: compute each stage's cache key, reuse the entry if it exists, else build it.

This is the only place that knows how the stages connect; each stage's own package
does the work. Keys hash exactly what determines an entry's content (see cache/keys.py),
so changing a training setting never invalidates features or targets.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from cache.errors import CacheError, SltPipeError
from cache.keys import make_key, sha256_tree
from cache.store import Cache, Entry
from pipeline.config import Config, to_dict

TOY_FORMAT = 1
FEATURES_FORMAT = 1
SONAR_TINY_FORMAT = 1
NLLB_TINY_FORMAT = 1
TRANSLATIONS_FORMAT = 1
TARGETS_FORMAT = 1


@dataclass
class ExtractReport:
    entries: dict[str, Entry] = field(default_factory=dict)
    failures: list[tuple[str, str]] = field(default_factory=list)
    computed: list[str] = field(default_factory=list)


# ------------------------------------------------------------------ dataset


def open_dataset(cfg: Config, console: Console | None = None):
    """The configured dataset; `toy` without a root is generated once inside the cache."""
    from extract.datasets import open_dataset as _open

    root = cfg.dataset.root
    if cfg.dataset.name == "toy" and root is None:
        root = toy_corpus(cfg, console).dir
    if root is None:
        raise SltPipeError(
            f"no root given for dataset {cfg.dataset.name!r}",
            fix="pass --root DIR or set [dataset] root in slt-pipe.toml (slt-pipe init --root DIR)",
        )
    return _open(cfg.dataset.name, root, cfg.dataset.splits)


def toy_corpus(cfg: Config, console: Console | None = None) -> Entry:
    from extract.datasets.toy import make_toy

    cache = Cache(cfg.cache.dir)
    inputs = {"videos": cfg.dataset.toy_videos, "seed": cfg.dataset.toy_seed}
    key = make_key("toy", inputs, format_version=TOY_FORMAT)
    entry = cache.get("datasets", key)
    if entry is None:
        if console:
            console.print(f"generating the toy corpus ({cfg.dataset.toy_videos} videos) in the cache")
        with cache.begin("datasets", key, inputs) as pending:
            make_toy(pending.dir, videos=cfg.dataset.toy_videos, seed=cfg.dataset.toy_seed)
            entry = pending.publish(dataset="toy", items=cfg.dataset.toy_videos)
    return entry


# ------------------------------------------------------------------ extract


def features_key(cfg: Config, dataset: Any, split: str) -> tuple[str, dict[str, Any]]:
    from extract.models import model_identity

    e = cfg.extract
    inputs = {
        "dataset": dataset.fingerprint(split, cfg.dataset.fingerprint),
        "models": model_identity(e),
        "preprocess": {"image_size": e.image_size, "scales": e.spatial_scales, "clip_len": e.clip_len,
                       "clip_stride": e.clip_stride, "motion_pool": e.motion_pool, "fps": e.fps},
        "dtype": e.dtype,
        "shard_videos": e.shard_videos,
    }
    return make_key("features", inputs, format_version=FEATURES_FORMAT), inputs


def extract(cfg: Config, console: Console) -> ExtractReport:
    from extract.runner import run_extraction

    cache = Cache(cfg.cache.dir)
    dataset = open_dataset(cfg, console)
    report = ExtractReport()
    for split in cfg.dataset.splits:
        key, inputs = features_key(cfg, dataset, split)
        entry = cache.get("features", key)
        if entry is None:
            console.print(f"[bold]extract[/] {dataset.name}/{split}: {len(dataset.samples[split])} videos -> features/{key}")
            with cache.begin("features", key, inputs) as pending:
                result = run_extraction(cfg.extract, dataset.samples[split], pending)
                entry = pending.publish(dataset=dataset.name, split=split, items=result.done,
                                        failures=[list(f) for f in result.skipped], config=to_dict(cfg.extract))
            report.computed.append(split)
        else:
            console.print(f"[green]cached[/] features {dataset.name}/{split}: features/{key} ({entry.items} videos)")
        report.entries[split] = entry
        for vid, reason in entry.manifest.get("failures", []):
            console.print(f"[red]skipped[/] {split}/{vid}: {reason}")
            report.failures.append((vid, reason))
    if report.failures:
        console.print(f"[red]{len(report.failures)} video(s) skipped[/]; fix them and re-run (their entry is keyed on the files, so a fixed dataset gets a fresh entry)")
    return report


def require_features(cfg: Config, dataset: Any) -> dict[str, Entry]:
    cache = Cache(cfg.cache.dir)
    out = {}
    for split in cfg.dataset.splits:
        key, _ = features_key(cfg, dataset, split)
        out[split] = cache.require("features", key, hint=f"run `slt-pipe extract --dataset {cfg.dataset.name} --split {split}` with the same profile first")
    return out

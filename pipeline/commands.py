"""Commands that messages suggest: built from the config, so they work when pasted."""

from __future__ import annotations

import json
import shlex

from pipeline.config import Config, to_dict

DATA_SECTIONS = ("dataset", "extract", "embed")
"""Sections whose settings decide what a stage's cache entries hold."""


def suggest(cfg: Config, command: str, *, splits: list[str] | None = None, langs: list[str] | None = None) -> str:
    """`slt-pipe COMMAND` that builds the cache entries `cfg` reads: same dataset, root, profile, cache,
    splits, and a --set for every data setting that differs from what the command would resolve to."""
    from pipeline.project import resolve_config

    words = ["slt-pipe", command, "--dataset", cfg.dataset.name]
    if cfg.dataset.root is not None:
        words += ["--root", str(cfg.dataset.root)]
    words += ["--profile", cfg.profile, "--cache", str(cfg.cache.dir)]
    words += ["--split", ",".join(splits or cfg.dataset.splits)]
    if langs:
        words += ["--langs", ",".join(langs)]
    base = to_dict(resolve_config(flags={"profile": cfg.profile, "dataset.name": cfg.dataset.name}))
    have = to_dict(cfg)
    flagged = {("dataset", "name"), ("dataset", "root"), ("dataset", "splits"), ("embed", "langs")}
    for section in DATA_SECTIONS:
        for name, value in have.get(section, {}).items():
            if (section, name) in flagged or base.get(section, {}).get(name) == value or isinstance(value, dict):
                continue
            words += ["--set", f"{section}.{name}={json.dumps(value)}"]
    return shlex.join(words)

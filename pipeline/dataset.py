"""The dataset every stage works on: the configured reader, or the toy corpus generated once in the cache."""

from __future__ import annotations

from rich.console import Console

from cache.errors import SltPipeError
from cache.keys import make_key
from cache.store import Cache, Entry
from pipeline.config import Config


TOY_FORMAT = 1


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

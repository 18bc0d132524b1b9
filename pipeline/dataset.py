"""The dataset every stage works on: the configured reader, or the toy corpus generated once in the cache."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from cache.errors import SltPipeError
from cache.keys import make_key
from cache.store import Cache, Entry
from pipeline.config import Config

TOY_FORMAT = 1


def configured_dataset(cfg: Config, console: Console | None = None, *, generate: bool = True):
    """The configured dataset; `toy` without a root is generated once inside the cache.

    Read-only commands pass `generate=False`: they find the toy in the cache or say how to make it.
    """
    from extract.datasets import open_dataset as _open

    return _open(cfg.dataset.name, dataset_root(cfg, console, generate=generate), cfg.dataset.splits)


def dataset_root(cfg: Config, console: Console | None = None, *, generate: bool = True) -> Path:
    """The configured dataset's root: `dataset.root`, or the toy corpus's entry in the cache (see `configured_dataset`)."""
    root = cfg.dataset.root
    if cfg.dataset.name == "toy" and root is None:
        root = (toy_corpus(cfg, console) if generate else cached_toy(cfg)).dir
    if root is None:
        raise SltPipeError(
            f"no root given for dataset {cfg.dataset.name!r}",
            fix="pass --root DIR or set [dataset] root in slt-pipe.toml (slt-pipe init --root DIR)",
        )
    return root


def toy_key(cfg: Config) -> str:
    """The cache key of the toy corpus this config generates (its size and seed)."""
    return make_key("toy", _toy_inputs(cfg), format_version=TOY_FORMAT)


def toy_entry(cfg: Config) -> Entry | None:
    """The generated toy corpus's cache entry, or None when it has not been generated (never generates)."""
    return Cache(cfg.cache.dir).get("datasets", toy_key(cfg))


def cached_toy(cfg: Config) -> Entry:
    """The generated toy corpus already in the cache; never generates it."""
    entry = toy_entry(cfg)
    if entry is None:
        raise SltPipeError(
            f"the generated toy corpus ({cfg.dataset.toy_videos} videos, seed {cfg.dataset.toy_seed}) is not in the cache",
            path=cfg.cache.dir,
            fix=f"make it with `{make_toy_command(cfg)}` (or `slt-pipe demo`), or pass --cache pointing at the cache that has it",
        )
    return entry


def make_toy_command(cfg: Config) -> str:
    """The command that generates this config's toy corpus in its cache."""
    from pipeline.config import DatasetConfig, default_cache_dir

    args = ["slt-pipe extract --dataset toy"]
    if cfg.cache.dir != default_cache_dir():
        args.append(f"--cache {cfg.cache.dir}")
    for name in ("toy_videos", "toy_seed"):
        if getattr(cfg.dataset, name) != getattr(DatasetConfig(), name):
            args.append(f"--set dataset.{name}={getattr(cfg.dataset, name)}")
    return " ".join(args)


def _toy_inputs(cfg: Config) -> dict:
    return {"videos": cfg.dataset.toy_videos, "seed": cfg.dataset.toy_seed}


def toy_corpus(cfg: Config, console: Console | None = None) -> Entry:
    from extract.datasets.toy import make_toy

    got = Cache(cfg.cache.dir).claim("datasets", toy_key(cfg), _toy_inputs(cfg), note=console.print if console else None)
    if isinstance(got, Entry):
        return got
    if console:
        console.print(f"generating the toy corpus ({cfg.dataset.toy_videos} videos) in the cache")
    with got as pending:
        make_toy(pending.dir, videos=cfg.dataset.toy_videos, seed=cfg.dataset.toy_seed)
        return pending.publish(dataset="toy", items=cfg.dataset.toy_videos)

"""The parts every `slt-pipe` command shares: the two consoles, the common options, and the one way a
command turns its options into the effective Config (pipeline.project.resolve)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from pipeline.console import console

err = console(stderr=True)
out = console(stderr=False)

ConfigOpt = Annotated[Optional[Path], typer.Option("--config", help="TOML config file layered over the project file (slt-pipe.toml).")]
ProfileOpt = Annotated[Optional[str], typer.Option("--profile", help="Model sizes: 'tiny' (seeded tiny models, CPU) or 'paper' (CLIP ViT-L/14, VideoMAE-L, SONAR, NLLB-200).")]
DatasetOpt = Annotated[Optional[str], typer.Option("--dataset", help="Dataset reader: toy, phoenix, csl-daily or how2sign.")]
RootOpt = Annotated[Optional[Path], typer.Option("--root", help="Dataset root (PHOENIX: the release folder or PHOENIX-2014-T/). Toy with no root is generated in the cache.")]
CacheOpt = Annotated[Optional[Path], typer.Option("--cache", help="Cache directory (default $SLT_PIPE_CACHE or ~/.cache/slt-pipe).")]
SplitOpt = Annotated[Optional[str], typer.Option("--split", help="Comma-separated splits, e.g. train,dev,test.")]
SetOpt = Annotated[Optional[list[str]], typer.Option("--set", help="Override any config field: --set train.lr=1e-4 (repeatable).")]
LangsOpt = Annotated[Optional[str], typer.Option("--langs", help="Comma-separated languages: ISO 639-3 (deu,eng) or NLLB codes (deu_Latn).")]

CACHE_DIRS: set[Path] = set()
"""Cache roots this command resolved: where a Ctrl-C looks for the work it leaves."""


def resolve_options(config: Path | None = None, profile: str | None = None, dataset: str | None = None,
                    root: Path | None = None, cache: Path | None = None, split: str | None = None,
                    sets: list[str] | None = None, *, needs_dataset: bool = False, **flags: Any):
    """The effective config and its layers (notes about them go to stderr); `needs_dataset` refuses to
    guess a dataset nobody chose. `flags`: dotted field -> a command's own option (None: not given)."""
    from pipeline.project import require_dataset, resolve

    flat = {"profile": profile, "dataset.name": dataset, "dataset.root": root, "cache.dir": cache}
    if split:
        flat["dataset.splits"] = split
    flat.update(flags)
    resolved = resolve(config_file=config, flags=flat, sets=sets)
    CACHE_DIRS.add(resolved.config.cache.dir)
    from cache.keys import use_memo_dir

    use_memo_dir(resolved.config.cache.dir)  # the weight-hash memo lives in the cache the command names
    for note in resolved.notes:
        err.print(f"[yellow]note[/]: {note}", highlight=False)
    if needs_dataset:
        require_dataset(resolved)
    return resolved


def config_of(*args: Any, **kwargs: Any):
    """The effective Config of these options (`resolve_options`)."""
    return resolve_options(*args, **kwargs).config

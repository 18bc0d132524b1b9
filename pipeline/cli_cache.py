"""`slt-pipe cache ...`: list, verify, clean and summarise the content-addressed cache (what to remove is
cache.gc's plan; this module prints and applies it)."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from pipeline.cli_options import (
    CacheOpt,
    ConfigOpt,
    DatasetOpt,
    ProfileOpt,
    RootOpt,
    SetOpt,
    SplitOpt,
    config_of,
    err,
    out,
)

cache_app = typer.Typer(no_args_is_help=True, help="Inspect, verify and clean the content-addressed cache.",
                        rich_markup_mode=None)


@cache_app.command("ls")
def cache_ls(
    cache: CacheOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON lines instead of a table.")] = False,
) -> None:
    """List entries: kind, key, dataset, what (split, import name or language), items, size, complete."""
    from cache.files import human_bytes
    from cache.store import Cache

    cfg = config_of(cache=cache)
    rows = Cache(cfg.cache.dir).listing()
    if as_json:
        for r in rows:
            print(json.dumps(r))
        return
    table = Table(title=f"cache {cfg.cache.dir}")
    for col in ("kind", "key", "dataset", "what", "items", "size", "complete", "created"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["kind"], r["key"], str(r["dataset"]), r["what"], str(r["items"]), human_bytes(r["bytes"]),
                      "yes" if r["complete"] else "[red]no[/]", r["created"])
    out.print(table)


@cache_app.command("verify")
def cache_verify(cache: CacheOpt = None) -> None:
    """Re-hash every complete entry's files against its manifest; exit 1 on any mismatch."""
    from cache.store import Cache, Entry

    cfg = config_of(cache=cache)
    c = Cache(cfg.cache.dir)
    bad = 0
    for e in c.entries():
        if not isinstance(e, Entry):
            continue
        problems = c.verify(e)
        bad += bool(problems)
        status = "[green]ok[/]" if not problems else "[red]CORRUPT[/]"
        out.print(f"{status} {e.kind}/{e.key}")
        for p in problems:
            out.print(f"   {p}")
    if bad:
        err.print(f"{bad} corrupt entr{'y' if bad == 1 else 'ies'}: remove with "
                  f"`slt-pipe cache gc --corrupt --cache {cfg.cache.dir}` and re-run the stage", highlight=False)
        raise typer.Exit(1)


@cache_app.command("gc")
def cache_gc(
    cache: CacheOpt = None,
    corrupt: Annotated[bool, typer.Option("--corrupt", help="Also remove complete entries whose checksums fail.")] = False,
    partial: Annotated[bool, typer.Option("--partial", help="Also remove interrupted entries that hold finished work (the next run of their stage would resume from it).")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only print what would be removed and what is kept, and why.")] = False,
) -> None:
    """Remove abandoned entries and leftovers; keep what can resume (unless --partial) or is being built."""
    from cache.gc import plan_gc
    from cache.store import Cache

    cfg = config_of(cache=cache)
    c = Cache(cfg.cache.dir)
    plan = plan_gc(c, corrupt=corrupt, partial=partial)
    for path, why in plan.keep:
        out.print(f"keep {path}  ({why})", highlight=False)
    for path, why in plan.remove:
        out.print(f"{'would remove' if dry_run else 'removing'} {path}  ({why})", highlight=False)
        if not dry_run:
            c.remove(path)
    out.print(plan.summary(dry_run=dry_run), highlight=False)


@cache_app.command("stats")
def cache_stats(
    config: ConfigOpt = None,
    profile: ProfileOpt = None,
    dataset: DatasetOpt = None,
    root: RootOpt = None,
    cache: CacheOpt = None,
    split: Annotated[str, typer.Option("--split", help="Split whose feature entry to summarise.")] = "train",
    sets: SetOpt = None,
) -> None:
    """Per-dimension mean/std of a feature entry, computed with dask over the Zarr shards."""
    from pipeline import extract_stage

    cfg = config_of(config, profile, dataset, root, cache, split, sets, needs_dataset=True)
    extract_stage.feature_stats(cfg, split, console=out)


@cache_app.command("migrate")
def cache_migrate(
    config: ConfigOpt = None,
    profile: ProfileOpt = None,
    dataset: DatasetOpt = None,
    root: RootOpt = None,
    cache: CacheOpt = None,
    split: SplitOpt = None,
    sets: SetOpt = None,
) -> None:
    """Split the features entries an older slt-pipe wrote (every stream in one store) into one entry
    per stream, by hard links: another stream set then reuses their encoders. Same options as
    `slt-pipe extract` (the entries of that command's settings); nothing is recomputed, and the
    old entries stay readable."""
    from pipeline.migrate_stage import migrate

    cfg = config_of(config, profile, dataset, root, cache, split, sets, needs_dataset=True)
    migrate(cfg, console=err, out=out)

"""`slt-pipe`: the command line. Thin: parse options into one Config, call a stage."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from cache.errors import SltPipeError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="SONAR-SLT sign-language translation: cached features, cached targets, a light trainer.",
    pretty_exceptions_enable=False,
    # Plain click help: boolean flags show as switches (rich help labels them <bool>), and
    # nothing is drawn in boxes that a pipe or a SLURM log would cut at 80 columns.
    rich_markup_mode=None,
)
cache_app = typer.Typer(no_args_is_help=True, help="Inspect, verify and clean the content-addressed cache.",
                        rich_markup_mode=None)
config_app = typer.Typer(no_args_is_help=True, help="Show the effective configuration.", rich_markup_mode=None)
app.add_typer(cache_app, name="cache")
app.add_typer(config_app, name="config")

LOG_WIDTH = 100_000
"""Console width when not on a terminal: tables keep whole keys and paths in pipes and log files."""


def _console(*, stderr: bool) -> Console:
    """Results go to stdout, progress and logs to stderr; text never hard-wraps outside a terminal."""
    probe = Console(stderr=stderr)
    return Console(stderr=stderr, soft_wrap=True, width=None if probe.is_terminal else LOG_WIDTH)


err = _console(stderr=True)
out = _console(stderr=False)

# ------------------------------------------------------------------ shared options

ConfigOpt = Annotated[Optional[Path], typer.Option("--config", help="TOML config file layered over the project file (slt-pipe.toml).")]
ProfileOpt = Annotated[Optional[str], typer.Option("--profile", help="Model sizes: 'tiny' (seeded tiny models, CPU) or 'paper' (CLIP ViT-L/14, VideoMAE-L, SONAR, NLLB-200).")]
DatasetOpt = Annotated[Optional[str], typer.Option("--dataset", help="Dataset reader: toy, phoenix, csl-daily or how2sign.")]
RootOpt = Annotated[Optional[Path], typer.Option("--root", help="Dataset root (PHOENIX: the release folder or PHOENIX-2014-T/). Toy with no root is generated in the cache.")]
CacheOpt = Annotated[Optional[Path], typer.Option("--cache", help="Cache directory (default $SLT_PIPE_CACHE or ~/.cache/slt-pipe).")]
SplitOpt = Annotated[Optional[str], typer.Option("--split", help="Comma-separated splits, e.g. train,dev,test.")]
SetOpt = Annotated[Optional[list[str]], typer.Option("--set", help="Override any config field: --set train.lr=1e-4 (repeatable).")]
LangsOpt = Annotated[Optional[str], typer.Option("--langs", help="Comma-separated languages: ISO 639-3 (deu,eng) or NLLB codes (deu_Latn).")]


def _config(
    config: Path | None = None,
    profile: str | None = None,
    dataset: str | None = None,
    root: Path | None = None,
    cache: Path | None = None,
    split: str | None = None,
    sets: list[str] | None = None,
    *,
    needs_dataset: bool = False,
    **flags: Any,
):
    """The effective Config; `needs_dataset` refuses to guess a dataset nobody chose."""
    from pipeline.project import require_dataset

    resolved = _resolve(config, profile, dataset, root, cache, split, sets, **flags)
    if needs_dataset:
        require_dataset(resolved)
    return resolved.config


_CACHE_DIRS: set[Path] = set()
"""Cache roots this command resolved: where a Ctrl-C looks for the work it leaves."""


def _resolve(config=None, profile=None, dataset=None, root=None, cache=None, split=None, sets=None, **flags: Any):
    from pipeline.project import resolve

    flat = {"profile": profile, "dataset.name": dataset, "dataset.root": root, "cache.dir": cache}
    if split:
        flat["dataset.splits"] = split
    flat.update(flags)
    resolved = resolve(config_file=config, flags=flat, sets=sets)
    _CACHE_DIRS.add(resolved.config.cache.dir)
    for note in resolved.notes:
        err.print(f"[yellow]note[/]: {note}", highlight=False)
    return resolved


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        print(f"slt-pipe {version('slt-pipe')}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", help="Also show Ray's and other libraries' own warnings and logs (sets SLT_PIPE_VERBOSE=1).")] = False,
) -> None:
    """SONAR-SLT sign-language translation: cached features, cached targets, a light trainer."""
    if verbose:
        os.environ["SLT_PIPE_VERBOSE"] = "1"


def main() -> None:
    started = time.time()
    try:
        app()
    except SltPipeError as e:
        err.print(f"[bold red]error:[/] {e.render()}", highlight=False)
        sys.exit(2)
    except (KeyboardInterrupt, SystemExit) as e:
        # typer turns Ctrl-C into a silent exit 130; say what was kept and how to resume.
        if isinstance(e, SystemExit) and e.code != 130:
            raise
        err.print(f"[yellow]interrupted[/]: {_interrupted_summary(started)}", highlight=False)
        sys.exit(130)
    except OSError as e:
        if e.errno == 28:  # ENOSPC: the partial entry is kept; nothing half-written is published
            err.print(f"[bold red]error:[/] disk full writing {e.filename or 'the cache'}\n  fix: free space or point --cache at a larger disk, then re-run (finished work is kept)")
            sys.exit(2)
        raise


def _interrupted_summary(started: float) -> str:
    """What a Ctrl-C leaves: the entries this command was building, which the same command resumes."""
    from cache.store import Cache

    kept = []
    for root in _CACHE_DIRS:
        for e in Cache(root).entries():
            if not isinstance(e, tuple) or not e[2].name.endswith(".partial"):
                continue
            files = [p for p in e[2].rglob("*") if p.is_file()]
            if files and max(p.stat().st_mtime for p in files) >= started:
                kept.append(f"{e[0]}/{e[1]} ({len(files)} finished files)")
    done = f"kept the finished work of {', '.join(kept)}; " if kept else "nothing was half-written; "
    return done + "run the same command again to resume"


# ------------------------------------------------------------------ project and config


@app.command()
def init(
    dataset: DatasetOpt = "toy",
    root: RootOpt = None,
    profile: ProfileOpt = "tiny",
    langs: LangsOpt = "deu,eng,fra",
    cache: CacheOpt = None,
    sets: Annotated[Optional[list[str]], typer.Option("--set", help="Also pin this field in the project file: --set train.lr=1e-4 (repeatable).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing slt-pipe.toml.")] = False,
) -> None:
    """Write slt-pipe.toml in the working directory with only what you choose here.

    Profiles and training presets fill in everything else, so a later `--profile paper`
    really switches every model (`config show --explain` says where each value comes from).
    """
    from extract.datasets import dataset_spec
    from extract.text.languages import resolve_langs
    from pipeline.config import PROJECT_FILE, PROFILES, build_config, parse_override
    from pipeline.project import PROJECT_HEADER

    path = Path(PROJECT_FILE)
    if path.exists() and not force:
        raise SltPipeError("already exists", path=path.resolve(), fix="edit it, or pass --force to overwrite")
    name = dataset or "toy"
    dataset_spec(name)  # an unknown name: the one error, with the close match
    if profile not in PROFILES:
        raise SltPipeError(f"unknown profile {profile!r}", fix=f"use one of: {', '.join(PROFILES)}")
    if root is not None and not root.expanduser().is_dir():
        raise SltPipeError("dataset root is not a directory", path=root.expanduser().resolve(),
                           fix="pass --root pointing at the unpacked release")
    if root is None and name != "toy":
        raise SltPipeError(f"dataset {name!r} needs --root", fix=f"pass --root pointing at the unpacked {name} release")
    layer: dict[str, Any] = {"profile": profile, "dataset": {"name": name}, "embed": {"langs": resolve_langs(langs or "")}}
    if root:
        layer["dataset"]["root"] = str(root.expanduser().resolve())
    if cache:
        layer["cache"] = {"dir": str(cache.expanduser().resolve())}
    for text in sets or []:
        for section, values in parse_override(text).items():
            layer.setdefault(section, {}).update(values) if isinstance(values, dict) else layer.update({section: values})
    build_config(layer)  # every --set must name a real field with a valid value
    path.write_text(PROJECT_HEADER + "\n" + _layer_toml(layer))
    out.print(f"wrote {path.resolve()}", highlight=False)


def _layer_toml(layer: dict[str, Any]) -> str:
    top = [f"{k} = {json.dumps(v)}" for k, v in layer.items() if not isinstance(v, dict)]
    lines = [*top, ""]
    for section, values in layer.items():
        if isinstance(values, dict):
            lines += [f"[{section}]", *(f"{k} = {json.dumps(v)}" for k, v in values.items()), ""]
    return "\n".join(lines)


@config_app.command("show")
def config_show(
    config: ConfigOpt = None,
    profile: ProfileOpt = None,
    dataset: DatasetOpt = None,
    root: RootOpt = None,
    cache: CacheOpt = None,
    sets: SetOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of TOML.")] = False,
    explain: Annotated[bool, typer.Option("--explain", help="Print every field with the layer its value comes from (default, profile, preset, project file, --config, a flag, --set).")] = False,
    presets: Annotated[bool, typer.Option("--presets", help="List the training presets (train.preset: paper-spamo, generic, tiny): every value and where it comes from.")] = False,
) -> None:
    """Print the effective config (profile <- $SLT_PIPE_CACHE <- slt-pipe.toml <- --config <- flags <- --set)."""
    from pipeline.config import flat_fields, to_dict, to_toml

    if presets:
        from train.presets_table import presets_text

        print(presets_text())
        return
    resolved = _resolve(config, profile, dataset, root, cache, sets=sets)
    cfg = resolved.config
    if explain:
        where = resolved.origins()
        if where.get("cache.dir") == "default" and os.environ.get("SLT_PIPE_CACHE"):
            where["cache.dir"] = "$SLT_PIPE_CACHE"
        values = flat_fields(cfg)
        if as_json:
            print(json.dumps({k: {"value": str(v) if isinstance(v, Path) else v, "from": where[k]}
                              for k, v in values.items()}, indent=2))
            return
        for k, v in values.items():
            print(f"{k} = {json.dumps(str(v) if isinstance(v, Path) else v)}    # {where[k]}")
        return
    if as_json:
        print(json.dumps(to_dict(cfg), indent=2))
    else:
        print(to_toml(cfg))


def _train_help() -> str:
    """`train --help`: the paper settings (preset paper-spamo) and where each comes from."""
    from train.presets_table import train_help

    return train_help()


# ------------------------------------------------------------------ data


@app.command("make-toy")
def make_toy_cmd(
    out_dir: Annotated[Path, typer.Option("--out", help="Directory to write the toy corpus into (PHOENIX-2014-T release layout).")],
    videos: Annotated[int, typer.Option("--videos", help="Number of videos (split ~80/10/10).")] = 480,
    seed: Annotated[int, typer.Option("--seed", help="Seed; the same seed gives byte-identical files.")] = 0,
    assets: Annotated[Optional[Path], typer.Option("--assets", help="Also write the toy's models in the formats real users hold (CLIP and VideoMAE transformers snapshots, SONAR fairseq2 checkpoints + asset cards, an NLLB snapshot) and ASSETS/rehearsal.toml, a config that runs --profile paper on the toy.")] = None,
    cache: CacheOpt = None,
    sets: Annotated[Optional[list[str]], typer.Option("--set", help="With --assets: embed.* fields of the tiny text models, e.g. --set embed.tiny_sonar_steps=400 (repeatable).")] = None,
) -> None:
    """Generate the deterministic toy corpus: weather-forecast sentences signed by procedural motions."""
    from extract.datasets.toy import make_toy
    from pipeline.config import parse_override

    root = make_toy(out_dir, videos=videos, seed=seed)
    out.print(f"toy corpus: {root}\nread it with: --dataset toy --root {out_dir}")
    if assets is None:
        return
    from pipeline.rehearsal import make_assets

    embed: dict[str, Any] = {}
    for text in sets or []:
        layer = parse_override(text)
        if set(layer) != {"embed"}:
            raise SltPipeError(f"--set {text}: make-toy only takes embed.* fields",
                               fix="set other fields in the rehearsal config or on the later commands")
        embed.update(layer["embed"])
    toml = make_assets(root, assets, cache, err, **embed)
    cards = assets.resolve() / "sonar" / "cards"
    out.print(f"rehearsal config: {toml}\nrun the paper profile on the toy with:\n"
              f"  export FAIRSEQ2_USER_ASSET_DIR={cards}\n"
              f"  slt-pipe extract --config {toml}\n  slt-pipe embed-targets --config {toml} --langs deu,eng,fra\n"
              f"  slt-pipe train --config {toml} --out runs/rehearsal\n  slt-pipe evaluate --run runs/rehearsal --split test")


@app.command()
def extract(
    config: ConfigOpt = None,
    profile: ProfileOpt = None,
    dataset: DatasetOpt = None,
    root: RootOpt = None,
    cache: CacheOpt = None,
    split: SplitOpt = None,
    ray_address: Annotated[Optional[str], typer.Option("--ray-address", help="Join an existing Ray cluster (e.g. auto or ray://head:10001) instead of starting a local one.")] = None,
    workers: Annotated[Optional[int], typer.Option("--workers", help="Model workers: unset = Ray actors, one per GPU (or one per node without GPUs); N = N Ray actors; 0 = in this process, without Ray (decoding on threads beside the model; same features).")] = None,
    sets: SetOpt = None,
) -> None:
    """Compute ViT (per frame) and VideoMAE (per clip) features into Zarr shards in the cache."""
    from pipeline import extract_stage

    cfg = _config(config, profile, dataset, root, cache, split, sets, **{"extract.ray_address": ray_address, "extract.workers": workers}, needs_dataset=True)
    report = extract_stage.extract(cfg, console=err)
    _exit_on_failures(report)


@app.command("embed-targets")
def embed_targets(
    config: ConfigOpt = None,
    profile: ProfileOpt = None,
    dataset: DatasetOpt = None,
    root: RootOpt = None,
    cache: CacheOpt = None,
    split: SplitOpt = None,
    langs: LangsOpt = None,
    translator: Annotated[Optional[str], typer.Option("--translator", help="Translate references with 'nllb' or 'sonar' (encode source, decode target).")] = None,
    allow_poor_translations: Annotated[bool, typer.Option("--allow-poor-translations", help="Publish a language whose translations fail the quality gates (empty, wrong script, repetitive, length outliers) anyway; its manifest says so.")] = False,
    ray_address: Annotated[Optional[str], typer.Option("--ray-address", help="Translate and embed on Ray workers of an existing cluster (auto, HOST:PORT or ray://HOST:10001), one per GPU unless --workers says otherwise.")] = None,
    workers: Annotated[Optional[int], typer.Option("--workers", help="Ray workers that translate and embed chunk by chunk (a local Ray without --ray-address); 0 = in this process. Same bytes either way.")] = None,
    sets: SetOpt = None,
) -> None:
    """Translate references into every language (NLLB) and store SONAR embeddings in HDF5."""
    from pipeline import embed_stage

    # unset, not False: a config file's embed.allow_poor_translations = true still holds
    cfg = _config(config, profile, dataset, root, cache, split, sets, **{"embed.langs": langs, "embed.translator": translator,
                                                                          "embed.allow_poor_translations": allow_poor_translations or None,
                                                                          "embed.ray_address": ray_address, "embed.workers": workers},
                  needs_dataset=True)
    report = embed_stage.embed_targets(cfg, console=err)
    _exit_on_failures(report)


@app.command(help=_train_help())
def train(
    config: ConfigOpt = None,
    profile: ProfileOpt = None,
    dataset: DatasetOpt = None,
    root: RootOpt = None,
    cache: CacheOpt = None,
    langs: LangsOpt = None,
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="Run directory (checkpoints, metrics, plots).")] = None,
    steps: Annotated[Optional[int], typer.Option("--steps", help="Optimiser steps.")] = None,
    max_minutes: Annotated[Optional[float], typer.Option("--max-minutes", help="Stop after this wall-clock budget.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the run directory's last checkpoint.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Clear an existing run in --out first (without this or --resume, an existing run is refused, so two runs never mix).")] = False,
    shuffle_targets: Annotated[bool, typer.Option("--shuffle-targets", help="Control run: pair videos with wrong targets.")] = False,
    init_visual_block: Annotated[Optional[str], typer.Option("--init-visual-block", help="Start the visual block from a slt-pipe run dir, its checkpoint, or a state-dict file (= --set train.init_visual_block=PATH); copied into the run.")] = None,
    sets: SetOpt = None,
) -> None:
    """Train the visual block and LoRA SONAR decoder on cached features and targets only (help: _train_help)."""
    from pipeline import train_stage

    cfg = _config(
        config, profile, dataset, root, cache, None, sets,
        **{"embed.langs": langs, "train.out": out_dir, "train.steps": steps, "train.max_minutes": max_minutes,
           "train.shuffle_targets": shuffle_targets or None, "train.init_visual_block": init_visual_block},
        needs_dataset=True,
    )
    train_stage.train(cfg, resume=resume, overwrite=overwrite, console=err)


@app.command()
def evaluate(
    run: Annotated[Path, typer.Option("--run", help="Run directory written by `slt-pipe train`.")],
    split: Annotated[str, typer.Option("--split", help="Split to evaluate.")] = "test",
    langs: Annotated[Optional[str], typer.Option("--langs", help="Languages to decode into (deu, eng_Latn, ...; default: every language the run has targets for). One the dataset has no text in is scored zero-shot: cross-lingually against the source-language references (SONAR similarity, BLASER-QE), and against its machine translations where the cache has them, labelled so.")] = None,
    bleurt: Annotated[Optional[str], typer.Option("--bleurt", help="BLEURT in PyTorch: a Hugging Face snapshot folder or hub id in the local HF cache (lucadiliello/BLEURT-20, or -D12/-D6/-D3); nothing is downloaded. Default: no BLEURT.")] = None,
    blaser: Annotated[str, typer.Option("--blaser", help="BLASER 2.0 fairseq2 cards to score with, comma-separated (each used when its weights are on disk, said when not), or 'none'. Needs the real SONAR encoder (1024-d embeddings).")] = "blaser_2_0_ref,blaser_2_0_qe",
    case: Annotated[Optional[str], typer.Option("--case", help="Headline BLEU casing: auto (the dataset's published tables: lower-cased for PHOENIX-2014T, as SpaMo), lc or mixed; default: the run's train.bleu_case. Both are in scores_SPLIT.json.")] = None,
    machine_references: Annotated[bool, typer.Option("--machine-references", help="In a language that has true references, also score the rows whose only reference is a machine translation (labelled so). A language with no true references is always scored zero-shot, and against its machine translations where cached.")] = False,
) -> None:
    """Decode every video of a split into each language and score it: BLEU, chrF, SONAR similarity, BLASER, BLEURT (each with what produced it), per-sample scores in a predictions TSV. The table goes to stdout, progress to stderr."""
    from pipeline import train_stage

    models = [] if blaser.strip().lower() == "none" else [b.strip() for b in blaser.split(",") if b.strip()]
    train_stage.evaluate(run, split=split, langs=langs, bleurt=bleurt, blaser=models, console=err, out=out, case=case,
                         machine_references=machine_references)


@app.command()
def translate(
    run: Annotated[Path, typer.Option("--run", help="Run directory written by `slt-pipe train`.")],
    video: Annotated[Path, typer.Option("--video", help="A frame folder (PNG/JPEG) or an mp4.")],
    lang: Annotated[str, typer.Option("--lang", help="Output language (deu, eng_Latn, ...).")] = "deu",
) -> None:
    """Translate one video: features computed on the fly with the run's extractor config. The text goes to stdout, logs to stderr."""
    import contextlib

    from pipeline import train_stage

    with contextlib.redirect_stdout(sys.stderr):  # whatever a model prints while loading is a log line
        text = train_stage.translate_video(run, video, lang)
    print(text)


@app.command()
def demo(
    cache: CacheOpt = None,
    out_dir: Annotated[Path, typer.Option("--out", help="Run directory.")] = Path("runs/demo"),
    videos: Annotated[int, typer.Option("--videos", help="Toy corpus size (split 80/10/10; dev and test hold out gloss combinations).")] = 480,
    max_minutes: Annotated[float, typer.Option("--max-minutes", help="Training budget in minutes (the run stops at the next step after it).")] = 8.0,
    control: Annotated[bool, typer.Option("--control", help="Also train the shuffled-targets control and show its BLEU beside the real run's.")] = False,
    sets: SetOpt = None,
) -> None:
    """make-toy -> extract -> embed-targets -> train -> evaluate on the tiny profile, end to end."""
    from pipeline import train_stage

    cfg = _config(None, "tiny", "toy", None, cache, None, sets, **{"dataset.toy_videos": videos, "train.out": out_dir, "train.max_minutes": max_minutes})
    train_stage.demo(cfg, console=err, out=out, control=control)


@app.command()
def ablate(
    grid: Annotated[Optional[Path], typer.Option("--config", help="Grid TOML: [base] config, [variants] name = [\"section.field=value\", ...], optional [ablate] seeds/baseline/langs; or a shipped grid by name: alignment (MSE vs MSE + cosine), augmentation (none / multilingual / video / coupled), zero-shot (German targets only, scored in deu/eng/fra). Default: full, no-cos, no-ae, no-video-aug, no-multilingual, mse-only, langs=deu.")] = None,
    out_dir: Annotated[Path, typer.Option("--out", help="Directory for the per-trial runs, results.{md,csv,json}, summary.{md,csv} and results.png.")] = Path("runs/ablation"),
    seeds: Annotated[Optional[int], typer.Option("--seeds", help="Train every variant this many times (train.seed, +1, ...); the summary gives mean and std, and marks differences from the baseline a paired bootstrap finds significant (p < 0.05), with the p-value. Default: the grid's [ablate] seeds, else 1.")] = None,
    profile: ProfileOpt = None,
    dataset: DatasetOpt = None,
    root: RootOpt = None,
    cache: CacheOpt = None,
    ray_address: Annotated[Optional[str], typer.Option("--ray-address", help="Run the trials on an existing Ray cluster instead of a local one.")] = None,
    parallel: Annotated[Optional[int], typer.Option("--parallel", help="Trials at once (default: one per GPU, else one per CPU core).")] = None,
    sets: SetOpt = None,
) -> None:
    """Run training variants that all read the same cached features and targets; compare them (mean, std, significance)."""
    from pipeline import ablate_stage

    from pipeline.config import load_toml
    from pipeline.project import require_dataset

    grid = ablate_stage.grid_path(grid)
    grid_names_dataset = grid is not None and "name" in load_toml(grid).get("base", {}).get("dataset", {})
    resolved = _resolve(None, profile, dataset, root, cache, None, sets, **{"extract.ray_address": ray_address})
    if not grid_names_dataset:
        require_dataset(resolved)
    ablate_stage.run_ablation(resolved.config, grid, out_dir, console=err, parallel=parallel, layers=resolved.layers,
                              seeds=seeds)


@app.command()
def doctor(
    config: ConfigOpt = None,
    profile: ProfileOpt = None,
    dataset: DatasetOpt = None,
    root: RootOpt = None,
    cache: CacheOpt = None,
    split: SplitOpt = None,
    ray_address: Annotated[Optional[str], typer.Option("--ray-address", help="Check that this Ray cluster (HOST:PORT, ray://HOST:PORT or auto) accepts connections (nothing is started or joined).")] = None,
    sets: SetOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the rows as JSON instead of the table.")] = False,
) -> None:
    """Pre-flight check of the configured profile: weights, SONAR cards, NLLB, dataset, disk, Ray, device.

    Nothing heavy runs (no model is built, no download). Exit 1 when a row is FAIL (a blocker).
    """
    from rich.markup import escape

    from pipeline import doctor as doc

    cfg = _config(config, profile, dataset, root, cache, split, sets, **{"extract.ray_address": ray_address})
    rows = doc.run_checks(cfg)
    if as_json:
        print(json.dumps(doc.report(cfg, rows), indent=2))
    else:
        table = Table(title=f"slt-pipe doctor: profile {cfg.profile}, dataset {cfg.dataset.name}", show_lines=True)
        for col, ratio in (("check", 2), ("status", 1), ("detail", 6), ("fix", 4)):
            table.add_column(col, overflow="fold", ratio=ratio, min_width=6 if col == "status" else None)
        colour = {doc.OK: "green", doc.WARN: "yellow", doc.FAIL: "bold red"}
        for r in rows:
            table.add_row(escape(r.check), f"[{colour[r.status]}]{r.status}[/]", escape(r.detail), escape(r.fix or ""))
        out.print(table, highlight=False)
        blockers = sum(r.blocker for r in rows)
        out.print(f"{blockers} blocker{'s' if blockers != 1 else ''}" if blockers else "no blockers", highlight=False)
    if any(r.blocker for r in rows):
        raise typer.Exit(1)


@app.command("report")
def report_cmd(
    run: Annotated[Path, typer.Option("--run", help="Run directory written by `slt-pipe train` (or an ablation's runs/VARIANT, runs/VARIANT/seedN).")],
    out_file: Annotated[Optional[Path], typer.Option("--out", help="HTML file to write (default: RUN/report.html).")] = None,
    ablation: Annotated[Optional[Path], typer.Option("--ablation", help="Ablation directory (`slt-pipe ablate --out`) whose summary.csv (mean, std, p over seeds; else results.csv) to include; found by itself when RUN is one of its runs.")] = None,
) -> None:
    """One self-contained offline HTML file of a run: config, cache keys, curves, scores, ablation table, every test sample (sortable, filterable). Prints its path."""
    from pipeline import report as run_report

    print(run_report.write_report(run, out_file, ablation))


# ------------------------------------------------------------------ cache


@cache_app.command("ls")
def cache_ls(
    cache: CacheOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON lines instead of a table.")] = False,
) -> None:
    """List entries: kind, key, dataset, items, size, complete."""
    from cache.store import Cache, Entry

    cfg = _config(cache=cache)
    rows = []
    for e in Cache(cfg.cache.dir).entries():
        if isinstance(e, Entry):
            rows.append({"kind": e.kind, "key": e.key, "dataset": e.manifest.get("dataset", ""), "items": e.items,
                         "bytes": e.size_bytes(), "complete": True, "created": e.manifest.get("created", "")})
        else:
            kind, key, path = e
            size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
            rows.append({"kind": kind, "key": key, "dataset": "", "items": 0, "bytes": size, "complete": False, "created": ""})
    if as_json:
        for r in rows:
            print(json.dumps(r))
        return
    table = Table(title=f"cache {cfg.cache.dir}")
    for col in ("kind", "key", "dataset", "items", "size", "complete", "created"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["kind"], r["key"], str(r["dataset"]), str(r["items"]), _human(r["bytes"]),
                      "yes" if r["complete"] else "[red]no[/]", r["created"])
    out.print(table)


@cache_app.command("verify")
def cache_verify(cache: CacheOpt = None) -> None:
    """Re-hash every complete entry's files against its manifest; exit 1 on any mismatch."""
    from cache.store import Cache, Entry

    cfg = _config(cache=cache)
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
    from cache.store import Cache, Entry

    cfg = _config(cache=cache)
    c = Cache(cfg.cache.dir)
    doomed: list[tuple[Path, str]] = []
    kept: list[tuple[Path, str]] = []
    for e in c.entries():
        if isinstance(e, Entry):
            if corrupt and c.verify(e):
                doomed.append((e.dir, "corrupt"))
            continue
        kind, key, path = e
        files = [p for p in path.rglob("*") if p.is_file()]
        if c.is_locked(kind, key):
            kept.append((path, "being built by a running slt-pipe process"))
        elif files and path.name.endswith(".partial") and not partial:
            size = _human(sum(p.stat().st_size for p in files))
            kept.append((path, f"resumable: {len(files)} finished files, {size}; the next run of its stage resumes "
                               "from it (--partial removes it)"))
        else:
            doomed.append((path, "interrupted, resumable work removed (--partial)" if files else "empty, abandoned"))
    doomed += [(p, "stale lock or interrupted deletion") for p in c.stale_files()]
    for path, why in kept:
        out.print(f"keep {path}  ({why})", highlight=False)
    for path, why in doomed:
        out.print(f"{'would remove' if dry_run else 'removing'} {path}  ({why})", highlight=False)
        if not dry_run:
            c.remove(path)
    n = len(doomed)
    out.print(f"{n} entr{'y' if n == 1 else 'ies'} {'to remove' if dry_run else 'removed'}, {len(kept)} kept", highlight=False)


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

    from pipeline.dataset import cached_toy

    cfg = _config(config, profile, dataset, root, cache, split, sets, needs_dataset=True)
    if cfg.dataset.name == "toy" and cfg.dataset.root is None:
        cached_toy(cfg)  # read-only: find the generated toy, never make it
    extract_stage.feature_stats(cfg, split, console=out)


def _exit_on_failures(report: Any) -> None:
    if getattr(report, "failures", None):
        raise typer.Exit(1)


def _human(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n:.1f} TiB"


if __name__ == "__main__":
    main()

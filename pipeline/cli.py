"""`slt-pipe`: the command line. Thin: parse options into one Config, call a stage."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from cache.errors import SltPipeError
from pipeline.cli_cache import cache_app
from pipeline.cli_exit import run_command
from pipeline.cli_help import help_class
from pipeline.cli_options import (
    CacheOpt,
    ConfigOpt,
    DatasetOpt,
    LangsOpt,
    ProfileOpt,
    RootOpt,
    SetOpt,
    SplitOpt,
    config_of,
    err,
    out,
    resolve_options,
)

TRAIN_FIELDS = {"out_dir": "train.out", "steps": "train.steps", "max_minutes": "train.max_minutes",
                "shuffle_targets": "train.shuffle_targets", "init_visual_block": "train.init_visual_block"}
"""train's own options -> the fields they set (its help shows this project's value of each)."""


def _train_help(values: dict[str, tuple[Any, str]], problem: str | None) -> str:
    from train.presets_table import train_help

    return train_help(values, problem)

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    # subcommands inherit these from the root context; help wraps at the terminal's width, up to 120
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 120},
    help="SONAR-SLT sign-language translation: cached features, cached targets, a light trainer.",
    pretty_exceptions_enable=False,
    # Plain click help: boolean flags show as switches (rich help labels them <bool>), and
    # nothing is drawn in boxes that a pipe or a SLURM log would cut at 80 columns.
    rich_markup_mode=None,
)
config_app = typer.Typer(no_args_is_help=True, help="Show the effective configuration.", rich_markup_mode=None)
app.add_typer(cache_app, name="cache")
app.add_typer(config_app, name="config")


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
    sys.argv[1:] = hoist_verbose(sys.argv[1:])
    run_command(app)


def hoist_verbose(args: list[str]) -> list[str]:
    """`--verbose` is the root's option; after a subcommand (`slt-pipe extract ... --verbose`) it means
    the same, so it moves to the front (anything after `--` stays as it is)."""
    cut = args.index("--") if "--" in args else len(args)
    if "--verbose" not in args[:cut]:
        return args
    return ["--verbose", *[a for a in args[:cut] if a != "--verbose"], *args[cut:]]


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
    from pipeline.project import init_project

    path = init_project(dataset=dataset, root=root, profile=profile, langs=langs, cache=cache, sets=sets, force=force)
    out.print(f"wrote {path.resolve()}", highlight=False)


@config_app.command("show", cls=help_class())
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
    from pipeline.config import to_dict
    from pipeline.toml_writer import to_toml

    if presets:
        from train.presets_table import presets_text

        print(presets_text())
        return
    resolved = resolve_options(config, profile, dataset, root, cache, sets=sets)
    cfg = resolved.config
    if explain:
        values = resolved.explain()
        if as_json:
            print(json.dumps({k: {"value": v, "from": where} for k, (v, where) in values.items()}, indent=2))
            return
        for k, (v, where) in values.items():
            print(f"{k} = {json.dumps(v)}    # {where}")
        return
    if as_json:
        print(json.dumps(to_dict(cfg), indent=2))
    else:
        print(to_toml(cfg))


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


@app.command(cls=help_class({"ray_address": "extract.ray_address", "workers": "extract.workers"}, needs_dataset=True))
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

    cfg = config_of(config, profile, dataset, root, cache, split, sets, **{"extract.ray_address": ray_address, "extract.workers": workers}, needs_dataset=True)
    report = extract_stage.extract(cfg, console=err, out=out)
    _exit_on_failures(report)


@app.command("import-features", cls=help_class(needs_dataset=True))
def import_features(
    source: Annotated[Path, typer.Argument(help="SpaMo's feature folder: the --save_dir of its scripts (holding clip-vit-large-patch14_feat_DS/ and mae_feat_DS/, DS = Phoenix14T, CSL-Daily or How2Sign), or the folder holding the released PHOENIX14T/ (spa_feat_p14t/, mo_feat_p14t/).", show_default=False, metavar="DIR")],
    from_format: Annotated[str, typer.Option("--from", help="Format of the files: spamo (SpaMo's .npy files, every naming: suffixes _s2wrapping / _overlap-8, none, _overlap-8-pretrained, the released folders).")] = "spamo",
    name: Annotated[str, typer.Option("--name", help="Name of the import: train, evaluate and ablate read it with --set train.features=imported:NAME.")] = "spamo",
    dtype: Annotated[str, typer.Option("--dtype", help="Storage dtype: float32 keeps SpaMo's values exactly (export gives back the same bytes); float16 halves the disk.")] = "float32",
    config: ConfigOpt = None,
    profile: ProfileOpt = None,
    dataset: DatasetOpt = None,
    root: RootOpt = None,
    cache: CacheOpt = None,
    split: SplitOpt = None,
    sets: SetOpt = None,
) -> None:
    """Import SpaMo's feature files as a features cache entry per split (every video checked: both files, widths 2048/1024, clip count, finite values; bad ones listed and skipped, exit 1)."""
    from pipeline import spamo_stage

    if from_format != "spamo":
        raise SltPipeError(f"--from {from_format!r}: unknown feature format", fix="use --from spamo")
    cfg = config_of(config, profile, dataset, root, cache, split, sets, needs_dataset=True)
    report = spamo_stage.import_features(cfg, source, name=name, dtype=dtype, console=err, out=out)
    _exit_on_failures(report)


@app.command("export-features", cls=help_class({"features": "train.features"}))
def export_features(
    out_dir: Annotated[Path, typer.Argument(help="Folder to write SpaMo's script layout into: clip-vit-large-patch14_feat_DS/{split}/{fileid}_s2wrapping.npy and mae_feat_DS/{split}/{fileid}_overlap-8.npy (float32).", show_default=False, metavar="OUT")],
    to_format: Annotated[str, typer.Option("--to", help="Format to write: spamo (what SpaMo's dataset classes read).")] = "spamo",
    features: Annotated[Optional[str], typer.Option("--features", help="Which entries, as train reads them: extracted (this config's recipe) or imported:NAME (= --set train.features=...).")] = None,
    keys: Annotated[Optional[list[str]], typer.Option("--key", help="Export this features entry instead (its manifest says dataset and split; `slt-pipe cache ls` lists keys; repeatable).")] = None,
    config: ConfigOpt = None,
    profile: ProfileOpt = None,
    dataset: DatasetOpt = None,
    root: RootOpt = None,
    cache: CacheOpt = None,
    split: SplitOpt = None,
    sets: SetOpt = None,
) -> None:
    """Write features entries as SpaMo's .npy files (its script layout), the entries train would read or the ones --key names."""
    from pipeline import spamo_stage

    if to_format != "spamo":
        raise SltPipeError(f"--to {to_format!r}: unknown feature format", fix="use --to spamo")
    cfg = config_of(config, profile, dataset, root, cache, split, sets, **{"train.features": features},
                    needs_dataset=not keys)
    spamo_stage.export_features(cfg, out_dir, keys=keys, console=err, out=out)


@app.command("embed-targets", cls=help_class({
    "translator": "embed.translator", "allow_poor_translations": "embed.allow_poor_translations",
    "ray_address": "embed.ray_address", "workers": "embed.workers"}, needs_dataset=True))
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
    cfg = config_of(config, profile, dataset, root, cache, split, sets, **{"embed.langs": langs, "embed.translator": translator,
                                                                        "embed.allow_poor_translations": allow_poor_translations or None,
                                                                        "embed.ray_address": ray_address, "embed.workers": workers},
                    needs_dataset=True)
    report = embed_stage.embed_targets(cfg, console=err, out=out)
    _exit_on_failures(report)


@app.command(cls=help_class(TRAIN_FIELDS, intro=_train_help, needs_dataset=True))
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
    """Train the visual block and LoRA SONAR decoder on cached features and targets only (help: train_help)."""
    from pipeline import train_stage

    cfg = config_of(
        config, profile, dataset, root, cache, None, sets,
        **{"embed.langs": langs, "train.out": out_dir, "train.steps": steps, "train.max_minutes": max_minutes,
           "train.shuffle_targets": shuffle_targets or None, "train.init_visual_block": init_visual_block},
        needs_dataset=True,
    )
    train_stage.train(cfg, resume=resume, overwrite=overwrite, console=err, out=out)


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

    from pipeline import translate_stage

    with contextlib.redirect_stdout(sys.stderr):  # whatever a model prints while loading is a log line
        text = translate_stage.translate_video(run, video, lang)
    print(text)


@app.command(cls=help_class())
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

    cfg = config_of(None, "tiny", "toy", None, cache, None, sets, **{"dataset.toy_videos": videos, "train.out": out_dir, "train.max_minutes": max_minutes})
    train_stage.demo(cfg, console=err, out=out, control=control)


@app.command(cls=help_class({"ray_address": "extract.ray_address"}))
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
    resolved = resolve_options(None, profile, dataset, root, cache, None, sets, **{"extract.ray_address": ray_address})
    if not grid_names_dataset:
        require_dataset(resolved)
    ablate_stage.run_ablation(resolved.config, grid, out_dir, console=err, parallel=parallel, layers=resolved.layers,
                              seeds=seeds, results=out)


@app.command(cls=help_class({"ray_address": "extract.ray_address"}))
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
    from pipeline import doctor as doc

    cfg = config_of(config, profile, dataset, root, cache, split, sets, **{"extract.ray_address": ray_address})
    rows = doc.run_checks(cfg)
    if as_json:
        print(json.dumps(doc.report(cfg, rows), indent=2))
    else:
        table, summary = doc.table(cfg, rows)
        out.print(table, highlight=False)
        out.print(summary, highlight=False)
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


def _exit_on_failures(report: Any) -> None:
    if getattr(report, "failures", None):
        raise typer.Exit(1)


if __name__ == "__main__":
    main()

"""Ablations: many training variants over one set of cached features and targets.

A grid file names a base config and the variants as `--set`-style overrides::

    # grid.toml
    [base]                      # any slt-pipe.toml content; layered over the project file
    profile = "tiny"
    [base.train]
    steps = 600

    [variants]
    full = []
    no-cos = ["train.w_cos=0"]
    no-ae = ["train.w_ae=0"]
    no-video-aug = ["train.p_video_aug=0"]
    no-multilingual = ["train.multilingual=false"]
    mse-only = ["train.w_cos=0", "train.w_ce=0", "train.w_ae=0"]
    "langs=deu" = ["embed.langs=deu"]
    # the paper's pretrained visual block vs from scratch (the run dir of an earlier training):
    pretrained-vb = ["train.init_visual_block=runs/vb-pretrain"]

Each trial copies the block it starts from into its own run directory (see
`train.visual_init`), so a trial never depends on the source run afterwards.

The caches are built once, up front, for the union of what the variants need (extraction
does not depend on training settings at all; targets are per language). Trials then run as
Ray tasks (one per GPU, or per CPU slot without one) and only *read* the caches; the
listing of cache entries before and after the trials is compared and written to the log,
so "nothing was recomputed" is a checked fact, not a promise.
"""

from __future__ import annotations

import csv
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from cache.errors import SltPipeError
from cache.store import Cache, Entry
from pipeline.config import Config, Layer, build_config, build_named, load_toml, parse_override, to_dict

DEFAULT_GRID = {
    "full": [],
    "no-cos": ["train.w_cos=0"],
    "no-ae": ["train.w_ae=0"],
    "no-video-aug": ["train.p_video_aug=0"],
    "no-multilingual": ["train.multilingual=false"],
    "mse-only": ["train.w_cos=0", "train.w_ce=0", "train.w_ae=0"],
    "langs=deu": ["embed.langs=deu"],
}
TRIAL_OBJECT_STORE = 256 * 1024 * 1024
"""Trials exchange only small result dicts through Ray."""


@dataclass
class Trial:
    name: str
    cfg: Config


def read_grid(path: Path | None, base: Config, layers: list[Layer] | None = None) -> list[Trial]:
    """Variants of `base` named in a grid file (see the module docstring); no file: DEFAULT_GRID.

    With the layers `base` was resolved from, the grid's [base] goes in just above the project
    file and --config (command-line flags still win), and profiles and presets apply as on the
    command line; without them, `base` itself is the bottom layer.
    """
    grid = load_toml(path) if path is not None else {}
    unknown = set(grid) - {"base", "variants"}
    if unknown:
        raise SltPipeError(f"unknown table(s) {sorted(unknown)} in the grid file", path=path,
                           fix="a grid file has [base] (config) and [variants] (name = [\"section.field=value\", ...])")
    trials = []
    for name, overrides in (grid.get("variants") or DEFAULT_GRID).items():
        if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
            raise SltPipeError(f"variant {name!r} must be a list of overrides", path=path,
                               fix=f'write {name} = ["train.w_cos=0"]')
        variant = [(f"variant {name}: {o}", parse_override(o)) for o in overrides]
        grid_base = ("grid [base]", grid.get("base", {}))
        if layers is None:
            below, above = [("base config", to_dict(base))], []
        else:
            files = [layer for layer in layers if layer[0].startswith(("project file", "--config"))]
            below, above = files, [layer for layer in layers if layer not in files]
        trials.append(Trial(name, build_named(*below, grid_base, *above, *variant)))
    return trials


def cache_listing(cache_dir: Path) -> dict[str, str]:
    """kind/key -> creation time of every complete entry (the before/after evidence)."""
    return {f"{e.kind}/{e.key}": e.manifest.get("created", "") for e in Cache(cache_dir).entries() if isinstance(e, Entry)}


def prepare_caches(trials: list[Trial], console: Console) -> None:
    """Build (or find) every cache entry any trial reads, once per distinct data configuration."""
    from pipeline import embed_stage, extract_stage

    seen: set[str] = set()
    for t in trials:
        full = to_dict(t.cfg)
        data = json.dumps({k: full[k] for k in ("profile", "dataset", "cache", "extract", "embed")}, sort_keys=True)
        if data in seen:
            continue
        seen.add(data)
        report = extract_stage.extract(t.cfg, console)
        if report.failures:
            raise SltPipeError(f"{len(report.failures)} video(s) failed to extract", fix="fix them (listed above) and re-run")
        embed_stage.embed_targets(t.cfg, console)


def run_trial(name: str, cfg_dict: dict[str, Any], threads: int) -> dict[str, Any]:
    """One training run and its test scores (runs inside a Ray worker or in-process)."""
    import torch

    from pipeline import train_stage

    torch.set_num_threads(threads)
    cfg = build_config(cfg_dict)
    quiet = Console(stderr=True, quiet=True)
    t0 = time.monotonic()
    train_stage.train(cfg, overwrite=True, console=quiet)  # a re-run trial replaces its run
    train_s = time.monotonic() - t0
    scores = train_stage.evaluate(cfg.train.out, split="test", langs=",".join(cfg.embed.langs), console=quiet)
    return {"variant": name, "train_s": round(train_s, 1), "run": str(cfg.train.out), "scores": scores}


def run_ablation(base: Config, grid: Path | None, out: Path, console: Console, *, parallel: int | None = None,
                 layers: list[Layer] | None = None) -> list[dict]:
    """Prepare the caches, run every variant on Ray, write results.{md,csv,json} and results.png in `out`."""
    trials = read_grid(grid, base, layers)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for t in trials:
        t.cfg.train.out = out / "runs" / _slug(t.name)
    prepare_caches(trials, console)
    before = cache_listing(base.cache.dir)
    rows = _run_on_ray(trials, base, console, parallel)
    after = cache_listing(base.cache.dir)
    created = sorted(set(after) - set(before))
    log = {"trials": [t.name for t in trials], "cache_entries_before": len(before),
           "cache_entries_created_during_trials": created}
    (out / "ablation_log.json").write_text(json.dumps(log, indent=2))
    console.print(f"cache entries created while the trials ran: {len(created)} (of {len(after)}; see ablation_log.json)")
    if created:
        raise SltPipeError(f"trials created cache entries {created}", path=out / "ablation_log.json",
                           fix="this is a bug: trials must only read caches; please report it")
    write_results(rows, out)
    console.print(results_table(rows))
    console.print(f"results: {out / 'results.md'}, {out / 'results.csv'}, {out / 'results.png'}")
    return rows


def _run_on_ray(trials: list[Trial], base: Config, console: Console, parallel: int | None) -> list[dict]:
    import ray

    from extract.ray_session import get, ray_session
    from rich.progress import Progress

    with ray_session(base.extract.ray_address, object_store_bytes=TRIAL_OBJECT_STORE):
        gpus = int(ray.cluster_resources().get("GPU", 0))
        cpus = int(ray.cluster_resources().get("CPU", 1))
        slots = parallel or (gpus if gpus else cpus)
        cpus_per = max(1, cpus // max(1, slots)) if not gpus else 1
        remote = ray.remote(num_cpus=cpus_per, num_gpus=1 if gpus else 0, max_retries=0)(run_trial)
        console.print(f"{len(trials)} trials on Ray: {slots} at a time ({'1 GPU' if gpus else f'{cpus_per} CPU'} each)")
        pending = {remote.remote(t.name, to_dict(t.cfg), cpus_per): t.name for t in trials}
        rows: dict[str, dict] = {}
        with Progress(console=console) as progress:
            task = progress.add_task("ablation", total=len(trials))
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                name = pending.pop(done[0])
                rows[name] = get(done[0])  # a trial's own error (a corrupt entry, say) raised as itself
                progress.update(task, advance=1, description=f"done: {name}")
        return [rows[t.name] for t in trials]


def flat_rows(rows: list[dict]) -> list[dict[str, Any]]:
    """One row per (variant, language): BLEU, chrF, BLEURT (if any), cosine to target, train time, references.

    As `evaluate`: a language is scored against the dataset's own references only (one without
    them is not in a trial's scores), so `references` says "reference" unless a score says otherwise.
    """
    out = []
    for r in rows:
        for lang, s in r["scores"].items():
            out.append({"variant": r["variant"], "lang": lang, "bleu": round(s["bleu"], 2), "chrf": round(s["chrf"], 2),
                        "bleurt": round(s["bleurt"], 4) if "bleurt" in s else "", "cosine": round(s.get("cosine", float("nan")), 4),
                        "train_s": r["train_s"], "references": s.get("references", "reference")})
    return out


def write_results(rows: list[dict], out: Path) -> None:
    flat = flat_rows(rows)
    cols = ["variant", "lang", "bleu", "chrf", "bleurt", "cosine", "train_s", "references"]
    with (out / "results.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        w.writerows(flat)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in flat]
    (out / "results.md").write_text("\n".join(lines) + "\n")
    (out / "results.json").write_text(json.dumps(rows, indent=2))
    _bar_chart(flat, out / "results.png")


def results_table(rows: list[dict]) -> Table:
    table = Table(title="ablation (test split)")
    for col in ("variant", "lang", "references", "BLEU", "chrF", "cosine", "train s"):
        table.add_column(col)
    for r in flat_rows(rows):
        table.add_row(r["variant"], r["lang"], r["references"], f"{r['bleu']:.2f}", f"{r['chrf']:.2f}",
                      f"{r['cosine']:.3f}", f"{r['train_s']:.0f}")
    return table


def _bar_chart(flat: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    variants = list(dict.fromkeys(r["variant"] for r in flat))
    langs = list(dict.fromkeys(r["lang"] for r in flat))
    width = 0.8 / max(1, len(langs))
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(variants)), 3.5))
    x = np.arange(len(variants))
    for k, lang in enumerate(langs):
        vals = [next((r["bleu"] for r in flat if r["variant"] == v and r["lang"] == lang), 0.0) for v in variants]
        ax.bar(x + k * width, vals, width, label=lang)
    ax.set_xticks(x + width * (len(langs) - 1) / 2, variants, rotation=20, ha="right")
    ax.set(ylabel="test BLEU", title="ablation")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


"""`slt-pipe ablate`: many training variants over one set of cached features and targets.

A grid file (README, "Ablations") names a base config and the variants as `--set`-style
overrides. The caches are built once, up front, for the union of what the variants need;
the trials then run as Ray tasks that only *read* them, and the cache listing before and
after is compared, so "nothing was recomputed" is a checked fact. A finished trial leaves
`trial.json` (written last, atomically), so a re-run trains only what had not finished.
Every trial is scored in the same languages; the tables and the paired test are
pipeline.ablate_results's.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from cache.errors import SltPipeError, WorkersLost
from cache.files import write_text_atomic
from cache.store import Cache, Entry
from pipeline.ablate_results import summarize, summary_table, trial_dir, write_results
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
TRIAL_FILE = "trial.json"
"""A finished trial's config, languages and result, in its run directory."""


@dataclass
class Trial:
    name: str
    cfg: Config
    seed_index: int = 0


@dataclass
class GridOptions:
    """The grid file's [ablate] table."""

    seeds: int = 1
    """Trainings per variant (train.seed, train.seed + 1, ...)."""
    baseline: str | None = None
    """The variant the others are compared with (None: the first)."""
    langs: list[str] | None = None
    """Languages every trial is evaluated in (None: the union of the trials' embed.langs)."""


GRIDS = Path(__file__).parent / "grids"
"""Grid files shipped with slt-pipe: the paper's first experiments (`--config alignment`, ...)."""


def grid_path(name: Path | None) -> Path | None:
    """A grid file, or the name of a shipped one (alignment, augmentation, zero-shot)."""
    if name is None or Path(name).exists():
        return name
    shipped = GRIDS / f"{Path(name).name}.toml"
    if shipped.is_file() and Path(name).suffix == "":
        return shipped
    known = ", ".join(sorted(p.stem for p in GRIDS.glob("*.toml")))
    raise SltPipeError("grid file not found", path=name, fix=f"pass a grid TOML or a shipped grid: {known}")


def grid_options(path: Path | None, seeds: int | None = None) -> GridOptions:
    """The [ablate] table of a grid file (unknown keys refused); `seeds` from the command line wins."""
    table = (load_toml(path) if path is not None else {}).get("ablate", {})
    unknown = set(table) - {"seeds", "baseline", "langs"}
    if unknown:
        raise SltPipeError(f"unknown key(s) {sorted(unknown)} in the grid's [ablate] table", path=path,
                           fix="[ablate] takes seeds (int), baseline (a variant name) and langs (a list)")
    langs = table.get("langs")
    if isinstance(langs, str):
        langs = [x for x in langs.split(",") if x]
    opts = GridOptions(seeds=int(seeds if seeds is not None else table.get("seeds", 1)),
                       baseline=table.get("baseline"), langs=langs)
    if opts.seeds < 1:
        raise SltPipeError(f"seeds must be at least 1 (got {opts.seeds})", path=path, fix="--seeds 3")
    return opts


def read_grid(path: Path | None, base: Config, layers: list[Layer] | None = None) -> list[Trial]:
    """Variants of `base` named in a grid file (see the module docstring); no file: DEFAULT_GRID.

    With the layers `base` was resolved from, the grid's [base] goes in just above the project
    file and --config (command-line flags still win), and profiles and presets apply as on the
    command line; without them, `base` itself is the bottom layer.
    """
    grid = load_toml(path) if path is not None else {}
    unknown = set(grid) - {"base", "variants", "ablate"}
    if unknown:
        raise SltPipeError(f"unknown table(s) {sorted(unknown)} in the grid file", path=path,
                           fix="a grid file has [base] (config), [variants] (name = [\"section.field=value\", ...]) "
                               "and optionally [ablate] (seeds, baseline, langs)")
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
    from pipeline.spamo_stage import imported_name

    seen: set[str] = set()
    for t in trials:
        full = to_dict(t.cfg)
        data = json.dumps({**{k: full[k] for k in ("profile", "dataset", "cache", "extract", "embed")},
                           "features": full["train"]["features"]}, sort_keys=True)
        if data in seen:
            continue
        seen.add(data)
        if imported_name(t.cfg) is None:  # imported features (train.features = imported:NAME) are there or not
            report = extract_stage.extract(t.cfg, console)
            if report.failures:
                raise SltPipeError(f"{len(report.failures)} video(s) failed to extract", fix="fix them (listed above) and re-run")
        embed_stage.embed_targets(t.cfg, console)


def run_trial(name: str, cfg_dict: dict[str, Any], threads: int, langs: list[str], seed_index: int = 0) -> dict[str, Any]:
    """One training run, its test scores in `langs` and its hypotheses (runs inside a Ray worker or in-process)."""
    import torch

    from pipeline import train_stage

    torch.set_num_threads(threads)
    cfg = build_config(cfg_dict)
    quiet = Console(stderr=True, quiet=True)
    t0 = time.monotonic()
    train_stage.train(cfg, overwrite=True, console=quiet)  # a re-run trial replaces its run
    train_s = time.monotonic() - t0
    scores = train_stage.evaluate(cfg.train.out, split="test", langs=",".join(langs), console=quiet)
    # the paired test needs every hypothesis: returned, not read from a path another node may not see
    predictions = {lang: _hypotheses(Path(s["tsv"])) for lang, s in scores.items() if "tsv" in s}
    result = {"variant": name, "seed": cfg.train.seed, "seed_index": seed_index, "train_s": round(train_s, 1),
              "run": str(cfg.train.out), "scores": scores, "predictions": predictions}
    # written last, atomically: its presence means the trial finished (a re-run ablation reuses it)
    write_text_atomic(Path(cfg.train.out) / TRIAL_FILE, json.dumps({"config": cfg_dict, "langs": langs, "result": result},
                                                                  default=str))
    return result


def finished_trial(t: Trial, langs: list[str]) -> dict[str, Any] | None:
    """The result of an earlier, finished run of exactly this trial (same config, same languages), or None."""
    path = Path(t.cfg.train.out) / TRIAL_FILE
    if not path.is_file():
        return None
    try:
        done = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None  # cut short (only an atomic rename writes it, but a disk may fail): train again
    same = json.loads(json.dumps(to_dict(t.cfg), default=str)) == done.get("config") and done.get("langs") == langs
    return done["result"] if same else None


def _hypotheses(path: Path) -> dict[str, list[str]]:
    from train.run_files import read_predictions

    rows = read_predictions(path)[1]
    return {"ids": [r["id"] for r in rows], "refs": [r["ref"] for r in rows], "hyps": [r["hyp"] for r in rows]}


def absolute_paths(cfg: Config) -> Config:
    """Make the paths a trial reads and writes absolute, in place: Ray workers run in another
    directory (extract.ray_session), so a relative --root or --cache would name the wrong folder."""
    if cfg.dataset.root is not None:
        cfg.dataset.root = Path(cfg.dataset.root).expanduser().resolve()
    cfg.cache.dir = Path(cfg.cache.dir).expanduser().resolve()
    cfg.train.out = Path(cfg.train.out).expanduser().resolve()
    init = cfg.train.init_visual_block
    if init is not None and Path(init).expanduser().exists():
        cfg.train.init_visual_block = str(Path(init).expanduser().resolve())
    return cfg


def expand_seeds(trials: list[Trial], seeds: int) -> list[Trial]:
    """Every variant `seeds` times, with train.seed + k; one seed keeps the variant's own run dir name."""
    if seeds == 1:
        return trials
    out = []
    for t in trials:
        for k in range(seeds):
            cfg = build_config(to_dict(t.cfg), {"train": {"seed": t.cfg.train.seed + k}})
            out.append(Trial(t.name, cfg, k))
    return out


def eval_langs(trials: list[Trial], opts: GridOptions) -> list[str]:
    from extract.text.languages import resolve_langs

    if opts.langs:
        return resolve_langs(",".join(opts.langs))
    return list(dict.fromkeys(lang for t in trials for lang in resolve_langs(",".join(t.cfg.embed.langs))))


def run_ablation(base: Config, grid: Path | None, out: Path, console: Console, *, parallel: int | None = None,
                 layers: list[Layer] | None = None, seeds: int | None = None,
                 results: Console | None = None) -> list[dict]:
    """Prepare the caches, run every variant (x seeds) on Ray, write results.{md,csv,json}, summary.{md,csv}
    and results.png in `out`. The summary table and where the files are go to `results` (stdout)."""
    from extract.ray_address import require_reachable

    require_reachable(base.extract.ray_address)  # before any cache is prepared
    opts = grid_options(grid, seeds)
    variants = read_grid(grid, base, layers)
    names = [t.name for t in variants]
    if opts.baseline is not None and opts.baseline not in names:
        raise SltPipeError(f"the grid's baseline {opts.baseline!r} is not one of its variants ({', '.join(names)})",
                           path=grid, fix=f'set [ablate] baseline = "{names[0]}" or name an existing variant')
    trials = expand_seeds(variants, opts.seeds)
    langs = eval_langs(trials, opts)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for t in trials:
        t.cfg.train.out = trial_dir(out, t.name, t.cfg.train.seed, opts.seeds)
        absolute_paths(t.cfg)
    prepare_caches(trials, console)
    before = cache_listing(base.cache.dir)
    first = trials[0].cfg
    shared = {"cache": first.cache.dir, "ablation output": out.resolve()}
    if first.dataset.root is not None:
        shared["dataset"] = first.dataset.root
    reused = {k: r for k, t in enumerate(trials) if (r := finished_trial(t, langs)) is not None}
    if reused:
        console.print(f"resuming: {len(reused)} of {len(trials)} trials finished earlier with the same config "
                      f"(their {TRIAL_FILE} is reused; delete it to train one again)")
    todo = [k for k in range(len(trials)) if k not in reused]
    done = _run_on_ray([trials[k] for k in todo], base, console, parallel, langs, shared) if todo else []
    by_index = {**reused, **dict(zip(todo, done))}
    rows = [by_index[k] for k in range(len(trials))]
    after = cache_listing(base.cache.dir)
    created = sorted(set(after) - set(before))
    log = {"trials": [f"{t.name} seed {t.cfg.train.seed}" for t in trials], "eval_langs": langs,
           "reused": [f"{trials[k].name} seed {trials[k].cfg.train.seed}" for k in sorted(reused)],
           "cache_entries_before": len(before), "cache_entries_created_during_trials": created}
    write_text_atomic(out / "ablation_log.json", json.dumps(log, indent=2), fsync=False)
    console.print(f"cache entries created while the trials ran: {len(created)} (of {len(after)}; see ablation_log.json)")
    if created:
        raise SltPipeError(f"trials created cache entries {created}", path=out / "ablation_log.json",
                           fix="this is a bug: trials must only read caches; please report it")
    summary = summarize(rows, opts.baseline or names[0])
    write_results(rows, summary, out)
    (results or console).print(summary_table(summary, opts.seeds))
    (results or console).print(f"results: {out / 'summary.md'}, {out / 'results.csv'}, {out / 'results.png'}",
                               highlight=False)
    return rows


def _run_on_ray(trials: list[Trial], base: Config, console: Console, parallel: int | None,
                langs: list[str], shared: dict[str, Path]) -> list[dict]:
    """The trials as Ray tasks; on a joined cluster every node must see `shared` (checked first)."""
    import ray

    from cache.progress import progress_bar
    from extract.faults import FaultLog
    from extract.ray_session import get, ray_session

    LOST_WORKER = (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError,
                   ray.exceptions.OutOfMemoryError, ray.exceptions.ObjectLostError)

    with ray_session(base.extract.ray_address, object_store_bytes=TRIAL_OBJECT_STORE, shared=shared):
        gpus = int(ray.cluster_resources().get("GPU", 0))
        cpus = int(ray.cluster_resources().get("CPU", 1))
        slots = parallel or (gpus if gpus else cpus)
        cpus_per = max(1, cpus // max(1, slots)) if not gpus else 1
        remote = ray.remote(num_cpus=cpus_per, num_gpus=1 if gpus else 0, max_retries=0)(run_trial)
        console.print(f"{len(trials)} trials on Ray: {slots} at a time ({'1 GPU' if gpus else f'{cpus_per} CPU'} each)")
        def start(k: int) -> Any:
            t = trials[k]
            return remote.remote(t.name, to_dict(t.cfg), cpus_per, langs, t.seed_index)

        pending = {start(k): k for k in range(len(trials))}
        rows: dict[int, dict] = {}
        with progress_bar("trials", console=console) as progress:
            # A trial whose worker died (killed, out of memory, node gone) starts again from the beginning
            # (the same seed: the same result) until it has lost extract.item_deaths workers.
            faults = FaultLog(restarts=base.extract.item_deaths - 1, item_deaths=base.extract.item_deaths,
                              say=lambda line: progress.console.print(line, highlight=False), noun="trial worker")
            task = progress.add_task("ablation", total=len(trials))
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                k = pending.pop(done[0])
                name = f"{trials[k].name} seed {trials[k].cfg.train.seed}"
                try:
                    rows[k] = get(done[0])  # a trial's own error (a corrupt entry, say) raised as itself
                except LOST_WORKER as e:
                    if faults.lost(k, e, requeued=[f"trial {name}"], blamed=f"trial {name}").poison is not None:
                        raise WorkersLost(f"trial {name} lost {base.extract.item_deaths} workers in a row; the "
                                          "trials finished before are kept",
                                          fix="run the same command again to resume (finished trials are "
                                              "reused); check the nodes' memory (`ray status`)") from None
                    pending[start(k)] = k
                    continue
                progress.update(task, advance=1, description=f"done: {name}")
        return [rows[k] for k in range(len(trials))]

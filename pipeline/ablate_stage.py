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

An optional ``[ablate]`` table sets the comparison (the command line's ``--seeds`` wins)::

    [ablate]
    seeds = 3            # train every variant with train.seed = seed, seed+1, ...
    baseline = "full"    # the variant the others are tested against (default: the first)
    langs = ["deu", "eng", "fra"]   # evaluated in every trial (default: every trial's embed.langs)

Every trial is evaluated in the same languages, so a variant trained on German targets only
is scored in English and French too (zero-shot). With several seeds, `summary.{md,csv}`
gives each variant's mean and standard deviation over its seeds, and the p-value of a paired
bootstrap against the baseline (sacrebleu's, 1000 resamples, over the pooled
(seed, sentence) pairs: every seed's hypotheses of a sentence against the same seed's of the
baseline); a difference with p < 0.05 is marked `*`.

A finished trial leaves `trial.json` (its config, languages and result, written last and
atomically) in its run directory; a re-run of the ablation reuses every trial whose config
and languages are unchanged and trains only the rest, so a crash costs only the trials
that were running.

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


SIGNIFICANCE = 0.05
"""p below this marks a difference from the baseline (`*`)."""
BOOTSTRAP_SAMPLES = 1000


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
    done = Path(cfg.train.out) / TRIAL_FILE
    tmp = done.with_name(f".{TRIAL_FILE}.tmp")
    tmp.write_text(json.dumps({"config": cfg_dict, "langs": langs, "result": result}, default=str))
    tmp.replace(done)
    return result


TRIAL_FILE = "trial.json"
"""A finished trial's config, languages and result, in its run directory."""


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
    from pipeline.report import read_predictions

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
                 layers: list[Layer] | None = None, seeds: int | None = None) -> list[dict]:
    """Prepare the caches, run every variant (x seeds) on Ray, write results.{md,csv,json}, summary.{md,csv}
    and results.png in `out`."""
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
        t.cfg.train.out = out / "runs" / slug(t.name) / (f"seed{t.cfg.train.seed}" if opts.seeds > 1 else "")
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
    (out / "ablation_log.json").write_text(json.dumps(log, indent=2))
    console.print(f"cache entries created while the trials ran: {len(created)} (of {len(after)}; see ablation_log.json)")
    if created:
        raise SltPipeError(f"trials created cache entries {created}", path=out / "ablation_log.json",
                           fix="this is a bug: trials must only read caches; please report it")
    summary = summarize(rows, opts.baseline or names[0])
    write_results(rows, summary, out)
    console.print(summary_table(summary, opts.seeds))
    console.print(f"results: {out / 'summary.md'}, {out / 'results.csv'}, {out / 'results.png'}")
    return rows


def _run_on_ray(trials: list[Trial], base: Config, console: Console, parallel: int | None,
                langs: list[str], shared: dict[str, Path]) -> list[dict]:
    """The trials as Ray tasks; on a joined cluster every node must see `shared` (checked first)."""
    import ray

    from extract.ray_session import get, ray_session
    from rich.progress import Progress

    with ray_session(base.extract.ray_address, object_store_bytes=TRIAL_OBJECT_STORE, shared=shared):
        gpus = int(ray.cluster_resources().get("GPU", 0))
        cpus = int(ray.cluster_resources().get("CPU", 1))
        slots = parallel or (gpus if gpus else cpus)
        cpus_per = max(1, cpus // max(1, slots)) if not gpus else 1
        remote = ray.remote(num_cpus=cpus_per, num_gpus=1 if gpus else 0, max_retries=0)(run_trial)
        console.print(f"{len(trials)} trials on Ray: {slots} at a time ({'1 GPU' if gpus else f'{cpus_per} CPU'} each)")
        pending = {remote.remote(t.name, to_dict(t.cfg), cpus_per, langs, t.seed_index): k for k, t in enumerate(trials)}
        rows: dict[int, dict] = {}
        with Progress(console=console) as progress:
            task = progress.add_task("ablation", total=len(trials))
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                k = pending.pop(done[0])
                rows[k] = get(done[0])  # a trial's own error (a corrupt entry, say) raised as itself
                progress.update(task, advance=1, description=f"done: {trials[k].name} seed {trials[k].cfg.train.seed}")
        return [rows[k] for k in range(len(trials))]


# ------------------------------------------------------------------ results

METRICS = (("bleu", "BLEU"), ("chrf", "chrF"), ("sonar_similarity", "SONAR sim"), ("cosine", "z cos"),
           ("xl_sonar_similarity", "x-ling SONAR sim"))
"""(score key, label) of the per-trial scores the summary aggregates; a trial without one is left out of it."""


def flat_rows(rows: list[dict]) -> list[dict[str, Any]]:
    """One row per (trial, language): BLEU, chrF, SONAR similarity, BLEURT (if any), cosine to target, train time, references.

    As `evaluate`: a language is scored against the dataset's own references; one without
    them is zero-shot (cross-lingual, and against machine translations where cached), labelled.
    """
    out = []
    for r in rows:
        for lang, s in r["scores"].items():
            out.append({"variant": r["variant"], "seed": r.get("seed", ""), "lang": lang,
                        **{key: round(s[key], 4) if key in s else "" for key, _ in METRICS},
                        "bleurt": round(s["bleurt"], 4) if "bleurt" in s else "",
                        "train_s": r["train_s"], "references": _refs_label(s)})
    return out


def _refs_label(s: dict) -> str:
    refs = s.get("references", "reference")
    if s.get("kind") == "zero-shot":
        return f"zero-shot (x-ling vs {s.get('xl_against')}" + (")" if refs == "none" else f"; {refs})")
    return refs


def summarize(rows: list[dict], baseline: str) -> list[dict[str, Any]]:
    """Per (variant, language): mean and std over seeds of every metric, and the paired-bootstrap
    p-values of BLEU and chrF against `baseline` (pooled over seeds; see the module docstring)."""
    import numpy as np

    groups: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        for lang in r["scores"]:
            groups.setdefault((r["variant"], lang), []).append(r)
    out = []
    for (variant, lang), trials in groups.items():
        row: dict[str, Any] = {"variant": variant, "lang": lang, "seeds": len(trials),
                               "references": _refs_label(trials[0]["scores"][lang])}
        for key, _ in METRICS:
            vals = [t["scores"][lang][key] for t in trials if key in t["scores"][lang]]
            if vals:
                row[f"{key}_mean"] = float(np.mean(vals))
                row[f"{key}_std"] = float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0
        row["train_s_mean"] = float(np.mean([t["train_s"] for t in trials]))
        if variant != baseline:
            row.update(paired_test([r for r in rows if r["variant"] == baseline], trials, lang))
        out.append(row)
    return out


def paired_test(base: list[dict], variant: list[dict], lang: str) -> dict[str, float]:
    """p-values (sacrebleu's paired bootstrap) of BLEU and chrF between two sets of seeds, or {} when
    either lacks references in `lang`. Seed k of one is paired with seed k of the other."""
    import sacrebleu
    from sacrebleu.significance import PairedTest

    from train.evaluate import bleu_tokenizer

    by_seed = lambda rs: {r.get("seed_index", 0): r for r in rs if "bleu" in r["scores"].get(lang, {})}  # noqa: E731
    b, v = by_seed(base), by_seed(variant)
    common = sorted(set(b) & set(v))
    if not common:
        return {}
    hyps_b, hyps_v, refs = [], [], []
    for k in common:
        pb, pv = b[k]["predictions"][lang], v[k]["predictions"][lang]
        if pb["ids"] != pv["ids"]:
            raise SltPipeError(f"{lang}: the baseline and {v[k]['variant']} were scored on different test sentences",
                               fix="evaluate both on the same cache (this is a bug if they read one)")
        hyps_b += pb["hyps"]
        hyps_v += pv["hyps"]
        refs += pb["refs"]
    if hyps_b == hyps_v:  # sacrebleu gives identical systems its smallest p ("zero difference is not chance")
        return {"p_bleu": 1.0, "p_chrf": 1.0}
    case = b[common[0]]["scores"][lang].get("case", "mixed") == "lc"
    metrics = {"BLEU": sacrebleu.metrics.BLEU(tokenize=bleu_tokenizer(lang), lowercase=case),
               "chrF": sacrebleu.metrics.CHRF(lowercase=case)}
    _, results = PairedTest([("baseline", hyps_b), ("variant", hyps_v)], metrics, [refs], test_type="bs",
                            n_samples=BOOTSTRAP_SAMPLES)()
    bleu_key = next(k for k in results if k.startswith("BLEU"))
    chrf_key = next(k for k in results if k.startswith("chrF"))
    return {"p_bleu": float(results[bleu_key][1].p_value), "p_chrf": float(results[chrf_key][1].p_value)}


def mark(row: dict, key: str) -> str:
    """'84.12 ± 1.03 *' for a metric of a summary row (`*`: p < SIGNIFICANCE against the baseline)."""
    if f"{key}_mean" not in row:
        return "-"
    digits = 2 if key in ("bleu", "chrf") else 4
    text = f"{row[f'{key}_mean']:.{digits}f}"
    if row["seeds"] > 1:
        text += f" ± {row[f'{key}_std']:.{digits}f}"
    p = row.get(f"p_{key}")
    if p is not None:
        text += f" (p={p:.3f}{' *' if p < SIGNIFICANCE else ''})"
    return text


SUMMARY_COLUMNS = ("variant", "lang", "seeds", "references", "bleu_mean", "bleu_std", "p_bleu", "chrf_mean",
                   "chrf_std", "p_chrf", "sonar_similarity_mean", "sonar_similarity_std", "cosine_mean",
                   "cosine_std", "xl_sonar_similarity_mean", "xl_sonar_similarity_std", "train_s_mean")


def write_results(rows: list[dict], summary: list[dict], out: Path) -> None:
    flat = flat_rows(rows)
    cols = ["variant", "seed", "lang", *(key for key, _ in METRICS), "bleurt", "train_s", "references"]
    with (out / "results.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        w.writerows(flat)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in flat]
    (out / "results.md").write_text("\n".join(lines) + "\n")
    (out / "results.json").write_text(json.dumps(rows, indent=2))
    with (out / "summary.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=SUMMARY_COLUMNS, extrasaction="ignore")
        w.writeheader()
        w.writerows([{c: _csv_cell(r.get(c)) for c in SUMMARY_COLUMNS} for r in summary])
    (out / "summary.md").write_text(summary_markdown(summary))
    _chart(rows, summary, out / "results.png")


def _csv_cell(value: Any) -> Any:
    return "" if value is None else round(value, 5) if isinstance(value, float) else value


def summary_markdown(summary: list[dict]) -> str:
    """One row per variant, one BLEU column per language (mean ± std over seeds, p against the baseline)."""
    langs = list(dict.fromkeys(r["lang"] for r in summary))
    variants = list(dict.fromkeys(r["variant"] for r in summary))
    at = {(r["variant"], r["lang"]): r for r in summary}
    head = ["variant", *(f"{lang} BLEU" for lang in langs), *(f"{lang} chrF" for lang in langs), "seeds"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for v in variants:
        cells = [mark(at[(v, lang)], "bleu") if (v, lang) in at else "-" for lang in langs]
        cells += [mark(at[(v, lang)], "chrf") if (v, lang) in at else "-" for lang in langs]
        seeds = max(at[(v, lang)]["seeds"] for lang in langs if (v, lang) in at)
        lines.append("| " + " | ".join([v, *cells, str(seeds)]) + " |")
    zero = sorted({r["lang"] for r in summary if r["references"].startswith("zero-shot")})
    note = (f"\n{', '.join(zero)}: zero-shot in some variant (no true references); see summary.csv for the references.\n"
            if zero else "")
    return "\n".join(lines) + "\n" + f"\nmean ± std over seeds; p: paired bootstrap against the baseline " \
                                     f"(sacrebleu, {BOOTSTRAP_SAMPLES} resamples, pooled over seeds); * p < {SIGNIFICANCE}\n" + note


def summary_table(summary: list[dict], seeds: int) -> Table:
    table = Table(title=f"ablation (test split, {seeds} seed{'s' if seeds > 1 else ''} per variant)")
    for col in ("variant", "lang", "references", "BLEU", "chrF", "SONAR sim", "z cos", "train s"):
        table.add_column(col)
    for r in summary:
        table.add_row(r["variant"], r["lang"], r["references"], mark(r, "bleu"), mark(r, "chrf"),
                      mark(r, "sonar_similarity"), mark(r, "cosine"), f"{r['train_s_mean']:.0f}")
    return table


def _chart(rows: list[dict], summary: list[dict], path: Path) -> None:
    """Mean BLEU per variant and language, the std as an error bar and every seed as a dot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    variants = list(dict.fromkeys(r["variant"] for r in summary))
    langs = list(dict.fromkeys(r["lang"] for r in summary if "bleu_mean" in r))
    at = {(r["variant"], r["lang"]): r for r in summary}
    width = 0.8 / max(1, len(langs))
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(variants)), 3.5))
    x = np.arange(len(variants))
    for k, lang in enumerate(langs):
        s = [at.get((v, lang), {}) for v in variants]
        ax.bar(x + k * width, [r.get("bleu_mean", 0.0) for r in s], width, yerr=[r.get("bleu_std", 0.0) for r in s],
               capsize=2, label=lang, alpha=0.8)
        for i, v in enumerate(variants):
            seeds = [t["scores"][lang]["bleu"] for t in rows if t["variant"] == v and "bleu" in t["scores"].get(lang, {})]
            ax.scatter([x[i] + k * width] * len(seeds), seeds, s=8, color="black", zorder=3)
    ax.set_xticks(x + width * (len(langs) - 1) / 2, variants, rotation=20, ha="right")
    ax.set(ylabel="test BLEU", title="ablation (bars: mean over seeds, lines: std, dots: seeds)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def slug(name: str) -> str:
    """A variant's run directory name."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)

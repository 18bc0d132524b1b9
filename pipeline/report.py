"""`slt-pipe report`: one self-contained, offline HTML file of a training run.

`write_report(run)` reads only the run directory (train.run_files) and its ablation, if any
(pipeline.ablate_results), and writes `run/report.html`: the configuration and the cache
entries read, the loss and dev-score curves (inline SVG, pipeline.report_chart), the scores
of every split and language with their signatures and producers, the ablation table, and
every sample of the predictions TSVs in a table the page's inline JS (report_assets/) sorts
and filters, one language at a time unless `?lang=all`. Nothing is fetched; every text is
escaped; unknown score keys and TSV columns are shown as they come; scores' confidence
intervals (K_ci95), sentence counts and warnings are shown with them. The page fits a
1400 px window: a table wider than the page scrolls inside its own box. The sample table
reads its state from the URL (`QUERY_PARAMS`), so a link, or a headless browser's
`--dump-dom`, shows a given order and filter.
"""

from __future__ import annotations

import csv
import datetime as _dt
import json
import math
import re
from pathlib import Path
from typing import Any

from cache.errors import SltPipeError
from cache.files import write_bytes_atomic
from pipeline.ablate_results import RESULTS_FILE, RUNS, SUMMARY_FILE, enclosing_ablation, place_in, slug
from pipeline.report_chart import svg_chart
from pipeline.report_html import Interval, asset, esc, fmt, json_script, note, table
from train.metrics import HEADLINE
from train.run_files import (
    METRICS_FILE,
    is_number,
    prediction_files,
    read_json,
    read_metrics,
    read_predictions,
    score_files,
)

REPORT_FILE = "report.html"
RUN_MARKERS = ("config.json", "pipeline.json")
"""A run directory holds at least one of these (`slt-pipe train` writes both)."""
QUERY_PARAMS = {
    "split": "split of the sample table (default: test, else the first with predictions)",
    "lang": "the language whose columns are shown (deu_Latn, or deu), or all: every language side by side, the "
            "table scrolling sideways in its box; default: the language of `sort` (or of `score`) when it names "
            "one, else the first language",
    "sort": "column to sort by: id, or FIELD (ref, hyp, a score such as sonar_sim) of `lang` or of the first "
            "language that has it, or LANG:FIELD",
    "desc": "1: sort descending (samples without a value stay last)",
    "score": "score column the threshold applies to (as `sort`); default: the sort column if it is a score, "
             "else the first score column shown",
    "min": "keep samples whose `score` is >= this (samples without that score are dropped)",
    "max": "keep samples whose `score` is <= this",
    "q": "keep samples whose id, reference or hypothesis (of the languages shown) contains this text, any case",
}
_TRAIN_AUX = {"grad_norm", "elapsed_s"}
_FIRST_METRICS = tuple(m.key for m in HEADLINE)


def write_report(run: Path, out: Path | None = None, ablation: Path | None = None) -> Path:
    """Write the report of run directory `run` to `out` (default `run/report.html`); returns its path.

    `ablation`: an `slt-pipe ablate --out` directory whose results.csv to include; found by itself
    when `run` is one of its `runs/<variant>` directories. Missing pieces (no metrics yet, no
    scores, no predictions) are said in the report; a `run` that is not a run is an SltPipeError.
    """
    run = Path(run)
    _require_run(run)
    if ablation is not None:
        ablation = Path(ablation)
        if not (ablation / RESULTS_FILE).is_file():
            raise SltPipeError("no results.csv in the ablation directory (not an ablation, or still running)",
                               path=ablation, fix="pass the --out directory of a finished `slt-pipe ablate`")
    else:
        ablation = enclosing_ablation(run)
    out = run / REPORT_FILE if out is None else Path(out)
    if out.is_dir():
        out = out / REPORT_FILE
    out.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(out, render(run, ablation).encode("utf-8"))
    return out


def _require_run(run: Path) -> None:
    if run.is_dir() and any((run / m).is_file() for m in RUN_MARKERS):
        return
    if (run / RESULTS_FILE).is_file() and (run / RUNS).is_dir():
        fix = f"it is an ablation: pass one of its runs, e.g. --run {run / RUNS / '<variant>'} (its table comes along)"
    else:
        fix = "pass the --out directory of a `slt-pipe train` run (it holds config.json and pipeline.json)"
    what = "the run directory does not exist" if not run.exists() else "is not a slt-pipe run directory (no config.json or pipeline.json)"
    raise SltPipeError(what, path=run, fix=fix)


def _split_order(names: list[str]) -> list[str]:
    rank = {"test": 0, "dev": 1, "train": 2}
    return sorted(names, key=lambda s: (rank.get(s, 3), s))


# ------------------------------------------------------------------ sections


def _config_section(run: Path) -> str:
    parts = ["<h2>Configuration</h2>"]
    for name, what in (("config.json", "training config (TrainConfig)"), ("pipeline.json", "full pipeline config")):
        data, why = read_json(run / name)
        if data is None:
            parts.append(note(f"{why}: the {what} is not recorded"))
            continue
        parts.append(f"<details><summary>{esc(name)}: {esc(what)}</summary><pre>{esc(json.dumps(data, indent=2))}</pre></details>")
    inputs, why = read_json(run / "inputs.json")
    parts.append("<h3>Cache entries read (inputs.json)</h3>")
    if not isinstance(inputs, dict):
        parts.append(note(f"{why or 'inputs.json is not an object'}: the cache entries this run read are not recorded"))
        return "\n".join(parts)
    rows = []
    for role, entries in (("features", inputs.get("features")), ("targets", inputs.get("targets"))):
        for name, path in (entries or {}).items() if isinstance(entries, dict) else []:
            p = Path(str(path))
            entry = p.parent if p.suffix else p  # targets name their HDF5 file inside the entry
            rows.append([role, name, f"{entry.parent.name}/{entry.name}", str(path)])
    parts.append(table(["input", "split / language", "cache entry (kind/key)", "path"], rows, cls="keys")
                 if rows else note("inputs.json names no cache entries"))
    other = [[k, json.dumps(v) if isinstance(v, (dict, list)) else v] for k, v in inputs.items()
             if k not in ("features", "targets")]
    if other:
        parts.append(table(["field", "value"], other, cls="kv"))
    return "\n".join(parts)


def _series_groups(rows: list[dict]) -> list[tuple[str, dict[str, list[tuple[float, float]]], bool]]:
    """(title, {series: [(step, value)]}, markers) per chart: train losses, learning rates, the rest one by one."""
    groups: dict[str, dict[str, list[tuple[float, float]]]] = {}
    markers: dict[str, bool] = {}
    for r in rows:
        kind = str(r.get("kind", "train"))
        for key, v in r.items():
            if key in ("kind", "step") or not is_number(v) or not math.isfinite(v):
                continue
            if kind == "train":
                group = ("train: " + key if key in _TRAIN_AUX else
                         "train: learning rate" if key == "lr" or key.endswith("_lr") else "train: loss")
            else:
                group = f"{kind}: {key.split('_')[0]}"
            groups.setdefault(group, {}).setdefault(key, []).append((float(r["step"]), float(v)))
            markers[group] = kind != "train"
    return [(g, s, markers[g]) for g, s in groups.items()]


def _curves_section(run: Path) -> str:
    parts = ["<h2>Curves (metrics.jsonl)</h2>"]
    path = run / METRICS_FILE
    if not path.is_file():
        return "\n".join(parts + [note("no metrics.jsonl yet: the run has not logged a step "
                                        "(slt-pipe train writes one row every train.log_every steps)")])
    rows, bad = read_metrics(path)
    if bad:
        parts.append(note(f"{bad} line{'s' if bad != 1 else ''} of metrics.jsonl skipped (not a JSON row with a step)"))
    if not rows:
        return "\n".join(parts + [note("metrics.jsonl holds no rows yet")])
    train = [r for r in rows if r.get("kind", "train") == "train"]
    evals = [r for r in rows if r.get("kind") == "eval"]
    facts = [f"{len(train)} train rows, last step {int(max(r['step'] for r in rows))}"]
    if train and is_number(train[-1].get("loss")):
        facts.append(f"last loss {fmt(train[-1]['loss'])}")
    if train and is_number(train[-1].get("elapsed_s")):
        facts.append(f"{train[-1]['elapsed_s'] / 60:.1f} min")
    if evals and any(is_number(r.get("bleu")) for r in evals):
        best = max((r for r in evals if is_number(r.get("bleu"))), key=lambda r: r["bleu"])
        facts.append(f"{len(evals)} dev evaluation{'s' if len(evals) != 1 else ''}, "
                     f"best dev BLEU {fmt(best['bleu'])} at step {int(best['step'])}")
    parts.append(f"<p>{esc('; '.join(facts))}</p>")
    parts.append('<div class="charts">')
    for title, series, markers in _series_groups(rows):
        ys = [y for pts in series.values() for _, y in pts]
        log = title == "train: loss" and min(ys) > 0 and max(ys) / min(ys) > 20
        parts.append(svg_chart(title, series, log=log, markers=markers))
    parts.append("</div>")
    return "\n".join(parts)


CI_SUFFIX = "_ci95"
"""A score K's 95% confidence interval is K_ci95: [lo, hi] next to it (scores_{split}.json, best.json)."""


def _flatten(d: dict, prefix: str = "", ci: dict[str, tuple[float, float]] | None = None
             ) -> tuple[dict[str, float], dict[str, Any]]:
    """(numeric leaves as 'a.b' -> value, other top-level values) of one language's scores.

    `ci`, when given, collects each `K_ci95: [lo, hi]` as 'K' -> (lo, hi) instead (a malformed one stays an
    other value).
    """
    nums: dict[str, float] = {}
    other: dict[str, Any] = {}
    for k, v in d.items():
        name = f"{prefix}{k}"
        if (ci is not None and str(k).endswith(CI_SUFFIX) and isinstance(v, list) and len(v) == 2
                and all(is_number(b) for b in v)):
            ci[name[:-len(CI_SUFFIX)]] = (v[0], v[1])
        elif is_number(v):
            nums[name] = v
        elif isinstance(v, dict):
            sub_nums, sub_other = _flatten(v, f"{name}.", ci)
            nums.update(sub_nums)
            if sub_other:
                other[name] = sub_other
        elif v is not None:
            other[name] = v
    return nums, other


def _ci_method(ci: Any) -> str:
    """How the intervals were drawn, from a language's `ci` ({level, method, resamples, seed}), in words."""
    if not isinstance(ci, dict):
        return "95% confidence intervals"
    level = ci.get("level", 0.95)
    words = [f"{level * 100:g}% confidence intervals" if is_number(level) else f"{level} confidence intervals"]
    for key, say in (("method", "{}"), ("resamples", "{} resamples"), ("seed", "seed {}")):
        if ci.get(key) is not None:
            words.append(say.format(ci[key]))
    words += [f"{k} {json.dumps(v) if isinstance(v, (dict, list)) else v}" for k, v in ci.items()
              if k not in ("level", "method", "resamples", "seed")]
    return ", ".join(words)


def _details(other: dict[str, Any], prefix: str = "") -> str:
    items = []
    for k, v in other.items():
        label = k[len(prefix):] if k.startswith(prefix) else k
        if isinstance(v, dict):
            items.append(f"<dt>{esc(label)}</dt><dd>{_details(v, k + '.')}</dd>")
        else:
            items.append(f"<dt>{esc(label)}</dt><dd>{esc(json.dumps(v) if isinstance(v, list) else v)}</dd>")
    return f'<dl>{"".join(items)}</dl>'


def scores_table(title: str, scores: dict[str, Any]) -> str:
    """One split's scores: a metric table (every numeric key, per language) and each language's details.

    A key K with a `K_ci95: [lo, hi]` shows as `K [lo, hi]` in K's cell (no column of its own); a language's
    `warning` (e.g. too few sentences for the intervals) is shown above the table and marks its row; its `ci`
    ({level, method, resamples, seed}) is said under the table; `n` (sentences scored) is the last column.
    """
    langs = [lang for lang, s in scores.items() if isinstance(s, dict)]
    if not langs:
        return f"<h3>{esc(title)}</h3>" + note("no language was scored")
    cis: dict[str, dict[str, tuple[float, float]]] = {lang: {} for lang in langs}
    warnings = {lang: scores[lang]["warning"] for lang in langs if scores[lang].get("warning") not in (None, "")}
    methods = {lang: _ci_method(scores[lang].get("ci")) for lang in langs}
    flat = {lang: _flatten({k: v for k, v in scores[lang].items()
                            if k != "warning" and not (k == "ci" and isinstance(v, dict))}, ci=cis[lang])
            for lang in langs}
    for lang in langs:  # an interval without its score: shown as it comes, with the details
        flat[lang][1].update({f"{k}{CI_SUFFIX}": list(b) for k, b in cis[lang].items() if k not in flat[lang][0]})
    seen = list(dict.fromkeys(k for lang in langs for k in flat[lang][0]))
    cols = [k for k in _FIRST_METRICS if k in seen] + [k for k in seen if k not in _FIRST_METRICS and k != "n"]
    cols += ["n"] if "n" in seen else []
    producers: dict[str, str] = {}
    for lang in langs:
        prod = scores[lang].get("producers")
        if isinstance(prod, dict):
            for metric, what in prod.items():  # keys as "bleurt", "BLEURT" or "BLEU, chrF"
                for name in [str(metric)] + [m.strip().lower().replace(" ", "_") for m in str(metric).split(",")]:
                    producers.setdefault(name, str(what))

    def cell(lang: str, c: str) -> Any:
        v = flat[lang][0].get(c, "")
        return Interval(v, *cis[lang][c]) if c in cis[lang] and v != "" else v

    rows = [[lang] + [cell(lang, c) for c in cols] for lang in langs]
    titles = {c: f"produced by {producers[c]}" for c in cols if c in producers}
    if "n" in cols:
        titles.setdefault("n", "sentences scored")
    parts = [f"<h3>{esc(title)}</h3>"]
    parts += [f'<p class="warn" role="alert"><b>&#9888; {esc(lang)}:</b> {esc(w)}</p>' for lang, w in warnings.items()]
    parts.append(table(["language"] + cols, rows, cls="scores", titles=titles,
                       row_cls=["warn" if lang in warnings else "" for lang in langs]))
    with_ci = [lang for lang in langs if cis[lang]]
    if with_ci:
        said = set(methods[lang] for lang in with_ci)
        how = (methods[with_ci[0]] if len(said) == 1 else
               "; ".join(f"{lang}: {methods[lang]}" for lang in with_ci))
        parts.append(note(f"[lo, hi]: {how}"))
    for lang in langs:
        other = flat[lang][1]
        if other:
            parts.append(f'<details class="sig"><summary>{esc(lang)}: signatures, references, producers</summary>'
                         f"{_details(other)}</details>")
    return "\n".join(parts)


def _scores_section(run: Path) -> str:
    parts = ["<h2>Scores</h2>"]
    files = score_files(run)
    for split in _split_order(list(files)):
        data, why = read_json(files[split])
        if not isinstance(data, dict):
            parts.append(f"<h3>{esc(split)}</h3>" + note(why or f"{files[split].name} is not an object"))
            continue
        parts.append(scores_table(f"{split} ({files[split].name})", data))
    best, _ = read_json(run / "ckpt" / "best" / "best.json")
    if isinstance(best, dict) and isinstance(best.get("scores"), dict):
        at = f"step {best['step']}" if "step" in best else "the best step"
        parts.append(scores_table(f"dev at the best checkpoint, {at} (ckpt/best/best.json)", best["scores"]))
    if len(parts) == 1:
        parts.append(note(f"no scores yet: run `slt-pipe evaluate --run {run}` (writes scores_test.json and the "
                           "predictions TSVs)"))
    return "\n".join(parts)


def _ablation_section(run: Path, ablation: Path | None) -> str:
    """summary.csv (mean, std and p over seeds) when the ablation has one, else results.csv (one row per trial)."""
    if ablation is None:
        return ""
    path = ablation / SUMMARY_FILE if (ablation / SUMMARY_FILE).is_file() else ablation / RESULTS_FILE
    with path.open(newline="", encoding="utf-8") as f:
        cells = [r for r in csv.reader(f) if r]
    parts = [f'<section id="ablation"><h2>Ablation ({esc(path)})</h2>']
    if not cells:
        parts.append(note(f"{path.name} is empty"))
    else:
        header, body = cells[0], cells[1:]
        variant = header.index("variant") if "variant" in header else None
        inside = place_in(run, ablation)
        this = inside[0] if inside else None  # the variant's directory name (its slug)
        rows = [[_num_or_text(c) for c in r] for r in body]
        marks = ["this" if variant is not None and variant < len(r) and slug(r[variant]) == this else "" for r in body]
        if this is not None:
            parts.append(f"<p>This run is variant <b>{esc(this)}</b> (highlighted)"
                         f"{f', {esc(inside[1])}' if len(inside) > 1 else ''}.</p>")
        parts.append(table(header, rows, cls="ablation", row_cls=marks))
    parts.append("</section>")
    return "\n".join(parts)


def _num_or_text(text: str) -> Any:
    try:
        v = float(text)
    except ValueError:
        return text
    if not math.isfinite(v) or not re.fullmatch(r"\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*", text):
        return text
    return int(v) if re.fullmatch(r"\s*[-+]?\d+\s*", text) else v


def sample_data(run: Path) -> dict[str, Any]:
    """The sample table's data: {"default": split, "splits": {split: {"langs", "columns", "rows"}}}.

    columns: [{key, label, lang, field, type ("text"|"num"), source}]; rows: one list per sample id,
    aligned with columns (None where a language has no row for that id).
    """
    splits: dict[str, Any] = {}
    for split, files in prediction_files(run).items():
        columns: list[dict[str, Any]] = [{"key": "id", "label": "id", "lang": None, "field": "id", "type": "text"}]
        by_id: dict[str, dict[str, Any]] = {}
        for lang, path in files.items():
            score_cols, rows = read_predictions(path)
            fields = [("ref", "text"), ("hyp", "text")] + [(c, "num") for c in score_cols]
            columns += [{"key": f"{lang}:{f}", "label": f, "lang": lang, "field": f, "type": t, "source": path.name}
                        for f, t in fields]
            for r in rows:
                by_id.setdefault(r["id"], {"id": r["id"]}).update({f"{lang}:{f}": r.get(f) for f, _ in fields})
        rows = [[rec.get(c["key"]) for c in columns] for rec in by_id.values()]
        splits[split] = {"langs": list(files), "columns": columns, "rows": rows}
    names = _split_order(list(splits))
    return {"default": names[0] if names else None, "splits": {s: splits[s] for s in names}}


def _samples_section(run: Path, data: dict[str, Any]) -> str:
    parts = ['<section id="samples"><h2>Samples</h2>']
    if data["default"] is None:
        parts.append(note(f"no predictions TSVs yet: run `slt-pipe evaluate --run {run}` (writes "
                           "predictions_SPLIT_LANG.tsv)"))
        return "\n".join(parts + ["</section>"])
    params = "; ".join(f"{k}: {v}" for k, v in QUERY_PARAMS.items())
    parts.append(f'<p class="note">One language at a time (<i>language</i>: all shows them side by side). Click a '
                 f'column header to sort (again: reverse). The controls are also URL parameters, e.g. '
                 f'<code>?sort=sonar_sim&amp;desc=1&amp;min=0.5&amp;q=text&amp;lang=deu_Latn</code> '
                 f'<span title="{esc(params)}">(hover for all)</span>.</p>')
    parts.append('<form id="controls" onsubmit="return false">'
                 '<label>split <select id="f-split"></select></label> '
                 '<label>language <select id="f-lang"></select></label> '
                 '<label>score <select id="f-score"></select></label> '
                 '<label>&ge; <input id="f-min" type="number" step="any" size="6"></label> '
                 '<label>&le; <input id="f-max" type="number" step="any" size="6"></label> '
                 '<label>text <input id="f-q" type="search" size="24"></label> '
                 '<span id="status"></span></form>')
    parts.append('<noscript><p class="note">The sample table needs JavaScript (inline, nothing fetched).</p></noscript>')
    parts.append('<div class="wide" id="samples-box"><table id="samples-table"><thead id="samples-head"></thead>'
                 '<tbody id="samples-body"></tbody></table></div>')
    parts.append(json_script("samples-data", data))
    parts.append(f"<script>\n{asset('report.js')}</script>")
    parts.append("</section>")
    return "\n".join(parts)


def render(run: Path, ablation: Path | None = None) -> str:
    """The report page of `run` (see the module docstring)."""
    run = Path(run)
    data = sample_data(run)
    pipeline, _ = read_json(run / "pipeline.json")
    dataset = pipeline.get("dataset", {}).get("name") if isinstance(pipeline, dict) and isinstance(pipeline.get("dataset"), dict) else None
    now = _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    head = [f"run directory {run.resolve()}", f"written {now}"]
    if dataset:
        head.insert(1, f"dataset {dataset}")
    nav = " · ".join(f'<a href="#{k}">{v}</a>' for k, v in (("config", "configuration"), ("curves", "curves"),
                                                               ("scores", "scores"), ("ablation", "ablation"),
                                                               ("samples", "samples"))
                     if k != "ablation" or ablation is not None)
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>slt-pipe report: {esc(run.resolve().name)}</title>",
        f"<style>\n{asset('report.css')}</style></head><body>",
        f"<h1>slt-pipe run {esc(run.resolve().name)}</h1>",
        f'<p class="meta">{esc(" · ".join(head))}</p>',
        f"<nav>{nav}</nav>",
        f'<section id="config">{_config_section(run)}</section>',
        f'<section id="curves">{_curves_section(run)}</section>',
        f'<section id="scores">{_scores_section(run)}</section>',
        _ablation_section(run, ablation),
        _samples_section(run, data),
        "</body></html>",
        "",
    ])

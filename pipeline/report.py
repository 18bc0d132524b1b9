"""`slt-pipe report`: one self-contained, offline HTML file of a training run.

`write_report(run)` reads only the run directory (and its ablation, if any) and writes
`run/report.html`: the configuration (collapsible) and the cache entries read, the loss and
dev-score curves (inline SVG drawn here from metrics.jsonl), the scores of every split and
language with their signatures and producers, the ablation table (results.csv, rendered
column by column as it is), and every sample of the predictions TSVs (id, and per language
reference, hypothesis and per-sample scores) in a table that plain inline JS sorts by a
clicked column and filters by a score threshold and a text search.

Nothing is fetched: no CDN, no JS library, no image file; the samples are embedded as JSON.
Every text is escaped. Unknown numeric score keys and TSV score columns are shown as they come.
The sample table reads its state from the URL on load (`QUERY_PARAMS`), so a link, or a
headless browser's `--dump-dom`, shows a given order and filter.
"""

from __future__ import annotations

import csv
import datetime as _dt
import html
import json
import math
import os
import re
from pathlib import Path
from typing import Any

from cache.errors import SltPipeError

REPORT_FILE = "report.html"
RUN_MARKERS = ("config.json", "pipeline.json")
"""A run directory holds at least one of these (`slt-pipe train` writes both)."""
TSV_FIXED = ("id", "ref", "hyp")
"""The first columns of a predictions TSV; every later column is a per-sample score."""
QUERY_PARAMS = {
    "split": "split of the sample table (default: test, else the first with predictions)",
    "lang": "show only this language's columns (deu_Latn, or deu); default: every language",
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
_FIRST_METRICS = ("bleu", "chrf")
_PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22")
_NLLB = re.compile(r"^predictions_(?P<split>.+)_(?P<lang>[a-z]{2,3}_[A-Z][a-z]{3})\.tsv$")
_LOOSE = re.compile(r"^predictions_(?P<split>[^_]+)_(?P<lang>.+)\.tsv$")


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
        if not (ablation / "results.csv").is_file():
            raise SltPipeError("no results.csv in the ablation directory (not an ablation, or still running)",
                               path=ablation, fix="pass the --out directory of a finished `slt-pipe ablate`")
    else:
        ablation = _enclosing_ablation(run)
    out = run / REPORT_FILE if out is None else Path(out)
    if out.is_dir():
        out = out / REPORT_FILE
    out.parent.mkdir(parents=True, exist_ok=True)
    page = render(run, ablation)
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(out)
    return out


def _require_run(run: Path) -> None:
    if run.is_dir() and any((run / m).is_file() for m in RUN_MARKERS):
        return
    if (run / "results.csv").is_file() and (run / "runs").is_dir():
        fix = f"it is an ablation: pass one of its runs, e.g. --run {run / 'runs' / '<variant>'} (its table comes along)"
    else:
        fix = "pass the --out directory of a `slt-pipe train` run (it holds config.json and pipeline.json)"
    what = "the run directory does not exist" if not run.exists() else "is not a slt-pipe run directory (no config.json or pipeline.json)"
    raise SltPipeError(what, path=run, fix=fix)


# ------------------------------------------------------------------ reading


def _read_json(path: Path) -> tuple[Any, str | None]:
    """(content, None) or (None, why not)."""
    if not path.is_file():
        return None, f"no {path.name}"
    try:
        return json.loads(path.read_text(encoding="utf-8")), None
    except (OSError, ValueError) as e:
        return None, f"{path.name} is unreadable ({e})"


def read_metrics(path: Path) -> tuple[list[dict], int]:
    """(rows of metrics.jsonl, number of lines that were not JSON objects: a line cut by a crash)."""
    rows, bad = [], 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            bad += 1
            continue
        if isinstance(row, dict) and _is_num(row.get("step")):
            rows.append(row)
        else:
            bad += 1
    return rows, bad


def read_predictions(path: Path) -> tuple[list[str], list[dict[str, Any]]]:
    """(score column names, rows {id, ref, hyp, score: float | None}) of one predictions TSV."""
    csv.field_size_limit(1 << 30)
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.reader(f, delimiter="\t")
        header = next(reader, None)
        if header is None:
            return [], []
        head = [h.strip() for h in header]
        idx = {name: head.index(name) if name in head else k for k, name in enumerate(TSV_FIXED)}
        score_cols = [(k, h) for k, h in enumerate(head) if k not in idx.values() and h]
        rows = []
        for rec in reader:
            if not rec:
                continue
            row: dict[str, Any] = {n: rec[i] if i < len(rec) else "" for n, i in idx.items()}
            for k, name in score_cols:
                row[name] = _to_float(rec[k]) if k < len(rec) else None
            rows.append(row)
    return [h for _, h in score_cols], rows


def prediction_files(run: Path) -> dict[str, dict[str, Path]]:
    """split -> lang -> predictions_{split}_{lang}.tsv in `run`."""
    out: dict[str, dict[str, Path]] = {}
    for p in sorted(run.glob("predictions_*.tsv")):
        m = _NLLB.match(p.name) or _LOOSE.match(p.name)
        if m:
            out.setdefault(m["split"], {})[m["lang"]] = p
    return out


def _to_float(text: str) -> float | None:
    try:
        v = float(text)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _split_order(names: list[str]) -> list[str]:
    rank = {"test": 0, "dev": 1, "train": 2}
    return sorted(names, key=lambda s: (rank.get(s, 3), s))


# ------------------------------------------------------------------ formatting


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _fmt(v: Any) -> str:
    if isinstance(v, bool) or not _is_num(v):
        return str(v)
    if isinstance(v, int):
        return str(v)
    if not math.isfinite(v):
        return str(v)
    return f"{v:.2f}" if abs(v) >= 10 else f"{v:.4f}"


def _table(header: list[str], rows: list[list[Any]], *, cls: str = "", row_cls: list[str] | None = None,
           titles: dict[str, str] | None = None) -> str:
    titles = titles or {}
    th = "".join(f'<th title="{_e(titles[h])}">{_e(h)}</th>' if h in titles else f"<th>{_e(h)}</th>" for h in header)
    body = []
    for k, r in enumerate(rows):
        tds = "".join(f'<td class="num">{_e(_fmt(v))}</td>' if _is_num(v) else f"<td>{_e(v)}</td>" for v in r)
        rc = row_cls[k] if row_cls else ""
        body.append(f'<tr class="{rc}">{tds}</tr>' if rc else f"<tr>{tds}</tr>")
    return f'<table class="{cls}"><thead><tr>{th}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def _note(text: str) -> str:
    return f'<p class="note">{_e(text)}</p>'


# ------------------------------------------------------------------ sections


def _config_section(run: Path) -> str:
    parts = ["<h2>Configuration</h2>"]
    for name, what in (("config.json", "training config (TrainConfig)"), ("pipeline.json", "full pipeline config")):
        data, why = _read_json(run / name)
        if data is None:
            parts.append(_note(f"{why}: the {what} is not recorded"))
            continue
        parts.append(f"<details><summary>{_e(name)}: {_e(what)}</summary><pre>{_e(json.dumps(data, indent=2))}</pre></details>")
    inputs, why = _read_json(run / "inputs.json")
    parts.append("<h3>Cache entries read (inputs.json)</h3>")
    if not isinstance(inputs, dict):
        parts.append(_note(f"{why or 'inputs.json is not an object'}: the cache entries this run read are not recorded"))
        return "\n".join(parts)
    rows = []
    for role, entries in (("features", inputs.get("features")), ("targets", inputs.get("targets"))):
        for name, path in (entries or {}).items() if isinstance(entries, dict) else []:
            p = Path(str(path))
            entry = p.parent if p.suffix else p  # targets name their HDF5 file inside the entry
            rows.append([role, name, f"{entry.parent.name}/{entry.name}", str(path)])
    parts.append(_table(["input", "split / language", "cache entry (kind/key)", "path"], rows, cls="keys")
                 if rows else _note("inputs.json names no cache entries"))
    other = [[k, json.dumps(v) if isinstance(v, (dict, list)) else v] for k, v in inputs.items()
             if k not in ("features", "targets")]
    if other:
        parts.append(_table(["field", "value"], other, cls="kv"))
    return "\n".join(parts)


def _series_groups(rows: list[dict]) -> list[tuple[str, dict[str, list[tuple[float, float]]], bool]]:
    """(title, {series: [(step, value)]}, markers) per chart: train losses, learning rates, the rest one by one."""
    groups: dict[str, dict[str, list[tuple[float, float]]]] = {}
    markers: dict[str, bool] = {}
    for r in rows:
        kind = str(r.get("kind", "train"))
        for key, v in r.items():
            if key in ("kind", "step") or not _is_num(v) or not math.isfinite(v):
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
    path = run / "metrics.jsonl"
    if not path.is_file():
        return "\n".join(parts + [_note("no metrics.jsonl yet: the run has not logged a step "
                                        "(slt-pipe train writes one row every train.log_every steps)")])
    rows, bad = read_metrics(path)
    if bad:
        parts.append(_note(f"{bad} line{'s' if bad != 1 else ''} of metrics.jsonl skipped (not a JSON row with a step)"))
    if not rows:
        return "\n".join(parts + [_note("metrics.jsonl holds no rows yet")])
    train = [r for r in rows if r.get("kind", "train") == "train"]
    evals = [r for r in rows if r.get("kind") == "eval"]
    facts = [f"{len(train)} train rows, last step {int(max(r['step'] for r in rows))}"]
    if train and _is_num(train[-1].get("loss")):
        facts.append(f"last loss {_fmt(train[-1]['loss'])}")
    if train and _is_num(train[-1].get("elapsed_s")):
        facts.append(f"{train[-1]['elapsed_s'] / 60:.1f} min")
    if evals and any(_is_num(r.get("bleu")) for r in evals):
        best = max((r for r in evals if _is_num(r.get("bleu"))), key=lambda r: r["bleu"])
        facts.append(f"{len(evals)} dev evaluations, best dev BLEU {_fmt(best['bleu'])} at step {int(best['step'])}")
    parts.append(f"<p>{_e('; '.join(facts))}</p>")
    parts.append('<div class="charts">')
    for title, series, markers in _series_groups(rows):
        ys = [y for pts in series.values() for _, y in pts]
        log = title == "train: loss" and min(ys) > 0 and max(ys) / min(ys) > 20
        parts.append(svg_chart(title, series, log=log, markers=markers))
    parts.append("</div>")
    return "\n".join(parts)


def _nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.ceil(lo / step - 1e-9) * step
    ticks, t = [], start
    while t <= hi + step * 1e-9:
        ticks.append(round(t, 12))
        t += step
    return ticks


def svg_chart(title: str, series: dict[str, list[tuple[float, float]]], *, log: bool = False,
              markers: bool = False, width: int = 600, height: int = 250) -> str:
    """An inline SVG line chart (x: step) of `series`, legend on the right; `log`: log-scaled y (values > 0)."""
    left, right, top, bottom = 62, 116, 26, 34
    pw, ph = width - left - right, height - top - bottom
    pts_all = [p for pts in series.values() for p in pts]
    xs = [x for x, _ in pts_all]
    ys = [math.log10(y) if log else y for _, y in pts_all]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    if x1 == x0:
        x0, x1 = x0 - 1, x1 + 1
    if y1 == y0:
        pad = abs(y0) * 0.05 or 1.0
        y0, y1 = y0 - pad, y1 + pad
    else:
        pad = (y1 - y0) * 0.05
        y0, y1 = y0 - pad, y1 + pad

    def px(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * pw

    def py(y: float) -> float:
        return top + ph - ((math.log10(y) if log else y) - y0) / (y1 - y0) * ph

    out = [f'<svg class="chart" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
           f'aria-label="{_e(title)}">',
           f'<text x="{left}" y="16" class="ctitle">{_e(title)}{" (log scale)" if log else ""}</text>',
           f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" class="frame"/>']
    if log:
        yt = [10.0 ** k for k in range(math.floor(y0), math.ceil(y1) + 1)]
        yt = [t for t in yt if y0 <= math.log10(t) <= y1]
        if len(yt) < 2:
            yt = [10 ** t for t in _nice_ticks(y0, y1, 4)]
    else:
        yt = _nice_ticks(y0, y1)
    for t in yt:
        y = py(t)
        out.append(f'<line x1="{left}" x2="{left + pw}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
                   f'<text x="{left - 4}" y="{y + 4:.1f}" class="ytick">{_e(_tick(t))}</text>')
    for t in _nice_ticks(x0, x1, 6):
        x = px(t)
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top + ph}" y2="{top + ph + 4}" class="axis"/>'
                   f'<text x="{x:.1f}" y="{top + ph + 16}" class="xtick">{_e(_tick(t))}</text>')
    out.append(f'<text x="{left + pw / 2}" y="{height - 3}" class="xlabel">step</text>')
    for k, (name, pts) in enumerate(series.items()):
        colour = _PALETTE[k % len(_PALETTE)]
        pts = [(x, y) for x, y in pts if not log or y > 0]
        if len(pts) > 1500:  # a long run: every n-th point, and the last
            n = math.ceil(len(pts) / 1500)
            pts = pts[::n] + ([pts[-1]] if (len(pts) - 1) % n else [])
        coords = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in pts)
        out.append(f'<polyline points="{coords}" fill="none" stroke="{colour}" stroke-width="1.5"/>')
        if markers or len(pts) == 1:
            out += [f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="2.5" fill="{colour}">'
                    f'<title>{_e(name)} step {_e(_tick(x))}: {_e(_fmt(y))}</title></circle>' for x, y in pts]
        out.append(f'<text x="{left + pw + 6}" y="{top + 10 + 14 * k}" class="legend" style="fill:{colour}">{_e(name)}</text>')
    out.append("</svg>")
    return "".join(out)


def _tick(t: float) -> str:
    if t == 0:
        return "0"
    return f"{t:.3g}"


def _flatten(d: dict, prefix: str = "") -> tuple[dict[str, float], dict[str, Any]]:
    """(numeric leaves as 'a.b' -> value, other top-level values) of one language's scores."""
    nums: dict[str, float] = {}
    other: dict[str, Any] = {}
    for k, v in d.items():
        name = f"{prefix}{k}"
        if _is_num(v):
            nums[name] = v
        elif isinstance(v, dict):
            sub_nums, sub_other = _flatten(v, f"{name}.")
            nums.update(sub_nums)
            if sub_other:
                other[name] = sub_other
        elif v is not None:
            other[name] = v
    return nums, other


def _details(other: dict[str, Any], prefix: str = "") -> str:
    items = []
    for k, v in other.items():
        label = k[len(prefix):] if k.startswith(prefix) else k
        if isinstance(v, dict):
            items.append(f"<dt>{_e(label)}</dt><dd>{_details(v, k + '.')}</dd>")
        else:
            items.append(f"<dt>{_e(label)}</dt><dd>{_e(json.dumps(v) if isinstance(v, list) else v)}</dd>")
    return f'<dl>{"".join(items)}</dl>'


def scores_table(title: str, scores: dict[str, Any]) -> str:
    """One split's scores: a metric table (every numeric key, per language) and each language's details."""
    langs = [lang for lang, s in scores.items() if isinstance(s, dict)]
    if not langs:
        return f"<h3>{_e(title)}</h3>" + _note("no language was scored")
    flat = {lang: _flatten(scores[lang]) for lang in langs}
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
    rows = [[lang] + [flat[lang][0].get(c, "") for c in cols] for lang in langs]
    parts = [f"<h3>{_e(title)}</h3>",
             _table(["language"] + cols, rows, cls="scores", titles={c: f"produced by {producers[c]}" for c in cols if c in producers})]
    for lang in langs:
        other = flat[lang][1]
        if other:
            parts.append(f'<details class="sig"><summary>{_e(lang)}: signatures, references, producers</summary>'
                         f"{_details(other)}</details>")
    return "\n".join(parts)


def _scores_section(run: Path) -> str:
    parts = ["<h2>Scores</h2>"]
    files = {p.name[len("scores_"):-len(".json")]: p for p in run.glob("scores_*.json")}
    for split in _split_order(list(files)):
        data, why = _read_json(files[split])
        if not isinstance(data, dict):
            parts.append(f"<h3>{_e(split)}</h3>" + _note(why or f"{files[split].name} is not an object"))
            continue
        parts.append(scores_table(f"{split} ({files[split].name})", data))
    best, _ = _read_json(run / "ckpt" / "best" / "best.json")
    if isinstance(best, dict) and isinstance(best.get("scores"), dict):
        at = f"step {best['step']}" if "step" in best else "the best step"
        parts.append(scores_table(f"dev at the best checkpoint, {at} (ckpt/best/best.json)", best["scores"]))
    if len(parts) == 1:
        parts.append(_note(f"no scores yet: run `slt-pipe evaluate --run {run}` (writes scores_test.json and the "
                           "predictions TSVs)"))
    return "\n".join(parts)


def _enclosing_ablation(run: Path) -> Path | None:
    """The `slt-pipe ablate --out` directory `run` belongs to: ABL/runs/VARIANT or ABL/runs/VARIANT/seedN."""
    for up in (run.parent.parent, run.parent.parent.parent):
        if (up / "results.csv").is_file() and run.resolve().is_relative_to((up / "runs").resolve()):
            return up
    return None


def _ablation_section(run: Path, ablation: Path | None) -> str:
    """summary.csv (mean, std and p over seeds) when the ablation has one, else results.csv (one row per trial)."""
    from pipeline.ablate_stage import slug

    if ablation is None:
        return ""
    path = ablation / "summary.csv" if (ablation / "summary.csv").is_file() else ablation / "results.csv"
    with path.open(newline="", encoding="utf-8") as f:
        table = [r for r in csv.reader(f) if r]
    parts = [f'<section id="ablation"><h2>Ablation ({_e(path)})</h2>']
    if not table:
        parts.append(_note(f"{path.name} is empty"))
    else:
        header, body = table[0], table[1:]
        variant = header.index("variant") if "variant" in header else None
        runs = (ablation / "runs").resolve()
        inside = run.resolve().relative_to(runs).parts if run.resolve().is_relative_to(runs) else ()
        this = inside[0] if inside else None  # the variant's directory name (its slug)
        rows = [[_num_or_text(c) for c in r] for r in body]
        marks = ["this" if variant is not None and variant < len(r) and slug(r[variant]) == this else "" for r in body]
        if this is not None:
            parts.append(f"<p>This run is variant <b>{_e(this)}</b> (highlighted)"
                         f"{f', {_e(inside[1])}' if len(inside) > 1 else ''}.</p>")
        parts.append(_table(header, rows, cls="ablation", row_cls=marks))
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
        table = [[rec.get(c["key"]) for c in columns] for rec in by_id.values()]
        splits[split] = {"langs": list(files), "columns": columns, "rows": table}
    names = _split_order(list(splits))
    return {"default": names[0] if names else None, "splits": {s: splits[s] for s in names}}


def _json_script(element_id: str, data: Any) -> str:
    text = json.dumps(data, ensure_ascii=False, allow_nan=False)
    # inside <script> nothing may close it or open a comment: escape <, > and & as JSON \u escapes
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return f'<script type="application/json" id="{element_id}">{text}</script>'


def _samples_section(run: Path, data: dict[str, Any]) -> str:
    parts = ['<section id="samples"><h2>Samples</h2>']
    if data["default"] is None:
        parts.append(_note(f"no predictions TSVs yet: run `slt-pipe evaluate --run {run}` (writes "
                           "predictions_SPLIT_LANG.tsv)"))
        return "\n".join(parts + ["</section>"])
    params = "; ".join(f"{k}: {v}" for k, v in QUERY_PARAMS.items())
    parts.append(f'<p class="note">Click a column header to sort (again: reverse). The controls are also URL '
                 f'parameters, e.g. <code>?sort=sonar_sim&amp;desc=1&amp;min=0.5&amp;q=text&amp;lang=deu_Latn</code> '
                 f'<span title="{_e(params)}">(hover for all)</span>.</p>')
    parts.append('<form id="controls" onsubmit="return false">'
                 '<label>split <select id="f-split"></select></label> '
                 '<label>language <select id="f-lang"></select></label> '
                 '<label>score <select id="f-score"></select></label> '
                 '<label>&ge; <input id="f-min" type="number" step="any" size="6"></label> '
                 '<label>&le; <input id="f-max" type="number" step="any" size="6"></label> '
                 '<label>text <input id="f-q" type="search" size="24"></label> '
                 '<span id="status"></span></form>')
    parts.append('<noscript><p class="note">The sample table needs JavaScript (inline, nothing fetched).</p></noscript>')
    parts.append('<table id="samples-table"><thead id="samples-head"></thead><tbody id="samples-body"></tbody></table>')
    parts.append(_json_script("samples-data", data))
    parts.append(f"<script>{_SCRIPT}</script>")
    parts.append("</section>")
    return "\n".join(parts)


def render(run: Path, ablation: Path | None = None) -> str:
    """The report page of `run` (see the module docstring)."""
    run = Path(run)
    data = sample_data(run)
    pipeline, _ = _read_json(run / "pipeline.json")
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
        f"<title>slt-pipe report: {_e(run.resolve().name)}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>slt-pipe run {_e(run.resolve().name)}</h1>",
        f'<p class="meta">{_e(" · ".join(head))}</p>',
        f"<nav>{nav}</nav>",
        f'<section id="config">{_config_section(run)}</section>',
        f'<section id="curves">{_curves_section(run)}</section>',
        f'<section id="scores">{_scores_section(run)}</section>',
        _ablation_section(run, ablation),
        _samples_section(run, data),
        "</body></html>",
        "",
    ])


_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em auto;max-width:1400px;padding:0 1em;color:#222}
h1{font-size:1.5em;margin-bottom:.2em}h2{border-bottom:1px solid #ccc;margin-top:1.6em}
.meta,.note{color:#666}nav a{margin-right:.3em}
table{border-collapse:collapse;margin:.5em 0}th,td{border:1px solid #ddd;padding:2px 6px;vertical-align:top;text-align:left}
th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr.this td{background:#fff6d5}pre{background:#f7f7f7;padding:.6em;overflow:auto;max-height:40em}
details{margin:.3em 0}summary{cursor:pointer}dl{margin:.2em 0 .2em 1em}dt{font-weight:600}dd{margin:0 0 .2em 1em;word-break:break-all}
.charts{display:flex;flex-wrap:wrap;gap:12px}svg.chart{background:#fff;border:1px solid #eee}
svg .frame{fill:none;stroke:#999}svg .grid{stroke:#eee}svg .axis{stroke:#999}
svg text{font:11px system-ui,sans-serif;fill:#444}svg .ctitle{font-weight:600;font-size:12px}
svg .ytick{text-anchor:end}svg .xtick,svg .xlabel{text-anchor:middle}svg .legend{font-weight:600}
#samples-table th{cursor:pointer;user-select:none;position:sticky;top:0;white-space:nowrap}#samples-table td{max-width:32em}
#samples-table th.lang{text-align:center;cursor:default}#controls label{margin-right:.6em}#status{color:#666}
"""

_SCRIPT = r"""
(function () {
  const D = JSON.parse(document.getElementById('samples-data').textContent);
  const P = new URLSearchParams(location.search), $ = id => document.getElementById(id);
  const st = {split: D.splits[P.get('split')] ? P.get('split') : D.default, lang: P.get('lang') || '',
              sort: P.get('sort') || '', desc: P.get('desc') === '1', score: P.get('score') || '',
              min: P.get('min') || '', max: P.get('max') || '', q: P.get('q') || ''};
  const fmt = x => Number.isInteger(x) ? String(x) : x.toFixed(Math.abs(x) >= 10 ? 2 : 4);
  const shown = c => !st.lang || !c.lang || c.lang === st.lang;
  function col(S, name) {  // 'id', 'LANG:FIELD', or FIELD of the chosen language (else the first that has it)
    if (!name) return -1;
    const k = S.columns.findIndex(c => c.key === name);
    return k >= 0 ? k : S.columns.findIndex(c => c.field === name && shown(c));
  }
  function options(sel, values, current) {
    sel.replaceChildren(...values.map(([v, label]) => new Option(label, v, false, v === current)));
  }
  function render() {
    const S = D.splits[st.split];
    st.lang = st.lang && (S.langs.find(l => l === st.lang || l.startsWith(st.lang + '_')) || '');  // deu: deu_Latn
    const cols = S.columns.map((c, i) => [c, i]).filter(([c]) => shown(c));
    const nums = cols.filter(([c]) => c.type === 'num'), k = col(S, st.sort);
    let t = col(S, st.score);
    if (t < 0) t = k >= 0 && S.columns[k].type === 'num' ? k : (nums.length ? nums[0][1] : -1);
    options($('f-split'), Object.keys(D.splits).map(s => [s, s]), st.split);
    options($('f-lang'), [['', 'all']].concat(S.langs.map(l => [l, l])), st.lang);
    options($('f-score'), nums.map(([c, i]) => [c.key, c.key]), t >= 0 ? S.columns[t].key : '');
    $('f-min').value = st.min; $('f-max').value = st.max; $('f-q').value = st.q;
    const lo = parseFloat(st.min), hi = parseFloat(st.max), q = st.q.toLowerCase();
    let rows = S.rows.filter(r => (!q || cols.some(([c, i]) => c.type === 'text' && r[i] != null &&
                                                   String(r[i]).toLowerCase().includes(q))) &&
      (t < 0 || (isNaN(lo) && isNaN(hi)) || (r[t] != null && !(r[t] < lo) && !(r[t] > hi))));
    if (k >= 0) rows.sort((a, b) => {
      const x = a[k], y = b[k];
      if (x == null || y == null) return (x == null) - (y == null);  // no value: last, either way
      const d = S.columns[k].type === 'num' ? x - y : String(x).localeCompare(String(y), undefined, {numeric: true});
      return st.desc ? -d : d;
    });
    const top = document.createElement('tr'), head = document.createElement('tr');
    for (const [c, i] of cols) {
      const th = document.createElement('th');
      th.textContent = c.label + (i === k ? (st.desc ? ' \u25bc' : ' \u25b2') : '');
      th.dataset.col = c.key; th.title = c.source ? c.key + ' (' + c.source + ')' : c.key;
      if (i === k) th.setAttribute('aria-sort', st.desc ? 'descending' : 'ascending');
      th.onclick = () => { st.desc = st.sort === c.key ? !st.desc : c.type === 'num'; st.sort = c.key; update(); };
      head.appendChild(th);
      const last = top.lastChild;
      if (last && last.dataset.lang === String(c.lang)) last.colSpan += 1;
      else { const g = document.createElement('th'); g.className = 'lang'; g.dataset.lang = String(c.lang);
             g.textContent = c.lang || ''; top.appendChild(g); }
    }
    $('samples-head').replaceChildren(top, head);
    $('samples-body').replaceChildren(...rows.map(r => {
      const tr = document.createElement('tr'); tr.dataset.id = r[0];
      for (const [c, i] of cols) {
        const td = tr.insertCell(), v = r[i]; td.dataset.col = c.key;
        if (c.type === 'num') { td.className = 'num'; if (v != null) td.dataset.v = v; }
        td.textContent = v == null ? '' : c.type === 'num' ? fmt(v) : v;
      }
      return tr;
    }));
    $('status').textContent = rows.length + ' of ' + S.rows.length + ' samples' +
      (t >= 0 && !(isNaN(lo) && isNaN(hi)) ? ' (threshold on ' + S.columns[t].key + ')' : '');
  }
  function update() {
    const p = new URLSearchParams();
    for (const [key, v] of Object.entries(st)) if (v && !(key === 'split' && v === D.default)) p.set(key, v === true ? '1' : v);
    try { history.replaceState(null, '', '?' + p.toString() + location.hash); } catch (e) { /* some file:// pages */ }
    render();
  }
  const bind = (id, key, ev) => $(id).addEventListener(ev, e => {
    st[key] = e.target.value; if (key === 'split') { st.sort = st.score = ''; st.lang = ''; } update(); });
  bind('f-split', 'split', 'change'); bind('f-lang', 'lang', 'change'); bind('f-score', 'score', 'change');
  bind('f-min', 'min', 'input'); bind('f-max', 'max', 'input'); bind('f-q', 'q', 'input');
  render();
})();
"""

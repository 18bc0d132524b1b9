"""An ablation's results and layout: what `slt-pipe ablate` writes and `slt-pipe report` reads back.

  OUT/results.{csv,md,json}  one row per (trial, language); summary.{csv,md}: mean and std
                             over seeds, a trial's 95% interval (averaged over seeds), the sentences
                             it rests on (n), paired-bootstrap p against the baseline; results.png
  OUT/runs/VARIANT[/seedN]   each trial's run directory (VARIANT: the variant's `slug`)

The metric columns are the registry's (`train.metrics.ABLATION`, each metric's `InAblation`).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from rich.table import Table
from rich.text import Text

from cache.errors import SltPipeError
from cache.files import write_text_atomic, writing
from train.confidence import MIN_SENTENCES, ci_key, format_interval, small_sample_warning
from train.metrics import ABLATION, HEADLINE

RESULTS_FILE = "results.csv"
SUMMARY_FILE = "summary.csv"
RUNS = "runs"
SIGNIFICANCE = 0.05
MIN_PAIRED_SENTENCES = 5
"""Fewer sentence pairs than this (over the paired seeds) get no p-value: a bootstrap of one or two
sentences is noise, and a mark on it would claim what it cannot show ("n too small")."""
"""p below this marks a difference from the baseline (`*`)."""
BOOTSTRAP_SAMPLES = 1000
SUMMARIZED = tuple(m for m in ABLATION if m.ablation.summary)
"""The metrics summary.csv gives mean and std over seeds of (the rest are per trial in results.csv only)."""
TRIAL_CI = "trial_ci95"
"""summary.csv's KEY_trial_ci95_lo/_hi: each trial's own 95% interval of KEY (evaluate's bootstrap over the
test sentences: sacrebleu's for BLEU and chrF), its bounds averaged over the seeds. It says how precisely one
trial measures on this test set (the std says how much seeds move it); the p-values test the differences."""
TRIAL_CI_WORDS = ("[lo, hi]: one trial's 95% interval (bootstrap over the test sentences; sacrebleu's for BLEU "
                  "and chrF), averaged over seeds; n: the test sentences each trial is scored on")
SUMMARY_COLUMNS = ("variant", "lang", "seeds", "n", "references",
                   *(c for m in SUMMARIZED for c in (f"{m.key}_mean", f"{m.key}_std", f"{m.key}_{TRIAL_CI}_lo",
                                                     f"{m.key}_{TRIAL_CI}_hi")
                     + ((f"p_{m.key}",) if m.paired is not None else ())),
                   "train_s_mean")


def slug(name: str) -> str:
    """A variant's run directory name."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def trial_dir(out: Path, variant: str, seed: int, seeds: int) -> Path:
    """OUT/runs/VARIANT, or OUT/runs/VARIANT/seedN with several seeds."""
    return Path(out) / RUNS / slug(variant) / (f"seed{seed}" if seeds > 1 else "")


def enclosing_ablation(run: Path) -> Path | None:
    """The `slt-pipe ablate --out` directory `run` belongs to: ABL/runs/VARIANT or ABL/runs/VARIANT/seedN."""
    for up in (run.parent.parent, run.parent.parent.parent):
        if (up / RESULTS_FILE).is_file() and run.resolve().is_relative_to((up / RUNS).resolve()):
            return up
    return None


def place_in(run: Path, ablation: Path) -> tuple[str, ...]:
    """(variant slug[, seedN]) of `run` inside `ablation`; () when it is not one of its runs."""
    runs = (ablation / RUNS).resolve()
    return run.resolve().relative_to(runs).parts if run.resolve().is_relative_to(runs) else ()


# ------------------------------------------------------------------ tables


def flat_rows(rows: list[dict]) -> list[dict[str, Any]]:
    """One row per (trial, language): the ablation's metrics (blank where a language has none), train time, references.

    As `evaluate`: a language is scored against the dataset's own references; one without
    them is zero-shot (cross-lingual, and against machine translations where cached), labelled.
    """
    out = []
    for r in rows:
        for lang, s in r["scores"].items():
            out.append({"variant": r["variant"], "seed": r.get("seed", ""), "lang": lang,
                        **{m.key: round(s[m.key], 4) if m.key in s else "" for m in ABLATION},
                        "train_s": r["train_s"], "references": _refs_label(s)})
    return out


def _refs_label(s: dict) -> str:
    refs = s.get("references", "reference")
    if s.get("kind") == "zero-shot":
        return f"zero-shot (x-ling vs {s.get('xl_against')}" + (")" if refs == "none" else f"; {refs})")
    return refs


def _sentences(scores: dict) -> int | None:
    """The sentences a trial's scores in a language rest on (`n`; `xl_n` for a zero-shot language's); None: unrecorded."""
    n = scores.get("n") or scores.get("xl_n")
    return int(n) if n is not None else None


def summarize(rows: list[dict], baseline: str) -> list[dict[str, Any]]:
    """Per (variant, language): mean and std over seeds of every summarized metric, a trial's 95% interval
    averaged over seeds (`TRIAL_CI`), the fewest sentences a trial rests on (`n`), and the paired-bootstrap
    p-values of the headline metrics against `baseline` (over the pooled (seed, sentence) pairs: seed k of the
    variant against seed k of the baseline)."""
    import numpy as np

    groups: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        for lang in r["scores"]:
            groups.setdefault((r["variant"], lang), []).append(r)
    out = []
    for (variant, lang), trials in groups.items():
        sizes = [n for n in (_sentences(t["scores"][lang]) for t in trials) if n is not None]
        row: dict[str, Any] = {"variant": variant, "lang": lang, "seeds": len(trials), "n": min(sizes, default=None),
                               "references": _refs_label(trials[0]["scores"][lang])}
        for m in SUMMARIZED:
            vals = [t["scores"][lang][m.key] for t in trials if m.key in t["scores"][lang]]
            if vals:
                row[f"{m.key}_mean"] = float(np.mean(vals))
                row[f"{m.key}_std"] = float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0
            cis = [t["scores"][lang][ci_key(m.key)] for t in trials if ci_key(m.key) in t["scores"][lang]]
            if cis:  # trials evaluated before intervals were recorded have none
                row[f"{m.key}_{TRIAL_CI}_lo"], row[f"{m.key}_{TRIAL_CI}_hi"] = (float(b) for b in np.mean(cis, axis=0))
        row["train_s_mean"] = float(np.mean([t["train_s"] for t in trials]))
        if variant != baseline:
            row.update(paired_test([r for r in rows if r["variant"] == baseline], trials, lang))
        out.append(row)
    return out


def paired_test(base: list[dict], variant: list[dict], lang: str) -> dict[str, float]:
    """p-values (sacrebleu's paired bootstrap) of the headline metrics between two sets of seeds, or {} when
    either lacks references in `lang`. Seed k of one is paired with seed k of the other."""
    from sacrebleu.significance import PairedTest

    def by_seed(rs: list[dict]) -> dict[int, dict]:
        return {r.get("seed_index", 0): r for r in rs if all(m.key in r["scores"].get(lang, {}) for m in HEADLINE)}

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
    if len(refs) < MIN_PAIRED_SENTENCES:
        return {"paired_n": len(refs)}
    if hyps_b == hyps_v:  # sacrebleu gives identical systems its smallest p ("zero difference is not chance")
        return {f"p_{m.key}": 1.0 for m in HEADLINE}
    case = b[common[0]]["scores"][lang].get("case", "mixed") == "lc"
    metrics = {m.label: m.paired(lang, case) for m in HEADLINE}
    _, results = PairedTest([("baseline", hyps_b), ("variant", hyps_v)], metrics, [refs], test_type="bs",
                            n_samples=BOOTSTRAP_SAMPLES)()
    return {f"p_{m.key}": float(results[next(k for k in results if k.startswith(m.label))][1].p_value)
            for m in HEADLINE}


def mark(row: dict, key: str) -> str:
    """'84.12 ± 1.03 [80.10, 88.00] (p=0.004 *)' for a metric of a summary row: mean ± std over seeds, a trial's
    95% interval (`TRIAL_CI`), p against the baseline (`*`: p < SIGNIFICANCE)."""
    if f"{key}_mean" not in row:
        return "-"
    digits = next((m.ablation.digits for m in ABLATION if m.key == key), 4)
    text = f"{row[f'{key}_mean']:.{digits}f}"
    if row["seeds"] > 1:
        text += f" ± {row[f'{key}_std']:.{digits}f}"
    if f"{key}_{TRIAL_CI}_lo" in row:
        text += " " + format_interval((row[f"{key}_{TRIAL_CI}_lo"], row[f"{key}_{TRIAL_CI}_hi"]), f".{digits}f")
    p = row.get(f"p_{key}")
    if p is not None:
        text += f" (p={p:.3f}{' *' if p < SIGNIFICANCE else ''})"
    elif row.get("paired_n") is not None:
        text += f" (p: n too small, {row['paired_n']} sentence pair(s))"
    return text


def write_results(rows: list[dict], summary: list[dict], out: Path) -> None:
    flat = flat_rows(rows)
    cols = ["variant", "seed", "lang", *(m.key for m in ABLATION), "train_s", "references"]
    with writing(out / RESULTS_FILE), (out / RESULTS_FILE).open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        w.writerows(flat)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in flat]
    write_text_atomic(out / "results.md", "\n".join(lines) + "\n", fsync=False)
    write_text_atomic(out / "results.json", json.dumps(rows, indent=2), fsync=False)
    with writing(out / SUMMARY_FILE), (out / SUMMARY_FILE).open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=SUMMARY_COLUMNS, extrasaction="ignore")
        w.writeheader()
        w.writerows([{c: _csv_cell(r.get(c)) for c in SUMMARY_COLUMNS} for r in summary])
    write_text_atomic(out / "summary.md", summary_markdown(summary), fsync=False)
    _chart(rows, summary, out / "results.png")


def _csv_cell(value: Any) -> Any:
    return "" if value is None else round(value, 5) if isinstance(value, float) else value


def summary_markdown(summary: list[dict]) -> str:
    """One row per variant, one column per headline metric and language (mean ± std over seeds, p against the baseline)."""
    langs = list(dict.fromkeys(r["lang"] for r in summary))
    variants = list(dict.fromkeys(r["variant"] for r in summary))
    at = {(r["variant"], r["lang"]): r for r in summary}
    head = ["variant", *(f"{lang} {m.label}" for m in HEADLINE for lang in langs), "seeds", "n"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for v in variants:
        cells = [mark(at[(v, lang)], m.key) if (v, lang) in at else "-" for m in HEADLINE for lang in langs]
        seeds = max(at[(v, lang)]["seeds"] for lang in langs if (v, lang) in at)
        lines.append("| " + " | ".join([v, *cells, str(seeds), _sizes([at[(v, lang)] for lang in langs
                                                                     if (v, lang) in at])]) + " |")
    zero = sorted({r["lang"] for r in summary if r["references"].startswith("zero-shot")})
    note = (f"\n{', '.join(zero)}: zero-shot in some variant (no true references); see summary.csv for the references.\n"
            if zero else "")
    warning = _small_warning(summary)
    return "\n".join(lines) + "\n" + f"\nmean ± std over seeds; {TRIAL_CI_WORDS}; p: paired bootstrap against the " \
                                     f"baseline (sacrebleu, {BOOTSTRAP_SAMPLES} resamples, pooled over seeds); " \
                                     f"* p < {SIGNIFICANCE}\n" + note + (f"\nwarning: {warning}\n" if warning else "")


def _sizes(rows: list[dict]) -> str:
    """The n cell of a variant's languages: '5', or '5-8' where they differ; '-' unrecorded."""
    ns = sorted({r["n"] for r in rows if r.get("n") is not None})
    return "-" if not ns else str(ns[0]) if len(ns) == 1 else f"{ns[0]}-{ns[-1]}"


def _small_warning(summary: list[dict]) -> str | None:
    """The small-sample warning of the whole summary (its fewest sentences), as evaluate words it."""
    ns = [r["n"] for r in summary if r.get("n") is not None]
    return small_sample_warning({"": min(ns)}) if ns and min(ns) < MIN_SENTENCES else None


def summary_table(summary: list[dict], seeds: int) -> Table:
    """The printed summary: per (variant, language) every table metric as `mark` gives it, n and train time;
    the caption says what the intervals are and warns when the test set is small."""
    shown = [m for m in ABLATION if m.ablation.table]
    warning = _small_warning(summary)
    table = Table(title=f"ablation (test split, {seeds} seed{'s' if seeds > 1 else ''} per variant)",
                  caption=Text("mean ± std over seeds; " + TRIAL_CI_WORDS + (f"\nwarning: {warning}" if warning else "")))
    for col in ("variant", "lang", "references", *(m.label for m in shown)):
        table.add_column(col)
    table.add_column("n", justify="right", no_wrap=True)
    table.add_column("train s", justify="right", no_wrap=True)
    for r in summary:
        table.add_row(r["variant"], r["lang"], r["references"], *(mark(r, m.key) for m in shown),
                      _sizes([r]), f"{r['train_s_mean']:.0f}")
    return table


def _chart(rows: list[dict], summary: list[dict], path: Path) -> None:
    """The first headline metric (BLEU) per variant and language: the mean as a bar, the std as an error bar,
    every seed as a dot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    key, label = HEADLINE[0].key, HEADLINE[0].label
    variants = list(dict.fromkeys(r["variant"] for r in summary))
    langs = list(dict.fromkeys(r["lang"] for r in summary if f"{key}_mean" in r))
    at = {(r["variant"], r["lang"]): r for r in summary}
    width = 0.8 / max(1, len(langs))
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(variants)), 3.5))
    x = np.arange(len(variants))
    for k, lang in enumerate(langs):
        s = [at.get((v, lang), {}) for v in variants]
        ax.bar(x + k * width, [r.get(f"{key}_mean", 0.0) for r in s], width, yerr=[r.get(f"{key}_std", 0.0) for r in s],
               capsize=2, label=lang, alpha=0.8)
        for i, v in enumerate(variants):
            seeds = [t["scores"][lang][key] for t in rows if t["variant"] == v and key in t["scores"].get(lang, {})]
            ax.scatter([x[i] + k * width] * len(seeds), seeds, s=8, color="black", zorder=3)
    ax.set_xticks(x + width * (len(langs) - 1) / 2, variants, rotation=20, ha="right")
    ax.set(ylabel=f"test {label}", title="ablation (bars: mean over seeds, lines: std, dots: seeds)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    with writing(path):
        fig.savefig(path, dpi=80)
    plt.close(fig)

"""What a metric declares (`Metric`), what its producer reads (`Sample`) and returns (`Scored`).

The declaration is everything a table needs to show the metric the same way everywhere:
evaluate's predictions TSV and means, its log lines, the score table, the ablation's tables,
the report. The registry (`train.metrics.METRICS`) lists the declarations in that order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Literal


@dataclass
class Sample:
    """One language's decoded split, as a producer sees it: rows of the metric's `scope`.

    reference scope: the decoded rows that have a reference in `lang`; cross-lingual scope:
    every decoded video of a zero-shot language, against the source-language reference
    (`refs`, `target` and `z` are None there).
    """

    lang: str
    src: str
    """The dataset's source language (its references are BLASER's `src`)."""
    case: str
    """Headline BLEU casing: 'lc' or 'mixed'."""
    hyps: list[str]
    src_emb: Any
    """The source-language references' SONAR embeddings, [rows, dim]."""
    hyp_emb: Any
    """The hypotheses' SONAR embeddings, [rows, dim]; None without a SONAR encoder."""
    scorers: Any
    """train.evaluate.Scorers: the model-based metrics' models (each None when absent)."""
    refs: list[str] | None = None
    target: Any = None
    """The references' SONAR embeddings (the stored targets), [rows, dim]."""
    z: Any = None
    """The predicted visual embeddings, [rows, dim]."""


@dataclass
class Scored:
    """A producer's result for one language."""

    values: list[float]
    """One score per row of the sample (the metric's TSV column)."""
    producer: str
    """What computed them: the language's `producers[metric.producer]`."""
    fields: dict[str, Any] = field(default_factory=dict)
    """Keys added to the language's scores as they are (BLEU's corpus scores and signatures)."""


@dataclass(frozen=True)
class InAblation:
    """How `slt-pipe ablate` shows a metric (pipeline.ablate_results)."""

    order: int
    """Its place among the metric columns of results.csv and summary.csv (lowest first)."""
    summary: bool = True
    """Mean and std over seeds in summary.csv; False: per trial in results.csv only."""
    table: bool = True
    """A column of the printed summary table."""
    digits: int = 4
    """Decimals of 'mean ± std' in the printed and markdown summaries."""


@dataclass(frozen=True)
class Metric:
    key: str
    """Key of its value in a language's scores (scores_SPLIT.json, best.json, ablation trials)."""
    label: str
    """Its column label in the score table and the ablation summary."""
    fmt: str
    """Number format in the score table."""
    column: str | None = None
    """Its per-sample column in the predictions TSV; None: no per-sample score."""
    scope: Literal["reference", "cross-lingual"] = "reference"
    """reference: scored on the rows with a reference in the language; cross-lingual: a zero-shot
    language's every video, against the source-language reference."""
    produce: Callable[[Sample], Scored | None] | None = None
    """Scores a sample (None: its model is absent, the metric is left out); None here: another
    metric's producer writes it (chrF: BLEU's)."""
    corpus: bool = False
    """Its value is a corpus score in the producer's `fields`, not the mean of its column."""
    producer: str | None = None
    """Key of `producers` in a language's scores that names what computed it (one may name two: "BLEU, chrF")."""
    log: str | None = None
    """Its name in evaluate's log line (`{xl_against}` is filled in); None: no line of its own."""
    describe: Callable[[str, str, dict, str], list[str]] | None = None
    """Its own log lines (split, lang, scores, case), instead of the plain one."""
    paired: Callable[[str, bool], Any] | None = None
    """(lang, lowercase) -> the sacrebleu metric the ablation's paired bootstrap tests it with (p_KEY);
    such a metric is a headline score: first in the report, a column of summary.md."""
    ablation: InAblation | None = None
    """How the ablation tables show it; None: not there."""
    note: str | None = None
    """What the number measures, where that is not obvious from its name: printed under the score table,
    logged once by evaluate, stored in a language's scores (`notes`)."""


def cosine(a: Any, b: Any) -> list[float]:
    """Row-wise cosine similarity of two [rows, dim] tensors."""
    import torch

    return torch.nn.functional.cosine_similarity(a.float(), b.float(), dim=-1).tolist()

"""The metric registry: every score evaluation writes, declared once (`train.metrics.base.Metric`).

One module per metric or family: its name, per-sample column, key in the scores, label,
format, producer and how the ablation shows it. `METRICS` is the order of every table:
the predictions TSV's columns, the means and producers in scores_SPLIT.json, evaluate's log
lines, the score table, the report; the ablation orders its own columns (`InAblation.order`).
Adding a metric: a module beside these, and one line in `METRICS`.
"""

from __future__ import annotations

from train.metrics import blaser, bleu, bleurt, cross_lingual, sonar_similarity, z_cosine
from train.metrics.base import InAblation, Metric, Sample, Scored

METRICS: tuple[Metric, ...] = (
    bleu.BLEU,
    bleu.CHRF,
    z_cosine.Z_COSINE,
    sonar_similarity.SONAR_SIMILARITY,
    blaser.BLASER_REF,
    blaser.BLASER_QE,
    bleurt.BLEURT,
    cross_lingual.XL_SONAR_SIMILARITY,
    cross_lingual.XL_BLASER_QE,
)

HEADLINE = tuple(m for m in METRICS if m.paired is not None)
"""The corpus-level headline scores (BLEU, chrF): first in the report, tested pairwise in ablations."""
ABLATION = tuple(sorted((m for m in METRICS if m.ablation is not None), key=lambda m: m.ablation.order))
"""The metrics of the ablation's tables, in their column order."""


def _check(metrics: tuple[Metric, ...]) -> None:
    for what in ("key", "column"):
        names = [getattr(m, what) for m in metrics if getattr(m, what) is not None]
        if len(names) != len(set(names)):
            raise ValueError(f"two metrics share a {what}: {sorted(n for n in names if names.count(n) > 1)}")


_check(METRICS)

__all__ = ["ABLATION", "HEADLINE", "METRICS", "InAblation", "Metric", "Sample", "Scored"]

"""95% confidence intervals of every score, and the small-sample warning: the one place the bootstrap lives.

A score on a handful of sentences is noise (a 20-step run's dev BLEU on 5 sentences beat a 150-step
run's), so every figure evaluate writes carries its interval and the number of sentences it rests on.

Two kinds, each deterministic (a fixed seed, `SEED`), so a rerun writes the same scores_SPLIT.json:
  corpus scores (BLEU, chrF)   sacrebleu's own bootstrap (`corpus_score(n_bootstrap=RESAMPLES)`):
                               the resamples' mean ± half the width of their central 95%, as sacrebleu
                               reports it (its `μ = ... ± ...`), kept within 0-100
  means of per-sentence scores percentile bootstrap over sentences: the 2.5th and 97.5th percentiles of
                               the mean of RESAMPLES resamples (with replacement) of the sentences
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any
from unittest import mock

import numpy as np

LEVEL = 0.95
RESAMPLES = 1000
SEED = 12345
"""sacrebleu's own default seed (SACREBLEU_SEED), used for both kinds: a direct sacrebleu call agrees."""
MIN_SENTENCES = 30
"""Below this many sentences a split's scores come with a warning naming its size."""
SACREBLEU = "sacrebleu bootstrap (mean ± half the central 95% of the resamples, within 0-100)"
OVER_SENTENCES = "percentile bootstrap over sentences"


def ci_key(key: str) -> str:
    """The key of a score's interval beside it: bleu -> bleu_ci95."""
    return f"{key}_ci95"


def method_text(kinds: dict[str, list[str]]) -> str:
    """'BLEU, chrF: sacrebleu bootstrap (...); z cos, SONAR sim: percentile bootstrap over sentences'.

    `kinds`: method (SACREBLEU, OVER_SENTENCES) -> the labels of the scores it gave an interval.
    """
    return "; ".join(f"{', '.join(labels)}: {how}" for how, labels in kinds.items() if labels)


def info(kinds: dict[str, list[str]]) -> dict[str, Any]:
    """The `ci` entry of a language's scores: how its intervals were computed (`kinds` as `method_text`'s)."""
    return {"level": LEVEL, "method": method_text(kinds), "resamples": RESAMPLES, "seed": SEED}


def mean_interval(values: Sequence[float], resamples: int = RESAMPLES, seed: int = SEED) -> list[float]:
    """[lo, hi]: the percentile bootstrap interval of the mean of `values` (one per sentence).

    The sentences are the sampling unit: a test set is one draw of sentences, and this says how far
    its mean could move on another draw of the same size.
    """
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        raise ValueError("no values to bootstrap")
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(resamples, x.size))].mean(axis=1)
    tail = 100 * (1 - LEVEL) / 2
    lo, hi = np.percentile(means, [tail, 100 - tail])
    return [float(lo), float(hi)]


def _sacrebleu_seed(seed: int) -> Any:
    """sacrebleu seeds its bootstrap from the environment only (its 'none' draws from the OS): pin it for the
    call, so a user's setting has no effect on slt-pipe's intervals (the README says so); restored after."""
    return mock.patch.dict(os.environ, {"SACREBLEU_SEED": str(seed)})


def corpus_interval(metric: Any, hyps: list[str], refs: list[str], resamples: int = RESAMPLES,
                    seed: int = SEED) -> list[float]:
    """[lo, hi] of a sacrebleu corpus score (BLEU, chrF) by sacrebleu's own bootstrap: its mean ± its half-width,
    kept within the score's 0-100 (the symmetric interval of a high score on a few sentences can pass 100).

    `metric` is a fresh sacrebleu metric object: the bootstrap writes `n_bootstrap` and `seed` into it,
    which would change the signature of the metric the point estimate is reported with. sacrebleu keeps the
    mean and half-width unrounded only in the score's `_mean` and `_ci` (its `format` rounds them).
    """
    with _sacrebleu_seed(seed):
        s = metric.corpus_score(hyps, [refs], n_bootstrap=resamples)
    return [max(0.0, float(s._mean - s._ci)), min(100.0, float(s._mean + s._ci))]


def small_sample_warning(sizes: dict[str, int]) -> str | None:
    """The warning of a language whose scores rest on under MIN_SENTENCES sentences, naming the count(s).

    `sizes`: what the sentences are scored against -> how many ("" for the plain reference-scored case).
    """
    small = {what: n for what, n in sizes.items() if n < MIN_SENTENCES}
    if not small:
        return None
    if len(set(sizes.values())) == 1:  # one count for every figure: no need to say which
        small = {"": next(iter(small.values()))}
    counts = " and ".join(f"{n} sentence{'s' if n != 1 else ''}" + (f" {what}" if what else "")
                          for what, n in small.items())
    return f"only {counts}: these scores are noise-level; intervals are wide"


def interval_text(scores: dict[str, Any], key: str, fmt: str) -> str:
    """' [lo, hi]' after a score in a log line, or '' for scores written before intervals were."""
    ci = scores.get(ci_key(key))
    return f" {format_interval(ci, fmt)}" if ci is not None else ""


def format_interval(ci: Sequence[float], fmt: str) -> str:
    """'[12.30, 41.00]' in the score's own number format."""
    return f"[{format(ci[0], fmt)}, {format(ci[1], fmt)}]"

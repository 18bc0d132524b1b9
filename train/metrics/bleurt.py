"""BLEURT-20 in PyTorch (train.bleurt), when `--bleurt` names a snapshot."""

from __future__ import annotations

from train.metrics.base import InAblation, Metric, Sample, Scored


def _produce(s: Sample) -> Scored | None:
    model = s.scorers.bleurt
    if model is None:
        return None
    return Scored(list(model.score(s.refs, s.hyps)), model.producer)


BLEURT = Metric("bleurt", "BLEURT", ".4f", column="bleurt", produce=_produce, producer="BLEURT", log="BLEURT",
                ablation=InAblation(5, summary=False, table=False))

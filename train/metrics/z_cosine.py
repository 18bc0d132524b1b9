"""z cos: the predicted visual embedding z against the reference's SONAR embedding (the stored target)."""

from __future__ import annotations

from train.metrics.base import InAblation, Metric, Sample, Scored, cosine


def _produce(s: Sample) -> Scored:
    return Scored(cosine(s.z, s.target), "cosine of z and the reference's SONAR embedding")


Z_COSINE = Metric("cosine", "z cos", ".3f", column="z_cos", produce=_produce, producer="cosine",
                  ablation=InAblation(3))

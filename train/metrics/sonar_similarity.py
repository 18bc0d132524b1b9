"""SONAR similarity: the hypothesis's SONAR embedding (the encoder the targets were embedded with)
against the reference's."""

from __future__ import annotations

from train.metrics.base import InAblation, Metric, Sample, Scored, cosine


def _produce(s: Sample) -> Scored | None:
    if s.hyp_emb is None:
        return None
    spec = s.scorers.embedder.spec
    return Scored(cosine(s.hyp_emb, s.target), f"cosine of SONAR embeddings ({spec})", {"sonar_encoder": spec})


SONAR_SIMILARITY = Metric("sonar_similarity", "SONAR sim", ".4f", column="sonar_sim", produce=_produce,
                          producer="SONAR similarity", log="SONAR similarity", ablation=InAblation(2))

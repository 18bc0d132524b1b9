"""BLASER 2.0 ref and QE (train.blaser), when their weights are on disk. A sign video has no text,
so BLASER's `src` is the source-language reference's SONAR embedding."""

from __future__ import annotations

from train.metrics.base import Metric, Sample, Scored


def _producer(name: str):
    def produce(s: Sample) -> Scored | None:
        model = getattr(s.scorers, name)
        if s.hyp_emb is None or model is None:
            return None
        extra = {"ref": s.target} if name == "blaser_ref" else {}
        return Scored(list(model.score(s.src_emb, s.hyp_emb, **extra)),
                      f"{model.producer}; src = the {s.src} reference's embedding")

    return produce


BLASER_REF = Metric("blaser_ref", "BLASER ref", ".3f", column="blaser_ref", produce=_producer("blaser_ref"),
                    producer="blaser_ref", log="BLASER 2.0 ref")
BLASER_QE = Metric("blaser_qe", "BLASER QE", ".3f", column="blaser_qe", produce=_producer("blaser_qe"),
                   producer="blaser_qe", log="BLASER 2.0 QE")

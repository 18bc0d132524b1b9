"""Cross-lingual scores of a zero-shot language: every hypothesis against the source-language
reference (SONAR similarity and BLASER-QE, both language-agnostic)."""

from __future__ import annotations

from train.metrics.base import InAblation, Metric, Sample, Scored, cosine


def _sonar(s: Sample) -> Scored | None:
    if s.hyp_emb is None:
        return None
    return Scored(cosine(s.hyp_emb, s.src_emb), f"cosine of the {s.lang} hypothesis's and the {s.src} reference's "
                                                f"SONAR embeddings ({s.scorers.embedder.spec})")


def _blaser_qe(s: Sample) -> Scored | None:
    model = s.scorers.blaser_qe
    if s.hyp_emb is None or model is None:
        return None
    return Scored(list(model.score(s.src_emb, s.hyp_emb)), f"{model.producer}; src = the {s.src} reference")


XL_SONAR_SIMILARITY = Metric("xl_sonar_similarity", "x-ling SONAR sim", ".4f", column="xl_sonar_sim",
                             scope="cross-lingual", produce=_sonar, producer="cross-lingual SONAR similarity",
                             log="cross-lingual SONAR similarity vs {xl_against}", ablation=InAblation(4, table=False),
                             note="x-ling SONAR sim: as SONAR sim, against the source-language reference's embedding "
                                  "(every video of a zero-shot language), averaged over videos.")
XL_BLASER_QE = Metric("xl_blaser_qe", "x-ling BLASER QE", ".3f", column="xl_blaser_qe", scope="cross-lingual",
                      produce=_blaser_qe, producer="cross-lingual BLASER-QE",
                      log="cross-lingual BLASER-QE vs {xl_against}")

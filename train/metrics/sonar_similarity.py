"""SONAR similarity: the hypothesis's SONAR embedding (the encoder the targets were embedded with)
against the reference's."""

from __future__ import annotations

from train.metrics.base import InAblation, Metric, Sample, Scored, cosine


def _produce(s: Sample) -> Scored | None:
    if s.hyp_emb is None:
        return None
    spec = s.scorers.embedder.spec
    return Scored(cosine(s.hyp_emb, s.target), f"cosine of SONAR embeddings ({spec})", {"sonar_encoder": spec})


NOTE = ("SONAR sim: per sentence, the cosine between the hypothesis's SONAR embedding (the run's SONAR text "
        "encoder) and the reference's stored target embedding (the same encoder), averaged over sentences; "
        "from -1 to 1, 1 = the same embedding. It compares whole-sentence embeddings, BLEU counts shared "
        "n-grams, so they can disagree. With the tiny profile's tiny SONAR (trained a minute, centred so that "
        "unrelated sentences are near-orthogonal) a wrong hypothesis scores near 0 and can score below it: "
        "a negative mean means wrong, not worse than wrong.")
"""What the figure is, said where it is shown: a negative mean beside a BLEU of 25 is otherwise a puzzle."""

SONAR_SIMILARITY = Metric("sonar_similarity", "SONAR sim", ".4f", column="sonar_sim", produce=_produce,
                          producer="SONAR similarity", log="SONAR similarity", ablation=InAblation(2), note=NOTE)

"""BLEU and chrF (sacrebleu): the corpus-level headline pair, and BLEU per sentence.

The headline pair is in the casing the caller resolved ('lc' or 'mixed'; sacrebleu's own
`lowercase`, so the signature says `case:lc`); both casings' numbers and signatures are
kept. Chinese is tokenized with sacrebleu's `zh`, everything else with 13a.
"""

from __future__ import annotations

from typing import Any

from train.confidence import ci_key, corpus_interval, interval_text
from train.metrics.base import InAblation, Metric, Sample, Scored

CHINESE = ("zho_Hans", "zho_Hant", "yue_Hant")


def bleu_tokenizer(lang: str) -> str:
    return "zh" if lang in CHINESE else "13a"


def sacrebleu_bleu(lang: str, lowercase: bool, **kw: Any) -> Any:
    import sacrebleu

    return sacrebleu.metrics.BLEU(tokenize=bleu_tokenizer(lang), lowercase=lowercase, **kw)


def sacrebleu_chrf(lang: str, lowercase: bool) -> Any:
    import sacrebleu

    return sacrebleu.metrics.CHRF(lowercase=lowercase)


def score(lang: str, refs: list[str], hyps: list[str], case: str = "mixed") -> dict:
    """BLEU and chrF; the headline pair in `case` ('lc' or 'mixed'), both BLEUs kept."""
    out: dict = {"case": case, "n": len(refs)}
    for c in ("lc", "mixed"):
        bleu, chrf = sacrebleu_bleu(lang, c == "lc"), sacrebleu_chrf(lang, c == "lc")
        b, ch = bleu.corpus_score(hyps, [refs]), chrf.corpus_score(hyps, [refs])
        name = "lc" if c == "lc" else "cased"
        out[f"bleu_{name}"], out[f"chrf_{name}"] = float(b.score), float(ch.score)
        out[f"signature_{name}"] = f"BLEU {bleu.get_signature()} | chrF {chrf.get_signature()}"
    head = "lc" if case == "lc" else "cased"
    out.update(bleu=out[f"bleu_{head}"], chrf=out[f"chrf_{head}"], signature=out[f"signature_{head}"])
    return out


def intervals(lang: str, refs: list[str], hyps: list[str], case: str = "mixed") -> dict[str, list[float]]:
    """The headline pair's 95% intervals (bleu_ci95, chrf_ci95) by sacrebleu's bootstrap, in `case`.

    Fresh metric objects: the bootstrap records itself in a metric's signature, and the reported
    signature is the plain corpus score's.
    """
    lc = case == "lc"
    return {ci_key("bleu"): corpus_interval(sacrebleu_bleu(lang, lc), hyps, refs),
            ci_key("chrf"): corpus_interval(sacrebleu_chrf(lang, lc), hyps, refs)}


def sentence_bleu(lang: str, refs: list[str], hyps: list[str], case: str) -> list[float]:
    bleu = sacrebleu_bleu(lang, case == "lc", effective_order=True)
    return [float(bleu.sentence_score(h, [r]).score) for h, r in zip(hyps, refs)]


def _produce(s: Sample) -> Scored:
    corpus = score(s.lang, s.refs, s.hyps, s.case)
    corpus.update(intervals(s.lang, s.refs, s.hyps, s.case))
    return Scored(sentence_bleu(s.lang, s.refs, s.hyps, s.case), corpus["signature"], corpus)


def _refs_words(label: str) -> str:
    from train.data import REFERENCE

    return "the dataset's references" if label == REFERENCE else f"{label} references"


def _describe(split: str, lang: str, res: dict, case: str) -> list[str]:
    other = f"cased {res['bleu_cased']:.2f}" if case == "lc" else f"lower-cased {res['bleu_lc']:.2f}"
    return [f"{split} {lang}: BLEU {res['bleu']:.2f}{interval_text(res, 'bleu', '.2f')} "
            f"({'lower-cased' if case == 'lc' else 'cased'}; {other}) "
            f"chrF {res['chrf']:.2f}{interval_text(res, 'chrf', '.2f')} on {res['n']} sentences "
            f"against {_refs_words(res['references'])}  [{res['signature']}]"]


BLEU = Metric("bleu", "BLEU", ".2f", column="sent_bleu", produce=_produce, corpus=True, producer="BLEU, chrF",
              describe=_describe, paired=sacrebleu_bleu, ablation=InAblation(0, digits=2))
CHRF = Metric("chrf", "chrF", ".2f", corpus=True, producer="BLEU, chrF", paired=sacrebleu_chrf,
              ablation=InAblation(1, digits=2))

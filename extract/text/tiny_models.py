"""The toy world's tiny text models as the stage sees them: whether the config names them, the
corpus they learn from, and what identifies each one in the cache (its key inputs).

The tiny SONAR (extract.text.tiny_sonar) and the tiny NLLB (extract.text.nllb.make_tiny_nllb)
learn the dataset's train-split references only, never dev or test text, so they can write
only the languages of those references (extract.text.translators.base.tiny_cannot_write).
"""

from __future__ import annotations

from typing import Any

from cache.errors import SltPipeError
from cache.keys import make_key
from extract.config import EmbedConfig
from extract.text.embed import texts_sha256
from extract.text.languages import FLORES200

TINY_SONAR_FORMAT = 1
TINY_NLLB_FORMAT = 1
TINY_SETTINGS = {"dim": 128, "layers": 2, "batch_size": 32, "lr": 2e-3}
"""Tiny-SONAR architecture and optimiser (extract.text.tiny_sonar defaults), part of its key."""


def uses_tiny_sonar(embed: EmbedConfig) -> bool:
    """Whether the config names the tiny SONAR (`embed.sonar_encoder` and `sonar_decoder` 'tiny'),
    or SltPipeError when it names only one of them: the two only work as a pair."""
    enc, dec = embed.sonar_encoder == "tiny", embed.sonar_decoder == "tiny"
    if enc != dec:
        raise SltPipeError(
            f"sonar_encoder={embed.sonar_encoder!r} and sonar_decoder={embed.sonar_decoder!r}: "
            "the tiny SONAR's encoder and decoder only work as a pair",
            fix="set both embed.sonar_encoder and embed.sonar_decoder to 'tiny', or both to fairseq2 asset names")
    return enc


def tiny_corpus(dataset: Any) -> dict[str, list[str]]:
    """The tiny models' training text: the distinct train-split references of `dataset` (opened with
    its train split), parallel over every language it has for all of them (toy: deu, eng, fra)."""
    from extract.text.tiny_sonar import parallel_references

    src = dataset.source_lang
    ids = {s.id for s in dataset.samples.get("train", [])}
    refs = dataset.references.get("train", {})
    others = sorted(lang for lang, by_id in refs.items()
                    if lang != src and lang in FLORES200 and ids <= set(by_id))
    par = parallel_references(dataset, "train", [src, *others])
    seen: set[str] = set()
    keep = [i for i, t in enumerate(par[src]) if not (t in seen or seen.add(t))]  # type: ignore[func-returns-value]
    out = {lang: [texts[i] for i in keep] for lang, texts in par.items()}
    if not keep:
        raise SltPipeError("the tiny SONAR needs train-split sentences, and the dataset has none",
                           path=dataset.root, fix="use a dataset with a train split, or the paper profile")
    return out


def tiny_sonar_key_inputs(embed: EmbedConfig, corpus: dict[str, list[str]]) -> tuple[str, dict[str, Any]]:
    inputs = {"corpus": {lang: texts_sha256(t) for lang, t in corpus.items()}, "items": len(next(iter(corpus.values()))),
              "seed": embed.tiny_seed, "steps": embed.tiny_sonar_steps, **TINY_SETTINGS}
    return make_key("tiny-sonar", inputs, format_version=TINY_SONAR_FORMAT), inputs


def tiny_nllb_key_inputs(embed: EmbedConfig, corpus: dict[str, list[str]]) -> tuple[str, dict[str, Any]]:
    inputs = {"corpus": {lang: texts_sha256(t) for lang, t in corpus.items()},
              "seed": embed.tiny_seed, "steps": embed.tiny_nllb_steps}
    return make_key("tiny-nllb", inputs, format_version=TINY_NLLB_FORMAT), inputs

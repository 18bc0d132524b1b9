"""SONAR as embed-targets' translator: encode the source sentence, decode its embedding in the
target language, with the run's SONAR encoder (shared with the sentence embedder) and decoder;
the tiny profile's tiny SONAR included.

The model code is in extract.text.nllb (SonarTranslator) and cache.sonar_models.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cache.errors import SltPipeError
from extract.config import EmbedConfig
from extract.text.spec import ModelSource, Translator
from extract.text.tiny_models import uses_tiny_sonar
from extract.text.translators.base import MAX_LEN, TranslatorContext, TranslatorKind, tiny_cannot_write


def build(models: ModelSource) -> Translator:
    from cache.sonar_models import load_sonar_decoder
    from extract.text.nllb import SonarTranslator

    s = models.spec
    encoder, tokenizer = models.sonar_parts()
    decoder = models.load(f"SONAR decoder {s.sonar_decoder}",
                          lambda: load_sonar_decoder(s.sonar_decoder, s.tiny_sonar, s.device))
    return SonarTranslator(encoder, decoder, tokenizer, device=s.device, beam_size=s.beam_size,
                           max_seq_len=s.max_len, batch_size=s.batch_size)


def identity(ctx: TranslatorContext, encoder: dict[str, Any], tiny_sonar: Path | None) -> dict[str, Any]:
    from cache.sonar_models import sonar_identity

    e = ctx.embed
    return {"kind": "sonar", "encoder": encoder, "decoder": sonar_identity(e.sonar_decoder, tiny_sonar),
            "beam_size": e.beam_size, "max_seq_len": MAX_LEN}


def label(embed: EmbedConfig) -> str:
    return "sonar"


def cannot_write(ctx: TranslatorContext, langs: list[str]) -> dict[str, SltPipeError]:
    return tiny_cannot_write(ctx, langs, "tiny SONAR") if uses_tiny_sonar(ctx.embed) else {}


TRANSLATOR = TranslatorKind(build=build, identity=identity, label=label, cannot_write=cannot_write)

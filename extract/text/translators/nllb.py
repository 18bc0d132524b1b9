"""NLLB as embed-targets' translator (the paper's): an NLLB-200 snapshot read from disk, or, with
`embed.nllb_model = 'tiny'`, the tiny NLLB the stage trains on the toy's train-split references.

The model code (strict loading, the tokenizer's language tokens, snapshot hashes) is in
extract.text.nllb; this module says what the stage needs to know about it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cache.errors import SltPipeError, WeightsError
from extract.config import EmbedConfig
from extract.text.spec import ModelSource, Translator
from extract.text.translators.base import MAX_LEN, TranslatorContext, TranslatorKind, tiny_cannot_write


def build(models: ModelSource) -> Translator:
    from extract.text.nllb import NllbTranslator

    s = models.spec
    path = s.translator_weights
    if path is None:
        raise ValueError("this spec was made for a run that translates nothing")
    return models.load(f"NLLB {path}", lambda: NllbTranslator(
        path, s.device, num_beams=s.beam_size, max_new_tokens=s.max_len, batch_size=s.batch_size,
        langs=list(s.langs)))


def identity(ctx: TranslatorContext, encoder: dict[str, Any], tiny_sonar: Path | None) -> dict[str, Any]:
    e = ctx.embed
    out: dict[str, Any] = {"kind": "nllb", "model": e.nllb_model, "num_beams": e.beam_size, "max_new_tokens": MAX_LEN}
    if e.nllb_model != "tiny":
        from extract.text.nllb import nllb_identity

        out["model"] = nllb_identity(e.nllb_model)  # the snapshot's file hashes, not just its path
    else:
        out.update(model="tiny-nllb", entry=ctx.tiny.nllb_key())
    return out


def label(embed: EmbedConfig) -> str:
    return "tiny-nllb" if embed.nllb_model == "tiny" else embed.nllb_model


def cannot_write(ctx: TranslatorContext, langs: list[str]) -> dict[str, SltPipeError]:
    return tiny_cannot_write(ctx, langs, "tiny NLLB") if ctx.embed.nllb_model == "tiny" else {}


def lacks(ctx: TranslatorContext, langs: list[str]) -> dict[str, SltPipeError]:
    """Languages the NLLB snapshot's tokenizer has no token for, read from the tokenizer alone
    (WeightsError when it lacks the source language: then it can translate nothing)."""
    from extract.text.nllb import nllb_missing_langs
    from extract.text.progress import status

    model, src = ctx.embed.nllb_model, ctx.source_lang
    if model == "tiny":
        return {}
    with status(ctx.console, f"reading the tokenizer of NLLB {model}"):
        missing = nllb_missing_langs(model, [src, *langs])
        if src in missing:
            raise WeightsError(f"NLLB model {model} has no language token for the source language {src}",
                               path=model if Path(model).exists() else None,
                               fix="use an NLLB-200 snapshot (--set embed.nllb_model=facebook/nllb-200-distilled-600M)")
        keep = [lang for lang in ctx.langs if lang not in missing]
        return {lang: SltPipeError(
            f"{lang}: NLLB model {model} has no language token for {lang}, so it cannot translate into it",
            path=model if Path(model).exists() else None,
            fix=(f"drop it: `{ctx.command(keep)}`; or " if keep else "")
            + "use an NLLB-200 snapshot whose tokenizer has it (--set embed.nllb_model=facebook/nllb-200-distilled-600M)")
            for lang in missing}


def weights(ctx: TranslatorContext) -> str | None:
    return str(ctx.tiny.nllb_dir()) if ctx.embed.nllb_model == "tiny" else ctx.embed.nllb_model


TRANSLATOR = TranslatorKind(build=build, identity=identity, label=label, cannot_write=cannot_write, lacks=lacks,
                            weights=weights, weights_name="NLLB snapshot")

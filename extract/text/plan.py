"""What a run's targets are made of, decided from the config and the dataset alone (no cache, no
model): the languages, the dataset's own references first (`embed.references`) and machine
translation only where it has none, the label saying which, the text models' identities, and
the languages the translator refuses before any work.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

from cache.errors import SltPipeError
from extract.config import EmbedConfig
from extract.text.embed import REFERENCE
from extract.text.spec import TextModelIds
from extract.text.tiny_models import uses_tiny_sonar
from extract.text.translators import translator_kind
from extract.text.translators.base import TranslatorContext


def target_langs(embed: EmbedConfig) -> list[str]:
    """`embed.langs` as FLORES-200 codes (SltPipeError naming close matches of an unknown one)."""
    from extract.text.languages import resolve_langs

    return resolve_langs(embed.langs)


def reference_texts(embed: EmbedConfig, dataset: Any, split: str, lang: str) -> list[str | None]:
    """Per sample of the split, the dataset's own text in `lang` (the source text, or a shipped
    reference such as the toy's eng/fra), None where the dataset has none (or, with
    `embed.references = false`, for every language but the source)."""
    if lang == dataset.source_lang:
        return [s.text for s in dataset.samples[split]]
    by_id = dataset.references.get(split, {}).get(lang, {}) if embed.references else {}
    return [by_id.get(s.id) for s in dataset.samples[split]]


def needs_translation(embed: EmbedConfig, splits: Sequence[str], dataset: Any, lang: str) -> bool:
    """True references first: only samples without the dataset's own text in `lang` are translated."""
    return any(t is None for split in splits for t in reference_texts(embed, dataset, split, lang))


def source_label(embed: EmbedConfig, splits: Sequence[str], dataset: Any, lang: str) -> str:
    """Where a language's texts come from: the dataset's references, the translator, or both."""
    if not needs_translation(embed, splits, dataset, lang):
        return REFERENCE
    refs = sum(t is not None for split in splits for t in reference_texts(embed, dataset, split, lang))
    machine = translator_kind(embed.translator).label(embed)
    return f"{REFERENCE} + {machine}" if refs else machine


def targets_texts(embed: EmbedConfig, splits: Sequence[str], dataset: Any, lang: str,
                  translate: Callable[[str], list[str]]) -> tuple[dict[str, list[str]], dict[str, list[str]],
                                                                 list[tuple[str, str, str]]]:
    """Per split, a language's target texts and the source of each (REFERENCE or the translator's
    label), and its machine-translated (source, output, split) rows for the quality gates.
    `translate(split)` gives a split's translations; it is asked only for splits lacking references."""
    machine = translator_kind(embed.translator).label(embed)
    texts: dict[str, list[str]] = {}
    sources: dict[str, list[str]] = {}
    rows: list[tuple[str, str, str]] = []
    for split in splits:
        refs = reference_texts(embed, dataset, split, lang)
        translated = translate(split) if any(t is None for t in refs) else refs
        texts[split] = [r if r is not None else t for r, t in zip(refs, translated)]
        sources[split] = [REFERENCE if r is not None else machine for r in refs]
        rows += [(s.text, t, split) for s, r, t in zip(dataset.samples[split], refs, translated) if r is None]
    return texts, sources, rows


def text_model_ids(ctx: TranslatorContext, tiny_sonar: Path | None) -> TextModelIds:
    """The SONAR encoder's and the translator's identities (what the cache keys are made of); loads no model."""
    from cache.sonar_models import sonar_identity

    kind = translator_kind(ctx.embed.translator)
    encoder = sonar_identity(ctx.embed.sonar_encoder, tiny_sonar)
    return TextModelIds(encoder, kind.identity(ctx, encoder, tiny_sonar), tiny_sonar)


def unwritable_langs(ctx: TranslatorContext, splits: Sequence[str], dataset: Any) -> dict[str, SltPipeError]:
    """Of the run's languages, those to translate that the translator cannot write at all, each with its
    error (a tiny translator learns only the languages of the train-split references). Decided from the
    config and the references alone: no model is trained or loaded."""
    kind = translator_kind(ctx.embed.translator)
    need = [lang for lang in ctx.langs if needs_translation(ctx.embed, splits, dataset, lang)]
    uses_tiny_sonar(ctx.embed)  # a lone tiny encoder or decoder is refused first, whoever translates
    return kind.cannot_write(ctx, need) if need else {}

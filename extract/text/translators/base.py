"""What a translator declares (`TranslatorKind`), what it is asked with (`TranslatorContext`), and the
refusal every tiny translator shares.

A translator is one module of this package holding one `TranslatorKind`: how to build it, what
identifies it in cache keys, its label, and which languages it refuses before any work. The
stage owns the cache; a translator reads only its config, the dataset's languages and its own
files, and gets the tiny models the stage keeps in the cache through `TinyModels`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from rich.console import Console

from cache.errors import SltPipeError
from extract.config import EmbedConfig
from extract.text.spec import ModelSource, Translator

MAX_LEN = 128
"""Longest generated translation in tokens (part of every translator identity)."""


@dataclass(frozen=True)
class TinyModels:
    """The toy world's tiny models, which the stage keeps in the cache (and alone reads and writes)."""

    langs: Callable[[], list[str]]
    """The languages they learn: those of the dataset's train-split references. Trains nothing."""
    nllb_key: Callable[[], str]
    """The tiny NLLB's cache key. Trains nothing."""
    nllb_dir: Callable[[], Path]
    """The tiny NLLB's entry directory, trained first where the cache has none."""


@dataclass(frozen=True)
class TranslatorContext:
    """One run, as a translator is asked about it: plain values, and the stage's tiny models."""

    embed: EmbedConfig
    source_lang: str
    langs: list[str]
    """Every language the run was asked for (the commands a refusal suggests start from them)."""
    dataset: str
    root: Path | None
    command: Callable[..., str]
    """`command(langs, *flags)`: this run's embed-targets command line with other languages, to paste."""
    tiny: TinyModels
    console: Console


def _refuses_nothing(ctx: TranslatorContext, langs: list[str]) -> dict[str, SltPipeError]:
    return {}


def _no_weights(ctx: TranslatorContext) -> str | None:
    return None


@dataclass(frozen=True)
class TranslatorKind:
    """Everything embed-targets knows about one translator (registered in extract.text.translators)."""

    build: Callable[[ModelSource], Translator]
    """The translator of a run's spec, built where the jobs run (this process or a Ray worker)."""
    identity: Callable[[TranslatorContext, dict[str, Any], Path | None], dict[str, Any]]
    """`identity(ctx, encoder identity, tiny-SONAR dir)`: what its translations depend on, the
    translator part of the translations' and targets' cache keys. Loads no model."""
    label: Callable[[EmbedConfig], str]
    """Its name in the summary table and in every row it wrote (targets.h5 `source`)."""
    cannot_write: Callable[[TranslatorContext, list[str]], dict[str, SltPipeError]] = _refuses_nothing
    """Of the languages to translate into, those it cannot write at all, each with its error,
    decided from the config and the dataset's references alone, before any model is trained or loaded."""
    lacks: Callable[[TranslatorContext, list[str]], dict[str, SltPipeError]] = _refuses_nothing
    """Of the languages still to translate (not cached), those its own files (a tokenizer) have no
    code for, each with its error; reads those files only, never a model."""
    weights: Callable[[TranslatorContext], str | None] = _no_weights
    """Its own weights for the spec (`TextModelSpec.translator_weights`), asked once a translation
    is to be computed; None where it has none of its own."""
    weights_name: str = "translator weights"
    """What its weights are called where a cluster node cannot see them."""


def tiny_cannot_write(ctx: TranslatorContext, langs: list[str], name: str) -> dict[str, SltPipeError]:
    """A tiny translator (`name`: tiny SONAR, tiny NLLB) learns only the languages of the dataset's
    train-split references; asked for another, it writes one of those (the toy's 'Spanish' is English)."""
    known = ctx.tiny.langs()
    bad = [lang for lang in langs if lang not in known]
    keep = [lang for lang in ctx.langs if lang not in bad]
    drop = (f"drop it: `{ctx.command(keep)}`" if keep
            else f"ask for languages it knows: `{ctx.command(known)}`")
    return {lang: SltPipeError(
        f"{lang}: the {name} translator cannot write {lang}: it learns only the languages of "
        f"{ctx.dataset}'s train-split references ({', '.join(known)}), and would write one of those instead",
        path=ctx.root,
        fix=f"{drop}; or translate with a model that knows {lang} (`--profile paper`: SONAR and NLLB-200 "
        f"know the 202 FLORES-200 languages); or give every train sentence a {lang} reference") for lang in bad}

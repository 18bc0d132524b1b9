"""The translators embed-targets can use, by `embed.translator` name (EmbedConfig.translator's
Literal lists the same names; tests/test_layering.py checks).

A translator is one module here holding one `TranslatorKind` (extract.text.translators.base):
how to build it, its identity in cache keys, its label and its refusals. Adding one is that
module, its line in `TRANSLATORS` and its name in the Literal.
"""

from __future__ import annotations

from cache.errors import SltPipeError
from extract.text.translators import nllb, sonar
from extract.text.translators.base import TranslatorKind

TRANSLATORS: dict[str, TranslatorKind] = {
    "nllb": nllb.TRANSLATOR,
    "sonar": sonar.TRANSLATOR,
}


def translator_kind(name: str) -> TranslatorKind:
    """The registered translator `name`, or SltPipeError naming the known ones."""
    kind = TRANSLATORS.get(name)
    if kind is None:
        raise SltPipeError(f"unknown translator {name!r} (embed.translator); known: {', '.join(sorted(TRANSLATORS))}",
                           fix=f"--set embed.translator={sorted(TRANSLATORS)[0]} (or another known one)")
    return kind

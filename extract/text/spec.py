"""What a run's text models are: their identities, the spec every executor builds them from, and
the protocols the built models meet.

A leaf (no model code, no Ray, no registry): the driver, the Ray workers (extract.text.ray_backend)
and the translator modules (extract.text.translators) all read it, so none of them reads another.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class TextModelIds:
    """What identifies the text models of a config, resolved without loading any model: what the
    cache keys of translations and targets are made of."""

    encoder: dict[str, Any]
    translator: dict[str, Any]
    tiny_sonar: Path | None
    """Directory of the tiny-SONAR entry when the encoder is 'tiny'."""


@dataclass(frozen=True)
class TextModelSpec:
    """Everything a worker needs to build the text models of one embed-targets run."""

    sonar_encoder: str
    """fairseq2 asset name (or card path) of the SONAR text encoder, or 'tiny'."""
    sonar_decoder: str
    """Same for the SONAR text decoder (translator 'sonar' only)."""
    tiny_sonar: Path | None
    """The tiny-SONAR entry directory when the encoder is 'tiny'."""
    translator: str
    """`embed.translator`: its name in the registry (extract.text.translators)."""
    translator_weights: str | None
    """The translator's own weights where it has them (an NLLB snapshot directory or HF id; a tiny
    NLLB is resolved to its entry directory); None when nothing in the run needs translating."""
    langs: tuple[str, ...]
    """Languages the translator must write (its tokenizer is checked for them)."""
    beam_size: int
    batch_size: int
    """Sentences per model call: the batch boundaries every executor keeps."""
    max_len: int
    device: str
    """cpu or cuda (resolved: never 'auto')."""
    threads: int
    """CPU threads every job computes with, wherever it runs: CPU kernels split their sums by
    thread count, so another count changes the last bits of some embeddings."""
    encoder_identity: dict[str, Any]
    translator_identity: dict[str, Any]
    """The identities the cache keys were made from, set on the built models."""


@runtime_checkable
class Translator(Protocol):
    """What embed-targets asks of a translator (extract.text.nllb holds the two it ships)."""

    identity: dict[str, Any]
    """What determines the translations (model id, weights hash, decoding settings)."""

    def translate(self, texts: list[str], src_lang: str, tgt_lang: str) -> list[str]:
        """Translate one batch of sentences (FLORES-200 codes)."""
        ...


class SentenceEmbedder(Protocol):
    """What embed-targets asks of a sentence encoder (extract.text.embed.SonarEncoder)."""

    identity: dict[str, Any]

    def embed(self, texts: list[str], lang: str) -> np.ndarray: ...


class ModelSource(Protocol):
    """What a translator is built from in the process that runs the jobs (extract.text.jobs.LazyTextModels)."""

    spec: TextModelSpec

    def load(self, what: str, build: Callable[[], Any]) -> Any:
        """`build()`, announced as loading `what` (a spinner, a failure noted)."""
        ...

    def sonar_parts(self) -> tuple[Any, Any]:
        """The SONAR encoder and its tokenizer, loaded once and shared with the sentence embedder."""
        ...

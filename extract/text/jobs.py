"""embed-targets' unit of work: a chunk of sentences to translate or embed, and the models that do it.

A `TextModelSpec` says how to build the translator and the SONAR encoder; it is small and
picklable, so the driver (in-process jobs) and each Ray actor (extract.text.ray_backend) build exactly
the same models from it. A `TextJob` is one chunk; `chunks` cuts a list of sentences into jobs
at fixed batch boundaries, so every executor runs the same batches and the results are the
same bytes however many workers ran them, in whatever order. No Ray here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal, Protocol

import numpy as np


@dataclass(frozen=True)
class TextModelSpec:
    """Everything a worker needs to build the text models of one embed-targets run."""

    sonar_encoder: str
    """fairseq2 asset name (or card path) of the SONAR text encoder, or 'tiny'."""
    sonar_decoder: str
    """Same for the SONAR text decoder (translator 'sonar' only)."""
    tiny_sonar: Path | None
    """The tiny-SONAR entry directory when the encoder is 'tiny'."""
    translator: Literal["nllb", "sonar"]
    nllb_path: str | None
    """NLLB snapshot directory or HF id (a tiny NLLB is resolved to its entry directory); None when
    nothing in the run needs translating."""
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


@dataclass(frozen=True)
class TextJob:
    """One chunk: translate `texts` from `src` into `lang`, or embed `texts` (in `lang`)."""

    kind: Literal["translate", "embed"]
    texts: tuple[str, ...]
    src: str
    lang: str


class LazyTextModels:
    """The models of a spec, each built on first use (a worker that only embeds never loads a translator).

    `load(what, build)` wraps every load, so a caller can show a spinner or note a failure."""

    def __init__(self, spec: TextModelSpec, load: Callable[[str, Callable[[], Any]], Any] | None = None):
        self.spec = spec
        self._load = load or (lambda what, build: build())
        self._parts: tuple[Any, Any] | None = None
        self._encoder: Any = None
        self._translator: Any = None

    def _sonar_parts(self) -> tuple[Any, Any]:
        from cache.sonar_models import load_sonar_encoder, load_sonar_tokenizer

        if self._parts is None:
            s = self.spec
            model = self._load(f"SONAR encoder {s.sonar_encoder}",
                               lambda: load_sonar_encoder(s.sonar_encoder, s.tiny_sonar, s.device))
            tok = self._load(f"SONAR tokenizer {s.sonar_encoder}",
                             lambda: load_sonar_tokenizer(s.sonar_encoder, s.tiny_sonar))
            self._parts = (model, tok)
        return self._parts

    @property
    def encoder(self) -> SentenceEmbedder:
        from extract.text.embed import SonarEncoder

        if self._encoder is None:
            model, tok = self._sonar_parts()
            self._encoder = SonarEncoder(model, tok, identity=self.spec.encoder_identity, device=self.spec.device)
        return self._encoder

    @property
    def translator(self) -> Translator:
        if self._translator is None:
            build = TRANSLATORS.get(self.spec.translator)
            if build is None:
                raise ValueError(f"unknown translator {self.spec.translator!r}; known: {', '.join(sorted(TRANSLATORS))}")
            self._translator = build(self)
            self._translator.identity = self.spec.translator_identity  # the identity the keys were made from
        return self._translator


class Translator(Protocol):
    """What embed-targets asks of a translator (extract.text.nllb holds the two it ships)."""

    identity: dict[str, Any]

    def translate(self, texts: list[str], src_lang: str, tgt_lang: str) -> list[str]: ...


class SentenceEmbedder(Protocol):
    """What embed-targets asks of a sentence encoder (extract.text.embed.SonarEncoder)."""

    identity: dict[str, Any]

    def embed(self, texts: list[str], lang: str) -> np.ndarray: ...


def _nllb(models: LazyTextModels) -> Translator:
    from extract.text.nllb import NllbTranslator

    s = models.spec
    if s.nllb_path is None:
        raise ValueError("this spec was made for a run that translates nothing")
    return models._load(f"NLLB {s.nllb_path}", lambda: NllbTranslator(
        s.nllb_path, s.device, num_beams=s.beam_size, max_new_tokens=s.max_len, batch_size=s.batch_size,
        langs=list(s.langs)))


def _sonar_translator(models: LazyTextModels) -> Translator:
    """SONAR as a translator: encode the source, decode into the target language."""
    from cache.sonar_models import load_sonar_decoder
    from extract.text.nllb import SonarTranslator

    s = models.spec
    encoder, tokenizer = models._sonar_parts()
    decoder = models._load(f"SONAR decoder {s.sonar_decoder}",
                           lambda: load_sonar_decoder(s.sonar_decoder, s.tiny_sonar, s.device))
    return SonarTranslator(encoder, decoder, tokenizer, device=s.device, beam_size=s.beam_size,
                           max_seq_len=s.max_len, batch_size=s.batch_size)


TRANSLATORS: dict[str, Callable[[LazyTextModels], Translator]] = {"nllb": _nllb, "sonar": _sonar_translator}
"""`embed.translator` -> the function that builds it from a run's models: a new translator is
one such function, one entry here and one name in `EmbedConfig.translator`."""


def chunks(texts: list[str], kind: Literal["translate", "embed"], src: str, lang: str,
           chunk_size: int) -> list[TextJob]:
    """`texts` cut into jobs of `chunk_size` sentences (a multiple of the batch size, so batches
    never straddle two jobs and each executor runs the very batches the in-process one runs)."""
    size = max(1, chunk_size)
    return [TextJob(kind, tuple(texts[a:a + size]), src, lang) for a in range(0, len(texts), size)]


def run_job(models: LazyTextModels, job: TextJob, on_batch: Callable[[int], None] | None = None) -> list[str] | np.ndarray:
    """One job's result: the translations (list[str]) or the embeddings ([n, D] float32)."""
    from extract.text.embed import embed_texts, translate_texts

    bs = models.spec.batch_size
    if job.kind == "translate":
        return translate_texts(list(job.texts), job.src, job.lang, models.translator, batch_size=bs,
                               on_batch=on_batch)
    return embed_texts(list(job.texts), job.lang, models.encoder, batch_size=bs, on_batch=on_batch)


class InProcess:
    """Runs jobs one after another in this process (small jobs, tests, no Ray)."""

    def __init__(self, models: LazyTextModels):
        self.models = models

    def run(self, jobs: list[TextJob], on_done: Callable[[int, Any], None],
            on_batch: Callable[[int], None] | None = None) -> None:
        """Calls `on_done(i, result)` as job i finishes; `on_batch(n)` after every batch of n sentences."""
        import torch

        before = torch.get_num_threads()
        torch.set_num_threads(self.models.spec.threads)
        try:
            for i, job in enumerate(jobs):
                on_done(i, run_job(self.models, job, on_batch))
        finally:
            torch.set_num_threads(before)

    def prepare(self, kind: Literal["translate", "embed"]) -> None:
        """Load the model of `kind` now (so loading prints before a caller's live progress bar)."""
        _ = self.models.translator if kind == "translate" else self.models.encoder

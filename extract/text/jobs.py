"""embed-targets' unit of work: a chunk of sentences to translate or embed, and the models that do it.

A `TextJob` is one chunk; `chunks` cuts a list of sentences into jobs at fixed batch boundaries,
so every runner runs the same batches and the results are the same bytes however many workers
ran them, in whatever order. `LazyTextModels` builds the models of one `TextModelSpec`
(extract.text.spec) on first use, the same in the driver (`InProcess`) and in each Ray actor
(extract.text.ray_backend). No Ray here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Literal, Protocol

import numpy as np

from extract.text.spec import SentenceEmbedder, TextModelSpec, Translator


@dataclass(frozen=True)
class TextJob:
    """One chunk: translate `texts` from `src` into `lang`, or embed `texts` (in `lang`)."""

    kind: Literal["translate", "embed"]
    texts: tuple[str, ...]
    src: str
    lang: str


class ChunkRunner(Protocol):
    """What runs jobs: `InProcess`, extract.text.ray_backend.RayPool, extract.text.backend.TextExecutor."""

    def prepare(self, kind: str) -> None:
        """Load the model of `kind` now where the jobs run here (so loading prints before a live bar)."""

    def run(self, jobs: list[TextJob], on_done: Callable[[int, Any], None],
            on_batch: Callable[[int], None] | None = None) -> None:
        """Calls `on_done(i, result)` as job i finishes; `on_batch(n)` as n more sentences are done."""


class LazyTextModels:
    """The models of a spec, each built on first use (a worker that only embeds never loads a translator).

    `load(what, build)` wraps every load, so a caller can show a spinner or note a failure."""

    def __init__(self, spec: TextModelSpec, load: Callable[[str, Callable[[], Any]], Any] | None = None):
        self.spec = spec
        self._load = load or (lambda what, build: build())
        self._parts: tuple[Any, Any] | None = None
        self._encoder: Any = None
        self._translator: Any = None

    def load(self, what: str, build: Callable[[], Any]) -> Any:
        return self._load(what, build)

    def sonar_parts(self) -> tuple[Any, Any]:
        """The SONAR encoder and its tokenizer, loaded once for the embedder and a SONAR translator."""
        from cache.sonar_models import load_sonar_encoder, load_sonar_tokenizer

        if self._parts is None:
            s = self.spec
            model = self.load(f"SONAR encoder {s.sonar_encoder}",
                              lambda: load_sonar_encoder(s.sonar_encoder, s.tiny_sonar, s.device))
            tok = self.load(f"SONAR tokenizer {s.sonar_encoder}",
                            lambda: load_sonar_tokenizer(s.sonar_encoder, s.tiny_sonar))
            self._parts = (model, tok)
        return self._parts

    @property
    def encoder(self) -> SentenceEmbedder:
        from extract.text.embed import SonarEncoder

        if self._encoder is None:
            model, tok = self.sonar_parts()
            self._encoder = SonarEncoder(model, tok, identity=self.spec.encoder_identity, device=self.spec.device)
        return self._encoder

    @property
    def translator(self) -> Translator:
        from extract.text.translators import translator_kind

        if self._translator is None:
            self._translator = translator_kind(self.spec.translator).build(self)
            self._translator.identity = self.spec.translator_identity  # the identity the keys were made from
        return self._translator


def chunks(texts: list[str], kind: Literal["translate", "embed"], src: str, lang: str,
           chunk_size: int) -> list[TextJob]:
    """`texts` cut into jobs of `chunk_size` sentences (a multiple of the batch size, so batches
    never straddle two jobs and each runner runs the very batches the in-process one runs)."""
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

    def prepare(self, kind: str) -> None:
        """Load the model of `kind` now (so loading prints before a caller's live progress bar)."""
        _ = self.models.translator if kind == "translate" else self.models.encoder

"""Target stage: translate references into each target language, embed with SONAR, write HDF5.

Two separately cacheable steps, so that changing only the encoder re-embeds without
re-translating:

* `translate_texts(texts, src_lang, tgt_lang, translator, ...)` -> list[str], in batches.
  Results can be saved/loaded with `save_translations` / `load_translations` (a JSON file:
  ``{"src_lang", "tgt_lang", "translator", "texts_sha256", "translations": [...]}``); the
  lead keys a ``translations`` cache entry on `translations_key_inputs(...)`.
* `embed_texts(texts, lang, encoder, ...)` -> np.ndarray [N, D] float32, in batches, with
  sonar's `TextToEmbeddingModelPipeline`.

pipeline.embed_stage runs them chunk by chunk (extract.text.chunks, extract.text.jobs) and
writes `targets.h5` (layout in `cache.targets`). `CALLS` counts model calls (one per batch) so
tests can assert that a cached run made none.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Callable

import numpy as np

from cache.errors import CacheError
from cache.files import write_text_atomic

CALLS: dict[str, int] = {"translate": 0, "embed": 0}
"""Model calls made in this process, one per batch (tests reset and read this)."""

REFERENCE = "reference"


class SonarEncoder:
    """A SONAR text encoder + tokenizer wrapped in sonar's `TextToEmbeddingModelPipeline`."""

    def __init__(self, encoder: Any, tokenizer: Any, *, identity: dict[str, Any] | None = None, device: Any = "cpu"):
        from cache.fairseq2_env import ensure_fairseq2

        ensure_fairseq2()
        from sonar.inference_pipelines.text import TextToEmbeddingModelPipeline

        from cache.device import resolve_device

        self.pipeline = TextToEmbeddingModelPipeline(encoder, tokenizer, device=resolve_device(device))
        self.identity = identity or {"spec": "custom"}

    @classmethod
    def from_spec(cls, spec: str, tiny_dir: Path | None = None, device: Any = "cpu") -> "SonarEncoder":
        from cache.sonar_models import load_sonar_encoder, load_sonar_tokenizer, sonar_identity

        return cls(load_sonar_encoder(spec, tiny_dir, device), load_sonar_tokenizer(spec, tiny_dir),
                   identity=sonar_identity(spec, tiny_dir), device=device)

    def embed(self, texts: list[str], lang: str) -> np.ndarray:
        emb = self.pipeline.predict(list(texts), source_lang=lang, batch_size=max(1, len(texts)))
        return emb.float().cpu().numpy()


def texts_sha256(texts: Sequence[str]) -> str:
    h = hashlib.sha256()
    for t in texts:
        b = t.encode("utf-8")
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()


def translations_key_inputs(texts: Sequence[str], src_lang: str, tgt_lang: str, translator: Any) -> dict[str, Any]:
    """What determines a translation result: feed to `cache.keys.make_key('translations', ...)`.

    `translator` is a translator object (its ``identity`` is used) or that identity dict itself.
    """
    ident = translator if isinstance(translator, dict) else getattr(translator, "identity", str(translator))
    return {"texts": texts_sha256(texts), "n": len(texts), "src": src_lang, "tgt": tgt_lang, "translator": ident}


def _batched(n: int, batch_size: int) -> list[tuple[int, int]]:
    return [(i, min(n, i + batch_size)) for i in range(0, n, max(1, batch_size))]


def translate_texts(texts: Sequence[str], src_lang: str, tgt_lang: str, translator: Any, *,
                    batch_size: int = 32, on_batch: Callable[[int], None] | None = None) -> list[str]:
    """Translate in batches (identity when src == tgt, with no model call).

    `on_batch(n)` is called after each batch of n sentences (for a caller's progress bar).
    """
    texts = list(texts)
    if src_lang == tgt_lang:
        return texts
    out: list[str] = []
    for a, b in _batched(len(texts), batch_size):
        CALLS["translate"] += 1
        res = translator.translate(texts[a:b], src_lang, tgt_lang)
        if len(res) != b - a:
            raise CacheError(f"translator returned {len(res)} sentences for {b - a}")
        out.extend(res)
        if on_batch is not None:
            on_batch(b - a)
    return out


def embed_texts(texts: Sequence[str], lang: str, encoder: Any, *, batch_size: int = 32,
                on_batch: Callable[[int], None] | None = None) -> np.ndarray:
    """SONAR embeddings [N, D] float32 of `texts` in `lang`, batch by batch.

    `encoder` is a `SonarEncoder` (or anything with ``embed(texts, lang) -> [n, D]``);
    `on_batch(n)` is called after each batch of n sentences.
    """
    texts = list(texts)
    parts: list[np.ndarray] = []
    for a, b in _batched(len(texts), batch_size):
        CALLS["embed"] += 1
        parts.append(np.asarray(encoder.embed(texts[a:b], lang), dtype=np.float32))
        if on_batch is not None:
            on_batch(b - a)
    if not parts:
        return np.zeros((0, 0), dtype=np.float32)
    return np.concatenate(parts, axis=0)


def save_translations(path: Path, texts: Sequence[str], translations: Sequence[str], src_lang: str,
                      tgt_lang: str, translator: Any) -> Path:
    """Atomically write a translation result as JSON."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {**translations_key_inputs(texts, src_lang, tgt_lang, translator), "translations": list(translations)}
    return write_text_atomic(path, json.dumps(body, ensure_ascii=False, sort_keys=True), fsync=False)


def load_translations(path: Path, texts: Sequence[str] | None = None) -> list[str]:
    """Read a translation JSON; with `texts`, check it was made from exactly those texts."""
    try:
        body = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CacheError(f"unreadable translations ({e})", path=path, fix="delete it; it will be redone") from None
    if texts is not None and body.get("texts") != texts_sha256(texts):
        raise CacheError("translations were made from other source texts", path=path,
                         fix="delete it; it will be redone")
    return list(body["translations"])

"""Target stage: translate references into each target language, embed with SONAR, write HDF5.

Two separately cacheable steps, so that changing only the encoder re-embeds without
re-translating:

* `translate_texts(texts, src_lang, tgt_lang, translator, ...)` -> list[str], in batches.
  Results can be saved/loaded with `save_translations` / `load_translations` (a JSON file:
  ``{"src_lang", "tgt_lang", "translator", "texts_sha256", "translations": [...]}``); the
  lead keys a ``translations`` cache entry on `translations_key_inputs(...)`.
* `embed_texts(texts, lang, encoder, ...)` -> np.ndarray [N, D] float32, in batches, with
  sonar's `TextToEmbeddingModelPipeline`.

pipeline.embed_stage runs them chunk by chunk (extract.text.jobs) and writes `targets.h5`
(layout in `cache.targets`). `CALLS` counts model calls (one per batch) so tests can
assert that a cached run made none.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from cache.errors import CacheError

CALLS: dict[str, int] = {"translate": 0, "embed": 0}
"""Model calls made in this process, one per batch (tests reset and read this)."""

REFERENCE = "reference"


class SonarEncoder:
    """A SONAR text encoder + tokenizer wrapped in sonar's `TextToEmbeddingModelPipeline`."""

    def __init__(self, encoder: Any, tokenizer: Any, *, identity: dict[str, Any] | None = None, device: Any = "cpu"):
        from cache.fairseq2_env import ensure_fairseq2

        ensure_fairseq2()
        import torch
        from sonar.inference_pipelines.text import TextToEmbeddingModelPipeline

        dev = torch.device(device) if device not in (None, "auto") else torch.device(
            "cuda" if torch.cuda.is_available() else "cpu")
        self.pipeline = TextToEmbeddingModelPipeline(encoder, tokenizer, device=dev)
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


def source_label(translator_identity: dict[str, Any] | None) -> str:
    """The per-row `source` written to HDF5: the translation model's name, or "reference"."""
    if translator_identity is None:
        return REFERENCE
    model = translator_identity.get("model")
    if isinstance(model, dict):  # an NLLB snapshot's identity: its id and file hashes
        model = model.get("model")
    return str(model or translator_identity.get("kind") or "translator")


def _progress(total: int, desc: str, enabled: bool) -> Any:
    if not enabled:
        return None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    class _Rate(TextColumn):
        def render(self, task: Any) -> Any:  # sentences per second
            from rich.text import Text

            speed = task.finished_speed or task.speed
            return Text(f"{speed:.1f} sent/s" if speed else "- sent/s")

    p = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), _Rate(""),
                 TimeRemainingColumn(), transient=True)
    p.start()
    p.add_task(desc, total=total)
    return p


def _batched(n: int, batch_size: int) -> list[tuple[int, int]]:
    return [(i, min(n, i + batch_size)) for i in range(0, n, max(1, batch_size))]


def _tracked_batches(n: int, batch_size: int, desc: str, progress: bool,
                     on_batch: Callable[[int], None] | None) -> Iterator[tuple[int, int]]:
    """(start, stop) of each batch; once the caller is done with one, advance the bar and call on_batch."""
    bar = _progress(n, desc, progress)
    try:
        for a, b in _batched(n, batch_size):
            yield a, b
            if bar:
                bar.advance(bar.task_ids[0], b - a)
            if on_batch is not None:
                on_batch(b - a)
    finally:
        if bar:
            bar.stop()


def translate_texts(texts: Sequence[str], src_lang: str, tgt_lang: str, translator: Any, *,
                    batch_size: int = 32, progress: bool = False,
                    on_batch: Callable[[int], None] | None = None) -> list[str]:
    """Translate in batches (identity when src == tgt, with no model call).

    `on_batch(n)` is called after each batch of n sentences (for a caller's progress bar).
    """
    texts = list(texts)
    if src_lang == tgt_lang:
        return texts
    out: list[str] = []
    for a, b in _tracked_batches(len(texts), batch_size, f"translate {src_lang}->{tgt_lang}", progress, on_batch):
        CALLS["translate"] += 1
        res = translator.translate(texts[a:b], src_lang, tgt_lang)
        if len(res) != b - a:
            raise CacheError(f"translator returned {len(res)} sentences for {b - a}")
        out.extend(res)
    return out


def embed_texts(texts: Sequence[str], lang: str, encoder: Any, *, batch_size: int = 32,
                progress: bool = False, on_batch: Callable[[int], None] | None = None) -> np.ndarray:
    """SONAR embeddings [N, D] float32 of `texts` in `lang`, batch by batch.

    `encoder` is a `SonarEncoder` (or anything with ``embed(texts, lang) -> [n, D]``);
    `on_batch(n)` is called after each batch of n sentences.
    """
    texts = list(texts)
    parts: list[np.ndarray] = []
    for a, b in _tracked_batches(len(texts), batch_size, f"embed {lang}", progress, on_batch):
        CALLS["embed"] += 1
        parts.append(np.asarray(encoder.embed(texts[a:b], lang), dtype=np.float32))
    if not parts:
        return np.zeros((0, 0), dtype=np.float32)
    return np.concatenate(parts, axis=0)


def save_translations(path: Path, texts: Sequence[str], translations: Sequence[str], src_lang: str,
                      tgt_lang: str, translator: Any) -> Path:
    """Atomically write a translation result as JSON."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {**translations_key_inputs(texts, src_lang, tgt_lang, translator), "translations": list(translations)}
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(body, ensure_ascii=False, sort_keys=True))
    os.replace(tmp, path)
    return path


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

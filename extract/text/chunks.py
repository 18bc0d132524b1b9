"""The text side's resumable work: each distinct sentence translated or embedded once, in chunks of
`RESUME_CHUNK_BATCHES` batches, and every finished chunk kept as a file in the pending entry's
directory (`chunk-NNNNN.json`, `{split}-emb-NNNNN.npy`) until the entry is published.

A killed run finds the finished chunks there and computes only the others, on the same batch
boundaries, so it ends with the bytes of an uninterrupted run. The stage claims and publishes
the entries; this module fills their `.partial` directories, through any `ChunkRunner`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
from rich.console import Console

from cache.errors import CacheError
from cache.files import write_atomic
from extract.text.embed import load_translations, save_translations
from extract.text.jobs import ChunkRunner, TextJob, chunks
from extract.text.progress import bar

RESUME_CHUNK_BATCHES = 8
"""Batches per resumable chunk (translation or embedding): a crash loses at most this much work per worker."""


def translate_chunks(runner: ChunkRunner, directory: Path, split: str, texts: list[str], src: str, lang: str, *,
                     batch_size: int, translator: dict[str, Any], console: Console,
                     on_computed: Callable[[int], None]) -> list[str]:
    """`texts` translated from `src` into `lang`, chunk by chunk, resuming from the chunks in `directory`."""
    uniq, inverse = unique(texts)
    jobs = chunks(uniq, "translate", src, lang, max(1, batch_size) * RESUME_CHUNK_BATCHES)
    paths = [directory / f"chunk-{i:05d}.json" for i in range(len(jobs))]
    results = run_chunks(runner, jobs, paths, lambda p, j: load_chunk(p, list(j.texts)),
                         lambda p, j, out: save_translations(p, j.texts, out, src, lang, translator), console,
                         f"translate {src}->{lang} {split}", on_computed)
    done = [t for r in results for t in r or ()]
    return [done[j] for j in inverse]


def embed_chunks(runner: ChunkRunner, directory: Path, split: str, texts: list[str], lang: str, *, batch_size: int,
                 console: Console, on_computed: Callable[[int], None]) -> np.ndarray:
    """Embeddings [N, D] of `texts`, chunk by chunk, resuming from the chunks in `directory`."""
    uniq, inverse = unique(texts)
    jobs = chunks(uniq, "embed", lang, lang, max(1, batch_size) * RESUME_CHUNK_BATCHES)
    paths = [directory / f"{split}-emb-{i:05d}.npy" for i in range(len(jobs))]
    results = run_chunks(runner, jobs, paths, lambda p, j: load_array(p, len(j.texts)),
                         lambda p, j, emb: save_array(p, emb), console, f"embed {lang} {split}", on_computed)
    if not uniq:
        return np.zeros((0, 0), np.float32)
    emb = np.concatenate([r for r in results if r is not None])
    return emb[np.asarray(inverse, dtype=np.int64)]


def run_chunks(runner: ChunkRunner, jobs: list[TextJob], paths: list[Path], load: Callable[[Path, Any], Any],
               save: Callable[[Path, Any, Any], None], console: Console, desc: str,
               on_computed: Callable[[int], None]) -> list[Any]:
    """Each job's result: from its chunk file where a finished one is there, else computed by `runner`
    and saved to its file as it arrives, so a crash resumes it. `on_computed(n)` per computed job of n."""
    results = [load(path, job) for path, job in zip(paths, jobs)]
    todo = [i for i, r in enumerate(results) if r is None]
    if not todo:
        return results
    runner.prepare(jobs[0].kind)  # loads (and says so) before the live progress bar starts

    def finished(k: int, out: Any) -> None:
        i = todo[k]
        save(paths[i], jobs[i], out)
        results[i] = out
        on_computed(len(jobs[i].texts))

    total = sum(len(j.texts) for j in jobs)
    with bar(console) as progress:
        task = progress.add_task(desc, total=total, completed=total - sum(len(jobs[i].texts) for i in todo))
        runner.run([jobs[i] for i in todo], finished, lambda n: progress.advance(task, n))
    return results


def load_chunk(path: Path, texts: list[str]) -> list[str] | None:
    """A finished chunk's translations, or None (absent or unreadable: redo it)."""
    if not path.exists():
        return None
    try:
        return load_translations(path, texts)
    except CacheError:
        path.unlink()  # unreadable leftover: redo that chunk
        return None


def load_array(path: Path, rows: int) -> np.ndarray | None:
    """A finished chunk's embeddings, or None (absent, unreadable or of another size: redo it)."""
    if not path.exists():
        return None
    try:
        arr = np.load(path)
    except (OSError, ValueError):
        arr = None
    if arr is None or arr.ndim != 2 or len(arr) != rows:
        path.unlink()
        return None
    return arr


def save_array(path: Path, arr: np.ndarray) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # a file object: np.save would append '.npy' to a bare path
            np.save(f, np.asarray(arr, np.float32))

    write_atomic(path, write)


def unique(texts: list[str]) -> tuple[list[str], list[int]]:
    """Distinct texts in first-seen order, and each text's index among them."""
    index: dict[str, int] = {}
    inverse = [index.setdefault(t, len(index)) for t in texts]
    return list(index), inverse

"""Where embed-targets' chunk jobs run: in this process, or on Ray workers, picked once per run.

`pick_runner` mirrors extract.vision.backend.pick_backend: `embed.workers = 0` without an
`embed.ray_address` runs the jobs here (extract.text.jobs.InProcess), anything else on a pool of
Ray actors (extract.text.ray_backend.RayPool, the only text module that imports Ray). Both run
the same batches, so the results are the same bytes. `TextExecutor` puts off that choice, the
models and Ray until a job needs them: a cached run loads no model and starts no Ray.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Callable, Sequence

from rich.console import Console

from cache.device import resolve_device
from cache.errors import SltPipeError, WeightsError
from extract.config import EmbedConfig
from extract.text.jobs import ChunkRunner, InProcess, LazyTextModels, TextJob
from extract.text.progress import status
from extract.text.spec import TextModelIds, TextModelSpec
from extract.text.translators.base import MAX_LEN


def text_model_spec(embed: EmbedConfig, ids: TextModelIds, langs: Sequence[str],
                    translator_weights: str | None) -> TextModelSpec:
    """The spec of a run's text models; `langs`: every language the translator must write, the source first."""
    return TextModelSpec(
        sonar_encoder=embed.sonar_encoder, sonar_decoder=embed.sonar_decoder, tiny_sonar=ids.tiny_sonar,
        translator=embed.translator, translator_weights=translator_weights, langs=tuple(langs),
        beam_size=embed.beam_size, batch_size=embed.batch_size, max_len=MAX_LEN,
        device=str(resolve_device(embed.device)), threads=max(1, embed.threads),
        encoder_identity=ids.encoder, translator_identity=ids.translator)


def pick_runner(embed: EmbedConfig, spec: TextModelSpec, *, cache_dir: Path, console: Console,
                stack: contextlib.ExitStack, load: Callable[[str, Callable[[], Any]], Any] | None = None) -> ChunkRunner:
    """This process (`embed.workers = 0`, no `embed.ray_address`), else Ray workers, started now and
    gone when `stack` closes. `load` wraps every in-process model load (LazyTextModels)."""
    if not (embed.workers or embed.ray_address):
        return InProcess(LazyTextModels(spec, load))
    from extract.text.ray_backend import RayPool
    from extract.text.translators import translator_kind

    shared = {"cache": Path(cache_dir)}
    if spec.translator_weights and Path(spec.translator_weights).exists():
        shared[translator_kind(spec.translator).weights_name] = Path(spec.translator_weights)
    pool = RayPool(spec, embed.workers, embed.ray_address, shared, restarts=embed.worker_restarts,
                   item_deaths=embed.item_deaths, say=lambda line: console.print(line, highlight=False))
    with status(console, f"starting Ray text workers ({embed.ray_address or 'local Ray'})"):
        runner = stack.enter_context(pool)
    console.print(f"embed-targets: {len(pool.actors)} Ray worker(s) on {pool.spec.device}")
    return runner


class TextExecutor:
    """A run's chunk runner (`pick_runner`), made on the first job that needs one, with the model of
    that job's kind loaded where it runs in this process. `load_failed` says that a model could not be
    loaded (missing weights), which fails every language alike: the stage stops the run then."""

    def __init__(self, embed: EmbedConfig, ids: TextModelIds, langs: Sequence[str], *, cache_dir: Path,
                 console: Console, stack: contextlib.ExitStack, translator_weights: Callable[[], str | None]):
        """`langs`: every language the translator must write, the source first. `translator_weights`
        is asked once, when the runner is made (a tiny NLLB is then found or trained)."""
        self.embed, self.ids, self.langs = embed, ids, tuple(langs)
        self.cache_dir, self.console, self._stack = Path(cache_dir), console, stack
        self._weights = translator_weights
        self._runner: ChunkRunner | None = None
        self.load_failed = False

    def spec(self) -> TextModelSpec:
        return text_model_spec(self.embed, self.ids, self.langs, self._weights())

    def prepare(self, kind: str) -> None:
        """Make the runner if there is none yet, and load the model of `kind` ('translate' or 'embed')."""
        if self._runner is None:
            self._runner = pick_runner(self.embed, self.spec(), cache_dir=self.cache_dir, console=self.console,
                                       stack=self._stack, load=self._load)
        try:
            self._runner.prepare(kind)
        except WeightsError:
            self.load_failed = True
            raise

    def run(self, jobs: list[TextJob], on_done: Callable[[int, Any], None],
            on_batch: Callable[[int], None] | None = None) -> None:
        if self._runner is None:
            raise RuntimeError("prepare() makes the runner before any job runs")
        try:
            self._runner.run(jobs, on_done, on_batch)
        except WeightsError:  # missing weights (in a Ray worker, say) fail every language alike
            self.load_failed = True
            raise

    def losses(self) -> int:
        """Ray workers lost so far in this run (a mark for `lost_workers`)."""
        faults = getattr(self._runner, "faults", None)
        return len(faults.events) if faults is not None else 0

    def lost_workers(self, since: int) -> dict[str, Any]:
        """The manifest's account of the Ray workers lost since mark `since` ({} when none)."""
        faults = getattr(self._runner, "faults", None)
        return faults.record(since) if faults is not None else {}

    def _load(self, what: str, build: Callable[[], Any]) -> Any:
        try:
            with status(self.console, f"loading {what}"):
                return build()
        except SltPipeError:
            self.load_failed = True  # missing weights fail every language alike: stop the run
            raise

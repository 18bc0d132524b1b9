"""How the text side shows long work: a spinner while a model loads, a step counter while a tiny
model trains, and the chunk bars. Live on a terminal; off one (logs, CI) the loads and the
training say how long they took and the bars stay quiet, the stage's own lines say the rest.
"""

from __future__ import annotations

import contextlib
import time
from typing import Callable, Iterator

from rich.console import Console
from rich.progress import Progress

from cache.progress import progress_bar


def bar(console: Console) -> Progress:
    """The bar of translation and embedding chunks (sentences/s) and of tiny-model training (steps/s, loss)."""
    return progress_bar("sent", console=console, loss=True, eta=False, transient=True, quiet_off_terminal=True)


@contextlib.contextmanager
def status(console: Console, what: str) -> Iterator[None]:
    """A spinner while `what` runs (a line when not on a terminal), then how long it took."""
    t0 = time.monotonic()
    if console.is_terminal:
        with console.status(f"{what} ..."):
            yield
    else:
        console.print(f"{what} ...", highlight=False)
        yield
    console.print(f"[dim]{what}: {time.monotonic() - t0:.1f}s[/]", highlight=False)


@contextlib.contextmanager
def steps(console: Console, what: str, total: int) -> Iterator[Callable[[int, float], None]]:
    """`on_step(step, loss)` of a training loop: a live bar on a terminal, else a line every tenth of the way."""
    t0 = time.monotonic()
    if console.is_terminal:
        with bar(console) as progress:
            task = progress.add_task(what, total=total, unit="steps", loss=None)
            yield lambda step, loss: progress.update(task, completed=step + 1, loss=loss)
        return
    every = max(1, total // 10)

    def line(step: int, loss: float) -> None:
        if (step + 1) % every == 0 or step + 1 == total:
            console.print(f"  {what}: step {step + 1}/{total}, loss {loss:.3f}, {time.monotonic() - t0:.0f}s",
                          highlight=False)

    yield line

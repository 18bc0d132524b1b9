"""The progress bars of every long job: one look, a rate in the job's own unit, quiet off a terminal."""

from __future__ import annotations

import threading
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text


class Rate(ProgressColumn):
    """Items per second in the task's `unit` field (frames, sent, steps), or the bar's default unit."""

    def __init__(self, unit: str, fmt: str = ".1f"):
        super().__init__()
        self.unit, self.fmt = unit, fmt

    def render(self, task: Any) -> Text:
        speed = task.finished_speed or task.speed
        unit = task.fields.get("unit", self.unit)
        return Text(f"{speed:{self.fmt}} {unit}/s" if speed else f"- {unit}/s", style="progress.data.speed")


class Loss(ProgressColumn):
    """A training task's latest loss (blank for other tasks)."""

    def render(self, task: Any) -> Text:
        loss = task.fields.get("loss")
        return Text(f"loss {loss:.3f}" if loss is not None else "")


LOG_EVERY_S = 60.0
"""Off a terminal, a plain status line of each unfinished task this often (SLURM and CI logs)."""


class LoggedProgress(Progress):
    """A Progress that, off a terminal, where rich draws nothing until the end, prints a plain status
    line of each unfinished task every LOG_EVERY_S, so a job's log is never silent for hours."""

    def __init__(self, *columns: Any, unit: str, **kwargs: Any):
        super().__init__(*columns, **kwargs)
        self._unit, self._stopped, self._logger = unit, threading.Event(), None

    def start(self) -> None:
        super().start()
        if not self.console.is_terminal and self._logger is None:
            self._logger = threading.Thread(target=self._log, name="progress-log", daemon=True)
            self._logger.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._logger is not None:
            self._logger.join()
            self._logger = None
        super().stop()

    def _log(self) -> None:
        while not self._stopped.wait(LOG_EVERY_S):
            for task in self.tasks:
                if not task.finished:
                    self.console.print(self.status_line(task), highlight=False, markup=False)

    def status_line(self, task: Any) -> str:
        unit = task.fields.get("unit", self._unit)
        speed = task.finished_speed or task.speed
        total = f"/{task.total:.0f}" if task.total is not None else ""
        left = task.time_remaining
        eta = f", ETA {int(left // 60)} min {int(left % 60)} s" if left is not None else ""
        rate = f", {speed:.1f} {unit}/s" if speed else ""
        return f"{Text.from_markup(task.description).plain}: {task.completed:.0f}{total} {unit}{rate}{eta}"


def progress_bar(unit: str, *, console: Console | None = None, loss: bool = False, eta: bool = True,
                 transient: bool = False, rate_format: str = ".1f", quiet_off_terminal: bool = False) -> Progress:
    """A rich Progress: description, bar, done/total, rate in `unit`/s, then the ETA (or elapsed time).

    `quiet_off_terminal` draws no bar where the console is not a terminal (CI logs, tests), for jobs
    whose own summary lines say it all. Off a terminal, every bar prints a status line a minute."""
    columns: list[Any] = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                          Rate(unit, rate_format)]
    if loss:
        columns.append(Loss())
    columns += [TextColumn("ETA"), TimeRemainingColumn()] if eta else [TimeElapsedColumn()]
    disable = quiet_off_terminal and console is not None and not console.is_terminal
    return LoggedProgress(*columns, unit=unit, console=console, transient=transient, disable=disable)

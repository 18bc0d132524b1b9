"""The progress bars of every long job: one look, a rate in the job's own unit, quiet off a terminal."""

from __future__ import annotations

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


def progress_bar(unit: str, *, console: Console | None = None, loss: bool = False, eta: bool = True,
                 transient: bool = False, rate_format: str = ".1f", quiet_off_terminal: bool = False) -> Progress:
    """A rich Progress: description, bar, done/total, rate in `unit`/s, then the ETA (or elapsed time).

    `quiet_off_terminal` disables the bar where the console is not a terminal (CI logs, tests),
    for jobs whose own summary lines say it all."""
    columns: list[Any] = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                          Rate(unit, rate_format)]
    if loss:
        columns.append(Loss())
    columns += [TextColumn("ETA"), TimeRemainingColumn()] if eta else [TimeElapsedColumn()]
    disable = quiet_off_terminal and console is not None and not console.is_terminal
    return Progress(*columns, console=console, transient=transient, disable=disable)

"""Progress off a terminal: rich draws a bar only at the end, so a SLURM or CI log would be silent for
hours; every bar prints a plain status line every LOG_EVERY_S there instead (and nothing extra on a terminal)."""

from __future__ import annotations

import io
import time

from rich.console import Console

import cache.progress as progress


def run_bar(monkeypatch, *, terminal: bool, quiet: bool) -> str:
    monkeypatch.setattr(progress, "LOG_EVERY_S", 0.1)
    buf = io.StringIO()
    con = Console(file=buf, width=200, force_terminal=terminal)
    with progress.progress_bar("shards", console=con, quiet_off_terminal=quiet) as bar:
        task = bar.add_task("extract toy/train", total=8)
        for _ in range(8):
            time.sleep(0.05)
            bar.advance(task)
    return buf.getvalue()


def test_a_log_gets_a_status_line_a_minute_even_from_a_quiet_bar(monkeypatch):
    for quiet in (True, False):
        lines = [x for x in run_bar(monkeypatch, terminal=False, quiet=quiet).splitlines() if x.startswith("extract")]
        status = [x for x in lines if ": " in x and "/8 shards" in x]
        assert len(status) >= 2, lines  # about one per 0.1 s of a 0.4 s job
        assert all(x.startswith("extract toy/train: ") for x in status)
        done = [int(x.split(": ")[1].split("/")[0]) for x in status]
        assert done == sorted(done) and done[-1] < 8  # the count moves; a finished task is not repeated


def test_a_terminal_sees_only_the_bar(monkeypatch):
    assert "extract toy/train: " not in run_bar(monkeypatch, terminal=True, quiet=False)

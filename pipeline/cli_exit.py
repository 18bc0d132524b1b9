"""How a command ends: one line and an exit code for each way (a user-fixable error, a full disk,
Ctrl-C, SIGTERM), never a traceback for what the user can fix."""

from __future__ import annotations

import signal
import sys
import time
from typing import Any, Callable

from rich.markup import escape

from cache.errors import SltPipeError
from pipeline.cli_options import CACHE_DIRS, err

_terminated = False
"""Whether SIGTERM arrived (what SLURM, Kubernetes and spot reclaim send before SIGKILL)."""


def _on_sigterm(signum: int, frame: Any) -> None:
    # Ctrl-C's path: the stage stops its workers, keeps finished work and unwinds; exit 143, not 130.
    global _terminated
    _terminated = True
    raise KeyboardInterrupt


def run_command(app: Callable[[], Any]) -> None:
    """Run the CLI app; every way it ends is one line and an exit code: 2 for a user-fixable error or a
    full disk, 130 for Ctrl-C, 143 for SIGTERM (saying what was kept and how to resume)."""
    started = time.time()
    signal.signal(signal.SIGTERM, _on_sigterm)  # extract.ray_session keeps it past ray.init
    try:
        app()
    except SltPipeError as e:
        err.print(f"[bold red]error:[/] {escape(e.render())}", highlight=False)  # a [value] is text, not markup
        sys.exit(2)
    except (KeyboardInterrupt, SystemExit) as e:
        # typer turns Ctrl-C into a silent exit 130; say what was kept and how to resume.
        if isinstance(e, SystemExit) and e.code != 130:
            raise
        what, code = ("terminated (SIGTERM)", 143) if _terminated else ("interrupted", 130)
        err.print(f"[yellow]{what}[/]: {_interrupted_summary(started)}", highlight=False)
        sys.exit(code)
    except Exception as e:
        # A writer not wrapped in cache.files.writing: the same one line (the partial entry is kept;
        # nothing half-written is published), naming the file where the error carries it.
        from cache.errors import DiskFullError
        from cache.files import disk_full

        if not disk_full(e):
            raise
        err.print(f"[bold red]error:[/] {escape(DiskFullError(_written(e)).render())}", highlight=False)
        sys.exit(2)


def _written(exc: BaseException) -> str | None:
    """The file an error (or what caused it) names, if any."""
    e: BaseException | None = exc
    while e is not None:
        if isinstance(e, OSError) and e.filename:
            return str(e.filename)
        e = e.__cause__ or e.__context__
    return None


def _interrupted_summary(started: float) -> str:
    """What a Ctrl-C leaves: the entries this command was building, which the same command resumes."""
    from cache.gc import resumable_since
    from cache.store import Cache

    kept = [k for root in CACHE_DIRS for k in resumable_since(Cache(root), started)]
    done = f"kept the finished work of {', '.join(kept)}; " if kept else "nothing was half-written; "
    return done + "run the same command again to resume"

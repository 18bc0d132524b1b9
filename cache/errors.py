"""The one error type slt-pipe raises for bad input, missing weights or a broken cache.

Every stage raises `SltPipeError` with the item at fault and the fix, so the CLI can
print one clear line instead of a traceback, and batch jobs can record it per item.
"""

from __future__ import annotations

from pathlib import Path


class SltPipeError(Exception):
    """A problem the user can fix: names the item at fault and how to fix it."""

    def __init__(self, problem: str, *, path: str | Path | None = None, fix: str | None = None):
        self.problem = problem
        self.path = None if path is None else str(path)
        self.fix = fix
        super().__init__(self.render())

    def render(self) -> str:
        where = f"{self.path}: " if self.path else ""
        hint = f"\n  fix: {self.fix}" if self.fix else ""
        return f"{where}{self.problem}{hint}"


class DatasetError(SltPipeError):
    """Malformed annotation, missing frames, unreadable image or video."""


class WeightsError(SltPipeError):
    """Model weights that are not where the config says they are."""


class CacheError(SltPipeError):
    """A cache entry that is missing, incomplete or corrupt."""


class WorkersLost(SltPipeError):
    """A run stopped by lost Ray workers, not by its inputs (all gone, or one chunk kills each one that
    takes it): the partial entry is kept, and the same command resumes from it."""


class DiskFullError(SltPipeError):
    """A write that ran out of space (ENOSPC, whatever exception type carried it): the one line every
    writer gives. The partial entry and finished work are kept; the same command resumes."""

    def __init__(self, path: str | Path | None):
        self.written = None if path is None else str(path)
        super().__init__(f"disk full writing {self.written or 'the cache'}",
                         fix="free space, or point --cache (or --out) at a larger disk, then run the same command "
                             "again (finished work is kept)")


def setting_fix(setting: str, value: str = "PATH") -> str:
    """How to set one config field, in the two forms a user pastes: the flag and the project file's line."""
    *section, leaf = setting.split(".")
    where = f" under [{'.'.join(section)}]" if section else ""
    return f'--set {setting}={value} (or {leaf} = "{value}"{where} in slt-pipe.toml)'

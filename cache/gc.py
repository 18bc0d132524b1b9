"""Which cache leftovers `slt-pipe cache gc` removes and which it keeps, and why (the CLI prints and applies the plan).

Kept: an entry a live process is building (its lock is held) and, unless asked, an
interrupted entry holding finished work (the next run of its stage resumes from it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from cache.files import human_bytes
from cache.store import Cache, Entry


@dataclass
class GcPlan:
    remove: list[tuple[Path, str]] = field(default_factory=list)
    """(path, why) of what goes: abandoned entries, stale locks, interrupted deletions (and what was asked)."""
    keep: list[tuple[Path, str]] = field(default_factory=list)
    """(path, why) of the incomplete entries that stay."""


def plan_gc(cache: Cache, *, corrupt: bool = False, partial: bool = False) -> GcPlan:
    """What `cache gc` removes: `corrupt` adds complete entries whose checksums fail, `partial` the
    resumable interrupted ones. Nothing is removed here."""
    plan = GcPlan()
    for e in cache.entries():
        if isinstance(e, Entry):
            if corrupt and cache.verify(e):
                plan.remove.append((e.dir, "corrupt"))
            continue
        kind, key, path = e
        files = [p for p in path.rglob("*") if p.is_file()]
        if cache.is_locked(kind, key):
            plan.keep.append((path, "being built by a running slt-pipe process"))
        elif files and path.name.endswith(".partial") and not partial:
            size = human_bytes(sum(p.stat().st_size for p in files))
            plan.keep.append((path, f"resumable: {len(files)} finished files, {size}; the next run of its stage resumes "
                                    "from it (--partial removes it)"))
        else:
            plan.remove.append((path, "interrupted, resumable work removed (--partial)" if files else "empty, abandoned"))
    plan.remove += [(p, "stale lock or interrupted deletion") for p in cache.stale_files()]
    return plan


def resumable_since(cache: Cache, started: float) -> list[str]:
    """"kind/key (N finished files)" of each interrupted entry that gained files since `started` (a Ctrl-C
    leaves them; the same command resumes them)."""
    kept = []
    for e in cache.entries():
        if not isinstance(e, tuple) or not e[2].name.endswith(".partial"):
            continue
        files = [p for p in e[2].rglob("*") if p.is_file()]
        if files and max(p.stat().st_mtime for p in files) >= started:
            kept.append(f"{e[0]}/{e[1]} ({len(files)} finished files)")
    return kept

"""Which cache leftovers `slt-pipe cache gc` removes and which it keeps, and why (the CLI prints and applies the plan).

Kept: an entry a live process is building (its lock is held) and, unless asked, an
interrupted entry holding finished work (the next run of its stage resumes from it). A complete
entry goes only when asked for corrupt ones; a set of streams (cache/features.py) goes with a
corrupt stream it uses, and never otherwise while it is there.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from cache.features import STREAM_KIND, assembly
from cache.files import human_bytes
from cache.store import Cache, Entry


@dataclass
class GcPlan:
    remove: list[tuple[Path, str]] = field(default_factory=list)
    """(path, why) of what goes: abandoned entries, stale locks, interrupted deletions (and what was asked)."""
    keep: list[tuple[Path, str]] = field(default_factory=list)
    """(path, why) of the incomplete entries that stay."""
    complete: int = 0
    """Complete entries that stay (every complete one, less the corrupt ones removed)."""
    removing: Counter[str] = field(default_factory=Counter)
    """How many of `remove` of each kind: corrupt, empty, interrupted, stale lock or deletion."""
    keeping: Counter[str] = field(default_factory=Counter)
    """How many of `keep` of each kind: resumable, being built."""

    def summary(self, *, dry_run: bool) -> str:
        """'0 entries to remove; 7 kept (complete)', '2 entries removed (1 empty, 1 stale lock or deletion);
        8 kept (7 complete, 1 resumable)': the real counts, and of what."""
        n = len(self.remove)
        gone = f"{n} entr{'y' if n == 1 else 'ies'} {'to remove' if dry_run else 'removed'}"
        if n:
            gone += f" ({', '.join(f'{c} {k}' for k, c in self.removing.items())})"
        kept = Counter({"complete": self.complete}) + self.keeping  # drops zero counts
        total = sum(kept.values())
        if len(kept) == 1:
            return f"{gone}; {total} kept ({next(iter(kept))})"
        return f"{gone}; {total} kept" + (f" ({', '.join(f'{c} {k}' for k, c in kept.items())})" if kept else "")


def plan_gc(cache: Cache, *, corrupt: bool = False, partial: bool = False) -> GcPlan:
    """What `cache gc` removes: `corrupt` adds complete entries whose checksums fail, `partial` the
    resumable interrupted ones. Nothing is removed here."""
    plan = GcPlan()

    def remove(path: Path, why: str, what: str) -> None:
        plan.remove.append((path, why))
        plan.removing[what] += 1

    def keep(path: Path, why: str, what: str) -> None:
        plan.keep.append((path, why))
        plan.keeping[what] += 1

    for e in cache.entries():
        if isinstance(e, Entry):
            if corrupt and cache.verify(e):
                remove(e.dir, "corrupt", "corrupt")
            else:
                plan.complete += 1
            continue
        kind, key, path = e
        files = [p for p in path.rglob("*") if p.is_file()]
        if cache.is_locked(kind, key):
            keep(path, "being built by a running slt-pipe process", "being built")
        elif files and path.name.endswith(".partial") and not partial:
            size = human_bytes(sum(p.stat().st_size for p in files))
            keep(path, f"resumable: {len(files)} finished files, {size}; the next run of its stage resumes "
                       "from it (--partial removes it)", "resumable")
        elif files:
            remove(path, "interrupted, resumable work removed (--partial)", "interrupted")
        else:
            remove(path, "empty, abandoned", "empty")
    gone = {path.name for path, _ in plan.remove if path.parent.name == STREAM_KIND}
    for e in cache.entries("features") if gone else ():
        uses = isinstance(e, Entry) and {s["entry"] for s in (assembly(e.dir) or {}).get("streams", [])} & gone
        if uses and e.dir not in {path for path, _ in plan.remove}:
            remove(e.dir, f"uses the corrupt {STREAM_KIND}/{min(uses)}", "corrupt")
            plan.complete -= 1
    for p in cache.stale_files():
        remove(p, "stale lock or interrupted deletion", "stale lock or deletion")
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

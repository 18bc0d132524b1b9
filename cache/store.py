"""Cache entries on disk: resumable building, atomic publication, listing, verification.

Layout under the cache root:

    {kind}/{key}/manifest.json      a complete entry (published by one atomic rename)
    {kind}/{key}/...                its payload files
    {kind}/{key}.partial/           an entry being built; survives a crash so work resumes
    {kind}/{key}.lock               flock held by the one process building the entry; removed
                                    when it stops (a kill -9 leaves it; `cache gc` removes it)

An entry is complete iff its final directory exists and its manifest says so: the
manifest is written (fsynced) inside the partial directory before the rename, and
readers never look inside `.partial`. A crash at any moment therefore leaves either the
old state or the new one, never a readable half entry.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shlex
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from cache.errors import CacheError
from cache.files import fsync_path, write_json_atomic
from cache.keys import sha256_file

MANIFEST = "manifest.json"
PARTIAL = ".partial"
LOCK = ".lock"


class CorruptEntryError(CacheError):
    """A published entry whose bytes fail a checksum when read (one byte flipped on disk is enough).

    Raised by the readers (`cache.features`, `cache.targets`); a stage that knows the user's
    settings swaps in the exact command that rebuilds the entry (`with_rerun`).
    """

    def __init__(self, entry_dir: Path, detail: str, rerun: str):
        self.entry_dir = Path(entry_dir)
        self.kind = self.entry_dir.parent.name
        self.detail = detail
        self.rerun = rerun
        cache = shlex.quote(str(self.entry_dir.parent.parent))
        super().__init__(
            f"{self.kind} entry {self.entry_dir.name} is corrupt: {detail}",
            path=self.entry_dir,
            fix=(f"`slt-pipe cache verify --cache {cache}` lists its damaged files; "
                 f"`slt-pipe cache gc --corrupt --cache {cache}` removes it; then re-run {rerun}"),
        )

    def __reduce__(self) -> tuple[Any, ...]:
        # crosses process boundaries (Ray trials) whole, not as its rendered message
        return type(self), (self.entry_dir, self.detail, self.rerun)

    def with_rerun(self, command: str) -> "CorruptEntryError":
        """The same error, its fix ending in `command` (the stage run that rebuilds the entry)."""
        return CorruptEntryError(self.entry_dir, self.detail, rerun=f"`{command}`, then this command again")


def read_manifest(entry_dir: Path) -> dict[str, Any] | None:
    """The entry's manifest, or None where there is none (a store outside a cache, a partial entry)."""
    try:
        return json.loads((Path(entry_dir) / MANIFEST).read_text())
    except FileNotFoundError:
        return None
    except json.JSONDecodeError as e:
        raise CacheError(f"corrupt manifest ({e})", path=Path(entry_dir) / MANIFEST,
                         fix=f"run `slt-pipe cache gc --corrupt --cache {shlex.quote(str(Path(entry_dir).parent.parent))}`"
                         ) from None


def check_files(entry_dir: Path, manifest: dict[str, Any], *, hash_if, rerun: str) -> None:
    """Check the payload on open: every file the manifest lists exists with its size (a stat each),
    and those `hash_if(relative name)` selects also match its sha256. CorruptEntryError otherwise.

    Why sizes for all: a missing or truncated chunk file reads as fill values in zarr, silently.
    """
    for rel, meta in manifest.get("files", {}).items():
        p = Path(entry_dir) / rel
        try:
            size = p.stat().st_size
        except FileNotFoundError:
            raise CorruptEntryError(entry_dir, f"{rel} is missing", rerun=rerun) from None
        if size != meta["bytes"]:
            raise CorruptEntryError(entry_dir, f"{rel} has {size} bytes, the manifest says {meta['bytes']}", rerun=rerun)
        if hash_if(rel) and sha256_file(p) != meta["sha256"]:
            raise CorruptEntryError(entry_dir, f"{rel} does not match its sha256 in the manifest", rerun=rerun)


@dataclass
class Entry:
    """A published, complete cache entry."""

    kind: str
    key: str
    dir: Path
    manifest: dict[str, Any]

    @property
    def items(self) -> int:
        return int(self.manifest.get("items", 0))

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.dir.rglob("*") if p.is_file())


@dataclass
class PendingEntry:
    """An entry under construction in `{key}.partial`; finished pieces survive crashes."""

    cache: "Cache"
    kind: str
    key: str
    dir: Path
    inputs: dict[str, Any]
    _lock_fd: int | None = field(default=None, repr=False)

    def publish(self, **manifest: Any) -> Entry:
        """Checksum the payload, write the manifest, fsync, and rename into place."""
        files = {
            str(p.relative_to(self.dir)): {"bytes": p.stat().st_size, "sha256": sha256_file(p)}
            for p in sorted(self.dir.rglob("*"))
            if p.is_file() and p.name != MANIFEST
        }
        body = {
            "kind": self.kind,
            "key": self.key,
            "complete": True,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "inputs": self.inputs,
            **manifest,
            "files": files,
        }
        write_json_atomic(self.dir / MANIFEST, body)
        fsync_path(self.dir)
        final = self.cache.path(self.kind, self.key)
        if final.exists():  # someone published the same key first: identical by construction
            shutil.rmtree(self.dir)
        else:
            os.rename(self.dir, final)
            fsync_path(final.parent)
        self.release()
        return self.cache.get(self.kind, self.key)  # type: ignore[return-value]

    def release(self) -> None:
        """Drop the lock and its file. Unlinked while held: a process waiting on the old file
        notices (see `Cache.begin`) and takes a fresh one, so two builders never overlap."""
        if self._lock_fd is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.cache.lock_path(self.kind, self.key))
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> "PendingEntry":
        return self

    def __exit__(self, *exc: object) -> None:
        # An exception leaves the partial dir for the next run to resume from.
        self.release()


class Cache:
    def __init__(self, root: Path):
        self.root = Path(root).expanduser()

    def path(self, kind: str, key: str) -> Path:
        return self.root / kind / key

    def get(self, kind: str, key: str) -> Entry | None:
        """The complete entry, or None (an incomplete or half-written entry is never returned)."""
        d = self.path(kind, key)
        try:
            manifest = json.loads((d / MANIFEST).read_text())
        except FileNotFoundError:
            return None
        except json.JSONDecodeError as e:
            raise CacheError(f"corrupt manifest ({e})", path=d / MANIFEST, fix="run `slt-pipe cache gc --corrupt`") from e
        if not manifest.get("complete"):
            return None
        return Entry(kind, key, d, manifest)

    def require(self, kind: str, key: str, *, hint: str) -> Entry:
        entry = self.get(kind, key)
        if entry is None:
            raise CacheError(f"no {kind} entry {key} in the cache", path=self.path(kind, key), fix=hint)
        return entry

    def lock_path(self, kind: str, key: str) -> Path:
        return self.root / kind / f"{key}{LOCK}"

    def begin(self, kind: str, key: str, inputs: dict[str, Any]) -> PendingEntry:
        """Start (or resume) building an entry. Holds an exclusive lock until publish/release."""
        base = self.root / kind
        base.mkdir(parents=True, exist_ok=True)
        fd = self._lock(kind, key)
        if fd is None:
            raise CacheError(
                f"another slt-pipe process is building {kind} entry {key}",
                path=self.lock_path(kind, key),
                fix="wait for it to finish (or kill it; the work it finished is kept)",
            )
        return self._pending(kind, key, inputs, fd)

    def _pending(self, kind: str, key: str, inputs: dict[str, Any], fd: int) -> PendingEntry:
        partial = self.root / kind / f"{key}{PARTIAL}"
        partial.mkdir(exist_ok=True)
        return PendingEntry(self, kind, key, partial, inputs, fd)

    def _lock(self, kind: str, key: str, *, block: bool = False) -> int | None:
        """An fd holding the entry's lock (its file names our pid), or None if another process holds it."""
        path = self.lock_path(kind, key)
        while True:
            fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if block else fcntl.LOCK_NB))
            except BlockingIOError:
                os.close(fd)
                return None
            try:
                same = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
                return fd
            os.close(fd)  # its holder unlinked the file as it finished: lock the new one

    def claim(self, kind: str, key: str, inputs: dict[str, Any],
              note: Callable[[str], None] | None = None, *, wait: bool = True) -> Entry | PendingEntry | None:
        """The complete entry, or the right to build it (a locked PendingEntry), atomically.

        Two jobs of one entry cooperate: the second waits while the first builds, then gets
        the published entry and redoes nothing; if the first died, the second resumes its
        partial entry. `wait=False`: None at once while another process builds it. (`begin`
        instead refuses with an error when another process holds the lock.)
        """
        while True:
            entry = self.get(kind, key)
            if entry is not None:
                return entry
            (self.root / kind).mkdir(parents=True, exist_ok=True)
            fd = self._lock(kind, key)
            if fd is None:
                if not wait:
                    return None
                self._wait(kind, key, note)
                continue
            entry = self.get(kind, key)  # published between our look and our lock
            if entry is None:
                return self._pending(kind, key, inputs, fd)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.lock_path(kind, key))
            os.close(fd)
            return entry

    def _wait(self, kind: str, key: str, note: Callable[[str], None] | None) -> None:
        if note is not None:
            try:
                pid = self.lock_path(kind, key).read_text().strip() or "?"
            except OSError:
                pid = "?"
            note(f"waiting for slt-pipe process {pid}, which is building {kind}/{key}; this run then reuses it")
        fd = self._lock(kind, key, block=True)
        if fd is not None:  # held only to learn that the builder is done; unlinked while held (see release)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.lock_path(kind, key))
            os.close(fd)

    def is_locked(self, kind: str, key: str) -> bool:
        """Whether a live process holds the entry's build lock (a kill -9 releases it)."""
        if not self.lock_path(kind, key).exists():
            return False
        fd = self._lock(kind, key)
        if fd is None:
            return True
        os.close(fd)  # stale: its process died (the file stays for `cache gc` to remove)
        return False

    def stale_files(self) -> list[Path]:
        """Leftovers no live process holds: stale lock files and interrupted deletions."""
        if not self.root.exists():
            return []
        out = []
        for kdir in sorted(p for p in self.root.iterdir() if p.is_dir()):
            for p in sorted(kdir.iterdir()):
                if p.name.startswith(".deleting-"):
                    out.append(p)
                elif p.name.endswith(LOCK) and not self.is_locked(kdir.name, p.name[: -len(LOCK)]):
                    if p.exists():
                        out.append(p)
        return out

    def entries(self, kind: str | None = None) -> Iterator[Entry | tuple[str, str, Path]]:
        """Complete entries; incomplete ones as (kind, key, path) tuples."""
        if not self.root.exists():
            return
        kinds = [kind] if kind else sorted(p.name for p in self.root.iterdir() if p.is_dir())
        for k in kinds:
            kdir = self.root / k
            if not kdir.is_dir():
                continue
            for d in sorted(kdir.iterdir()):
                if not d.is_dir() or d.name.startswith("."):
                    continue
                if d.name.endswith(PARTIAL):
                    yield (k, d.name[: -len(PARTIAL)], d)
                    continue
                try:
                    e = self.get(k, d.name)
                except CacheError:
                    e = None
                yield e if e is not None else (k, d.name, d)

    def listing(self) -> list[dict[str, Any]]:
        """A row per entry, complete or not (`cache ls`): kind, key, dataset, what (split, import name,
        language), items, bytes, complete, created."""
        rows = []
        for e in self.entries():
            if isinstance(e, Entry):
                rows.append({"kind": e.kind, "key": e.key, "dataset": e.manifest.get("dataset", ""),
                             "what": entry_what(e.manifest), "items": e.items, "bytes": e.size_bytes(),
                             "complete": True, "created": e.manifest.get("created", "")})
            else:
                kind, key, path = e
                size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
                rows.append({"kind": kind, "key": key, "dataset": "", "what": "", "items": 0, "bytes": size,
                             "complete": False, "created": ""})
        return rows

    def verify(self, entry: Entry) -> list[str]:
        """Problems found re-hashing the entry's payload (empty list = intact)."""
        problems = []
        for rel, meta in entry.manifest.get("files", {}).items():
            p = entry.dir / rel
            if not p.exists():
                problems.append(f"{p}: missing")
            elif p.stat().st_size != meta["bytes"]:
                problems.append(f"{p}: size {p.stat().st_size} != {meta['bytes']}")
            elif sha256_file(p) != meta["sha256"]:
                problems.append(f"{p}: checksum mismatch")
        return problems

    def remove(self, path: Path) -> None:
        """Delete an entry dir: rename aside first, so a crash mid-delete never leaves a half entry."""
        if path.is_file():
            path.unlink()
            return
        doomed = path if path.name.startswith(".deleting-") else path.with_name(f".deleting-{path.name}-{os.getpid()}")
        if doomed != path:
            os.rename(path, doomed)
        shutil.rmtree(doomed)


def entry_what(manifest: dict[str, Any]) -> str:
    """What tells entries of one kind and dataset apart: the split and streams (and the import's name)
    of features and stream entries, the language of targets, the split and language pair of translations."""
    split, lang = manifest.get("split"), manifest.get("lang")
    imported = ((manifest.get("inputs") or {}).get("import") or {}).get("name")
    src = (manifest.get("inputs") or {}).get("src")
    streams = manifest.get("stream") or "+".join(manifest.get("streams") or {})
    parts = [str(split) if split else "", str(streams or ""), f"{src}->{lang}" if src and lang else str(lang or ""),
             f"imported:{imported}" if imported else ""]
    return " ".join(p for p in parts if p)

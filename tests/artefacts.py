"""Expensive test artefacts (the tiny SONAR, toy corpora, cached features and targets, snapshots),
built once per machine and shared by the default run, `-m slow`, xdist workers and repeated runs.

Each artefact is an entry of slt-pipe's own content-addressed cache (kind `artefacts`) under
$SLT_PIPE_TEST_ARTEFACTS (default ~/.cache/slt-pipe-tests). Its key hashes its inputs, the source
of every project module its builder can import (tests/code_graph.py, lazy imports included), the
file that defines the builder, this file, tests/helpers.py, and the versions of the libraries that
compute it: an edit to any of that code rebuilds it, an edit elsewhere does not. `Cache.claim`
makes concurrent sessions cooperate (one builds, the others wait and reuse), a crashed build
resumes nowhere (its partial entry is cleared first), and an entry whose files no longer have
their published sizes (a test wrote into it) is rebuilt.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import shutil
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

from cache.keys import make_key
from cache.store import Cache, CorruptEntryError, Entry, check_files
from code_graph import REPO, project_modules, reachable

KIND = "artefacts"
DATA = "data"
"""The artefact itself, beside its entry's manifest."""
KEEP = 3
"""Versions of one artefact kept side by side, the most recently used (the main tree's and the fault
catalogue's faulted copies)."""
LIBRARIES = ("torch", "numpy", "transformers", "fairseq2", "fairseq2n", "sonar-space", "sentencepiece", "h5py",
             "zarr", "timm", "av", "pillow", "safetensors", "peft", "ray")


def root() -> Path:
    return Path(os.environ.get("SLT_PIPE_TEST_ARTEFACTS") or Path("~/.cache/slt-pipe-tests").expanduser())


def code_digest(modules: list[str], files: list[Path]) -> str:
    """sha256 over the repo-relative path and bytes of every module `modules` reach and of `files`:
    relative, so a copy of the tree with the same code shares the artefact."""
    paths = project_modules()
    sources = sorted({paths[m] for m in reachable(modules)} | {Path(f).resolve() for f in files}
                     | {REPO / "pyproject.toml", Path(__file__).resolve(), REPO / "tests/helpers.py"})
    h = hashlib.sha256()
    for p in sources:
        h.update(str(p.relative_to(REPO)).encode() + b"\0" + p.read_bytes() + b"\0")
    for lib in LIBRARIES:
        h.update(f"{lib}=={metadata.version(lib)}\0".encode())
    return h.hexdigest()


def artefact(name: str, build: Callable[[Path], Any], *, inputs: dict[str, Any], code: list[str]) -> Path:
    """The directory of artefact `name`: `build(dir)` fills it once per machine and code version.

    `code`: the project modules `build` imports (their import closure is hashed). `inputs`: every
    other value that changes what `build` writes. Read only: a test that changes it works on a copy
    (`artefact_copy`)."""
    digest = code_digest(code, [inspect.getsourcefile(build)])
    key = make_key(KIND, {"name": name, "inputs": inputs, "code": digest}, format_version=1)
    cache = Cache(root())
    while True:
        got = cache.claim(KIND, key, {"name": name, "inputs": inputs, "code": digest})
        if isinstance(got, Entry):
            try:
                check_files(got.dir, got.manifest, hash_if=lambda rel: False, rerun="the test session")
                os.utime(got.dir)  # last used: what _prune keeps
                return got.dir / DATA
            except CorruptEntryError:  # written into by a test: rebuilt, never served changed
                cache.remove(got.dir)
                continue
        with got:
            shutil.rmtree(got.dir)  # a build a crash interrupted is not resumed: builders are not resumable
            (got.dir / DATA).mkdir(parents=True)
            build(got.dir / DATA)
            entry = got.publish(name=name)
        _prune(cache, entry)
        return entry.dir / DATA


def artefact_copy(name: str, build: Callable[[Path], Any], dest: Path, **kw: Any) -> Path:
    """A private copy of `artefact(name, build, ...)` at `dest`, for tests that add to it."""
    src = artefact(name, build, **kw)
    shutil.copytree(src, dest, symlinks=True)
    return dest


def _prune(cache: Cache, new: Entry) -> None:
    """Drop all but the KEEP most recently used versions of the artefact `new` is: same name and inputs,
    an input that is another artefact's path counting as the same whatever version it points at."""
    def alike(e: Entry) -> bool:
        return e.manifest["inputs"]["name"] == new.manifest["inputs"]["name"] and \
            _unversioned(e.manifest["inputs"]["inputs"]) == _unversioned(new.manifest["inputs"]["inputs"])

    same = [e for e in cache.entries(KIND) if isinstance(e, Entry) and e.key != new.key and alike(e)]
    for old in sorted(same, key=lambda e: e.dir.stat().st_mtime)[: max(0, len(same) - (KEEP - 1))]:
        if not cache.is_locked(KIND, old.key):
            cache.remove(old.dir)


def _unversioned(inputs: Any) -> Any:
    """`inputs` with every path inside this artefact cache replaced by a placeholder (an artefact built
    from another one names its path, which changes with that one's code)."""
    if isinstance(inputs, dict):
        return {k: _unversioned(v) for k, v in inputs.items()}
    if isinstance(inputs, list):
        return [_unversioned(v) for v in inputs]
    if isinstance(inputs, str) and inputs.startswith(str(root() / KIND)):
        return "<artefact>"
    return inputs

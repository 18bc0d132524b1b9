"""Test-only guard: every tiny-profile entry point fails loudly, in every Python process that imports it.

`tests/forbid_tiny_cli.py` installs it in the driver and, by putting this directory first on
PYTHONPATH and SLT_PIPE_FORBID_TINY=1 in os.environ before anything starts Ray, in every Python
process started after it: local Ray's workers (the model actors of extract and embed-targets,
the decode tasks) inherit the driver's environment, and this directory's `sitecustomize.py`
installs the guard at their start-up, before any project module is imported. An import hook
replaces each entry point as soon as its module has run, so even `from m import f` binds the
replacement.

A forbidden call raises (SystemExit in the driver, ForbiddenTinyCode in other processes, which
Ray hands back to the driver with its message) and, when SLT_PIPE_FORBID_TINY_LOG names a file,
appends a JSON line {"event": "forbidden", ...} to it; every module patched appends an
{"event": "patched", ...} line, so a test can tell which processes held the guard.
"""

from __future__ import annotations

import importlib
import importlib.abc
import json
import os
import sys
import time
from types import ModuleType
from typing import Any

ENV = "SLT_PIPE_FORBID_TINY"
"""'1': install the guard in this process (sitecustomize.py reads it)."""
LOG_ENV = "SLT_PIPE_FORBID_TINY_LOG"
"""A file every armed process appends its JSON lines to (optional)."""
FAULT_ENV = "SLT_PIPE_FORBID_TINY_FAULT"
"""Test-only deliberate fault: 'worker-builds-tiny-vit' makes every FeatureExtractor built in a Ray
worker also call the tiny ViT builder (the guard's own test: it must fail the run from the worker)."""

FORBIDDEN: dict[str, tuple[str, ...]] = {
    "extract.vision.encoders.tiny": ("tiny_vit", "tiny_videomae", "prepare_view"),
    "extract.text.tiny_sonar": ("train_tiny_sonar",),
    "extract.text.nllb": ("make_tiny_nllb",),
    "cache.sonar_models": ("_tiny_config",),
    "pipeline.embed_stage": ("ensure_tiny_sonar", "ensure_tiny_nllb", "require_tiny_sonar"),
}
"""module -> its tiny-profile entry points."""


class ForbiddenTinyCode(RuntimeError):
    """A tiny-profile entry point was called in a guarded process."""


_driver = False
"""Whether this process is tests/forbid_tiny_cli.py's (`install(driver=True)`)."""


def process_kind() -> str:
    """'driver' (tests/forbid_tiny_cli.py), 'ray worker', or the script's name."""
    if _driver:
        return "driver"
    argv0 = os.path.basename(sys.argv[0]) if getattr(sys, "argv", None) else ""
    if argv0 == "default_worker.py":  # ray/_private/workers/default_worker.py
        return "ray worker"
    return argv0 or "python"


def _log(event: str, **fields: Any) -> None:
    path = os.environ.get(LOG_ENV)
    if path:
        line = json.dumps({"event": event, "pid": os.getpid(), "process": process_kind(), "time": time.time(), **fields})
        with open(path, "a") as f:
            f.write(line + "\n")


def _forbid(module: ModuleType, name: str) -> None:
    if not callable(getattr(module, name, None)):  # a renamed entry point must not leave a hole in the guard
        raise ForbiddenTinyCode(f"forbid_tiny_guard: {module.__name__} has no function {name!r}; update FORBIDDEN")
    where = f"{module.__name__}.{name}"

    def boom(*args: Any, **kwargs: Any) -> Any:
        kind = process_kind()
        _log("forbidden", entry=where)
        message = f"FORBIDDEN: the paper profile reached tiny-profile code {where} (in the {kind}, pid {os.getpid()})"
        if kind == "driver":
            raise SystemExit(message)
        raise ForbiddenTinyCode(message)

    boom.__name__ = boom.__qualname__ = name
    setattr(module, name, boom)


def _patch(module: ModuleType) -> None:
    for name in FORBIDDEN.get(module.__name__, ()):
        _forbid(module, name)
    if module.__name__ == "extract.vision.streams" and os.environ.get(FAULT_ENV) == "worker-builds-tiny-vit":
        _inject_worker_fault(module)
    _log("patched", module=module.__name__)


def _inject_worker_fault(streams: ModuleType) -> None:
    real = streams.FeatureExtractor.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        real(self, *args, **kwargs)
        if process_kind() == "ray worker":
            importlib.import_module("extract.vision.encoders.tiny").tiny_vit(32)

    streams.FeatureExtractor.__init__ = init


class _Loader(importlib.abc.Loader):
    """The module's own loader, then `_patch`; everything else is the inner loader's."""

    def __init__(self, inner: Any):
        self._inner = inner

    def create_module(self, spec: Any) -> Any:
        return self._inner.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._inner.exec_module(module)
        _patch(module)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class _Finder(importlib.abc.MetaPathFinder):
    """Finds the guarded modules with the finders after it (the editable install's included)."""

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname not in _watched():
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _Loader(spec.loader)
                return spec
        return None


def _watched() -> set[str]:
    extra = {"extract.vision.streams"} if os.environ.get(FAULT_ENV) else set()
    return set(FORBIDDEN) | extra


def install(*, driver: bool = False) -> None:
    """Guard this process: modules imported from now on are patched as they load, those already
    imported right away. `driver`: this is the CLI's process (a forbidden call exits it)."""
    global _driver
    _driver = _driver or driver
    if any(isinstance(f, _Finder) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _Finder())
    for name in _watched():
        if name in sys.modules:
            _patch(sys.modules[name])

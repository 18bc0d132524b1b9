"""Test-only fault injection, imported by every Python process with this directory on PYTHONPATH
(local Ray's workers inherit the driver's environment), then the sitecustomize it shadows:
- SLT_PIPE_TEST_POISON=VIDEO_ID: a model worker about to compute that video kills its own process
  with SIGKILL, every time, as a video that crashes the model or exhausts memory would;
- SLT_PIPE_TEST_KILL_ONCE=FILE: the first text job a Ray worker starts kills its process with
  SIGKILL (FILE records that it happened, so the restarted worker lives): kill -9 mid-job.
A Ray head shared by a test session (tests/ray_head.py) starts its workers with its own environment,
so it names SLT_PIPE_TEST_FAULTS=FILE instead: the JSON object in FILE, read when a patched module is
imported (in a worker of the job the test runs), adds the variables above for that test alone."""

import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import signal
import sys

POISON_ENV = "SLT_PIPE_TEST_POISON"
KILL_ONCE_ENV = "SLT_PIPE_TEST_KILL_ONCE"
FAULTS_FILE_ENV = "SLT_PIPE_TEST_FAULTS"


def _faults_from_file() -> None:
    path = os.environ.get(FAULTS_FILE_ENV)
    if path and os.path.exists(path):
        with open(path) as f:
            os.environ.update(json.load(f))


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _poison(module) -> None:
    init = module.ShardComputer.__init__

    def patched(self, extractor, cfg, on_video=None):
        def deadly(video):
            if on_video is not None:
                on_video(video)  # the queue hears of it first, as it would of a real crash
            if video == os.environ[POISON_ENV]:
                _die()

        init(self, extractor, cfg, on_video=deadly if on_video is not None else None)

    module.ShardComputer.__init__ = patched


def _kill_once(module) -> None:
    run_job = module.run_job

    def patched(models, job):
        flag = os.environ[KILL_ONCE_ENV]
        if os.path.basename(sys.argv[0]) == "default_worker.py" and not os.path.exists(flag):
            open(flag, "w").close()
            _die()
        return run_job(models, job)

    module.run_job = patched


PATCHES = {"extract.vision.runner": (POISON_ENV, _poison), "extract.text.jobs": (KILL_ONCE_ENV, _kill_once)}


class _Patcher(importlib.abc.MetaPathFinder):
    """Runs a patch right after its module has run, so even `from m import f` binds the patched f."""

    def find_spec(self, name, path, target=None):
        if name in PATCHES:
            _faults_from_file()
        if name not in PATCHES or not os.environ.get(PATCHES[name][0]):
            return None
        sys.meta_path.remove(self)
        try:
            spec = importlib.util.find_spec(name)
        finally:
            sys.meta_path.insert(0, self)
        run_module = spec.loader.exec_module

        def exec_module(module):
            run_module(module)
            PATCHES[name][1](module)

        spec.loader.exec_module = exec_module
        return spec


if os.environ.get(FAULTS_FILE_ENV) or any(os.environ.get(env) for env, _ in PATCHES.values()):
    sys.meta_path.insert(0, _Patcher())

_here = os.path.dirname(os.path.abspath(__file__))
_next = importlib.machinery.PathFinder.find_spec(
    "sitecustomize", [p for p in sys.path if os.path.abspath(p or os.curdir) != _here])
if _next is not None and _next.loader is not None:
    _module = importlib.util.module_from_spec(_next)
    _next.loader.exec_module(_module)

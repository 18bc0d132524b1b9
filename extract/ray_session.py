"""Start or join Ray for slt-pipe's jobs (extraction actors, ablation trials).

Why a module of its own: Ray puts the driver's working directory first on every worker's
`sys.path` and makes it the workers' working directory. slt-pipe's packages have plain names
(`cache`, `train`, `extract`, `pipeline`), so a user who runs slt-pipe from a folder that
contains, say, a `cache/` directory would have workers import that folder instead of
slt-pipe. `ray.init` is therefore called from the directory that holds slt-pipe's own
packages; everything sent to workers uses absolute paths (datasets resolve their root).

Quiet by default: Ray's own warnings (e.g. "Token authentication is enabled for this Ray
cluster") are noise in slt-pipe's terminal, so unless `SLT_PIPE_VERBOSE` is set to a
non-empty value (the CLI's --verbose) Ray logs only errors and Python warnings raised while
Ray starts are ignored. Workers' output is never forwarded (`log_to_driver=False`); errors
slt-pipe raises are untouched.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import tempfile
import threading
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping

import ray

from extract.ray_address import require_reachable

PACKAGES_DIR = Path(__file__).resolve().parents[1]
"""The directory that holds slt-pipe's top-level packages (repo root, or site-packages)."""
VERBOSE_ENV = "SLT_PIPE_VERBOSE"

# slt-pipe always starts or joins Ray explicitly. Ray's auto-connect would otherwise let a
# worker-draining thread that outlives `ray.shutdown()` (Ctrl-C) start a second, orphaned
# local Ray from inside `ray.get`.
from ray._private import auto_init_hook  # noqa: E402

auto_init_hook.enable_auto_connect = False


def verbose() -> bool:
    """Whether the user asked to see library output (`SLT_PIPE_VERBOSE` non-empty)."""
    return bool(os.environ.get(VERBOSE_ENV))


KEPT: dict[str, Any] = {}
"""What one command keeps on the Ray it started or joined, between the splits it extracts (the model
workers: each split would otherwise start and load them again); emptied as the session ends."""
_OWNED = [False]


def keeping() -> bool:
    """Whether this process is inside a ray_session of its own (one that will end): only then is
    anything kept in KEPT (a Ray someone else initialised may serve unrelated runs)."""
    return _OWNED[0]


@contextmanager
def ray_session(address: str | None, *, object_store_bytes: int,
                shared: Mapping[str, Path] | None = None) -> Iterator[None]:
    """Use the Ray already initialised, else join `address`, else start a local Ray; shut down only ours.

    `shared`: paths ("dataset", "cache", ...) the workers read or write; on a joined cluster every
    node is asked, up front, whether it sees them (`check_shared_paths`)."""
    if ray.is_initialized():
        yield
        return
    loud = verbose()
    level = "INFO" if loud else "ERROR"
    ray_logger = logging.getLogger("ray")
    before = ray_logger.level
    here = os.getcwd()
    os.chdir(PACKAGES_DIR)
    on_term = signal.getsignal(signal.SIGTERM)
    try:
        with warnings.catch_warnings(), (contextlib.nullcontext() if loud else _quiet_native_stderr()):
            if not loud:
                warnings.simplefilter("ignore")
            if address:
                _join(address, level)
            else:
                ray.init(address="local", num_cpus=os.cpu_count() or 1, include_dashboard=False,
                         object_store_memory=object_store_bytes, log_to_driver=False, logging_level=level)
            if not loud:
                _hush_raylet_reports()
            _private_token()
    finally:
        os.chdir(here)
        if on_term is not None and threading.current_thread() is threading.main_thread():
            # ray.init makes SIGTERM a bare sys.exit(15); the caller's handler (the CLI: stop like Ctrl-C) stays
            signal.signal(signal.SIGTERM, on_term)
    try:
        if address and shared:
            check_shared_paths(shared)
        _OWNED[0] = True
        yield
    finally:
        _OWNED[0] = False
        KEPT.clear()  # the actors go with the session (ours die as the driver disconnects)
        ray.shutdown()
        ray_logger.setLevel(before)


def _hush_raylet_reports() -> None:
    """Ray's driver prints each worker death the raylet reports ("A worker died or was killed ...",
    a paragraph each); slt-pipe says in one line what a loss cost, so these show only with --verbose."""
    from ray._private import worker

    shown = worker.print_to_stdstream
    if getattr(shown, "slt_hushed", False):
        return

    def hushed(data: dict[str, Any], ignore_prefix: bool) -> None:
        if data.get("pid") != "raylet":
            shown(data, ignore_prefix)

    hushed.slt_hushed = True  # type: ignore[attr-defined]
    worker.print_to_stdstream = hushed


def get(ref: Any) -> Any:
    """`ray.get`, with a task's own SltPipeError (a missing weight file, a corrupt cache entry)
    raised as itself rather than inside Ray's wrapper, so the user sees its path and fix."""
    from cache.errors import SltPipeError

    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as e:
        if isinstance(e.cause, SltPipeError):
            raise e.cause from None
        raise


def check_shared_paths(paths: Mapping[str, Path], *, timeout_s: float = 120.0) -> int:
    """Ask every alive node of the cluster whether it sees `paths` (and can write a "cache"); one
    SltPipeError naming each node and path it lacks, rather than a failure inside a worker later.
    Returns the number of nodes checked."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from cache.errors import SltPipeError

    probe = ray.remote(num_cpus=0, max_retries=0)(_probe)
    wanted = {what: str(Path(p).resolve()) for what, p in paths.items()}
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    refs = {n.get("NodeManagerAddress", n["NodeID"]): probe.options(
        scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote(wanted) for n in nodes}
    problems = [f"node {host}: {what} {path} {why}" for host, ref in refs.items()
                for what, path, why in ray.get(ref, timeout=timeout_s)]
    if problems:
        raise SltPipeError(
            "Ray workers on other nodes need the dataset, the cache and the weights at the same paths as this machine:\n  "
            + "\n  ".join(problems),
            fix="mount them at the same paths on every node (a shared filesystem such as NFS), or run "
                "from a machine whose paths the nodes share; without --ray-address everything runs here")
    return len(nodes)


def _probe(paths: dict[str, str]) -> list[tuple[str, str, str]]:
    """On one node: (what, path, why) for every path it cannot use."""
    out = []
    for what, path in paths.items():
        if not os.path.exists(path):
            out.append((what, path, "does not exist"))
        elif what == "cache" and not os.access(path, os.W_OK | os.X_OK):
            out.append((what, path, "is not writable"))
    return out


AUTH_TOKEN_FILE = Path.home() / ".ray" / "auth_token"
"""Where `ray start --head` writes the cluster's token (Ray's default; RAY_AUTH_TOKEN_PATH moves it)."""


def _private_token() -> None:
    """Ray writes the cluster's token world-readable (0644, the umask's): it is a password, so 0600."""
    try:
        st = AUTH_TOKEN_FILE.stat()
    except FileNotFoundError:
        return
    if st.st_mode & 0o077 and st.st_uid == os.getuid():  # another user's file is theirs to protect
        AUTH_TOKEN_FILE.chmod(0o600)


def _join(address: str, level: str) -> None:
    """Connect to a running cluster, with the token that `ray start` enabled, or one clear error."""
    from cache.errors import SltPipeError

    token = os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH") or AUTH_TOKEN_FILE.is_file()
    if token and not os.environ.get("RAY_AUTH_MODE"):
        # Current Ray heads enable token auth, but a driver joining one sends the token only in
        # token mode, which Ray reads into its cached config: set the variable, refresh the config.
        from ray._raylet import Config

        os.environ["RAY_AUTH_MODE"] = "token"
        Config.initialize("")
    require_reachable(address)
    try:
        ray.init(address=address, log_to_driver=False, logging_level=level)
    except (ConnectionError, RuntimeError) as e:
        text = str(e)
        chain, cause = [], e
        while cause is not None and len(chain) < 8:  # Ray wraps the auth failure in two connection errors
            chain.append(f"{type(cause).__name__} {cause}")
            cause = cause.__cause__ or cause.__context__
        if any("InvalidAuthToken" in c or "AuthenticationError" in c for c in chain):
            raise SltPipeError(
                f"Ray cluster at {address} refused our authentication token", path=AUTH_TOKEN_FILE,
                fix="copy the head node's ~/.ray/auth_token to this machine (or set RAY_AUTH_TOKEN / "
                    "RAY_AUTH_TOKEN_PATH to it), or start the cluster with RAY_AUTH_MODE=disabled") from None
        raise SltPipeError(
            f"cannot reach a Ray cluster at {address} ({text.splitlines()[0] if text else type(e).__name__})",
            fix="check the address (`ray status` on the head prints it; HOST:6379, ray://HOST:10001 or auto), "
                "or drop --ray-address to use a local Ray") from None


@contextmanager
def _quiet_native_stderr() -> Iterator[None]:
    """Hide what Ray's C++ core writes straight to fd 2 while connecting (e.g. a warning per retry
    of a refused token); Python-level errors still reach the user through slt-pipe's own message."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)

"""One real Ray head (`ray start --head`) per test session, shared by the tests that drive slt-pipe
through `--ray-address`: each run is its own Ray job (its own workers and actors), so tests stay
apart without a cluster each. Faults reach the head's workers through a file (tests/faults)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

REPO = Path(__file__).resolve().parents[1]
FAULTS = REPO / "tests" / "faults"  # its sitecustomize injects the faults named by SLT_PIPE_TEST_* variables
RAY = Path(sys.executable).with_name("ray")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_head(port: int, deadline: float) -> None:
    while time.time() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    raise TimeoutError(f"no Ray head on port {port}")


def session_pids(temp_dir: Path) -> set[int]:
    """Processes of the head we started: their command lines name its own temp dir."""
    out = subprocess.run(["pgrep", "-f", str(temp_dir)], capture_output=True, text=True).stdout
    return {int(p) for p in out.split()} - {os.getpid()}


@dataclass
class RayHead:
    address: str
    temp_dir: Path
    """Its session directory (workers' logs) lives here; a short path, for Ray's socket names."""
    proc: subprocess.Popen
    faults_file: Path

    @contextlib.contextmanager
    def faults(self, **env: str) -> Iterator[None]:
        """The head's workers started while this is open see `env` (SLT_PIPE_TEST_* faults)."""
        self.faults_file.write_text(json.dumps(env))
        try:
            yield
        finally:
            self.faults_file.write_text("{}")


@contextlib.contextmanager
def started_head(num_cpus: int = 2) -> Iterator[RayHead]:
    """A head on a free port, stopped (and checked gone) on exit."""
    port = free_port()
    temp_dir = Path(f"/tmp/slt-ray-{port}")
    faults_file = temp_dir.with_name(f"slt-ray-{port}-faults.json")
    faults_file.write_text("{}")
    env = {**os.environ, "PYTHONPATH": f"{FAULTS}:{REPO}", "SLT_PIPE_TEST_FAULTS": str(faults_file)}
    proc = subprocess.Popen([str(RAY), "start", "--head", "--block", f"--port={port}", f"--num-cpus={num_cpus}",
                             "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp_dir}"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        wait_for_head(port, time.time() + 120)
        yield RayHead(f"127.0.0.1:{port}", temp_dir, proc, faults_file)
    finally:
        proc.send_signal(signal.SIGTERM)  # `ray start --block` stops the processes it started
        proc.wait(timeout=120)
        faults_file.unlink(missing_ok=True)
        deadline = time.time() + 60
        while session_pids(temp_dir) and time.time() < deadline:
            time.sleep(1)
    left = session_pids(temp_dir)
    assert not left, f"processes of the Ray head on port {port} are still running: {left}"

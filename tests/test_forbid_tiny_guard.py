"""tests/forbid_tiny_cli.py's guard reaches every Python process started after it, local Ray's
workers included: a tiny-profile entry point called in a Ray task fails there, with the worker's
FORBIDDEN, and in the driver. (tests/test_paper_rehearsal.py runs the guard on the real commands.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

SCRIPT = """
import sys
sys.path.insert(0, "tests")
import forbid_tiny_cli  # arms this process and, through os.environ, every process started after it
import ray

ray.init(address="local", num_cpus=1, include_dashboard=False, object_store_memory=80 * 1024**2,
         log_to_driver=False, logging_level="ERROR")

@ray.remote(max_retries=0)
def build():
    from extract.vision.encoders.tiny import tiny_vit  # bound after the import hook replaced it
    return type(tiny_vit(32)).__name__

try:
    print("WORKER RETURNED", ray.get(build.remote()))
except Exception as e:
    print("WORKER RAISED", str(e).splitlines()[-1])
ray.shutdown()
import extract.vision.encoders.tiny as tiny
tiny.tiny_videomae(32, 4)
"""


def test_the_guard_fails_tiny_code_in_a_ray_worker_and_in_the_driver(tmp_path):
    log = tmp_path / "guard.jsonl"
    env = {**os.environ, "SLT_PIPE_FORBID_TINY_LOG": str(log)}
    env.pop("SLT_PIPE_FORBID_TINY", None)
    r = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, cwd=REPO, env=env, timeout=300)
    out = r.stdout + r.stderr
    [worker] = [line for line in r.stdout.splitlines() if line.startswith("WORKER ")]
    assert worker.startswith("WORKER RAISED") and ("FORBIDDEN: the paper profile reached tiny-profile code "
                                                   "extract.vision.encoders.tiny.tiny_vit (in the ray worker, pid ") in worker, out
    assert r.returncode == 1 and r.stderr.strip().endswith(
        "FORBIDDEN: the paper profile reached tiny-profile code extract.vision.encoders.tiny.tiny_videomae "
        f"(in the driver, pid {json.loads(log.read_text().splitlines()[-1])['pid']})"), out
    events = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(e["process"], e["entry"]) for e in events if e["event"] == "forbidden"] == [
        ("ray worker", "extract.vision.encoders.tiny.tiny_vit"), ("driver", "extract.vision.encoders.tiny.tiny_videomae")]

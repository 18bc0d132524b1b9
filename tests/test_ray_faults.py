"""What clusters do, done to the session's Ray head (tests/ray_head.py, each run its own Ray job): a
model worker or a text worker killed with SIGKILL mid-run, a video that kills every worker that
touches it, no worker left. Each run ends as the README says."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_ray_cluster import descendants, embed, embed_args, entry_files, feature_files

from helpers import first_shard_written, store_bytes
from ray_head import REPO, RayHead

pytestmark = pytest.mark.slow


def extract_args(head: RayHead, cache: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "pipeline.cli", "extract", "--dataset", "toy", "--cache", str(cache), "--split",
            "train", "--set", "dataset.toy_videos=24", "--set", "extract.shard_videos=2", "--ray-address",
            head.address, *extra]


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}


def kill_model_worker_after_first_shard(head: RayHead, args: list[str], cwd: Path) -> tuple[subprocess.CompletedProcess, float]:
    """Run `args`, kill -9 its model worker once a shard is written; (the finished run, seconds to the kill)."""
    proc = subprocess.Popen(args, cwd=cwd, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    cache = Path(args[args.index("--cache") + 1])
    deadline = time.time() + 300
    worker = None
    while time.time() < deadline and worker is None:
        if first_shard_written(cache):
            worker = next((p for p, a in descendants(head.proc.pid).items() if a.startswith("ray::ModelWorker")), None)
        time.sleep(0.1)
    assert worker is not None, "no model worker to kill"
    t_kill = time.time()
    os.kill(worker, 9)
    out, err = proc.communicate(timeout=600)
    return subprocess.CompletedProcess(args, proc.returncode, out, err), t_kill


def manifest(cache: Path, kind: str = "features") -> dict:
    (m,) = (cache / kind).glob("*/manifest.json")
    return json.loads(m.read_text())


def test_kill_9_of_a_model_worker_mid_extract_costs_only_its_shards(ray_head, tmp_path):
    run, _ = kill_model_worker_after_first_shard(ray_head, extract_args(ray_head, tmp_path / "c"), tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    lost = [line for line in run.stderr.splitlines() if " lost (exit: " in line]
    assert len(lost) == 1 and lost[0].startswith("model worker 0 on node ") and "re-queued; restarted (1 of 3)" in lost[0]
    assert "Traceback" not in run.stderr and "A worker died" not in run.stderr  # Ray's own paragraph is hushed
    compute = manifest(tmp_path / "c")["compute"]
    assert compute["worker_restarts"] == 1 and compute["lost_workers"][0]["requeued"]

    clean = subprocess.run(extract_args(ray_head, tmp_path / "clean"), cwd=tmp_path, env=env(), capture_output=True, text=True,
                           timeout=600)
    assert clean.returncode == 0, clean.stderr[-3000:]
    assert "lost_workers" not in manifest(tmp_path / "clean")["compute"]
    assert feature_files(tmp_path / "c") == feature_files(tmp_path / "clean")
    (a,), (b,) = ((p.parent for p in (tmp_path / c / "features").glob("*/manifest.json")) for c in ("c", "clean"))
    assert store_bytes(a) == store_bytes(b)


def test_a_video_that_kills_every_worker_is_listed_and_the_rest_published(ray_head, tmp_path):
    poison = "toy00004_weather"  # in the train split of the 24-video toy
    args = extract_args(ray_head, tmp_path / "c", "--set", "extract.item_deaths=2", "--set", "extract.shard_videos=4")
    with ray_head.faults(SLT_PIPE_TEST_POISON=poison):
        run = subprocess.run(args, cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=900)
    assert run.returncode == 1, run.stderr[-3000:]
    assert f"video {poison}: 2 model worker(s) died on it; listed as failed" in run.stderr
    assert f"skipped toy/train/{poison}: " in run.stderr and "its model worker died 2 time(s)" in run.stderr
    m = manifest(tmp_path / "c")
    assert [f[0] for f in m["failures"]] == [poison]
    assert m["items"] == 19 and m["compute"]["worker_restarts"] == 2  # 20 train videos of 24, one failed
    assert "built features toy/train" in run.stdout and "(19 videos; 1 skipped; " in run.stdout


def test_no_worker_left_is_one_error_keeping_the_finished_shards(ray_head, tmp_path):
    args = extract_args(ray_head, tmp_path / "c", "--set", "extract.worker_restarts=0")
    run, _ = kill_model_worker_after_first_shard(ray_head, args, tmp_path)
    assert run.returncode == 2, run.stderr[-3000:]
    last = run.stderr.strip().splitlines()
    assert any(line.startswith("error: no extraction worker left: all 1 died") for line in last)
    assert "run the same command again to resume" in run.stderr and "Traceback" not in run.stderr
    cache = tmp_path / "c"
    assert not list(cache.glob("*/*.lock")) and not list((cache / "features").glob("*.partial"))
    assert len(list((cache / "stream").glob("*.partial"))) == 2  # each stream's finished shards, kept
    again = subprocess.run(args, cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resuming: " in again.stderr and not list(cache.glob("*/*.partial"))


def test_kill_9_of_a_text_worker_mid_job_re_queues_its_chunk_with_the_same_bytes(ray_head, tmp_path):
    """The first text job kills its worker's process with SIGKILL (tests/faults): Ray restarts the worker,
    the chunk runs again, and the entries are those of a run that lost nothing."""
    killed = tmp_path / "killed-once"
    with ray_head.faults(SLT_PIPE_TEST_KILL_ONCE=str(killed)):
        run = subprocess.run(embed_args(tmp_path / "c", "--workers", "1", "--ray-address", ray_head.address),
                             cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    assert killed.exists()
    lost = [line for line in run.stderr.splitlines() if " lost (exit: " in line]
    assert len(lost) == 1 and lost[0].startswith("text worker 0 on node ") and "chunk 0 re-queued" in lost[0], lost
    restarts = [m for kind in ("translations", "targets") for m in (tmp_path / "c" / kind).glob("*/manifest.json")
                if "lost_workers" in json.loads(m.read_text())]
    assert len(restarts) == 1  # the one entry whose chunk was lost records it

    clean_cache = tmp_path / "clean"
    for tiny in (tmp_path / "c" / "tiny-sonar").glob("*/manifest.json"):  # the same model, not trained again
        shutil.copytree(tiny.parent, clean_cache / "tiny-sonar" / tiny.parent.name)
    clean = embed(clean_cache, tmp_path, "--workers", "1", "--ray-address", ray_head.address)
    assert clean.returncode == 0, clean.stderr[-3000:]
    for kind in ("translations", "targets"):
        assert entry_files(tmp_path / "c", kind) == entry_files(clean_cache, kind), kind

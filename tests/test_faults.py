"""What a lost worker, an out-of-memory batch and a wrong --ray-address cost, without a cluster.

The recoveries themselves, with real processes killed on a local Ray, are in tests/test_ray_faults.py (slow).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from cache.errors import SltPipeError
from extract.faults import FaultLog, death_of

REPO = Path(__file__).resolve().parents[1]


class Died(Exception):
    """Stands for a Ray error: only its text and type name matter to death_of."""


def test_a_lost_worker_is_said_in_one_line_and_restarted_while_it_has_restarts():
    said: list[str] = []
    log = FaultLog(restarts=2, item_deaths=3, say=said.append, noun="model worker")
    err = Died("The actor died unexpectedly before finishing this task.\n\tip: 10.0.0.7\n"
               "Worker unexpectedly exits with a connection error code 2.")
    assert death_of(err) == ("10.0.0.7", "process died: killed or crashed")
    first = log.lost(0, err, requeued=["shard 7"], blamed="video a")
    assert first.restart and first.poison is None
    assert said == ["model worker 0 on node 10.0.0.7 lost (exit: process died: killed or crashed); "
                    "shard 7 re-queued; restarted (1 of 2)"]
    assert log.lost(0, err, requeued=["shard 7"], blamed="video b").restart
    third = log.lost(0, err, requeued=[], blamed=None, node="10.0.0.9")
    assert not third.restart and said[-1].endswith("nothing was in hand; no restarts left: the others go on")
    assert "on node 10.0.0.9" in said[-1]  # the node the worker said hello from beats the error's text
    # another worker has its own restarts
    assert log.lost(1, err, requeued=["shard 8"], blamed=None).restart
    record = log.record()
    assert record["worker_restarts"] == 3 and [e["worker"] for e in record["lost_workers"]] == [0, 0, 0, 1]
    assert log.record(since=3)["lost_workers"][0]["requeued"] == ["shard 8"]
    assert FaultLog(restarts=1, item_deaths=1, say=said.append).record() == {}


def test_an_item_that_keeps_killing_workers_is_failed_after_item_deaths():
    said: list[str] = []
    log = FaultLog(restarts=9, item_deaths=2, say=said.append)
    err = Died("Worker unexpectedly exits")
    assert log.lost(0, err, requeued=["shard 1"], blamed="video x").poison is None
    assert log.lost(1, err, requeued=["shard 3"], blamed="video y").poison is None  # a different video
    verdict = log.lost(2, err, requeued=["shard 1"], blamed="video x")  # x again, on yet another worker
    assert verdict.poison == "video x" and verdict.deaths == 2 and verdict.restart
    assert said[-1] == "video x: 2 worker(s) died on it; listed as failed, not retried again"


@pytest.mark.parametrize(("name", "text", "how"), [
    ("OutOfMemoryError", "Task was killed due to the node running low on memory.", "out of memory"),
    ("NodeDiedError", "node died", "node lost"),
    ("ActorUnavailableError", "The actor abc is unavailable: RpcError", "process died: killed or crashed"),
    ("ValueError", "something else", "ValueError"),
])
def test_how_a_worker_ended_is_named_from_its_error(name, text, how):
    err = type(name, (Exception,), {})(text)
    assert death_of(err)[1] == how


def test_gpu_out_of_memory_splits_the_batch_and_computes_the_same_rows():
    from extract.vision.runner import _halving, note_split

    seen: list[int] = []

    def forward(batch):
        n = len(batch["x"])
        seen.append(n)
        if n > 3:
            raise torch.OutOfMemoryError("CUDA out of memory")
        return torch.from_numpy(batch["x"]).float() * 2

    x = np.arange(10, dtype=np.float32).reshape(10, 1)
    splits: list[dict] = []
    out = _halving(forward, {"x": x}, "extract.batch_frames", splits)
    assert torch.equal(out, torch.from_numpy(x) * 2)  # every row, in order
    assert splits[0] == {"setting": "extract.batch_frames", "from": 10, "to": 5}
    assert max(n for n in seen if n <= 3) == 3 and sum(n for n in seen if n <= 3) == 10
    compute: dict = {}
    said: list[str] = []
    for s in splits:
        note_split(compute, s, said.append)
    assert len(compute["oom_splits"]) == len(splits)
    assert said[0] == ("GPU out of memory on 10 at once: split, computed 5 at a time; "
                       "--set extract.batch_frames=5 (or lower) avoids the retries")
    assert len(said) == len({s["to"] for s in splits})  # one line per size, not per batch

    def never(batch):
        raise torch.OutOfMemoryError("CUDA out of memory")

    with pytest.raises(SltPipeError, match=r"batch of one \(extract.batch_clips=1 cannot fit either\)"):
        _halving(never, {"x": x[:2]}, "extract.batch_clips", [])


def test_a_shard_whose_batches_run_out_of_memory_holds_the_same_features():
    """ShardComputer with an extractor that cannot take more than 5 frames at once: the features equal
    those of batches that fit, and the split is reported to the backend (the manifest)."""
    from extract.config import ExtractConfig
    from extract.datasets.base import PngFolder, Sample
    from extract.vision.runner import Decoded, ShardComputer, ShardPlan

    class Fx:
        class recipe:
            frame_keys = ("f",)
            clip_keys = ("f",)

        spatial_dim, motion_dim = 2, 1
        device = torch.device("cuda")  # out of memory is a GPU's: its batch sizes (batch_frames, batch_clips)

        def __init__(self, limit):
            self.limit = limit

        def spatial_batch(self, views):
            v = views["f"]
            if len(v) > self.limit:
                raise torch.OutOfMemoryError("CUDA out of memory")
            return torch.from_numpy(v.reshape(len(v), -1)[:, :2].astype(np.float32))

        def motion_batch(self, clips):
            c = clips["f"]
            return torch.from_numpy(c.reshape(len(c), -1)[:, :1].astype(np.float32))

    rng = np.random.default_rng(0)
    videos = [rng.integers(0, 255, (n, 2, 2, 3), dtype=np.uint8) for n in (9, 20)]
    samples = tuple(Sample(f"v{i}", "train", "", None, PngFolder(Path("."), ())) for i in range(2))
    cfg = ExtractConfig(batch_frames=16, batch_clips=8, dtype="float32")
    seen: list[str] = []

    def run(limit):
        events = list(ShardComputer(Fx(limit), cfg, on_video=seen.append).run(
            ShardPlan(0, samples), iter(Decoded({"f": v}) for v in videos)))
        return [p for k, p in events if k == "split"], events[-1][1]

    splits, split_shard = run(limit=5)
    none, whole = run(limit=100)
    assert none == [] and splits and splits[0]["from"] == 16
    assert all(np.array_equal(a, b) for a, b in zip(split_shard.spatial, whole.spatial))
    assert seen == ["v0", "v1", "v0", "v1"]  # each video is announced before the model sees it


def _slt(*args: str, cwd: Path) -> tuple[subprocess.CompletedProcess, float]:
    t0 = time.time()
    r = subprocess.run([sys.executable, "-m", "pipeline.cli", *args], cwd=cwd, capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120)
    return r, time.time() - t0


@pytest.fixture
def http_server():
    """A plain HTTP server on a free port (what pasting the dashboard's port 8265 reaches): its address."""
    import http.server
    import threading

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.mark.parametrize("kind", ["refused", "http"])
def test_a_wrong_ray_address_is_one_error_within_seconds_and_doctor_says_the_same(kind, tmp_path, request):
    """Ray itself waits minutes for a GCS that is not there, and forever for a port that answers in
    another protocol; slt-pipe asks first (a TCP connection, 2 s, then one gRPC call, 5 s)."""
    from extract.ray_address import address_problem, check_address

    address = "127.0.0.1:1" if kind == "refused" else request.getfixturevalue("http_server")
    problem, fix = address_problem(check_address(address))
    for cmd in (["extract", "--split", "test"], ["embed-targets", "--split", "test", "--langs", "deu"]):
        r, seconds = _slt(*cmd, "--dataset", "toy", "--cache", str(tmp_path / "c"), "--ray-address", address,
                          cwd=tmp_path)
        assert r.returncode == 2, r.stderr
        assert seconds < 10, f"{cmd[0]} took {seconds:.1f} s to refuse the address"
        assert r.stderr.startswith(f"error: {problem}\n") and fix in " ".join(r.stderr.split())
        assert "Traceback" not in r.stderr
        assert not list((tmp_path / "c").glob("*/*")), "nothing may be built for a run that cannot start"
    if kind == "refused":
        assert f"no Ray cluster at {address}" in problem and "drop --ray-address" in fix
    else:
        assert f"no Ray cluster at {address}: {address} accepts a connection but is not a Ray head" in problem
        assert "another protocol than gRPC" in problem and "8265 is the dashboard's" in fix

    from pipeline.config import build_config
    from pipeline.doctor import check_ray

    (row,) = check_ray(build_config({"extract": {"ray_address": address}}), None)
    assert (row.detail, row.fix) == (problem, fix)

"""`extract` and `embed-targets --ray-address` against a real Ray head started with `ray start --head` (token auth on)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from clean_runs import clean_run
from helpers import entry_stores, finished_shards, first_shard_written, partial_shards, same_shard_files, store_bytes
from ray_head import REPO


def extract(cache: Path, cwd: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "pipeline.cli", "extract", "--dataset", "toy", "--cache", str(cache),
                           "--split", "train", "--set", "dataset.toy_videos=16", "--set", "extract.shard_videos=4", *extra],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def embed_args(cache: Path, *extra: str) -> list[str]:
    """embed-targets deu+eng, every sentence translated (tiny SONAR translator, references set aside)
    so that both kinds of job run; 40 training steps make poor translations, published on purpose."""
    return [sys.executable, "-m", "pipeline.cli", "embed-targets", "--dataset", "toy", "--cache",
            str(cache), "--split", "train", "--langs", "deu,eng", "--translator", "sonar",
            "--allow-poor-translations", "--set", "dataset.toy_videos=16", "--set",
            "embed.references=false", "--set", "embed.tiny_sonar_steps=40", "--set",
            "embed.batch_size=1", "--set", "embed.beam_size=1", *extra]


def embed(cache: Path, cwd: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(embed_args(cache, *extra), cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def entry_files(cache: Path, kind: str) -> dict[str, dict[str, str]]:
    """key -> {file: sha256} of every published entry of `kind`."""
    return {m.parent.name: {k: v["sha256"] for k, v in json.loads(m.read_text())["files"].items()}
            for m in (cache / kind).glob("*/manifest.json")}


def feature_files(cache: Path) -> dict[str, str]:
    (manifest,) = (cache / "features").glob("*/manifest.json")
    return {k: v["sha256"] for k, v in json.loads(manifest.read_text())["files"].items()}


def ran_on_head(temp_dir: Path) -> list[Path]:
    """Worker logs in the head's own session directory of a ModelWorker actor: the extraction's model
    worker was started by the head's raylet (a local Ray keeps its logs under another temp dir)."""
    return [f for f in (temp_dir / "session_latest" / "logs").glob("worker-*.out")
            if ":actor_name:ModelWorker" in f.read_text(errors="replace")]


@pytest.mark.slow
def test_extract_and_embed_targets_through_a_real_head_equal_local_runs(ray_head, tmp_path):
    address, temp_dir = ray_head.address, ray_head.temp_dir
    before = set(ran_on_head(temp_dir))  # the session's head: other tests' model workers may have run on it
    remote = extract(tmp_path / "remote", tmp_path, "--ray-address", address)
    assert remote.returncode == 0, remote.stderr[-3000:]
    assert "InvalidAuthToken" not in remote.stderr and "Traceback" not in remote.stderr
    assert set(ran_on_head(temp_dir)) - before, "the remote extract's model worker did not run on the head"
    local = extract(tmp_path / "local", tmp_path)
    assert local.returncode == 0, local.stderr[-3000:]
    assert feature_files(tmp_path / "remote") == feature_files(tmp_path / "local")
    wrong = extract(tmp_path / "wrong", tmp_path, "--ray-address", address,
                    "--set", "dataset.toy_seed=1")
    assert wrong.returncode == 0  # the head is still usable by a second driver

    # embed-targets: translation and embedding chunks on the head's workers, the same bytes as in-process
    remote = embed(tmp_path / "remote", tmp_path, "--ray-address", address, "--workers", "2")
    assert remote.returncode == 0, remote.stderr[-3000:]
    assert "2 Ray worker(s)" in remote.stderr and "Traceback" not in remote.stderr
    local_cache = tmp_path / "local-embed"
    for tiny in (tmp_path / "remote" / "tiny-sonar").glob("*/manifest.json"):  # same model, not retrained
        shutil.copytree(tiny.parent, local_cache / "tiny-sonar" / tiny.parent.name)
    local = embed(local_cache, tmp_path)
    assert local.returncode == 0, local.stderr[-3000:]
    assert "Ray worker" not in local.stderr  # in-process
    for kind in ("translations", "targets"):
        assert entry_files(tmp_path / "remote", kind) == entry_files(local_cache, kind), kind
    assert len(entry_files(local_cache, "targets")) == 2

    # a path the nodes do not see is named up front, before any worker starts
    probe = subprocess.run([sys.executable, "-c", PATH_PROBE, address, str(tmp_path / "absent")],
                           cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True,
                           text=True, timeout=300)
    assert probe.returncode == 0, probe.stderr[-3000:]
    assert re.search(rf"node \S+: dataset {re.escape(str(tmp_path / 'absent'))} does not exist", probe.stdout)
    assert "cache" not in probe.stdout.split("fix:")[0].split(":\n", 1)[1]  # the cache is seen: not listed
    assert "same paths on every node" in probe.stdout


PATH_PROBE = """
import sys
from pathlib import Path
from cache.errors import SltPipeError
from extract.ray_session import ray_session
try:
    with ray_session(sys.argv[1], object_store_bytes=1 << 27, shared={"dataset": Path(sys.argv[2]), "cache": Path.cwd()}):
        print("no error")
except SltPipeError as e:
    print(e.render())
"""


@pytest.mark.slow
def test_a_wrong_token_is_one_clear_error(ray_head, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_AUTH_TOKEN": "0" * 32}
    r = subprocess.run([sys.executable, "-m", "pipeline.cli", "extract", "--dataset", "toy", "--cache",
                        str(tmp_path / "c"), "--split", "train", "--set", "dataset.toy_videos=12",
                        "--ray-address", ray_head.address], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 2, r.stderr[-2000:]
    assert "refused our authentication token" in r.stderr and "auth_token" in r.stderr
    assert "Traceback" not in r.stderr and "gcs_client" not in r.stderr
    assert not list((tmp_path / "c" / "features").glob("*.partial"))


EXTRACT_40 = ["extract", "--dataset", "toy", "--split", "train", "--set", "dataset.toy_videos=40", "--set",
              "extract.shard_videos=2"]
"""A 20-shard extraction the crash tests interrupt after their first shard (and its clean run's argv)."""


def descendants(pid: int) -> dict[int, str]:
    """pid -> command of every process below `pid`."""
    rows = [line.split(None, 2) for line in subprocess.run(["ps", "-ww", "-eo", "pid=,ppid=,args="], capture_output=True,
                                                           text=True).stdout.splitlines()]
    children: dict[int, list[int]] = {}
    args = {}
    for row in rows:
        if len(row) == 3:
            children.setdefault(int(row[1]), []).append(int(row[0]))
            args[int(row[0])] = row[2]
    out, todo = {}, [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out[child] = args[child]
            todo.append(child)
    return out


def alive(pids) -> dict[int, str]:
    out = {}
    for pid in pids:
        try:
            out[pid] = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:120]
        except (FileNotFoundError, ProcessLookupError):
            pass
    return {p: a for p, a in out.items() if a}  # an exited zombie has an empty command line


@pytest.mark.slow
def test_kill_9_of_the_driver_leaves_no_ray_process_and_the_rerun_resumes(tmp_path):
    """kill -9 of the extract driver alone (not its process group): its model worker, decode tasks,
    raylet and GCS are gone within seconds; Ray's two agents follow once their report to the dead
    GCS times out (a fixed 60 s inside Ray); nothing of that Ray outlives it; the re-run resumes.
    Its own local Ray, not the session's head: what it tests is that the driver's Ray dies with it."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    args = [sys.executable, "-m", "pipeline.cli", *EXTRACT_40, "--cache", str(tmp_path / "c")]
    proc = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    features = tmp_path / "c" / "features"
    deadline = time.time() + 240
    while time.time() < deadline and not first_shard_written(tmp_path / "c"):
        time.sleep(0.2)
    started = descendants(proc.pid)
    proc.kill()
    proc.wait()
    assert any("ModelWorker" in a for a in started.values()) and any("raylet" in a for a in started.values()), started
    time.sleep(15)
    ours = {p: a for p, a in alive(started).items() if "Agent" not in a}
    assert not ours, f"still running 15 s after kill -9: {ours}"
    done, before = partial_shards(tmp_path / "c")
    again = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]

    (entry,) = (m.parent for m in features.glob("*/manifest.json"))
    # the shards finished before the kill are the very files it wrote: same inode, mtime and bytes
    assert same_shard_files(tmp_path / "c", before), "finished shards were rewritten"

    # an uninterrupted run of the same command (shared with the Ctrl-C tests): the resumed entry holds
    # its bytes, and how many shards it has
    clean_cache = clean_run(EXTRACT_40)
    (clean_entry,) = (p.parent for p in (clean_cache / "features").glob("*/manifest.json"))
    total = len(finished_shards(next(iter(entry_stores(clean_entry).values())) / "features.zarr" / "shards"))
    assert 1 <= len(done) < total, f"kill came too late to test resuming ({len(done)} of {total} shards)"
    assert f"resuming: {len(done)} of {total} shards already done" in again.stderr
    assert f"{total - len(done)} of {total} shards computed" in again.stderr  # only the others were computed
    assert (entry / "manifest.json").is_file() and not list(features.glob("*.partial"))
    assert store_bytes(entry) == store_bytes(clean_entry)
    assert entry.name == clean_entry.name and feature_files(tmp_path / "c") == feature_files(clean_cache)

    # the agents' 60 s timeout ran while the re-run and the clean run did (no need to wait it out first)
    deadline = time.time() + 120
    while alive(started) and time.time() < deadline:
        time.sleep(2)
    assert not alive(started), f"outlived the driver: {alive(started)}"

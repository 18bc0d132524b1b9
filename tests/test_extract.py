"""Feature extraction: Ray end to end, resume after kill -9, plain-zarr reads, bad videos, other datasets."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cache.errors import SltPipeError
from cache.feature_store import STORE
from cache.features import FeatureReader
from cache.store import Cache
from extract.datasets import PngFolder, Sample, open_dataset
from extract.vision.decode import read_frames
from helpers import (
    entry_stores,
    extract_streams,
    first_shard_written,
    partial_shards,
    same_shard_files,
    store_bytes,
    write_mp4,
)
from pipeline.config import build_config

REPO = Path(__file__).resolve().parents[1]
CLI = [str(REPO / ".venv/bin/slt-pipe")] if (REPO / ".venv/bin/slt-pipe").exists() else [sys.executable, "-m", "pipeline.cli"]
SHARD = 4
TIMEOUT = 240


def cli_args(root: Path, cache: Path) -> list[str]:
    return CLI + ["extract", "--dataset", "toy", "--root", str(root), "--cache", str(cache), "--profile", "tiny",
                  "--split", "train", "--set", f"extract.shard_videos={SHARD}"]


def run_cli(root: Path, cache: Path, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run(cli_args(root, cache), capture_output=True, text=True, timeout=TIMEOUT, cwd=cwd)


def decoy_workdir(path: Path) -> Path:
    """A working directory with folders named like slt-pipe's packages (Ray puts the cwd first on
    its workers' sys.path; slt-pipe must still import its own code there)."""
    for name in ("cache", "train", "extract", "pipeline"):
        (path / name).mkdir(parents=True)
        (path / name / "__init__.py").write_text("raise ImportError('decoy package imported')\n")
    return path


def frames_dir(root: Path, split: str, name: str) -> Path:
    return root / "PHOENIX-2014-T-release-v3/PHOENIX-2014-T/features/fullFrame-210x260px" / split / name


def train_names(root: Path) -> list[str]:
    return sorted(p.name for p in frames_dir(root, "train", "x").parent.iterdir())


def store_arrays(entry: Path) -> dict[str, np.ndarray]:
    """Every array of every store the features entry reads, by (stream prefix and) path."""
    import zarr

    out: dict[str, np.ndarray] = {}
    for prefix, d in entry_stores(entry).items():
        root = zarr.open_group(d / STORE, mode="r")
        for path, arr in root.arrays():
            out[prefix + path] = arr[:]
        for sub in ("shards", "index"):
            for path, g in root[sub].groups():
                for name, arr in g.arrays():
                    out[f"{prefix}{sub}/{path}/{name}"] = arr[:]
            for name, arr in root[sub].arrays():
                out[f"{prefix}{sub}/{name}"] = arr[:]
    return out


def only_entry(cache: Path) -> Path:
    entries = [p for p in (cache / "features").iterdir() if p.is_dir()]
    assert len(entries) == 1, entries
    return entries[0]


# --------------------------------------------------------------------------- CLI through Ray


@pytest.fixture(scope="module")
def toy_bad_png(toy_corpus, tmp_path_factory) -> tuple[Path, str, Path]:
    """A copy of the 30-video toy corpus (24 train videos) with one corrupt PNG: (root, bad video id, bad file)."""
    root = tmp_path_factory.mktemp("toy") / "toy"
    shutil.copytree(toy_corpus(30), root)
    bad = train_names(root)[5]
    bad_file = sorted(frames_dir(root, "train", bad).iterdir())[3]
    bad_file.write_bytes(bad_file.read_bytes()[:60])  # truncated PNG
    return root, bad, bad_file


@pytest.fixture(scope="module")
def clean(toy_bad_png, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    cache = tmp_path_factory.mktemp("clean_cache")
    proc = run_cli(toy_bad_png[0], cache, cwd=decoy_workdir(tmp_path_factory.mktemp("workdir")))
    return cache, proc


def test_workers_0_extracts_in_process_the_bytes_of_the_ray_run(toy_bad_png, clean, tmp_path):
    """--workers 0: the same core without Ray (decoding on threads): same store, same failure list."""
    root, bad, _ = toy_bad_png
    cache = tmp_path / "cache"
    proc = subprocess.run(cli_args(root, cache) + ["--workers", "0"], capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == 1, proc.stderr  # the corrupt video, recorded, as through Ray
    assert "in this process" in proc.stderr
    here, ray_entry = only_entry(cache), only_entry(clean[0])
    assert here.name == ray_entry.name  # the same key: how it ran is not an input
    got, want = store_arrays(here), store_arrays(ray_entry)
    assert got.keys() == want.keys() and all(np.array_equal(got[k], want[k]) for k in want)
    manifest = json.loads((here / "manifest.json").read_text())
    assert [f[0] for f in manifest["failures"]] == [bad] and manifest["compute"]["workers"] == 0
    with pytest.raises(SltPipeError, match="runs in this process"):
        from extract.config import ExtractConfig
        from extract.vision.backend import pick_backend

        pick_backend(ExtractConfig(workers=0, ray_address="auto"))


def test_extract_runs_through_ray_and_reports_bad_video(toy_bad_png, clean):
    root, bad, bad_file = toy_bad_png
    cache, proc = clean
    assert proc.returncode == 1, proc.stderr  # everything else finished, the bad video makes it non-zero
    unwrapped = "".join(proc.stderr.split())  # rich wraps long lines on a non-terminal
    assert f"skippedtoy/train/{bad}:{bad_file}:" in unwrapped and "1of24sample(s)skipped" in unwrapped
    # Quiet: every stderr line is slt-pipe's own (no Ray log lines such as its auth-token warning).
    assert not [line for line in proc.stderr.splitlines() if "WARNING" in line or "\tINFO " in line
                or "Warning:" in line or "Token authentication" in line]
    from extract.ray_session import AUTH_TOKEN_FILE

    if AUTH_TOKEN_FILE.is_file():  # the token the local Ray wrote (0644 by Ray) is a password: 0600
        assert AUTH_TOKEN_FILE.stat().st_mode & 0o777 == 0o600, oct(AUTH_TOKEN_FILE.stat().st_mode)
    entry = only_entry(cache)
    assert not list((cache / "features").glob("*.partial")), "nothing partial is left in the store"
    manifest = json.loads((entry / "manifest.json").read_text())
    assert [f[0] for f in manifest["failures"]] == [bad] and str(bad_file) in manifest["failures"][0][1]
    assert manifest["items"] == 23 and manifest["compute"]["device"] == "cpu"
    spatial_id, motion_id = manifest["inputs"]["models"]["streams"]
    assert spatial_id["name"] == "tiny-vit" and spatial_id["weights"]["libraries"]["torch"]
    reader = FeatureReader(entry)
    # The store says which columns each encoder filled, with the widths the registry gave.
    assert reader.attrs["streams"] == [
        {"name": "tiny-vit", "kind": "frame", "array": "spatial", "columns": [0, reader.spatial_dim]},
        {"name": "tiny-videomae", "kind": "clip", "array": "motion", "columns": [0, reader.motion_dim]}]
    assert (spatial_id["width"], motion_id["width"]) == (reader.spatial_dim, reader.motion_dim) == (128, 64)
    assert bad not in reader.ids and len(reader.ids) == 23
    vid = reader.ids[0]
    spatial, motion = reader.get(vid)
    frames = len(list(frames_dir(root, "train", vid).iterdir()))
    assert spatial.shape == (frames, reader.spatial_dim) and spatial.dtype == np.float16
    assert motion.shape == ((frames - 16) // 8 + 1, reader.motion_dim) and motion.dtype == np.float16
    assert np.isfinite(spatial).all() and spatial.std(0).mean() > 0


def test_second_run_does_no_model_forward(toy_bad_png, clean):
    cache, _ = clean
    again = run_cli(toy_bad_png[0], cache)
    assert again.returncode == 1
    assert "cached features" in again.stdout and "frames forwarded" not in again.stderr


@pytest.mark.slow
def test_kill_9_mid_run_then_resume_equals_clean_run(toy_bad_png, clean, tmp_path):
    cache = tmp_path / "cache"
    proc = subprocess.Popen(cli_args(toy_bad_png[0], cache), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO,
                            start_new_session=True)
    deadline = time.time() + TIMEOUT
    try:
        while time.time() < deadline and proc.poll() is None and not first_shard_written(cache):
            time.sleep(0.02)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the CLI and the local Ray it started
        proc.wait()
    done, before = partial_shards(cache)
    total = -(-24 // SHARD)
    assert 1 <= len(done) < total, "kill came too late (or too early) to test resuming"

    rerun = run_cli(toy_bad_png[0], cache)
    assert rerun.returncode == 1, rerun.stderr
    assert f"resuming: {len(done)} of {total} shards already done" in rerun.stderr
    assert f"{total - len(done)} of {total} shards computed" in rerun.stderr
    entry = only_entry(cache)
    assert same_shard_files(cache, before), "finished shards must not be rewritten"
    assert store_bytes(entry) == store_bytes(only_entry(clean[0]))  # the payload, byte for byte
    a, b = store_arrays(entry), store_arrays(only_entry(clean[0]))
    assert sorted(a) == sorted(b) and len(a) > 2 * total
    for name in a:
        assert a[name].dtype == b[name].dtype and np.array_equal(a[name], b[name]), name
    ma, mb = (json.loads((e / "manifest.json").read_text()) for e in (entry, only_entry(clean[0])))
    assert ma["failures"] == mb["failures"] and ma["key"] == mb["key"]


PLAIN_ZARR = """
import json, sys, numpy as np, zarr, dask.array as da
entry, vid, out = sys.argv[1:]
parts = {"spatial": [], "motion": []}
for s in json.load(open(f"{entry}/streams.json"))["streams"]:   # the set's streams, in order
    store = f"{entry}/../../stream/{s['entry']}/features.zarr"
    g = zarr.open_group(store, mode="r")
    k = list(g["index/ids"][:]).index(vid)
    shard, start, stop = (int(v) for v in g["index/rows"][k])
    rows = g[f"shards/{shard:05d}/{s['array']}"][start:stop]
    lazy = da.from_zarr(store, component=f"shards/{shard:05d}/{s['array']}")[start:stop].compute()
    assert np.array_equal(lazy, rows)
    parts[s["array"]].append(rows)
assert not any(m.split(".")[0] in ("cache", "extract", "pipeline", "train") for m in sys.modules)
np.savez(out, spatial=np.concatenate(parts["spatial"], axis=1), motion=np.concatenate(parts["motion"], axis=1))
"""


def test_plain_zarr_reads_the_same_features(clean, tmp_path):
    entry = only_entry(clean[0])
    reader = FeatureReader(entry)
    vid = reader.ids[len(reader.ids) // 2]
    out = tmp_path / "plain.npz"
    subprocess.run([sys.executable, "-c", PLAIN_ZARR, str(entry), vid, str(out)], check=True, cwd=tmp_path, timeout=120)
    plain = np.load(out)
    spatial, motion = reader.get(vid)
    assert plain["spatial"].dtype == np.float16 and np.array_equal(plain["spatial"], spatial)
    assert np.array_equal(plain["motion"], motion)


def test_in_process_extractor_matches_the_store(toy_bad_png, clean):
    """`slt-pipe translate --video` computes features with FeatureExtractor: they must match the cache's."""
    from extract.vision.streams import FeatureExtractor

    cfg = build_config({"profile": "tiny"}).extract
    reader = FeatureReader(only_entry(clean[0]))
    vid = reader.ids[2]
    src = frames_dir(toy_bad_png[0], "train", vid)
    frames = read_frames(PngFolder(src, tuple(sorted(p.name for p in src.iterdir()))))
    fx = FeatureExtractor(cfg, "cpu")
    spatial, motion = reader.get(vid)
    np.testing.assert_allclose(fx.spatial(frames), spatial.astype(np.float32), atol=5e-3, rtol=5e-3)
    np.testing.assert_allclose(fx.motion(frames), motion.astype(np.float32), atol=5e-3, rtol=5e-3)


def test_tiny_vit_features_carry_colour_and_position():
    from extract.vision.streams import FeatureExtractor

    fx = FeatureExtractor(build_config({"profile": "tiny"}).extract, "cpu")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:210, :260]

    def frame(colour, x, y):
        f = np.full((210, 260, 3), 120, np.int64)
        f[(abs(xx - x) < 15) & (abs(yy - y) < 15)] = colour
        return np.clip(f + rng.integers(-3, 4, f.shape), 0, 255).astype(np.uint8)

    f = fx.spatial(np.stack([frame((220, 30, 30), 100, 100), frame((220, 30, 30), 101, 100),
                             frame((30, 30, 220), 100, 100), frame((220, 30, 30), 180, 60)]))
    noise = np.linalg.norm(f[0] - f[1])
    assert np.linalg.norm(f[0] - f[2]) > 2 * noise  # colour
    assert np.linalg.norm(f[0] - f[3]) > 2 * noise  # position


# --------------------------------------------------------------------------- in-process, one shared Ray


def extract_in_process(tmp: Path, name: str, root: Path, splits: list[str]):
    from rich.console import Console

    from pipeline.extract_stage import extract

    cfg = build_config({"profile": "tiny", "dataset": {"name": name, "root": str(root), "splits": splits},
                        "cache": {"dir": str(tmp / "cache")}, "extract": {"shard_videos": 2}})
    console = Console(stderr=True, record=True, width=1000)  # no wrapping inside file names
    report = extract(cfg, console)
    return report, console.export_text()


def test_missing_frame_and_zero_frames_are_skipped(local_ray, toy_bad_png, tmp_path):

    root = tmp_path / "toy"
    shutil.copytree(toy_bad_png[0], root)
    ds = open_dataset("toy", root, ["dev"])
    samples = list(ds.samples["dev"])
    missing = samples[0].frames.dir / samples[0].frames.files[-1]
    missing.unlink()  # vanishes between opening the dataset and decoding it
    empty = Sample("zz-empty", "dev", "text", None, PngFolder(tmp_path / "empty", ()))
    cfg = build_config({"profile": "tiny", "extract": {"shard_videos": 2}}).extract
    result, entry = extract_streams(cfg, samples + [empty], tmp_path / "cache")
    reasons = {f[0]: f[1] for f in result.skipped}
    assert all(len(f) == 3 and f[2] for f in result.skipped)  # each with its fix
    assert sorted(reasons) == sorted([samples[0].id, "zz-empty"]) and result.done == len(samples) - 1
    assert str(missing) in reasons[samples[0].id] and "missing" in reasons[samples[0].id]
    assert "no frames" in reasons["zz-empty"]
    assert sorted(FeatureReader(entry).ids) == sorted(s.id for s in samples[1:])
    assert result.frames_forwarded == sum(len(s.frames.files) for s in samples[1:])


def red_bar(i: int, height: int, width: int) -> np.ndarray:
    img = np.zeros((height, width, 3), np.uint8)
    img[:, : 4 + 2 * i] = (200, 40, 40)  # a red bar growing over time
    return img


def test_ctrl_c_ends_the_threads_that_talk_to_ray_before_it_goes_down(local_ray, toy_bad_png, tmp_path, monkeypatch):
    """Ctrl-C while a shard is being written: when the interrupt leaves run_extraction no drain thread is
    left inside Ray, so ray_session's ray.shutdown() never runs under one (Ray's core then exits the
    process with status 1 instead of slt-pipe's 130), and the shard being written is finished."""
    import threading

    from cache.feature_store import FeatureStoreWriter
    from extract.vision.backend import pick_backend
    from extract.vision.ray_backend import DRAIN_THREAD
    from extract.vision.runner import run_extraction

    write = FeatureStoreWriter.write_shard
    written: list[int] = []

    def interrupted_write(self, data):
        if not written:  # Ctrl-C reaches the main thread while this thread is still busy writing
            signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)
            time.sleep(1.0)
        write(self, data)
        written.append(data.index)

    monkeypatch.setattr(FeatureStoreWriter, "write_shard", interrupted_write)
    # Python's own handler: a shell that starts pytest in the background hands it SIGINT ignored
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    samples = list(open_dataset("toy", toy_bad_png[0], ["train"]).samples["train"])
    cfg = build_config({"profile": "tiny", "extract": {"shard_videos": 2, "streams": ["tiny-vit"]}}).extract
    try:
        with Cache(tmp_path / "cache").begin("stream", "k", {}) as pending, pytest.raises(KeyboardInterrupt):
            run_extraction(cfg, samples, {"tiny-vit": pending.dir}, pick_backend(cfg))
    finally:
        signal.signal(signal.SIGINT, before)
    deadline = time.time() + 0.5  # a thread that has finished its work leaves enumerate() a moment later
    while [t for t in threading.enumerate() if t.name.startswith(DRAIN_THREAD)] and time.time() < deadline:
        time.sleep(0.01)
    assert [t.name for t in threading.enumerate() if t.name.startswith(DRAIN_THREAD)] == []
    assert written and len(written) < len(samples) // 2  # the write under way was finished, the rest stopped


def test_how2sign_clips_cut_videos_and_truncated_mp4(local_ray, tmp_path):
    head = "VIDEO_ID\tVIDEO_NAME\tSENTENCE_ID\tSENTENCE_NAME\tSTART_REALIGNED\tEND_REALIGNED\tSENTENCE"
    rows = ["a\ta-1\ta_0\ta_0-1\t0.0\t1.0\tFirst.", "b\tb-1\tb_0\tb_0-1\t0.5\t1.5\tCut from a video.",
            "c\tc-1\tc_0\tc_0-1\t0.0\t1.0\tTruncated.", "b\tb-1\tb_1\tb_1-1\t1.0\t2.5\tPast the end.",
            "e\te-1\te_0\te_0-1\t0.0\t1.0\tNo video at all."]
    (tmp_path / "h2s").mkdir()
    (tmp_path / "h2s/how2sign_realigned_test.csv").write_text("\n".join([head] + rows) + "\n")
    write_mp4(tmp_path / "h2s/clips/a_0-1.mp4", frames=20, size=48, width=64, draw=red_bar)
    write_mp4(tmp_path / "h2s/videos/b-1.mp4", frames=48, size=48, width=64, draw=red_bar)
    good = write_mp4(tmp_path / "h2s/clips/c_0-1.mp4", frames=40, size=48, width=64, draw=red_bar).read_bytes()
    (tmp_path / "h2s/clips/c_0-1.mp4").write_bytes(good[: len(good) // 2])
    report, log = extract_in_process(tmp_path, "how2sign", tmp_path / "h2s", ["test"])
    assert [f[0] for f in report.failures] == ["b_1-1", "c_0-1", "e_0-1"]
    assert "c_0-1.mp4" in report.failures[1][1] and "c_0-1.mp4" in log
    assert "window [1.0, 2.5) s ends past the end of b-1.mp4 (2.0 s); skipped; fix: none needed, or correct "\
           "END_REALIGNED on line 5 of" in log
    assert "skipped how2sign/test/e_0-1: " in log and "no video for 'e_0-1'" in log
    assert "how2sign/test: 3 of 5 sample(s) skipped; the other 2 are in features/" in log
    reader = FeatureReader(report.entries["test"].dir)
    assert reader.ids == ["a_0-1", "b_0-1"]
    a_sp, a_mo = reader.get("a_0-1")
    b_sp, b_mo = reader.get("b_0-1")
    assert a_sp.shape == (20, reader.spatial_dim) and a_mo.shape == (1, reader.motion_dim)  # (20-16)//8+1
    assert b_sp.shape == (24, reader.spatial_dim) and b_mo.shape == (2, reader.motion_dim)  # 1 s window at 24 fps
    assert np.linalg.norm(a_sp[-1].astype(np.float32) - a_sp[0]) > 0  # the growing bar changes the features


def test_csl_daily_jpeg_frames(local_ray, tmp_path):
    import pickle

    root = tmp_path / "CSL-Daily"
    names = {"S000000_P0000_T00": "train", "S000001_P0001_T00": "train", "S000002_P0000_T00": "train"}
    info = []
    for k, name in enumerate(names):
        folder = root / "sentence/frames_512x512" / name
        folder.mkdir(parents=True)
        for i in range(6 + 5 * k):
            img = np.full((64, 64, 3), 30, np.uint8)
            img[8 * k: 8 * k + 16, 3 * i: 3 * i + 16] = (40, 200, 60)
            Image.fromarray(img).save(folder / f"{i:06d}.jpg", quality=95)
        info.append({"name": name, "length": 6 + 5 * k, "label_char": list("天气"), "label_word": [], "label_gloss": [],
                     "signer": 0})
    (root / "sentence_label").mkdir()
    with open(root / "sentence_label/csl2020ct_v2.pkl", "wb") as f:
        pickle.dump({"info": info}, f)
    (root / "sentence_label/split_1.txt").write_text("\n".join(f"{n}|{s}" for n, s in names.items()) + "\n")
    report, _ = extract_in_process(tmp_path, "csl-daily", root, ["train"])
    assert report.failures == [] and report.computed == ["train"]
    reader = FeatureReader(report.entries["train"].dir)
    assert reader.ids == sorted(names)
    assert [reader.get(n)[0].shape[0] for n in reader.ids] == [6, 11, 16]
    assert [reader.get(n)[1].shape[0] for n in reader.ids] == [1, 1, 1]
    again, log = extract_in_process(tmp_path, "csl-daily", root, ["train"])
    assert again.computed == [] and "cached features" in log


def test_missing_real_weights_is_a_clear_error(tmp_path, monkeypatch):
    from cache.errors import WeightsError
    from extract.vision.streams import model_identity

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_HUB_CACHE", str(tmp_path / "empty-hf"))
    cfg = build_config({"profile": "paper"}).extract
    with pytest.raises(WeightsError) as e:
        model_identity(cfg)
    assert "timm/vit_large_patch14_clip_224.openai" in e.value.problem and "huggingface-cli download" in e.value.fix
    cfg.clip.weights = str(tmp_path / "nowhere")
    with pytest.raises(WeightsError) as e:
        model_identity(cfg)
    assert e.value.path == str(tmp_path / "nowhere")


def test_feature_stats_with_dask_match_numpy(clean):
    from cache.features import feature_stats

    reader = FeatureReader(only_entry(clean[0]))
    stats = feature_stats(reader)
    for k, name in enumerate(("spatial", "motion")):
        rows = np.concatenate([reader.get(v)[k] for v in reader.ids]).astype(np.float32)
        assert stats[name]["rows"] == len(rows)
        np.testing.assert_allclose(stats[name]["mean"], rows.mean(0), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(stats[name]["std"], rows.std(0), rtol=1e-3, atol=1e-5)


def test_preload_serves_the_same_arrays_and_respects_the_budget(clean):
    entry = only_entry(clean[0])
    per_video, held = FeatureReader(entry), FeatureReader(entry)
    assert not held.preload(held.nbytes() - 1)
    assert held.preload(held.nbytes())
    for vid in per_video.ids:
        for a, b in zip(per_video.get(vid), held.get(vid)):
            assert a.dtype == b.dtype and np.array_equal(a, b)


def test_the_features_key_covers_the_stored_dtype(toy_corpus, tmp_path):
    """float16 and float32 stores of the same videos are different entries (the key hashes extract.dtype)."""
    from pipeline.config import build_config
    from pipeline.dataset import configured_dataset
    from pipeline.extract_stage import features_key

    cfgs = [build_config({"profile": "tiny", "dataset": {"name": "toy", "root": str(toy_corpus(12))},
                          "cache": {"dir": str(tmp_path)}, "extract": {"dtype": dtype}}) for dtype in ("float16", "float32")]
    keys = [features_key(c, configured_dataset(c), "train")[0] for c in cfgs]
    assert keys[0] != keys[1]

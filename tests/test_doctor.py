"""`slt-pipe doctor`: every missing asset with its fix, real-format weights verified, dataset, disk, Ray.

Runs the real CLI in a subprocess with every model location (HF cache, fairseq2 download
cache and user cards, slt-pipe cache) pointed at empty temp dirs, so nothing on this
machine leaks in; the small snapshots are random-init models of the real classes saved in
the real transformers formats.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from extract.ray_address import parse_ray_address
from extract.vision.streams import clip_count as motion_clips
from extract.vision.streams import feature_bytes

REPO = Path(__file__).resolve().parents[1]
CLI = [str(REPO / ".venv/bin/slt-pipe")] if (REPO / ".venv/bin/slt-pipe").exists() else [sys.executable, "-m", "pipeline.cli"]
TIMEOUT = 180
ASSET_ROWS = ("spatial weights (CLIP)", "motion weights (VideoMAE)", "SONAR encoder", "SONAR decoder", "NLLB translator")


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict[str, str]:
    """A machine with nothing downloaded: empty HF cache, fairseq2 caches and cards, slt-pipe cache."""
    d = tmp_path_factory.mktemp("empty-machine")
    for sub in ("hf/hub", "fairseq2-cache", "fairseq2-cards", "slt-pipe-cache", "cwd"):
        (d / sub).mkdir(parents=True)
    e = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "FAIRSEQ2_", "SLT_PIPE_", "RAY_"))}
    e.update(HF_HOME=str(d / "hf"), HF_HUB_CACHE=str(d / "hf/hub"), HF_HUB_OFFLINE="1",
             FAIRSEQ2_CACHE_DIR=str(d / "fairseq2-cache"), FAIRSEQ2_USER_ASSET_DIR=str(d / "fairseq2-cards"),
             SLT_PIPE_CACHE=str(d / "slt-pipe-cache"), COLUMNS="240", CWD=str(d / "cwd"))
    return e


def doctor(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    # cwd: an empty folder, so no slt-pipe.toml of the repo (or a parent) is layered in.
    return subprocess.run(CLI + ["doctor", *args], capture_output=True, text=True, timeout=TIMEOUT, cwd=env["CWD"],
                          env=env)


def rows_of(proc: subprocess.CompletedProcess) -> dict[str, dict]:
    doc = json.loads(proc.stdout)
    return {r["check"]: r for r in doc["rows"]}


def write_phoenix(root: Path, videos: dict[str, int], *, split: str = "test", missing: tuple[str, ...] = ()) -> Path:
    """A PHOENIX-2014-T release with `videos` (name -> frame count) as 210x260 PNGs; `missing` rows
    are in the CSV without a frame folder."""
    base = root / "PHOENIX-2014-T-release-v3/PHOENIX-2014-T"
    ann = base / "annotations/manual"
    ann.mkdir(parents=True)
    rows = ["name|video|start|end|speaker|orth|translation"]
    rng = np.random.default_rng(0)
    for name in [*videos, *missing]:
        rows.append(f"{name}|{name}/1/*.png|-1|-1|Signer01|REGEN|morgen regnet es")
    for name, frames in videos.items():
        d = base / "features/fullFrame-210x260px" / split / name
        d.mkdir(parents=True)
        for i in range(1, frames + 1):
            Image.fromarray(rng.integers(0, 256, (210, 260, 3), dtype=np.uint8)).save(d / f"images{i:04d}.png")
    (ann / f"PHOENIX-2014-T.{split}.corpus.csv").write_text("\n".join(rows) + "\n")
    return root


@pytest.fixture(scope="module")
def snapshots(tmp_path_factory) -> tuple[Path, Path]:
    from extract.vision.assets import save_clip_snapshot, save_videomae_snapshot
    from helpers import random_clip, random_videomae

    d = tmp_path_factory.mktemp("snaps")
    clip = save_clip_snapshot(random_clip(64, 3, 4, 128, 16, 64), d / "clip", full_clip=True)
    mae = save_videomae_snapshot(random_videomae(64, 2, 4, 128, 64), d / "mae")
    return clip, mae


def weight_sets(clip: Path, mae: Path) -> list[str]:
    return ["--set", f"extract.clip.weights={clip}", "--set", "extract.clip.arch=snapshot",
            "--set", f"extract.videomae.weights={mae}", "--set", "extract.videomae.arch=snapshot"]


VIDEOS = {"v1": 40, "v2": 10}


@pytest.fixture(scope="module")
def paper_run(env, snapshots, tmp_path_factory) -> subprocess.CompletedProcess:
    """--profile paper --json with the small snapshots, on a PHOENIX-layout release (split test)."""
    root = write_phoenix(tmp_path_factory.mktemp("phoenix"), VIDEOS)
    return doctor(env, "--profile", "paper", "--dataset", "phoenix", "--root", str(root), "--split", "test",
                  *weight_sets(*snapshots), "--json")


# --------------------------------------------------------------------------- (1) + (3) nothing downloaded


@pytest.fixture(scope="module")
def fresh(env) -> tuple[subprocess.CompletedProcess, subprocess.CompletedProcess]:
    return doctor(env, "--profile", "paper"), doctor(env, "--profile", "paper", "--json")


def test_nothing_downloaded_lists_every_missing_asset_with_its_fix(fresh, env):
    table, _ = fresh
    assert table.returncode == 1, table.stderr
    out = table.stdout
    for check in ASSET_ROWS:
        assert check in out
    assert "FAIL" in out and "blocker" in out
    # the fix of each missing asset, in the table
    assert "huggingface-cli download openai/clip-vit-large-patch14" in out
    assert "huggingface-cli download MCG-NJU/videomae-large" in out
    assert "huggingface-cli download facebook/nllb-200-distilled-600M" in out
    assert "text_sonar_basic_encoder@user" in out and "text_sonar_basic_decoder@user" in out
    # each fix is a line of its own under the table, never inside a wrapping cell (tests/test_tables.py)
    fixes = [ln for ln in out.splitlines() if ln.startswith("fix (")]
    assert any(ln.startswith("fix (spatial weights (CLIP)): ") and
               "`huggingface-cli download openai/clip-vit-large-patch14`" in ln for ln in fixes), fixes
    assert all(any(ln.startswith(f"fix ({check}): ") for ln in fixes) for check in ASSET_ROWS), fixes
    assert "generated in the cache on first use" in out  # the toy is not generated by doctor
    assert not any(Path(env["SLT_PIPE_CACHE"]).glob("datasets/*"))


def test_json_has_the_same_rows_as_the_table(fresh, env):
    table, as_json = fresh
    assert as_json.returncode == 1
    doc = json.loads(as_json.stdout)
    assert doc["profile"] == "paper" and doc["blockers"] == sum(r["blocker"] for r in doc["rows"]) >= 5
    rows = {r["check"]: r for r in doc["rows"]}
    for check in ASSET_ROWS:
        assert rows[check]["status"] == "FAIL" and rows[check]["blocker"] and rows[check]["fix"], rows[check]
    for r in doc["rows"]:
        assert set(r) >= {"check", "status", "detail", "fix", "blocker", "data"}
        assert r["check"] in table.stdout and r["status"] in ("ok", "warn", "FAIL")
    assert table.stdout.count("│ FAIL ") == sum(r["status"] == "FAIL" for r in doc["rows"])
    assert not any(Path(env["SLT_PIPE_CACHE"]).iterdir())  # nothing was written to the cache


# --------------------------------------------------------------------------- (2) real-format snapshots


def test_real_format_snapshots_are_ok_with_format_and_sha256(paper_run, snapshots):
    clip, mae = snapshots
    rows = rows_of(paper_run)
    sp, mo = rows["spatial weights (CLIP)"], rows["motion weights (VideoMAE)"]
    assert sp["status"] == "ok" and mo["status"] == "ok", (sp, mo)
    for row, snap in ((sp, clip), (mo, mae)):
        sha = hashlib.sha256((snap / "model.safetensors").read_bytes()).hexdigest()
        assert row["data"]["format"] == "transformers"
        assert row["data"]["files"] == [{"file": "model.safetensors", "bytes": (snap / "model.safetensors").stat().st_size,
                                         "sha256": sha}]
        assert sha[:12] in row["detail"] and "transformers format" in row["detail"]
    assert sp["data"]["layers"] == 3 and sp["data"]["width"] == 64 and "3 layers x 64" in sp["detail"]
    assert sp["data"]["ignored_by_name"].get("text tower", 0) > 0 and "text tower" in sp["detail"]
    assert mo["data"]["ignored_by_name"].get("pre-training decoder", 0) > 0
    ds = rows["dataset phoenix [test]"]
    assert ds["status"] == "ok" and ds["data"]["samples"] == 2 and ds["data"]["frames"] == 50
    assert rows["PHOENIX features/fullFrame-256x256px/"]["status"] == "warn"  # squashed in memory


def test_partial_snapshot_is_a_fail_row_naming_the_missing_key(env, snapshots, tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    clip, mae = snapshots
    partial = tmp_path / "clip-partial"
    shutil.copytree(clip, partial)
    state = load_file(str(partial / "model.safetensors"))
    key = "vision_model.encoder.layers.1.mlp.fc2.weight"
    del state[key]
    save_file(state, str(partial / "model.safetensors"), metadata={"format": "pt"})
    proc = doctor(env, "--profile", "paper", *weight_sets(partial, mae))
    assert proc.returncode == 1
    line = next(ln for ln in proc.stdout.splitlines() if "spatial weights" in ln)
    assert "FAIL" in line
    assert "missing 1 of" in proc.stdout and key in proc.stdout


# --------------------------------------------------------------------------- (4) dataset, (5) Ray


def test_missing_frame_folder_is_a_warn_row_naming_the_folder(env, tmp_path):
    """One bad sample never blocks a split: extract skips and lists it, so doctor warns."""
    root = write_phoenix(tmp_path / "data", {"v1": 3}, missing=("gone01",))
    proc = doctor(env, "--profile", "tiny", "--dataset", "phoenix", "--root", str(root), "--split", "test", "--json")
    assert proc.returncode == 0, proc.stderr
    row = rows_of(proc)["dataset phoenix [test]"]
    folder = root / "PHOENIX-2014-T-release-v3/PHOENIX-2014-T/features/fullFrame-210x260px/test/gone01"
    assert row["status"].upper() == "WARN" and not row["blocker"]
    assert "1 will be skipped by extract" in row["detail"]
    assert str(folder) in row["detail"] and "frame folder is missing" in row["detail"]
    assert "restore" in row["fix"] and "from the release" in row["fix"]
    assert row["data"]["skipped"] == ["gone01"]
    table = doctor(env, "--profile", "tiny", "--dataset", "phoenix", "--root", str(root), "--split", "test")
    assert table.returncode == 0
    line = next(ln for ln in table.stdout.splitlines() if "dataset phoenix [test]" in ln)
    assert "warn" in line and "gone01" in table.stdout


def test_unreachable_ray_address_is_a_fail_row(env):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = doctor(env, "--profile", "tiny", "--ray-address", f"127.0.0.1:{port}", "--json")
    assert proc.returncode == 1
    rows = rows_of(proc)
    assert rows["Ray"]["status"] == "FAIL" and f"127.0.0.1:{port}" in rows["Ray"]["detail"]
    assert rows["Ray"]["fix"]
    # the tiny profile needs no files: the only blocker is Ray
    assert [r for r in rows.values() if r["blocker"]] == [rows["Ray"]]


def test_ray_addresses_parse():
    assert parse_ray_address("ray://head:10001") == ("head", 10001)
    assert parse_ray_address("ray://head") == ("head", 10001)
    assert parse_ray_address("10.0.0.1:6380") == ("10.0.0.1", 6380)
    assert parse_ray_address("head") == ("head", 6379)
    assert parse_ray_address("[::1]:7000") == ("::1", 7000)


# --------------------------------------------------------------------------- (6) disk estimate


def test_disk_estimate_is_frames_times_widths_times_dtype(paper_run):
    row = rows_of(paper_run)["disk for features"]
    assert row["status"] == "ok", row
    # computed here independently: S2 scales [1, 2] of a 64-wide CLIP -> 128; VideoMAE 64;
    # clips of 16 frames, stride 8: 40 frames -> 4 clips, 10 frames (shorter than a clip) -> 1; float16.
    spatial, motion = 64 * 2, 64
    expected = ((40 + 10) * spatial + (4 + 1) * motion) * 2
    assert row["data"]["bytes_needed"] == expected
    assert (row["data"]["frames"], row["data"]["clips"], row["data"]["spatial_dim"], row["data"]["motion_dim"]) == \
        (50, 5, 128, 64)
    assert row["data"]["free_bytes"] > 0


def test_feature_bytes_and_clip_count():
    assert [motion_clips(t) for t in (1, 15, 16, 23, 24, 40)] == [1, 1, 1, 1, 2, 4]
    assert feature_bytes([40, 10], (128, 64), "float32") == ((50 * 128) + 5 * 64) * 4


def test_device_row_names_gpus_and_bf16(monkeypatch):
    """No GPU here: the CUDA branch with torch.cuda faked (names, memory, bf16 support)."""
    from types import SimpleNamespace

    import torch

    from pipeline.config import build_config
    from pipeline.doctor import Context, check_device

    props = SimpleNamespace(name="NVIDIA Fake 80GB", total_memory=80 * 1024 ** 3, major=8, minor=0)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: props)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    [row] = check_device(build_config({"profile": "paper"}), Context())
    assert row.status == "warn" and "2 CUDA GPU(s): NVIDIA Fake 80GB (80.0 GiB)" in row.detail
    assert row.fix == "--set extract.autocast=float16" and row.data["bf16"] is False
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    [row] = check_device(build_config({"profile": "paper"}), Context())
    assert row.status == "ok" and "bf16 supported" in row.detail
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    [row] = check_device(build_config({"profile": "paper"}, {"extract": {"device": "cuda"}}), Context())
    assert row.status == "FAIL" and row.fix


def test_weights_fixes_paste_a_gated_repo_says_so_and_bad_names_fail_their_own_row(env):
    """Each weights fix is a `--set extract.X.weights=PATH` command (or the toml line), not prose; DINOv3
    says its repo is gated; an unknown stream fails its own row once, naming the encoders that exist; a
    bad arch is reported although its weights are missing too."""
    proc = doctor(env, "--profile", "paper", "--set", 'extract.streams=["dinov3", "videomea", "videomea", "vjepa2"]',
                  "--set", "extract.vjepa2.arch=ViT-Q", "--json")
    rows = rows_of(proc)
    dino = rows["spatial weights (DINOv3)"]
    assert dino["status"] == "FAIL" and "the repo is gated" in dino["detail"]
    assert "`huggingface-cli login`" in dino["fix"] and "huggingface.co/facebook/dinov3-vitl16-pretrain-lvd1689m" in dino["fix"]
    assert dino["fix"].endswith('--set extract.dinov3.weights=PATH (or weights = "PATH" under [extract.dinov3] in '
                                'slt-pipe.toml)'), dino["fix"]
    unknown = [r for r in rows.values() if r["check"].startswith("stream ")]
    assert [r["check"] for r in unknown] == ["stream videomea"]  # listed twice, one row
    assert "videomae" in unknown[0]["fix"] and "vjepa2" in unknown[0]["fix"]
    vjepa = rows["motion weights (V-JEPA 2)"]
    assert vjepa["detail"].startswith("unknown extract.vjepa2.arch 'ViT-Q' (there are ViT-L/16-256"), vjepa["detail"]
    assert vjepa["fix"].startswith("--set extract.vjepa2.arch=ViT-L/16-256")

"""The paper path end to end, on the toy in PHOENIX layout, with every model in a real format.

`slt-pipe make-toy --assets` writes the toy's models as users hold real ones (transformers
snapshots of CLIP and VideoMAE, SONAR as fairseq2 checkpoints behind a user asset card, an
NLLB snapshot). Each command then runs `--profile paper` through `tests/forbid_tiny_cli.py`,
which makes every tiny-profile entry point fail in the driver and in every Ray worker (its
guard is installed in each process by tests/forbid_tiny/sitecustomize.py, and logs which
processes it patched): extract (Ray model workers), embed-targets (NLLB translating on a Ray
text worker, the toy's own eng/fra set aside so that NLLB really runs), train, evaluate,
translate. A deliberate fault, a Ray worker that builds the tiny ViT, must fail extract.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import h5py
import pytest

from train.run_files import read_predictions

pytestmark = pytest.mark.slow  # about 2 minutes: `pytest -m slow`, which .ci/run runs too

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests/forbid_tiny"))
from forbid_tiny_guard import FAULT_ENV, LOG_ENV  # noqa: E402

PY = str(REPO / ".venv/bin/python") if (REPO / ".venv/bin/python").exists() else sys.executable
SLT = [PY, str(REPO / "tests/forbid_tiny_cli.py")]
TIMEOUT = 600


def guard_log(path: Path) -> list[dict]:
    """The guard's JSON lines: one per module patched, one per forbidden call, from every process."""
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def run(args: list[str], env: dict, cwd: Path, cmd: list[str] = SLT, log: str | None = None) -> subprocess.CompletedProcess:
    """One command; the guard's log of a forbid_tiny_cli command goes to guard_{log or command}.jsonl in cwd."""
    t0 = time.monotonic()
    env = {**env, LOG_ENV: str(cwd / f"guard_{log or args[0]}.jsonl")}
    r = subprocess.run(cmd + args, capture_output=True, text=True, timeout=TIMEOUT, env=env, cwd=cwd)
    print(f"{args[0]}: {time.monotonic() - t0:.1f} s")
    assert "FORBIDDEN" not in r.stdout + r.stderr, r.stdout + r.stderr
    assert not [e for e in guard_log(Path(env[LOG_ENV])) if e["event"] == "forbidden"]
    assert r.returncode == 0, f"{args[0]} failed:\n{r.stdout}\n{r.stderr}"
    return r


def patched_by(log: list[dict], process: str) -> set[str]:
    """The guarded modules a kind of process ('driver', 'ray worker') imported, each patched on import."""
    return {e["module"] for e in log if e["event"] == "patched" and e["process"] == process}


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory):
    d = tmp_path_factory.mktemp("rehearsal")
    env = {**os.environ, "FAIRSEQ2_USER_ASSET_DIR": str(d / "assets/sonar/cards"), "SLT_PIPE_CACHE": str(d / "cache"),
           "HF_HUB_OFFLINE": "1"}
    # make-toy trains the tiny text models it exports: the plain CLI (tiny code is its job here)
    make = [PY, "-m", "pipeline.cli"]
    run(["make-toy", "--out", str(d / "data"), "--videos", "24", "--assets", str(d / "assets"),
         "--set", "embed.tiny_sonar_steps=60", "--set", "embed.tiny_nllb_steps=20"], env, d, cmd=make)
    conf = ["--config", str(d / "assets/rehearsal.toml")]
    out = {"dir": d, "env": env, "conf": conf}
    out["extract"] = run(["extract", *conf], env, d)
    # --workers 1: NLLB and SONAR run in a Ray text worker, under the guard too
    embed = ["embed-targets", *conf, "--langs", "deu,eng,fra", "--set", "embed.references=false", "--workers", "1"]
    # The toy's 20-step NLLB writes empty strings: the quality gates refuse them on the paper
    # path too (exit 1, only the reference language published) ...
    refused = subprocess.run(SLT + embed, capture_output=True, text=True, timeout=TIMEOUT, cwd=d,
                             env={**env, LOG_ENV: str(d / "guard_refused.jsonl")})
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "fail the quality gates" in refused.stderr and "FORBIDDEN" not in refused.stdout + refused.stderr
    assert not [e for e in guard_log(d / "guard_refused.jsonl") if e["event"] == "forbidden"]
    assert len(list((d / "cache/targets").glob("*/targets.h5"))) == 1
    out["refused"] = refused
    # ... and this test, which exercises the NLLB code path, publishes them on purpose.
    out["embed"] = run([*embed, "--allow-poor-translations"], env, d)
    train = ["--set", "train.steps=12", "--set", "train.eval_every=6", "--set", "train.save_every=6",
             "--set", "embed.references=false"]
    out["train"] = run(["train", *conf, "--out", str(d / "run"), *train], env, d)
    # eng targets are machine translations here (references=false): scored only when asked, and labelled
    out["evaluate"] = run(["evaluate", "--run", str(d / "run"), "--split", "test", "--langs", "deu,eng",
                           "--machine-references"], env, d)
    return out


def test_extract_runs_the_spamo_recipe_from_the_snapshots(rehearsal):
    manifests = [json.loads(p.read_text()) for p in (rehearsal["dir"] / "cache/features").glob("*/manifest.json")]
    assert len(manifests) == 3 and all(m["complete"] for m in manifests)
    models = manifests[0]["inputs"]["models"]
    spatial, motion = models["streams"]
    assert spatial["library"] == "transformers.CLIPVisionModel" and spatial["format"] == "transformers"
    assert spatial["ignored_by_name"]["text tower"] > 0  # a full CLIPModel snapshot, text tower dropped
    assert motion["ignored_by_name"]["pre-training decoder"] > 0
    assert "s2" in models["recipe"] and models["recipe"]["squash"].startswith("256x256")
    # the features were computed in Ray model workers, which held the guard (tiny encoders patched on import)
    log = guard_log(rehearsal["dir"] / "guard_extract.jsonl")
    assert "extract.vision.encoders.tiny" in patched_by(log, "ray worker"), log


def test_a_ray_worker_that_builds_a_tiny_model_fails_extract(rehearsal):
    """The guard's own check: a deliberate fault makes each Ray model worker call the tiny ViT
    builder after building the paper extractor; the run must fail, with the worker's FORBIDDEN."""
    d = rehearsal["dir"]
    env = {**rehearsal["env"], "SLT_PIPE_CACHE": str(d / "cache-fault"), FAULT_ENV: "worker-builds-tiny-vit",
           LOG_ENV: str(d / "guard_fault.jsonl")}
    r = subprocess.run(SLT + ["extract", *rehearsal["conf"]], capture_output=True, text=True, timeout=TIMEOUT,
                       env=env, cwd=d)
    out = r.stdout + r.stderr
    print(next((line for line in out.splitlines() if "FORBIDDEN" in line), "no FORBIDDEN line"))
    assert r.returncode != 0, out
    assert "FORBIDDEN: the paper profile reached tiny-profile code extract.vision.encoders.tiny.tiny_vit (in the ray worker" in out, out
    forbidden = [e for e in guard_log(d / "guard_fault.jsonl") if e["event"] == "forbidden"]
    assert forbidden and {e["process"] for e in forbidden} == {"ray worker"}, forbidden
    assert {e["entry"] for e in forbidden} == {"extract.vision.encoders.tiny.tiny_vit"}


def test_embed_targets_translates_with_nllb_and_embeds_with_the_card(rehearsal):
    entries = list((rehearsal["dir"] / "cache/targets").glob("*/targets.h5"))
    assert len(entries) == 3
    sources = {}
    for path in entries:
        with h5py.File(path, "r") as f:
            lang = f.attrs["lang"]
            sources[lang] = {s.decode() for s in f[f"test/{lang}/source"][:]}
            assert "slt_rehearsal_sonar_encoder" in f.attrs["encoder"]
    assert sources["deu_Latn"] == {"reference"}
    log = guard_log(rehearsal["dir"] / "guard_embed-targets.jsonl")
    assert {"extract.text.nllb", "cache.sonar_models"} & patched_by(log, "ray worker"), log
    assert all(s != {"reference"} and "nllb" in next(iter(s)) for lang, s in sources.items() if lang != "deu_Latn")


def test_train_and_evaluate_through_the_paper_profile(rehearsal):
    run_dir = rehearsal["dir"] / "run"
    assert (run_dir / "ckpt/last/weights.safetensors").is_file()
    scores = json.loads((run_dir / "scores_test.json").read_text())
    assert {"deu_Latn", "eng_Latn"} <= set(scores)
    assert scores["deu_Latn"]["references"] == "reference" and scores["eng_Latn"]["references"].startswith("machine (")
    cfg = json.loads((run_dir / "pipeline.json").read_text())
    assert cfg["profile"] == "paper" and cfg["train"]["visual_block"] == "spamo"


def test_translate_a_frame_folder_through_the_paper_profile(rehearsal):
    folder = next((rehearsal["dir"] / "data/PHOENIX-2014-T-release-v3/PHOENIX-2014-T/features/fullFrame-210x260px/test").iterdir())
    r = run(["translate", "--run", str(rehearsal["dir"] / "run"), "--video", str(folder), "--lang", "eng"],
            rehearsal["env"], rehearsal["dir"])
    # the same text evaluate decoded for that test video from the cached features
    _, rows = read_predictions(rehearsal["dir"] / "run/predictions_test_eng_Latn.tsv")
    [row] = [row for row in rows if row["id"] == folder.name]
    assert r.stdout.rstrip("\n") == row["hyp"], (r.stdout, row)

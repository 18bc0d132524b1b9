"""End to end on real caches: extract -> embed-targets -> train -> evaluate -> translate, and ablate.

One small toy corpus and one cache are built once for the module (Ray extraction, tiny
SONAR trained on the toy sentences); every test then reads them, as a user's second run
would. Training runs are a few steps: these tests check wiring and cache reuse, not
learning (that is `slt-pipe demo --control`, reported in the README).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from rich.console import Console

from cache.errors import CacheError, SltPipeError
from pipeline.config import build_config

VIDEOS = 30
QUIET = Console(stderr=True, quiet=True)


def make_cfg(cache: Path, root: Path, out: Path | None = None, **train: object):
    layer = {
        "profile": "tiny",
        "dataset": {"name": "toy", "root": str(root)},
        "cache": {"dir": str(cache)},
        "embed": {"langs": ["deu_Latn", "eng_Latn", "fra_Latn"]},
        "train": {"steps": 6, "batch_size": 8, "eval_every": 0, "save_every": 3, "hidden_dim": 32,
                  "beam_size": 1, "max_len": 24, "loader_workers": 1, "device": "cpu", **train},
    }
    if out is not None:
        layer["train"]["out"] = str(out)
    return build_config(layer, TINY_SETTINGS)


TINY_SETTINGS: dict = {"embed": {"tiny_sonar_steps": 150}}
"""Keeps the module's one tiny-SONAR training short; quality is tested in test_embed*."""


@pytest.fixture(scope="module")
def toy_root(tmp_path_factory) -> Path:
    from extract.datasets.toy import make_toy

    root = tmp_path_factory.mktemp("toy")
    make_toy(root, videos=VIDEOS, seed=0)
    return root


@pytest.fixture(scope="module")
def cached(tmp_path_factory, toy_root):
    """(cache dir, toy root) with features and targets built once."""
    from pipeline import embed_stage, extract_stage

    cache = tmp_path_factory.mktemp("cache")
    cfg = make_cfg(cache, toy_root)
    assert not extract_stage.extract(cfg, QUIET).failures
    embed_stage.embed_targets(cfg, QUIET)
    return cache, toy_root


def test_train_without_caches_names_the_command(tmp_path, toy_root):
    from pipeline import train_stage

    cfg = make_cfg(tmp_path / "empty-cache", toy_root, tmp_path / "run")
    with pytest.raises(CacheError) as e:
        train_stage.train(cfg, console=QUIET)
    assert "slt-pipe extract" in str(e.value)
    assert not (tmp_path / "run" / "ckpt").exists()


def test_train_evaluate_translate_on_real_caches(cached, tmp_path, monkeypatch):
    from pipeline import train_stage
    from train.trainer import TrainInputs

    cache, root = cached

    def boom(*a, **k):
        raise AssertionError("train must only read caches")

    import cache.sonar_models as sm
    import extract.models as em

    monkeypatch.setattr(sm, "load_sonar_encoder", boom)
    monkeypatch.setattr(em, "FeatureExtractor", boom)
    cfg = make_cfg(cache, root, tmp_path / "run", normalize_features=True)
    result = train_stage.train(cfg, console=QUIET)
    assert result.step == 6
    run = tmp_path / "run"
    from safetensors.torch import load_file

    weights = load_file(str(run / "ckpt/last/weights.safetensors"))
    assert not torch.allclose(weights["visual.spatial_std"], torch.ones_like(weights["visual.spatial_std"]))
    inputs = TrainInputs.from_json(json.loads((run / "inputs.json").read_text()))
    assert set(inputs.features) == {"train", "dev", "test"}
    assert all(Path(p).is_relative_to(cache) for p in [*inputs.features.values(), *inputs.targets.values()])
    assert inputs.tiny_dir is not None and Path(inputs.tiny_dir).is_relative_to(cache)

    scores = train_stage.evaluate(run, split="test", langs="deu,fra", console=QUIET, checkpoint="last")
    assert set(scores) == {"deu_Latn", "fra_Latn"}
    for lang, s in scores.items():
        assert 0.0 <= s["bleu"] <= 100.0 and -1.0 <= s["cosine"] <= 1.0
        lines = Path(s["tsv"]).read_text().splitlines()
        assert lines[0] == "id\tref\thyp" and len(lines) == 1 + s["n"]
    with pytest.raises(SltPipeError, match="spa_Latn"):
        train_stage.evaluate(run, split="test", langs="spa", console=QUIET)

    monkeypatch.undo()  # translate computes features on the fly: it may build the extractor
    from extract.datasets import open_dataset

    sample = open_dataset("toy", root, ["test"]).samples["test"][0]
    text = train_stage.translate_video(run, sample.frames.dir, "eng")
    assert isinstance(text, str)


def test_resume_through_the_stage(cached, tmp_path):
    from pipeline import train_stage

    cache, root = cached
    full = train_stage.train(make_cfg(cache, root, tmp_path / "full"), console=QUIET)
    train_stage.train(make_cfg(cache, root, tmp_path / "part", stop_at=3), console=QUIET)
    rest = train_stage.train(make_cfg(cache, root, tmp_path / "part"), resume=True, console=QUIET)
    assert rest.losses[0][0] == 4 and rest.step == 6
    assert dict(rest.losses) == pytest.approx({s: l for s, l in full.losses if s > 3}, rel=1e-5)


def test_a_run_directory_holds_one_run(cached, tmp_path):
    """train --out into an existing run: refused, unless --resume or --overwrite (which clears it first)."""
    from pipeline import train_stage

    cache, root = cached
    run = tmp_path / "run"
    train_stage.train(make_cfg(cache, root, run, steps=2), console=QUIET)
    (run / "predictions_test_deu_Latn.tsv").write_text("id\tref\thyp\n")  # as evaluate leaves them
    events = sorted((run / "tb").iterdir())
    with pytest.raises(SltPipeError, match="already holds a slt-pipe run") as e:
        train_stage.train(make_cfg(cache, root, run, steps=2), console=QUIET)
    assert "--resume" in e.value.fix and "--overwrite" in e.value.fix
    train_stage.train(make_cfg(cache, root, run, steps=2), overwrite=True, console=QUIET)
    assert not (run / "predictions_test_deu_Latn.tsv").exists()
    assert not set(events) & set((run / "tb").iterdir())  # only the new run's TensorBoard events
    stranger = tmp_path / "notes"
    stranger.mkdir()
    (stranger / "thesis.tex").write_text("x")
    with pytest.raises(SltPipeError, match="not a slt-pipe run"):
        train_stage.train(make_cfg(cache, root, stranger, steps=2), overwrite=True, console=QUIET)
    assert (stranger / "thesis.tex").exists()


def test_warmup_longer_than_the_run_is_clipped_and_said(cached, tmp_path):
    from rich.console import Console

    from pipeline import train_stage

    cache, root = cached
    console = Console(record=True, width=200)
    cfg = make_cfg(cache, root, tmp_path / "run", steps=3, warmup_steps=100)
    train_stage.train(cfg, console=console)
    assert "warmup_steps = 100 is longer than the run (3 steps); clipped to 3" in console.export_text()
    recorded = json.loads((tmp_path / "run/pipeline.json").read_text())
    assert recorded["train"]["warmup_steps"] == 3


def test_ablation_reads_shared_caches_and_recomputes_nothing(cached, tmp_path):
    from extract import embed_targets as et
    from pipeline import ablate_stage

    cache, root = cached
    grid = tmp_path / "grid.toml"
    grid.write_text('[variants]\nfull = []\nno-cos = ["train.w_cos=0"]\n"langs=deu" = ["embed.langs=deu"]\n')
    before = ablate_stage.cache_listing(cache)
    calls = dict(et.CALLS)
    rows = ablate_stage.run_ablation(make_cfg(cache, root), grid, tmp_path / "abl", QUIET, parallel=2)
    assert [r["variant"] for r in rows] == ["full", "no-cos", "langs=deu"]
    assert set(rows[2]["scores"]) == {"deu_Latn"} and set(rows[0]["scores"]) == {"deu_Latn", "eng_Latn", "fra_Latn"}
    assert ablate_stage.cache_listing(cache) == before  # no entry created or rebuilt
    assert et.CALLS == calls  # no translation or embedding in the preparation either
    log = json.loads((tmp_path / "abl" / "ablation_log.json").read_text())
    assert log["cache_entries_created_during_trials"] == []
    csv_rows = (tmp_path / "abl" / "results.csv").read_text().splitlines()
    assert csv_rows[0].startswith("variant,lang,bleu") and len(csv_rows) == 1 + 3 + 3 + 1
    assert (tmp_path / "abl" / "results.png").stat().st_size > 0
    assert "| no-cos |" in (tmp_path / "abl" / "results.md").read_text()

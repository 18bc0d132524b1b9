"""Training rehearsal on the paper path, on CPU in CI.

What is real: the paper preset (SpaMo's block with the paper feature widths 2048 / 1024 and
inter_hidden 768, SpaMo's schedule, beam 5, lower-cased PHOENIX-2014T BLEU) and a SONAR
text decoder in the format users hold, reached through a fairseq2 asset card in
FAIRSEQ2_USER_ASSET_DIR (`extract.text.assets.export_sonar_assets`) and loaded by
`cache.sonar_models` like `text_sonar_basic_decoder`. What is small: the decoder is the tiny
SONAR architecture with random weights (no training: the rehearsal checks the path, not
quality), and the features/targets are in-memory stand-ins of the cache readers.

It trains a few steps, checkpoints, resumes to the same losses as an uninterrupted run, and
evaluates the run.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from cache.fairseq2_env import ensure_fairseq2

ensure_fairseq2()

from stand_ins import ToyFeatureReader, ToyTargetReader  # noqa: E402

from helpers import user_asset_dir  # noqa: E402
from train import data as tdata  # noqa: E402
from train.config import TrainConfig, train_preset  # noqa: E402
from train.model import TrainInputs  # noqa: E402
from train.trainer import train  # noqa: E402

LANGS = ["deu_Latn", "eng_Latn"]
SPATIAL, MOTION = 2048, 1024  # the paper profile's feature widths (CLIP S2, VideoMAE-L)


@pytest.fixture(autouse=True, scope="module")
def _threads():
    n = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def sonar_card(tmp_path_factory):
    """(decoder card name, sentences per language, SONAR dim) with the card visible to fairseq2."""
    from extract.text.assets import DECODER_CARD, export_sonar_assets
    from extract.text.tiny_sonar import toy_parallel_corpus, train_tiny_sonar

    corpus = {k: v[:80] for k, v in toy_parallel_corpus(seed=0).items()}
    tiny = tmp_path_factory.mktemp("tiny_sonar")
    train_tiny_sonar(corpus, tiny, seed=0, steps=0)  # random init, written in the tiny entry's format
    cards = export_sonar_assets(tiny, tmp_path_factory.mktemp("assets") / "sonar")
    dim = json.loads((tiny / "config.json").read_text())["embedding_dim"]
    with user_asset_dir(cards):
        yield DECODER_CARD, corpus, dim


@pytest.fixture
def paper_inputs(sonar_card, monkeypatch):
    card, corpus, dim = sonar_card
    from cache.sonar_models import load_sonar_tokenizer

    rng = np.random.default_rng(0)
    feats, tsplits = {}, {lang: {} for lang in LANGS}
    for split, n, offset in (("train", 12, 0), ("dev", 4, 40)):
        items, ids, embs = {}, [], []
        for i in range(n):
            t = int(rng.integers(8, 70)) if i else 9  # the first video is shorter than the block's 16 steps
            c = max(1, (t - 16) // 8 + 1)
            vid = f"{split}_{i:02d}"
            items[vid] = (rng.normal(size=(t, SPATIAL)).astype(np.float16), rng.normal(size=(c, MOTION)).astype(np.float16))
            ids.append(vid)
            embs.append((rng.normal(size=dim) * 0.01).astype(np.float32))
        feats[split] = ToyFeatureReader(items)
        for lang in LANGS:
            texts = [corpus[lang][offset + i] for i in range(n)]
            tsplits[lang][split] = (ids, texts, np.stack(embs))
    targets = {lang: ToyTargetReader(lang, tsplits[lang]) for lang in LANGS}
    monkeypatch.setattr(tdata, "open_features", lambda p: feats[Path(p).name])
    monkeypatch.setattr(tdata, "open_targets", lambda p: targets[Path(p).name])
    load_sonar_tokenizer(card)  # the card resolves (fails here, clearly, if the export is broken)
    return TrainInputs(features={s: Path(f"/nonexistent/{s}") for s in ("train", "dev")},
                       targets={lang: Path(f"/nonexistent/{lang}") for lang in LANGS}, source_lang="deu_Latn",
                       decoder_spec=card, tiny_dir=None, dataset="phoenix")


def paper_cfg(out: Path, **kw) -> TrainConfig:
    """The paper preset; only the budget is a rehearsal's (steps, batch of 4 on CPU, checkpoints every 3)."""
    cfg = TrainConfig(**train_preset("paper-spamo"))
    return dataclasses.replace(cfg, out=out, steps=6, batch_size=4, eval_every=0, save_every=3, log_every=1,
                               loader_workers=1, device="cpu", **kw)


def test_paper_path_rehearsal_trains_resumes_and_evaluates(paper_inputs, tmp_path):
    from safetensors import safe_open

    from pipeline.train_stage import bleu_case
    from train.evaluate import evaluate

    cfg = paper_cfg(tmp_path / "full")
    assert (cfg.visual_block, cfg.hidden_dim, cfg.beam_size, cfg.max_frames, cfg.p_video_aug) == ("spamo", 768, 5, 512, 1.0)
    full = train(cfg, paper_inputs, resume=False)
    assert full.step == 6 and all(np.isfinite(v) for _, v in full.losses)
    part = train(paper_cfg(tmp_path / "part", stop_at=3), paper_inputs, resume=False)
    assert part.stopped == "stop_at" and part.step == 3
    rest = train(paper_cfg(tmp_path / "part"), paper_inputs, resume=True)
    assert [s for s, _ in rest.losses] == [4, 5, 6]
    expected = dict(full.losses)
    for step, loss in part.losses + rest.losses:
        assert loss == pytest.approx(expected[step], rel=1e-5, abs=1e-7), step

    # the checkpoint is SpaMo-shaped and records the block and its features
    with safe_open(str(tmp_path / "part/ckpt/last/weights.safetensors"), framework="pt") as f:
        keys, meta = set(f.keys()), f.metadata()
        assert f.get_tensor("visual.spatio_proj.weight").shape == (768, SPATIAL)
    assert "visual.temporal_encoder.temporal_conv.4.weight" in keys and any(k.startswith("lora.") for k in keys)
    spec = json.loads(meta["block"])
    assert spec["visual_block"] == "spamo" and spec["pooling"] == "mean"
    assert json.loads(meta["features"]) == {"spatial_dim": SPATIAL, "motion_dim": MOTION}

    # evaluation: beam 5 through the card's decoder, PHOENIX-2014T BLEU lower-cased, both numbers kept
    scores = evaluate(tmp_path / "part", paper_inputs, "dev", LANGS, case=bleu_case("auto", paper_inputs.dataset))
    for lang in LANGS:
        s = scores[lang]
        assert s["n"] == 4 and s["case"] == "lc" and "case:lc" in s["signature"]
        assert {"bleu_lc", "bleu_cased"} <= set(s) and "case:mixed" in s["signature_cased"]
    rows = (tmp_path / "part" / "predictions_dev_eng_Latn.tsv").read_text().splitlines()
    assert rows[0] == "id\tref\thyp\tsent_bleu\tz_cos" and len(rows) == 5

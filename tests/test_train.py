"""Trainer tests on tiny synthetic caches (stand-in readers) and a toy SONAR decoder."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cache.fairseq2_env import ensure_fairseq2

ensure_fairseq2()

from train import data as tdata  # noqa: E402
from train import decoder as tdecoder  # noqa: E402
from train.augment import VideoAugmenter, frame_dropout, frame_mask, gaussian_noise, local_shuffle, sample_languages  # noqa: E402
from train.config import TrainConfig  # noqa: E402
from train.decoder import LoraDecoder  # noqa: E402
from train.fusion import VisualBlock  # noqa: E402
from train.losses import alignment_loss  # noqa: E402
from train.toy import make_decoder, make_tokenizer, make_toy_corpus  # noqa: E402
from train.trainer import TrainInputs, train  # noqa: E402

LANGS = ["deu_Latn", "eng_Latn"]
EMB = 16


# ---------------------------------------------------------------------------- fixtures
@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: intra-op threads only add contention (seconds per step on a busy 2-core box)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    feats, targets, sents = make_toy_corpus({"train": 24, "dev": 6}, LANGS, emb_dim=EMB)
    tok = make_tokenizer(sents, LANGS, tmp_path_factory.mktemp("tok"))
    return feats, targets, tok


@pytest.fixture
def patched(toy, monkeypatch):
    """Route the trainer's cache/model loaders to the in-memory stand-ins."""
    feats, targets, tok = toy
    monkeypatch.setattr(tdata, "open_features", lambda p: feats[Path(p).name])
    monkeypatch.setattr(tdata, "open_targets", lambda p: targets[Path(p).name])
    monkeypatch.setattr(tdecoder, "load_tokenizer", lambda spec, tiny: tok)
    monkeypatch.setattr(tdecoder, "load_base_decoder",
                        lambda spec, tiny, device, dtype: make_decoder(tok.vocab_info, input_dim=EMB).to(device, dtype))
    return TrainInputs(features={s: Path(f"/nonexistent/{s}") for s in ("train", "dev")},
                       targets={lang: Path(f"/nonexistent/{lang}") for lang in LANGS}, source_lang="deu_Latn",
                       decoder_spec="toy")


def small_cfg(out: Path, **kw) -> TrainConfig:
    base = dict(out=out, steps=30, batch_size=8, lr=3e-3, lora_lr=1e-3, warmup_steps=3, hidden_dim=32,
                lora_rank=4, lora_alpha=8, eval_every=15, beam_size=2, max_len=8, loader_workers=2,
                device="cpu", save_every=10, log_every=1, w_mse=7000.0, w_cos=2.7)
    base.update(kw)
    return TrainConfig(**base)


# ---------------------------------------------------------------------------- fusion
def test_fusion_shapes_and_padding_invariance():
    torch.manual_seed(0)
    vb = VisualBlock(12, 8, hidden=16, out_dim=EMB).eval()
    sp, mo = torch.randn(1, 11, 12), torch.randn(1, 2, 8)
    z_alone = vb(sp, None, mo, None)
    assert z_alone.shape == (1, EMB)
    # same sample padded inside a batch next to a longer one: same z
    sp2 = torch.cat([torch.cat([sp, torch.randn(1, 9, 12) * 50], 1), torch.randn(1, 20, 12)])
    mo2 = torch.cat([torch.cat([mo, torch.randn(1, 1, 8) * 50], 1), torch.randn(1, 3, 8)])
    smask = torch.tensor([[True] * 11 + [False] * 9, [True] * 20])
    mmask = torch.tensor([[True, True, False], [True] * 3])
    z = vb(sp2, smask, mo2, mmask)
    assert z.shape == (2, EMB)
    torch.testing.assert_close(z[0], z_alone[0], atol=1e-5, rtol=1e-4)
    # train mode: masked BatchNorm stats ignore padding; gradients flow; 1-frame videos survive
    vb.train()
    z = vb(torch.randn(3, 5, 12), torch.tensor([[1, 0, 0, 0, 0], [1] * 5, [1, 1, 0, 0, 0]]).bool(),
           torch.randn(3, 1, 8), None)
    z.sum().backward()
    assert torch.isfinite(z).all() and vb.spatial_proj.weight.grad is not None


def test_fusion_checkpoint_roundtrip(tmp_path):
    from safetensors.torch import save_file

    a, b = VisualBlock(12, 8, 16, EMB), VisualBlock(12, 8, 16, EMB)
    save_file({f"visual.{k}": v.contiguous() for k, v in a.state_dict().items()}, str(tmp_path / "v.safetensors"))
    b.load_checkpoint(tmp_path / "v.safetensors")
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k])


# ---------------------------------------------------------------------------- losses
def test_alignment_loss_matches_hand_computation_and_zero_weight_drops_term():
    z = torch.tensor([[1.0, 2.0], [0.0, 1.0]])
    s = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    mse = ((0 + 4) + (0 + 1)) / 4
    cos = ((1 / (5 ** 0.5)) + 1.0) / 2
    loss, parts = alignment_loss(z, s, 7000.0, 2.7)
    assert loss.item() == pytest.approx(7000 * mse + 2.7 * (1 - cos), rel=1e-6)
    loss, parts = alignment_loss(z, s, 0.0, 2.7)
    assert loss.item() == pytest.approx(2.7 * (1 - cos), rel=1e-6) and "mse" not in parts
    loss, parts = alignment_loss(z, s, 7000.0, 0.0)
    assert loss.item() == pytest.approx(7000 * mse, rel=1e-6) and "cos" not in parts


# ---------------------------------------------------------------------------- augmentation
def _batch():
    torch.manual_seed(1)
    x = torch.randn(4, 10, 3)
    mask = torch.tensor([[1] * 10, [1] * 6 + [0] * 4, [1] * 1 + [0] * 9, [1] * 3 + [0] * 7]).bool()
    return x * mask[..., None], mask


def test_augmentations_seeded_and_mask_correct():
    x, mask = _batch()
    for fn, arg in [(frame_mask, 0.5), (frame_dropout, 0.5), (gaussian_noise, 0.1), (local_shuffle, 3)]:
        a = fn(x, mask, arg, torch.Generator().manual_seed(3))
        b = fn(x, mask, arg, torch.Generator().manual_seed(3))
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]), fn.__name__
        y, m = a
        assert y.shape[0] == 4 and y.shape[2] == 3 and m.shape == y.shape[:2]
        assert (y[~m] == 0).all(), f"{fn.__name__} leaked into padding"
        assert (m.sum(1) >= 1).all()
        if fn is not frame_dropout:
            assert torch.equal(m, mask)
        else:
            assert (m.sum(1) <= mask.sum(1)).all() and m.sum() < mask.sum()
            # survivors keep their order and come from the sample
            row = y[0][m[0]]
            src = [int(torch.nonzero((x[0] == r).all(1))[0]) for r in row]
            assert src == sorted(src)
    # shuffle moves frames at most `window` places and keeps the multiset
    y, _ = local_shuffle(x, mask, 2, torch.Generator().manual_seed(0))
    for i in range(10):
        j = int(torch.nonzero((x[0] == y[0, i]).all(1))[0])
        assert abs(i - j) <= 2
    # apply=False rows untouched
    apply = torch.tensor([False, True, False, True])
    y, m = frame_mask(x, mask, 0.9, torch.Generator().manual_seed(0), apply)
    assert torch.equal(y[0], x[0]) and torch.equal(y[2], x[2])
    # the augmenter composes them deterministically
    aug = VideoAugmenter(p_video=1.0)
    out1 = aug([(x, mask), (x[:, :4], mask[:, :4])], torch.Generator().manual_seed(9))
    out2 = aug([(x, mask), (x[:, :4], mask[:, :4])], torch.Generator().manual_seed(9))
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(out1, out2))


def test_sample_languages_only_available():
    avail = torch.tensor([[1, 0, 0], [1, 1, 1], [0, 0, 1], [0, 0, 0]]).bool()
    picks = torch.stack([sample_languages(avail, torch.Generator().manual_seed(s)) for s in range(50)])
    assert (picks[:, 0] == 0).all() and (picks[:, 2] == 2).all() and (picks[:, 3] == -1).all()
    assert set(picks[:, 1].tolist()) == {0, 1, 2}


# ---------------------------------------------------------------------------- LoRA decoder
def test_lora_only_adapters_trainable_and_identity_at_init(toy):
    _, _, tok = toy
    base = make_decoder(tok.vocab_info, input_dim=EMB, seed=1).eval()
    ref = make_decoder(tok.vocab_info, input_dim=EMB, seed=1).eval()
    dec = LoraDecoder(base, tok, targets=["q_proj", "v_proj"], rank=4, alpha=8, dropout=0.1).eval()
    trainable = [n for n, p in dec.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    # both self- and cross-attention q/v got adapters
    assert any("encoder_decoder_attn.v_proj.lora_A" in n for n in trainable)
    assert any("self_attn.q_proj.lora_B" in n for n in trainable)
    cond = torch.randn(2, EMB)
    toks = dec.pad(dec.encode_targets(["dehund dekatze", "enregen"], "deu_Latn"))
    assert toks[0, 0].item() == tok.vocab_info.eos_idx  # `</s> __lang__ ...`
    from fairseq2.nn import BatchLayout

    inp = toks[:, :-1]
    lens = ((toks != dec.pad_idx).sum(1) - 1).tolist()
    with torch.no_grad():
        h = ref.decode(inp, BatchLayout(tuple(inp.shape), lens), cond[:, None], BatchLayout.of(cond[:, None]))
        expected = ref.project(h)
        got = dec.logits(cond, toks)
    torch.testing.assert_close(got, expected)
    # the visual block + LoRA are the optimiser's parameters; the CE reaches LoRA B
    dec.train()
    dec.ce_loss(cond, toks).backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for n, p in dec.named_parameters() if "lora_A" in n or "lora_B" in n)
    assert all(p.grad is None for n, p in dec.named_parameters() if "lora_" not in n)
    hyps = dec.generate(cond, "eng_Latn", beam_size=2, max_len=6)
    assert len(hyps) == 2 and all(isinstance(h, str) for h in hyps)


# ---------------------------------------------------------------------------- data
def test_dataset_shuffle_targets_and_loader_determinism(toy):
    feats, targets, tok = toy
    ds = tdata.CacheDataset(feats["train"], targets, "train", "deu_Latn")
    sh = tdata.CacheDataset(feats["train"], targets, "train", "deu_Latn", shuffle_targets=True, seed=0)
    assert ds.langs == LANGS
    moved = [i for i in range(len(ds)) if sh[i]["targets"]["deu_Latn"][2] is not None
             and not np.array_equal(sh[i]["targets"]["deu_Latn"][0], ds[i]["targets"]["deu_Latn"][0])]
    assert len(moved) >= len(ds) - 1
    a = tdata.BatchLoader(ds, 5, pad_idx=0, seed=3, workers=2)
    b = tdata.BatchLoader(ds, 5, pad_idx=0, seed=3, workers=0)
    for (sa, ba), (sb, bb) in zip(a.iterate(2, 9), b.iterate(2, 9)):
        assert sa == sb and ba.ids == bb.ids and torch.equal(ba.spatial, bb.spatial)
        assert ba.spatial_mask.sum(1).tolist() == [feats["train"].get(i)[0].shape[0] for i in ba.ids]


# ---------------------------------------------------------------------------- training
def _train_losses(path: Path) -> dict[int, float]:
    rows = [json.loads(x) for x in path.read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows if r["kind"] == "train"}


def test_training_learns_and_writes_run_dir(patched, tmp_path):
    res = train(small_cfg(tmp_path / "run"), patched, resume=False)
    assert res.step == 30 and res.stopped == "done"
    first = np.mean([v for _, v in res.losses[:5]])
    last = np.mean([v for _, v in res.losses[-5:]])
    assert last < 0.7 * first, (first, last)
    run = tmp_path / "run"
    for f in ["metrics.jsonl", "curves.png", "config.json", "inputs.json", "ckpt/last/weights.safetensors",
              "ckpt/last/state.pt", "ckpt/best/weights.safetensors", "ckpt/best/best.json"]:
        assert (run / f).exists(), f
    assert any((run / "tb").iterdir())
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r["kind"] == "eval"] == [15, 30]
    from safetensors.torch import load_file

    keys = load_file(str(run / "ckpt/last/weights.safetensors")).keys()
    assert all(k.startswith("visual.") or ("lora_" in k and k.startswith("lora.")) for k in keys)

    from train.evaluate import evaluate

    scores = evaluate(run, patched, "dev", ["deu_Latn", "eng_Latn"], beam_size=2)
    assert set(scores) == {"deu_Latn", "eng_Latn"} and "BLEU" in scores["deu_Latn"]["signature"]
    tsv = (run / "predictions_dev_eng_Latn.tsv").read_text().splitlines()
    assert tsv[0] == "id\tref\thyp" and len(tsv) == 7


def test_resume_continues_at_same_step_with_same_loss(patched, tmp_path):
    cfg = dict(steps=12, eval_every=0, save_every=6, loader_workers=1)
    full = train(small_cfg(tmp_path / "full", **cfg), patched, resume=False)
    part = train(small_cfg(tmp_path / "part", stop_at=6, **cfg), patched, resume=False)
    assert part.step == 6 and part.stopped == "stop_at"
    rest = train(small_cfg(tmp_path / "part", **cfg), patched, resume=True)
    assert rest.losses[0][0] == 7 and rest.step == 12
    full_l = dict(full.losses)
    for step, loss in rest.losses:
        assert loss == pytest.approx(full_l[step], rel=1e-5, abs=1e-7), step
    assert _train_losses(tmp_path / "part" / "metrics.jsonl") == pytest.approx(_train_losses(tmp_path / "full" / "metrics.jsonl"))


def test_training_builds_no_feature_extractor_or_sonar_encoder(patched, tmp_path, monkeypatch):
    def boom(*a, **k):
        raise AssertionError("training must not build feature extractors or the SONAR encoder")

    import importlib

    for mod, name in [("timm", "create_model"), ("sonar.models.sonar_text", "get_sonar_text_encoder_hub"),
                      ("cache.sonar_models", "load_sonar_encoder")]:
        try:
            monkeypatch.setattr(importlib.import_module(mod), name, boom, raising=False)
        except ImportError:
            pass
    try:
        import transformers

        for cls in ("VideoMAEModel", "CLIPVisionModel", "CLIPModel"):
            monkeypatch.setattr(getattr(transformers, cls), "from_pretrained", boom)
    except ImportError:
        pass
    from sonar.models.sonar_text.factory import SonarTextEncoderFactory

    monkeypatch.setattr(SonarTextEncoderFactory, "create_model", boom)
    res = train(small_cfg(tmp_path / "r", steps=3, eval_every=3), patched, resume=False)
    assert res.step == 3


def test_train_package_never_imports_pipeline_or_extract():
    code = ("import sys, train.trainer, train.evaluate, train.data, train.decoder, train.fusion, train.augment;"
            "bad=[m for m in sys.modules if m.split('.')[0] in ('pipeline','extract')];"
            "assert not bad, bad")
    r = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parents[1], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]


def test_input_stats_standardise_and_travel_in_the_checkpoint(tmp_path):
    torch.manual_seed(0)
    stats = {"spatial": {"mean": torch.randn(12), "std": torch.rand(12) + 0.5},
             "motion": {"mean": torch.randn(8), "std": torch.rand(8) + 0.5}}
    block = VisualBlock(12, 8, 32, EMB).eval()
    plain = VisualBlock(12, 8, 32, EMB).eval()
    plain.load_state_dict({k: v for k, v in block.state_dict().items()})
    block.set_input_stats(stats)
    sp, mo = torch.randn(2, 9, 12) * 3 + 1, torch.randn(2, 2, 8) * 3 - 1
    std = lambda x, s: (x - s["mean"]) / s["std"]  # noqa: E731
    assert torch.allclose(block(sp, None, mo, None), plain(std(sp, stats["spatial"]), None, std(mo, stats["motion"]), None), atol=1e-5)
    assert not torch.allclose(block(sp, None, mo, None), plain(sp, None, mo, None), atol=1e-3)
    from safetensors.torch import save_file

    save_file({f"visual.{k}": v.contiguous() for k, v in block.state_dict().items()}, str(tmp_path / "v.safetensors"))
    again = VisualBlock(12, 8, 32, EMB).eval()
    again.load_checkpoint(tmp_path / "v.safetensors")
    assert torch.equal(again.spatial_std, block.spatial_std)

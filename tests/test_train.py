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

from stand_ins import make_decoder, make_tokenizer, make_toy_corpus  # noqa: E402

from train import data as tdata  # noqa: E402
from train import decoder as tdecoder  # noqa: E402
from train.augment import VideoAugmenter, frame_dropout, frame_mask, gaussian_noise, local_shuffle, sample_languages  # noqa: E402
from train.config import TrainConfig  # noqa: E402
from train.decoder import LoraDecoder  # noqa: E402
from train.fusion import MaskedVisualBlock  # noqa: E402
from train.losses import alignment_loss  # noqa: E402
from train.model import TrainInputs  # noqa: E402
from train.trainer import train  # noqa: E402

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
def stand_ins(tmp_path_factory):
    feats, targets, sents = make_toy_corpus({"train": 24, "dev": 6}, LANGS, emb_dim=EMB)
    tok = make_tokenizer(sents, LANGS, tmp_path_factory.mktemp("tok"))
    return feats, targets, tok


@pytest.fixture
def patched(stand_ins, monkeypatch):
    """Route the trainer's cache/model loaders to the in-memory stand-ins."""
    feats, targets, tok = stand_ins
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
def test_masked_fusion_shapes_and_padding_invariance():
    torch.manual_seed(0)
    vb = MaskedVisualBlock(12, 8, hidden=16, out_dim=EMB).eval()
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
    # three videos of two dimensions: the cosine is per video (over the embedding), not per dimension
    z3, s3 = torch.tensor([[1.0, 2.0], [0.0, 1.0], [3.0, 0.0]]), torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    cos3 = (1 / 5 ** 0.5 + 1.0 + 3 / (3 * 2 ** 0.5)) / 3
    assert alignment_loss(z3, s3, 0.0, 1.0)[0].item() == pytest.approx(1 - cos3, rel=1e-6)


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
    # shuffle: a frame moves at most `window` places, and some do move exactly that far
    for window in (1, 2, 3):
        worst = 0
        for seed in range(40):
            y, _ = local_shuffle(x, mask, window, torch.Generator().manual_seed(seed))
            src = [int(torch.nonzero((x[0] == y[0, i]).all(1))[0]) for i in range(10)]
            assert sorted(src) == list(range(10))  # a permutation of the sample's own frames
            worst = max(worst, max(abs(i - j) for i, j in enumerate(src)))
        assert worst == window, (window, worst)
    # apply=False rows untouched
    apply = torch.tensor([False, True, False, True])
    y, m = frame_mask(x, mask, 0.9, torch.Generator().manual_seed(0), apply)
    assert torch.equal(y[0], x[0]) and torch.equal(y[2], x[2])
    # the gate: p_video=0 perturbs nothing, 1.0 (the paper profile's) perturbs every video
    untouched = VideoAugmenter(p_video=0.0)([(x, mask)], torch.Generator().manual_seed(9))
    assert torch.equal(untouched[0][0], x) and torch.equal(untouched[0][1], mask)
    every = VideoAugmenter(p_video=1.0, frame_dropout=0.0, noise_std=0.0, shuffle_window=0, frame_mask=0.5)
    y, _ = every([(x, mask)], torch.Generator().manual_seed(9))[0]
    assert all(((y[b] == 0).all(1) & mask[b]).any() for b in (0, 1, 3))  # every multi-frame video got masked frames
    assert VideoAugmenter.from_config(TrainConfig()).p_video == 1.0
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
def test_lora_only_adapters_trainable_and_identity_at_init(stand_ins):
    _, _, tok = stand_ins
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
    # generation: at init (identity adapters) greedy decoding is the plain decoder's, step by step by hand
    dec.eval()
    far = 5 * torch.randn(2, EMB, generator=torch.Generator().manual_seed(0))  # conditions with non-empty decodes
    hyps = dec.generate(far, "eng_Latn", beam_size=1, max_len=12)
    assert hyps == greedy_by_hand(ref, tok, dec.encode_targets(["x"], "eng_Latn")[0][:2].tolist(), far, 12)
    assert all(hyps) and hyps[0] != hyps[1]
    assert all(dec.generate(far, "eng_Latn", beam_size=2, max_len=6))


def greedy_by_hand(model, tok, prefix: list[int], cond: torch.Tensor, max_len: int) -> list[str]:
    """Greedy decoding of `model` from `prefix` (`</s> __lang__`): the most probable token (pad excluded)
    until `</s>` or max_len - 1 tokens (the last place is the forced `</s>`), special tokens dropped."""
    from fairseq2.nn import BatchLayout

    vi, decode = tok.vocab_info, tok.create_decoder(skip_special_tokens=True)
    out = []
    for c in cond[:, None, None]:
        seq = list(prefix)
        with torch.no_grad():
            for _ in range(max_len - 1):
                x = torch.tensor([seq])
                lp = torch.log_softmax(model.project(model.decode(x, BatchLayout(tuple(x.shape), [len(seq)]), c,
                                                                  BatchLayout.of(c)))[0, -1].float(), -1)
                lp[vi.pad_idx] = -float("inf")
                seq.append(int(lp.argmax()))
                if seq[-1] == vi.eos_idx:
                    break
        out.append(decode(torch.tensor([t for t in seq[len(prefix):] if t != vi.eos_idx], dtype=torch.int64)))
    return out


# ---------------------------------------------------------------------------- data
def test_dataset_shuffle_targets_and_loader_determinism(stand_ins):
    feats, targets, tok = stand_ins
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

    # the logged learning rate follows the schedule (warm-up from warmup_start_lr, cosine to min_lr)
    from train.optim import lr_at

    cfg = small_cfg(run)
    logged = {r["step"]: r["lr"] for r in rows if r["kind"] == "train"}
    for step, lr in logged.items():
        assert lr == pytest.approx(lr_at(step, peak=cfg.lr, start=cfg.warmup_start_lr, end=cfg.min_lr,
                                         warmup=cfg.warmup_steps, decay_end=cfg.steps)), step

    scores = evaluate(run, patched, "dev", ["deu_Latn", "eng_Latn"], beam_size=2)
    assert set(scores) == {"deu_Latn", "eng_Latn"} and "BLEU" in scores["deu_Latn"]["signature"]
    # no dataset recorded: scored as written; --case lc lower-cases both sides, and says so
    assert "case:mixed" in scores["deu_Latn"]["signature"]
    lc = evaluate(run, patched, "dev", ["deu_Latn"], beam_size=2, case="lc")
    saved = json.loads((run / "scores_dev.json").read_text())["deu_Latn"]
    assert "case:lc" in lc["deu_Latn"]["signature"] and {"bleu_lc", "bleu_cased", "signature_cased"} <= set(saved)
    tsv = (run / "predictions_dev_eng_Latn.tsv").read_text().splitlines()
    assert tsv[0] == "id\tref\thyp\tsent_bleu\tz_cos" and len(tsv) == 7  # no SONAR encoder recorded: no sonar_sim


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
    block = MaskedVisualBlock(12, 8, 32, EMB).eval()
    plain = MaskedVisualBlock(12, 8, 32, EMB).eval()
    plain.load_state_dict({k: v for k, v in block.state_dict().items()})
    block.set_input_stats(stats)
    sp, mo = torch.randn(2, 9, 12) * 3 + 1, torch.randn(2, 2, 8) * 3 - 1
    std = lambda x, s: (x - s["mean"]) / s["std"]  # noqa: E731
    assert torch.allclose(block(sp, None, mo, None), plain(std(sp, stats["spatial"]), None, std(mo, stats["motion"]), None), atol=1e-5)
    assert not torch.allclose(block(sp, None, mo, None), plain(sp, None, mo, None), atol=1e-3)
    from safetensors.torch import save_file

    from train.visual_init import load_initial_block

    save_file({f"visual.{k}": v.contiguous() for k, v in block.state_dict().items()}, str(tmp_path / "v.safetensors"))
    again = MaskedVisualBlock(12, 8, 32, EMB).eval()
    load_initial_block(again, tmp_path / "v.safetensors", recipe={"spatial_dim": 12, "motion_dim": 8}, check=True,
                       run_dir=tmp_path / "run")
    assert torch.equal(again.spatial_std, block.spatial_std)


# ---------------------------------------------------------------------------- paper recipe
def test_paper_preset_and_schedule_are_spamos():
    from pipeline.config import build_config, parse_override
    from train.optim import lr_at, make_schedule

    cfg = TrainConfig()
    assert (cfg.preset, cfg.visual_block, cfg.hidden_dim, cfg.batch_size, cfg.grad_clip, cfg.max_frames) ==\
        ("paper-spamo", "spamo", 768, 16, 1.0, 512)
    assert (cfg.lr, cfg.lora_peak_lr, cfg.warmup_start_lr, cfg.warmup_steps, cfg.min_lr, cfg.steps) ==\
        (1e-4, 1e-4, 1e-6, 1000, 1e-7, 50_000)
    assert (cfg.p_video_aug, cfg.p_aug_each, cfg.frame_mask, cfg.frame_dropout, cfg.beam_size) == (1.0, 1.0, 0.2, 0.2, 5)
    assert (cfg.w_mse, cfg.w_cos) == (7000.0, 2.7)  # SONAR-SLT's alignment loss: MSE x 7000 + cosine x 2.7
    kw = dict(peak=1e-4, start=1e-6, end=1e-7, warmup=1000, decay_end=50_000)
    assert lr_at(0, **kw) == pytest.approx(1e-6)
    assert lr_at(500, **kw) == pytest.approx(1e-6 + 0.5 * (1e-4 - 1e-6))
    assert lr_at(1000, **kw) == pytest.approx(1e-4)
    assert lr_at(25_500, **kw) == pytest.approx(1e-7 + 0.5 * (1e-4 - 1e-7))
    assert lr_at(50_000, **kw) == pytest.approx(1e-7) and lr_at(80_000, **kw) == pytest.approx(1e-7)
    # one rate for every trainable weight: both optimiser groups follow the same curve
    opt = torch.optim.AdamW([{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": cfg.lr},
                             {"params": [torch.nn.Parameter(torch.zeros(1))], "lr": cfg.lora_peak_lr}])
    sched = make_schedule(opt, cfg)
    for _ in range(1000):
        opt.step()
        sched.step()
    assert sched.get_last_lr() == pytest.approx([1e-4, 1e-4])
    # profiles pick presets; a later layer's preset replaces earlier values, its own fields still win
    paper, tiny = build_config({"profile": "paper"}).train, build_config({"profile": "tiny"}).train
    assert paper == TrainConfig()
    assert (tiny.preset, tiny.visual_block, tiny.hidden_dim, tiny.steps, tiny.beam_size, tiny.p_video_aug) ==\
        ("tiny", "slt-pipe-masked", 256, 1200, 2, 0.5)
    g = build_config({"profile": "paper"}, {"train": {"steps": 7}}, parse_override("train.preset=generic")).train
    assert (g.steps, g.batch_size, g.lora_lr) == (3000, 32, 1e-4)
    g = build_config({"profile": "paper"}, {"train": {"preset": "generic", "steps": 7}}).train
    assert (g.steps, g.batch_size) == (7, 32)
    from cache.errors import SltPipeError

    with pytest.raises(SltPipeError, match="paper-spamo"):
        build_config({"train": {"preset": "spamo"}})
    with pytest.raises(SltPipeError, match="train.init_visual_block"):  # the old name points at the new one
        build_config({"train": {"pretrained_visual": "runs/old"}})


def test_presets_listed_with_sources():
    from train.presets_table import presets_text, train_help

    text = presets_text()
    for name in ("paper-spamo", "generic", "tiny"):
        assert name in text
    row = next(line for line in text.splitlines() if line.startswith("batch_size "))
    assert row.split()[1:4] == ["16", "32", "32"] and "SpaMo" in row
    assert "train.lr = 0.0001   source: SpaMo" in train_help({}, "no project")  # values unknown: the paper's
    # ... and through the CLI
    from typer.testing import CliRunner

    from pipeline.cli import app

    listed = CliRunner().invoke(app, ["config", "show", "--presets"])
    assert listed.exit_code == 0 and "paper-spamo" in listed.output and "generic" in listed.output
    shown = CliRunner().invoke(app, ["config", "show", "--profile", "paper"])
    assert shown.exit_code == 0 and 'preset = "paper-spamo"' in shown.output
    helped = CliRunner().invoke(app, ["train", "--profile", "paper", "--help"], env={"COLUMNS": "200"})
    assert "--init-visual-block" in helped.output and "train.batch_size = 16" in helped.output
    # every field says where its value comes from
    from train.presets_table import field_docs

    docs = field_docs()
    assert all("Source:" in docs[f] for f in TrainConfig.__dataclass_fields__),\
        [f for f in TrainConfig.__dataclass_fields__ if "Source:" not in docs[f]]


def test_max_frames_crop_is_contiguous_spatial_only_and_seeded(stand_ins):
    feats, targets, _ = stand_ins
    ds = tdata.CacheDataset(feats["train"], targets, "train", "deu_Latn")
    loader = tdata.BatchLoader(ds, 6, pad_idx=0, seed=3, workers=0, max_frames=12)
    starts = set()
    for step in range(6):
        a, b = loader.make(step), loader.make(step)
        assert torch.equal(a.spatial, b.spatial)  # a function of (seed, step)
        for k, vid in enumerate(a.ids):
            sp, mo = feats["train"].get(vid)
            n = int(a.spatial_mask[k].sum())
            assert n == min(len(sp), 12)
            assert int(a.motion_mask[k].sum()) == len(mo)  # motion clips are not cropped (SpaMo)
            full = torch.as_tensor(sp.astype(np.float32))
            got = a.spatial[k, :n]
            offs = [s for s in range(len(sp) - n + 1) if torch.equal(full[s : s + n], got)]
            assert offs, vid  # a contiguous slice of the video
            if len(sp) > 12:
                starts.add(offs[0])
    assert len(starts) > 2  # the crop moves
    uncapped = tdata.BatchLoader(ds, 6, pad_idx=0, seed=3, workers=0, max_frames=0).make(0)
    assert uncapped.spatial_mask.sum(1).max() > 12


def test_bleu_casing_and_both_numbers():
    from pipeline.train_stage import bleu_case
    from train.metrics.bleu import score

    refs = ["morgen regnet es im norden", "heute wird es sonnig"]
    hyps = ["Morgen regnet es im Norden", "Heute wird es sonnig"]
    lc = score("deu_Latn", refs, hyps, "lc")
    assert lc["bleu"] == pytest.approx(100.0) and lc["bleu_lc"] == pytest.approx(100.0) and lc["bleu_cased"] < 60
    assert "case:lc" in lc["signature"] and "case:mixed" in lc["signature_cased"]
    mixed = score("deu_Latn", refs, hyps, "mixed")
    assert mixed["bleu"] == mixed["bleu_cased"] and "case:mixed" in mixed["signature"]
    assert bleu_case("auto", "phoenix") == "lc" and bleu_case("auto", "how2sign") == "lc"
    assert bleu_case("auto", "somewhere-else") == "mixed" and bleu_case("mixed", "phoenix") == "mixed"


# ---------------------------------------------------------------------------- init_visual_block
def _manifest_entries(root: Path, spatial_name: str) -> dict[str, Path]:
    """Feature entry dirs (named like the stand-in readers) whose manifests record a model identity."""
    out = {}
    for split in ("train", "dev"):
        d = root / split
        d.mkdir(parents=True, exist_ok=True)
        (d / "manifest.json").write_text(json.dumps({"inputs": {
            "models": {"spatial": {"name": spatial_name, "weights": {"sha256": spatial_name * 4}},
                       "motion": {"name": "videomae"}},
            "preprocess": {"image_size": 224}, "dataset": {"ids": split}}}))
        out[split] = d
    return out


def test_init_visual_block_from_a_run_is_copied_and_the_source_never_read_again(patched, tmp_path, capsys):
    import dataclasses
    import shutil

    from safetensors.torch import load_file

    from train.evaluate import evaluate

    inputs = dataclasses.replace(patched, features=_manifest_entries(tmp_path / "feats", "clip"))
    src = tmp_path / "src"
    train(small_cfg(src, steps=4, eval_every=0, save_every=0), inputs, resume=False)
    capsys.readouterr()
    dst = tmp_path / "dst"
    cfg = small_cfg(dst, steps=4, eval_every=0, save_every=2, init_visual_block=str(src), stop_at=2)
    train(cfg, inputs, resume=False)
    note = capsys.readouterr().err
    assert "lora.* tensors" in note and "ignored on purpose" in note
    started = load_file(str(dst / "init_visual_block.safetensors"))
    trained = load_file(str(src / "ckpt/last/weights.safetensors"))
    assert set(started) == {k[7:] for k in trained if k.startswith("visual.")}
    assert all(torch.equal(v, trained[f"visual.{k}"]) for k, v in started.items())
    record = json.loads((dst / "init_visual_block.json").read_text())
    assert record["file"] == str((src / "ckpt/last/weights.safetensors").resolve()) and len(record["sha256"]) == 64
    # the original goes away: resume and evaluate still work from the run dir alone
    shutil.move(str(src), str(tmp_path / "moved"))
    rest = train(dataclasses.replace(cfg, stop_at=None), inputs, resume=True)
    assert rest.step == 4 and rest.losses[0][0] == 3
    scores = evaluate(dst, inputs, "dev", ["deu_Latn"], beam_size=1)
    assert scores["deu_Latn"]["n"] == 6
    # a fresh run with the original gone names the file and the fix
    from cache.errors import WeightsError

    with pytest.raises(WeightsError, match="init_visual_block"):
        train(small_cfg(tmp_path / "again", steps=1, eval_every=0, init_visual_block=str(src)), inputs, resume=False)


def test_init_visual_block_checks_the_feature_recipe(patched, tmp_path):
    import dataclasses

    from cache.errors import WeightsError

    src = tmp_path / "src"
    clip = dataclasses.replace(patched, features=_manifest_entries(tmp_path / "a", "clip"))
    other = dataclasses.replace(patched, features=_manifest_entries(tmp_path / "b", "dino"))
    train(small_cfg(src, steps=2, eval_every=0), clip, resume=False)
    with pytest.raises(WeightsError, match="trained on other features") as e:
        train(small_cfg(tmp_path / "x", steps=1, eval_every=0, init_visual_block=str(src)), other, resume=False)
    assert "models.spatial.name" in str(e.value) and "init_visual_block_check=false" in str(e.value)
    assert not (tmp_path / "x" / "ckpt").exists()
    res = train(small_cfg(tmp_path / "y", steps=1, eval_every=0, init_visual_block=str(src / "ckpt" / "last"),
                          init_visual_block_check=False), other, resume=False)
    assert res.step == 1
    # another variant of the block is refused with the setting that would fit
    with pytest.raises(WeightsError, match="train.visual_block=spamo"):
        train(small_cfg(tmp_path / "z", steps=1, eval_every=0, visual_block="slt-pipe-masked",
                        init_visual_block=str(src)), clip, resume=False)


def test_init_visual_block_strict_loading(tmp_path):
    from safetensors.torch import save_file

    from cache.errors import WeightsError
    from train.fusion import SpamoVisualBlock
    from train.visual_init import block_metadata, load_initial_block

    recipe = {"spatial_dim": 12, "motion_dim": 8}
    good = SpamoVisualBlock(12, 8, 32, EMB)
    stats = ("spatial_mean", "spatial_std", "motion_mean", "motion_std")
    plain = {k: v.clone() for k, v in good.state_dict().items() if k not in stats}  # as SpaMo's: no input statistics

    def load(obj, name, check=True, rec=recipe):
        path = tmp_path / name
        if name.endswith(".safetensors"):
            save_file(obj, str(path))
        else:
            torch.save(obj, path)
        block = SpamoVisualBlock(12, 8, 32, EMB)
        return block, load_initial_block(block, path, recipe=rec, check=check, run_dir=tmp_path / f"run-{name}")

    # a SpaMo Lightning checkpoint: its own names, the LLM and temperature named and ignored
    block, rec = load({"state_dict": {**plain, "t5_model.shared.weight": torch.zeros(3, 2),
                                      "logit_scale": torch.tensor(2.6)}}, "spamo.ckpt")
    assert torch.equal(block.spatio_proj.weight, good.spatio_proj.weight)
    assert rec["ignored"] == ["logit_scale", "t5_model.shared.weight"]
    assert any("identity" in n for n in rec["notes"]) and any("only its widths" in n for n in rec["notes"])
    # mis-shaped, missing and unexpected keys: one WeightsError naming them and the file
    narrow = {k: v for k, v in SpamoVisualBlock(12, 8, 16, EMB).state_dict().items()}
    with pytest.raises(WeightsError, match="mis-shaped") as e:
        load(narrow, "narrow.safetensors")
    assert "spatio_proj.weight (16, 12) (file) vs (32, 12) (block)" in str(e.value) and "narrow.safetensors" in str(e.value)
    with pytest.raises(WeightsError, match=r"missing 1: fusion_proj\.2\.bias"):
        load({k: v for k, v in plain.items() if k != "fusion_proj.2.bias"}, "missing.pt")
    with pytest.raises(WeightsError, match=r"unexpected 1: extra\.weight"):
        load({**plain, "extra.weight": torch.zeros(1)}, "extra.bin")
    with pytest.raises(WeightsError, match="not a state dict"):
        load({"weights": [1, 2]}, "junk.pt")
    with pytest.raises(WeightsError, match="not found"):
        load_initial_block(SpamoVisualBlock(12, 8, 32, EMB), tmp_path / "nope.safetensors", recipe=recipe,
                           check=True, run_dir=tmp_path / "r")
    # widths recorded with the block are checked even with the recipe check off
    path = tmp_path / "meta.safetensors"
    save_file({f"visual.{k}": v.contiguous() for k, v in good.state_dict().items()}, str(path),
              metadata=block_metadata(good.spec(), {"spatial_dim": 12, "motion_dim": 8}))
    with pytest.raises(WeightsError, match="spatial_dim: 12 \\(block\\) != 99"):
        load_initial_block(SpamoVisualBlock(99, 8, 32, EMB), path, recipe={"spatial_dim": 99, "motion_dim": 8},
                           check=False, run_dir=tmp_path / "r2")


def test_importing_the_lora_decoder_prints_no_peft_future_warning():
    """peft warns at import that the pinned transformers 4.57 is deprecated: slt-pipe hushes it where it imports peft."""
    r = subprocess.run([sys.executable, "-W", "error::FutureWarning", "-c", "import train.decoder"],
                       capture_output=True, text=True, timeout=300, cwd=Path(__file__).resolve().parents[1])
    assert r.returncode == 0 and "Support for Transformers" not in r.stderr, r.stderr[-2000:]

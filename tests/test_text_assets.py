"""Rehearsal text assets: the tiny SONAR / NLLB exported in the formats real users hold, loaded
through the paper profile's loaders (fairseq2 asset cards, HF snapshots), strictly."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from cache.errors import WeightsError
from helpers import user_asset_dir

SONAR_STEPS = 60
"""Enough for distinct, deterministic outputs; the round trip compares bits, not quality."""
NLLB_STEPS = 10
SENTENCES = ["morgen gibt es im norden regen", "heute liegen die temperaturen bei zehn grad"]


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="session")
def parallel_120():
    from extract.text.tiny_sonar import toy_parallel_corpus

    return {k: v[:120] for k, v in toy_parallel_corpus(seed=0).items()}


@pytest.fixture(scope="session")
def tiny_sonar(tmp_path_factory, parallel_120):
    from cache.fairseq2_env import ensure_fairseq2

    ensure_fairseq2()
    from extract.text.tiny_sonar import train_tiny_sonar

    out = tmp_path_factory.mktemp("tiny_sonar")
    train_tiny_sonar(parallel_120, out, seed=0, steps=SONAR_STEPS)
    return out


@pytest.fixture(scope="session")
def tiny_nllb(tmp_path_factory, parallel_120):
    from extract.text.nllb import make_tiny_nllb

    return make_tiny_nllb(tmp_path_factory.mktemp("tiny_nllb"), parallel_120, seed=0, train_steps=NLLB_STEPS)


@pytest.fixture(scope="session")
def sonar_assets(tmp_path_factory, tiny_sonar):
    from extract.text.assets import export_sonar_assets

    return export_sonar_assets(tiny_sonar, tmp_path_factory.mktemp("assets") / "sonar")


def _export_variant(tiny_sonar: Path, out: Path, part: str, edit) -> tuple[Path, Path]:
    """A fresh export whose `part` checkpoint is replaced by edit(state dict); (cards dir, checkpoint)."""
    import torch

    from extract.text.assets import DECODER_FILE, ENCODER_FILE, export_sonar_assets

    cards = export_sonar_assets(tiny_sonar, out)
    ckpt = out / (ENCODER_FILE if part == "encoder" else DECODER_FILE)
    state = torch.load(ckpt, weights_only=True)
    torch.save(edit(state), ckpt)
    return cards, ckpt


def _load(part: str, name: str):
    from cache.sonar_models import load_sonar_decoder, load_sonar_encoder

    return (load_sonar_encoder if part == "encoder" else load_sonar_decoder)(name)


# --------------------------------------------------------------------------- SONAR export
def test_sonar_export_layout_and_card(sonar_assets):
    import yaml

    from extract.text.assets import CARD_FILE, DECODER_CARD, ENCODER_CARD

    root = sonar_assets.parent
    assert sorted(p.name for p in root.iterdir()) == ["cards", "sentencepiece.model", "sonar_text_decoder.pt",
                                                      "sonar_text_encoder.pt"]
    assert [p.name for p in sonar_assets.iterdir()] == [CARD_FILE]  # weights never sit among the cards
    cards = {c["name"]: c for c in yaml.safe_load_all((sonar_assets / CARD_FILE).read_text())}
    assert set(cards) == {ENCODER_CARD, DECODER_CARD}
    enc, dec = cards[ENCODER_CARD], cards[DECODER_CARD]
    assert (enc["model_family"], dec["model_family"]) == ("transformer_encoder", "transformer_decoder")
    assert enc["model_arch"] == dec["model_arch"] == "basic"
    assert enc["model_config"]["_set_"]["num_encoder_layers"] == 2 and enc["model_config"]["_set_"]["model_dim"] == 128
    assert enc["checkpoint"] == (root / "sonar_text_encoder.pt").resolve().as_uri()
    assert enc["tokenizer"] == dec["tokenizer"] == (root / "sentencepiece.model").resolve().as_uri()
    assert enc["tokenizer_family"] == "nllb" and "fra_Latn" in enc["tokenizer_config"]["_set_"]["langs"]


def test_sonar_export_roundtrip_through_asset_cards(sonar_assets, tiny_sonar, parallel_120, monkeypatch):
    """Loaded by card name, the exported models are bit-identical to the tiny entry's, and no
    tiny-path code runs while loading them."""
    import torch

    import cache.sonar_models as sm
    from extract.text.assets import DECODER_CARD, ENCODER_CARD
    from extract.text.embed import SonarEncoder
    from extract.text.nllb import SonarTranslator

    ref_enc, ref_dec = sm.load_sonar_encoder("tiny", tiny_sonar), sm.load_sonar_decoder("tiny", tiny_sonar)
    ref_tok = sm.load_sonar_tokenizer("tiny", tiny_sonar)

    def no_tiny(*a, **k):
        raise AssertionError("the asset-card path reached the tiny loader")

    with user_asset_dir(sonar_assets), monkeypatch.context() as m:
        m.setattr(sm, "_tiny_config", no_tiny)
        m.setattr(sm, "_load_state", no_tiny)
        enc, dec = sm.load_sonar_encoder(ENCODER_CARD), sm.load_sonar_decoder(DECODER_CARD)
        tok = sm.load_sonar_tokenizer(ENCODER_CARD)
        assert sm.load_sonar_tokenizer(DECODER_CARD).vocab_info == tok.vocab_info

    assert type(enc) is type(ref_enc) and type(dec) is type(ref_dec)
    for a, b in ((enc, ref_enc), (dec, ref_dec)):
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    for lang in ("deu_Latn", "fra_Latn"):
        ids = tok.create_encoder(lang=lang, mode="source")(SENTENCES[0])
        assert torch.equal(ids, ref_tok.create_encoder(lang=lang, mode="source")(SENTENCES[0]))

    emb = SonarEncoder(enc, tok, identity={}).embed(SENTENCES, "deu_Latn")
    ref = SonarEncoder(ref_enc, ref_tok, identity={}).embed(SENTENCES, "deu_Latn")
    assert emb.shape == (2, 128) and (emb == ref).all()
    out = SonarTranslator(enc, dec, tok).translate(SENTENCES, "deu_Latn", "eng_Latn")
    assert out == SonarTranslator(ref_enc, ref_dec, ref_tok).translate(SENTENCES, "deu_Latn", "eng_Latn")
    # English sentences, one per source: words of the English the tiny SONAR learnt, not the German it read
    words = {lang: {w for t in parallel_120[lang] for w in t.split()} for lang in ("eng_Latn", "deu_Latn")}
    assert len(set(out)) == len(SENTENCES) and all(s.split() and set(s.split()) <= words["eng_Latn"] for s in out)
    assert not any(set(s.split()) <= words["deu_Latn"] for s in out)


@pytest.mark.parametrize("part,key", [("encoder", "encoder.layers.1.ffn.inner_proj.weight"),
                                      ("decoder", "decoder.layers.0.encoder_decoder_attn.k_proj.bias")])
def test_sonar_checkpoint_missing_one_tensor_is_refused(tiny_sonar, tmp_path, part, key):
    from extract.text.assets import DECODER_CARD, ENCODER_CARD

    cards, ckpt = _export_variant(tiny_sonar, tmp_path / "a", part, lambda s: {k: v for k, v in s.items() if k != key})
    name = ENCODER_CARD if part == "encoder" else DECODER_CARD
    with user_asset_dir(cards), pytest.raises(WeightsError) as e:
        _load(part, name)
    err = e.value
    assert err.path == str(ckpt)
    assert f"1 missing: {key}" in err.problem and name in err.problem and "unexpected" not in err.problem
    assert "model_config" in err.fix and f"a card in {cards}" in err.fix


def test_sonar_checkpoint_with_fewer_layers_than_card_is_refused(tiny_sonar, tmp_path):
    """A 1-layer file behind a card that says 2 layers: missing keys are layer 1's."""
    from extract.text.assets import ENCODER_CARD

    cards, ckpt = _export_variant(tiny_sonar, tmp_path / "a", "encoder",
                                  lambda s: {k: v for k, v in s.items() if not k.startswith("encoder.layers.1.")})
    with user_asset_dir(cards), pytest.raises(WeightsError) as e:
        _load("encoder", ENCODER_CARD)
    msg = e.value.problem
    assert e.value.path == str(ckpt)
    assert "num_encoder_layers=2" in msg and "16 missing: encoder.layers.1." in msg and "(11 more)" in msg


def test_sonar_checkpoint_with_more_layers_than_card_is_refused(tiny_sonar, tmp_path):
    """The card says 1 layer, the file has 2: layer 1's tensors are unexpected."""
    from extract.text.assets import CARD_FILE, DECODER_CARD

    cards, ckpt = _export_variant(tiny_sonar, tmp_path / "a", "decoder", lambda s: s)
    card = cards / CARD_FILE
    text = card.read_text()
    dec_doc = text.index(f"name: {DECODER_CARD}")
    card.write_text(text[:dec_doc] + text[dec_doc:].replace("num_decoder_layers: 2", "num_decoder_layers: 1", 1))
    with user_asset_dir(cards), pytest.raises(WeightsError) as e:
        _load("decoder", DECODER_CARD)
    msg = e.value.problem
    assert e.value.path == str(ckpt) and "num_decoder_layers=1" in msg
    assert "unexpected: decoder.layers.1." in msg and "missing" not in msg


def test_sonar_checkpoint_with_other_shapes_or_no_embedding_is_refused(tiny_sonar, tmp_path):
    import torch

    from extract.text.assets import ENCODER_CARD

    def widen(s):
        s = dict(s)
        s["encoder.layers.0.ffn.inner_proj.bias"] = torch.zeros(7)
        return s

    cards, ckpt = _export_variant(tiny_sonar, tmp_path / "a", "encoder", widen)
    with user_asset_dir(cards), pytest.raises(WeightsError) as e:
        _load("encoder", ENCODER_CARD)
    assert "1 of another shape: encoder.layers.0.ffn.inner_proj.bias (7,) in the file, (512,) in the model"\
        in e.value.problem and e.value.path == str(ckpt)

    # sonar takes a dict without the fairseq2 embedding for a fairseq1 checkpoint: say what it is not
    cards, ckpt = _export_variant(tiny_sonar, tmp_path / "b", "encoder",
                                  lambda s: {k: v for k, v in s.items() if k != "encoder_frontend.embed.weight"})
    with user_asset_dir(cards), pytest.raises(WeightsError) as e:
        _load("encoder", ENCODER_CARD)
    assert "lacks encoder_frontend.embed.weight" in e.value.problem and e.value.path == str(ckpt)


def test_sonar_identity_hashes_the_checkpoint_behind_the_card(tiny_sonar, sonar_assets, tmp_path, monkeypatch):
    import cache.keys
    import cache.sonar_models as sm
    from cache.keys import sha256_file
    from extract.text.assets import DECODER_CARD, ENCODER_CARD

    with user_asset_dir(sonar_assets):
        ident = sm.sonar_identity(ENCODER_CARD)
        calls = []
        monkeypatch.setattr(cache.keys, "sha256_file", lambda p, **k: calls.append(p) or sha256_file(p, **k))
        assert sm.sonar_identity(ENCODER_CARD) == ident and calls == []  # same path+size+mtime: not re-read
        dec_ident = sm.sonar_identity(DECODER_CARD)
    root = sonar_assets.parent
    ckpt = root / "sonar_text_encoder.pt"
    assert ident["checkpoint"] == {"file": ckpt.name, "bytes": ckpt.stat().st_size, "sha256": sha256_file(ckpt)}
    assert ident["tokenizer"]["sha256"] == sha256_file(root / "sentencepiece.model")
    assert ident["model_family"] == "transformer_encoder" and ident["model_config"]["_set_"]["model_dim"] == 128
    assert dec_ident["checkpoint"]["sha256"] != ident["checkpoint"]["sha256"]

    def nudge(s):
        s = dict(s)
        s["layer_norm.bias"] = s["layer_norm.bias"] + 1e-3
        return s

    cards, _ = _export_variant(tiny_sonar, tmp_path / "other", "encoder", nudge)
    with user_asset_dir(cards):
        other = sm.sonar_identity(ENCODER_CARD)
    assert other["spec"] == ident["spec"] and other["checkpoint"]["sha256"] != ident["checkpoint"]["sha256"]
    assert other["tokenizer"] == ident["tokenizer"]


def test_sonar_identity_of_a_missing_checkpoint_names_it(tiny_sonar, tmp_path):
    from cache.sonar_models import sonar_identity
    from extract.text.assets import ENCODER_CARD, ENCODER_FILE, export_sonar_assets

    cards = export_sonar_assets(tiny_sonar, tmp_path / "a")
    (tmp_path / "a" / ENCODER_FILE).unlink()
    with user_asset_dir(cards), pytest.raises(WeightsError) as e:
        sonar_identity(ENCODER_CARD)
    assert e.value.path == str((tmp_path / "a" / ENCODER_FILE).resolve()) and "FAIRSEQ2_USER_ASSET_DIR" in e.value.fix


# --------------------------------------------------------------------------- NLLB
def test_nllb_snapshot_roundtrip(tiny_nllb, tmp_path):
    import torch
    from safetensors import safe_open

    from extract.text.assets import export_nllb_snapshot
    from extract.text.nllb import NllbTranslator

    snap = export_nllb_snapshot(tiny_nllb, tmp_path / "nllb")
    names = {p.name for p in snap.iterdir()}
    assert {"config.json", "generation_config.json", "model.safetensors", "sentencepiece.bpe.model",
            "tokenizer_config.json", "tokenizer.json"} <= names
    assert "spm.model" not in names and not list(tmp_path.glob(".*tmp*"))
    with safe_open(str(snap / "model.safetensors"), "pt") as f:
        keys = set(f.keys())
    # the tied copies are not in the file: loading must accept exactly these absences
    assert "model.shared.weight" in keys and "lm_head.weight" not in keys

    kw = dict(num_beams=1, max_new_tokens=12, batch_size=2)
    ref = NllbTranslator(str(tiny_nllb), "cpu", **kw)
    got = NllbTranslator(str(snap), "cpu", langs=["deu_Latn", "fra_Latn"], **kw)
    batch = {k: got.tokenizer(SENTENCES, return_tensors="pt", padding=True)[k] for k in ("input_ids", "attention_mask")}
    for src, tgt in (("deu_Latn", "fra_Latn"), ("deu_Latn", "eng_Latn")):
        out = got.translate(SENTENCES, src, tgt)
        assert out == ref.translate(SENTENCES, src, tgt) and all(out)
        ids = got.generate_ids(SENTENCES, src, tgt)
        assert torch.equal(ids, ref.generate_ids(SENTENCES, src, tgt))
        assert (ids[:, 1] == got.tokenizer.convert_tokens_to_ids(tgt)).all()
        # the same weights, not just the same (few) words: the scores of every vocabulary entry agree
        with torch.inference_mode():
            a = got.model(**batch, decoder_input_ids=ids).logits
            b = ref.model(**batch, decoder_input_ids=ids).logits
        assert a.shape[-1] == len(got.tokenizer) and torch.equal(a, b)


def _snapshot_variant(src: Path, dst: Path, edit_state=None, edit_config=None) -> Path:
    from safetensors.torch import load_file, save_file

    shutil.copytree(src, dst)
    if edit_state is not None:
        state = load_file(str(dst / "model.safetensors"))
        save_file(edit_state(dict(state)), str(dst / "model.safetensors"), metadata={"format": "pt"})
    if edit_config is not None:
        cfg = json.loads((dst / "config.json").read_text())
        edit_config(cfg)
        (dst / "config.json").write_text(json.dumps(cfg))
    return dst


def test_nllb_partial_snapshots_are_refused(tiny_nllb, tmp_path):
    from extract.text.nllb import NllbTranslator, load_nllb_model

    key = "model.encoder.layers.0.fc1.weight"
    one = _snapshot_variant(tiny_nllb, tmp_path / "one", edit_state=lambda s: {k: v for k, v in s.items() if k != key})
    with pytest.raises(WeightsError) as e:
        NllbTranslator(str(one), "cpu")
    assert e.value.path == str(one / "model.safetensors") and f"1 missing: {key}" in e.value.problem
    assert "random" in e.value.fix

    # a 1-layer file where config.json says 2
    two = _snapshot_variant(tiny_nllb, tmp_path / "two", edit_config=lambda c: c.update(encoder_layers=2))
    with pytest.raises(WeightsError, match=r"16 missing: model\.encoder\.layers\.1\.") as e:
        load_nllb_model(str(two))
    assert e.value.path == str(two / "model.safetensors")

    extra = _snapshot_variant(tiny_nllb, tmp_path / "extra",
                              edit_state=lambda s: {**s, "model.encoder.layers.1.fc1.weight": s[key].clone()})
    with pytest.raises(WeightsError, match=r"1 unexpected: model\.encoder\.layers\.1\.fc1\.weight"):
        load_nllb_model(str(extra))

    wide = _snapshot_variant(tiny_nllb, tmp_path / "wide", edit_config=lambda c: c.update(encoder_ffn_dim=256))
    with pytest.raises(WeightsError) as e:
        load_nllb_model(str(wide))
    assert "model.encoder.layers.0.fc1.bias (128,) in the file, (256,) in the model" in e.value.problem
    assert e.value.path == str(wide / "model.safetensors")

    # without the shared embedding its tied copies are random too: all of them are named
    shared = _snapshot_variant(tiny_nllb, tmp_path / "shared",
                               edit_state=lambda s: {k: v for k, v in s.items() if k != "model.shared.weight"})
    with pytest.raises(WeightsError) as e:
        load_nllb_model(str(shared))
    assert "4 missing:" in e.value.problem and "lm_head.weight" in e.value.problem\
        and "model.shared.weight" in e.value.problem


def test_nllb_unknown_language_is_refused_before_any_work(tiny_nllb, monkeypatch):
    import extract.text.nllb as nllb

    def no_model(*a, **k):
        raise AssertionError("the model was loaded before the languages were checked")

    monkeypatch.setattr(nllb, "load_nllb_model", no_model)
    with pytest.raises(WeightsError) as e:
        nllb.NllbTranslator(str(tiny_nllb), "cpu", langs=["deu_Latn", "xyz_Latn", "fra_Latm"])
    assert "xyz_Latn, fra_Latm" in e.value.problem and "deu_Latn" not in e.value.problem


def test_nllb_missing_langs_reads_the_tokenizer_only(tiny_nllb, tmp_path, monkeypatch):
    import extract.text.nllb as nllb

    def no_model(*a, **k):
        raise AssertionError("the weights were read to check language codes")

    monkeypatch.setattr(nllb, "load_nllb_model", no_model)
    assert nllb.nllb_missing_langs(str(tiny_nllb), ["deu_Latn", "zho_Hans", "xyz_Latn"]) == ["xyz_Latn"]
    with pytest.raises(WeightsError, match="not on disk"):
        nllb.nllb_missing_langs(str(tmp_path / "absent"), ["deu_Latn"])


def test_tiny_nllb_reports_each_training_step(tmp_path, parallel_120):
    from extract.text.nllb import make_tiny_nllb

    seen: list[tuple[int, float]] = []
    make_tiny_nllb(tmp_path / "nllb", {k: v[:20] for k, v in parallel_120.items()}, train_steps=3,
                   on_step=lambda step, loss: seen.append((step, loss)))
    assert [step for step, _ in seen] == [0, 1, 2] and all(loss > 0 for _, loss in seen)


def test_nllb_tied_copies_are_the_only_allowed_absences(tiny_nllb):
    """transformers already drops tied keys from missing_keys when their source was read; the
    strict check must keep allowing them then, and refuse them when the source is absent too."""
    from extract.text.nllb import _unexplained, load_nllb_model

    model = load_nllb_model(str(tiny_nllb))
    tied = ["lm_head.weight", "model.decoder.embed_tokens.weight"]
    info = {"missing_keys": tied, "unexpected_keys": ["model.encoder.embed_positions.weights"]}
    assert _unexplained(model, info) == ([], [])
    info = {"missing_keys": [*tied, "model.shared.weight"], "unexpected_keys": ["model.encoder.layers.0.x"]}
    assert _unexplained(model, info) == (sorted([*tied, "model.shared.weight"]), ["model.encoder.layers.0.x"])
    model.config.tie_word_embeddings = False
    assert _unexplained(model, {"missing_keys": tied})[0] == sorted(tied)


def test_nllb_identity_follows_the_files(tiny_nllb, tmp_path):
    from cache.keys import sha256_file
    from extract.text.assets import export_nllb_snapshot
    from extract.text.nllb import nllb_identity

    snap = export_nllb_snapshot(tiny_nllb, tmp_path / "nllb")
    ident = nllb_identity(str(snap))
    assert ident["files"]["model.safetensors"] == sha256_file(snap / "model.safetensors")
    assert {"config.json", "sentencepiece.bpe.model", "tokenizer.json"} <= set(ident["files"])
    other = _snapshot_variant(snap, tmp_path / "other", edit_state=lambda s: {
        k: (v + 1 if k == "model.encoder.layers.0.fc1.bias" else v) for k, v in s.items()})
    changed = nllb_identity(str(other))
    assert changed["files"]["model.safetensors"] != ident["files"]["model.safetensors"]
    assert {k: v for k, v in changed["files"].items() if k != "model.safetensors"} ==\
        {k: v for k, v in ident["files"].items() if k != "model.safetensors"}
    assert nllb_identity("no/such-model-anywhere") == {"model": "no/such-model-anywhere"}
    assert nllb_identity(str(tmp_path / "absent")) == {"model": str(tmp_path / "absent")}

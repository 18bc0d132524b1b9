"""Target stage: languages, HDF5 targets, NLLB code path, SONAR loading, tiny SONAR quality."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from cache.errors import CacheError, SltPipeError, WeightsError
from extract.text.languages import FLORES200, resolve_langs


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def parallel_corpus():
    from extract.text.tiny_sonar import toy_parallel_corpus

    return toy_parallel_corpus(seed=0)


@pytest.fixture(scope="module")
def tiny_dir(toy_tiny_sonar):
    """The session's tiny SONAR (tests/conftest.py: trained by embed-targets on the toy's train split)."""
    from cache.fairseq2_env import ensure_fairseq2

    ensure_fairseq2()
    return toy_tiny_sonar


@pytest.fixture(scope="module")
def held(toy_embedded):
    """The toy's dev + test sentences in every language: never seen by the tiny SONAR."""
    _, _, ds = toy_embedded
    ids = [(split, s.id) for split in ("dev", "test") for s in ds.samples[split]]
    out = {lang: [ds.references[split][lang][i] for split, i in ids] for lang in ("deu_Latn", "eng_Latn", "fra_Latn")}
    train = {lang: {ds.references["train"][lang][s.id] for s in ds.samples["train"]} for lang in out}
    assert all(not train[lang] & set(texts) for lang, texts in out.items())  # really held out
    assert len(out["deu_Latn"]) >= 32  # test_tiny_sonar_decodes_held_out scores 32 of them
    return out


@pytest.fixture(scope="module")
def sonar(tiny_dir):
    from cache.sonar_models import load_sonar_decoder, load_sonar_encoder, load_sonar_tokenizer
    from extract.text.nllb import SonarTranslator

    tok = load_sonar_tokenizer("tiny", tiny_dir)
    return SonarTranslator(load_sonar_encoder("tiny", tiny_dir), load_sonar_decoder("tiny", tiny_dir), tok,
                           batch_size=64)


# --------------------------------------------------------------------------- languages
def test_resolve_langs_iso_and_flores():
    assert resolve_langs("deu,eng,fra") == ["deu_Latn", "eng_Latn", "fra_Latn"]
    assert resolve_langs(["zho", "spa_Latn", "DEU_latn", "deu"]) == ["zho_Hans", "spa_Latn", "deu_Latn"]
    assert len(FLORES200) == 202 and len(set(FLORES200)) == 202


def test_unknown_language_lists_close_matches():
    with pytest.raises(SltPipeError) as e:
        resolve_langs("deu,englsh")
    assert "englsh" in str(e.value) and "eng_Latn" in str(e.value)
    with pytest.raises(SltPipeError, match="fra_Latn"):
        resolve_langs("fra_Latm")


# --------------------------------------------------------------------------- HDF5
def test_targets_roundtrip_plain_h5py(tmp_path):
    import h5py

    from cache.targets import SplitTargets, TargetReader, write_targets

    rng = np.random.default_rng(0)
    emb = rng.normal(size=(3, 8)).astype(np.float32) * 0.01
    path = write_targets(tmp_path / "targets.h5", "fra_Latn", {
        "train": SplitTargets(["a", "b", "c"], ["demain il pleut", "été", "ça"], emb, ["nllb-x"] * 3),
        "dev": SplitTargets([], [], np.zeros((0, 8), np.float32), []),
    }, key="k123", encoder={"spec": "tiny"}, translator={"model": "nllb-x"})
    assert not list(tmp_path.glob(".*tmp*"))
    with h5py.File(path) as f:  # no slt-pipe code needed to read it
        assert f.attrs["lang"] == "fra_Latn" and f.attrs["key"] == "k123"
        assert [s.decode() for s in f["train/ids"][:]] == ["a", "b", "c"]
        assert f["train/fra_Latn/text"][1].decode() == "été"
        assert f["train/fra_Latn/embedding"].dtype == np.float32
        np.testing.assert_array_equal(f["train/fra_Latn/embedding"][:], emb)
        assert f["train/fra_Latn/source"][0].decode() == "nllb-x"
    with TargetReader(path) as r:
        assert r.lang == "fra_Latn" and r.splits == ["dev", "train"] and r.dim == 8
        assert r.ids("train") == ["a", "b", "c"] and r.texts("train")[2] == "ça"
        np.testing.assert_array_equal(r.embeddings("train"), emb)
        assert r.embeddings("dev").shape == (0, 8)


# --------------------------------------------------------------------------- NLLB
def test_tiny_nllb_code_path(tmp_path, parallel_corpus):
    from extract.text.nllb import NllbTranslator, make_tiny_nllb
    from extract.text.spec import Translator

    d = make_tiny_nllb(tmp_path / "nllb", {k: v[:60] for k, v in parallel_corpus.items()}, seed=0)
    tr = NllbTranslator(str(d), "cpu", num_beams=1, max_new_tokens=8, batch_size=2)
    assert isinstance(tr, Translator)
    src = parallel_corpus["deu_Latn"][:3]
    real, asked, made = tr.model.generate, [], []

    def generate(**kw):  # the real generate, its arguments and ids recorded
        ids = real(**kw)
        asked.append(kw)
        made.extend(ids.tolist())
        return ids

    tr.model.generate = generate
    out = tr.translate(src, "deu_Latn", "fra_Latn")
    fra, tok = tr.tokenizer.convert_tokens_to_ids("fra_Latn"), tr.tokenizer
    assert [len(kw["input_ids"]) for kw in asked] == [2, 1]  # batch_size 2
    assert all(kw["forced_bos_token_id"] == fra and kw["max_new_tokens"] == 8 and kw["num_beams"] == 1 for kw in asked)
    assert tok.batch_decode([kw["input_ids"][0] for kw in asked], skip_special_tokens=True) == [src[0], src[2]]
    # the generated ids, special tokens (</s>, the language, padding) left out, in order
    plain = [[i for i in row if i not in tok.all_special_ids] for row in made]
    assert out == [tok.decode(ids) for ids in plain] and all(row[1] == fra for row in made)
    # what generate wrote holds the forced language token (and </s>): the translations do not
    assert all("fra_Latn" in raw and "</s>" in raw for raw in tok.batch_decode(made))
    assert not any(t in s for s in out for t in ("</s>", "<pad>", "fra_Latn"))
    tr.model.generate = real
    ids = tr.generate_ids(src, "deu_Latn", "eng_Latn")
    assert ids.shape[0] == 3
    # decoder start (</s>), then the forced target-language token
    assert (ids[:, 1] == tr.tokenizer.convert_tokens_to_ids("eng_Latn")).all()


def test_nllb_missing_weights(tmp_path):
    from extract.text.nllb import NllbTranslator

    with pytest.raises(WeightsError, match="not on disk"):
        NllbTranslator(str(tmp_path / "no-such-nllb"), "cpu")


# --------------------------------------------------------------------------- SONAR loading
def test_sonar_missing_weights(tmp_path):
    from cache.sonar_models import load_sonar_decoder, load_sonar_encoder, load_sonar_tokenizer

    with pytest.raises(WeightsError, match="encoder.pt"):
        load_sonar_encoder("tiny", tmp_path)
    with pytest.raises(WeightsError):
        load_sonar_decoder("tiny", None)
    with pytest.raises(WeightsError, match="not a known fairseq2 asset"):
        load_sonar_tokenizer("text_sonar_no_such_encoder")


def test_sonar_asset_card_with_missing_checkpoint(tmp_path):
    """A user card overriding the checkpoint with a missing file -> WeightsError naming it."""
    cards = tmp_path / "assets"
    cards.mkdir()
    ckpt = tmp_path / "models" / "sonar_text_encoder.pt"
    (cards / "sonar.yaml").write_text(f'name: text_sonar_basic_encoder@user\ncheckpoint: "file://{ckpt}"\n')
    code = textwrap.dedent("""
        from cache.errors import WeightsError
        from cache.sonar_models import load_sonar_encoder
        try:
            load_sonar_encoder("text_sonar_basic_encoder")
        except WeightsError as e:
            print("WEIGHTS:", e)
    """)
    env = {**__import__("os").environ, "FAIRSEQ2_USER_ASSET_DIR": str(cards)}
    res = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parents[1], env=env,
                         capture_output=True, text=True, timeout=120)
    assert "WEIGHTS:" in res.stdout, res.stderr[-2000:]
    assert str(ckpt) in res.stdout and "FAIRSEQ2_USER_ASSET_DIR" in res.stdout


# --------------------------------------------------------------------------- tiny SONAR quality
def test_tiny_sonar_files_and_reload(tiny_dir):
    import json

    from cache.sonar_models import sonar_identity

    for name in ("encoder.pt", "decoder.pt", "config.json", "tokenizer.model"):
        assert (tiny_dir / name).is_file()
    cfg = json.loads((tiny_dir / "config.json").read_text())
    assert cfg["encoder"]["model_dim"] == cfg["embedding_dim"]
    ident = sonar_identity("tiny", tiny_dir)
    assert ident == sonar_identity("tiny", tiny_dir) and ident["spec"] == "tiny"


def test_tiny_sonar_language_agnostic(sonar, held):
    import torch
    import torch.nn.functional as F

    e = {lang: sonar.t2e.predict(texts, source_lang=lang, batch_size=64) for lang, texts in held.items()}
    norm = float(e["deu_Latn"].norm(dim=-1).mean())
    assert 0.02 < norm < 3.0  # SONAR-like scale, not unit norm
    for a, b in (("deu_Latn", "eng_Latn"), ("deu_Latn", "fra_Latn"), ("eng_Latn", "fra_Latn")):
        s = F.normalize(e[a], dim=-1) @ F.normalize(e[b], dim=-1).T
        n = s.shape[0]
        own = float(s.diag().mean())
        other = float((s.sum() - s.diag().sum()) / (n * n - n))
        assert own > other + 0.3, (a, b, own, other)
        retrieval = float((s.argmax(1) == torch.arange(n)).float().mean())
        assert retrieval >= 0.8, (a, b, retrieval)


def test_tiny_sonar_decodes_held_out(sonar, held):
    items = held["deu_Latn"][:32]
    emb = sonar.t2e.predict(items, source_lang="deu_Latn", batch_size=64)
    out = sonar.e2t.predict(emb, target_lang="deu_Latn", batch_size=64, beam_size=1)
    exact = sum(o == r for o, r in zip(out, items)) / len(items)
    print(f"held-out exact-match deu->deu: {exact:.2f}")
    assert exact >= 0.6, list(zip(out, items))[:5]


# --------------------------------------------------------------------------- target stage
def test_translate_embed_and_saved_translations(tmp_path, sonar, tiny_dir, parallel_corpus):
    """Batches are model calls; the same source language is returned as is; saved translations
    load back only for the texts they were made from."""
    from extract.text import embed as et

    enc = et.SonarEncoder.from_spec("tiny", tiny_dir)
    src = parallel_corpus["deu_Latn"][:3]
    et.CALLS.update(translate=0, embed=0)
    eng = et.translate_texts(src, "deu_Latn", "eng_Latn", sonar, batch_size=2)
    emb = et.embed_texts(eng, "eng_Latn", enc, batch_size=2)
    assert et.CALLS == {"translate": 2, "embed": 2} and len(eng) == 3 and emb.shape[0] == 3
    assert et.translate_texts(src, "deu_Latn", "deu_Latn", sonar) == src and et.CALLS["translate"] == 2
    whole = et.embed_texts(eng, "eng_Latn", enc, batch_size=3)
    np.testing.assert_allclose(whole, emb, rtol=1e-5, atol=1e-6)
    path = et.save_translations(tmp_path / "tr.json", src, eng, "deu_Latn", "eng_Latn", sonar)
    assert et.load_translations(path, src) == eng
    with pytest.raises(CacheError, match="other source texts"):
        et.load_translations(path, parallel_corpus["deu_Latn"][1:4])


def test_tiny_sonar_deterministic_and_parallel_references(tmp_path, parallel_corpus):
    from types import SimpleNamespace

    from cache.sonar_models import sonar_identity
    from extract.text.tiny_sonar import parallel_references, train_tiny_sonar

    samples = [SimpleNamespace(id=f"v{i}", text=parallel_corpus["deu_Latn"][i]) for i in range(30)]
    refs = {lang: {f"v{i}": parallel_corpus[lang][i] for i in range(30) if i != 7} for lang in parallel_corpus}
    ds = SimpleNamespace(samples={"train": samples}, references={"train": refs})
    par = parallel_references(ds, "train", ["deu_Latn", "eng_Latn", "fra_Latn"])
    assert len(par["eng_Latn"]) == 29 and par["fra_Latn"][0] == parallel_corpus["fra_Latn"][0]
    for i in range(2):
        train_tiny_sonar(par, tmp_path / str(i), seed=5, steps=4)
    assert sonar_identity("tiny", tmp_path / "0") == sonar_identity("tiny", tmp_path / "1")


# --------------------------------------------------------------------------- the translator registry
def _translator_context(embed, tiny_key: str = "TINYKEY"):
    from rich.console import Console

    from extract.text.translators.base import TinyModels, TranslatorContext

    def no_training():
        raise AssertionError("asking for an identity must train nothing")

    tiny = TinyModels(langs=lambda: ["deu_Latn", "eng_Latn", "fra_Latn"], nllb_key=lambda: tiny_key,
                      nllb_dir=no_training)
    return TranslatorContext(embed=embed, source_lang="deu_Latn", langs=["deu_Latn", "eng_Latn", "spa_Latn"],
                             dataset="toy", root=None, command=lambda langs, *extra: " ".join(["cmd", *langs, *extra]),
                             tiny=tiny, console=Console(quiet=True))


def test_translator_identities_are_the_cache_keys_dicts(tmp_path, monkeypatch):
    """Each registered translator's identity is exactly the dict the translations' and targets' keys were
    always made of (a change here re-keys every cache entry), and the label its rows carry."""
    import cache.sonar_models as sm
    import extract.text.nllb as nl
    from extract.config import EmbedConfig
    from extract.text.translators import TRANSLATORS

    monkeypatch.setattr(sm, "sonar_identity", lambda spec, tiny=None: {"spec": spec, "tiny": str(tiny)})
    monkeypatch.setattr(nl, "nllb_identity", lambda model: {"model": model, "files": {"config.json": "abc"}})
    enc = {"spec": "tiny", "files": {}}
    sonar = EmbedConfig(translator="sonar", sonar_encoder="tiny", sonar_decoder="tiny", beam_size=2)
    assert TRANSLATORS["sonar"].identity(_translator_context(sonar), enc, tmp_path) == {
        "kind": "sonar", "encoder": enc, "decoder": {"spec": "tiny", "tiny": str(tmp_path)}, "beam_size": 2,
        "max_seq_len": 128}
    tiny = EmbedConfig(translator="nllb", nllb_model="tiny")
    assert TRANSLATORS["nllb"].identity(_translator_context(tiny), enc, None) == {
        "kind": "nllb", "model": "tiny-nllb", "num_beams": 4, "max_new_tokens": 128, "entry": "TINYKEY"}
    real = EmbedConfig(translator="nllb", nllb_model="/snap/nllb")
    assert TRANSLATORS["nllb"].identity(_translator_context(real), enc, None) == {
        "kind": "nllb", "model": {"model": "/snap/nllb", "files": {"config.json": "abc"}}, "num_beams": 4,
        "max_new_tokens": 128}
    assert [TRANSLATORS["sonar"].label(sonar), TRANSLATORS["nllb"].label(tiny), TRANSLATORS["nllb"].label(real)] == [
        "sonar", "tiny-nllb", "/snap/nllb"]


def test_tiny_translators_refuse_the_languages_of_no_reference(monkeypatch):
    from extract.config import EmbedConfig
    from extract.text.translators import TRANSLATORS

    tiny_sonar = EmbedConfig(translator="sonar", sonar_encoder="tiny", sonar_decoder="tiny")
    refused = TRANSLATORS["sonar"].cannot_write(_translator_context(tiny_sonar), ["eng_Latn", "spa_Latn"])
    assert list(refused) == ["spa_Latn"]
    assert "the tiny SONAR translator cannot write spa_Latn" in refused["spa_Latn"].render()
    assert "drop it: `cmd deu_Latn eng_Latn`" in refused["spa_Latn"].render()
    tiny_nllb = EmbedConfig(translator="nllb", nllb_model="tiny")
    assert "the tiny NLLB translator" in TRANSLATORS["nllb"].cannot_write(
        _translator_context(tiny_nllb), ["spa_Latn"])["spa_Latn"].render()
    paper = EmbedConfig(translator="sonar")  # the real SONAR knows every FLORES-200 language
    assert TRANSLATORS["sonar"].cannot_write(_translator_context(paper), ["spa_Latn"]) == {}


def test_an_unknown_translator_is_refused_not_given_nllbs_identity():
    from extract.config import EmbedConfig
    from extract.text.plan import text_model_ids
    from extract.text.translators import translator_kind

    with pytest.raises(SltPipeError, match="unknown translator 'marian'.*known: nllb, sonar"):
        translator_kind("marian")
    with pytest.raises(SltPipeError, match="unknown translator 'marian'"):
        text_model_ids(_translator_context(EmbedConfig(translator="marian")), None)  # type: ignore[arg-type]

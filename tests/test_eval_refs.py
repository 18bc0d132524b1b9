"""Evaluation scores against the dataset's own references; a language without them is zero-shot: scored
cross-lingually against the source-language references, and against machine translations, labelled.

Fast: in-memory stand-in caches (tests/stand_ins.py) and a toy SONAR decoder; the zero-shot scores
are recomputed per sample with the session's real tiny SONAR (conftest's toy_tiny_sonar, shared with
test_embed*). The same rule on the real toy corpus (its eng/fra sentences are the targets and the
references) is checked end to end in test_pipeline.py, which has the module's one built cache.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from rich.console import Console

from cache.fairseq2_env import ensure_fairseq2

ensure_fairseq2()

from stand_ins import ToyTargetReader, make_decoder, make_tokenizer, make_toy_corpus  # noqa: E402

from train import data as tdata  # noqa: E402
from train import decoder as tdecoder  # noqa: E402
from train import evaluate as tevaluate  # noqa: E402
from train.config import TrainConfig  # noqa: E402
from train.evaluate import evaluate, language_notes, reference_rows  # noqa: E402
from train.model import TrainInputs, build_models, save_weights, trainable_state  # noqa: E402

LANGS = ["deu_Latn", "eng_Latn", "fra_Latn"]
EMB = 16
MACHINE = "nllb:facebook/nllb-200-distilled-600M"


class SourcedReader(ToyTargetReader):
    """A stand-in TargetReader whose rows say where their text came from (cache.targets `source`)."""

    def __init__(self, base: ToyTargetReader, source: str):
        super().__init__(base.lang, base._splits)
        self.source = source

    def sources(self, split):
        return [self.source] * len(self.ids(split))


@pytest.fixture(scope="module")
def sourced_stand_ins(tmp_path_factory):
    """deu (source) and fra are the dataset's own text; eng is machine-translated."""
    feats, targets, sents = make_toy_corpus({"test": 5}, LANGS, emb_dim=EMB)
    tok = make_tokenizer(sents, LANGS, tmp_path_factory.mktemp("tok"))
    sourced = {lang: SourcedReader(r, MACHINE if lang == "eng_Latn" else tdata.REFERENCE) for lang, r in targets.items()}
    return feats, sourced, tok


def test_reference_rows_only_true_references_unless_asked():
    ds = SimpleNamespace(split="test", langs=["deu_Latn", "eng_Latn", "fra_Latn"], source={
        "deu_Latn": ["reference", "reference", None],
        "eng_Latn": [MACHINE, MACHINE, MACHINE],
        "fra_Latn": ["reference", MACHINE, None],
    })
    assert reference_rows(ds, "deu_Latn", False) == ([0, 1], "reference")
    assert reference_rows(ds, "eng_Latn", False) == ([], None)
    assert reference_rows(ds, "fra_Latn", False) == ([0], "reference")
    assert reference_rows(ds, "eng_Latn", True) == ([0, 1, 2], f"machine ({MACHINE})")
    assert reference_rows(ds, "fra_Latn", True) == ([0, 1], f"reference + machine ({MACHINE})")
    notes = language_notes(ds, ["deu_Latn", "eng_Latn", "fra_Latn", "spa_Latn"])
    assert set(notes) == {"eng_Latn", "spa_Latn"}  # no true reference: zero-shot
    assert "against its machine translations" in notes["eng_Latn"] and "embed-targets --langs spa_Latn" in notes["spa_Latn"]


def _run_dir(tmp_path: Path, inputs: TrainInputs, feats) -> Path:
    """A run directory with untrained weights: enough for evaluate to load and score."""
    cfg = TrainConfig(out=tmp_path, hidden_dim=16, lora_rank=2, lora_alpha=4, beam_size=1, max_len=6, batch_size=8,
                      device="cpu")
    visual, dec = build_models(cfg, inputs, feats.spatial_dim, feats.motion_dim, EMB, torch.device("cpu"))
    save_weights(trainable_state(visual, dec), tmp_path / "ckpt" / "last" / "weights.safetensors")
    (tmp_path / "config.json").write_text(json.dumps({**cfg.__dict__, "out": str(tmp_path)}, default=str))
    return tmp_path


class LookupEmbedder:
    """Stand-in SONAR encoder: a sentence's embedding is its stored target embedding (any language), else zeros."""

    spec = "lookup"

    def __init__(self, targets):
        self.table = {t: e for r in targets.values() for s in r._splits.values() for t, e in zip(s[1], s[2])}

    def __call__(self, texts, lang, batch_size=64):
        return torch.stack([torch.as_tensor(self.table.get(t, [0.0] * EMB), dtype=torch.float32) for t in texts])


def _patched(sourced_stand_ins, monkeypatch):
    feats, targets, tok = sourced_stand_ins
    monkeypatch.setattr(tdata, "open_features", lambda p: feats[Path(p).name])
    monkeypatch.setattr(tdata, "open_targets", lambda p: targets[Path(p).name])
    monkeypatch.setattr(tdecoder, "load_tokenizer", lambda spec, tiny: tok)
    monkeypatch.setattr(tdecoder, "load_base_decoder",
                        lambda spec, tiny, device, dtype: make_decoder(tok.vocab_info, input_dim=EMB).to(device, dtype))
    monkeypatch.setattr(tevaluate, "HypothesisEmbedder", lambda spec, tiny_dir, device: LookupEmbedder(targets))
    return feats, targets


def test_a_language_without_true_references_is_zero_shot_and_labelled(sourced_stand_ins, tmp_path, monkeypatch):
    from train.evaluate import score_table

    feats, targets = _patched(sourced_stand_ins, monkeypatch)
    inputs = TrainInputs(features={"test": Path("/nonexistent/test")},
                         targets={lang: Path(f"/nonexistent/{lang}") for lang in LANGS}, source_lang="deu_Latn",
                         decoder_spec="toy", encoder_spec="lookup")
    run = _run_dir(tmp_path, inputs, feats["test"])
    notes: list[str] = []
    scores = evaluate(run, inputs, "test", None, checkpoint="last", blaser=[], log=notes.append)
    assert {lang: s["kind"] for lang, s in scores.items()} == {
        "deu_Latn": "references", "eng_Latn": "zero-shot", "fra_Latn": "references"}
    assert scores["deu_Latn"]["references"] == scores["fra_Latn"]["references"] == "reference"
    eng = scores["eng_Latn"]  # eng's only texts are machine translations: cross-lingual, and against them, labelled
    assert eng["references"] == f"machine ({MACHINE})" and eng["xl_against"] == "deu_Latn reference"
    assert eng["n"] == eng["xl_n"] == 5 and -1 <= eng["xl_sonar_similarity"] <= 1 and "bleu" in eng
    assert not any(k.startswith("xl_") for k in scores["fra_Latn"])  # a language with references is not cross-scored
    assert any(n.startswith("note: eng_Latn has no true references") for n in notes)
    assert any("BLEURT skipped" in n for n in notes)
    # every metric line names its producer; per-sample scores are in the TSV
    assert any("cross-lingual SONAR similarity vs deu_Latn reference" in n and "[cosine of the eng_Latn" in n for n in notes)
    rows = (run / "predictions_test_eng_Latn.tsv").read_text().splitlines()
    assert rows[0].split("\t") == ["id", "ref", "hyp", "sent_bleu", "z_cos", "sonar_sim", "xl_sonar_sim"]
    assert len(rows) == 6
    saved = json.loads((run / "scores_test.json").read_text())
    assert saved["eng_Latn"]["references"] == f"machine ({MACHINE})"
    table = io.StringIO()
    Console(file=table, width=300).print(score_table("test", scores))
    assert "zero-shot: cross-lingual vs deu_Latn reference; machine" in table.getvalue()

    # the machine-translated rows of a language with true references count only when asked
    scores = evaluate(run, inputs, "test", ["fra_Latn"], checkpoint="last", blaser=[], machine_references=True,
                      log=notes.append)
    assert scores["fra_Latn"]["references"] == "reference" and scores["fra_Latn"]["n"] == 5


def test_zero_shot_without_any_targets_scores_cross_lingually(sourced_stand_ins, tmp_path, monkeypatch):
    """A language the cache has no targets for at all (PHOENIX's French): decoded for every video,
    scored against the German references' embeddings only, its TSV showing the German reference."""
    feats, targets = _patched(sourced_stand_ins, monkeypatch)
    inputs = TrainInputs(features={"test": Path("/nonexistent/test")},
                         targets={"deu_Latn": Path("/nonexistent/deu_Latn")}, source_lang="deu_Latn",
                         decoder_spec="toy", encoder_spec="lookup")
    run = _run_dir(tmp_path, inputs, feats["test"])
    scores = evaluate(run, inputs, "test", ["fra_Latn"], checkpoint="last", blaser=[], log=lambda _: None)
    fra = scores["fra_Latn"]
    assert fra["kind"] == "zero-shot" and fra["references"] == "none" and fra["n"] == 0 and fra["xl_n"] == 5
    assert "bleu" not in fra and -1 <= fra["xl_sonar_similarity"] <= 1
    rows = [r.split("\t") for r in (run / "predictions_test_fra_Latn.tsv").read_text().splitlines()]
    assert rows[0] == ["id", "ref", "hyp", "xl_sonar_sim"]
    assert [r[1] for r in rows[1:]] == targets["deu_Latn"].texts("test")
    # the mean is the mean of the per-sample column
    assert fra["xl_sonar_similarity"] == pytest.approx(sum(float(r[3]) for r in rows[1:]) / 5, abs=1e-5)


def test_a_sample_in_one_cache_only_is_left_out_and_counted(sourced_stand_ins, tmp_path):
    from train.data import left_out_note

    feats, targets, _ = sourced_stand_ins
    ids, texts, embs = targets["deu_Latn"]._splits["test"]
    # the first video has no target, "test_999" (a failed extraction) has no features: neither crashes
    partial = ToyTargetReader("deu_Latn", {"test": (ids[1:] + ["test_999"], texts[1:] + ["x"], embs)})
    cov = tdata.split_coverage("test", list(feats["test"].ids), partial.ids("test"))
    assert (cov.total, cov.without_features, cov.without_targets) == (6, ["test_999"], [ids[0]])
    ds = tdata.CacheDataset(feats["test"], {"deu_Latn": partial}, "test", "deu_Latn")
    assert ds.ids == ids[1:] and ds.coverage.left_out == 2

    entry = tmp_path / "features" / "abc123"
    entry.mkdir(parents=True)
    (entry / "manifest.json").write_text(json.dumps({"failures": [["test_999", "moov atom not found"]]}))
    assert left_out_note("train", cov, entry) == (
        "train: 2 of 6 videos of split test left out: 1 without features "
        "(listed in features/abc123 failures: test_999 (moov atom not found)), 1 without targets")


def test_an_empty_split_says_so(sourced_stand_ins):
    from cache.errors import SltPipeError

    feats, _, _ = sourced_stand_ins
    empty = ToyTargetReader("deu_Latn", {"test": ([], [], torch.zeros(0, EMB).numpy())})
    with pytest.raises(SltPipeError, match="split test is empty"):
        tdata.CacheDataset(SimpleNamespace(ids=[]), {"deu_Latn": empty}, "test", "deu_Latn")
    with pytest.raises(SltPipeError, match="no video with both features and a deu_Latn target"):
        tdata.CacheDataset(feats["test"], {"deu_Latn": ToyTargetReader("deu_Latn", {"test": (
            ["other"], ["x"], torch.zeros(1, EMB).numpy())})}, "test", "deu_Latn")


def test_blaser_and_bleurt_per_sample_with_their_producers(sourced_stand_ins, tmp_path, monkeypatch):
    """With BLASER cards and a BLEURT snapshot on disk (tiny random-init models of the real classes),
    evaluate scores every sample with them, cross-lingually too, and names each producer."""
    import yaml
    from test_blaser import DIM, HIDDEN, _card, _tiny_model
    from test_bleurt import _make_snapshot

    from helpers import user_asset_dir
    from train.blaser import BlaserScorer
    from train.bleurt import BleurtScorer

    assert DIM == EMB and HIDDEN
    torch.save(_tiny_model("COMET", 0).state_dict(), tmp_path / "ref.pt")
    torch.save(_tiny_model("QE", 1).state_dict(), tmp_path / "qe.pt")
    cards = tmp_path / "cards"
    cards.mkdir()
    (cards / "blaser.yaml").write_text(yaml.safe_dump_all([_card("t_ref", "basic_ref", tmp_path / "ref.pt"),
                                                           _card("t_qe", "basic_qe", tmp_path / "qe.pt"),
                                                           _card("t_gone", "basic_qe", tmp_path / "gone.pt")]))
    bleurt = _make_snapshot(tmp_path / "BLEURT-tiny")
    feats, targets = _patched(sourced_stand_ins, monkeypatch)
    made: dict[str, list[str]] = {}  # real sentences (non-zero embeddings), not the untrained decoder's output
    monkeypatch.setattr(tdecoder.LoraDecoder, "generate",
                        _sentence_decoder({lang: targets[lang].texts("test") for lang in LANGS}, made))
    inputs = TrainInputs(features={"test": Path("/nonexistent/test")},
                         targets={lang: Path(f"/nonexistent/{lang}") for lang in LANGS}, source_lang="deu_Latn",
                         decoder_spec="toy", encoder_spec="lookup")
    run = _run_dir(tmp_path / "run", inputs, feats["test"])
    notes: list[str] = []
    with user_asset_dir(cards):
        scores = evaluate(run, inputs, "test", ["fra_Latn", "eng_Latn"], checkpoint="last", bleurt=bleurt,
                          blaser=["t_ref", "t_qe", "t_gone"], log=notes.append)
        qe, ref = BlaserScorer("t_qe"), BlaserScorer("t_ref")
    assert any(n.startswith("BLASER skipped (t_gone)") for n in notes)
    fra, eng = scores["fra_Latn"], scores["eng_Latn"]
    assert {"blaser_ref", "blaser_qe", "bleurt"} <= set(fra) and {"xl_blaser_qe", "blaser_qe"} <= set(eng)
    assert fra["producers"]["blaser_qe"].startswith(qe.producer) and fra["producers"]["BLEURT"].startswith("BLEURT-tiny")
    assert any(n.startswith("test fra_Latn: BLEURT ") and "[BLEURT-tiny" in n for n in notes)
    rows = [r.split("\t") for r in Path(fra["tsv"]).read_text().splitlines()]
    col = {c: k for k, c in enumerate(rows[0])}
    rows = rows[1:]
    embedder = LookupEmbedder(targets)
    hyp = embedder([r[2] for r in rows], "fra_Latn")
    src = torch.as_tensor(targets["deu_Latn"].embeddings("test"))  # BLASER's src: the German reference's embedding
    np.testing.assert_allclose([float(r[col["blaser_qe"]]) for r in rows], qe.score(src, hyp), atol=1e-5)
    np.testing.assert_allclose([float(r[col["blaser_ref"]]) for r in rows],
                               ref.score(src, hyp, torch.as_tensor(targets["fra_Latn"].embeddings("test"))), atol=1e-5)
    np.testing.assert_allclose([float(r[col["bleurt"]]) for r in rows],
                               BleurtScorer(bleurt).score([r[1] for r in rows], [r[2] for r in rows]), atol=1e-5)
    assert fra["bleurt"] == pytest.approx(np.mean([float(r[col["bleurt"]]) for r in rows]), abs=1e-5)

    # eng (machine-translated only) is zero-shot: BLASER-QE and SONAR similarity cross-lingually, src = German
    rows = [r.split("\t") for r in Path(eng["tsv"]).read_text().splitlines()]
    col = {c: k for k, c in enumerate(rows[0])}
    rows = rows[1:]
    assert [r[2] for r in rows] == made["eng_Latn"]
    hyp = embedder([r[2] for r in rows], "eng_Latn")
    assert float(hyp.norm(dim=1).min()) > 0.1  # every hypothesis embedded (none is the zero fallback)
    want_qe = np.asarray(qe.score(src, hyp), np.float64)
    np.testing.assert_allclose([float(r[col["xl_blaser_qe"]]) for r in rows], want_qe, atol=1e-5)
    assert eng["xl_blaser_qe"] == pytest.approx(want_qe.mean(), abs=1e-5) and want_qe.std() > 1e-3
    want_xl = _cos(hyp.numpy(), src.numpy())
    np.testing.assert_allclose([float(r[col["xl_sonar_sim"]]) for r in rows], want_xl, atol=2e-6)
    assert eng["xl_sonar_similarity"] == pytest.approx(want_xl.mean(), abs=1e-6) and want_xl.std() > 0.05


def _sentence_decoder(pool: dict[str, list[str]], made: dict[str, list[str]]):
    """A stand-in for LoraDecoder.generate that writes real sentences: row i of `lang` gets
    its own sentence pool[lang][i] when i % 3 == 0, else another row's, pool[lang][(i + 7) % len] (so the scores vary)."""

    def generate(self, cond, lang, **_):
        texts = pool[lang]
        made[lang] = [texts[i if i % 3 == 0 else (i + 7) % len(texts)] for i in range(cond.size(0))]
        return list(made[lang])

    return generate


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_zero_shot_scores_recomputed_per_sample_with_the_tiny_sonar(toy_embedded, toy_tiny_sonar, tmp_path, monkeypatch):
    """The toy's real tiny SONAR embeds real hypotheses: every cross-lingual SONAR similarity (TSV and mean) is
    the cosine of the hypothesis's embedding with the SOURCE (German) reference's stored embedding, recomputed
    here with numpy. eng's targets are tiny-SONAR translations (machine, zero-shot with them), fra has none."""
    from stand_ins import ToyFeatureReader

    from cache.sonar_models import TINY
    from cache.targets import TargetReader
    from extract.text.embed import SonarEncoder
    from pipeline.train_stage import find_targets

    cfg, _, ds = toy_embedded
    found, missing = find_targets(cfg, ds, ["deu_Latn", "eng_Latn"])
    assert not missing
    with TargetReader(found["deu_Latn"]) as r:
        ids, deu_texts, deu_emb = r.ids("test"), r.texts("test"), r.embeddings("test")
    with TargetReader(found["eng_Latn"]) as r:
        assert r.ids("test") == ids and set(r.sources("test")) != {tdata.REFERENCE}  # machine-translated
        eng_emb = r.embeddings("test")
    n, dim = len(ids), deu_emb.shape[1]
    rng = np.random.default_rng(0)
    feats = ToyFeatureReader({v: (rng.normal(size=(20, 12)).astype(np.float16), rng.normal(size=(2, 8)).astype(np.float16))
                              for v in ids})
    monkeypatch.setattr(tdata, "open_features", lambda p: feats)
    refs = ds.references["test"]
    pool = {lang: [refs[lang][v] for v in ids] for lang in ("eng_Latn", "fra_Latn")}
    made: dict[str, list[str]] = {}
    monkeypatch.setattr(tdecoder.LoraDecoder, "generate", _sentence_decoder(pool, made))
    inputs = TrainInputs(features={"test": Path("/nonexistent/test")}, targets=found, source_lang="deu_Latn",
                         decoder_spec=TINY, encoder_spec=TINY, tiny_dir=Path(toy_tiny_sonar))
    cfgt = TrainConfig(out=tmp_path, hidden_dim=16, lora_rank=2, lora_alpha=4, beam_size=1, max_len=24, batch_size=16,
                       device="cpu")
    visual, dec = build_models(cfgt, inputs, feats.spatial_dim, feats.motion_dim, dim, torch.device("cpu"))
    save_weights(trainable_state(visual, dec), tmp_path / "ckpt" / "last" / "weights.safetensors")
    (tmp_path / "config.json").write_text(json.dumps({**cfgt.__dict__, "out": str(tmp_path)}, default=str))

    scores = evaluate(tmp_path, inputs, "test", ["eng_Latn", "fra_Latn"], checkpoint="last", blaser=[],
                      log=lambda _: None)
    saved = json.loads((tmp_path / "scores_test.json").read_text())
    encoder = SonarEncoder.from_spec(TINY, Path(toy_tiny_sonar))  # the targets' encoder, loaded afresh
    for lang in ("eng_Latn", "fra_Latn"):
        s = scores[lang]
        assert s["kind"] == "zero-shot" and s["xl_against"] == "deu_Latn reference" and s["xl_n"] == n
        rows = [r.split("\t") for r in (tmp_path / f"predictions_test_{lang}.tsv").read_text().splitlines()]
        col = {c: k for k, c in enumerate(rows[0])}
        rows = rows[1:]
        assert [r[0] for r in rows] == ids and [r[2] for r in rows] == made[lang]  # the stand-in's sentences, in order
        hyp_emb = encoder.embed([r[2] for r in rows], lang)
        assert np.linalg.norm(hyp_emb, axis=1).min() > 0.05  # real, non-zero embeddings
        want = _cos(hyp_emb, deu_emb)  # against the German reference's stored embedding
        got = np.array([float(r[col["xl_sonar_sim"]]) for r in rows])
        np.testing.assert_allclose(got, want, atol=2e-6)  # the TSV keeps 6 decimals
        assert s["xl_sonar_similarity"] == pytest.approx(want.mean(), abs=1e-6)
        assert saved[lang]["xl_sonar_similarity"] == pytest.approx(want.mean(), abs=1e-6)
        # a zeroed, constant or wrong-reference score cannot pass
        assert want.std() > 0.02 and np.abs(want).min() > 0 and len(set(got)) > n // 2
        own = [k for k in range(n) if made[lang][k] == refs[lang][ids[k]]]  # a hypothesis that is the row's own sentence
        other = [k for k in range(n) if k not in own]
        assert own and other and want[own].mean() > want[other].mean() + 0.1
        if lang == "eng_Latn":  # its machine targets are scored too, and are not the source reference
            np.testing.assert_allclose([float(r[col["sonar_sim"]]) for r in rows], _cos(hyp_emb, eng_emb), atol=2e-6)
            assert np.abs(_cos(hyp_emb, eng_emb) - want).max() > 1e-3
        else:
            assert "sonar_sim" not in col and "bleu" not in s
            assert [r[1] for r in rows] == deu_texts  # no fra text: the row shows the German reference

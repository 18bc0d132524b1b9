"""Evaluation scores against the dataset's own references; machine references only when asked, and labelled.

Fast: in-memory stand-in caches (train.toy) and a toy SONAR decoder. The same rule on the
real toy corpus (its eng/fra sentences are the targets and the references) is checked end
to end in test_pipeline.py, which has the module's one built cache.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from rich.console import Console

from cache.fairseq2_env import ensure_fairseq2

ensure_fairseq2()

from train import data as tdata  # noqa: E402
from train import decoder as tdecoder  # noqa: E402
from train.config import TrainConfig  # noqa: E402
from train.evaluate import evaluate, reference_rows, skipped_languages  # noqa: E402
from train.toy import ToyTargetReader, make_decoder, make_tokenizer, make_toy_corpus  # noqa: E402
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
def corpus(tmp_path_factory):
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
    skipped = skipped_languages(ds, ["deu_Latn", "eng_Latn", "spa_Latn"])
    assert set(skipped) == {"eng_Latn", "spa_Latn"} and "machine translations" in skipped["eng_Latn"]
    assert skipped_languages(ds, ["eng_Latn"], machine_references=True) == {}


def _run_dir(tmp_path: Path, inputs: TrainInputs, feats) -> Path:
    """A run directory with untrained weights: enough for evaluate to load and score."""
    cfg = TrainConfig(out=tmp_path, hidden_dim=16, lora_rank=2, lora_alpha=4, beam_size=1, max_len=6, batch_size=8,
                      device="cpu")
    visual, dec = build_models(cfg, inputs, feats.spatial_dim, feats.motion_dim, EMB, torch.device("cpu"))
    save_weights(trainable_state(visual, dec), tmp_path / "ckpt" / "last" / "weights.safetensors")
    (tmp_path / "config.json").write_text(json.dumps({**cfg.__dict__, "out": str(tmp_path)}, default=str))
    return tmp_path


def test_machine_references_skipped_by_default_and_labelled_when_asked(corpus, tmp_path, monkeypatch):
    from pipeline.train_stage import score_table

    feats, targets, tok = corpus
    monkeypatch.setattr(tdata, "open_features", lambda p: feats[Path(p).name])
    monkeypatch.setattr(tdata, "open_targets", lambda p: targets[Path(p).name])
    monkeypatch.setattr(tdecoder, "load_tokenizer", lambda spec, tiny: tok)
    monkeypatch.setattr(tdecoder, "load_base_decoder",
                        lambda spec, tiny, device, dtype: make_decoder(tok.vocab_info, input_dim=EMB).to(device, dtype))
    inputs = TrainInputs(features={"test": Path("/nonexistent/test")},
                         targets={lang: Path(f"/nonexistent/{lang}") for lang in LANGS}, source_lang="deu_Latn",
                         decoder_spec="toy")
    run = _run_dir(tmp_path, inputs, feats["test"])
    notes: list[str] = []
    scores = evaluate(run, inputs, "test", None, checkpoint="last", log=notes.append)
    assert set(scores) == {"deu_Latn", "fra_Latn"}  # every language with targets, but eng has no true reference
    assert all(s["references"] == "reference" for s in scores.values())
    assert any(n.startswith("note: eng_Latn skipped") and "--machine-references" in n for n in notes)
    saved = json.loads((run / "scores_test.json").read_text())
    assert {lang: s["references"] for lang, s in saved.items()} == {"deu_Latn": "reference", "fra_Latn": "reference"}

    scores = evaluate(run, inputs, "test", ["eng_Latn"], checkpoint="last", machine_references=True, log=notes.append)
    assert scores["eng_Latn"]["references"] == f"machine ({MACHINE})" and scores["eng_Latn"]["n"] == 5
    saved = json.loads((run / "scores_test.json").read_text())
    assert saved["eng_Latn"]["references"] == f"machine ({MACHINE})"
    table = io.StringIO()
    Console(file=table, width=250).print(score_table("test", scores))
    assert f"machine ({MACHINE})" in table.getvalue()


def test_a_sample_in_one_cache_only_is_left_out_and_counted(corpus, tmp_path):
    from pipeline.train_stage import left_out_note

    feats, targets, _ = corpus
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


def test_an_empty_split_says_so(corpus):
    from cache.errors import SltPipeError

    feats, _, _ = corpus
    empty = ToyTargetReader("deu_Latn", {"test": ([], [], torch.zeros(0, EMB).numpy())})
    with pytest.raises(SltPipeError, match="split test is empty"):
        tdata.CacheDataset(SimpleNamespace(ids=[]), {"deu_Latn": empty}, "test", "deu_Latn")
    with pytest.raises(SltPipeError, match="no video with both features and a deu_Latn target"):
        tdata.CacheDataset(feats["test"], {"deu_Latn": ToyTargetReader("deu_Latn", {"test": (
            ["other"], ["x"], torch.zeros(1, EMB).numpy())})}, "test", "deu_Latn")

"""train.bleurt against the bleurt-pytorch package's own loading, on a tiny random BLEURT-20-shaped snapshot.

The snapshot is what lucadiliello's conversions hold (config.json, weights, a sentencepiece
spm.model with BLEURT's [CLS]/[SEP]/[PAD] pieces), only tiny: a sentencepiece model trained
here in a fraction of a second and a 2-layer BleurtForSequenceClassification with a separate
embedding size (BLEURT-20's embedding projection). Its random weights are wide enough that pairs
get clearly different scores, so "equal to the reference" means something.
"""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest
import torch

from cache.errors import WeightsError

MAX_LEN = 64
SENTENCES = ["a bird chirps by the window", "this is a random sentence", "the weather is nice today",
             "sign language translation of the evening news", "tomorrow it will rain in the north",
             "the train to the city leaves at nine", "she signs the news every evening"]
REFS = SENTENCES
CANDS = ["a bird sings by the window", "this looks like a random sentence", "the weather is nice today",
         "the evening news in sign language", "it rains in the north tomorrow", "a train", ""]


def _make_snapshot(folder: Path) -> Path:
    import sentencepiece as spm
    from bleurt_pytorch import BleurtConfig, BleurtForSequenceClassification
    from bleurt_pytorch.bleurt.tokenization_bleurt_sp import BleurtSPTokenizer

    folder.mkdir(parents=True)
    model_bytes = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(SENTENCES * 10), model_writer=model_bytes, vocab_size=60, hard_vocab_limit=False,
        pad_id=0, unk_id=1, bos_id=-1, eos_id=-1, pad_piece="[PAD]", unk_piece="[UNK]",
        control_symbols=["[CLS]", "[SEP]", "[MASK]"], minloglevel=2)
    (folder / "spm.model").write_bytes(model_bytes.getvalue())
    tokenizer = BleurtSPTokenizer(str(folder / "spm.model"))
    config = BleurtConfig(vocab_size=len(tokenizer), embedding_size=16, hidden_size=32, num_hidden_layers=2,
                          num_attention_heads=2, intermediate_size=64, max_position_embeddings=MAX_LEN,
                          initializer_range=0.5, architectures=["BleurtForSequenceClassification"])
    torch.manual_seed(0)
    BleurtForSequenceClassification(config).save_pretrained(folder)  # model.safetensors
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory) -> Path:
    return _make_snapshot(tmp_path_factory.mktemp("bleurt") / "BLEURT-tiny")


def _reference_scores(folder: Path, refs: list[str], cands: list[str], **tokenize) -> list[float]:
    """Scores the way the bleurt-pytorch README computes them, with the package's own loaders."""
    from bleurt_pytorch import BleurtForSequenceClassification, BleurtTokenizer

    model = BleurtForSequenceClassification.from_pretrained(folder)
    tokenizer = BleurtTokenizer.from_pretrained(folder)
    model.eval()
    with torch.no_grad():
        inputs = tokenizer(refs, cands, padding="longest", return_tensors="pt", **tokenize)
        return model(**inputs).logits.flatten().tolist()


def _scores_close(a: list[float], b: list[float]) -> bool:
    return torch.allclose(torch.tensor(a), torch.tensor(b), rtol=1e-5, atol=1e-6)


def test_scores_equal_the_packages_own_loading(snapshot):
    from train.bleurt import BleurtScorer

    scorer = BleurtScorer(snapshot)
    got = scorer.score(REFS, CANDS)
    assert len(got) == len(REFS)
    assert max(got) - min(got) > 0.05  # the tiny model tells pairs apart, so equality below is a real check
    assert _scores_close(got, _reference_scores(snapshot, REFS, CANDS))
    assert scorer.producer == f"BLEURT-tiny ({snapshot.resolve()})"


def test_a_pytorch_model_bin_scores_the_same(snapshot, tmp_path):
    from safetensors.torch import load_file

    from train.bleurt import BleurtScorer

    folder = tmp_path / "bin"
    shutil.copytree(snapshot, folder)
    (folder / "model.safetensors").unlink()
    torch.save(load_file(snapshot / "model.safetensors"), folder / "pytorch_model.bin")
    assert _scores_close(BleurtScorer(folder).score(REFS, CANDS), BleurtScorer(snapshot).score(REFS, CANDS))


def test_long_pairs_are_truncated_like_bleurt(snapshot):
    from train.bleurt import BleurtScorer

    long = " ".join(SENTENCES * 3)  # far beyond the 64 positions
    refs, cands = [long, REFS[0], long], [CANDS[0], long, long]
    got = BleurtScorer(snapshot).score(refs, cands)
    want = _reference_scores(snapshot, refs, cands, truncation="longest_first", max_length=MAX_LEN)
    assert _scores_close(got, want)


def test_batch_size_and_repeats_do_not_change_scores(snapshot):
    from train.bleurt import BleurtScorer

    one = BleurtScorer(snapshot, batch_size=1).score(REFS, CANDS)
    scorer = BleurtScorer(snapshot, batch_size=3)
    assert _scores_close(scorer.score(REFS, CANDS), one)
    assert scorer.score(REFS, CANDS) == scorer.score(REFS, CANDS)
    assert scorer.score([], []) == []
    with pytest.raises(ValueError):
        scorer.score(REFS, CANDS[:-1])


def _drop(state, key):
    del state[key]


def _reshape(state, key):
    state[key] = torch.zeros(2, state[key].shape[1])


def _extra(state, key):
    state["bleurt.encoder.layer.2.output.dense.weight"] = state[key].clone()


@pytest.mark.parametrize("damage, what", [(_drop, "missing"), (_reshape, "mis-shaped"), (_extra, "unexpected")])
def test_weights_that_do_not_fill_the_architecture_are_refused(snapshot, tmp_path, damage, what):
    from safetensors.torch import load_file, save_file

    from train.bleurt import BleurtScorer

    folder = tmp_path / "damaged"
    shutil.copytree(snapshot, folder)
    state = load_file(folder / "model.safetensors")
    key = "classifier.weight" if what == "mis-shaped" else "bleurt.encoder.layer.1.output.dense.weight"
    damage(state, key)
    save_file(state, folder / "model.safetensors")
    with pytest.raises(WeightsError) as e:
        BleurtScorer(folder)
    named = "bleurt.encoder.layer.2.output.dense.weight" if what == "unexpected" else key
    assert f"1 {what}: {named}" in e.value.problem
    assert e.value.path == str(folder / "model.safetensors") and "re-download" in e.value.fix


def test_a_snapshot_without_weights_or_tokenizer_is_refused(snapshot, tmp_path):
    from train.bleurt import BleurtScorer

    for name in ("model.safetensors", "spm.model"):
        folder = tmp_path / name
        shutil.copytree(snapshot, folder)
        (folder / name).unlink()
        with pytest.raises(WeightsError) as e:
            BleurtScorer(folder)
        assert e.value.path == str(folder) and "huggingface-cli download lucadiliello/BLEURT-20" in e.value.fix


def test_missing_folder_and_uncached_hub_id_name_the_fix(snapshot, tmp_path, monkeypatch):
    import huggingface_hub.constants as c

    from train.bleurt import resolve_bleurt

    monkeypatch.setattr(c, "HF_HUB_CACHE", str(tmp_path / "empty-hf"))
    with pytest.raises(WeightsError) as e:
        resolve_bleurt(tmp_path / "nowhere")
    assert e.value.path == str(tmp_path / "nowhere")
    assert "huggingface-cli download lucadiliello/BLEURT-20" in e.value.fix and "--bleurt" in e.value.fix
    with pytest.raises(WeightsError) as e:
        resolve_bleurt("lucadiliello/BLEURT-20-D3")
    assert "lucadiliello/BLEURT-20-D3 is not in the Hugging Face cache" in e.value.problem
    assert e.value.path == str(tmp_path / "empty-hf")
    assert "huggingface-cli download lucadiliello/BLEURT-20-D3" in e.value.fix
    with pytest.raises(WeightsError, match="not a file"):
        resolve_bleurt(snapshot / "config.json")
    with pytest.raises(WeightsError, match="no config.json"):
        resolve_bleurt(tmp_path)


def test_a_cached_hub_id_is_found_offline_and_named(snapshot, tmp_path, monkeypatch):
    import huggingface_hub.constants as c

    from train.bleurt import BleurtScorer, resolve_bleurt

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--lucadiliello--BLEURT-20-D3"
    shutil.copytree(snapshot, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(c, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert resolve_bleurt("lucadiliello/BLEURT-20-D3") == repo / "snapshots" / commit
    scorer = BleurtScorer("lucadiliello/BLEURT-20-D3")
    assert scorer.producer == f"BLEURT-20-D3 (lucadiliello/BLEURT-20-D3, {commit})"
    assert _scores_close(scorer.score(REFS, CANDS), BleurtScorer(snapshot).score(REFS, CANDS))

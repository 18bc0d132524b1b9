"""BLASER 2.0 scoring (train.blaser) on tiny random-init models of sonar's own BlaserModel class,
saved as fairseq2 checkpoints behind user asset cards, loaded strictly by card name."""

from __future__ import annotations

from pathlib import Path

import pytest

from cache.errors import WeightsError
from helpers import user_asset_dir

DIM = 16
HIDDEN = [24, 8]
N = 37  # not a multiple of the batch sizes used below


def _tiny_model(input_form: str, seed: int):
    import torch
    from sonar.models.blaser import BlaserConfig
    from sonar.models.blaser.factory import _create_blaser_model

    torch.manual_seed(seed)
    return _create_blaser_model(BlaserConfig(input_form=input_form, embedding_dim=DIM, hidden_dims=HIDDEN)).eval()


def _card(name: str, arch: str, checkpoint: Path) -> dict:
    return {"name": name, "model_family": "blaser", "model_arch": arch,
            "model_config": {"_set_": {"embedding_dim": DIM, "hidden_dims": HIDDEN}},
            "checkpoint": checkpoint.resolve().as_uri()}


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    """(cards dir, {card name: in-memory model}): a ref-style and a QE-style tiny BLASER, plus a card
    whose name says QE but whose arch is the ref one (needs_reference must follow the arch)."""
    from cache.fairseq2_env import ensure_fairseq2

    ensure_fairseq2()
    import torch
    import yaml

    root = tmp_path_factory.mktemp("blaser")
    ref, qe = _tiny_model("COMET", 0), _tiny_model("QE", 1)
    torch.save({"model": ref.state_dict()}, root / "ref.pt")  # fairseq2 v0.1-style wrapper, as sonar converts
    torch.save(qe.state_dict(), root / "qe.pt")  # a bare state dict
    cards = root / "cards"
    cards.mkdir()
    docs = [_card("tiny_blaser_ref", "basic_ref", root / "ref.pt"), _card("tiny_blaser_qe", "basic_qe", root / "qe.pt"),
            _card("tiny_blaser_qe_misnamed", "basic_ref", root / "ref.pt"),
            _card("tiny_blaser_absent", "basic_qe", root / "absent.pt")]
    (cards / "blaser.yaml").write_text(yaml.safe_dump_all(docs))
    return cards, {"tiny_blaser_ref": ref, "tiny_blaser_qe": qe}


def _embeddings(seed: int, n: int = N, dim: int = DIM):
    import torch

    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, dim, generator=g) for _ in range(3)]


@pytest.mark.parametrize("name,needs_ref", [("tiny_blaser_ref", True), ("tiny_blaser_qe", False)])
def test_scores_match_sonar_forward(assets, name, needs_ref):
    """BlaserScorer == sonar's documented path (load_blaser_model(name).eval(), forward under
    inference_mode) == the saved model itself, in batches that do not divide n."""
    import torch
    from sonar.models.blaser.loader import load_blaser_model

    from train.blaser import BlaserScorer, blaser_available

    cards, models = assets
    src, mt, ref = _embeddings(7)
    with user_asset_dir(cards):
        assert blaser_available(name) is None
        scorer = BlaserScorer(name)
        sonar_model = load_blaser_model(name).eval()
    assert scorer.needs_reference is needs_ref and scorer.input_dim == DIM
    assert not scorer.model.training  # dropout 0.1 would make scores random
    kind = "ref" if needs_ref else "QE"
    assert scorer.producer == f"BLASER {kind} ({name}, {'ref.pt' if needs_ref else 'qe.pt'})"
    with torch.inference_mode():
        expected = sonar_model(src=src, mt=mt, ref=ref if needs_ref else None).reshape(-1)
        own = models[name](src=src, mt=mt, ref=ref if needs_ref else None).reshape(-1)
    got = scorer.score(src, mt, ref if needs_ref else None, batch_size=8)
    assert len(got) == N and all(isinstance(x, float) for x in got)
    assert torch.allclose(torch.tensor(got), expected, atol=1e-6)
    assert torch.allclose(torch.tensor(got), own, atol=1e-6)
    assert scorer.score(src.numpy(), mt.numpy(), ref.numpy()) == pytest.approx(got, abs=1e-6)
    if needs_ref:  # the reference is an input of the ref model: another one changes the scores
        assert not torch.allclose(torch.tensor(scorer.score(src, mt, mt)), expected, atol=1e-4)
    else:  # the QE model ignores a given reference
        assert scorer.score(src, mt, ref) == pytest.approx(got, abs=1e-6)


def test_needs_reference_follows_the_arch_not_the_name(assets):
    from train.blaser import BlaserScorer

    cards, _ = assets
    with user_asset_dir(cards):
        scorer = BlaserScorer("tiny_blaser_qe_misnamed")
    assert scorer.needs_reference and scorer.producer.startswith("BLASER ref (")


def _broken_copy(assets, tmp_path: Path, edit) -> Path:
    """A cards dir whose tiny_blaser_qe card points at edit(qe state dict)."""
    import torch
    import yaml

    _, models = assets
    state = dict(models["tiny_blaser_qe"].state_dict())
    torch.save(edit(state), tmp_path / "qe.pt")
    cards = tmp_path / "cards"
    cards.mkdir()
    (cards / "blaser.yaml").write_text(yaml.safe_dump(_card("tiny_blaser_qe", "basic_qe", tmp_path / "qe.pt")))
    return cards


def _drop(key):
    return lambda s: {k: v for k, v in s.items() if k != key}


def _reshape(key):
    import torch

    return lambda s: {**s, key: torch.zeros(s[key].shape[0], s[key].shape[1] + 1)}


def _add(key):
    import torch

    return lambda s: {**s, key: torch.zeros(3)}


@pytest.mark.parametrize("edit,key,what", [(_drop("mlp.4.bias"), "mlp.4.bias", "1 missing"),
                                           (_reshape("mlp.4.weight"), "mlp.4.weight", "1 of another shape"),
                                           (_add("mlp.9.weight"), "mlp.9.weight", "1 unexpected")])
def test_mismatched_checkpoint_is_refused(assets, tmp_path, edit, key, what):
    from train.blaser import BlaserScorer, blaser_available

    cards = _broken_copy(assets, tmp_path, edit)
    with user_asset_dir(cards):
        assert blaser_available("tiny_blaser_qe") is None  # cheap: the file is there; its contents are not read
        with pytest.raises(WeightsError) as e:
            BlaserScorer("tiny_blaser_qe")
    msg = str(e.value)
    assert e.value.path == str(tmp_path / "qe.pt")
    assert what in msg and key in msg and "tiny_blaser_qe" in msg
    assert f"embedding_dim={DIM}" in msg and "input_form=QE" in msg  # what the card asked for
    assert "never load a partial file" in (e.value.fix or "")


def test_absent_checkpoint(assets):
    from train.blaser import BlaserScorer, blaser_available

    cards, _ = assets
    absent = str((cards.parent / "absent.pt").resolve())
    with user_asset_dir(cards):
        reason = blaser_available("tiny_blaser_absent")
        with pytest.raises(WeightsError) as e:
            BlaserScorer("tiny_blaser_absent")
    assert reason is not None and absent in reason and "FAIRSEQ2_USER_ASSET_DIR" in reason
    assert e.value.path == absent and "missing" in e.value.problem
    assert "FAIRSEQ2_USER_ASSET_DIR" in (e.value.fix or "") and "tiny_blaser_absent@user" in e.value.fix


def test_shipped_cards_are_not_downloaded(tmp_path, monkeypatch):
    """sonar's own blaser_2_0_ref/qe cards (https checkpoints) with an empty fairseq2 cache: a reason
    and a WeightsError with the fix, and no download attempt."""
    from train.blaser import BlaserScorer, blaser_available

    monkeypatch.setenv("FAIRSEQ2_CACHE_DIR", str(tmp_path / "empty-cache"))
    monkeypatch.delenv("SLT_PIPE_DOWNLOAD", raising=False)

    def no_download(*a, **k):
        raise AssertionError("a download was attempted")

    import cache.sonar_models as sm

    monkeypatch.setattr(sm, "_load_asset_model", no_download)
    empty = tmp_path / "no-cards"
    empty.mkdir()
    with user_asset_dir(empty):
        for name in ("blaser_2_0_ref", "blaser_2_0_qe"):
            reason = blaser_available(name)
            assert reason is not None and "not downloaded" in reason and f"{name}@user" in reason
            with pytest.raises(WeightsError, match="not downloaded"):
                BlaserScorer(name)
        assert "not a known fairseq2 asset" in blaser_available("no_such_blaser")
        assert "not BLASER" in blaser_available("text_sonar_basic_encoder")
        with pytest.raises(WeightsError, match="not BLASER"):
            BlaserScorer("text_sonar_basic_encoder")


def test_bad_inputs(assets):
    import torch

    from train.blaser import BlaserInputError, BlaserScorer

    cards, _ = assets
    src, mt, ref = _embeddings(3)
    with user_asset_dir(cards):
        ref_scorer, qe_scorer = BlaserScorer("tiny_blaser_ref"), BlaserScorer("tiny_blaser_qe")
    with pytest.raises(BlaserInputError, match="needs ref embeddings"):
        ref_scorer.score(src, mt)
    wide = torch.randn(N, 2 * DIM)
    for scorer in (ref_scorer, qe_scorer):
        with pytest.raises(BlaserInputError, match=f"mt embeddings are {2 * DIM}-dimensional.*takes {DIM}-dimensional"):
            scorer.score(src, wide, ref)
    with pytest.raises(BlaserInputError, match="ref embeddings are 32-dimensional"):
        qe_scorer.score(src, mt, wide)  # ignored by the model, still checked
    with pytest.raises(BlaserInputError, match="shape"):
        qe_scorer.score(src[0], mt[0])
    with pytest.raises(BlaserInputError, match="one row per sentence"):
        ref_scorer.score(src, mt[:-1], ref)
    assert isinstance(BlaserInputError("x"), ValueError)
    assert qe_scorer.score(src[:0], mt[:0]) == []


def test_user_card_over_the_shipped_one(assets, tmp_path):
    """The README's way to use a BLASER 2.0 checkpoint on disk: 'blaser_2_0_qe@user' replaces the shipped
    card's checkpoint (here also its widths, for the tiny file) and keeps its family and arch."""
    import yaml

    from train.blaser import BlaserScorer, blaser_available

    cards, models = assets
    mine = tmp_path / "cards"
    mine.mkdir()
    qe_file = (cards.parent / "qe.pt").resolve()
    (mine / "blaser.yaml").write_text(yaml.safe_dump({
        "name": "blaser_2_0_qe@user", "checkpoint": qe_file.as_uri(),
        "model_config": {"_set_": {"embedding_dim": DIM, "hidden_dims": HIDDEN}}}))
    src, mt, _ = _embeddings(5)
    with user_asset_dir(mine):
        assert blaser_available("blaser_2_0_qe") is None
        scorer = BlaserScorer("blaser_2_0_qe")
    assert scorer.producer == "BLASER 2.0 QE (blaser_2_0_qe, qe.pt)" and scorer.checkpoint == qe_file
    import torch

    with torch.no_grad():
        assert scorer.score(src, mt) == pytest.approx(models["tiny_blaser_qe"](src, mt).reshape(-1).tolist(), abs=1e-6)

"""BLASER 2.0 scores (sonar's ``blaser_2_0_ref`` / ``blaser_2_0_qe``) on SONAR sentence embeddings.

BLASER 2.0 is sonar's MLP over the SONAR embeddings of the source, the translation (mt) and,
for the reference-based model, a reference; it predicts a human quality rating on a 1-5 scale
(not clamped: the models' raw output, as sonar returns it). sonar-space ships the cards
(``sonar/cards/blaser_2_0.yaml``: ``model_family: blaser``, ``model_arch: basic_ref`` /
``basic_qe``, checkpoint an https URL on the Hugging Face hub).

Loading goes through `cache.sonar_models.load_asset_model`, so it behaves like the SONAR
loaders: fairseq2 resolves the card name (a user card in ``$FAIRSEQ2_USER_ASSET_DIR`` wins),
nothing is downloaded unless ``SLT_PIPE_DOWNLOAD=1``, an absent checkpoint is a `WeightsError`
with the fix, and a checkpoint with a missing, unexpected or mis-shaped tensor is refused (a
`WeightsError` naming the checkpoint and the keys). A user card for a checkpoint on disk::

    name: blaser_2_0_qe@user
    checkpoint: "file:///models/blaser/blaser_2_0_qe.pt"

`blaser_available(name)` says, without building the model, why a card cannot be used (or None).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from cache.errors import SltPipeError, WeightsError

BLASER_FAMILY = "blaser"
DEFAULT_BATCH = 1024
"""Rows per forward: an [n, 6*1024] float32 input is 24 KiB a row, so this stays small on any device."""

_FIX_CARD = (
    "use blaser_2_0_ref / blaser_2_0_qe (sonar's cards) with their checkpoint on disk or in the fairseq2 "
    "cache, or write a card named {name} with 'model_family: blaser' into $FAIRSEQ2_USER_ASSET_DIR "
    "(default ~/.config/fairseq2/assets)"
)


class BlaserInputError(SltPipeError, ValueError):
    """Embeddings a BLASER model cannot score (no reference for the ref model, another width, ...)."""


def _blaser_card(name: str) -> Any:
    """The card `name`, checked to describe a BLASER model (a WeightsError with the fix otherwise)."""
    from cache.fairseq2_env import ensure_fairseq2

    ensure_fairseq2()
    from fairseq2.assets import get_asset_store

    card = get_asset_store().maybe_retrieve_card(name)
    if card is None:
        raise WeightsError(f"{name} is not a known fairseq2 asset (no card with that name)",
                           fix=_FIX_CARD.format(name=name))
    family = card.maybe_get_field("model_family")
    family_name = None if family is None else str(family.as_(str))
    if family_name != BLASER_FAMILY:
        # another family would load fine and then fail (or silently mean something else) in score()
        raise WeightsError(f"fairseq2 asset {name} is a {family_name or 'family-less'} model, not BLASER",
                           fix=_FIX_CARD.format(name=name))
    return card


def _checkpoint_name(card: Any) -> str:
    """The checkpoint's file name (the last part of its URI), for the producer line."""
    uri = str(card.field("checkpoint").as_(str))
    return Path(uri.split("?", 1)[0].rstrip("/")).name or uri


def blaser_available(name: str) -> str | None:
    """None when card `name` is a BLASER model whose checkpoint can be read without a download,
    else the reason (one message with the fix), for "BLASER skipped: <reason>". Checks the card
    and the file only: it neither reads the weights nor builds the model, so a file that exists
    but does not fit the card is only found by `BlaserScorer`."""
    from cache.sonar_models import check_asset_file

    try:
        card = _blaser_card(name)
        check_asset_file(name, card, "checkpoint")
    except SltPipeError as e:
        return e.render()
    except Exception as e:  # noqa: BLE001 - a malformed card (fairseq2 AssetCardError, ...): a reason, not a traceback
        return f"cannot read the fairseq2 asset card {name} ({type(e).__name__}: {e})"
    return None


class BlaserScorer:
    """A BLASER 2.0 model loaded strictly from fairseq2 card `name`, scoring SONAR embeddings.

    `needs_reference` (the ref model's COMET input form) comes from the built model's config, so a
    user card of any name is read right; `input_dim` is the SONAR embedding width it takes.
    """

    def __init__(self, name: str = "blaser_2_0_qe", device: Any = "cpu") -> None:
        from cache.sonar_models import check_asset_file, load_asset_model

        card = _blaser_card(name)
        path = check_asset_file(name, card, "checkpoint")  # absent / not downloaded: WeightsError, fix
        try:
            model = load_asset_model(name, device=device, dtype=torch.float32)
        except WeightsError as e:
            # the file is there, so the problem is its contents: show what the card asked for
            raise WeightsError(f"{e.problem} [the card's BLASER config: {_describe_config(card)}]",
                               path=e.path, fix=e.fix) from None
        self.name = name
        self.model = model
        self.device = next(model.parameters()).device
        self.checkpoint = path  # None for a remote checkpoint read from the fairseq2 cache
        self.input_dim: int = int(model.embedding_dim)
        # COMET = ref, mt, src*mt, ref*mt, |mt-src|, |mt-ref|; QE = src, mt, src*mt, |mt-src|
        self.needs_reference: bool = model.input_form == "COMET"
        version = "BLASER 2.0" if name.split("@", 1)[0].startswith("blaser_2_0") else "BLASER"
        kind = "ref" if self.needs_reference else "QE"
        self.producer: str = f"{version} {kind} ({name}, {_checkpoint_name(card)})"

    def score(self, src: Tensor, mt: Tensor, ref: Tensor | None = None,
              batch_size: int = DEFAULT_BATCH) -> list[float]:
        """One score (1-5 scale) per row of the SONAR embeddings src, mt[, ref] ([n, d] each).

        The ref model requires `ref`; the QE model ignores it (checked for shape all the same, so
        a caller's misaligned reference is found either way)."""
        if self.needs_reference and ref is None:
            raise BlaserInputError(f"{self.producer} is a reference-based model: score() needs ref embeddings",
                                   fix="pass ref=, or use a QE model (blaser_2_0_qe) when there is no reference")
        # numpy arrays (as evaluate holds embeddings) are taken as they are
        given = {k: torch.as_tensor(v) for k, v in (("src", src), ("mt", mt), ("ref", ref)) if v is not None}
        n = self._check_shapes(given)
        inputs = {k: v for k, v in given.items() if k != "ref" or self.needs_reference}
        out: list[float] = []
        with torch.no_grad():
            for i in range(0, n, batch_size):
                batch = {k: v[i:i + batch_size].to(self.device, torch.float32) for k, v in inputs.items()}
                out.extend(self.model(**batch).reshape(-1).tolist())
        return out

    def _check_shapes(self, given: dict[str, Tensor]) -> int:
        """The common row count of `given`; BlaserInputError naming the tensor and both widths otherwise."""
        rows = {}
        for key, t in given.items():
            if t.dim() != 2:
                raise BlaserInputError(f"{key} must be SONAR embeddings of shape [n, {self.input_dim}], "
                                       f"got {tuple(t.shape)}",
                                       fix="stack the sentence embeddings into one 2-D tensor")
            if t.shape[1] != self.input_dim:
                raise BlaserInputError(
                    f"{key} embeddings are {t.shape[1]}-dimensional, but {self.producer} takes "
                    f"{self.input_dim}-dimensional SONAR embeddings",
                    fix="score with embeddings of the SONAR encoder the BLASER model was trained on "
                    f"({self.input_dim}-d; a tiny SONAR's embeddings do not fit the real BLASER 2.0)")
            rows[key] = t.shape[0]
        if len(set(rows.values())) > 1:
            raise BlaserInputError(f"src, mt and ref must have one row per sentence each, got rows {rows}",
                                   fix="align the embeddings (row i of each is the same sentence)")
        return rows["src"]


def _describe_config(card: Any) -> str:
    """The BlaserConfig fairseq2 builds from the card (arch + model_config), in a few words."""
    try:
        from fairseq2.models.family import ModelFamily
        from fairseq2.runtime.dependency import DependencyLookup, get_dependency_resolver

        family = DependencyLookup(get_dependency_resolver(), ModelFamily).maybe_get(BLASER_FAMILY)
        c = family.get_model_config(card)
    except Exception as e:  # noqa: BLE001 - only decorates an error already being raised
        return f"unavailable ({type(e).__name__})"
    return (f"input_form={c.input_form}, embedding_dim={c.embedding_dim}, hidden_dims={list(c.hidden_dims)}, "
            f"dropout={c.dropout} (dropout > 0 shifts the mlp.N key indices), output_dim={c.output_dim}")

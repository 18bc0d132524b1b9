"""The SONAR text models both stages share: encoder, decoder, tokenizer.

Two kinds of spec:

* ``"tiny"``: a tiny SONAR trained by `extract.tiny_sonar.train_tiny_sonar`, read from a
  cache entry directory `tiny_dir` holding ``encoder.pt`` / ``decoder.pt`` (fairseq2 state
  dicts), ``config.json`` (``{"encoder": SonarTextEncoderConfig fields, "decoder":
  SonarTextDecoderConfig fields, "langs": [...], "default_lang": ...}``) and
  ``tokenizer.model`` (SentencePiece, loaded as an NLLB tokenizer).

* a fairseq2 asset name, e.g. ``text_sonar_basic_encoder`` / ``text_sonar_basic_decoder``
  (sonar's own cards). fairseq2 resolves the name through its asset store: cards shipped
  with sonar, cards in ``/etc/fairseq2/assets`` (or ``$FAIRSEQ2_ASSET_DIR``) and cards in
  the user asset directory ``$FAIRSEQ2_USER_ASSET_DIR`` (default
  ``~/.config/fairseq2/assets``), where a user card of the same name wins. The card's
  ``checkpoint`` / ``tokenizer`` fields are URIs: ``https://`` ones are downloaded once
  into ``$FAIRSEQ2_CACHE_DIR`` (default ``~/.cache/fairseq2/assets``), ``file://`` ones are
  read in place.

  slt-pipe never starts a download by itself: if a remote checkpoint is not already in
  the fairseq2 download cache, loading raises `WeightsError` (set ``SLT_PIPE_DOWNLOAD=1``
  to let fairseq2 download it). To use a checkpoint you already have, write a user card
  that overrides the checkpoint path, e.g. ``$FAIRSEQ2_USER_ASSET_DIR/sonar.yaml``::

      name: text_sonar_basic_encoder@user
      checkpoint: "file:///models/sonar/sonar_text_encoder.pt"
      tokenizer: "file:///models/sonar/sentencepiece.source.256000.model"
      ---
      name: text_sonar_basic_decoder@user
      checkpoint: "file:///models/sonar/sonar_text_decoder.pt"
      tokenizer: "file:///models/sonar/sentencepiece.source.256000.model"

  (``name@user`` extends the shipped card and only replaces the fields it sets.)

Every missing file, unknown asset or unreadable checkpoint becomes `WeightsError` naming
the file or asset and the fix. Call `cache.fairseq2_env.ensure_fairseq2()` first (these
functions do).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from cache.errors import WeightsError

TINY = "tiny"
TINY_FILES = ("encoder.pt", "decoder.pt", "config.json", "tokenizer.model")

_CARD_FIX = (
    "put the checkpoint on disk and point a fairseq2 card at it: write "
    "$FAIRSEQ2_USER_ASSET_DIR/sonar.yaml (default ~/.config/fairseq2/assets/) with "
    "'name: {name}@user' and '{field}: \"file:///path/to/file\"' "
    "(see cache/sonar_models.py), or set SLT_PIPE_DOWNLOAD=1 on a machine with internet "
    "to let fairseq2 download {uri} into $FAIRSEQ2_CACHE_DIR"
)


def _torch_dtype(dtype: Any) -> Any:
    import torch

    if dtype is None:
        return torch.float32
    if isinstance(dtype, str):
        return getattr(torch, dtype)
    return dtype


def _torch_device(device: Any) -> Any:
    import torch

    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


# --------------------------------------------------------------------------- tiny
def _tiny_config(tiny_dir: Path | None) -> dict[str, Any]:
    if tiny_dir is None:
        raise WeightsError(
            "spec 'tiny' needs the tiny-SONAR cache entry directory, but none was given",
            fix="build it first (extract.tiny_sonar.train_tiny_sonar) and pass its directory",
        )
    tiny_dir = Path(tiny_dir)
    for name in TINY_FILES:
        if not (tiny_dir / name).is_file():
            raise WeightsError(
                f"tiny SONAR file {name} is missing",
                path=tiny_dir / name,
                fix="rebuild the tiny SONAR entry (extract.tiny_sonar.train_tiny_sonar) or delete the entry",
            )
    try:
        return json.loads((tiny_dir / "config.json").read_text())
    except json.JSONDecodeError as e:
        raise WeightsError(f"unreadable tiny SONAR config ({e})", path=tiny_dir / "config.json",
                           fix="rebuild the tiny SONAR entry") from None


def _load_state(model: Any, path: Path) -> Any:
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except Exception as e:  # noqa: BLE001 - any unreadable checkpoint is the same user problem
        raise WeightsError(f"cannot load checkpoint ({type(e).__name__}: {e})", path=path,
                           fix="rebuild the tiny SONAR entry") from None
    return model


# --------------------------------------------------------------------------- asset store
def _retrieve_card(name: str) -> Any:
    from fairseq2.assets import get_asset_store

    card = get_asset_store().maybe_retrieve_card(name)
    if card is None:
        raise WeightsError(
            f"{name} is not a known fairseq2 asset (no card with that name)",
            fix=f"use text_sonar_basic_encoder / text_sonar_basic_decoder or 'tiny', or write a card "
            f"named {name} into $FAIRSEQ2_USER_ASSET_DIR (default ~/.config/fairseq2/assets)",
        )
    return card


def _check_asset_file(name: str, card: Any, field: str) -> None:
    """Raise WeightsError unless the card's `field` URI is readable without a download."""
    f = card.maybe_get_field(field)
    if f is None:
        raise WeightsError(f"asset card {name} has no {field} field",
                           fix=_CARD_FIX.format(name=name, uri="the checkpoint", field=field))
    uri = str(f.as_(str))
    if uri.startswith("file://") or "://" not in uri:
        path = Path(uri[len("file://"):] if uri.startswith("file://") else uri).expanduser()
        if not path.exists():
            raise WeightsError(f"{field} of fairseq2 asset {name} is missing", path=path,
                               fix=_CARD_FIX.format(name=name, uri=uri, field=field))
        return
    if os.environ.get("SLT_PIPE_DOWNLOAD") == "1":
        return
    if uri.startswith("hg://"):
        return  # Hugging Face hub: fairseq2 reads the HF cache itself
    cache_dir = fairseq2_cache_dir()
    h = hashlib.sha1(uri.encode()).hexdigest()[:24]
    if not (cache_dir / h).exists():
        raise WeightsError(
            f"{field} of fairseq2 asset {name} ({uri}) is not downloaded",
            path=cache_dir / h,
            fix=_CARD_FIX.format(name=name, uri=uri, field=field),
        )


def fairseq2_cache_dir() -> Path:
    """fairseq2's download cache ($FAIRSEQ2_CACHE_DIR, $XDG_CACHE_HOME/fairseq2/assets, ~/.cache/...)."""
    if os.environ.get("FAIRSEQ2_CACHE_DIR"):
        return Path(os.environ["FAIRSEQ2_CACHE_DIR"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "fairseq2" / "assets"
    return Path("~/.cache/fairseq2/assets").expanduser()


def _load_asset_model(name: str, device: Any, dtype: Any) -> Any:
    from fairseq2.models import load_model

    card = _retrieve_card(name)
    _check_asset_file(name, card, "checkpoint")
    try:
        return load_model(card, device=device, dtype=dtype, progress=False)
    except WeightsError:
        raise
    except Exception as e:  # noqa: BLE001 - fairseq2 raises many types for the same user problem
        raise WeightsError(f"cannot load fairseq2 asset {name} ({type(e).__name__}: {e})",
                           fix=_CARD_FIX.format(name=name, uri="its checkpoint", field="checkpoint")) from None


# --------------------------------------------------------------------------- public API
def load_sonar_encoder(spec: str, tiny_dir: Path | None = None, device: Any = "cpu", dtype: Any = None) -> Any:
    """SonarTextTransformerEncoderModel (eval mode) from 'tiny' + entry dir, or a fairseq2 asset name."""
    return _load_text_model("encoder", spec, tiny_dir, device, dtype)


def load_sonar_decoder(spec: str, tiny_dir: Path | None = None, device: Any = "cpu", dtype: Any = None) -> Any:
    """ConditionalTransformerDecoderModel (eval mode) from 'tiny' + entry dir, or a fairseq2 asset name."""
    return _load_text_model("decoder", spec, tiny_dir, device, dtype)


def _load_text_model(part: str, spec: str, tiny_dir: Path | None, device: Any, dtype: Any) -> Any:
    from cache.fairseq2_env import ensure_fairseq2

    ensure_fairseq2()
    dev, dt = _torch_device(device), _torch_dtype(dtype)
    if spec == TINY:
        from fairseq2.data.tokenizers import VocabularyInfo
        from sonar.models import sonar_text

        # config.json holds the fairseq2 config dataclass as a dict (vocab_info nested).
        fields = dict(_tiny_config(tiny_dir)[part])
        fields["vocab_info"] = VocabularyInfo(**fields["vocab_info"])
        kind = "Encoder" if part == "encoder" else "Decoder"
        config = getattr(sonar_text, f"SonarText{kind}Config")(**fields)
        model = getattr(sonar_text, f"SonarText{kind}Factory")(config).create_model()
        model = _load_state(model, Path(tiny_dir) / f"{part}.pt")  # type: ignore[arg-type]
    else:
        model = _load_asset_model(spec, dev, dt)
    return model.to(device=dev, dtype=dt).eval()


def load_sonar_tokenizer(spec: str, tiny_dir: Path | None = None) -> Any:
    """fairseq2 NLLB tokenizer of the encoder/decoder `spec` ('tiny' or an asset name)."""
    from cache.fairseq2_env import ensure_fairseq2

    ensure_fairseq2()
    if spec == TINY:
        cfg = _tiny_config(tiny_dir)
        try:
            return nllb_tokenizer(Path(tiny_dir) / "tokenizer.model", cfg["langs"],  # type: ignore[arg-type]
                                  cfg.get("default_lang", "eng_Latn"))
        except Exception as e:  # noqa: BLE001
            raise WeightsError(f"cannot load tokenizer ({type(e).__name__}: {e})",
                               path=Path(tiny_dir) / "tokenizer.model",  # type: ignore[arg-type]
                               fix="rebuild the tiny SONAR entry") from None
    from fairseq2.data.tokenizers import load_tokenizer

    card = _retrieve_card(spec)
    _check_asset_file(spec, card, "tokenizer")
    try:
        return load_tokenizer(card, progress=False)
    except Exception as e:  # noqa: BLE001
        raise WeightsError(f"cannot load the tokenizer of fairseq2 asset {spec} ({type(e).__name__}: {e})",
                           fix=_CARD_FIX.format(name=spec, uri="its tokenizer", field="tokenizer")) from None


def nllb_tokenizer(path: Path, langs: list[str], default_lang: str) -> Any:
    """fairseq2 NLLB tokenizer over a SentencePiece model, with a control token per language."""
    from cache.fairseq2_env import ensure_fairseq2

    ensure_fairseq2()
    from fairseq2.models.nllb.tokenizer import NllbTokenizerConfig, load_nllb_tokenizer

    return load_nllb_tokenizer(Path(path), NllbTokenizerConfig(langs=list(langs), default_lang=default_lang))


def sonar_identity(spec: str, tiny_dir: Path | None = None) -> dict[str, Any]:
    """What identifies a SONAR model in cache keys: the asset name, or the tiny entry's content hash."""
    if spec == TINY:
        from cache.keys import sha256_file

        _tiny_config(tiny_dir)
        files = {name: sha256_file(Path(tiny_dir) / name) for name in TINY_FILES}  # type: ignore[arg-type]
        return {"spec": TINY, "files": files}
    return {"spec": spec}

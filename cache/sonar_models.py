"""The SONAR text models both stages share: encoder, decoder, tokenizer.

Two kinds of spec:

* ``"tiny"``: a tiny SONAR trained by `extract.text.tiny_sonar.train_tiny_sonar`, read from a
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
the file or asset and the fix. Loading is strict: fairseq2 builds the model the card
describes (``model_family``, ``model_arch``, ``model_config`` overrides) and refuses a
checkpoint with a missing, unexpected or mis-shaped tensor; that refusal becomes a
`WeightsError` naming the checkpoint, the first keys and the fix, never a partly random model.
`sonar_identity` hashes the files a card points at, so cache keys follow the checkpoint, not
only the card name. fairseq2 reads ``$FAIRSEQ2_USER_ASSET_DIR`` once per process (when it
builds its asset store); `refresh_asset_store` re-reads the cards after the variable changed.
Call `cache.fairseq2_env.ensure_fairseq2()` first (these functions do).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterator

from cache.errors import WeightsError

TINY = "tiny"
TINY_FILES = ("encoder.pt", "decoder.pt", "config.json", "tokenizer.model")

_CARD_FIX = (
    "put the checkpoint on disk and point a fairseq2 card at it: write "
    "$FAIRSEQ2_USER_ASSET_DIR/sonar.yaml (default ~/.config/fairseq2/assets/) with "
    "'name: {name}@user' and '{field}: \"file:///path/to/file\"' "
    "(README, section 'Real data', shows such a card), or set SLT_PIPE_DOWNLOAD=1 on a machine with internet "
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
            fix="build it first (extract.text.tiny_sonar.train_tiny_sonar) and pass its directory",
        )
    tiny_dir = Path(tiny_dir)
    for name in TINY_FILES:
        if not (tiny_dir / name).is_file():
            raise WeightsError(
                f"tiny SONAR file {name} is missing",
                path=tiny_dir / name,
                fix="rebuild the tiny SONAR entry (extract.text.tiny_sonar.train_tiny_sonar) or delete the entry",
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


def _check_asset_file(name: str, card: Any, field: str) -> Path | None:
    """Raise WeightsError unless the card's `field` URI is readable without a download.

    Returns the local path for a ``file://`` URI or a pathname (relative ones are relative to
    the card's YAML file, as fairseq2 reads them), None for a remote URI.
    """
    f = card.maybe_get_field(field)
    if f is None:
        raise WeightsError(f"asset card {name} has no {field} field",
                           fix=_CARD_FIX.format(name=name, uri="the checkpoint", field=field))
    uri = str(f.as_(str))
    local = _local_path(card, field)
    if local is not None:
        if not local.exists():
            raise WeightsError(f"{field} of fairseq2 asset {name} is missing", path=local,
                               fix=_CARD_FIX.format(name=name, uri=uri, field=field))
        return local
    if os.environ.get("SLT_PIPE_DOWNLOAD") == "1":
        return None
    if uri.startswith("hg://"):
        return None  # Hugging Face hub: fairseq2 reads the HF cache itself
    cache_dir = fairseq2_cache_dir()
    h = hashlib.sha1(uri.encode()).hexdigest()[:24]
    if not (cache_dir / h).exists():
        raise WeightsError(
            f"{field} of fairseq2 asset {name} ({uri}) is not downloaded",
            path=cache_dir / h,
            fix=_CARD_FIX.format(name=name, uri=uri, field=field),
        )
    return None


def _local_path(card: Any, field: str) -> Path | None:
    """The file a card's `field` names on this machine, or None for a remote URI (or no field)."""
    f = card.maybe_get_field(field)
    if f is None:
        return None
    uri = str(f.as_(str))
    if "://" in uri and not uri.startswith("file://"):
        return None
    if uri.startswith("file://"):
        return Path(uri[len("file://"):]).expanduser()
    path = Path(uri).expanduser()
    base = card.metadata.get("__base_path__")
    return path if path.is_absolute() or not isinstance(base, Path) else base / path


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
    path = _check_asset_file(name, card, "checkpoint")
    try:
        return load_model(card, device=device, dtype=dtype, progress=False)
    except WeightsError:
        raise
    except Exception as e:  # noqa: BLE001 - fairseq2 raises many types for the same user problem
        mismatch = _cause_named(e, "ModelCheckpointMismatchError")
        if mismatch is not None:
            raise _mismatch_error(name, card, path, str(mismatch)) from None
        family = _card_str(card, "model_family")
        embed_key = _EMBED_KEYS.get(family or "")
        if isinstance(e, KeyError) and e.args == ("state_dict",) and embed_key:
            # sonar's converter takes a dict without the fairseq2 embedding key for a fairseq1
            # checkpoint and then looks for its 'state_dict': the file is neither.
            raise WeightsError(
                f"checkpoint of fairseq2 asset {name} is not a SONAR {family} checkpoint: it lacks "
                f"{embed_key} (fairseq2 format) and 'state_dict' (fairseq1 format)",
                path=path, fix=_MISMATCH_FIX.format(name=name, source=_card_source(card))) from None
        raise WeightsError(f"cannot load fairseq2 asset {name} ({type(e).__name__}: {e})", path=path,
                           fix=_CARD_FIX.format(name=name, uri="its checkpoint", field="checkpoint")) from None


_EMBED_KEYS = {"transformer_encoder": "encoder_frontend.embed.weight",
               "transformer_decoder": "decoder_frontend.embed.weight"}
"""The tensor sonar's checkpoint converters take as the mark of a fairseq2-format SONAR text checkpoint."""

_MISMATCH_FIX = (
    "point the card {name} ({source}) at the checkpoint saved for its architecture, or make its "
    "model_arch / model_config describe the checkpoint (layers, widths, vocabulary); never load "
    "a partial file: the missing tensors would be random"
)

_SHOWN_KEYS = 5
"""How many missing / unexpected / mis-shaped tensor names an error lists."""


def _cause_named(e: BaseException, kls_name: str) -> BaseException | None:
    """The first exception of class `kls_name` in e's cause/context chain (fairseq2 wraps its own errors)."""
    seen: set[int] = set()
    cur: BaseException | None = e
    while cur is not None and id(cur) not in seen:
        if type(cur).__name__ == kls_name:
            return cur
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return None


def _parse_mismatch(message: str) -> tuple[list[str], list[str], list[str]]:
    """(missing, unexpected, mis-shaped) from fairseq2's set_model_state message (fairseq2 0.8 wording)."""
    import re

    missing = re.search(r"Following keys are missing in the checkpoint: (.*?)(?= Following keys in the checkpoint|$)",
                        message)
    unexpected = re.search(r"Following keys in the checkpoint are unexpected: (.*)$", message)
    shapes = re.findall(r"`([^`]+)` has a shape of (\([^)]*\)) in the checkpoint, but has a shape of "
                        r"(\([^)]*\)) in the model", message)
    return ([k for k in missing.group(1).split(", ") if k] if missing else [],
            [k for k in unexpected.group(1).split(", ") if k] if unexpected else [],
            [f"{k} {a} in the file, {b} in the model" for k, a, b in shapes])


def _mismatch_error(name: str, card: Any, path: Path | None, message: str) -> WeightsError:
    missing, unexpected, shapes = _parse_mismatch(message)
    parts = []
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("of another shape", shapes)):
        if keys:
            more = f", ... ({len(keys) - _SHOWN_KEYS} more)" if len(keys) > _SHOWN_KEYS else ""
            parts.append(f"{len(keys)} {label}: {', '.join(keys[:_SHOWN_KEYS])}{more}")
    what = "; ".join(parts) if parts else message  # an unforeseen wording: show fairseq2's own
    return WeightsError(
        f"checkpoint of fairseq2 asset {name} does not fill the architecture of its card "
        f"({_describe_arch(card)}): {what}",
        path=path, fix=_MISMATCH_FIX.format(name=name, source=_card_source(card)))


def _card_str(card: Any, field: str) -> str | None:
    f = card.maybe_get_field(field)
    return None if f is None else str(f.as_(str))


def _card_source(card: Any) -> str:
    """Where the card was read: 'a card in DIR' for a card directory (fairseq2 keeps no file name)."""
    src = card.metadata.get("__source__")
    if isinstance(src, str) and src.startswith("path:"):
        return f"a card in {src[len('path:'):]}"
    return str(src) if src else "its asset card"


def _describe_arch(card: Any) -> str:
    """Family, arch and the sizes of the config fairseq2 built from the card (what the file was compared to)."""
    from fairseq2.models.family import ModelFamily
    from fairseq2.runtime.dependency import DependencyLookup, get_dependency_resolver

    family_name, arch = _card_str(card, "model_family"), _card_str(card, "model_arch")
    desc = f"{family_name}, arch {arch}"
    family = DependencyLookup(get_dependency_resolver(), ModelFamily).maybe_get(family_name or "")
    if family is None:
        return desc
    # the same call load_model made before it read the file, so it cannot fail differently here
    config = family.get_model_config(card)
    layers = "num_encoder_layers" if family_name == "transformer_encoder" else "num_decoder_layers"
    sizes = [f"{k}={getattr(config, k)}" for k in ("model_dim", layers) if hasattr(config, k)]
    vocab = getattr(getattr(config, "vocab_info", None), "size", None)
    if vocab is not None:
        sizes.append(f"vocab_size={vocab}")
    return ", ".join([desc, *sizes])


def refresh_asset_store() -> None:
    """Make fairseq2 re-read its asset cards (e.g. after setting FAIRSEQ2_USER_ASSET_DIR in-process).

    fairseq2 builds its asset store once per process, at the first look-up, and reads
    FAIRSEQ2_USER_ASSET_DIR then. A CLI command is its own process and needs none of this;
    tests and in-process rehearsals that write cards after fairseq2 has started do.
    """
    from cache.fairseq2_env import ensure_fairseq2

    ensure_fairseq2()
    import fairseq2.runtime.dependency as dep
    from fairseq2.assets import AssetStore

    # fairseq2 0.8 keeps singletons in the container's registrations and has no public reset;
    # a changed layout must fail loudly here rather than leave stale cards in use.
    registration = getattr(dep.get_dependency_resolver(), "_registrations", {}).get((AssetStore, None))
    if registration is None or not hasattr(registration, "obj") or not hasattr(dep, "_NOT_SET"):
        raise RuntimeError("fairseq2's dependency container changed: cannot re-create its asset store "
                           "in-process; load the cards in a new process instead")
    registration.obj = dep._NOT_SET


@contextlib.contextmanager
def user_asset_dir(cards_dir: Path) -> Iterator[None]:
    """FAIRSEQ2_USER_ASSET_DIR=cards_dir inside the block, fairseq2's store re-read on entry and on exit
    (for in-process code such as tests; a command started with the variable set needs none of this)."""
    old = os.environ.get("FAIRSEQ2_USER_ASSET_DIR")
    os.environ["FAIRSEQ2_USER_ASSET_DIR"] = str(cards_dir)
    refresh_asset_store()
    try:
        yield
    finally:
        if old is None:
            del os.environ["FAIRSEQ2_USER_ASSET_DIR"]
        else:
            os.environ["FAIRSEQ2_USER_ASSET_DIR"] = old
        refresh_asset_store()


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


def load_asset_model(name: str, device: Any = "cpu", dtype: Any = None) -> Any:
    """The model (eval mode) that fairseq2 asset card `name` describes, of any registered family
    (e.g. sonar's ``blaser``), with the SONAR loaders' checks: no download unless
    SLT_PIPE_DOWNLOAD=1, an unknown card or absent file is a `WeightsError` with the fix, and a
    checkpoint with a missing, unexpected or mis-shaped tensor is refused (`WeightsError` naming
    the checkpoint and the keys)."""
    from cache.fairseq2_env import ensure_fairseq2

    ensure_fairseq2()
    dev, dt = _torch_device(device), _torch_dtype(dtype)
    # fairseq2's load_model hands the model back in training mode (dropout active)
    return _load_asset_model(name, dev, dt).to(device=dev, dtype=dt).eval()


def check_asset_file(name: str, card: Any, field: str = "checkpoint") -> Path | None:
    """Raise `WeightsError` (with the fix) unless card `name`'s `field` is readable without a
    download; the local path, or None for a remote file already in the fairseq2 cache (or
    SLT_PIPE_DOWNLOAD=1). Reads no weights."""
    return _check_asset_file(name, card, field)


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
    """What identifies a SONAR model in cache keys, without loading it.

    'tiny': the entry's file hashes. An asset name: the name, the card's model definition
    (family, arch, config overrides, tokenizer family/config) and, per ``checkpoint`` /
    ``tokenizer`` field, the sha256 of the local file (``file://`` or a path; hashed once per
    path+size+mtime on this machine) or the URI of a remote one. So a different checkpoint
    behind the same card name gives a different key.
    """
    if spec == TINY:
        _tiny_config(tiny_dir)
        files = {name: file_identity(Path(tiny_dir) / name)["sha256"] for name in TINY_FILES}  # type: ignore[arg-type]
        return {"spec": TINY, "files": files}
    from cache.fairseq2_env import ensure_fairseq2

    ensure_fairseq2()
    card = _retrieve_card(spec)
    ident: dict[str, Any] = {"spec": spec}
    for field in ("model_family", "model_arch", "tokenizer_family"):
        ident[field] = _card_str(card, field)
    for field in ("model_config", "tokenizer_config"):
        value = _card_field_value(card, field)
        if value is not None:
            ident[field] = value
    for field in ("checkpoint", "tokenizer"):
        uri = _card_str(card, field)
        if uri is None:
            continue
        local = _local_path(card, field)
        if local is None:
            ident[field] = {"uri": uri}
        elif not local.is_file():
            raise WeightsError(f"{field} of fairseq2 asset {spec} is missing", path=local,
                               fix=_CARD_FIX.format(name=spec, uri=uri, field=field))
        else:
            ident[field] = file_identity(local)
    return ident


def _card_field_value(card: Any, field: str) -> Any:
    """The card's value of `field` (the nearest card in its base chain that sets it), JSON-able."""
    node = card
    while node is not None:
        if field in node.metadata:
            return json.loads(json.dumps(node.metadata[field], default=str))
        node = node.base
    return None


def file_identity(path: Path) -> dict[str, Any]:
    """{"file": name, "bytes": size, "sha256": ...} of a weights file, hashed once per machine while its
    path, size and mtime stay the same (cache.keys.sha256_memo)."""
    real = Path(path).resolve()
    return {"file": Path(path).name, "bytes": real.stat().st_size, "sha256": _sha256(real)}


def _sha256(real: Path) -> str:
    # The HF cache stores LFS files as blobs named by their sha256: no need to read them.
    if real.parent.name == "blobs" and len(real.name) == 64:
        return real.name
    from cache.keys import sha256_memo

    return sha256_memo(real)

"""The SONAR text models both stages share (encoder, decoder, tokenizer), loaded strictly.

A spec is "tiny" (a tiny SONAR trained into a cache entry) or a fairseq2 asset card name
(README, "Real data", shows a user card pointing at local files). Nothing is downloaded
unless SLT_PIPE_DOWNLOAD=1; a missing file, an unknown card or a checkpoint that does not
fill its architecture is a `WeightsError` naming the file and the fix, never a partly
random model. `sonar_identity` hashes the files a card points at, for cache keys, and
`check_sonar_asset` says where they are without reading them (`slt-pipe doctor`).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cache.device import resolve_device
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
    downloaded = download_path(uri)
    if not downloaded.exists():
        raise WeightsError(
            f"{field} of fairseq2 asset {name} ({uri}) is not downloaded",
            path=downloaded,
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


def download_path(uri: str) -> Path:
    """Where fairseq2 keeps its download of `uri` (a folder named by the URI's sha1)."""
    return fairseq2_cache_dir() / hashlib.sha1(uri.encode()).hexdigest()[:24]


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
    dev, dt = resolve_device(device), _torch_dtype(dtype)
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
    dev, dt = resolve_device(device), _torch_dtype(dtype)
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


# --------------------------------------------------------------------------- pre-flight facts (slt-pipe doctor)
@dataclass
class CardFile:
    """Where one file an asset card names (its checkpoint or tokenizer) is, found without reading it."""

    field: str
    uri: str | None
    kind: str
    """file (the card names a file on this machine), hub (hg://: fairseq2 reads the HF cache itself),
    download (a URI fairseq2 downloads into its cache), none (the card has no such field)."""
    on_disk: bool | None
    """None: not checked (hub)."""
    path: str | None = None
    """The file, or fairseq2's download of it."""
    bytes: int | None = None
    """Size of a file the card names (None: a folder, or not a local file)."""
    problem: str | None = None
    """Why the loaders would refuse it (None: they would not)."""
    fix: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"uri": self.uri, "on_disk": self.on_disk}
        if self.problem and not self.on_disk:
            out["error"] = self.problem
        if self.kind != "hub":
            out["path"] = self.path
        if self.kind == "file" and self.on_disk:
            out["bytes"] = self.bytes
        return out


@dataclass
class SonarAsset:
    """What `check_sonar_asset` found: the card and each file it names."""

    name: str
    card: str
    """Where the card was read."""
    model_family: str | None
    model_arch: str | None
    files: list[CardFile]

    @property
    def fix(self) -> str | None:
        """One fix for every file at fault: their own fixes when a file the card names is (no download helps),
        else how to provide both files."""
        bad = [f for f in self.files if f.problem]
        fixes: list[str] = []
        for f in bad:
            if f.fix and (f.on_disk or f.fix not in fixes):
                fixes.append(f.fix)
        if not bad:
            return None
        if len(fixes) == 1 or any(f.kind == "file" for f in bad):
            return "; ".join(fixes)
        return (f"put the checkpoint and tokenizer on disk and point a fairseq2 card at them: write "
                f"$FAIRSEQ2_USER_ASSET_DIR/sonar.yaml (default ~/.config/fairseq2/assets/) with 'name: {self.name}@user', "
                "'checkpoint: \"file:///path/to/checkpoint.pt\"' and 'tokenizer: \"file:///path/to/tokenizer.model\"' "
                "(README, Real data), or set SLT_PIPE_DOWNLOAD=1 on a machine with internet to let fairseq2 download "
                "both into $FAIRSEQ2_CACHE_DIR")


def check_sonar_asset(name: str) -> SonarAsset:
    """Where the checkpoint and tokenizer of asset card `name` are, as the loaders would look for them
    (no weights are read). An unknown card is a `WeightsError` with the fix."""
    card = _retrieve_card(name)
    source = _card_source(card)
    return SonarAsset(name, source, _card_str(card, "model_family"), _card_str(card, "model_arch"),
                      [_card_file(name, card, source, f) for f in ("checkpoint", "tokenizer")])


def _card_file(name: str, card: Any, source: str, field: str) -> CardFile:
    uri = _card_str(card, field)
    local = _local_path(card, field)
    kind = "file" if local is not None else "none" if uri is None else "hub" if uri.startswith("hg://") else "download"
    try:
        _check_asset_file(name, card, field)
    except WeightsError as err:
        fix = err.fix if local is None else (  # a file the card names on this machine: no download helps
            f"put the {field} at {err.path}, or point '{field}:' of the card {name}@user ({source}) at the file you have")
        return CardFile(field, uri, kind, False, err.path, problem=err.problem, fix=fix)
    if local is not None:
        size = local.stat().st_size if local.is_file() else None
        if size == 0:
            return CardFile(field, uri, kind, True, str(local), 0, problem=f"{field} {local} is an empty file",
                            fix=f"replace {local} with the complete {field} (it may have been truncated)")
        return CardFile(field, uri, kind, True, str(local), size)
    if kind == "hub":
        return CardFile(field, uri, kind, None)
    downloaded = download_path(str(uri))
    return CardFile(field, uri, kind, downloaded.exists(), str(downloaded))

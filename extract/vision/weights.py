"""Reading weight files strictly: every parameter filled, nothing unexplained left over.

A model built with random weights and then partly overwritten is the silent failure this
module exists to prevent: `fill_strictly` refuses a state dict that misses a tensor, holds
one it cannot place, or holds one of the wrong shape, and names the file, the first keys
at fault and the fix. Keys that a format legitimately carries beside the part we run (a
CLIP text tower, a projection head, VideoMAE's pre-training decoder) are dropped by the
format's converter *by name*, and the count of what was dropped is reported, so nothing
disappears unseen.

Files read: `.safetensors` (header only when just the names and shapes are needed),
PyTorch pickles (`.bin`, `.pt`, `weights_only=True`), OpenAI's TorchScript archives
(`ViT-L-14.pt`), and Hugging Face sharded snapshots (`*.index.json`).
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

from cache.errors import WeightsError, setting_fix

if TYPE_CHECKING:  # torch is imported where it is used: a cached run keys its entries without loading it.
    from torch import Tensor, nn

SHOW_KEYS = 5
"""How many offending keys an error lists before '... and N more'."""


def weight_files(path: Path) -> list[Path]:
    """The files holding one checkpoint: the file itself, or the shards its index names."""
    if path.name.endswith(".index.json"):
        try:
            index = json.loads(path.read_text())
            names = sorted(set(index["weight_map"].values()))
        except (OSError, ValueError, KeyError) as e:
            raise WeightsError(f"unreadable shard index ({e})", path=path,
                               fix="re-download the snapshot; the index must list every shard in weight_map") from None
        files = [path.parent / n for n in names]
        missing = [f for f in files if not f.is_file()]
        if missing:
            raise WeightsError(f"shard {missing[0].name} named by the index is missing ({len(missing)} of {len(files)})",
                               path=missing[0], fix="re-download the snapshot so every shard is present")
        return files
    return [path]


def read_state_dict(path: Path) -> dict[str, Tensor]:
    """Every tensor of a checkpoint file (or sharded snapshot index), on the CPU."""
    out: dict[str, Tensor] = {}
    for f in weight_files(path):
        out.update(_read_one(f))
    return out


def tensor_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Names and shapes without reading the tensors where the format allows it (safetensors)."""
    out: dict[str, tuple[int, ...]] = {}
    for f in weight_files(path):
        if f.suffix == ".safetensors":
            out.update(_safetensors_shapes(f))
        else:
            out.update({k: tuple(v.shape) for k, v in _read_one(f).items()})
    return out


def _safetensors_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    try:
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            if not 0 < n < 1 << 27:
                raise ValueError("bad header length")
            header = json.loads(f.read(n))
    except (OSError, ValueError) as e:
        raise WeightsError(f"not a readable safetensors file ({e})", path=path,
                           fix="re-download or re-save the file; it may be truncated") from None
    return {k: tuple(v["shape"]) for k, v in header.items() if k != "__metadata__"}


def _read_one(path: Path) -> dict[str, Tensor]:
    import torch

    if not path.is_file():
        raise WeightsError("weights file is missing", path=path, fix="check the path in the config")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        if is_torchscript(path):
            # OpenAI's CLIP release is a TorchScript archive, not a pickle of tensors.
            return {k: v.detach() for k, v in torch.jit.load(str(path), map_location="cpu").state_dict().items()}
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except WeightsError:
        raise
    except Exception as e:  # noqa: BLE001 - truncated zip, bad pickle, wrong format: one user problem
        raise WeightsError(f"cannot read weights ({type(e).__name__}: {e})", path=path,
                           fix="re-download the file; it may be truncated or not a checkpoint") from None
    for wrapper in ("state_dict", "model"):  # training checkpoints wrap the weights
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError("file does not hold a state dict of tensors", path=path,
                           fix="point the config at the weights file itself (safetensors, .bin or OpenAI .pt)")
    return state


def is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any(n.endswith("constants.pkl") or "/code/" in n for n in z.namelist())


@dataclass
class Converted:
    """A state dict renamed to the architecture's keys, with what was dropped on purpose."""

    state: dict[str, Tensor]
    ignored: dict[str, int] = field(default_factory=dict)
    """What was dropped by name -> how many tensors (e.g. {"text tower": 197})."""


def fill_strictly(model: nn.Module, converted: Converted, *, path: Path, fix: str) -> nn.Module:
    """Load `converted.state` into `model` (built on any device, meta too) or raise WeightsError.

    Every persistent parameter and buffer must be present with its exact shape, and no
    tensor may be left over. Returns the model with the file's tensors (assigned, so a
    model built on the meta device needs no memory until now).
    """
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    check_shapes(expected, {k: tuple(v.shape) for k, v in converted.state.items()}, path=path, fix=fix)
    model.load_state_dict(converted.state, strict=True, assign=True)
    return model


def check_file(path: Path, convert: Callable[[dict[str, Tensor]], Converted], model_cls: type, config: Any, *,
               fix: str) -> dict[str, int]:
    """Verify from names and shapes alone (no tensor read from a safetensors file) that the checkpoint
    at `path`, renamed by `convert`, fills `model_cls(config)`; returns what `convert` ignored by name.
    Raises WeightsError exactly as loading the file would."""
    import torch

    raw = tensor_shapes(path)
    try:
        conv = convert({k: torch.empty(s, device="meta") for k, s in raw.items()})
        with torch.device("meta"):
            expected = {k: tuple(v.shape) for k, v in model_cls(config).state_dict().items()}
        check_shapes(expected, {k: tuple(v.shape) for k, v in conv.state.items()}, path=path, fix=fix)
    except (WeightsError, KeyError, ValueError, RuntimeError) as e:
        other, mine = looks_like(raw), _family(model_cls)
        if other is None or mine is None or other == mine:
            raise
        raise WeightsError(f"a {other} checkpoint, not {mine}'s ({len(raw)} tensors named as {other} names them)",
                           path=path, fix=without_arch(fix)) from e
    return conv.ignored


SIGNATURES = (  # (encoder, a tensor name only its checkpoints have): the first match names a file
    ("DINOv3", "embeddings.register_tokens"), ("V-JEPA 2", "patch_embeddings.proj.weight"),
    ("VideoMAE", "attention.attention.q_bias"), ("SigLIP 2", "vision_model.head.probe"),
    ("DINOv2", "layer_scale1.lambda1"), ("CLIP", "vision_model.pre_layrnorm.weight"),
    ("CLIP", "visual.class_embedding"),
)  # timm's names (blocks.N.attn.qkv) are no signature: CLIP's timm repo and DINOv2's hub file share them
_FAMILIES = {"CLIP": "CLIP", "Dinov2": "DINOv2", "DINOv3": "DINOv3", "VideoMAE": "VideoMAE", "Siglip": "SigLIP 2",
             "VJEPA": "V-JEPA 2"}


def looks_like(names: Iterable[str]) -> str | None:
    """Which encoder's checkpoint a file of these tensor names is (None: none that slt-pipe knows)."""
    names = list(names)
    return next((enc for enc, mark in SIGNATURES if any(n.endswith(mark) or n.startswith(mark) for n in names)), None)


def _family(model_cls: Any) -> str | None:
    name = getattr(model_cls, "__name__", "")
    return next((fam for key, fam in _FAMILIES.items() if key.lower() in name.lower()), None)


def without_arch(fix: str) -> str:
    """An encoder's fix without its `arch` alternative: a file of another encoder is no size question."""
    return fix.split("; or, for a checkpoint of another size")[0]


def check_shapes(expected: dict[str, tuple[int, ...]], found: dict[str, tuple[int, ...]], *, path: Path, fix: str) -> None:
    """WeightsError unless `found` has exactly the keys of `expected`, with the same shapes."""
    missing = sorted(set(expected) - set(found), key=_natural)
    unexpected = sorted(set(found) - set(expected), key=_natural)
    wrong = [f"{k} {list(found[k])} (needs {list(expected[k])})" for k in sorted(set(expected) & set(found), key=_natural)
             if tuple(found[k]) != tuple(expected[k])]
    if not (missing or unexpected or wrong):
        return
    parts = []
    if missing:
        parts.append(f"missing {len(missing)} of {len(expected)} tensors: {_show(missing)}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected: {_show(unexpected)}")
    if wrong:
        parts.append(f"{len(wrong)} mis-shaped: {_show(wrong)}")
    raise WeightsError("weights do not fill the architecture: " + "; ".join(parts), path=path, fix=fix)


def _show(keys: list[str]) -> str:
    more = f" ... and {len(keys) - SHOW_KEYS} more" if len(keys) > SHOW_KEYS else ""
    return ", ".join(keys[:SHOW_KEYS]) + more


def _natural(key: str) -> tuple:
    return tuple(int(p) if p.isdigit() else p for p in key.split("."))


def split_qkv(prefix: str, weight: Tensor, bias: Tensor | None, names: Iterable[str] = ("q_proj", "k_proj", "v_proj"),
              ) -> dict[str, Tensor]:
    """A fused [3D, D] in-projection (OpenAI/open_clip `in_proj_*`, timm `qkv`) as three projections."""
    out = {}
    for name, w in zip(names, weight.chunk(3, dim=0)):
        out[f"{prefix}.{name}.weight"] = w
    if bias is not None:
        for name, b in zip(names, bias.chunk(3, dim=0)):
            out[f"{prefix}.{name}.bias"] = b
    return out


# --------------------------------------------------------------------------- identity


def files_identity(files: Iterable[Path]) -> list[dict[str, Any]]:
    """name, size and sha256 of each weights file actually read (the cache key hashes these; each
    file is hashed once per path, size and mtime)."""
    from cache.sonar_models import file_identity

    return [file_identity(p) for p in files]


# --------------------------------------------------------------------------- architectures


def architecture(config_cls: type, archs: dict[str, dict[str, Any]], arch: str, snapshot: Path | None, *,
                 setting: str, inner: tuple[str, str] | None = None) -> Any:
    """The transformers config the weights must fill: `archs[arch]`, or with arch 'snapshot' the
    snapshot's own config.json (`inner` = (model_type, key): read that sub-config of a composite
    model's file, e.g. ("clip", "vision_config")). WeightsError naming the setting otherwise."""
    if arch != "snapshot":
        if arch not in archs:
            raise WeightsError(f"unknown {setting} {arch!r}", fix=f"use one of {', '.join([*archs, 'snapshot'])}")
        config = config_cls(**archs[arch])
        other = _snapshot_size(snapshot, inner)
        if other is not None and other != (config.num_hidden_layers, config.hidden_size):
            raise WeightsError(f"the snapshot is {other[0]} layers x {other[1]} (its config.json), the configured "
                               f"{setting} {arch!r} is {config.num_hidden_layers} x {config.hidden_size}",
                               path=snapshot / "config.json",
                               fix=f"{setting_fix(setting, 'snapshot')} to use the snapshot's own architecture")
        return config
    path = snapshot / "config.json" if snapshot is not None else None
    if path is None or not path.is_file():
        raise WeightsError(f"{setting} = 'snapshot' needs the snapshot's config.json", path=path,
                           fix=f"restore config.json from the snapshot, or set {setting} = {next(iter(archs))!r}")
    raw = _config_json(path, inner)
    keys = set(config_cls().to_dict())
    return config_cls(**{k: v for k, v in raw.items() if k in keys and k not in ("model_type", "architectures")})


def _config_json(path: Path, inner: tuple[str, str] | None) -> dict[str, Any]:
    raw = json.loads(path.read_text())
    if inner is not None and raw.get("model_type") == inner[0]:
        raw = raw.get(inner[1], raw)
    return raw


def _snapshot_size(snapshot: Path | None, inner: tuple[str, str] | None) -> tuple[int, int] | None:
    """(layers, width) a snapshot's config.json declares; None without one (a single weights file)."""
    path = snapshot / "config.json" if snapshot is not None else None
    if path is None or not path.is_file():
        return None
    try:
        raw = _config_json(path, inner)
        return int(raw["num_hidden_layers"]), int(raw["hidden_size"])
    except (KeyError, TypeError, ValueError):  # another model's file: the strict fill names what is wrong
        return None


def foreign_file(what: str, names: Iterable[str], path: Path, fix: str) -> WeightsError:
    """The error for a file none of whose tensors is named like a `what` checkpoint's: which encoder it
    looks like when slt-pipe knows (then no `arch` advice: it is another model, not another size)."""
    names = sorted(names)
    other = looks_like(names)
    if other is not None:
        return WeightsError(f"not a {what} checkpoint: it looks like a {other} checkpoint ({len(names)} tensors "
                            f"named as {other}'s are)", path=path, fix=without_arch(fix))
    return WeightsError(f"not a {what} checkpoint: none of its {len(names)} tensors is named like one "
                        f"(e.g. {', '.join(names[:3]) or 'no tensors'})", path=path, fix=fix)

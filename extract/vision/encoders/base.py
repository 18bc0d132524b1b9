"""What every feature encoder declares, and the registry their subclasses fill.

An encoder is picklable and holds no tensors: it resolves its weights when constructed
(finds the files, detects their format, checks from names and shapes that they fill the
architecture; `WeightsError` otherwise), prepares uint8 views of the frames on the CPU
(decode tasks), and on the device `build`s its model (every parameter from the file) and
`encode`s batches. Its `identity` is what the features' cache key records about it.

`SpatialEncoder` is SpaMo's spatial recipe for any image transformer: the image processor's
crop, normalised on the device, S2 views (`extract.spatial_scales`), one token per image.
`MotionEncoder` is the motion recipe: the crop of every frame, `clip_len`-frame clips, one
vector per clip from the last layer's tokens (`extract.motion_pool`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from cache.errors import SltPipeError

if TYPE_CHECKING:  # torch and numpy load where they are used: a cached run keys without them
    import numpy as np
    from torch import Tensor, nn

    from extract.config import ExtractConfig
    from extract.vision.preprocess import ImageRecipe

Kind = Literal["frame", "clip"]
ENCODERS: dict[str, type["Encoder"]] = {}
"""Registry: encoder name (what `extract.streams` lists) -> class. Filled by subclassing."""


def encoder_class(name: str) -> type["Encoder"]:
    try:
        return ENCODERS[name]
    except KeyError:
        raise SltPipeError(f"unknown feature encoder {name!r} in extract.streams",
                           fix=f"use registered encoders: {', '.join(sorted(ENCODERS))}") from None


@dataclass(frozen=True)
class Resolved:
    """An encoder's weights, found and checked, and the architecture they fill (no tensor loaded)."""

    weights: Any
    """The located checkpoint (path, format, found, snapshot), or None for random-init benchmarks."""
    config: Any
    """The transformers config of the architecture the weights fill."""
    ignored: dict[str, int] = field(default_factory=dict)
    """Tensors the file holds that the encoder does not use, by why (e.g. a text tower)."""
    recipe: ImageRecipe | None = None
    """The image processor's resize, crop and normalisation (paper encoders)."""

    def files(self) -> list[Path]:
        """Every file resolving read: weights, shards, the snapshot's configs."""
        from extract.vision.weights import weight_files

        w = self.weights
        if w is None:
            return []
        out = [w.path, *weight_files(w.path)]
        if w.snapshot is not None:
            out += [w.snapshot / "config.json", w.snapshot / "preprocessor_config.json"]
        return out


class Encoder:
    """One feature stream. Subclasses set the class attributes and implement the hooks."""

    name: ClassVar[str] = ""
    """Registry name, as `extract.streams` lists it."""
    title: ClassVar[str] = ""
    """Display name (doctor's rows, progress)."""
    kind: ClassVar[Kind]
    """frame: one vector per frame (spatial features); clip: one per clip (motion features)."""
    family: ClassVar[Literal["paper", "tiny"]] = "paper"
    """tiny encoders are seeded in-memory models for the toy; a run never mixes the two families."""
    formats: ClassVar[tuple[str, ...]] = ()
    """Weight formats the strict loader reads."""
    token: ClassVar[str] = ""
    """Which output is the feature (recorded in the identity)."""
    archs: ClassVar[dict[str, dict[str, Any]]] = {}
    """The architectures `extract.<name>.arch` may name (besides 'snapshot'); {}: none to choose."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        name = cls.__dict__.get("name")
        if name:
            if name in ENCODERS and ENCODERS[name].__qualname__ != cls.__qualname__:
                raise RuntimeError(f"two encoders are named {name!r}: {ENCODERS[name]} and {cls}")
            ENCODERS[name] = cls

    def __init__(self, cfg: ExtractConfig, *, random_init: bool = False):
        self.cfg = cfg
        self.random_init = random_init
        self.resolved = _memo_resolve(self)

    # ---------------------------------------------------------------- hooks

    def settings(self) -> tuple:
        """The config values that select the weights (the resolve memo's key)."""
        return ()

    def resolve(self) -> Resolved:
        """Find and check the weights (or, with random_init, the paper architecture alone)."""
        raise NotImplementedError

    def width(self) -> int:
        """Length of one feature vector."""
        raise NotImplementedError

    def views(self) -> dict[str, Any]:
        """The CPU views this encoder reads, by name: each a picklable, hashable callable
        (uint8 frames [T, H, W, 3] or the squashed PIL frames -> uint8 [T, h, w, 3]); encoders
        that want the same view (equal callables) share one computation (`Recipe.prepare`)."""
        assert self.resolved.recipe is not None
        return {"crop": ProcessorCrop(self.resolved.recipe)}

    def build(self) -> nn.Module:
        """The model on the CPU in float32, eval mode, every parameter from the weights."""
        raise NotImplementedError

    def encode(self, model: nn.Module, views: dict[str, Tensor], precision: Any) -> Tensor:
        """A batch of prepared views (uint8 on the model's device) -> float32 [B, width]."""
        raise NotImplementedError

    def identity(self) -> dict[str, Any]:
        raise NotImplementedError

    def flops(self) -> float:
        """Analytic forward FLOPs per frame (frame encoders) or per clip (clip encoders)."""
        raise NotImplementedError

    def max_decode_side(self) -> int | None:
        """Longest frame side worth decoding (None: the original frames, as image processors see them)."""
        return None

    # ---------------------------------------------------------------- shared

    def weights_identity(self, library: str, arch_keys: tuple[str, ...]) -> dict[str, Any]:
        """The identity of resolved weights: library, format, where found, sha256 of the files, architecture."""
        from extract.vision.weights import files_identity, weight_files

        r = self.resolved
        arch = {k: getattr(r.config, k) for k in arch_keys}
        if r.weights is None:
            return {"library": library, "weights": "random-init (benchmark only)", "arch": arch}
        return {"library": library, "format": r.weights.format, "found": r.weights.found,
                "weights": files_identity(weight_files(r.weights.path)), "ignored_by_name": r.ignored, "arch": arch}

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "width": self.width(), "token": self.token}


class SpatialEncoder(Encoder):
    """A per-frame image transformer run SpaMo's way: the processor crop, normalised, S2 tiles, one token each."""

    kind: ClassVar[Kind] = "frame"

    def patch_token(self, model: nn.Module, pixel_values: Tensor) -> Tensor:
        """float [N, 3, S, S] -> [N, D]: the token this encoder takes."""
        raise NotImplementedError

    def hidden_size(self) -> int:
        return int(self.resolved.config.hidden_size)

    def width(self) -> int:
        return self.hidden_size() * len(self.cfg.spatial_scales)

    def encode(self, model: nn.Module, views: dict[str, Tensor], precision: Any) -> Tensor:
        import torch

        from extract.vision.preprocess import normalise, s2_tiles

        r = self.resolved.recipe
        assert r is not None
        x = normalise(views["crop"], *_norm(r.mean, r.std, views["crop"].device))  # [B, 3, S, S]
        scales = sorted(self.cfg.spatial_scales)
        images = [x if s == 1 else s2_tiles(x, s) for s in scales]
        with precision.context():
            tok = self.patch_token(model, torch.cat(images)).float()
        return average_tiles(tok, x.shape[0], [s * s for s in scales])

    def flops(self) -> float:
        c = self.resolved.config
        size = self.resolved.recipe.crop[0] if self.resolved.recipe else c.image_size
        patches = (size // c.patch_size) ** 2
        one = transformer_flops(patches + 1, c.hidden_size, c.num_hidden_layers, c.intermediate_size,
                                3 * c.patch_size ** 2, patches)
        return one * sum(s * s for s in self.cfg.spatial_scales)


class MotionEncoder(Encoder):
    """A video transformer over `clip_len`-frame clips of the processor crop; one vector per clip."""

    kind: ClassVar[Kind] = "clip"

    def tokens(self, model: nn.Module, pixel_values: Tensor) -> Tensor:
        """float [B, L, 3, S, S] -> the last layer's tokens [B, N, D]."""
        raise NotImplementedError

    def width(self) -> int:
        return int(self.resolved.config.hidden_size)

    def encode(self, model: nn.Module, views: dict[str, Tensor], precision: Any) -> Tensor:
        from extract.vision.preprocess import normalise

        r = self.resolved.recipe
        assert r is not None
        clips = views["crop"]  # [B, L, S, S, 3]
        x = normalise(clips, *_norm(r.mean, r.std, clips.device))
        with precision.context():
            h = self.tokens(model, x)
        return (h[:, 0] if self.cfg.motion_pool == "first" else h.mean(1)).float()

    def flops(self) -> float:
        c = self.resolved.config
        patches = (c.num_frames // c.tubelet_size) * (c.image_size // c.patch_size) ** 2
        return transformer_flops(patches, c.hidden_size, c.num_hidden_layers, c.intermediate_size,
                                 3 * c.tubelet_size * c.patch_size ** 2, patches)


@dataclass(frozen=True)
class ProcessorCrop:
    """A transformers image processor's resize and centre crop (`extract.vision.preprocess.processor_crop`)."""

    recipe: ImageRecipe

    def __call__(self, images: Any) -> np.ndarray:
        from extract.vision.preprocess import processor_crop

        return processor_crop(images, self.recipe)


def average_tiles(tok: Tensor, batch: int, counts: list[int]) -> Tensor:
    """Tokens of [scale-1 images; scale-2 tiles; ...] -> per scale the mean over its tiles, concatenated."""
    import torch

    out, at = [], 0
    for c in counts:
        out.append(tok[at:at + batch * c].view(batch, c, -1).mean(1))
        at += batch * c
    return torch.cat(out, dim=1)


def _norm(mean: tuple[float, ...], std: tuple[float, ...], device: Any) -> tuple[Tensor, Tensor]:
    import torch

    return torch.tensor(mean, device=device), torch.tensor(std, device=device)


def transformer_flops(tokens: int, width: int, layers: int, hidden: int, patch_inputs: int, patches: int) -> float:
    """Analytic forward FLOPs (2 per multiply-add) of a ViT-style encoder: patch embedding,
    then per layer QKV, attention scores and mixing, output projection, and the MLP."""
    n, d = tokens, width
    per_layer = 2 * n * d * 3 * d + 2 * 2 * n * n * d + 2 * n * d * d + 2 * 2 * n * d * hidden
    return float(2 * patches * patch_inputs * d + layers * per_layer)


# --------------------------------------------------------------------------- resolve memo


_MEMO: dict[tuple, tuple[tuple, Resolved]] = {}
"""(encoder, settings, random_init, HF cache) -> (stamp of the files read, the result).

Once per process and config: a command asks for every split's key, the feature widths and
the recipe, and checking a ViT-L from its names and shapes builds it on the meta device.
Done again when a file it read changed size or mtime."""


def _memo_resolve(enc: Encoder) -> Resolved:
    from cache.hf_cache import hf_cache_dir

    key = (enc.name, enc.settings(), enc.random_init, str(hf_cache_dir()))
    hit = _MEMO.get(key)
    if hit is not None and hit[0] == _stamp(hit[1]):
        return hit[1]
    _check_arch(enc)
    resolved = enc.resolve()
    _MEMO[key] = (_stamp(resolved), resolved)
    return resolved


def _check_arch(enc: Encoder) -> None:
    """A configured architecture that does not exist is the error, before any weights are looked for
    (a missing file would hide it until the file is found)."""
    from cache.errors import WeightsError, setting_fix

    arch = getattr(getattr(enc.cfg, enc.name, None), "arch", None)
    if enc.archs and arch is not None and arch != "snapshot" and arch not in enc.archs:
        names = ", ".join([*enc.archs, "snapshot"])
        raise WeightsError(f"unknown extract.{enc.name}.arch {arch!r} (there are {names})",
                           fix=setting_fix(f"extract.{enc.name}.arch", next(iter(enc.archs))))


def _stamp(resolved: Resolved) -> tuple:
    out = []
    for f in resolved.files():
        try:
            st = f.stat()
            out.append((str(f), st.st_size, st.st_mtime_ns))
        except OSError:
            out.append((str(f), None, None))  # absent now or before: a change shows as a different stamp
    return tuple(out)

"""The feature streams of a run (`extract.streams`): recipe, extractor, identity, widths.

Each stream is an encoder from the registry (extract/vision/encoders/). Frame encoders' vectors,
concatenated in `extract.streams` order, are the spatial features [T, Ds]; clip encoders'
vectors the motion features [C, Dm] (16-frame clips, stride 8). The paper profile runs
SpaMo's exact features (shared/reference.md, "Feature compatibility"):
  clip      CLIP ViT-L/14 vision tower, class token before post_layernorm, S2 (1x + the
            2x view's four tiles averaged): 2048-d (extract/vision/encoders/clip.py).
  videomae  VideoMAE-L, first token of the last layer before the final LayerNorm: 1024-d
            (extract/vision/encoders/videomae.py).
  input     the image processors' crops of the PHOENIX frames squashed to 256x256 (SpaMo's
            fullFrame-256x256px; extract.squash).
The tiny profile's `tiny-vit` / `tiny-videomae` (extract/vision/encoders/tiny.py) are seeded models
of the same families; a run never mixes them with paper encoders.

Work is split so that the CPU part (`Recipe.prepare`: squash, resize and crop) runs in the
decode tasks and the device part (normalise, tile, forward) in the model workers, both
through `FeatureExtractor`, which `slt-pipe translate --video` also uses in-process.
"""

from __future__ import annotations

import functools
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from cache.device import resolve_device
from extract.config import ExtractConfig
from extract.vision.encoders import Encoder, encoder_class

if TYPE_CHECKING:  # torch, numpy and the model libraries load where they are used: a cached run keys without them
    import numpy as np
    import torch
    from torch import Tensor, nn


def stream_classes(cfg: ExtractConfig) -> list[type[Encoder]]:
    """The encoder classes `extract.streams` names, each once and of one family (SltPipeError
    otherwise). A subset of a set's streams is valid too: extraction computes only the missing ones."""
    from cache.errors import SltPipeError

    classes = [encoder_class(name) for name in cfg.streams]
    if len(set(cfg.streams)) != len(cfg.streams):
        raise SltPipeError(f"extract.streams = {cfg.streams} names an encoder twice", fix="list each encoder once")
    if len({c.family for c in classes}) > 1:
        raise SltPipeError(f"extract.streams = {cfg.streams} mixes the tiny and the paper encoders",
                           fix="use tiny-vit and tiny-videomae together (--profile tiny), or neither")
    return classes


def check_stream_set(cfg: ExtractConfig) -> list[type[Encoder]]:
    """`stream_classes`, and a set the visual block can read: at least one frame and one clip encoder."""
    from cache.errors import SltPipeError

    classes = stream_classes(cfg)
    if {c.kind for c in classes} != {"frame", "clip"}:
        raise SltPipeError(f"extract.streams = {cfg.streams} needs at least one frame encoder and one clip encoder "
                           "(the visual block reads spatial and motion features)",
                           fix='e.g. extract.streams = ["clip", "videomae"]')
    return classes


def encoders(cfg: ExtractConfig, *, random_init: bool = False) -> tuple[Encoder, ...]:
    """The run's encoders, weights resolved and checked (WeightsError naming file and fix otherwise)."""
    return tuple(c(cfg, random_init=random_init) for c in stream_classes(cfg))


def is_tiny(cfg: ExtractConfig) -> bool:
    """The run uses the tiny family (seeded in-memory models, no weights files)."""
    return all(encoder_class(name).family == "tiny" for name in cfg.streams)


def clip_count(frames: int, clip_len: int = 16, stride: int = 8) -> int:
    """Clips of a video of `frames` frames (the rows of `clip_index`): floor((T - L) / S) + 1, one for a
    video shorter than a clip, none without frames. Extraction and doctor's disk estimate both count so."""
    if frames <= 0:
        return 0
    return 1 if frames < clip_len else (frames - clip_len) // stride + 1


DTYPE_BYTES = {"float16": 2, "float32": 4, "bfloat16": 2}


def feature_bytes(frames: Sequence[int], dims: tuple[int, int], dtype: str, clip_len: int = 16, stride: int = 8) -> int:
    """Bytes of the features of videos of `frames` frames (before compression): sum T x spatial width +
    sum C x motion width, times the dtype's size (`slt-pipe doctor`'s disk estimate)."""
    clips = sum(clip_count(t, clip_len, stride) for t in frames)
    return (sum(frames) * dims[0] + clips * dims[1]) * DTYPE_BYTES[dtype]


def clip_index(frames: int, clip_len: int, stride: int) -> np.ndarray:
    """[C, clip_len] frame indices of the sliding clips (SpaMo: windows past the end are dropped;
    a video shorter than one clip is padded by repeating its last frame)."""
    import numpy as np

    if frames <= 0:
        raise ValueError("a video needs at least one frame")
    if frames < clip_len:
        return np.minimum(np.arange(clip_len), frames - 1)[None]
    starts = np.arange(clip_count(frames, clip_len, stride)) * stride
    return starts[:, None] + np.arange(clip_len)[None]


# --------------------------------------------------------------------------- the recipe


@dataclass(frozen=True)
class Recipe:
    """Everything the CPU side needs to turn decoded frames into model inputs (picklable)."""

    encoders: tuple[Encoder, ...]
    squash: int | None = None
    """Side of the square every frame is squashed to before the paper encoders' processors (PHOENIX: 256)."""

    @property
    def frame_keys(self) -> tuple[str, ...]:
        """View names the frame encoders read (`{encoder}/{view}`)."""
        return tuple(k for e in self.encoders if e.kind == "frame" for k in self._keys(e))

    @property
    def clip_keys(self) -> tuple[str, ...]:
        """View names the clip encoders cut their clips from."""
        return tuple(k for e in self.encoders if e.kind == "clip" for k in self._keys(e))

    def _keys(self, enc: Encoder) -> list[str]:
        return [f"{enc.name}/{v}" for v in enc.views()]

    def max_decode_side(self) -> int | None:
        """Longest side worth decoding (None: the original frames, as the image processors see them)."""
        sides = [e.max_decode_side() for e in self.encoders]
        return None if any(s is None for s in sides) else max(sides)  # type: ignore[type-var]

    def prepare(self, frames: np.ndarray) -> dict[str, np.ndarray]:
        """Decoded uint8 [T, H, W, 3] -> named uint8 views (all [T, h, w, 3])."""
        from extract.vision.preprocess import squash

        images: Any = squash(frames, self.squash) if self.squash else frames  # once, for every processor
        made: dict[Any, np.ndarray] = {}  # a view two encoders share (tiny: the 1x crop) is made once
        out = {}
        for e in self.encoders:
            for name, view in e.views().items():
                if view not in made:
                    made[view] = view(images)
                out[f"{e.name}/{name}"] = made[view]
        return out

    def to_json(self) -> dict[str, Any]:
        from extract.vision.preprocess import SQUASH_RESAMPLER

        out: dict[str, Any] = {"squash": (f"{self.squash}x{self.squash} ({SQUASH_RESAMPLER}, a no-op on frames "
                                          "already that size, e.g. fullFrame-256x256px)") if self.squash else "none"}
        for e in self.encoders:
            if e.resolved.recipe is not None:
                out[e.name] = e.resolved.recipe.to_json()
        if any(e.kind == "frame" and e.family == "paper" for e in self.encoders):
            out["s2"] = "normalised crop upsampled with F.interpolate(bicubic), tiles' tokens averaged"
        return out


def make_recipe(cfg: ExtractConfig, *, random_init: bool = False) -> Recipe:
    from extract.vision.preprocess import squash_side

    encs = encoders(cfg, random_init=random_init)
    tiny = all(e.family == "tiny" for e in encs)
    side = None if tiny else squash_side(cfg.squash if cfg.squash != "auto" else "none")
    return Recipe(encs, side)


def feature_dims(cfg: ExtractConfig, *, random_init: bool = False) -> tuple[int, int]:
    """(spatial, motion) widths of the set from the registry, without building the models."""
    check_stream_set(cfg)
    encs = encoders(cfg, random_init=random_init)
    return (sum(e.width() for e in encs if e.kind == "frame"), sum(e.width() for e in encs if e.kind == "clip"))


def stream_layout(cfg: ExtractConfig, *, random_init: bool = False) -> list[dict[str, Any]]:
    """Which columns of the set's spatial / motion features each encoder fills (recorded in the entry)."""
    check_stream_set(cfg)
    out, at = [], {"frame": 0, "clip": 0}
    for e in encoders(cfg, random_init=random_init):
        w = e.width()
        out.append({"name": e.name, "kind": e.kind, "array": "spatial" if e.kind == "frame" else "motion",
                    "columns": [at[e.kind], at[e.kind] + w]})
        at[e.kind] += w
    return out


def model_identity(cfg: ExtractConfig, *, random_init: bool = False) -> dict[str, Any]:
    """What determines the set's features: each encoder and its weights (sha256 of the files actually
    loaded), token choice and preprocessing. Raises WeightsError when weights are absent or do
    not fill their architecture."""
    check_stream_set(cfg)
    return encoder_identity(cfg, random_init=random_init)


def encoder_identity(cfg: ExtractConfig, *, random_init: bool = False) -> dict[str, Any]:
    """`model_identity` of any subset of a set's streams (one: what keys a stream entry)."""
    recipe = make_recipe(cfg, random_init=random_init)
    return {"streams": [e.identity() for e in recipe.encoders], "recipe": recipe.to_json()}


# --------------------------------------------------------------------------- the extractor


def _inference_mode(fn: Callable) -> Callable:
    """`torch.inference_mode()` as a decorator that imports torch when the method runs, not at import."""
    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        import torch

        with torch.inference_mode():
            return fn(*args, **kwargs)

    return run


@dataclass
class Precision:
    """Compute precision (storage dtype is separate: ExtractConfig.dtype)."""

    device: str
    autocast: str | None

    def context(self):
        import torch

        if self.autocast is None:
            return nullcontext()
        return torch.autocast(self.device, dtype=getattr(torch, self.autocast))


class FeatureExtractor:
    """Every stream's model on one device; the one code path for model workers and on-the-fly translation.

    `spatial(frames)` / `motion(frames)` take raw uint8 [T, H, W, 3] frames of one video; the
    batch methods take already prepared views/clips (the hot path; batches span videos).
    """

    def __init__(self, cfg: ExtractConfig, device: str | torch.device = "auto", *, random_init: bool = False):
        self.cfg = cfg
        self.device = resolve_device(device) if isinstance(device, str) else device
        self.precision = Precision(self.device.type, cfg.autocast if self.device.type == "cuda" and cfg.autocast != "none" else None)
        self.recipe = make_recipe(cfg, random_init=random_init)
        self.frame_encoders = [e for e in self.recipe.encoders if e.kind == "frame"]
        self.clip_encoders = [e for e in self.recipe.encoders if e.kind == "clip"]
        self.models: dict[str, nn.Module] = {e.name: e.build().eval().to(self.device) for e in self.recipe.encoders}
        self.spatial_dim = sum(e.width() for e in self.frame_encoders)
        self.motion_dim = sum(e.width() for e in self.clip_encoders)
        self.frames_forwarded = 0
        self.clips_forwarded = 0

    def _to_device(self, x: np.ndarray | Tensor) -> Tensor:
        import numpy as np
        import torch

        t = torch.from_numpy(x) if isinstance(x, np.ndarray) else x
        if self.device.type == "cuda":
            # Pinned + non_blocking: the host queues the copy and goes on preparing the next batch.
            return t.pin_memory().to(self.device, non_blocking=True)
        return t

    def _run(self, encs: list[Encoder], views: dict[str, np.ndarray | Tensor]) -> Tensor:
        import torch

        out = []
        for e in encs:
            mine = {k.split("/", 1)[1]: self._to_device(v) for k, v in views.items() if k.startswith(f"{e.name}/")}
            out.append(e.encode(self.models[e.name], mine, self.precision))
        return torch.cat(out, dim=1)

    @_inference_mode
    def spatial_batch(self, views: dict[str, np.ndarray | Tensor]) -> Tensor:
        """Prepared views (`Recipe.frame_keys`, each uint8 [B, h, w, 3]) -> float [B, Ds] on the device."""
        out = self._run(self.frame_encoders, views)
        self.frames_forwarded += out.shape[0]
        return out

    @_inference_mode
    def motion_batch(self, clips: dict[str, np.ndarray | Tensor]) -> Tensor:
        """uint8 clips (`Recipe.clip_keys`, each [B, L, S, S, 3]) -> float [B, Dm] on the device (not synchronised)."""
        out = self._run(self.clip_encoders, clips)
        self.clips_forwarded += out.shape[0]
        return out

    def prepare(self, frames: np.ndarray) -> dict[str, np.ndarray]:
        return self.recipe.prepare(frames)

    def spatial(self, frames: np.ndarray, views: dict[str, np.ndarray] | None = None) -> np.ndarray:
        """One video's raw uint8 [T, H, W, 3] -> float32 [T, Ds]."""
        import torch

        views = views if views is not None else self.prepare(frames)
        B = self.cfg.batches(self.device.type)[0]
        keys = self.recipe.frame_keys
        out = [self.spatial_batch({k: views[k][i:i + B] for k in keys}) for i in range(0, len(frames), B)]
        return torch.cat(out).cpu().numpy()

    def motion(self, frames: np.ndarray, views: dict[str, np.ndarray] | None = None) -> np.ndarray:
        """One video's raw uint8 [T, H, W, 3] -> float32 [C, Dm]."""
        import torch

        views = views if views is not None else self.prepare(frames)
        index = clip_index(len(frames), self.cfg.clip_len, self.cfg.clip_stride)
        clips = {k: views[k][index] for k in self.recipe.clip_keys}
        B = self.cfg.batches(self.device.type)[1]
        return torch.cat([self.motion_batch({k: c[i:i + B] for k, c in clips.items()})
                          for i in range(0, len(index), B)]).cpu().numpy()

    def flops(self) -> tuple[float, float]:
        """(FLOPs per frame of all frame encoders, per clip of all clip encoders), counted analytically."""
        return sum(e.flops() for e in self.frame_encoders), sum(e.flops() for e in self.clip_encoders)


def weight_paths(cfg: ExtractConfig) -> dict[str, Path]:
    """'<encoder> weights' -> the file or snapshot folder each encoder loads, as resolved here: the
    paths every node of a cluster must see (a node reading its own hub cache would compute others)."""
    return {f"{e.name} weights": Path(e.resolved.weights.path) for e in make_recipe(cfg).encoders
            if getattr(e, "resolved", None) is not None and e.resolved.weights is not None}

"""The tiny profile's encoders: seeded in-memory models of the paper families, for the toy.

`tiny-vit` is a timm VisionTransformer, `tiny-videomae` a transformers VideoMAEModel, both
at tiny sizes with a unit-gain init, and a fast torch resize instead of the image
processors. They need no files; the paper path never reaches them (tests/forbid_tiny_cli.py).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from extract.vision.encoders.base import MotionEncoder, Resolved, SpatialEncoder, average_tiles
from extract.vision.preprocess import CLIP_MEAN, CLIP_STD, IMAGENET_MEAN, IMAGENET_STD

if TYPE_CHECKING:
    import numpy as np
    from torch import Tensor, nn

TINY_SEED = 0
TINY_VIT_ARCH: dict[str, Any] = dict(patch_size=16, embed_dim=64, depth=2, num_heads=4, mlp_ratio=2.0, pre_norm=True,
                                     num_classes=0, act_layer="quick_gelu")
"""timm VisionTransformer settings of the tiny spatial model (besides img_size)."""
TINY_VIDEOMAE_ARCH: dict[str, Any] = dict(patch_size=16, tubelet_size=2, hidden_size=64, num_hidden_layers=2,
                                          num_attention_heads=4, intermediate_size=128, use_mean_pooling=False)
"""transformers VideoMAEConfig settings of the tiny motion model (besides image_size and num_frames)."""
TINY_INIT = "unit gain: 2-d params randn/sqrt(fan_in), cls_token/pos_embed randn*0.5, generator seed+2, sorted names"
"""How `_rescale_init` draws the tiny weights; change this text whenever that function changes."""
TINY_LIBRARIES = ("torch", "timm", "transformers")
"""The libraries whose code generates the tiny weights from the seed (their versions are in the identity)."""
TINY_RESIZE = "torch bicubic-antialias shortest side (rounded), centre crop"
"""How the tiny encoders make model inputs."""


class TinyVit(SpatialEncoder):
    """Class token of a seeded tiny timm ViT's last block (before the final norm); S2 as resized tiles."""

    name = "tiny-vit"
    title = "tiny ViT"
    family: ClassVar[Literal["paper", "tiny"]] = "tiny"
    token = "cls of last block, before final norm"

    def resolve(self) -> Resolved:
        return Resolved(None, None)

    def hidden_size(self) -> int:
        return int(TINY_VIT_ARCH["embed_dim"])

    def max_decode_side(self) -> int | None:
        return 2 * max([*self.cfg.spatial_scales, 1]) * self.cfg.image_size

    def views(self) -> dict[str, Any]:
        return {f"x{s}": TinyView(s * self.cfg.image_size) for s in self.cfg.spatial_scales}

    def build(self) -> nn.Module:
        return tiny_vit(self.cfg.image_size)

    def encode(self, model: nn.Module, views: dict[str, Tensor], precision: Any) -> Tensor:
        import torch

        from extract.vision.preprocess import normalise

        S = self.cfg.image_size
        scales = sorted(self.cfg.spatial_scales)
        images = []
        for s in scales:
            x = views[f"x{s}"]  # [B, sS, sS, 3]
            if s > 1:  # cut the s-times view into s*s tiles of S, each a model input
                b = x.shape[0]
                x = x.view(b, s, S, s, S, 3).permute(0, 1, 3, 2, 4, 5).reshape(b * s * s, S, S, 3)
            images.append(x)
        mean, std = (torch.tensor(v, device=images[0].device) for v in (CLIP_MEAN, CLIP_STD))
        x = normalise(torch.cat(images), mean, std)
        with precision.context():
            tok = vit_cls_pre_norm(model, x).float()
        return average_tiles(tok, views[f"x{scales[0]}"].shape[0], [s * s for s in scales])

    def flops(self) -> float:
        from extract.vision.encoders.base import transformer_flops

        a, size = TINY_VIT_ARCH, self.cfg.image_size
        patches = (size // a["patch_size"]) ** 2
        one = transformer_flops(patches + 1, a["embed_dim"], a["depth"], int(a["embed_dim"] * a["mlp_ratio"]),
                                3 * a["patch_size"] ** 2, patches)
        return one * sum(s * s for s in self.cfg.spatial_scales)

    def identity(self) -> dict[str, Any]:
        return {**self.describe(), "library": "timm", "resize": TINY_RESIZE, "image_size": self.cfg.image_size,
                "scales": sorted(self.cfg.spatial_scales), "norm": {"mean": list(CLIP_MEAN), "std": list(CLIP_STD)},
                "weights": {"seed": TINY_SEED, "arch": {"img_size": self.cfg.image_size, **TINY_VIT_ARCH},
                            **_generated()}}


class TinyVideoMAE(MotionEncoder):
    """A seeded tiny transformers VideoMAEModel; the clip vector from last_hidden_state (after its LayerNorm)."""

    name = "tiny-videomae"
    title = "tiny VideoMAE"
    family: ClassVar[Literal["paper", "tiny"]] = "tiny"
    token = "last_hidden_state (after the final LayerNorm)"

    def resolve(self) -> Resolved:
        return Resolved(None, None)  # nothing to find; transformers loads only when the model is built

    def width(self) -> int:
        return int(TINY_VIDEOMAE_ARCH["hidden_size"])

    def flops(self) -> float:
        from extract.vision.encoders.base import transformer_flops

        a, size = TINY_VIDEOMAE_ARCH, self.cfg.image_size
        patches = (self.cfg.clip_len // a["tubelet_size"]) * (size // a["patch_size"]) ** 2
        return transformer_flops(patches, a["hidden_size"], a["num_hidden_layers"], a["intermediate_size"],
                                 3 * a["tubelet_size"] * a["patch_size"] ** 2, patches)

    def max_decode_side(self) -> int | None:
        return 2 * self.cfg.image_size

    def views(self) -> dict[str, Any]:
        return {"crop": TinyView(self.cfg.image_size)}  # tiny-vit's 1x view: computed once for both

    def build(self) -> nn.Module:
        return tiny_videomae(self.cfg.image_size, self.cfg.clip_len)

    def encode(self, model: nn.Module, views: dict[str, Tensor], precision: Any) -> Tensor:
        import torch

        from extract.vision.preprocess import normalise

        clips = views["crop"]
        mean, std = (torch.tensor(v, device=clips.device) for v in (IMAGENET_MEAN, IMAGENET_STD))
        with precision.context():
            h = model(pixel_values=normalise(clips, mean, std)).last_hidden_state
        return (h[:, 0] if self.cfg.motion_pool == "first" else h.mean(1)).float()

    def identity(self) -> dict[str, Any]:
        return {**self.describe(), "library": "transformers.VideoMAEModel", "pool": self.cfg.motion_pool,
                "resize": TINY_RESIZE, "norm": {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)},
                "weights": {"seed": TINY_SEED + 1, "arch": {"image_size": self.cfg.image_size,
                                                            "num_frames": self.cfg.clip_len, **TINY_VIDEOMAE_ARCH},
                            **_generated()}}


def _generated() -> dict[str, Any]:
    return {"init": TINY_INIT, "init_seed": TINY_SEED + 2, "libraries": dict(library_versions(TINY_LIBRARIES))}


@functools.lru_cache(maxsize=None)
def library_versions(names: tuple[str, ...]) -> dict[str, str]:
    """Installed versions, read from package metadata (importing torch or timm would cost seconds)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in names:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


# --------------------------------------------------------------------------- preprocessing


@dataclass(frozen=True)
class TinyView:
    """uint8 [T, H, W, 3] -> uint8 [T, side, side, 3]: shortest side resized to `side`, centre-cropped."""

    side: int

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        return prepare_view(frames, self.side)


def prepare_view(frames: np.ndarray, side: int, *, chunk: int = 64) -> np.ndarray:
    """`TinyView(side)`: vectorised over frames with torch (antialiased bicubic); `chunk` bounds
    the float32 working memory on large video frames."""
    import numpy as np
    import torch

    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)
    parts = [_resize_crop(x[i:i + chunk], side) for i in range(0, x.shape[0], chunk)]
    return torch.cat(parts).permute(0, 2, 3, 1).contiguous().numpy()


def _resize_crop(x: Tensor, side: int) -> Tensor:
    import torch
    from torch import nn

    h, w = x.shape[-2:]
    k = side / min(h, w)
    nh, nw = max(side, round(h * k)), max(side, round(w * k))
    if (nh, nw) != (h, w):
        y = nn.functional.interpolate(x.float(), size=(nh, nw), mode="bicubic", antialias=True, align_corners=False)
        x = y.round_().clamp_(0, 255).to(torch.uint8)
    top, left = (nh - side) // 2, (nw - side) // 2
    return x[:, :, top:top + side, left:left + side]


# --------------------------------------------------------------------------- models


def tiny_vit(image_size: int) -> nn.Module:
    import torch
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(TINY_SEED)
    model = VisionTransformer(img_size=image_size, **TINY_VIT_ARCH)
    _rescale_init(model)
    return model.eval()


def _videomae_config(image_size: int, clip_len: int) -> Any:
    from transformers import VideoMAEConfig

    return VideoMAEConfig(image_size=image_size, num_frames=clip_len, **TINY_VIDEOMAE_ARCH)


def tiny_videomae(image_size: int, clip_len: int) -> nn.Module:
    import torch
    from transformers import VideoMAEModel

    torch.manual_seed(TINY_SEED + 1)
    model = VideoMAEModel(_videomae_config(image_size, clip_len))
    _rescale_init(model)
    return model.eval()


def _rescale_init(model: nn.Module) -> None:
    """Unit-gain init (std 1/sqrt(fan_in)) instead of the pre-training init (std 0.02).

    Why: with std 0.02 an untrained transformer is nearly the identity on its input tokens and
    attention is uniform, so a class token learns nothing about where a shape is; unit gain
    keeps attention content-dependent, so random tiny features still carry colour and shape.
    Described by TINY_INIT in the identity: keep the two in step.
    """
    import torch

    gen = torch.Generator().manual_seed(TINY_SEED + 2)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if p.dim() == 2:
                p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(p.shape[1]))
            elif name.endswith(("cls_token", "pos_embed")):
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)


def vit_cls_pre_norm(vit: nn.Module, x: Tensor) -> Tensor:
    """Class token of the last block's output, before the final norm (timm tiny ViT)."""
    x = vit.patch_embed(x)
    x = vit._pos_embed(x)
    x = vit.norm_pre(x)
    x = vit.blocks(x)
    return x[:, 0]

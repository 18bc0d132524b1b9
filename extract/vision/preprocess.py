"""Frames -> model inputs on the CPU, exactly as transformers' image processors do it.

`processor_crop` reproduces `CLIPImageProcessor` / `VideoMAEImageProcessor` up to the uint8
crop (PIL resize of the shortest side to `shortest_edge` with the long side truncated as
`get_resize_output_image_size` does, then the centre crop with the same offsets); rescaling
and normalisation happen on the device (`normalise`). The PIL call per frame is the
resampler itself (C code), not Python work per pixel, and runs in the decode workers.

`squash` is SpaMo's PHOENIX input: `features/fullFrame-256x256px/`, the 210x260 frames
squashed to 256x256. slt-pipe reads that folder when it exists and otherwise makes the
same squash in memory with PIL bicubic (the tool SpaMo's copy was made with is unknown).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cache.errors import SltPipeError, WeightsError

if TYPE_CHECKING:  # torch and PIL load only where frames are processed: a cached run keys without them
    from PIL import Image
    from torch import Tensor

# The image processors' normalisations (CLIPImageProcessor; VideoMAEImageProcessor and DINOv2 use ImageNet's).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

"""Datasets in PHOENIX-2014T layout, whose frames SpaMo reads squashed to 256x256."""
SQUASH_RESAMPLER = "PIL bicubic"
FILTERS = ("bicubic", "bilinear", "nearest", "lanczos", "box", "hamming")
"""PIL resamplers a recipe may name (`Image.Resampling` members, lower-cased)."""


@dataclass(frozen=True)
class ImageRecipe:
    """How a frame becomes a model input (an image processor's resize, crop and normalisation)."""

    shortest_edge: int
    crop: tuple[int, int]
    """(height, width) of the centre crop."""
    resample: str
    """PIL filter of the resize: bicubic (CLIPImageProcessor) or bilinear (VideoMAEImageProcessor)."""
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    source: str
    """Where these values came from (a preprocessor_config.json, or the processor's defaults)."""
    resize: str = "shortest"
    """shortest: resize the shortest side to `shortest_edge`, then centre crop (CLIP, VideoMAE, DINOv2,
    V-JEPA 2); exact: resize straight to `crop`, no crop (SigLIP's and DINOv3's processors)."""

    def to_json(self) -> dict[str, Any]:
        out = {"shortest_edge": self.shortest_edge, "crop": list(self.crop), "resample": self.resample,
               "mean": list(self.mean), "std": list(self.std), "source": self.source}
        if self.resize != "shortest":  # only then: the recipes (and cache keys) of earlier encoders are unchanged
            out["resize"] = self.resize
        return out


PIL_FILTERS = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}


def read_recipe(folder: Path | None, default: ImageRecipe, name: str = "preprocessor_config.json") -> ImageRecipe:
    """The processor config `name` of a snapshot folder (transformers' image processors), else `default`.
    A `size` of height and width (SigLIP, DINOv3) is an exact resize to it, without a crop."""
    path = folder / name if folder is not None else None
    if path is None or not path.is_file():
        return default
    try:
        p = json.loads(path.read_text())
        size = p.get("size", default.shortest_edge)
        resample = PIL_FILTERS[int(p.get("resample", 3))]
        mean = tuple(float(x) for x in p.get("image_mean", default.mean))
        std = tuple(float(x) for x in p.get("image_std", default.std))
        if isinstance(size, dict) and "height" in size and "shortest_edge" not in size:
            if p.get("do_center_crop"):
                raise ValueError("a height/width resize followed by a centre crop is not supported")
            hw = (int(size["height"]), int(size["width"]))
            return ImageRecipe(min(hw), hw, resample, mean, std, source=str(path), resize="exact")  # type: ignore[arg-type]
        short = int(size["shortest_edge"] if isinstance(size, dict) else size)
        crop = p.get("crop_size", default.crop)
        if isinstance(crop, dict):
            crop_hw = (int(crop["height"]), int(crop["width"]))
        elif isinstance(crop, int):
            crop_hw = (crop, crop)
        else:
            crop_hw = (int(crop[0]), int(crop[1]))
        if not p.get("do_center_crop", True):
            raise ValueError("do_center_crop=false is not supported (SpaMo's processors crop)")
        return ImageRecipe(short, crop_hw, resample, mean, std, source=str(path))  # type: ignore[arg-type]
    except (ValueError, KeyError, TypeError) as e:
        raise WeightsError(f"unreadable image processor config ({e})", path=path,
                           fix=f"restore {name} from the snapshot, or delete it to use the defaults") from None



def resolve_squash(setting: str, dataset: str) -> str:
    """extract.squash "auto" -> the dataset's declared squash ("256x256" for the PHOENIX layout, else
    "none"); otherwise as given."""
    if setting == "auto":
        from extract.datasets import dataset_spec

        side = dataset_spec(dataset).squash
        return f"{side}x{side}" if side else "none"
    if setting == "none":
        return setting
    side = squash_side(setting)
    return f"{side}x{side}"


def squash_side(setting: str) -> int | None:
    if setting == "none":
        return None
    try:
        h, w = (int(x) for x in setting.lower().split("x"))
    except ValueError:
        h = w = -1
    if h != w or h <= 0:
        raise SltPipeError(f"extract.squash = {setting!r} is not 'auto', 'none' or a square size like '256x256'",
                           fix="set extract.squash to auto, none or 256x256")
    return h


def squash(frames: np.ndarray, side: int) -> list[Image.Image]:
    """Every frame resized to side x side with PIL bicubic (PIL returns a frame already that size as is)."""
    from PIL import Image

    return [Image.fromarray(f).resize((side, side), Image.Resampling.BICUBIC) for f in frames]


def processor_crop(frames: np.ndarray | list[Image.Image], recipe: ImageRecipe) -> np.ndarray:
    """uint8 [T, H, W, 3] (or PIL frames) -> uint8 [T, crop_h, crop_w, 3]: resize shortest side, centre crop
    (or, with `recipe.resize` exact, resize to the crop size)."""
    from PIL import Image

    ch, cw = recipe.crop
    out = np.empty((len(frames), ch, cw, 3), dtype=np.uint8)
    if recipe.resample not in FILTERS:
        raise SltPipeError(f"unknown resampler {recipe.resample!r}", fix=f"use one of: {', '.join(FILTERS)}")
    resample = Image.Resampling[recipe.resample.upper()]
    for i, frame in enumerate(frames):
        im = frame if isinstance(frame, Image.Image) else Image.fromarray(frame)
        if recipe.resize == "exact":
            out[i] = np.asarray(im.resize((cw, ch), resample=resample))
            continue
        w, h = im.size
        short, long = (w, h) if w <= h else (h, w)
        new_long = int(recipe.shortest_edge * long / short)
        size = (recipe.shortest_edge, new_long) if w <= h else (new_long, recipe.shortest_edge)
        a = np.asarray(im.resize(size, resample=resample))
        top, left = (a.shape[0] - ch) // 2, (a.shape[1] - cw) // 2
        if top < 0 or left < 0:
            raise SltPipeError(f"crop {ch}x{cw} is larger than the resized frame {a.shape[0]}x{a.shape[1]}",
                               fix="check the preprocessor_config.json (crop_size must not exceed size)")
        out[i] = a[top:top + ch, left:left + cw]
    return out


def normalise(x: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """uint8 [..., H, W, 3] -> float32 [..., 3, H, W], rescaled to [0, 1] and standardised."""
    x = x.float().div_(255).movedim(-1, -3)
    return x.sub_(mean.view(3, 1, 1)).div_(std.view(3, 1, 1))


def s2_tiles(x: Tensor, scale: int) -> Tensor:
    """SpaMo's S2 view: the normalised [B, 3, S, S] crop upsampled `scale` times with plain bicubic
    `F.interpolate` (no antialias, float) and cut into scale^2 tiles: [B * scale^2, 3, S, S]."""
    b, c, h, w = x.shape
    import torch

    big = torch.nn.functional.interpolate(x, size=(h * scale, w * scale), mode="bicubic")
    tiles = big.view(b, c, scale, h, scale, w).permute(0, 2, 4, 1, 3, 5)
    return tiles.reshape(b * scale * scale, c, h, w)

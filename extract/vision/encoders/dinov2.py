"""DINOv2 (Oquab et al. 2023) as a spatial stream: `extract.streams = ["dinov2", "videomae"]`.

One architecture runs, transformers' `Dinov2Model`; the formats users hold are mapped onto
its parameter names and must fill all of them (`extract.vision.weights.fill_strictly`):

  transformers   a snapshot of `facebook/dinov2-large` (`Dinov2Model`, or a
                 `Dinov2ForImageClassification`, whose head is dropped by name)
  torch hub      `dinov2_vitl14_pretrain.pth` from facebookresearch/dinov2 (`blocks.N.attn.qkv`,
                 `ls1.gamma`, ...); the fused qkv is split. timm's copy lacks the mask token, so
                 it does not fill the architecture and is refused.

The feature: the class token after the final LayerNorm (`pooler_output`), the vector
DINOv2 is evaluated with; the S2 views (`extract.spatial_scales`) work as for CLIP.
Preprocessing is `BitImageProcessor`'s, read from the snapshot's preprocessor_config.json
when it has one, else facebook/dinov2-*'s values (shortest side 256, bicubic, centre crop
224, ImageNet mean/std); the 37x37 position grid is interpolated to the crop by Dinov2Model.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cache.errors import WeightsError, setting_fix
from extract.vision.encoders.base import Resolved, SpatialEncoder
from extract.vision.preprocess import IMAGENET_MEAN, IMAGENET_STD, ImageRecipe, read_recipe
from extract.vision.weights import (
    Converted,
    architecture,
    check_file,
    fill_strictly,
    foreign_file,
    read_state_dict,
    split_qkv,
    tensor_shapes,
)

if TYPE_CHECKING:
    from torch import Tensor, nn

ARCHS: dict[str, dict[str, Any]] = {
    # facebook/dinov2-large's config.json.
    "ViT-L/14": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, mlp_ratio=4, patch_size=14,
                     image_size=518, hidden_act="gelu", layer_norm_eps=1e-6, layerscale_value=1.0, qkv_bias=True,
                     use_swiglu_ffn=False),
    "ViT-B/14": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, mlp_ratio=4, patch_size=14,
                     image_size=518, hidden_act="gelu", layer_norm_eps=1e-6, layerscale_value=1.0, qkv_bias=True,
                     use_swiglu_ffn=False),
}
SNAPSHOT = "snapshot"
CANDIDATES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
FIX = (f"{setting_fix('extract.dinov2.weights')}, PATH a complete checkpoint of the configured architecture (a transformers snapshot of facebook/dinov2-large or the torch hub file dinov2_vitl14_pretrain.pth); or, for a checkpoint of another size, "
       f"{setting_fix('extract.dinov2.arch', 'ARCH')} ('snapshot': the architecture its config.json says)")


@dataclass(frozen=True)
class Dinov2Weights:
    path: Path
    """The weights file (or shard index) read."""
    format: str
    """transformers or hub."""
    found: str
    snapshot: Path | None


def locate(model: str, weights: str | None) -> Dinov2Weights:
    from cache.hf_cache import find_checkpoint

    f, snapshot, found = find_checkpoint(weights, (model,), CANDIDATES, what="DINOv2", setting="extract.dinov2.weights")
    return Dinov2Weights(f, detect_format(f), found, snapshot)


def detect_format(path: Path) -> str:
    names = tensor_shapes(path)
    if any(k.startswith(("embeddings.", "dinov2.embeddings.")) for k in names):
        return "transformers"
    if "cls_token" in names and any(k.startswith("blocks.") for k in names):
        return "hub"
    raise foreign_file("DINOv2", names, path, FIX)


def dinov2_config(arch: str, weights: Dinov2Weights | None) -> Any:
    from transformers import Dinov2Config

    return architecture(Dinov2Config, ARCHS, arch, weights.snapshot if weights else None, setting="extract.dinov2.arch")


_HUB_TOP = {"cls_token": "embeddings.cls_token", "mask_token": "embeddings.mask_token",
            "pos_embed": "embeddings.position_embeddings",
            "patch_embed.proj.weight": "embeddings.patch_embeddings.projection.weight",
            "patch_embed.proj.bias": "embeddings.patch_embeddings.projection.bias",
            "norm.weight": "layernorm.weight", "norm.bias": "layernorm.bias"}
_HUB_BLOCK = {"norm1": "norm1", "norm2": "norm2", "attn.proj": "attention.output.dense", "mlp.fc1": "mlp.fc1",
              "mlp.fc2": "mlp.fc2", "ls1.gamma": "layer_scale1.lambda1", "ls2.gamma": "layer_scale2.lambda1"}
_HUB_RE = re.compile(r"^blocks\.(\d+)\.(.+?)(?:\.(weight|bias))?$")


def convert(fmt: str, state: dict[str, Tensor]) -> Converted:
    """Rename a checkpoint to Dinov2Model's keys; anything unknown keeps its name (reported as unexpected)."""
    out: dict[str, Tensor] = {}
    ignored: dict[str, int] = {}
    if fmt == "transformers":
        for k, v in state.items():
            if k.startswith("classifier."):
                ignored["classification head"] = ignored.get("classification head", 0) + 1
            else:
                out[k.removeprefix("dinov2.")] = v
        return Converted(out, ignored)
    for k, v in state.items():
        m = _HUB_RE.match(k)
        if k in _HUB_TOP:
            out[_HUB_TOP[k]] = v
        elif m and m.group(2) == "attn.qkv" and m.group(3) == "weight":
            bias = state.get(f"blocks.{m.group(1)}.attn.qkv.bias")
            out.update(split_qkv(f"encoder.layer.{m.group(1)}.attention.attention", v, bias, ("query", "key", "value")))
        elif m and m.group(2) == "attn.qkv":
            continue  # the bias, split with its weight
        elif m and m.group(2) in _HUB_BLOCK:
            tail = f".{m.group(3)}" if m.group(3) else ""
            out[f"encoder.layer.{m.group(1)}.{_HUB_BLOCK[m.group(2)]}{tail}"] = v
        else:
            out[k] = v
    return Converted(out, ignored)


def check(weights: Dinov2Weights, config: Any) -> dict[str, int]:
    """The file fills Dinov2Model(config), from names and shapes alone; returns what was ignored by name."""
    from transformers import Dinov2Model

    return check_file(weights.path, lambda s: convert(weights.format, s), Dinov2Model, config, fix=FIX)


def load(weights: Dinov2Weights, config: Any) -> nn.Module:
    """Dinov2Model with every parameter from the file (float32, eval mode)."""
    import torch
    from transformers import Dinov2Model

    conv = convert(weights.format, read_state_dict(weights.path))
    with torch.device("meta"):
        model = Dinov2Model(config)
    fill_strictly(model, conv, path=weights.path, fix=FIX)
    return model.float().eval()


def default_recipe() -> ImageRecipe:
    return ImageRecipe(256, (224, 224), "bicubic", IMAGENET_MEAN, IMAGENET_STD,
                       source="BitImageProcessor defaults of facebook/dinov2-large")


class Dinov2(SpatialEncoder):
    name = "dinov2"
    archs = ARCHS
    title = "DINOv2"
    formats = ("transformers", "hub")
    token = "class token after the final LayerNorm (pooler_output)"

    def settings(self) -> tuple:
        s = self.cfg.dinov2
        return (s.model, s.weights, s.arch)

    def resolve(self) -> Resolved:
        from transformers import Dinov2Config

        if self.random_init:
            weights, config, ignored = None, Dinov2Config(**ARCHS["ViT-L/14"]), {}
        else:
            s = self.cfg.dinov2
            weights = locate(s.model, s.weights)
            config = dinov2_config(s.arch, weights)
            ignored = check(weights, config)
        recipe = read_recipe(weights.snapshot if weights else None, default_recipe())
        if recipe.crop[0] != recipe.crop[1] or recipe.crop[0] % int(config.patch_size):
            raise WeightsError(f"the image processor's crop {recipe.crop} is not a square of whole "
                               f"{config.patch_size}-pixel patches", path=recipe.source,
                               fix="use the snapshot's own preprocessor_config.json")
        return Resolved(weights, config, ignored, recipe)

    def build(self) -> nn.Module:
        if self.resolved.weights is None:
            from transformers import Dinov2Model

            return Dinov2Model(self.resolved.config).eval()
        return load(self.resolved.weights, self.resolved.config)

    def patch_token(self, model: nn.Module, pixel_values: Tensor) -> Tensor:
        return model(pixel_values=pixel_values).pooler_output

    def flops(self) -> float:
        from extract.vision.encoders.base import transformer_flops

        c, size = self.resolved.config, self.resolved.recipe.crop[0]
        patches = (size // c.patch_size) ** 2
        one = transformer_flops(patches + 1, c.hidden_size, c.num_hidden_layers, int(c.hidden_size * c.mlp_ratio),
                                3 * c.patch_size ** 2, patches)
        return one * sum(s * s for s in self.cfg.spatial_scales)

    def identity(self) -> dict[str, Any]:
        return {**self.describe(), "model": self.cfg.dinov2.model,
                **self.weights_identity("transformers.Dinov2Model", ("hidden_size", "num_hidden_layers",
                                        "num_attention_heads", "mlp_ratio", "patch_size", "image_size",
                                        "use_swiglu_ffn"))}

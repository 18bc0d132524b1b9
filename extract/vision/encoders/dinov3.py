"""DINOv3 (Siméoni et al. 2025) as a spatial stream: `extract.streams = ["dinov3", "videomae"]`.

One architecture runs, transformers' `DINOv3ViTModel`, from a transformers snapshot of
`facebook/dinov3-vitl16-pretrain-lvd1689m` (config.json, model.safetensors,
preprocessor_config.json); every parameter must be filled (`extract.vision.weights.fill_strictly`).
Meta's own `dinov3_vitl16_pretrain_lvd1689m-*.pth` is not read: its names are not mapped here.

The feature: the class token after the final LayerNorm (`pooler_output`), which DINOv3's
authors use as the global image descriptor (linear probes, retrieval); S2 views as for CLIP.
Preprocessing is `DINOv3ViTImageProcessorFast`'s, read from the snapshot's
preprocessor_config.json when it has one, else its defaults: a straight bilinear resize to
224x224 (no crop) and ImageNet mean/std. The processor resizes in float with torchvision's
antialias; here PIL resizes the uint8 frame, so resized frames differ by about one grey level.
Positions are RoPE over the patch grid, so any crop of whole 16-pixel patches runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cache.errors import WeightsError, setting_fix
from extract.vision.encoders.base import Resolved, SpatialEncoder, transformer_flops
from extract.vision.preprocess import IMAGENET_MEAN, IMAGENET_STD, ImageRecipe, read_recipe
from extract.vision.weights import (
    Converted,
    architecture,
    check_file,
    fill_strictly,
    foreign_file,
    read_state_dict,
    tensor_shapes,
)

if TYPE_CHECKING:
    from torch import Tensor, nn

ARCHS: dict[str, dict[str, Any]] = {
    # facebook/dinov3-vitl16-pretrain-lvd1689m's config.json.
    "ViT-L/16": dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                     patch_size=16, image_size=224, num_register_tokens=4, hidden_act="gelu", layer_norm_eps=1e-5,
                     rope_theta=100.0, query_bias=True, key_bias=False, value_bias=True, proj_bias=True,
                     mlp_bias=True, use_gated_mlp=False),
    "ViT-B/16": dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                     patch_size=16, image_size=224, num_register_tokens=4, hidden_act="gelu", layer_norm_eps=1e-5,
                     rope_theta=100.0, query_bias=True, key_bias=False, value_bias=True, proj_bias=True,
                     mlp_bias=True, use_gated_mlp=False),
}
CANDIDATES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
FIX = (f"{setting_fix('extract.dinov3.weights')}, PATH a complete transformers snapshot of the configured architecture (`huggingface-cli download facebook/dinov3-vitl16-pretrain-lvd1689m`, a gated repo); or, for a checkpoint of another size, "
       f"{setting_fix('extract.dinov3.arch', 'ARCH')} ('snapshot': the architecture its config.json says)")


@dataclass(frozen=True)
class Dinov3Weights:
    path: Path
    """The weights file (or shard index) read."""
    found: str
    snapshot: Path | None
    format = "transformers"
    """The one format read (a class constant, beside ClipWeights.format)."""


def locate(model: str, weights: str | None) -> Dinov3Weights:
    from cache.hf_cache import find_checkpoint

    f, snapshot, found = find_checkpoint(weights, (model,), CANDIDATES, what="DINOv3", setting="extract.dinov3.weights")
    names = tensor_shapes(f)
    if not any(k.startswith(("embeddings.", "rope_embeddings.", "layer.")) for k in names):
        raise foreign_file("transformers DINOv3", names, f, FIX)
    return Dinov3Weights(f, found, snapshot)


def dinov3_config(arch: str, weights: Dinov3Weights | None) -> Any:
    from transformers import DINOv3ViTConfig

    return architecture(DINOv3ViTConfig, ARCHS, arch, weights.snapshot if weights else None,
                        setting="extract.dinov3.arch")


def convert(state: dict[str, Tensor]) -> Converted:
    """DINOv3ViTModel's own keys; anything else keeps its name (reported as unexpected)."""
    return Converted(dict(state), {})


def check(weights: Dinov3Weights, config: Any) -> dict[str, int]:
    """The file fills DINOv3ViTModel(config), from names and shapes alone."""
    from transformers import DINOv3ViTModel

    return check_file(weights.path, convert, DINOv3ViTModel, config, fix=FIX)


def load(weights: Dinov3Weights, config: Any) -> nn.Module:
    """DINOv3ViTModel with every parameter from the file (float32, eval mode)."""
    import torch
    from transformers import DINOv3ViTModel

    with torch.device("meta"):
        model = DINOv3ViTModel(config)
    fill_strictly(model, convert(read_state_dict(weights.path)), path=weights.path, fix=FIX)
    # RoPE's inverse frequencies are a non-persistent buffer: the meta build left it empty, so
    # compute it as the constructor does.
    rope = model.rope_embeddings
    rope.inv_freq = 1 / rope.base ** torch.arange(0, 1, 4 / rope.head_dim, dtype=torch.float32)
    return model.float().eval()


def default_recipe(image_size: int) -> ImageRecipe:
    return ImageRecipe(image_size, (image_size, image_size), "bilinear", IMAGENET_MEAN, IMAGENET_STD,
                       source="DINOv3ViTImageProcessorFast defaults of facebook/dinov3-vitl16-pretrain-lvd1689m",
                       resize="exact")


class Dinov3(SpatialEncoder):
    name = "dinov3"
    archs = ARCHS
    title = "DINOv3"
    formats = ("transformers",)
    token = "class token after the final LayerNorm (pooler_output)"

    def settings(self) -> tuple:
        s = self.cfg.dinov3
        return (s.model, s.weights, s.arch)

    def resolve(self) -> Resolved:
        from transformers import DINOv3ViTConfig

        if self.random_init:  # benchmarks only: paper size, random weights, marked so in the identity
            weights, config, ignored = None, DINOv3ViTConfig(**ARCHS["ViT-L/16"]), {}
        else:
            s = self.cfg.dinov3
            weights = locate(s.model, s.weights)
            config = dinov3_config(s.arch, weights)
            ignored = check(weights, config)
        recipe = read_recipe(weights.snapshot if weights else None, default_recipe(int(config.image_size)))
        if recipe.crop[0] != recipe.crop[1] or recipe.crop[0] % int(config.patch_size):
            raise WeightsError(f"the image processor's size {recipe.crop} is not a square of whole "
                               f"{config.patch_size}-pixel patches", path=recipe.source,
                               fix="use the snapshot's own preprocessor_config.json")
        return Resolved(weights, config, ignored, recipe)

    def build(self) -> nn.Module:
        if self.resolved.weights is None:
            from transformers import DINOv3ViTModel

            return DINOv3ViTModel(self.resolved.config).eval()
        return load(self.resolved.weights, self.resolved.config)

    def patch_token(self, model: nn.Module, pixel_values: Tensor) -> Tensor:
        return model(pixel_values=pixel_values).pooler_output

    def flops(self) -> float:
        c, size = self.resolved.config, self.resolved.recipe.crop[0]
        patches = (size // c.patch_size) ** 2
        one = transformer_flops(patches + 1 + c.num_register_tokens, c.hidden_size, c.num_hidden_layers,
                                c.intermediate_size, 3 * c.patch_size ** 2, patches)
        return one * sum(s * s for s in self.cfg.spatial_scales)

    def identity(self) -> dict[str, Any]:
        return {**self.describe(), "model": self.cfg.dinov3.model,
                **self.weights_identity("transformers.DINOv3ViTModel", ("hidden_size", "num_hidden_layers",
                                        "num_attention_heads", "intermediate_size", "patch_size",
                                        "num_register_tokens", "use_gated_mlp"))}

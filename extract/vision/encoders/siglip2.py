"""SigLIP 2 (Tschannen et al. 2025) as a spatial stream: `extract.streams = ["siglip2", "videomae"]`.

The fixed-resolution SigLIP 2 checkpoints (`google/siglip2-large-patch16-256`, ...) have the
SigLIP architecture: their config.json says model_type "siglip" and transformers 4.57 runs
them as `SiglipModel`; its `Siglip2VisionModel` is the NaFlex variant (patch sequences at
native aspect ratio, `google/siglip2-*-naflex`), which a fixed crop has no use for and which
is refused here. So one architecture runs, transformers' `SiglipVisionModel`, from a snapshot
of a `SiglipModel` (the text tower and logit scale/bias are dropped by name) or of a
`SiglipVisionModel`; every parameter must be filled (`extract.vision.weights.fill_strictly`).

The feature: the attention-pooling (MAP) head's output (`pooler_output`), the image
embedding SigLIP 2 is trained and evaluated with (it has no class token). Preprocessing is
`SiglipImageProcessor`'s, read from the snapshot's preprocessor_config.json when it has one,
else its values for siglip2-large-patch16-256: a straight bilinear resize to 256x256 (no
crop), mean = std = 0.5. The S2 views (`extract.spatial_scales`) work as for CLIP.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cache.errors import WeightsError, setting_fix
from extract.vision.encoders.base import Resolved, SpatialEncoder, transformer_flops
from extract.vision.preprocess import ImageRecipe, read_recipe
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
    # google/siglip2-large-patch16-256's vision_config.
    "ViT-L/16-256": dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                         patch_size=16, image_size=256, hidden_act="gelu_pytorch_tanh", layer_norm_eps=1e-6),
    # google/siglip2-base-patch16-224's vision_config.
    "ViT-B/16-224": dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                         patch_size=16, image_size=224, hidden_act="gelu_pytorch_tanh", layer_norm_eps=1e-6),
}
SIGLIP_MEAN = (0.5, 0.5, 0.5)
SIGLIP_STD = (0.5, 0.5, 0.5)
CANDIDATES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
IGNORED = (("text_model.", "text tower"), ("logit_scale", "logit scale"), ("logit_bias", "logit bias"),
           ("vision_model.embeddings.position_ids", "position ids (recomputed)"))
FIX = (f"{setting_fix('extract.siglip2.weights')}, PATH a complete transformers snapshot of the configured architecture (`huggingface-cli download google/siglip2-large-patch16-256`; not a -naflex one); or, for a checkpoint of another size, "
       f"{setting_fix('extract.siglip2.arch', 'ARCH')} ('snapshot': the architecture its config.json says)")


@dataclass(frozen=True)
class Siglip2Weights:
    path: Path
    """The weights file (or shard index) read."""
    found: str
    snapshot: Path | None
    format = "transformers"
    """The one format read (a class constant, beside ClipWeights.format)."""


def locate(model: str, weights: str | None) -> Siglip2Weights:
    from cache.hf_cache import find_checkpoint

    f, snapshot, found = find_checkpoint(weights, (model,), CANDIDATES, what="SigLIP 2", setting="extract.siglip2.weights")
    names = tensor_shapes(f)
    if not any(k.startswith("vision_model.") for k in names):
        raise foreign_file("SigLIP vision", names, f, FIX)
    config = snapshot / "config.json" if snapshot is not None else None
    if config is not None and config.is_file() and json.loads(config.read_text()).get("model_type") == "siglip2":
        raise WeightsError("a NaFlex SigLIP 2 snapshot (model_type siglip2, patch sequences at native aspect ratio); "
                           "this encoder runs the fixed-resolution checkpoints", path=config, fix=FIX)
    return Siglip2Weights(f, found, snapshot)


def vision_config(arch: str, weights: Siglip2Weights | None) -> Any:
    from transformers import SiglipVisionConfig

    return architecture(SiglipVisionConfig, ARCHS, arch, weights.snapshot if weights else None,
                        setting="extract.siglip2.arch", inner=("siglip", "vision_config"))


def convert(state: dict[str, Tensor]) -> Converted:
    """SiglipVisionModel's keys (`vision_model.*`); the text tower and the contrastive scalars dropped by name."""
    out, ignored = {}, {}
    for k, v in state.items():
        why = next((w for p, w in IGNORED if k.startswith(p)), None)
        if why is not None:
            ignored[why] = ignored.get(why, 0) + 1
        else:
            out[k] = v
    return Converted(out, ignored)


def check(weights: Siglip2Weights, config: Any) -> dict[str, int]:
    """The file fills SiglipVisionModel(config), from names and shapes alone; returns what was ignored by name."""
    from transformers import SiglipVisionModel

    return check_file(weights.path, convert, SiglipVisionModel, config, fix=FIX)


def load(weights: Siglip2Weights, config: Any) -> nn.Module:
    """SiglipVisionModel with every parameter from the file (float32, eval mode)."""
    import torch
    from transformers import SiglipVisionModel

    with torch.device("meta"):
        model = SiglipVisionModel(config)
    fill_strictly(model, convert(read_state_dict(weights.path)), path=weights.path, fix=FIX)
    # position_ids is a non-persistent buffer: the meta build left it empty, so make it again.
    emb = model.vision_model.embeddings
    emb.register_buffer("position_ids", torch.arange(emb.num_positions).expand((1, -1)), persistent=False)
    return model.float().eval()


def default_recipe(image_size: int) -> ImageRecipe:
    return ImageRecipe(image_size, (image_size, image_size), "bilinear", SIGLIP_MEAN, SIGLIP_STD,
                       source="SiglipImageProcessor values of google/siglip2-large-patch16-256", resize="exact")


class Siglip2(SpatialEncoder):
    name = "siglip2"
    archs = ARCHS
    title = "SigLIP 2"
    formats = ("transformers",)
    token = "attention-pooling head output (pooler_output)"

    def settings(self) -> tuple:
        s = self.cfg.siglip2
        return (s.model, s.weights, s.arch)

    def resolve(self) -> Resolved:
        from transformers import SiglipVisionConfig

        if self.random_init:  # benchmarks only: paper size, random weights, marked so in the identity
            weights, config, ignored = None, SiglipVisionConfig(**ARCHS["ViT-L/16-256"]), {}
        else:
            s = self.cfg.siglip2
            weights = locate(s.model, s.weights)
            config = vision_config(s.arch, weights)
            ignored = check(weights, config)
        size = int(config.image_size)
        recipe = read_recipe(weights.snapshot if weights else None, default_recipe(size))
        if recipe.crop != (size, size):  # learned positions for exactly this grid
            raise WeightsError(f"the image processor's size {recipe.crop} does not match SigLIP's input size {size}",
                               path=recipe.source, fix="use the snapshot's own preprocessor_config.json")
        return Resolved(weights, config, ignored, recipe)

    def build(self) -> nn.Module:
        if self.resolved.weights is None:
            from transformers import SiglipVisionModel

            return SiglipVisionModel(self.resolved.config).eval()
        return load(self.resolved.weights, self.resolved.config)

    def patch_token(self, model: nn.Module, pixel_values: Tensor) -> Tensor:
        return model(pixel_values=pixel_values).pooler_output

    def flops(self) -> float:
        c = self.resolved.config
        patches = (int(c.image_size) // c.patch_size) ** 2
        one = transformer_flops(patches, c.hidden_size, c.num_hidden_layers, c.intermediate_size,
                                3 * c.patch_size ** 2, patches)
        return one * sum(s * s for s in self.cfg.spatial_scales)

    def identity(self) -> dict[str, Any]:
        return {**self.describe(), "model": self.cfg.siglip2.model,
                **self.weights_identity("transformers.SiglipVisionModel", ("hidden_size", "num_hidden_layers",
                                        "num_attention_heads", "intermediate_size", "patch_size", "image_size",
                                        "hidden_act"))}

"""V-JEPA 2 (Assran et al. 2025) as a motion stream: `extract.streams = ["clip", "vjepa2"]`.

One architecture runs, the encoder of transformers' `VJEPA2Model` (`VJEPA2Encoder`), from a
snapshot of `facebook/vjepa2-vitl-fpc64-256` (a `VJEPA2Model`: its predictor is dropped by
name) or of a `VJEPA2ForVideoClassification` (`vjepa2.*`; its attentive pooler and classifier
are dropped by name); every encoder parameter must be filled (`fill_strictly`).

The feature: the mean of the last layer's tokens after the final LayerNorm
(`last_hidden_state.mean(1)`): V-JEPA 2 has no class token, its authors read the encoder's
patch tokens as the representation (attentive probes), and the mean is the probe-free global
descriptor, so `extract.motion_pool` does not apply. Clips are `extract.clip_len` frames
(3D RoPE: any multiple of the 2-frame tubelet runs, the checkpoint was trained on 64).
Preprocessing is `VJEPA2VideoProcessor`'s: the shortest side resized to crop x 256/224 (292 for
256), bilinear, centre crop 256, ImageNet mean/std; the crop is read from the snapshot's
video_preprocessor_config.json (or preprocessor_config.json) when it has one. The processor
resizes with torchvision's antialias, here PIL does, so frames differ by about one grey level.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cache.errors import WeightsError, setting_fix
from extract.vision.encoders.base import MotionEncoder, Resolved, transformer_flops
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
    # facebook/vjepa2-vitl-fpc64-256's config.json (the encoder's part; the predictor's is unused).
    "ViT-L/16-256": dict(patch_size=16, crop_size=256, frames_per_clip=64, tubelet_size=2, hidden_size=1024,
                         num_attention_heads=16, num_hidden_layers=24, mlp_ratio=4.0, layer_norm_eps=1e-6,
                         qkv_bias=True, hidden_act="gelu", in_chans=3),
}
CANDIDATES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
PROCESSOR_FILES = ("video_preprocessor_config.json", "preprocessor_config.json")
IGNORED = (("predictor.", "JEPA predictor"), ("pooler.", "attentive pooler"), ("classifier.", "classification head"))
FIX = (f"{setting_fix('extract.vjepa2.weights')}, PATH a complete transformers snapshot of the configured architecture (`huggingface-cli download facebook/vjepa2-vitl-fpc64-256`); or, for a checkpoint of another size, "
       f"{setting_fix('extract.vjepa2.arch', 'ARCH')} ('snapshot': the architecture its config.json says)")


@dataclass(frozen=True)
class Vjepa2Weights:
    path: Path
    """The weights file (or shard index) read."""
    found: str
    snapshot: Path | None
    format = "transformers"
    """The one format read (a class constant, beside ClipWeights.format)."""


def locate(model: str, weights: str | None) -> Vjepa2Weights:
    from cache.hf_cache import find_checkpoint

    f, snapshot, found = find_checkpoint(weights, (model,), CANDIDATES, what="V-JEPA 2", setting="extract.vjepa2.weights")
    names = tensor_shapes(f)
    if not any(k.startswith(("encoder.", "vjepa2.encoder.")) for k in names):
        raise foreign_file("V-JEPA 2", names, f, FIX)
    return Vjepa2Weights(f, found, snapshot)


def vjepa2_config(arch: str, weights: Vjepa2Weights | None) -> Any:
    from transformers import VJEPA2Config

    return architecture(VJEPA2Config, ARCHS, arch, weights.snapshot if weights else None, setting="extract.vjepa2.arch")


def convert(state: dict[str, Tensor]) -> Converted:
    """VJEPA2Encoder's keys (`encoder.` / `vjepa2.encoder.` removed); predictor, pooler and head dropped by name."""
    out, ignored = {}, {}
    for k, v in state.items():
        inner = k.removeprefix("vjepa2.")
        why = next((w for p, w in IGNORED if inner.startswith(p)), None)
        if why is not None:
            ignored[why] = ignored.get(why, 0) + 1
        else:
            out[inner.removeprefix("encoder.")] = v
    return Converted(out, ignored)


def _encoder(config: Any) -> nn.Module:
    from transformers.models.vjepa2.modeling_vjepa2 import VJEPA2Encoder

    # A bare encoder is no PreTrainedModel, which would pick the attention kernel: take the one
    # VJEPA2Model.from_pretrained picks (torch's scaled_dot_product_attention).
    config._attn_implementation = "sdpa"
    return VJEPA2Encoder(config)


def check(weights: Vjepa2Weights, config: Any) -> dict[str, int]:
    """The file fills VJEPA2Encoder(config), from names and shapes alone; returns what was ignored by name."""
    return check_file(weights.path, convert, _encoder, config, fix=FIX)


def load(weights: Vjepa2Weights, config: Any) -> nn.Module:
    """VJEPA2Encoder with every parameter from the file (float32, eval mode)."""
    import torch

    with torch.device("meta"):
        model = _encoder(config)
    fill_strictly(model, convert(read_state_dict(weights.path)), path=weights.path, fix=FIX)
    return model.float().eval()


def default_recipe(crop: int) -> ImageRecipe:
    return ImageRecipe(int(crop * 256 / 224), (crop, crop), "bilinear", IMAGENET_MEAN, IMAGENET_STD,
                       source="VJEPA2VideoProcessor defaults of facebook/vjepa2-vitl-fpc64-256")


def read_video_recipe(snapshot: Path | None, crop: int) -> ImageRecipe:
    """The snapshot's processor config (the video one first); its resize is crop x 256/224, as
    VJEPA2VideoProcessor recomputes it from the crop whatever `size` the file holds."""
    for name in PROCESSOR_FILES:
        if snapshot is not None and (snapshot / name).is_file():
            r = read_recipe(snapshot, default_recipe(crop), name)
            return replace(r, shortest_edge=int(r.crop[0] * 256 / 224))
    return default_recipe(crop)


class Vjepa2(MotionEncoder):
    name = "vjepa2"
    archs = ARCHS
    title = "V-JEPA 2"
    formats = ("transformers",)
    token = "mean of the last layer's tokens after the final LayerNorm (last_hidden_state.mean(1))"

    def settings(self) -> tuple:
        s = self.cfg.vjepa2
        return (s.model, s.weights, s.arch)

    def resolve(self) -> Resolved:
        from transformers import VJEPA2Config

        if self.random_init:  # benchmarks only: paper size, random weights, marked so in the identity
            weights, config, ignored = None, VJEPA2Config(**ARCHS["ViT-L/16-256"]), {}
        else:
            s = self.cfg.vjepa2
            weights = locate(s.model, s.weights)
            config = vjepa2_config(s.arch, weights)
            ignored = check(weights, config)
        size = int(config.crop_size)
        recipe = read_video_recipe(weights.snapshot if weights else None, size)
        if recipe.crop != (size, size) or size % int(config.patch_size):
            raise WeightsError(f"the video processor's crop {recipe.crop} does not match V-JEPA 2's crop size {size}",
                               path=recipe.source, fix="use the snapshot's own video_preprocessor_config.json")
        if self.cfg.clip_len % int(config.tubelet_size):
            raise WeightsError(f"V-JEPA 2 embeds {config.tubelet_size}-frame tubelets but extract.clip_len is "
                               f"{self.cfg.clip_len}", path=weights.path if weights else None,
                               fix="set extract.clip_len to a multiple of the tubelet size, e.g. 16")
        return Resolved(weights, config, ignored, recipe)

    def build(self) -> nn.Module:
        if self.resolved.weights is None:
            return _encoder(self.resolved.config).eval()
        return load(self.resolved.weights, self.resolved.config)

    def tokens(self, model: nn.Module, pixel_values: Tensor) -> Tensor:
        return model(pixel_values_videos=pixel_values).last_hidden_state

    def encode(self, model: nn.Module, views: dict[str, Tensor], precision: Any) -> Tensor:
        from extract.vision.preprocess import normalise

        r = self.resolved.recipe
        assert r is not None
        import torch

        x = normalise(views["crop"], torch.tensor(r.mean, device=views["crop"].device),
                      torch.tensor(r.std, device=views["crop"].device))  # [B, L, 3, S, S]
        with precision.context():
            return self.tokens(model, x).mean(1).float()

    def flops(self) -> float:
        c = self.resolved.config
        patches = (self.cfg.clip_len // c.tubelet_size) * (int(c.crop_size) // c.patch_size) ** 2
        return transformer_flops(patches, c.hidden_size, c.num_hidden_layers, int(c.hidden_size * c.mlp_ratio),
                                 3 * c.tubelet_size * c.patch_size ** 2, patches)

    def identity(self) -> dict[str, Any]:
        return {**self.describe(), "model": self.cfg.vjepa2.model, "pool": "mean",
                **self.weights_identity("transformers.VJEPA2Encoder", ("hidden_size", "num_hidden_layers",
                                        "num_attention_heads", "mlp_ratio", "patch_size", "tubelet_size",
                                        "crop_size"))}

"""The paper's motion encoder: VideoMAE-L (`MCG-NJU/videomae-large`) from a transformers snapshot.

The snapshot users hold is the self-supervised pre-training model (`VideoMAEForPreTraining`:
`videomae.*` plus a decoder), sometimes a bare `VideoMAEModel` or a classifier. Every
format is mapped onto `VideoMAEModel`'s keys and must fill all of them; the pre-training
decoder, its mask token and a classification head are dropped by name.

The feature (SpaMo's `scripts/mae_extract_feature.py`, shared/reference.md): the first
token of the last encoder layer *before* the final LayerNorm (`hidden_states[-1][:, 0]`);
VideoMAE has no class token. Preprocessing is `VideoMAEImageProcessor`'s (PIL bilinear
resize of the shortest side, centre crop), with mean/std from the snapshot's
preprocessor_config.json when present.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cache.errors import WeightsError, setting_fix
from extract.vision.encoders.base import MotionEncoder, Resolved
from extract.vision.preprocess import IMAGENET_MEAN, IMAGENET_STD, ImageRecipe, read_recipe
from extract.vision.weights import Converted, architecture, check_file, fill_strictly, read_state_dict

if TYPE_CHECKING:  # torch is imported where it is used: a cached run keys its entries without loading it.
    import torch
    from torch import Tensor, nn


ARCHS: dict[str, dict[str, Any]] = {
    # MCG-NJU/videomae-large's config.json.
    "VideoMAE-L": dict(image_size=224, patch_size=16, num_channels=3, num_frames=16, tubelet_size=2, hidden_size=1024,
                       num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096, hidden_act="gelu",
                       qkv_bias=True, use_mean_pooling=False, layer_norm_eps=1e-12),
    "VideoMAE-B": dict(image_size=224, patch_size=16, num_channels=3, num_frames=16, tubelet_size=2, hidden_size=768,
                       num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072, hidden_act="gelu",
                       qkv_bias=True, use_mean_pooling=False, layer_norm_eps=1e-12),
}
SNAPSHOT = "snapshot"


CANDIDATES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
IGNORED = (("decoder.", "pre-training decoder"), ("encoder_to_decoder.", "pre-training decoder"),
           ("mask_token", "pre-training mask token"), ("classifier.", "classification head"),
           ("fc_norm.", "classification head norm"))
FIX = (f"{setting_fix('extract.videomae.weights')}, PATH a complete transformers snapshot of the configured architecture (`huggingface-cli download MCG-NJU/videomae-large`); or, for a checkpoint of another size, "
       f"{setting_fix('extract.videomae.arch', 'ARCH')} ('snapshot': the architecture its config.json says)")


def default_recipe(image_size: int) -> ImageRecipe:
    return ImageRecipe(image_size, (image_size, image_size), "bilinear", IMAGENET_MEAN, IMAGENET_STD,
                       source="VideoMAEImageProcessor with MCG-NJU/videomae-large's mean/std")


@dataclass(frozen=True)
class VideoMAEWeights:
    path: Path
    """The weights file (or shard index) read."""
    snapshot: Path
    found: str
    format = "transformers"
    """The one format VideoMAE comes in (a class constant, beside ClipWeights.format)."""


def locate(model: str, weights: str | None) -> VideoMAEWeights:
    from cache.hf_cache import find_checkpoint

    f, snapshot, found = find_checkpoint(weights, (model,), CANDIDATES, what="VideoMAE", setting="extract.videomae.weights")
    return VideoMAEWeights(f, snapshot, found)


def videomae_config(arch: str, weights: VideoMAEWeights) -> Any:
    from transformers import VideoMAEConfig

    return architecture(VideoMAEConfig, ARCHS, arch, weights.snapshot, setting="extract.videomae.arch")


def convert(state: dict[str, Tensor]) -> Converted:
    out, ignored = {}, {}
    for k, v in state.items():
        why = next((w for p, w in IGNORED if k.startswith(p)), None)
        if why is not None:
            ignored[why] = ignored.get(why, 0) + 1
        else:
            out[k.removeprefix("videomae.")] = v
    return Converted(out, ignored)


def check(weights: VideoMAEWeights, config: Any) -> dict[str, int]:
    """The file fills VideoMAEModel(config), from names and shapes alone; returns what was ignored by name."""
    from transformers import VideoMAEModel

    return check_file(weights.path, convert, VideoMAEModel, config, fix=FIX)


def resolve(model: str, weights_path: str | None, arch: str) -> tuple[VideoMAEWeights, Any, dict[str, int]]:
    """(weights found, the architecture they must fill, what was ignored by name), checked; WeightsError if not."""
    weights = locate(model, weights_path)
    config = videomae_config(arch, weights)
    return weights, config, check(weights, config)


def load(weights: VideoMAEWeights, config: Any) -> torch.nn.Module:
    """VideoMAEModel with every parameter from the file (float32, eval mode)."""
    import torch
    from transformers import VideoMAEModel
    from transformers.models.videomae.modeling_videomae import get_sinusoid_encoding_table

    conv = convert(read_state_dict(weights.path))
    with torch.device("meta"):
        model = VideoMAEModel(config)
    fill_strictly(model, conv, path=weights.path, fix=FIX)
    # The fixed sinusoidal position table is a plain attribute, not a buffer: the meta build
    # left it empty, so compute it as the constructor does.
    emb = model.embeddings
    emb.position_embeddings = get_sinusoid_encoding_table(emb.num_patches, config.hidden_size)
    return model.float().eval()


def first_token_pre_norm(model: torch.nn.Module, pixel_values: Tensor) -> Tensor:
    """Last encoder layer's tokens before the final LayerNorm (= hidden_states[-1]); [B, N, D]."""
    return model.encoder(model.embeddings(pixel_values, None))[0]


# --------------------------------------------------------------------------- the encoder


class VideoMAE(MotionEncoder):
    """The paper's motion stream (SpaMo): VideoMAE-L, first token of the last layer before the final LayerNorm."""

    name = "videomae"
    archs = ARCHS
    title = "VideoMAE"
    formats = ("transformers",)

    @property
    def token(self) -> str:  # type: ignore[override]
        which = "first token" if self.cfg.motion_pool == "first" else "mean of the tokens"
        return f"{which} of the last layer, before the final LayerNorm (hidden_states[-1])"

    def settings(self) -> tuple:
        s = self.cfg.videomae
        return (s.model, s.weights, s.arch)

    def resolve(self) -> Resolved:
        from transformers import VideoMAEConfig

        if self.random_init:  # benchmarks only: paper size, random weights, marked so in the identity
            config, weights, ignored = VideoMAEConfig(**ARCHS["VideoMAE-L"]), None, {}
        else:
            weights, config, ignored = resolve(*self.settings())
        size = int(config.image_size)
        recipe = read_recipe(weights.snapshot if weights else None, default_recipe(size))
        if recipe.crop != (size, size):
            raise WeightsError(f"the image processor's crop {recipe.crop} does not match VideoMAE's input size {size}",
                               path=recipe.source, fix="use the snapshot's own preprocessor_config.json")
        if int(config.num_frames) != self.cfg.clip_len:
            raise WeightsError(f"VideoMAE takes {config.num_frames}-frame clips but extract.clip_len is "
                               f"{self.cfg.clip_len}", path=weights.path if weights else None,
                               fix=f"set extract.clip_len = {config.num_frames}")
        return Resolved(weights, config, ignored, recipe)

    def build(self) -> nn.Module:
        if self.resolved.weights is None:
            from transformers import VideoMAEModel

            return VideoMAEModel(self.resolved.config).eval()
        return load(self.resolved.weights, self.resolved.config)

    def tokens(self, model: nn.Module, pixel_values: Tensor) -> Tensor:
        return first_token_pre_norm(model, pixel_values)

    def identity(self) -> dict[str, Any]:
        return {**self.describe(), "model": self.cfg.videomae.model, "pool": self.cfg.motion_pool,
                **self.weights_identity("transformers.VideoMAEModel", ("hidden_size", "num_hidden_layers",
                                        "num_attention_heads", "intermediate_size", "patch_size", "tubelet_size",
                                        "num_frames", "image_size"))}

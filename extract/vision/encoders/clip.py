"""The paper's spatial encoder: CLIP ViT-L/14's vision tower, from whichever files the user holds.

One architecture runs, transformers' `CLIPVisionModel`; every format users hold is mapped
onto its parameter names and must fill all of them (`extract.vision.weights.fill_strictly`):

  transformers   a snapshot of `openai/clip-vit-large-patch14` (`CLIPModel`) or of a
                 `CLIPVisionModel`: config.json + model.safetensors / pytorch_model.bin
                 (sharded or not). The text tower and projection are dropped by name.
  timm           `timm/vit_large_patch14_clip_224.openai`: timm names (`blocks.N.attn.qkv`);
                 the fused qkv is split, the projection head dropped.
  open_clip      `open_clip_pytorch_model.bin` / `open_clip_model.safetensors` (`visual.*`).
  openai         OpenAI's `ViT-L-14.pt` (a TorchScript archive, fp16; `visual.*`).

The format is read from the tensors' names, not from file names. The architecture the
weights must fill is `extract.clip.arch` ("ViT-L/14" for the paper), or "snapshot" to
take it from a transformers snapshot's own config.json (smaller CLIPs, rehearsals).

The feature (SpaMo, shared/reference.md): the class token of the last encoder layer's
output *before* the post layer norm (`hidden_states[-1][:, 0]` in transformers terms).
Preprocessing is `CLIPImageProcessor`'s, read from the snapshot's preprocessor_config.json
when it has one, else its documented defaults for OpenAI CLIP (`ImageRecipe`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cache.errors import WeightsError, setting_fix
from extract.vision.encoders.base import Resolved, SpatialEncoder
from extract.vision.preprocess import CLIP_MEAN, CLIP_STD, ImageRecipe, read_recipe
from extract.vision.weights import (
    Converted,
    architecture,
    check_file,
    fill_strictly,
    foreign_file,
    is_torchscript,
    read_state_dict,
    split_qkv,
    tensor_shapes,
)

if TYPE_CHECKING:  # torch is imported where it is used: a cached run keys its entries without loading it.
    import torch
    from torch import Tensor, nn


ARCHS: dict[str, dict[str, Any]] = {
    # openai/clip-vit-large-patch14's vision_config (what SpaMo runs).
    "ViT-L/14": dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                     patch_size=14, image_size=224, hidden_act="quick_gelu", layer_norm_eps=1e-5),
    "ViT-B/16": dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                     patch_size=16, image_size=224, hidden_act="quick_gelu", layer_norm_eps=1e-5),
}
SNAPSHOT = "snapshot"
"""extract.clip.arch value: take the architecture from the transformers snapshot's config.json."""



ALTERNATE_REPOS = {"openai/clip-vit-large-patch14": ("timm/vit_large_patch14_clip_224.openai",)}
"""Other Hugging Face repos that hold the same weights, looked up in the HF cache in turn."""

# In a folder, the first of these that exists is the checkpoint (transformers' own order first).
CANDIDATES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json",
              "open_clip_model.safetensors", "open_clip_pytorch_model.bin")
FIX = (f"{setting_fix('extract.clip.weights')}, PATH the complete checkpoint of the configured architecture (a transformers snapshot of openai/clip-vit-large-patch14, timm/vit_large_patch14_clip_224.openai, open_clip_pytorch_model.bin or OpenAI's ViT-L-14.pt); or, for a checkpoint of another size, "
       f"{setting_fix('extract.clip.arch', 'ARCH')} ('snapshot': the architecture its config.json says)")


def clip_default_recipe(image_size: int) -> ImageRecipe:
    return ImageRecipe(image_size, (image_size, image_size), "bicubic", CLIP_MEAN, CLIP_STD,
                       source="CLIPImageProcessor defaults of openai/clip-vit-large-patch14")


# --------------------------------------------------------------------------- locating the files


@dataclass(frozen=True)
class ClipWeights:
    """The checkpoint that will be loaded, what format it is in, and where it was found."""

    path: Path
    """The weights file (or shard index) read."""
    format: str
    """transformers, timm, open_clip or openai."""
    found: str
    """How it was found: the config field, or the Hugging Face cache repo."""
    snapshot: Path | None
    """The folder with config.json / preprocessor_config.json, when the weights came in one."""


def locate(model: str, weights: str | None) -> ClipWeights:
    """Find the checkpoint (config path, else the HF cache) and detect its format; WeightsError if absent."""
    from cache.hf_cache import find_checkpoint

    f, snapshot, found = find_checkpoint(weights, (model, *ALTERNATE_REPOS.get(model, ())), CANDIDATES, what="CLIP",
                                         setting="extract.clip.weights", single_pt=True)
    return ClipWeights(f, detect_format(f), found, snapshot)


def detect_format(path: Path) -> str:
    """From the tensors' names: vision_model.* (transformers), visual.* (open_clip/openai), blocks.* (timm)."""
    names = tensor_shapes(path)
    if any(k.startswith("vision_model.") for k in names):
        return "transformers"
    if any(k.startswith("visual.") for k in names):
        return "openai" if is_torchscript(path) else "open_clip"
    if "cls_token" in names or any(k.startswith("blocks.") for k in names):
        return "timm"
    raise foreign_file("CLIP vision", names, path, FIX)


# --------------------------------------------------------------------------- architecture


def vision_config(arch: str, weights: ClipWeights | None) -> Any:
    """The CLIPVisionConfig the weights must fill."""
    from transformers import CLIPVisionConfig

    if arch == SNAPSHOT and (weights is None or weights.format != "transformers"):
        raise WeightsError("extract.clip.arch = 'snapshot' needs a transformers snapshot with config.json",
                           path=weights.path if weights else None, fix="set extract.clip.arch = 'ViT-L/14'")
    return architecture(CLIPVisionConfig, ARCHS, arch, weights.snapshot if weights else None,
                        setting="extract.clip.arch", inner=("clip", "vision_config"))


# --------------------------------------------------------------------------- key conversion


_IGNORED_TRANSFORMERS = (("text_model.", "text tower"), ("text_projection.", "text projection"),
                         ("visual_projection.", "image projection"), ("logit_scale", "logit scale"),
                         ("vision_model.embeddings.position_ids", "position ids (recomputed)"))

_OPENCLIP_BLOCK = {"ln_1": "layer_norm1", "ln_2": "layer_norm2", "attn.out_proj": "self_attn.out_proj",
                   "mlp.c_fc": "mlp.fc1", "mlp.c_proj": "mlp.fc2"}
_TIMM_BLOCK = {"norm1": "layer_norm1", "norm2": "layer_norm2", "attn.proj": "self_attn.out_proj",
               "mlp.fc1": "mlp.fc1", "mlp.fc2": "mlp.fc2"}
_BLOCK_RE = re.compile(r"^(?:visual\.transformer\.resblocks|blocks)\.(\d+)\.(.+)\.(weight|bias)$")
_QKV_RE = re.compile(r"^(?:visual\.transformer\.resblocks|blocks)\.(\d+)\.attn\.(?:in_proj_|qkv\.)(weight|bias)$")


def convert(fmt: str, state: dict[str, Tensor]) -> Converted:
    """Rename a checkpoint of any supported format to CLIPVisionModel's keys (`vision_model.*`)."""
    if fmt == "transformers":
        return _convert_transformers(state)
    if fmt in ("open_clip", "openai"):
        return _convert_blocks(state, prefix="visual.", block=_OPENCLIP_BLOCK, top={
            "visual.class_embedding": ("embeddings.class_embedding", None),
            "visual.positional_embedding": ("embeddings.position_embedding.weight", None),
            "visual.conv1.weight": ("embeddings.patch_embedding.weight", None),
            "visual.ln_pre.weight": ("pre_layrnorm.weight", None), "visual.ln_pre.bias": ("pre_layrnorm.bias", None),
            "visual.ln_post.weight": ("post_layernorm.weight", None), "visual.ln_post.bias": ("post_layernorm.bias", None),
        }, head=("visual.proj",), foreign="text tower and CLIP head")
    if fmt == "timm":
        return _convert_blocks(state, prefix="", block=_TIMM_BLOCK, top={
            "cls_token": ("embeddings.class_embedding", lambda t: t.reshape(-1)),
            "pos_embed": ("embeddings.position_embedding.weight", lambda t: t.reshape(t.shape[-2], t.shape[-1])),
            "patch_embed.proj.weight": ("embeddings.patch_embedding.weight", None),
            "norm_pre.weight": ("pre_layrnorm.weight", None), "norm_pre.bias": ("pre_layrnorm.bias", None),
            "norm.weight": ("post_layernorm.weight", None), "norm.bias": ("post_layernorm.bias", None),
        }, head=("head.weight", "head.bias"), foreign=None)
    raise ValueError(f"unknown CLIP format {fmt!r}")


def _convert_transformers(state: dict[str, Tensor]) -> Converted:
    out, ignored = {}, {}
    for k, v in state.items():
        why = next((w for p, w in _IGNORED_TRANSFORMERS if k.startswith(p)), None)
        if why is not None:
            ignored[why] = ignored.get(why, 0) + 1
        else:
            out[k] = v
    return Converted(out, ignored)


def _convert_blocks(state: dict[str, Tensor], *, prefix: str, block: dict[str, str],
                    top: dict[str, tuple[str, Any]], head: tuple[str, ...], foreign: str | None) -> Converted:
    """open_clip/OpenAI and timm share a layout: top-level tensors, numbered blocks, a fused qkv."""
    out: dict[str, Tensor] = {}
    ignored: dict[str, int] = {}
    fused: dict[str, dict[str, Tensor]] = {}
    for k, v in state.items():
        if prefix and not k.startswith(prefix) and foreign is not None:
            ignored[foreign] = ignored.get(foreign, 0) + 1
        elif k in head:
            ignored["projection head"] = ignored.get("projection head", 0) + 1
        elif k in top:
            name, fn = top[k]
            out[f"vision_model.{name}"] = fn(v) if fn else v
        elif m := _QKV_RE.match(k):
            fused.setdefault(f"vision_model.encoder.layers.{m.group(1)}", {})[m.group(2)] = v
        elif (m := _BLOCK_RE.match(k)) and m.group(2) in block:
            i, inner, kind = m.groups()
            out[f"vision_model.encoder.layers.{i}.{block[inner]}.{kind}"] = v
        else:
            out[k] = v  # kept under its own name: fill_strictly reports it as unexpected
    for layer, parts in fused.items():
        if "weight" in parts:
            out.update(split_qkv(f"{layer}.self_attn", parts["weight"], parts.get("bias")))
        else:
            out[f"{layer}.self_attn.qkv.bias"] = parts["bias"]  # a bias without its weight: unexpected
    return Converted(out, ignored)


# --------------------------------------------------------------------------- loading


def check(weights: ClipWeights, config: Any) -> dict[str, int]:
    """The file fills CLIPVisionModel(config), from names and shapes alone; returns what was ignored by name."""
    from transformers import CLIPVisionModel

    return check_file(weights.path, lambda state: convert(weights.format, state), CLIPVisionModel, config, fix=FIX)


def resolve(model: str, weights_path: str | None, arch: str) -> tuple[ClipWeights, Any, dict[str, int]]:
    """(weights found, the architecture they must fill, what was ignored by name), checked; WeightsError if not."""
    weights = locate(model, weights_path)
    config = vision_config(arch, weights)
    return weights, config, check(weights, config)


def load(weights: ClipWeights, config: Any) -> torch.nn.Module:
    """CLIPVisionModel with every parameter from the file (float32, eval mode)."""
    import torch
    from transformers import CLIPVisionModel

    conv = convert(weights.format, read_state_dict(weights.path))
    with torch.device("meta"):
        model = CLIPVisionModel(config)
    fill_strictly(model, conv, path=weights.path, fix=FIX)
    # position_ids is a non-persistent buffer: the meta build left it empty, so make it again.
    emb = model.vision_model.embeddings
    emb.register_buffer("position_ids", torch.arange(emb.num_positions).expand((1, -1)), persistent=False)
    return model.float().eval()


def cls_pre_norm(model: torch.nn.Module, pixel_values: Tensor) -> Tensor:
    """Class token of the last encoder layer, before post_layernorm (= hidden_states[-1][:, 0]).

    Runs the tower's parts directly so the 24 intermediate states are never kept.
    """
    vm = model.vision_model
    h = vm.pre_layrnorm(vm.embeddings(pixel_values))
    return vm.encoder(inputs_embeds=h)[0][:, 0]


# --------------------------------------------------------------------------- the encoder


class ClipVit(SpatialEncoder):
    """The paper's spatial stream (SpaMo): CLIP ViT-L/14, class token before post_layernorm, S2."""

    name = "clip"
    archs = ARCHS
    title = "CLIP"
    formats = ("transformers", "timm", "open_clip", "openai")
    token = "class token of the last layer, before post_layernorm (hidden_states[-1][:, 0])"

    def settings(self) -> tuple:
        s = self.cfg.clip
        return (s.model, s.weights, s.arch)

    def resolve(self) -> Resolved:
        from transformers import CLIPVisionConfig

        if self.random_init:  # benchmarks only: paper size, random weights, marked so in the identity
            config, weights, ignored = CLIPVisionConfig(**ARCHS["ViT-L/14"]), None, {}
        else:
            weights, config, ignored = resolve(*self.settings())
        size = int(config.image_size)
        recipe = read_recipe(weights.snapshot if weights else None, clip_default_recipe(size))
        if recipe.crop != (size, size):
            raise WeightsError(f"the image processor's crop {recipe.crop} does not match CLIP's input size {size}",
                               path=recipe.source, fix="use the snapshot's own preprocessor_config.json")
        return Resolved(weights, config, ignored, recipe)

    def build(self) -> nn.Module:
        if self.resolved.weights is None:
            from transformers import CLIPVisionModel

            return CLIPVisionModel(self.resolved.config).eval()
        return load(self.resolved.weights, self.resolved.config)

    def patch_token(self, model: nn.Module, pixel_values: Tensor) -> Tensor:
        return cls_pre_norm(model, pixel_values)

    def identity(self) -> dict[str, Any]:
        return {**self.describe(), "model": self.cfg.clip.model,
                **self.weights_identity("transformers.CLIPVisionModel", ("hidden_size", "num_hidden_layers",
                                        "num_attention_heads", "intermediate_size", "patch_size", "image_size",
                                        "hidden_act"))}

"""Tiny random-init transformers snapshots of DINOv3, SigLIP 2 and V-JEPA 2, saved as the real repos ship.

No real weights can be downloaded here, so the loaders of those encoders are tested (and the
encoder grid's mechanics shown, `bench/encoder_grid.py`) on small models of the real classes:
config.json, model.safetensors and the processor's config, exactly the files a snapshot has.
Every parameter is random (norms and layer scales too), so a wrong mapping shows in the numbers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from extract.vision.preprocess import IMAGENET_MEAN, IMAGENET_STD

IMAGE = 32
"""Input side of the tiny image models (4x4 patches of 8 pixels)."""
CLIP_FRAMES = 4
"""Frames per clip of the tiny V-JEPA 2 (two 2-frame tubelets)."""


def _randomise(model: Any, seed: int) -> Any:
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in sorted(model.named_parameters()):
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    return model.eval()


def save_dinov3_snapshot(out: Path, *, hidden: int = 32, seed: int = 11) -> Path:
    """A DINOv3ViTModel snapshot (2 layers, 2 register tokens) + DINOv3ViTImageProcessorFast (resize to 32x32)."""
    from transformers import DINOv3ViTConfig, DINOv3ViTImageProcessorFast, DINOv3ViTModel

    config = DINOv3ViTConfig(hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2,
                             num_attention_heads=2, patch_size=8, image_size=IMAGE, num_register_tokens=2)
    _randomise(DINOv3ViTModel(config), seed).save_pretrained(out)
    DINOv3ViTImageProcessorFast(size={"height": IMAGE, "width": IMAGE}).save_pretrained(out)
    return Path(out)


def save_siglip2_snapshot(out: Path, *, hidden: int = 32, seed: int = 12) -> Path:
    """A SiglipModel snapshot (text tower included, as google/siglip2-*-256 ships) + SiglipImageProcessor."""
    from transformers import SiglipConfig, SiglipImageProcessor, SiglipModel

    vision = dict(hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2, num_attention_heads=2,
                  patch_size=8, image_size=IMAGE)
    text = dict(hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=1, num_attention_heads=2,
                vocab_size=99, max_position_embeddings=16)
    _randomise(SiglipModel(SiglipConfig(text_config=text, vision_config=vision)), seed).save_pretrained(out)
    SiglipImageProcessor(size={"height": IMAGE, "width": IMAGE}, resample=2, image_mean=[0.5] * 3,
                         image_std=[0.5] * 3).save_pretrained(out)
    return Path(out)


def save_vjepa2_snapshot(out: Path, *, hidden: int = 32, seed: int = 13) -> Path:
    """A VJEPA2Model snapshot (encoder + a 1-layer predictor) + VJEPA2VideoProcessor (crop 32)."""
    from transformers import VJEPA2Config, VJEPA2Model, VJEPA2VideoProcessor

    config = VJEPA2Config(patch_size=8, crop_size=IMAGE, frames_per_clip=CLIP_FRAMES, tubelet_size=2,
                          hidden_size=hidden, num_attention_heads=2, num_hidden_layers=2, pred_hidden_size=hidden,
                          pred_num_attention_heads=2, pred_num_hidden_layers=1, num_pooler_layers=1)
    _randomise(VJEPA2Model(config), seed).save_pretrained(out)
    VJEPA2VideoProcessor(crop_size=IMAGE, image_mean=list(IMAGENET_MEAN),
                         image_std=list(IMAGENET_STD)).save_pretrained(out)
    return Path(out)


def save_paper_snapshots(out: Path) -> dict[str, Path]:
    """Tiny snapshots of every paper encoder (CLIP, DINOv2, DINOv3, SigLIP 2, VideoMAE, V-JEPA 2), by
    encoder name: what `bench/encoder_grid.py` points the encoder grid at."""
    import torch
    from transformers import (
        BitImageProcessor,
        CLIPVisionConfig,
        CLIPVisionModel,
        Dinov2Config,
        Dinov2Model,
        VideoMAEConfig,
        VideoMAEModel,
    )

    from extract.vision.assets import save_clip_snapshot, save_videomae_snapshot

    out = Path(out)
    torch.manual_seed(0)
    clip = CLIPVisionModel(CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                            num_attention_heads=2, patch_size=8, image_size=IMAGE))
    dino = _randomise(Dinov2Model(Dinov2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, patch_size=8,
                                               image_size=IMAGE)), seed=14)
    dino.save_pretrained(out / "dinov2")
    BitImageProcessor(size={"shortest_edge": IMAGE}, crop_size={"height": IMAGE, "width": IMAGE}, resample=3,
                      image_mean=list(IMAGENET_MEAN), image_std=list(IMAGENET_STD)).save_pretrained(out / "dinov2")
    mae = VideoMAEModel(VideoMAEConfig(image_size=IMAGE, patch_size=8, num_frames=16, hidden_size=32,
                                       num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                                       use_mean_pooling=False))
    return {"clip": save_clip_snapshot(clip.eval(), out / "clip"), "dinov2": out / "dinov2",
            "dinov3": save_dinov3_snapshot(out / "dinov3"), "siglip2": save_siglip2_snapshot(out / "siglip2"),
            "videomae": save_videomae_snapshot(mae.eval(), out / "videomae"),
            "vjepa2": save_vjepa2_snapshot(out / "vjepa2")}

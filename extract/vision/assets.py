"""CLIP and VideoMAE checkpoints in the formats users hold, for rehearsing the paper path.

No real weights can be downloaded here, so the paper path is rehearsed on models of the
real classes saved exactly as users hold them: transformers snapshots (config.json,
model.safetensors, preprocessor_config.json). `tiny_*` export the toy-tuned tiny models
(the same weights the tiny profile runs, mapped to transformers' names), so a rehearsal of
the paper recipe learns on the toy as the tiny profile does; `random_*` make random-init
models of any size (tests use full-size ones to prove SpaMo equivalence).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from extract.vision.encoders.clip import convert
from extract.vision.preprocess import CLIP_MEAN, CLIP_STD, IMAGENET_MEAN, IMAGENET_STD


def save_clip_snapshot(model: Any, out: Path, *, full_clip: bool = False) -> Path:
    """A transformers snapshot of a CLIPVisionModel (or, with `full_clip`, of a CLIPModel around
    it, text tower included, as openai/clip-vit-large-patch14 ships) + its image processor."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    out = Path(out)
    vc = model.config
    if full_clip:
        text = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, vocab_size=99,
                    max_position_embeddings=16)
        full = CLIPModel(CLIPConfig(text_config=text, vision_config=vc.to_dict(), projection_dim=16))
        full.vision_model.load_state_dict(model.vision_model.state_dict())
        full.save_pretrained(out)
    else:
        model.save_pretrained(out)
    size = int(vc.image_size)
    CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size},
                       image_mean=list(CLIP_MEAN), image_std=list(CLIP_STD)).save_pretrained(out)
    return out


def save_videomae_snapshot(model: Any, out: Path, *, pretraining: bool = True) -> Path:
    """A transformers snapshot of VideoMAE as MCG-NJU/videomae-large ships it (`VideoMAEForPreTraining`:
    `videomae.*` plus a decoder) or, without `pretraining`, a bare VideoMAEModel; + its processor."""
    from transformers import VideoMAEForPreTraining, VideoMAEImageProcessor

    out = Path(out)
    if pretraining:
        cfg = model.config
        cfg.decoder_hidden_size, cfg.decoder_num_hidden_layers = min(cfg.hidden_size, 64), 1
        cfg.decoder_num_attention_heads, cfg.decoder_intermediate_size = 2, 2 * min(cfg.hidden_size, 64)
        full = VideoMAEForPreTraining(cfg)
        full.videomae.load_state_dict(model.state_dict())
        full.save_pretrained(out)
    else:
        model.save_pretrained(out)
    size = int(model.config.image_size)
    VideoMAEImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size},
                           image_mean=list(IMAGENET_MEAN), image_std=list(IMAGENET_STD)).save_pretrained(out)
    return out


def tiny_clip(image_size: int = 112) -> Any:
    """The tiny profile's seeded timm ViT as a transformers CLIPVisionModel (same weights)."""
    from transformers import CLIPVisionConfig, CLIPVisionModel

    from extract.vision.encoders.tiny import tiny_vit

    vit = tiny_vit(image_size)
    config = CLIPVisionConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                              patch_size=16, image_size=image_size, hidden_act="quick_gelu",
                              layer_norm_eps=1e-6)  # timm's LayerNorm default, which the tiny ViT was built with
    model = CLIPVisionModel(config)
    model.load_state_dict(convert("timm", vit.state_dict()).state, strict=True)
    return model.eval()


def tiny_videomae(image_size: int = 112, clip_len: int = 16) -> Any:
    from extract.vision.encoders.tiny import tiny_videomae

    return tiny_videomae(image_size, clip_len).eval()


def export_tiny_vision(out: Path, image_size: int = 112) -> dict[str, Path]:
    """`out/clip` (a CLIPModel snapshot) and `out/videomae` (a VideoMAEForPreTraining snapshot) of the
    tiny profile's models: the paper path's loaders read them like the real ones."""
    out = Path(out)
    return {"clip": save_clip_snapshot(tiny_clip(image_size), out / "clip", full_clip=True),
            "videomae": save_videomae_snapshot(tiny_videomae(image_size), out / "videomae")}

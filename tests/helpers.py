"""Builders the tests share: small models of the paper's architectures, media files in the real formats."""

from __future__ import annotations

from pathlib import Path
from typing import Any

TOY_VIDEOS = 240
"""The demo's corpus size: 192 train sentences teach the tiny SONAR (default settings)."""
TOY_LANGS = ["deu_Latn", "eng_Latn", "fra_Latn"]
TOY_EMBED_SETTINGS: dict[str, Any] = {"translator": "sonar", "beam_size": 1, "batch_size": 128, "references": False}
"""Greedy tiny-SONAR translation (exact on this toy, and quick) of every language, the toy's own eng/fra
set aside so that the translation machinery is what the tests exercise."""


def toy_embed_cfg(cache: Path, root: Path, langs=TOY_LANGS, splits=("train", "dev", "test"), **embed: object):
    """The tiny-profile config of the shared cache; `embed` overrides TOY_EMBED_SETTINGS."""
    from pipeline.config import build_config

    embed = {**TOY_EMBED_SETTINGS, **embed}
    return build_config({
        "profile": "tiny",
        "dataset": {"name": "toy", "root": str(root), "splits": list(splits)},
        "cache": {"dir": str(cache)},
        "embed": {"langs": list(langs), "device": "cpu", **embed},
    })


def random_clip(hidden: int, layers: int, heads: int, intermediate: int, patch: int, image: int, seed: int = 0) -> Any:
    import torch
    from transformers import CLIPVisionConfig, CLIPVisionModel

    torch.manual_seed(seed)
    return CLIPVisionModel(CLIPVisionConfig(hidden_size=hidden, intermediate_size=intermediate, num_hidden_layers=layers,
                                            num_attention_heads=heads, patch_size=patch, image_size=image,
                                            hidden_act="quick_gelu")).eval()


def random_videomae(hidden: int, layers: int, heads: int, intermediate: int, image: int, frames: int = 16, seed: int = 1) -> Any:
    import torch
    from transformers import VideoMAEConfig, VideoMAEModel

    torch.manual_seed(seed)
    return VideoMAEModel(VideoMAEConfig(image_size=image, num_frames=frames, hidden_size=hidden,
                                        num_hidden_layers=layers, num_attention_heads=heads,
                                        intermediate_size=intermediate, use_mean_pooling=False)).eval()


def level(i: int) -> int:
    """Grey level of frame i in the test videos: lets a test tell which frames it got."""
    return 10 + 5 * i


def grey_frame(i: int, height: int, width: int) -> Any:
    import numpy as np

    return np.full((height, width, 3), level(i), np.uint8)


def write_mp4(path: Path, frames: int = 48, size: int = 64, fps: int = 24, codec: str = "mpeg4",
              faststart: bool = False, width: int | None = None, draw: Any = grey_frame) -> Path:
    """An mp4 of `frames` frames, `size` high and `width` (default `size`) wide; frame i is
    `draw(i, height, width)` (default: the uniform grey `level(i)`)."""
    from fractions import Fraction

    import av

    width = width or size
    path.parent.mkdir(parents=True, exist_ok=True)
    options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), mode="w", options=options) as container:
        stream = container.add_stream(codec, rate=Fraction(fps))
        stream.width, stream.height = width, size
        stream.pix_fmt = "yuv420p"
        if codec == "mpeg4":
            stream.bit_rate = 4_000_000
        for i in range(frames):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(draw(i, size, width), format="rgb24")))
        container.mux(stream.encode())
    return path

"""Rehearse the paper path on a laptop: the toy corpus plus its models in the formats users hold.

`slt-pipe make-toy --out DATA --assets ASSETS` writes, next to the toy corpus:

    ASSETS/vision/clip/        transformers CLIPModel snapshot (the tiny ViT's weights, text tower
                               included as openai/clip-vit-large-patch14 ships one)
    ASSETS/vision/videomae/    transformers VideoMAEForPreTraining snapshot (the tiny VideoMAE)
    ASSETS/sonar/              fairseq2 checkpoints of the toy-trained tiny SONAR + asset cards
    ASSETS/nllb/               HF snapshot of the toy-trained tiny NLLB
    ASSETS/rehearsal.toml      a config that points the paper profile at all of them

Then `FAIRSEQ2_USER_ASSET_DIR=ASSETS/sonar/cards slt-pipe extract --config ASSETS/rehearsal.toml`
(and embed-targets, train, evaluate, translate) runs `--profile paper` end to end: the
strict loaders of the real formats, SpaMo's recipe (pre-norm tokens, S2, the image
processors, the 256x256 squash) and SpaMo's visual block, with only the model sizes and the
step counts of the toy. The tiny profile's own loading code is never reached.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console

from pipeline.config import Config, build_config

CONFIG_FILE = "rehearsal.toml"
TRAIN = {"steps": 1200, "warmup_steps": 100, "eval_every": 300, "save_every": 300, "max_len": 32, "batch_size": 32,
         "lr": 1e-3, "hidden_dim": 256}
"""The rehearsal's sizes and step counts: 1,200 steps at one learning rate of 1e-3, what the tiny decoder
needs on the toy (the paper's 50,000 steps peaking at 1e-4 are for the full-size decoder on PHOENIX), and
SpaMo's visual block at width 256 instead of 768 (its k=5 convolutions at 768 cost 2 s a step on a CPU)."""


def make_assets(toy_root: Path, assets: Path, cache: Path | None, console: Console, **embed: Any) -> Path:
    """Train (or find in the cache) the toy's tiny SONAR and NLLB, export every model in its real
    format under `assets`, and write `assets/rehearsal.toml`; returns that file."""
    from extract.text.assets import describe, export_text_assets
    from extract.vision.assets import export_tiny_vision
    from pipeline.dataset import configured_dataset
    from pipeline.embed_stage import ensure_tiny_nllb, ensure_tiny_sonar

    assets = Path(assets).resolve()
    layer: dict[str, Any] = {"profile": "tiny", "dataset": {"name": "toy", "root": str(toy_root)},
                             "embed": {"nllb_model": "tiny", **embed}}
    if cache is not None:
        layer["cache"] = {"dir": str(cache)}
    cfg: Config = build_config(layer)
    dataset = configured_dataset(cfg, console)
    sonar = ensure_tiny_sonar(cfg, dataset, console)
    nllb = ensure_tiny_nllb(cfg, dataset, console)
    text = export_text_assets(sonar, nllb, assets)
    vision = export_tiny_vision(assets / "vision", image_size=cfg.extract.image_size)
    console.print(describe(text), highlight=False)
    path = assets / CONFIG_FILE
    path.write_text(rehearsal_toml(dataset.root, vision, text))
    return path


def rehearsal_toml(root: Path, vision: dict[str, Path], text: dict[str, Any]) -> str:
    from pipeline.toml_writer import to_toml

    layer = {
        "profile": "paper",
        "dataset": {"name": "phoenix", "root": str(root)},
        "extract": {"clip": {"weights": str(vision["clip"]), "arch": "snapshot"},
                    "videomae": {"weights": str(vision["videomae"]), "arch": "snapshot"}},
        "embed": {"sonar_encoder": text["sonar_encoder"], "sonar_decoder": text["sonar_decoder"],
                  "nllb_model": str(text["nllb_model"])},
        "train": dict(TRAIN),  # toy-sized
    }
    return ("# The paper profile on the toy corpus, with the toy's models in the formats users hold.\n"
            f"# Needs: export FAIRSEQ2_USER_ASSET_DIR={text['fairseq2_user_asset_dir']}\n"
            "# [train] is toy-sized: see pipeline/rehearsal.py\n" + to_toml(layer))

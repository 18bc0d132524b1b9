"""Per-frame cost of the paper recipe at real sizes (random-init ViT-L/14 S2 + VideoMAE-L), in-process.

    .venv/bin/python bench/paper_cost.py [--device cpu|cuda] [--threads N]

Prints seconds per frame for the spatial stream (five ViT-L/14 passes with S2), per clip for
VideoMAE-L, and per frame for the CPU resizes, then the frames/s a PHOENIX-like video gets
(one 16-frame clip per 8 frames). No weights are needed: the models are random-init.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

# bench/ holds extract.py, which would shadow the extract package: the repo root comes first.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from extract.vision.streams import FeatureExtractor  # noqa: E402
from pipeline.config import build_config  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--frames", type=int, default=8, help="frames through the spatial stream")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = build_config({"profile": "paper", "extract": {"squash": "256x256"}}).extract
    fx = FeatureExtractor(cfg, args.device, random_init=True)
    frames = np.random.default_rng(0).integers(0, 255, (16, 210, 260, 3), dtype=np.uint8)
    t = time.perf_counter()
    views = fx.prepare(frames)
    prep = (time.perf_counter() - t) / len(frames)
    n = min(args.frames, len(frames))
    sync = torch.cuda.synchronize if fx.device.type == "cuda" else (lambda: None)
    t = time.perf_counter()
    fx.spatial(frames[:n], {k: v[:n] for k, v in views.items()})
    sync()
    spatial = (time.perf_counter() - t) / n
    t = time.perf_counter()
    fx.motion(frames, views)  # 16 frames: one clip
    sync()
    motion = time.perf_counter() - t
    print(f"device {fx.device} ({fx.precision.autocast or 'float32'}), {args.threads} CPU threads")
    print(f"spatial (S2: 5 ViT-L/14 passes) {spatial:.3f} s/frame; motion (VideoMAE-L) {motion:.3f} s/clip; "
          f"CPU resizes {prep * 1000:.1f} ms/frame")
    print(f"PHOENIX-like video (1 clip per 8 frames): {1 / (spatial + motion / 8):.3f} frames/s")


if __name__ == "__main__":
    main()

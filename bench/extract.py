"""Extraction throughput: model-only forward vs the full Ray pipeline, at the same batch size.

    .venv/bin/python bench/extract.py --profile tiny --videos 40
    python bench/extract.py --profile paper --random-init --videos 64 --batch-frames 128   # GPU, no weights
    .venv/bin/python bench/extract.py --profile tiny --compare-workers                    # 1 vs 2 Ray workers

Model-only: the pipeline's own `ShardComputer` (same batches, same device code) over videos
decoded in memory beforehand, so only the forward passes (and host->device copies) are timed.
Pipeline: `run_extraction` through Ray (decode tasks, model actor, shard writes), timed from
"workers ready" to "last shard written" (Ray start and model loading are printed apart).
Goal: pipeline >= 0.9 x model-only. On CUDA it also prints the achieved fraction of the bf16
dense peak (default 989 TFLOPS, H100 SXM), with ViT and VideoMAE FLOPs counted analytically.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from cache.store import Cache  # noqa: E402
from extract.datasets import open_dataset  # noqa: E402
from extract.datasets.toy import make_toy  # noqa: E402
from extract.preprocess import resolve_squash  # noqa: E402
from extract.models import FeatureExtractor, motion_flops_per_clip, spatial_flops_per_frame  # noqa: E402
from extract.ray_session import ray_session  # noqa: E402
from extract.runner import ShardComputer, decode_video, object_store_bytes, plan_shards, run_extraction  # noqa: E402
from pipeline.config import build_config  # noqa: E402


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def model_only(fx: FeatureExtractor, cfg, samples) -> tuple[float, int, int]:
    """(seconds, frames, clips) of the forward passes over pre-decoded videos (after one warm-up shard)."""
    decoded = [decode_video(s.frames, cfg, fx.recipe) for s in samples]
    plan = plan_shards(samples, cfg.shard_videos)
    computer = ShardComputer(fx, cfg)
    warm = iter(decoded[: len(plan[0].samples)])
    list(computer.run(plan[0], warm))
    sync(fx.device)
    f0, c0 = fx.frames_forwarded, fx.clips_forwarded
    it = iter(decoded)
    t0 = time.perf_counter()
    for shard in plan:
        for _ in computer.run(shard, it):  # the shard's final .cpu() synchronises
            pass
    sync(fx.device)
    return time.perf_counter() - t0, fx.frames_forwarded - f0, fx.clips_forwarded - c0


def pipeline(cfg, samples, cache_dir: Path, random_init: bool, workers: int) -> tuple[float, float, int]:
    """(steady seconds, total seconds, frames) of run_extraction through Ray with `workers` model workers."""
    cfg.workers = workers
    cache = Cache(cache_dir)
    t0 = time.perf_counter()
    with cache.begin("features", f"bench-{workers}", {}) as pending:
        result = run_extraction(cfg, samples, pending, random_init=random_init)
    return result.compute["steady_seconds"], time.perf_counter() - t0, result.frames_forwarded


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", choices=["tiny", "paper"], default="tiny")
    ap.add_argument("--random-init", action="store_true",
                    help="bench only: paper-size models with random weights (no weights on the machine)")
    ap.add_argument("--videos", type=int, default=40, help="toy corpus size (train split is used, ~80%%)")
    ap.add_argument("--root", type=Path, help="existing toy corpus instead of generating one")
    ap.add_argument("--batch-frames", type=int)
    ap.add_argument("--batch-clips", type=int)
    ap.add_argument("--shard-videos", type=int, default=8)
    ap.add_argument("--scales", default=None, help="e.g. 1 or 1,2 (default: the profile's)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--compare-workers", action="store_true", help="also run the pipeline with 2 Ray workers")
    ap.add_argument("--peak-tflops", type=float, default=989.0, help="dense bf16 peak of the GPU (H100 SXM: 989)")
    args = ap.parse_args()

    layer: dict = {"profile": args.profile, "extract": {"shard_videos": args.shard_videos, "device": args.device}}
    for field, value in (("batch_frames", args.batch_frames), ("batch_clips", args.batch_clips)):
        if value:
            layer["extract"][field] = value
    if args.scales:
        layer["extract"]["spatial_scales"] = [int(s) for s in args.scales.split(",")]
    cfg = build_config(layer).extract
    cfg.squash = resolve_squash(cfg.squash, "toy")  # the toy is in PHOENIX layout: SpaMo's 256x256 squash
    with tempfile.TemporaryDirectory() as tmp:
        root = args.root
        if root is None:
            root = Path(tmp) / "toy"
            make_toy(root, videos=args.videos, seed=0)
        samples = open_dataset("toy", root, ["train"]).samples["train"]
        fx = FeatureExtractor(cfg, args.device, random_init=args.random_init)
        if fx.device.type == "cpu":  # the threads one CPU Ray worker gets (start_workers)
            torch.set_num_threads(max(1, (os.cpu_count() or 1) - 1))
        secs, frames, clips = model_only(fx, cfg, samples)
        model_fps = frames / secs
        device = fx.device
        print(f"device {device}  autocast {fx.precision.autocast or 'float32'}  spatial {cfg.spatial_model} "
              f"scales {cfg.spatial_scales} @ {fx.recipe.image_size}px ({fx.recipe.kind} recipe)  motion {cfg.motion_model}  "
              f"batch {cfg.batch_frames} frames / {cfg.batch_clips} clips  videos {len(samples)}  frames {frames}")
        print(f"model-only : {model_fps:10.1f} frames/s  ({secs:.2f} s)")
        if device.type == "cuda":
            flops = frames * spatial_flops_per_frame(fx) + clips * motion_flops_per_clip(fx)
            vit_only = frames * spatial_flops_per_frame(fx)
            print(f"             {flops / secs / 1e12:8.1f} TFLOP/s = {flops / secs / (args.peak_tflops * 1e12):.1%} of "
                  f"{args.peak_tflops:.0f} TFLOPS bf16 peak (ViT alone {vit_only / secs / 1e12:.1f} TFLOP/s)")
        del fx
        if device.type == "cuda":
            torch.cuda.empty_cache()
        runs = [1, 2] if args.compare_workers else [1]
        with ray_session(cfg.ray_address, object_store_bytes=object_store_bytes(cfg)):
            results = {w: pipeline(cfg, samples, Path(tmp) / "cache", args.random_init, w) for w in runs}
        for w, (steady, total, pframes) in results.items():
            fps = pframes / steady
            print(f"pipeline {w}w: {fps:10.1f} frames/s  ({steady:.2f} s steady, {total:.2f} s with worker start)"
                  f"  ratio to model-only {fps / model_fps:.2f}")
        if args.compare_workers:
            one, two = (results[w][2] / results[w][0] for w in (1, 2))
            print(f"scaling 2 vs 1 workers: {two / one:.2f}x")


if __name__ == "__main__":
    main()

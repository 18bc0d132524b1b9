"""Extraction throughput: model-only forward vs the full Ray pipeline, at the same batch size.

    .venv/bin/python bench/extract.py --profile tiny --videos 40                          # before vs after, one run
    .venv/bin/python bench/extract.py --profile tiny --videos 40 --decode after           # only the new decoding
    python bench/extract.py --profile paper --random-init --videos 64 --batch-frames 128   # GPU, no weights
    .venv/bin/python bench/extract.py --profile tiny --compare-workers                    # 1 vs 2 Ray workers

Model-only: the pipeline's own `ShardComputer` (same batches, same device code) over videos
decoded in memory beforehand, so only the forward passes (and host->device copies) are timed.
Pipeline: `run_extraction` through Ray (decode tasks, model actor, shard writes), timed from
"workers ready" to "last shard written" (Ray start and model loading are printed apart), each
run on a Ray started for it.
The pipeline runs twice by default, one after the other: "before", decoding as it ran before
`extract.vision.ray_backend.DecodeTuning` (every frame decoded, then all prepared; decode tasks at the
workers' priority; decode workers started on the first video), and "after", the default
(frames prepared in chunks on threads as they are decoded, decode tasks at idle priority
filling every cycle the model leaves, decode workers warmed while the model loads). Both
write features; the bench checks they are the same bytes. The model computes with the same
threads in both (plan_actors), which model-only uses too. "others" is the CPU that other
processes on the machine took during a run (cores, from /proc/stat): figures are only
comparable when it is near 0. "in-process" is `extract.workers = 0`: the same core without Ray
(decoding on threads at idle priority, the model at the threads a Ray worker gets).
Goal: pipeline >= 0.9 x model-only on GPU (0.7 x on a 2-core CPU, where decoding and the model
share the cores). On CUDA it also prints the achieved fraction of the bf16
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
from decode import OtherLoad  # noqa: E402  (bench/decode.py)

from cache.store import Cache  # noqa: E402
from extract.datasets import open_dataset  # noqa: E402
from extract.datasets.toy import make_toy  # noqa: E402
from extract.ray_session import ray_session  # noqa: E402
from extract.vision import ray_backend as ray_runner  # noqa: E402
from extract.vision.backend import pick_backend  # noqa: E402
from extract.vision.preprocess import resolve_squash  # noqa: E402
from extract.vision.runner import ShardComputer, decode_video, object_store_bytes, plan_shards, run_extraction  # noqa: E402
from extract.vision.streams import FeatureExtractor  # noqa: E402
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


DECODE = {"before": ray_runner.OLD_DECODE, "after": ray_runner.DecodeTuning()}


def pipeline(cfg, samples, cache_dir: Path, random_init: bool, workers: int,
             decode: str) -> tuple[float, float, int, str, float]:
    """(steady seconds, total seconds, frames, features digest, cores other processes took)
    of run_extraction with `workers` model workers (0: in this process, no Ray) and decoding `decode`."""
    import hashlib

    import numpy as np

    from cache.feature_store import StoreReader
    from cache.features import STREAM_KIND

    cfg.workers = workers
    ray_runner.TUNING = DECODE[decode]
    cache = Cache(cache_dir)
    load = OtherLoad()
    t0 = time.perf_counter()
    try:
        pendings = {n: cache.begin(STREAM_KIND, f"bench-{workers}-{decode}-{n}", {}) for n in cfg.streams}
        result = run_extraction(cfg, samples, {n: p.dir for n, p in pendings.items()}, pick_backend(cfg),
                                random_init=random_init)
        seconds = time.perf_counter() - t0
        others = load.cores()
        digest = hashlib.sha256()
        for pending in pendings.values():
            reader = StoreReader(pending.dir)
            for vid in sorted(reader.ids):
                for a in reader.rows(vid).values():
                    digest.update(np.ascontiguousarray(a).tobytes())
            pending.release()
    finally:
        ray_runner.TUNING = ray_runner.DecodeTuning()
    return result.compute["steady_seconds"], seconds, result.frames_forwarded, digest.hexdigest()[:16], others


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
    ap.add_argument("--decode", choices=["both", "before", "after"], default="both",
                    help="decode tasks as before DecodeTuning, as now, or both (the default), in one run")
    ap.add_argument("--in-process", action=argparse.BooleanOptionalAction, default=True,
                    help="also run extract.workers = 0 (in this process, no Ray)")
    ap.add_argument("--repeats", type=int, default=1, help="pipeline runs per mode (the fastest is reported)")
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
            torch.set_num_threads(os.cpu_count() or 1)
        secs, frames, clips = model_only(fx, cfg, samples)
        model_fps = frames / secs
        device = fx.device
        print(f"device {device}  autocast {fx.precision.autocast or 'float32'}  encoders "
              f"{', '.join(f'{e.name} ({e.kind})' for e in fx.recipe.encoders)}  torch threads {torch.get_num_threads()}  "
              f"batch {cfg.batch_frames} frames / {cfg.batch_clips} clips  videos {len(samples)}  frames {frames}")
        print(f"model-only : {model_fps:10.1f} frames/s  ({secs:.2f} s)")
        if device.type == "cuda":
            per_frame, per_clip = fx.flops()
            flops = frames * per_frame + clips * per_clip
            vit_only = frames * per_frame
            print(f"             {flops / secs / 1e12:8.1f} TFLOP/s = {flops / secs / (args.peak_tflops * 1e12):.1%} of "
                  f"{args.peak_tflops:.0f} TFLOPS bf16 peak (ViT alone {vit_only / secs / 1e12:.1f} TFLOP/s)")
        del fx
        if device.type == "cuda":
            torch.cuda.empty_cache()
        workers = [1, 2] if args.compare_workers else [1]
        modes = ["before", "after"] if args.decode == "both" else [args.decode]
        results: dict = {}
        for k in range(args.repeats):
            for w in workers:
                for mode in modes:  # a Ray of its own each: no run finds the workers another one warmed
                    with ray_session(cfg.ray_address, object_store_bytes=object_store_bytes(cfg)):
                        results.setdefault((w, mode), []).append(
                            pipeline(cfg, samples, Path(tmp) / f"cache-{k}", args.random_init, w, mode))
            if args.in_process:  # --workers 0: the same core, decoding on threads at idle priority, no Ray
                results.setdefault((0, "after"), []).append(
                    pipeline(cfg, samples, Path(tmp) / f"cache-{k}", args.random_init, 0, "after"))
        for (w, mode), rs in results.items():
            steady, total, pframes, digest, others = min(rs, key=lambda r: r[0] / r[2])  # the fastest repeat
            fps = pframes / steady
            print(f"pipeline {w or 'in-process'}{'w' if w else ''} {mode:6s}: {fps:8.1f} frames/s  ({steady:.2f} s steady, {total:.2f} s with worker "
                  f"start)  ratio to model-only {fps / model_fps:.2f}  others {others:.2f} cores  features {digest}"
                  + ("" if len(rs) == 1 else f"  (all runs: {', '.join(f'{r[2] / r[0]:.1f}' for r in rs)} frames/s)"))
        if args.in_process and len(modes) == 2:
            ray_b, here = (min(results[key], key=lambda r: r[0] / r[2]) for key in ((1, "before"), (0, "after")))
            same = len({r[3] for rs in results.values() for r in rs}) == 1
            print(f"in-process / 1w before: {(here[2] / here[0]) / (ray_b[2] / ray_b[0]):.2f}x pipeline speed; ratio to "
                  f"model-only {ray_b[2] / ray_b[0] / model_fps:.2f} -> {here[2] / here[0] / model_fps:.2f}; "
                  f"features byte-identical across every run: {same}")
        for w in workers:
            if len(modes) == 2:
                (b, a) = (min(results[(w, m)], key=lambda r: r[0] / r[2]) for m in modes)
                same = len({r[3] for m in modes for r in results[(w, m)]}) == 1
                print(f"{w}w after / before: {(a[2] / a[0]) / (b[2] / b[0]):.2f}x pipeline speed; ratio to model-only "
                      f"{b[2] / b[0] / model_fps:.2f} -> {a[2] / a[0] / model_fps:.2f}; features byte-identical: {same}")
        if args.compare_workers:
            for mode in modes:
                one, two = (min(results[(w, mode)], key=lambda r: r[0] / r[2]) for w in (1, 2))
                print(f"scaling 2 vs 1 workers ({mode}): {(two[2] / two[0]) / (one[2] / one[0]):.2f}x")

if __name__ == "__main__":
    main()

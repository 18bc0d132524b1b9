"""slt-pipe against the plain loop a user would write: `python -m bench.peers [--videos N] [--layers L]`.

The plain loop is SpaMo's extraction procedure as its scripts run it: one video at a time, frames
through PIL, transformers' `CLIPVisionModel` with S2 and `VideoMAEModel` on 16-frame windows every 8,
fp32 (tests/helpers.py: `spamo_spatial`, `spamo_motion`, the reference the equivalence tests prove
slt-pipe against). slt-pipe is `slt-pipe extract --profile paper` on the same PHOENIX-layout toy and
the same snapshots, through its default path (Ray) and in process (`--workers 0`). Every side runs
as a command of its own, imports and model loading included, one after the other, on random-init
snapshots of ViT-Ti width (so that compute matters). Before it reports a speed it checks that the
two computed the same features (cosine per vector). slt-pipe's fixed start-up (its wall time less
the model workers' steady time, `compute.steady_seconds` in the manifests) is printed apart from
its per-frame cost.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # before bench/, whose extract.py would shadow the package
SPLITS = ("train", "dev", "test")
PLAIN = "plain"


def snapshots(out: Path, layers: int, hidden: int = 192) -> dict[str, Path]:
    """CLIP ViT/14 at 224 and VideoMAE /16 at 224 of ViT-Ti width (random init), as their repos ship."""
    import torch
    from transformers import CLIPVisionConfig, CLIPVisionModel, VideoMAEConfig, VideoMAEModel

    from extract.vision.assets import save_clip_snapshot, save_videomae_snapshot

    if (out / "done").is_file():
        return {"clip": out / "clip", "videomae": out / "videomae"}
    torch.manual_seed(0)
    heads, inter = hidden // 64, 4 * hidden
    clip = CLIPVisionModel(CLIPVisionConfig(hidden_size=hidden, intermediate_size=inter, num_hidden_layers=layers,
                                            num_attention_heads=heads, patch_size=14, image_size=224))
    mae = VideoMAEModel(VideoMAEConfig(image_size=224, patch_size=16, num_frames=16, hidden_size=hidden,
                                       num_hidden_layers=layers, num_attention_heads=heads, intermediate_size=inter,
                                       use_mean_pooling=False))
    got = {"clip": save_clip_snapshot(clip.eval(), out / "clip"), "videomae": save_videomae_snapshot(mae.eval(), out / "videomae")}
    (out / "done").write_text("")
    return got


def plain_loop(root: Path, snaps: dict[str, Path], out: Path) -> None:
    """SpaMo's procedure over every video of the toy, one at a time; features saved to `out` (npz)."""
    import numpy as np
    import torch
    from transformers import CLIPVisionModel, VideoMAEModel

    sys.path.insert(0, str(REPO / "tests"))
    from helpers import spamo_motion, spamo_spatial

    torch.set_num_threads(os.cpu_count() or 1)  # what a plain script gets: every core
    clip = CLIPVisionModel.from_pretrained(snaps["clip"]).eval()
    mae = VideoMAEModel.from_pretrained(snaps["videomae"]).eval()
    feats = {}
    for split in SPLITS:
        for video in sorted((root / "features" / "fullFrame-210x260px" / split).iterdir()):
            pngs = sorted(video.glob("*.png"))
            feats[f"{split}/{video.name}/spatial"] = spamo_spatial(snaps["clip"], pngs, model=clip)
            feats[f"{split}/{video.name}/motion"] = spamo_motion(snaps["videomae"], pngs, model=mae)
    np.savez(out, **feats)


def slt_pipe(root: Path, snaps: dict[str, Path], cache: Path, workers: int | None) -> tuple[float, float]:
    """(wall s, steady s) of `slt-pipe extract --profile paper`; steady: model workers ready to last shard
    written, summed over the splits (the manifests' compute.steady_seconds); the rest is fixed start-up."""
    cmd = [str(Path(sys.executable).parent / "slt-pipe"), "extract", "--profile", "paper", "--dataset", "phoenix",
           "--root", str(root), "--cache", str(cache), "--split", ",".join(SPLITS)]
    for name, path in snaps.items():
        cmd += ["--set", f"extract.{name}.weights={path}", "--set", f"extract.{name}.arch=snapshot"]
    if workers is not None:
        cmd += ["--workers", str(workers)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"slt-pipe extract failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    steady = sum(json.loads(m.read_text())["compute"]["steady_seconds"] for m in (cache / "features").glob("*/manifest.json"))
    return wall, steady


def same_features(cache: Path, plain: Path) -> float:
    """The lowest cosine between slt-pipe's vectors and the plain loop's, over every video, both streams."""
    import numpy as np

    from cache.features import FeatureReader

    ref = np.load(plain)
    worst = 1.0
    for entry in (m.parent for m in (cache / "features").glob("*/manifest.json")):
        split = json.loads((entry / "manifest.json").read_text())["split"]
        reader = FeatureReader(entry)
        for vid in reader.ids:
            for name, got in zip(("spatial", "motion"), reader.get_stored(vid)):
                a, b = np.asarray(got, np.float64), np.asarray(ref[f"{split}/{vid}/{name}"], np.float64)
                cos = (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))
                worst = min(worst, float(cos.min()))
    return worst


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=24, help="toy videos (PHOENIX layout, all three splits)")
    ap.add_argument("--layers", type=int, default=4, help="transformer layers of both snapshots (width 192)")
    ap.add_argument("--dir", type=Path, default=Path("/tmp/slt-pipe-peers"), help="work folder")
    ap.add_argument(f"--{PLAIN}", nargs=3, metavar=("ROOT", "SNAPSHOTS", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.plain:  # the plain loop, in a process of its own
        root, snaps, out = (Path(a) for a in args.plain)
        plain_loop(root, {"clip": snaps / "clip", "videomae": snaps / "videomae"}, out)
        return

    import shutil

    from extract.datasets.toy import make_toy

    work = args.dir.resolve()
    toy = work / f"toy-{args.videos}"
    root = make_toy(toy, videos=args.videos, seed=0) if not toy.exists() else next(p.parent for p in toy.rglob("annotations"))
    snaps = snapshots(work / f"snapshots-{args.layers}", args.layers)
    frames = sum(1 for _ in (root / "features" / "fullFrame-210x260px").glob("*/*/*.png"))
    print(f"{args.videos} toy videos ({frames} frames, PHOENIX layout), CLIP/14 + VideoMAE/16 at 224, width 192, "
          f"{args.layers} layers, random init; {os.cpu_count()} cores; each side a command of its own")
    rows = []
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "bench.peers", f"--{PLAIN}", str(root), str(work / f"snapshots-{args.layers}"),
                    str(work / "plain.npz")], check=True, cwd=REPO)
    rows.append(("SpaMo's procedure (plain loop)", time.perf_counter() - t0, None))
    for label, workers in (("slt-pipe extract (default path, Ray)", None), ("slt-pipe extract --workers 0 (in process)", 0)):
        cache = work / f"cache-{workers}"
        shutil.rmtree(cache, ignore_errors=True)
        wall, steady = slt_pipe(root, snaps, cache, workers)
        worst = same_features(cache, work / "plain.npz")
        if worst < 0.999:
            raise SystemExit(f"{label}: features differ from the plain loop's (lowest cosine {worst:.6f}): no speed reported")
        rows.append((label, wall, (wall - steady, worst)))
    base = rows[0][1]
    print("\n| | time | vs the plain loop | fixed start-up | per frame (the rest) | lowest cosine |")
    print("| --- | --- | --- | --- | --- | --- |")
    for label, wall, extra in rows:
        if extra is None:
            print(f"| {label} | {wall:.1f} s | 1.00x | | {wall / frames * 1000:.1f} ms | |")
            continue
        fixed, worst = extra
        print(f"| {label} | {wall:.1f} s | {base / wall:.2f}x | {fixed:.1f} s | {(wall - fixed) / frames * 1000:.1f} ms "
              f"| {worst:.6f} |")


if __name__ == "__main__":
    main()

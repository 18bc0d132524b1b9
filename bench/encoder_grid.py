"""The encoder grid's mechanics on the toy: `python -m bench.encoder_grid [--dir D] [--videos N] [--steps S]`.

No real weights are here, so this builds tiny random-init snapshots of every paper encoder
(`extract.vision.tiny_snapshots.save_paper_snapshots`: CLIP, DINOv2, DINOv3, SigLIP 2, VideoMAE,
V-JEPA 2, saved as their repos ship), points the shipped grid (`pipeline/grids/encoders.toml`)
at them with `--set extract.<encoder>.weights=...`, runs `slt-pipe ablate --config encoders` on
a small toy with few steps (tiny profile for the text side: the toy-trained tiny SONAR), and
prints what was extracted before the trials, the features entries each trial read (its own
config's keys, all present before the trials began), and the summary table. The numbers are a
mechanics check on random-init tiny models, not a quality result.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # before bench/, whose extract.py would shadow the package
SPLITS = ("train", "dev", "test")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, default=Path("/tmp/encoder-grid"), help="work folder (toy, snapshots, cache, runs)")
    ap.add_argument("--videos", type=int, default=40, help="toy videos (split ~80/10/10)")
    ap.add_argument("--steps", type=int, default=30, help="training steps per trial")
    ap.add_argument("--seeds", type=int, default=2, help="seeds per variant (each reads its variant's entries)")
    ap.add_argument("--parallel", type=int, default=2)
    args = ap.parse_args()

    from extract.datasets.toy import make_toy
    from extract.vision.tiny_snapshots import save_paper_snapshots
    from pipeline.ablate_stage import cache_listing

    work = args.dir.resolve()
    toy_dir, cache, out = work / "toy", work / "cache", work / "runs"
    t0 = time.monotonic()
    root = make_toy(toy_dir, videos=args.videos, seed=0) if not toy_dir.exists() else _toy_root(toy_dir)
    snaps = save_paper_snapshots(work / "snapshots")
    print(f"toy: {args.videos} videos at {root}; tiny random-init snapshots: "
          + ", ".join(f"{k} ({_params(v)} params)" for k, v in snaps.items()))
    sets = [f"extract.{name}.weights={path}" for name, path in snaps.items()]
    sets += [f"extract.{name}.arch=snapshot" for name in snaps]
    sets += [f"train.steps={args.steps}", "train.warmup_steps=5", "train.eval_every=0",
             "train.batch_size=16", "extract.workers=0", "embed.tiny_sonar_steps=100"]
    cmd = [str(Path(sys.executable).parent / "slt-pipe"), "ablate", "--config", "encoders", "--profile", "tiny",
           "--dataset", "toy", "--root", str(root), "--cache", str(cache), "--out", str(out),
           "--seeds", str(args.seeds), "--parallel", str(args.parallel)]
    for s in sets:
        cmd += ["--set", s]
    before = cache_listing(cache) if cache.exists() else {}
    print("$ " + " ".join(cmd[:16]) + " --set extract.<encoder>.weights=SNAPSHOT ... (" + f"{len(sets)} --set)")
    t1 = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=work)
    (work / "ablate.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        print(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit(f"slt-pipe ablate failed ({proc.returncode}); log: {work / 'ablate.log'}")
    ablate_s = time.monotonic() - t1
    report(before, cache_listing(cache), out, cache)
    print(proc.stdout.strip())
    print(f"\nablate {ablate_s:.0f} s, all {time.monotonic() - t0:.0f} s; log: {work / 'ablate.log'}")


def report(before: dict[str, str], after: dict[str, str], out: Path, cache: Path) -> None:
    """Which features entries were extracted (once, before the trials) and which each trial read."""
    from rich.console import Console

    from pipeline.config import build_config
    from pipeline.dataset import configured_dataset
    from pipeline.extract_stage import features_key

    log = json.loads((out / "ablation_log.json").read_text())
    during = set(log["cache_entries_created_during_trials"])
    made = {k for k in set(after) - set(before)}
    quiet = Console(stderr=True, quiet=True)
    reads: dict[str, tuple[str, list[str]]] = {}  # trial -> (streams, its train/dev/test features entries)
    for t in sorted(out.rglob("trial.json")):
        cfg = build_config(json.loads(t.read_text())["config"])
        dataset = configured_dataset(cfg, quiet)
        reads[str(t.parent.relative_to(out))] = (" + ".join(cfg.extract.streams),
                                                 [f"features/{features_key(cfg, dataset, s)[0]}" for s in SPLITS])
    sets = {streams: keys for streams, keys in reads.values()}
    features = sorted(k for k in made if k.startswith("features/"))
    encoders = list(dict.fromkeys(e for streams in sets for e in streams.split(" + ")))
    print(f"\nextracted once, before the trials: {len(features)} features entries = {len(sets)} stream sets x "
          f"{len(SPLITS)} splits ({', '.join(SPLITS)}); {sum(k.startswith('targets/') for k in made)} targets entries")
    for streams, keys in sets.items():
        users = sum(s == streams for s, _ in reads.values())
        print(f"  {streams:18s} {' '.join(k[9:21] for k in keys)}  built {sum(k in made for k in keys)}/3, "
              f"read by {users} trials")
    per_encoder = Counter(json.loads((cache / k / "manifest.json").read_text())["stream"]
                          for k in made if k.startswith("stream/"))
    print(f"stream computations: {sum(per_encoder.values())} = {len(encoders)} encoders x {len(SPLITS)} splits "
          f"({', '.join(f'{e} {per_encoder[e]}' for e in encoders)}); one entry per stream, so a set shares its "
          f"encoders' entries with the other sets (one entry per set held every stream: "
          f"{sum(len(s.split(' + ')) for s in sets) * len(SPLITS)} computations)")
    print("\neach trial read (its config's train/dev/test features keys, all in the cache before the trials began):")
    for run, (streams, keys) in reads.items():
        ok = all(k in after and k not in during for k in keys)
        print(f"  {run:26s} {streams:18s} {' '.join(k[9:21] for k in keys)}  {'reused' if ok else 'NOT FOUND'}")
    print(f"\ncache entries created while the {len(log['trials'])} trials ran: {sorted(during) or 'none'} "
          f"(ablation_log.json); {len(features) - len({k for _, ks in reads.values() for k in ks})} features "
          "entries built but read by no trial")


def _toy_root(toy_dir: Path) -> Path:
    return next(p.parent for p in toy_dir.rglob("annotations"))


def _params(snapshot: Path) -> str:
    from safetensors import safe_open

    with safe_open(str(snapshot / "model.safetensors"), "pt") as f:
        n = sum(int(math.prod(f.get_slice(k).get_shape())) for k in f.keys())
    return f"{n / 1000:.0f}k"


if __name__ == "__main__":
    main()

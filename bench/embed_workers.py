"""embed-targets throughput: sentences/s in-process, on 1 and on 2 Ray workers, side by side in one run.

    .venv/bin/python bench/embed_workers.py                    # 240-video toy, deu+eng+fra, batch 8
    .venv/bin/python bench/embed_workers.py --videos 480 --batch-size 16

Every mode builds the same targets from scratch in its own cache (the tiny SONAR, trained once
beforehand, is copied in): every sentence translated by the tiny SONAR translator (references
set aside) and embedded. Wall time includes starting Ray and loading the models in each
worker, as a user's run does. Each mode's targets files are compared with the in-process run's.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # before bench/, whose extract.py would shadow the package

from rich.console import Console  # noqa: E402

QUIET = Console(stderr=True, quiet=True)
MODES = (("in-process", 0), ("1 Ray worker", 1), ("2 Ray workers", 2))


def config(cache: Path, root: Path, langs: list[str], batch: int, workers: int):
    from pipeline.config import build_config

    return build_config({
        "profile": "tiny",
        "dataset": {"name": "toy", "root": str(root)},
        "cache": {"dir": str(cache)},
        "embed": {"langs": langs, "device": "cpu", "translator": "sonar", "references": False, "beam_size": 1,
                  "batch_size": batch, "workers": workers, "allow_poor_translations": True},
    })


def files(cache: Path) -> dict[str, dict[str, str]]:
    return {m.parent.name: {k: v["sha256"] for k, v in json.loads(m.read_text())["files"].items()}
            for m in (cache / "targets").glob("*/manifest.json")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", type=int, default=240)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--langs", default="deu,eng,fra")
    args = ap.parse_args()
    from extract.datasets.toy import make_toy
    from pipeline.embed_stage import embed_targets, ensure_tiny_sonar
    from pipeline.dataset import open_dataset

    langs = args.langs.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_toy(tmp / "toy", videos=args.videos, seed=0)
        seed_cfg = config(tmp / "seed", tmp / "toy", langs, args.batch_size, 0)
        tiny = ensure_tiny_sonar(seed_cfg, open_dataset(seed_cfg), QUIET)  # trained once, not timed
        rows, reference = [], None
        for name, workers in MODES:
            cache = tmp / name.replace(" ", "-")
            shutil.copytree(tiny, cache / "tiny-sonar" / tiny.name)
            t0 = time.perf_counter()
            report = embed_targets(config(cache, tmp / "toy", langs, args.batch_size, workers), QUIET)
            seconds = time.perf_counter() - t0
            assert not report.failures, report.failures
            sentences = sum(r.translated + r.embedded for r in report.summary)
            got = files(cache)
            reference = reference or got
            rows.append((name, sentences, seconds, got == reference))
            print(f"{name:>14}: {sentences} sentences (translated + embedded) in {seconds:.1f} s", flush=True)
    base = rows[0][1] / rows[0][2]
    print(f"\n{'mode':>14}  {'sent/s':>7}  {'vs in-process':>13}  same bytes")
    for name, sentences, seconds, same in rows:
        rate = sentences / seconds
        print(f"{name:>14}  {rate:7.1f}  {rate / base:12.2f}x  {'yes' if same else 'NO'}")


if __name__ == "__main__":
    main()

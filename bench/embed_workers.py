"""embed-targets throughput: sentences/s in-process, on 1 and on 2 Ray workers, side by side in one run.

    .venv/bin/python bench/embed_workers.py                    # 240-video toy, deu+eng+fra, batch 8, beam 4
    .venv/bin/python bench/embed_workers.py --videos 480 --batch-size 16

Every mode builds the same targets from scratch in its own cache (the tiny SONAR, trained once
beforehand, is copied in): every sentence translated by the tiny SONAR translator (references
set aside) and embedded. Wall time includes starting Ray and loading the models in each
worker, as a user's run does. Each mode's targets files are compared with the in-process run's.
A second table times the same kind of work once every worker has loaded its models: the
throughput a long run (real NLLB and SONAR, many sentences) approaches.
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


def config(cache: Path, root: Path, langs: list[str], batch: int, workers: int, beam: int = 4):
    from pipeline.config import build_config

    return build_config({
        "profile": "tiny",
        "dataset": {"name": "toy", "root": str(root)},
        "cache": {"dir": str(cache)},
        "embed": {"langs": langs, "device": "cpu", "translator": "sonar", "references": False, "beam_size": beam,
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
    ap.add_argument("--beam", type=int, default=4, help="beam size of the tiny SONAR translator (paper's NLLB: 4)")
    args = ap.parse_args()
    from extract.datasets.toy import make_toy
    from pipeline.dataset import configured_dataset
    from pipeline.embed_stage import embed_targets, ensure_tiny_sonar

    langs = args.langs.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_toy(tmp / "toy", videos=args.videos, seed=0)
        seed_cfg = config(tmp / "seed", tmp / "toy", langs, args.batch_size, 0, args.beam)
        tiny = ensure_tiny_sonar(seed_cfg, configured_dataset(seed_cfg), QUIET)  # trained once, not timed
        rows, reference, steady = [], None, []
        for name, workers in MODES:
            cache = tmp / name.replace(" ", "-")
            shutil.copytree(tiny, cache / "tiny-sonar" / tiny.name)
            t0 = time.perf_counter()
            report = embed_targets(config(cache, tmp / "toy", langs, args.batch_size, workers, args.beam), QUIET)
            seconds = time.perf_counter() - t0
            assert not report.failures, report.failures
            sentences = sum(r.translated + r.embedded for r in report.summary)
            got = files(cache)
            reference = reference or got
            rows.append((name, sentences, seconds, got == reference))
            print(f"{name:>14}: {sentences} sentences (translated + embedded) in {seconds:.1f} s", flush=True)
            steady.append((name, *steady_rate(seed_cfg, tiny, configured_dataset(seed_cfg), workers)))
    base = rows[0][1] / rows[0][2]
    print(f"\nend to end (Ray start and model loads included)\n{'mode':>14}  {'sent/s':>7}  {'vs in-process':>13}  same bytes")
    for name, sentences, seconds, same in rows:
        rate = sentences / seconds
        print(f"{name:>14}  {rate:7.1f}  {rate / base:12.2f}x  {'yes' if same else 'NO'}")
    base = steady[0][1] / steady[0][2]
    print(f"\nsteady state (models loaded in every worker)\n{'mode':>14}  {'sent/s':>7}  {'vs in-process':>13}")
    for name, sentences, seconds in steady:
        rate = sentences / seconds
        print(f"{name:>14}  {rate:7.1f}  {rate / base:12.2f}x")


def steady_rate(cfg, tiny: Path, dataset, workers: int) -> tuple[int, float]:
    """Sentences and seconds of every train sentence translated into eng then embedded, once each
    worker has loaded its models (one warm-up job of each kind per worker, not timed)."""
    import contextlib

    import ray

    from extract.text.backend import text_model_spec
    from extract.text.chunks import RESUME_CHUNK_BATCHES
    from extract.text.jobs import InProcess, LazyTextModels, chunks
    from extract.text.ray_backend import RayPool
    from pipeline.embed_stage import text_models

    texts = list(dict.fromkeys(s.text for s in dataset.samples["train"]))
    size = cfg.embed.batch_size * RESUME_CHUNK_BATCHES
    jobs = chunks(texts, "translate", "deu_Latn", "eng_Latn", size) + chunks(texts, "embed", "deu_Latn", "deu_Latn", size)
    warm = [chunks(texts[:1], kind, "deu_Latn", lang, 1)[0] for kind, lang in (("translate", "eng_Latn"), ("embed", "deu_Latn"))]
    with contextlib.ExitStack() as stack:
        spec = text_model_spec(cfg.embed, text_models(cfg, dataset, tiny), (dataset.source_lang, "eng_Latn"), None)
        if workers:
            pool = stack.enter_context(RayPool(spec, workers, None))
            ray.get([a.run.remote(j) for a in pool.actors for j in warm])
            runner = pool
        else:
            runner = InProcess(LazyTextModels(spec))
            runner.run(warm, lambda i, r: None)
        t0 = time.perf_counter()
        runner.run(jobs, lambda i, r: None)
        return len(texts) * 2, time.perf_counter() - t0


if __name__ == "__main__":
    main()

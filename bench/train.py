"""Why cache: a training epoch on cached features vs the same epoch recomputing them, and
the loader's throughput vs what the trainer consumes. Both ratios measured in one run.

    .venv/bin/python bench/train.py                       # toy, tiny profile, cache in a temp dir
    .venv/bin/python bench/train.py --cache ~/.cache/slt-pipe --videos 480

1. Epoch time: the same batches (same seed, same order) through the same training step,
   once reading features from the Zarr cache, once decoding the videos and running the
   tiny ViT + VideoMAE on the fly (`extract.vision.streams.FeatureExtractor`, what a pipeline
   without a cache does every epoch). Goal: cached >= 20x faster.
2. Loader: batches/s of the cache loader alone (prefetch threads, collate, token ids)
   vs training steps/s. Goal: loader >= 10x the consumption, so training never waits.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from rich.console import Console  # noqa: E402

from pipeline.config import build_config  # noqa: E402


class OnTheFlyFeatures:
    """The FeatureReader interface, computing each video's features from its frames every time."""

    def __init__(self, samples, extract_cfg, ids: list[str]):
        from extract.vision.streams import FeatureExtractor

        self.samples = {s.id: s for s in samples}
        self.cfg = extract_cfg
        self.fx = FeatureExtractor(extract_cfg, "cpu")
        self.ids = ids
        self.spatial_dim, self.motion_dim = self.fx.spatial_dim, self.fx.motion_dim

    def get(self, video_id: str) -> tuple[np.ndarray, np.ndarray]:
        from extract.vision.decode import read_frames

        frames = read_frames(self.samples[video_id].frames, fps=self.cfg.fps)
        return self.fx.spatial(frames).astype(np.float16), self.fx.motion(frames).astype(np.float16)


def epoch(cfg, inputs, features, steps: int) -> tuple[float, float]:
    """(seconds, mean loss) of `steps` training steps reading features from `features`."""
    from train import data as tdata
    from train.augment import VideoAugmenter
    from train.checkpoint import seed_everything
    from train.data import BatchLoader, CacheDataset
    from train.losses import compute_loss, step_generator
    from train.model import build_models

    seed_everything(cfg.seed)
    targets = {lang: tdata.open_targets(p) for lang, p in inputs.targets.items()}
    emb_dim = np.asarray(targets[inputs.source_lang].embeddings("train")).shape[1]
    visual, dec = build_models(cfg, inputs, features.spatial_dim, features.motion_dim, emb_dim, torch.device("cpu"))
    ds = CacheDataset(features, targets, "train", inputs.source_lang, encode=dec.encode_targets, max_tokens=cfg.max_len + 2)
    loader = BatchLoader(ds, cfg.batch_size, pad_idx=dec.pad_idx, seed=cfg.seed, workers=cfg.loader_workers)
    opt = torch.optim.AdamW([p for m in (visual, dec) for p in m.parameters() if p.requires_grad], lr=cfg.lr)
    augment = VideoAugmenter.from_config(cfg)
    losses = []
    t0 = time.perf_counter()
    for idx, batch in loader.iterate(0, steps):
        loss, _ = compute_loss(cfg, visual, dec, batch, step_generator(cfg.seed, idx), augment)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return time.perf_counter() - t0, float(np.mean(losses))


def loader_rate(cfg, inputs, features, steps: int) -> float:
    """Batches per second of the cache loader alone."""
    from train import data as tdata
    from train.data import BatchLoader, CacheDataset
    from train.decoder import load_tokenizer

    targets = {lang: tdata.open_targets(p) for lang, p in inputs.targets.items()}
    tok = load_tokenizer(inputs.decoder_spec, inputs.tiny_dir)
    pad = tok.vocab_info.pad_idx or 0

    def encode(texts, lang, max_len):
        enc = tok.create_encoder(task="translation", lang=lang, mode="target")
        return [enc(t).to(torch.long)[:max_len] for t in texts]

    ds = CacheDataset(features, targets, "train", inputs.source_lang, encode=encode, max_tokens=cfg.max_len + 2)
    loader = BatchLoader(ds, cfg.batch_size, pad_idx=pad, seed=cfg.seed, workers=cfg.loader_workers)
    t0 = time.perf_counter()
    n = sum(1 for _ in loader.iterate(0, steps))
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", type=Path, help="cache dir (default: a temporary one)")
    ap.add_argument("--videos", type=int, default=240, help="toy corpus size")
    ap.add_argument("--steps", type=int, help="steps per measurement (default: one epoch of the train split)")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from pipeline import embed_stage, extract_stage
    from pipeline.dataset import configured_dataset
    from pipeline.train_stage import train_inputs
    from train import data as tdata

    quiet = Console(stderr=True, quiet=True)
    with tempfile.TemporaryDirectory() as tmp:
        cache = args.cache or Path(tmp)
        cfg = build_config({"profile": "tiny", "dataset": {"name": "toy", "toy_videos": args.videos},
                            "cache": {"dir": str(cache)}})
        print(f"preparing caches in {cache} (toy, {args.videos} videos) ...", flush=True)
        extract_stage.extract(cfg, quiet)
        embed_stage.embed_targets(cfg, quiet)
        dataset = configured_dataset(cfg, quiet)
        inputs = train_inputs(cfg, dataset)
        cached = tdata.open_features(inputs.features["train"])
        tcfg = cfg.train
        steps = args.steps or max(1, len(cached.ids) // tcfg.batch_size)
        print(f"{steps} steps of {tcfg.batch_size} videos, {args.threads} threads", flush=True)

        t0 = time.perf_counter()
        preloaded = cached.preload(int(tcfg.preload_gb * 2**30))  # as the trainer does; counted in its epoch
        t_preload = time.perf_counter() - t0
        t_cached, l_cached = epoch(tcfg, inputs, cached, steps)
        t_cached += t_preload
        live = OnTheFlyFeatures(dataset.samples["train"], cfg.extract, cached.ids)
        t_live, l_live = epoch(tcfg, inputs, live, steps)
        rate = loader_rate(tcfg, inputs, cached, 4 * steps)

    consumption = steps / t_cached
    print(f"epoch on cached features   {t_cached:8.2f} s   (mean loss {l_cached:.4f}; "
          f"{'preloaded in' if preloaded else 'read per video, no preload;'} {t_preload:.2f} s)")
    print(f"epoch recomputing features {t_live:8.2f} s   (mean loss {l_live:.4f})")
    print(f"cached speed-up            {t_live / t_cached:8.1f} x   (goal >= 20)")
    print(f"loader alone               {rate:8.1f} batches/s")
    print(f"trainer consumption        {consumption:8.1f} batches/s")
    print(f"loader / consumption       {rate / consumption:8.1f} x   (goal >= 10)")


if __name__ == "__main__":
    main()

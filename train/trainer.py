"""The training recipe: visual block + LoRA SONAR decoder on cached features and targets.

loss = w_mse*MSE(z,s) + w_cos*(1-cos(z,s)) + w_ce*CE(decode(z)) + w_ae*CE(decode(s))

A thin loop over small components: data (`train.data.open_run_data`), models
(`train.model.build_models`), the objective (`train.losses.compute_loss`), the optimiser and
schedule (`train.optim`), checkpoints (`train.checkpoint`), metrics (`train.run_log`) and the
dev evaluation hook (`train.evaluate.DevHook`).

Run directory (`cfg.out`):
  config.json, inputs.json        what was run
  init_visual_block.{safetensors,json}  the block it started from (train.init_visual_block), copied
  ckpt/last, ckpt/best            trainable weights and resume state (train/checkpoint.py); the
                                  weights' metadata: the block's shape and its features' recipe
  metrics.jsonl, tb/, curves.png  train/eval metrics, TensorBoard, loss/BLEU curves

Determinism: batches and augmentations are functions of (seed, step); torch's global RNG
(dropout) is checkpointed, so `resume=True` continues at the saved step with the same loss.
Reads caches only; never imports `pipeline` or `extract`.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from cache.device import resolve_device
from cache.files import write_text_atomic
from train.augment import VideoAugmenter
from train.checkpoint import Checkpoints, Progress, seed_everything
from train.config import TrainConfig
from train.data import RunData, open_run_data
from train.losses import compute_loss, step_generator
from train.model import TrainInputs, build_models
from train.optim import build_optimisation
from train.run_log import RunLog
from train.visual_init import RECORD_NAME, block_metadata, feature_recipe, load_initial_block


@dataclass
class RunResult:
    run_dir: Path
    step: int
    """Completed optimiser steps."""
    last_loss: float | None
    best_bleu: float | None
    best_step: int | None
    best_checkpoint: Path | None
    stopped: str
    """'done', 'time' (max_minutes), or 'stop_at'."""
    losses: list[tuple[int, float]] = field(default_factory=list)
    """(step, loss) of every step run in this call (1-based step numbers)."""


# ---------------------------------------------------------------------------------------------
def train(cfg: TrainConfig, inputs: TrainInputs, *, resume: bool, case: str | None = None) -> RunResult:
    """Train (or continue, with resume=True) the run in `cfg.out`.

    `case`: the dev BLEU's casing, lc or mixed (default: cfg.bleu_case; the pipeline resolves
    train.bleu_case=auto to the dataset's declared casing, see train.evaluate.headline_case).
    """
    from train.evaluate import DevHook

    t_start = time.monotonic()
    run_dir = Path(cfg.out)
    run_dir.mkdir(parents=True, exist_ok=True)
    resume = resume and Checkpoints.resumable(run_dir)  # nothing to resume: start fresh
    device = resolve_device(cfg.device)
    seed_everything(cfg.seed)

    data = open_run_data(cfg, inputs)
    visual, dec = build_models(cfg, inputs, data.train.spatial_dim, data.train.motion_dim, data.emb_dim, device)
    recipe = feature_recipe(data.train, inputs.features[inputs.train_split])
    if not resume:  # a resumed run restores its own weights and statistics instead
        _initialise_block(cfg, visual, data, recipe, run_dir)
    ckpts = Checkpoints(run_dir, block_metadata(visual.spec(), recipe))
    loader = data.loader(cfg, dec)
    dev = data.dev() if cfg.eval_every > 0 else None
    dev_hook = DevHook(cfg, case or cfg.bleu_case, dev, data.eval_langs, device) if dev is not None else None
    optim = build_optimisation(cfg, visual, dec)
    augment = VideoAugmenter.from_config(cfg)
    progress = ckpts.restore(visual, dec, optim) if resume else Progress()
    write_text_atomic(run_dir / "config.json", json.dumps(dataclasses.asdict(cfg), indent=2, default=str), fsync=False)
    write_text_atomic(run_dir / "inputs.json", json.dumps(inputs.to_json(), indent=2), fsync=False)
    log = RunLog(run_dir, resume_step=progress.step if resume else None)

    def evaluate() -> None:
        if dev_hook is None:
            return
        bleu, scores = dev_hook(visual, dec)
        log.write({"kind": "eval", "step": progress.step, "bleu": bleu, **{f"bleu_{k}": v["bleu"] for k, v in scores.items()},
                   **{f"chrf_{k}": v["chrf"] for k, v in scores.items()}}, scalars={"dev/bleu": bleu})
        if progress.best_bleu is None or bleu > progress.best_bleu:
            progress.best_bleu, progress.best_step = bleu, progress.step
            ckpts.save_best(visual, dec, {"step": progress.step, "bleu": bleu, "scores": scores})

    from rich.console import Console

    from cache.progress import progress_bar

    visual.train()
    dec.train()
    stopped, last_loss, losses = "done", None, []
    end = cfg.steps if cfg.stop_at is None else min(cfg.steps, cfg.stop_at)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
    with progress_bar("steps", console=Console(stderr=True), loss=True) as bar:  # stdout is for results
        task = bar.add_task("train", total=cfg.steps, completed=progress.step)
        for idx, batch in loader.iterate(progress.step, end):
            batch = batch.to(device)
            with autocast:
                loss, parts = compute_loss(cfg, visual, dec, batch, step_generator(cfg.seed, idx), augment)
            gnorm = optim.step(loss)
            step = progress.step = idx + 1
            last_loss = float(loss.detach())
            losses.append((step, last_loss))
            if step % max(1, cfg.log_every) == 0 or step == end:
                lr, lora_lr = optim.lrs()
                row = {"kind": "train", "step": step, "loss": last_loss, **parts, "grad_norm": gnorm, "lr": lr,
                       "lora_lr": lora_lr, "elapsed_s": round(time.monotonic() - t_start, 2)}
                log.write(row, scalars={f"train/{k}": v for k, v in row.items() if k not in ("kind", "step")})
            bar.update(task, completed=step, loss=last_loss)
            evaluated = cfg.eval_every > 0 and step % cfg.eval_every == 0
            if evaluated:
                evaluate()
            if evaluated or (cfg.save_every > 0 and step % cfg.save_every == 0):
                ckpts.save_last(visual, dec, optim, progress)
            if cfg.max_minutes is not None and (time.monotonic() - t_start) / 60 >= cfg.max_minutes and step < end:
                stopped = "time"
                break
    if stopped == "done" and cfg.stop_at is not None and progress.step < cfg.steps:
        stopped = "stop_at"
    if stopped == "done" and dev_hook is not None and (cfg.eval_every <= 0 or progress.step % cfg.eval_every != 0):
        evaluate()
    ckpts.save_last(visual, dec, optim, progress)
    log.close()
    best = ckpts.best / "weights.safetensors" if progress.best_step is not None else None
    return RunResult(run_dir, progress.step, last_loss, progress.best_bleu, progress.best_step, best, stopped, losses)


def _initialise_block(cfg: TrainConfig, visual: torch.nn.Module, data: RunData, recipe: dict, run_dir: Path) -> None:
    """A fresh run's visual block: from train.init_visual_block, or with its input statistics computed."""
    if cfg.init_visual_block:
        record = load_initial_block(visual, cfg.init_visual_block, recipe=recipe, check=cfg.init_visual_block_check,
                                    run_dir=run_dir)
        if cfg.normalize_features:
            # the block's statistics are part of what it learned; recomputing them would change its function
            record["notes"].append("train.normalize_features: statistics kept from the initial block, not recomputed")
            write_text_atomic(run_dir / RECORD_NAME, json.dumps(record, indent=2), fsync=False)
        print(f"visual block initialised from {record['file']} (copied to {run_dir / record['copy']})"
              + "".join(f"\n  note: {n}" for n in record["notes"]), file=sys.stderr)
    elif cfg.normalize_features:
        from cache.features import feature_stats

        visual.set_input_stats(feature_stats(data.train))

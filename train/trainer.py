"""The training loop: visual block + LoRA SONAR decoder on cached features and targets.

loss = w_mse*MSE(z,s) + w_cos*(1-cos(z,s)) + w_ce*CE(decode(z)) + w_ae*CE(decode(s))

Run directory (`cfg.out`):
  config.json, inputs.json        what was run
  init_visual_block.{safetensors,json}  the block it started from (train.init_visual_block), copied
  ckpt/last/weights.safetensors   trainable weights only (visual.* incl. BatchNorm buffers, lora.*);
                                  metadata: the block's shape and its features' recipe (train.visual_init)
  ckpt/last/state.pt              optimizer, scheduler, step, RNG states, best BLEU
  ckpt/best/weights.safetensors   best dev BLEU so far (+ best.json)
  metrics.jsonl, tb/, curves.png  train/eval metrics, TensorBoard, loss/BLEU curves

Determinism: batches and augmentations are functions of (seed, step); torch's global RNG
(dropout) is checkpointed, so `resume=True` continues at the saved step with the same loss.
Reads caches only; never imports `pipeline` or `extract`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from train.augment import VideoAugmenter, sample_languages
from train.config import TrainConfig
from train import data as tdata
from train.data import BatchLoader, CacheDataset
from train.losses import alignment_loss
from train.model import TrainInputs, build_models, load_trainable, resolve_device, save_weights, trainable_state
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
def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def lr_at(step: int, *, peak: float, start: float, end: float, warmup: int, decay_end: int) -> float:
    """Learning rate after `step` scheduler steps: linear warm-up start -> peak, cosine peak -> end.

    The rule of latent-diffusion's LambdaWarmUpCosineScheduler, which SpaMo uses: for n < warmup,
    start + (peak - start) * n / warmup; then end + (peak - end) * (1 + cos(pi * t)) / 2 with
    t = min(1, (n - warmup) / (decay_end - warmup)), held at `end` after `decay_end`.
    """
    if warmup > 0 and step < warmup:
        return start + (peak - start) * step / warmup
    t = min(1.0, (step - warmup) / max(1, decay_end - warmup))
    return end + 0.5 * (peak - end) * (1.0 + math.cos(math.pi * t))


def make_schedule(opt: torch.optim.Optimizer, cfg: TrainConfig) -> torch.optim.lr_scheduler.LambdaLR:
    """Every group follows `lr_at` scaled to its own peak (cfg.lr's warm-up/min ratios apply to LoRA's too)."""
    decay_end = cfg.decay_steps if cfg.decay_steps is not None else cfg.steps
    kw = dict(peak=cfg.lr, start=cfg.warmup_start_lr, end=cfg.min_lr, warmup=cfg.warmup_steps, decay_end=decay_end)
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda step: lr_at(step, **kw) / cfg.lr)


def step_generator(seed: int, step: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + step)


def select_targets(batch, lang_idx: torch.Tensor, pad_idx: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample embedding [B, D] and token ids [B, L] of the chosen language."""
    b = lang_idx.size(0)
    s = batch.embeddings[torch.arange(b, device=lang_idx.device), lang_idx]
    width = max(t.size(1) for t in batch.tokens.values())
    stacked = torch.stack([torch.nn.functional.pad(batch.tokens[lang], (0, width - batch.tokens[lang].size(1)), value=pad_idx)
                           for lang in batch.langs])  # [n_langs, B, L]
    toks = stacked[lang_idx, torch.arange(b, device=lang_idx.device)]
    keep = int((toks != pad_idx).sum(1).max().item())
    return s, toks[:, : max(keep, 2)]


def compute_loss(cfg: TrainConfig, visual, dec, batch, gen: torch.Generator, augment: VideoAugmenter | None):
    streams = [(batch.spatial, batch.spatial_mask), (batch.motion, batch.motion_mask)]
    if augment is not None:
        streams = augment(streams, gen)
    (sp, spm), (mo, mom) = streams
    if cfg.multilingual:
        li = sample_languages(batch.available, gen).to(batch.available.device)
    else:
        li = torch.zeros(batch.available.size(0), dtype=torch.long, device=batch.available.device)
    s, toks = select_targets(batch, li, dec.pad_idx)
    z = visual(sp, spm, mo, mom)
    loss, parts = alignment_loss(z, s, cfg.w_mse, cfg.w_cos)
    if cfg.w_ce:
        ce = dec.ce_loss(z, toks)
        loss = loss + cfg.w_ce * ce
        parts["ce"] = float(ce.detach())
    if cfg.w_ae:
        ae = dec.ce_loss(s, toks)
        loss = loss + cfg.w_ae * ae
        parts["ae"] = float(ae.detach())
    return loss, parts


def _rng_state() -> dict:
    st = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def _set_rng_state(st: dict) -> None:
    torch.set_rng_state(st["torch"])
    np.random.set_state(st["numpy"])
    random.setstate(st["python"])
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


def plot_curves(run_dir: Path) -> Path | None:
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    tr = [(r["step"], r["loss"]) for r in rows if r.get("kind") == "train"]
    ev = [(r["step"], r["bleu"]) for r in rows if r.get("kind") == "eval"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    if tr:
        axes[0].plot(*zip(*tr))
    axes[0].set(title="train loss", xlabel="step", yscale="log" if tr and min(v for _, v in tr) > 0 else "linear")
    if ev:
        axes[1].plot(*zip(*ev), marker="o")
    axes[1].set(title="dev BLEU", xlabel="step")
    fig.tight_layout()
    out = run_dir / "curves.png"
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return out


# ---------------------------------------------------------------------------------------------
def train(cfg: TrainConfig, inputs: TrainInputs, *, resume: bool) -> RunResult:
    """Train (or continue, with resume=True) the run in `cfg.out`."""
    from train.evaluate import bleu_case, score_split  # shared dev evaluation

    t_start = time.monotonic()
    run_dir = Path(cfg.out)
    run_dir.mkdir(parents=True, exist_ok=True)
    last_dir, best_dir = run_dir / "ckpt" / "last", run_dir / "ckpt" / "best"
    if resume and not (last_dir / "state.pt").exists():
        resume = False  # nothing to resume: start fresh
    device = resolve_device(cfg.device)
    seed_everything(cfg.seed)

    # data
    feats = {split: tdata.open_features(Path(p)) for split, p in inputs.features.items()}
    targets = {lang: tdata.open_targets(Path(p)) for lang, p in inputs.targets.items()}
    if inputs.train_split not in feats:
        from cache.errors import SltPipeError

        raise SltPipeError(f"no features for the train split {inputs.train_split!r} (have {', '.join(sorted(feats))})",
                           fix="keep `train` among the dataset's splits")
    if inputs.source_lang not in targets:
        from cache.errors import SltPipeError

        raise SltPipeError(f"no targets in the source language {inputs.source_lang} (have {', '.join(targets)})",
                           fix=f"embed-targets with {inputs.source_lang} among --langs")
    train_feats = feats[inputs.train_split]
    train_feats.preload(int(cfg.preload_gb * 2**30))
    emb_dim = np.asarray(targets[inputs.source_lang].embeddings(inputs.train_split)).shape[1]

    visual, dec = build_models(cfg, inputs, train_feats.spatial_dim, train_feats.motion_dim, emb_dim, device)
    recipe = feature_recipe(train_feats, inputs.features[inputs.train_split])
    if cfg.init_visual_block and not resume:  # a resumed run restores its own weights instead
        record = load_initial_block(visual, cfg.init_visual_block, recipe=recipe, check=cfg.init_visual_block_check,
                                    run_dir=run_dir)
        if cfg.normalize_features:
            # the block's statistics are part of what it learned; recomputing them would change its function
            record["notes"].append("train.normalize_features: statistics kept from the initial block, not recomputed")
            (run_dir / RECORD_NAME).write_text(json.dumps(record, indent=2))
        print(f"visual block initialised from {record['file']} (copied to {run_dir / record['copy']})"
              + "".join(f"\n  note: {n}" for n in record["notes"]), file=sys.stderr)
    elif cfg.normalize_features and not resume:  # a resumed run restores them with the weights
        from cache.features import feature_stats

        visual.set_input_stats(feature_stats(train_feats))
    weights_meta = block_metadata(visual.spec(), recipe)
    encode = dec.encode_targets
    max_tokens = cfg.max_len + 2
    train_ds = CacheDataset(train_feats, targets, inputs.train_split, inputs.source_lang, encode=encode,
                            max_tokens=max_tokens, shuffle_targets=cfg.shuffle_targets, seed=cfg.seed)
    loader = BatchLoader(train_ds, cfg.batch_size, pad_idx=dec.pad_idx, seed=cfg.seed, workers=cfg.loader_workers,
                         max_frames=cfg.max_frames)
    dev_ds = None
    if inputs.dev_split in feats and cfg.eval_every > 0:
        dev_ds = CacheDataset(feats[inputs.dev_split], targets, inputs.dev_split, inputs.source_lang)
    eval_langs = list(cfg.eval_langs) or [inputs.source_lang]
    unknown = [lang for lang in eval_langs if lang not in targets]
    if unknown:
        from cache.errors import SltPipeError

        raise SltPipeError(f"train.eval_langs {', '.join(unknown)} has no targets in this run "
                           f"(it has {', '.join(targets)})", fix="add the language to --langs, or drop it from train.eval_langs")

    # optimisation
    lora_params = [p for p in dec.parameters() if p.requires_grad]
    groups = [{"params": list(visual.parameters()), "lr": cfg.lr}]
    if lora_params:
        groups.append({"params": lora_params, "lr": cfg.lora_peak_lr})
    opt = torch.optim.AdamW(groups, weight_decay=cfg.weight_decay)
    sched = make_schedule(opt, cfg)
    augment = VideoAugmenter.from_config(cfg)

    step, best_bleu, best_step = 0, None, None
    metrics_path = run_dir / "metrics.jsonl"
    if resume:
        load_trainable(visual, dec, last_dir / "weights.safetensors")
        st = torch.load(last_dir / "state.pt", map_location="cpu", weights_only=False)
        opt.load_state_dict(st["optimizer"])
        sched.load_state_dict(st["scheduler"])
        step, best_bleu, best_step = st["step"], st["best_bleu"], st["best_step"]
        _set_rng_state(st["rng"])
        if metrics_path.exists():  # drop what was logged after the checkpoint
            rows = [x for x in metrics_path.read_text().splitlines() if x.strip() and json.loads(x)["step"] <= step]
            metrics_path.write_text("".join(r + "\n" for r in rows))
    else:
        metrics_path.write_text("")
    (run_dir / "config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=2, default=str))
    (run_dir / "inputs.json").write_text(json.dumps(inputs.to_json(), indent=2))

    from torch.utils.tensorboard import SummaryWriter

    tb = SummaryWriter(str(run_dir / "tb"), purge_step=step if resume else None)
    metrics = metrics_path.open("a")

    def log(row: dict) -> None:
        metrics.write(json.dumps(row) + "\n")
        metrics.flush()

    def save(kind_dir: Path, with_state: bool) -> None:
        save_weights(trainable_state(visual, dec), kind_dir / "weights.safetensors", weights_meta)
        if with_state:
            torch.save({"optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "step": step,
                        "best_bleu": best_bleu, "best_step": best_step, "rng": _rng_state()}, kind_dir / "state.pt.tmp")
            (kind_dir / "state.pt.tmp").replace(kind_dir / "state.pt")

    def run_eval() -> None:
        nonlocal best_bleu, best_step
        if dev_ds is None:
            return
        visual.eval()
        scores = score_split(visual, dec, dev_ds, eval_langs, beam_size=cfg.beam_size, max_len=cfg.max_len,
                             batch_size=cfg.batch_size, device=device, case=bleu_case(cfg.bleu_case, inputs.dataset),
                             machine_references=True)  # model selection; best.json labels each language's references
        visual.train()
        bleu = float(np.mean([v["bleu"] for v in scores.values()]))
        log({"kind": "eval", "step": step, "bleu": bleu, **{f"bleu_{k}": v["bleu"] for k, v in scores.items()},
             **{f"chrf_{k}": v["chrf"] for k, v in scores.items()}})
        tb.add_scalar("dev/bleu", bleu, step)
        if best_bleu is None or bleu > best_bleu:
            best_bleu, best_step = bleu, step
            save(best_dir, with_state=False)
            (best_dir / "best.json").write_text(json.dumps({"step": step, "bleu": bleu, "scores": scores}, indent=2))

    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    visual.train()
    dec.train()
    stopped, last_loss, losses = "done", None, []
    end = cfg.steps if cfg.stop_at is None else min(cfg.steps, cfg.stop_at)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
    with Progress(TextColumn("[bold]train"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                  transient=False, console=Console(stderr=True)) as progress:  # stdout is for results
        task = progress.add_task("train", total=cfg.steps, completed=step, info="")
        for idx, batch in loader.iterate(step, end):
            batch = batch.to(device)
            with autocast:
                loss, parts = compute_loss(cfg, visual, dec, batch, step_generator(cfg.seed, idx), augment)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            gnorm = torch.nn.utils.clip_grad_norm_([p for g in groups for p in g["params"]], cfg.grad_clip) \
                if cfg.grad_clip > 0 else torch.tensor(0.0)
            opt.step()
            sched.step()
            step = idx + 1
            last_loss = float(loss.detach())
            losses.append((step, last_loss))
            if step % max(1, cfg.log_every) == 0 or step == end:
                lrs = sched.get_last_lr()
                row = {"kind": "train", "step": step, "loss": last_loss, **parts, "grad_norm": float(gnorm),
                       "lr": lrs[0], "lora_lr": lrs[-1], "elapsed_s": round(time.monotonic() - t_start, 2)}
                log(row)
                for k, v in row.items():
                    if k not in ("kind", "step"):
                        tb.add_scalar(f"train/{k}", v, step)
            progress.update(task, completed=step, info=f"loss {last_loss:.4g}")
            evaluated = False
            if cfg.eval_every > 0 and step % cfg.eval_every == 0:
                run_eval()
                evaluated = True
            if evaluated or (cfg.save_every > 0 and step % cfg.save_every == 0):
                save(last_dir, with_state=True)
            if cfg.max_minutes is not None and (time.monotonic() - t_start) / 60 >= cfg.max_minutes and step < end:
                stopped = "time"
                break
    if stopped == "done" and cfg.stop_at is not None and step < cfg.steps:
        stopped = "stop_at"
    if stopped == "done" and dev_ds is not None and (cfg.eval_every <= 0 or step % cfg.eval_every != 0):
        run_eval()
    save(last_dir, with_state=True)
    metrics.close()
    tb.close()
    plot_curves(run_dir)
    return RunResult(run_dir, step, last_loss, best_bleu, best_step,
                     best_dir / "weights.safetensors" if best_step is not None else None, stopped, losses)

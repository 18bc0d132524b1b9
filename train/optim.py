"""The optimiser and SpaMo's learning-rate schedule (two parameter groups: visual block, LoRA)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from train.config import TrainConfig


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


@dataclass
class Optimisation:
    """AdamW over the trainable parameters, its schedule, and one step with gradient clipping."""

    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LambdaLR
    params: list[torch.nn.Parameter]
    grad_clip: float

    def step(self, loss: torch.Tensor) -> float:
        """Backward, clip, optimiser and schedule step; returns the gradient norm before clipping (0 unclipped)."""
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(self.params, self.grad_clip) if self.grad_clip > 0 else torch.tensor(0.0)
        self.opt.step()
        self.sched.step()
        return float(gnorm)

    def lrs(self) -> tuple[float, float]:
        """(visual block, LoRA) learning rates of the last step (the same when there is no LoRA)."""
        lrs = self.sched.get_last_lr()
        return lrs[0], lrs[-1]


def build_optimisation(cfg: TrainConfig, visual: torch.nn.Module, dec: torch.nn.Module) -> Optimisation:
    """The visual block at cfg.lr, the decoder's LoRA parameters (if any) at cfg.lora_peak_lr."""
    lora = [p for p in dec.parameters() if p.requires_grad]
    groups = [{"params": list(visual.parameters()), "lr": cfg.lr}]
    if lora:
        groups.append({"params": lora, "lr": cfg.lora_peak_lr})
    opt = torch.optim.AdamW(groups, weight_decay=cfg.weight_decay)
    return Optimisation(opt, make_schedule(opt, cfg), [p for g in groups for p in g["params"]], cfg.grad_clip)

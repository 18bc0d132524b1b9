"""Settings of the trainer: visual block, LoRA decoder, losses, augmentation, loop."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

@dataclass
class TrainConfig:
    out: Path = Path("runs/latest")
    """Run directory: checkpoints, metrics.jsonl, TensorBoard logs, plots, predictions."""
    steps: int = 3000
    """Optimiser steps."""
    batch_size: int = 32
    """Videos per step."""
    lr: float = 3e-4
    """Peak learning rate (AdamW)."""
    lora_lr: float = 1e-4
    """Peak learning rate of the LoRA adapters."""
    weight_decay: float = 0.01
    """AdamW weight decay."""
    warmup_steps: int = 200
    """Linear warm-up before the cosine decay."""
    grad_clip: float = 1.0
    """Max gradient norm."""
    seed: int = 0
    """Seed for init, sampling and augmentation."""
    hidden_dim: int = 1024
    """Width of the visual block."""
    time_max_pool: bool = True
    """Conv1d + BatchNorm + ReLU + MaxPool(2) stack of the SpaMo block."""
    normalize_features: bool = False
    """Standardise each feature dimension with the train split's mean/std (dask over the Zarr cache, as `slt-pipe cache stats`); kept in checkpoints."""
    pretrained_visual: str | None = None
    """Safetensors of a pretrained visual block to start from."""
    w_mse: float = 7000.0
    """Weight of MSE(z, s)."""
    w_cos: float = 2.7
    """Weight of 1 - cos(z, s)."""
    w_ce: float = 1.0
    """Weight of the translation cross-entropy decoded from z."""
    w_ae: float = 1.0
    """Weight of the auto-encoding cross-entropy decoded from s."""
    frame_mask: float = 0.2
    """Ratio of frames zeroed by frame masking."""
    frame_dropout: float = 0.2
    """Ratio of frames removed by frame dropout."""
    noise_std: float = 0.01
    """Std of Gaussian noise added to features (relative to feature std)."""
    shuffle_window: int = 2
    """Local shuffling: frames move at most this far."""
    p_video_aug: float = 0.5
    """Probability that a sample is perturbed at all."""
    p_aug_each: float = 1.0
    """Probability that a perturbed sample gets each enabled perturbation (mask, dropout, noise, shuffle)."""
    multilingual: bool = True
    """Sample a target language per step among those embedded."""
    lora_rank: int = 16
    """LoRA rank r."""
    lora_alpha: int = 32
    """LoRA alpha."""
    lora_dropout: float = 0.1
    """LoRA dropout."""
    lora_targets: list[str] = field(default_factory=lambda: ["q_proj", "v_proj"])
    """Decoder modules that get LoRA adapters (attention q/v, as SpaMo)."""
    eval_every: int = 500
    """Dev evaluation every N steps (BLEU selects the best checkpoint)."""
    eval_langs: list[str] = field(default_factory=list)
    """Languages decoded at dev evaluation; empty = the dataset's source language."""
    beam_size: int = 4
    """Beam size for decoding."""
    max_len: int = 64
    """Max decoded tokens."""
    shuffle_targets: bool = False
    """Control: pair videos with wrong targets (should not learn)."""
    preload_gb: float = 4.0
    """Hold a split's features in memory when they fit in this many GiB (one read per shard); else read per video."""
    loader_workers: int = 2
    """Background threads prefetching batches from the caches."""
    device: str = "auto"
    """auto, cpu or cuda (bf16 autocast on cuda)."""
    max_minutes: float | None = None
    """Wall-clock budget; training stops at the next step boundary."""
    save_every: int = 500
    """Checkpoint (trainable weights + optimizer/scheduler/RNG state) every N steps; also at eval and at the end."""
    stop_at: int | None = None
    """Stop (after checkpointing) once this step is reached, keeping `steps` for the schedule; resume continues."""
    log_every: int = 10
    """Write train metrics (metrics.jsonl, TensorBoard) every N steps."""

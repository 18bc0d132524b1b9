"""Settings of the trainer: visual block, LoRA decoder, losses, augmentation, loop.

The dataclass defaults are the paper recipe (preset `paper-spamo`): the SONAR-SLT paper's
values where it gives them, SpaMo's documented PHOENIX-2014T settings where the paper is
silent (SONAR-SLT's visual block is SpaMo's), and slt-pipe's own choice where neither says;
every field's docstring names its source. `TRAIN_PRESETS` holds the other named bundles
(`generic`, `tiny`); `slt-pipe config show --presets` lists them all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal


@dataclass
class TrainConfig:
    preset: str = "paper-spamo"
    """Named bundle of training settings this config starts from (paper-spamo, generic, tiny; `slt-pipe config show --presets` lists their values); anything set in the same or a later layer wins. Source: slt-pipe."""
    out: Path = Path("runs/latest")
    """Run directory: checkpoints, metrics.jsonl, TensorBoard logs, plots, predictions. Source: slt-pipe."""
    features: str = "extracted"
    """Features entries that train, evaluate and ablate read: 'extracted' = the ones `slt-pipe extract` makes with this config's [extract] recipe; 'imported:NAME' = the ones `slt-pipe import-features --name NAME` made from SpaMo's .npy files (per split, the newest import whose videos are this dataset's). Source: slt-pipe."""
    steps: int = 50_000
    """Optimiser steps. Source: SpaMo (its cosine decay ends at step 50,000; SpaMo then keeps training at the final 1e-7 up to 501 epochs, which slt-pipe does not)."""
    batch_size: int = 16
    """Videos per step. Source: SpaMo (PHOENIX-2014T config)."""
    lr: float = 1e-4
    """Peak learning rate (AdamW), reached after the warm-up. Source: SpaMo (base lr 1e-3 x f_max 0.1)."""
    lora_lr: float | None = None
    """Peak learning rate of the LoRA adapters; none = `lr` (one rate for all trainable weights). Source: SpaMo (one rate)."""
    warmup_start_lr: float = 1e-6
    """Learning rate at step 0; the warm-up rises linearly from it to `lr` (the LoRA group scales by the same ratio). Source: SpaMo (LambdaWarmUpCosineScheduler f_start 0.001 x 1e-3)."""
    warmup_steps: int = 1000
    """Linear warm-up steps before the cosine decay. Source: SpaMo."""
    min_lr: float = 1e-7
    """Learning rate the cosine decay ends at (held after `decay_steps`). Source: SpaMo (f_min 0.0001 x 1e-3)."""
    decay_steps: int | None = None
    """Step at which the cosine decay reaches `min_lr`; none = `steps`. Source: SpaMo (50,000, equal to `steps` here)."""
    weight_decay: float = 0.01
    """AdamW weight decay. Source: slt-pipe (torch's AdamW default; not given in the paper or reference notes)."""
    grad_clip: float = 1.0
    """Max gradient norm (0 = no clipping). Source: SpaMo."""
    max_frames: int = 512
    """At most this many frames per training video: a longer video gets a random contiguous crop of its spatial rows each time it is drawn (drawn from seed and step, so resume repeats it); motion clips are not cropped, as in SpaMo. Evaluation never crops. 0 = no cap. Source: SpaMo (max_frame_len)."""
    seed: int = 0
    """Seed for init, sampling and augmentation. Source: slt-pipe."""
    visual_block: Literal["spamo", "slt-pipe-masked"] = "spamo"
    """Visual block variant (train/fusion.py): 'spamo' = SpaMo's block exactly (padding-0 convs, plain BatchNorm over the padded batch, MLP 768 -> out -> out); 'slt-pipe-masked' = slt-pipe's length-preserving, padding-exact block. Source: SpaMo (paper: SONAR-SLT's block is SpaMo's)."""
    hidden_dim: int = 768
    """Width of the visual block (SpaMo's inter_hidden: stream projections and temporal convs). Source: SpaMo."""
    pooling: Literal["mean", "max"] = "mean"
    """How the block's output sequence becomes one vector z: mean or max over the valid steps. Source: slt-pipe (the paper says 'temporal pooling'; its type is not public, mean is the natural reading)."""
    time_max_pool: bool = True
    """'slt-pipe-masked' block only: MaxPool(2) after each temporal conv (the 'spamo' block always pools). Source: slt-pipe."""
    normalize_features: bool = False
    """Standardise each feature dimension with the train split's mean/std (dask over the Zarr cache, as `slt-pipe cache stats`); kept in checkpoints. Source: slt-pipe (SpaMo feeds raw features)."""
    init_visual_block: str | None = None
    """Start the visual block from weights trained elsewhere: a slt-pipe run directory, its checkpoint dir or weights file (the visual.* part; lora.* is named and ignored), or a plain state dict (.safetensors, .pt, .bin; SpaMo's module names). Loading is strict; the run copies it to RUN/init_visual_block.safetensors. Source: paper (pretrained visual block, BLEURT 0.545 vs 0.490 from scratch)."""
    init_visual_block_check: bool = True
    """Refuse an initial block whose recorded feature recipe (models, weights, preprocessing, widths) differs from this run's features; false = only the widths must fit. Source: slt-pipe."""
    w_mse: float = 7000.0
    """Weight of MSE(z, s). Source: paper."""
    w_cos: float = 2.7
    """Weight of 1 - cos(z, s). Source: paper."""
    w_ce: float = 1.0
    """Weight of the translation cross-entropy decoded from z. Source: paper (an unweighted sum)."""
    w_ae: float = 1.0
    """Weight of the auto-encoding cross-entropy decoded from s. Source: paper (an unweighted sum)."""
    frame_mask: float = 0.2
    """Ratio of a perturbed video's steps zeroed by frame masking (both streams). Source: paper."""
    frame_dropout: float = 0.2
    """Ratio of a perturbed video's steps removed by frame dropout (both streams). Source: paper."""
    noise_std: float = 0.01
    """Std of the Gaussian noise added to features, relative to the batch's feature std. Source: slt-pipe (the paper adds Gaussian noise without giving its scale)."""
    shuffle_window: int = 2
    """Local shuffling: every step moves at most this many positions (and some do move that far). Source: slt-pipe (the paper shuffles locally without giving the window)."""
    p_video_aug: float = 1.0
    """Gate: probability that a video is perturbed at all in a step. A perturbed video gets each enabled perturbation with probability `p_aug_each`, so frame masking hits p_video_aug * p_aug_each * frame_mask of the frames on average; 0 switches video perturbation off. Source: paper (its ratios apply to every video: no gate, 1.0)."""
    p_aug_each: float = 1.0
    """Probability that a perturbed video gets each enabled perturbation (mask, dropout, noise, shuffle). Source: paper (all of them: 1.0)."""
    multilingual: bool = True
    """Sample a target language per video and step among those embedded. Source: paper (multilingual target augmentation)."""
    lora_rank: int = 16
    """LoRA rank r. Source: SpaMo."""
    lora_alpha: int = 32
    """LoRA alpha. Source: SpaMo."""
    lora_dropout: float = 0.1
    """LoRA dropout. Source: SpaMo."""
    lora_targets: list[str] = field(default_factory=lambda: ["q_proj", "v_proj"])
    """Decoder modules that get LoRA adapters. Source: SpaMo (attention q/v)."""
    eval_every: int = 886
    """Dev evaluation every N steps (BLEU selects the best checkpoint). Source: SpaMo (every 2 epochs: 443 full batches of 16 per PHOENIX-2014T epoch; set it for other datasets)."""
    eval_langs: list[str] = field(default_factory=list)
    """Languages decoded at dev evaluation; empty = the dataset's source language. Source: slt-pipe."""
    beam_size: int = 5
    """Beam size for decoding. Source: SpaMo and SONAR (beam 5; SpaMo also samples with top_p 0.9, slt-pipe's beam search is deterministic)."""
    max_len: int = 64
    """Max decoded tokens. Source: SpaMo (max_txt_len 64)."""
    bleu_case: Literal["auto", "lc", "mixed"] = "auto"
    """Casing of the headline BLEU/chrF: lc = hypotheses and references lower-cased, mixed = as written; auto = the casing the dataset's published tables use, as the dataset declares it (extract.datasets: lc for PHOENIX-2014T, CSL-Daily, How2Sign and the toy, as SpaMo lower-cases every dataset). Both BLEUs are always in scores_*.json. Source: SpaMo."""
    shuffle_targets: bool = False
    """Control: pair videos with wrong targets (should not learn). Source: slt-pipe."""
    preload_gb: float = 4.0
    """Hold a split's features in memory when they fit in this many GiB (one read per shard); else read per video. Source: slt-pipe."""
    loader_workers: int = 2
    """Background threads prefetching batches from the caches. Source: slt-pipe."""
    device: str = "auto"
    """auto, cpu or cuda (bf16 autocast on cuda, as SpaMo's bf16). Source: slt-pipe."""
    max_minutes: float | None = None
    """Wall-clock budget; training stops at the next step boundary. Source: slt-pipe."""
    save_every: int = 500
    """Checkpoint (trainable weights + optimizer/scheduler/RNG state) every N steps; also at eval and at the end. Source: slt-pipe."""
    stop_at: int | None = None
    """Stop (after checkpointing) once this step is reached, keeping `steps` for the schedule; resume continues. Source: slt-pipe."""
    log_every: int = 10
    """Write train metrics (metrics.jsonl, TensorBoard) every N steps. Source: slt-pipe."""

    @property
    def lora_peak_lr(self) -> float:
        """The LoRA group's peak rate (`lora_lr`, or `lr` when unset)."""
        return self.lr if self.lora_lr is None else self.lora_lr


TRAIN_PRESETS: dict[str, dict[str, Any]] = {
    "paper-spamo": {},
    # The paper models with a budget that fits an afternoon: slt-pipe's earlier defaults
    # (3,000 steps, batch 32, separate LoRA rate, half of the videos perturbed).
    "generic": {
        "steps": 3000, "batch_size": 32, "lr": 3e-4, "lora_lr": 1e-4, "warmup_start_lr": 1.5e-6,
        "warmup_steps": 200, "min_lr": 0.0, "eval_every": 500, "p_video_aug": 0.5,
    },
    # The toy demo (CPU, minutes): slt-pipe's padding-exact block learns the toy best.
    "tiny": {
        "visual_block": "slt-pipe-masked", "hidden_dim": 256, "steps": 1200, "batch_size": 32, "lr": 1e-3,
        "lora_lr": 1e-3, "warmup_start_lr": 1e-5, "warmup_steps": 100, "min_lr": 0.0, "eval_every": 300,
        "lora_rank": 8, "lora_alpha": 16, "max_len": 32, "beam_size": 2, "p_video_aug": 0.5,
    },
}
"""Preset name -> the TrainConfig fields it sets on top of the dataclass defaults (= paper-spamo)."""

PRESET_NOTES: dict[str, str] = {
    "paper-spamo": "SONAR-SLT paper + SpaMo's PHOENIX-2014T recipe (the defaults; each field's docstring names its source)",
    "generic": "slt-pipe's shorter schedule for the paper models: 3,000 steps, batch 32, lr 3e-4 (LoRA 1e-4), half of the videos perturbed",
    "tiny": "the toy demo on CPU: slt-pipe's padding-exact block, width 256, 1,200 steps",
}


def train_preset(name: str) -> dict[str, Any]:
    """The fields preset `name` sets (including `preset` itself); unknown names raise SltPipeError."""
    if name not in TRAIN_PRESETS:
        from cache.errors import SltPipeError

        raise SltPipeError(f"unknown training preset {name!r}", fix=f"use one of: {', '.join(TRAIN_PRESETS)}")
    return {"preset": name, **TRAIN_PRESETS[name]}


def preset_config(name: str) -> TrainConfig:
    """A TrainConfig with only preset `name` applied."""
    return TrainConfig(**train_preset(name))


def field_source(doc: str) -> str:
    """The 'Source: ...' part of a field docstring."""
    return doc.rsplit("Source:", 1)[1].strip() if "Source:" in doc else ""

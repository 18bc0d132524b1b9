"""Perturbations of cached features and multilingual target sampling.

All functions work on padded batches `x [B, L, D]` + bool masks `[B, L]` (True = real step),
are vectorised over the batch, and draw every random number from an explicit
`torch.Generator`, so a (seed, step) pair reproduces the same augmentation (this is what
makes `resume` exact). `apply [B] bool` selects the samples that are perturbed.

- frame_mask:     zero `ratio` of the real steps (mask unchanged: the steps still exist).
- frame_dropout:  remove `ratio` of the real steps and re-pack (mask and width shrink);
                  every sample keeps at least one step.
- gaussian_noise: add N(0, (std * feature_std)^2) on real steps.
- local_shuffle:  move steps at most `window` positions: sort by position + U[0, window + 1)
                  (a step passes a later one only if their keys cross, i.e. if they are at
                  most `window` apart, so no step ends more than `window` from where it was).

The gate (`VideoAugmenter.p_video`, config `p_video_aug`): a video is perturbed at all with
probability p_video; a perturbed video gets each enabled perturbation with probability
p_each. The expected share of masked frames is p_video * p_each * frame_mask (the paper's
rates are per-frame ratios applied to every video: p_video = p_each = 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from train.fusion import pack_left


def _rand(shape, gen: torch.Generator, device) -> Tensor:
    return torch.rand(shape, generator=gen, device=gen.device).to(device)


def frame_mask(x: Tensor, mask: Tensor, ratio: float, gen: torch.Generator, apply: Tensor | None = None) -> tuple[Tensor, Tensor]:
    if ratio <= 0:
        return x, mask
    hit = (_rand(mask.shape, gen, x.device) < ratio) & mask
    if apply is not None:
        hit &= apply[:, None]
    return x.masked_fill(hit[..., None], 0.0), mask


def frame_dropout(x: Tensor, mask: Tensor, ratio: float, gen: torch.Generator, apply: Tensor | None = None) -> tuple[Tensor, Tensor]:
    if ratio <= 0:
        return x, mask
    r = _rand(mask.shape, gen, x.device)
    drop = (r < ratio) & mask
    if apply is not None:
        drop &= apply[:, None]
    keep = mask & ~drop
    # never empty a sample: keep its step with the largest draw
    empty = keep.sum(1) == 0
    if empty.any():
        best = torch.where(mask, r, torch.full_like(r, -1.0)).argmax(1)
        keep[empty, best[empty]] = True
    return pack_left(x, keep)


def gaussian_noise(x: Tensor, mask: Tensor, std: float, gen: torch.Generator, apply: Tensor | None = None) -> tuple[Tensor, Tensor]:
    if std <= 0:
        return x, mask
    m = mask[..., None].to(x.dtype)
    if apply is not None:
        m = m * apply[:, None, None].to(x.dtype)
    n_real = mask.sum().clamp_min(1) * x.size(-1)
    mean = (x * mask[..., None]).sum() / n_real
    feat_std = torch.sqrt((((x - mean) * mask[..., None]) ** 2).sum() / n_real).clamp_min(1e-6)
    noise = torch.randn(x.shape, generator=gen, device=gen.device).to(x.device, x.dtype)
    return x + noise * (std * feat_std) * m, mask


def local_shuffle(x: Tensor, mask: Tensor, window: int, gen: torch.Generator, apply: Tensor | None = None) -> tuple[Tensor, Tensor]:
    if window <= 0:
        return x, mask
    b, length = mask.shape
    pos = torch.arange(length, device=x.device, dtype=torch.float32)[None].expand(b, -1)
    jitter = _rand((b, length), gen, x.device) * (window + 1)  # U[0, window+1): displacements up to `window`
    if apply is not None:
        jitter = jitter * apply[:, None]
    key = torch.where(mask, pos + jitter, pos + 10.0 * length)  # padding stays at the end
    order = torch.argsort(key, dim=1, stable=True)
    return torch.gather(x, 1, order[..., None].expand(-1, -1, x.size(-1))), mask


@dataclass
class VideoAugmenter:
    """Applies the configured perturbations to both streams of a batch.

    The gate: each video is perturbed with probability `p_video` (1.0 = every video, the
    paper's reading); a perturbed video gets each enabled perturbation with probability
    `p_each`. Defaults are the paper profile's (train.config.TrainConfig).
    """

    frame_mask: float = 0.2
    frame_dropout: float = 0.2
    noise_std: float = 0.01
    shuffle_window: int = 2
    p_video: float = 1.0
    p_each: float = 1.0

    @classmethod
    def from_config(cls, cfg) -> "VideoAugmenter":
        return cls(cfg.frame_mask, cfg.frame_dropout, cfg.noise_std, cfg.shuffle_window, cfg.p_video_aug, cfg.p_aug_each)

    def __call__(self, streams: list[tuple[Tensor, Tensor]], gen: torch.Generator) -> list[tuple[Tensor, Tensor]]:
        """streams: [(x, mask), ...] of the same batch; returns them perturbed."""
        if self.p_video <= 0 or not streams:
            return streams
        b = streams[0][0].size(0)
        dev = streams[0][0].device
        video = _rand((b,), gen, dev) < self.p_video
        ops = [(frame_mask, self.frame_mask), (frame_dropout, self.frame_dropout),
               (gaussian_noise, self.noise_std), (local_shuffle, self.shuffle_window)]
        out = []
        for x, mask in streams:
            for fn, arg in ops:
                apply = video & (_rand((b,), gen, dev) < self.p_each)
                x, mask = fn(x, mask, arg, gen, apply)
            out.append((x, mask))
        return out


def sample_languages(available: Tensor, gen: torch.Generator) -> Tensor:
    """available [B, n_langs] bool -> [B] index of a language drawn uniformly among those available.

    Rows with nothing available get -1.
    """
    w = available.float() * (_rand(available.shape, gen, available.device) + 1e-6)
    idx = w.argmax(1)
    return torch.where(available.any(1), idx, torch.full_like(idx, -1))

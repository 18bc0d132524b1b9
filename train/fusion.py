"""The visual block: fuse the spatial and motion streams into one SONAR-space vector z.

Two named variants (`train.visual_block`), both ending in a pooling to one vector
(`train.pooling`: "mean" or "max" over the valid output steps):

``"spamo"`` (paper profile): SpaMo's block exactly (SpaMo `t5_slt.py`, `tconv.py`), with
SONAR's 1024-d output:

1. `spatio_proj` Linear(Ds -> inter_hidden 768) per frame, `spatiotemp_proj`
   Linear(Dm -> 768) per clip.
2. Joint fusion along time: per sample its valid spatial rows, then its valid motion rows;
   the batch is zero-padded to the longest.
3. `temporal_encoder.temporal_conv` (VAC/CorrNet TemporalConv, type 2, "K5 P2 K5 P2"):
   Conv1d(k=5, padding 0) + BatchNorm1d + ReLU, MaxPool1d(2, ceil_mode=False), twice.
   BatchNorm is plain BatchNorm over the padded batch (as SpaMo). Valid lengths shrink as
   T -> floor((floor((T - 4) / 2) - 4) / 2) (`spamo_lengths`).
4. `fusion_proj` MLP: Linear(768 -> out), GELU, Linear(out -> out).

The module names are SpaMo's, so a SpaMo-shaped state dict (`spatio_proj.weight`,
`temporal_encoder.temporal_conv.0.weight`, `fusion_proj.2.bias`, ...) loads as is.

Too-short sequences: a fused sequence shorter than `SPAMO_MIN_LEN` (16) steps would have no
valid output step (16 is the least T with a positive length above). Such a sample is padded
with zero steps up to 16 (the same zeros the batch padding already holds) and its valid
length is taken as 16, so every video, however short, gives a z. SpaMo does not guard
this (PHOENIX-2014T videos are far longer); nothing changes for sequences of 16 or more.

``"slt-pipe-masked"`` (tiny profile): slt-pipe's earlier block, kept because the toy demo
learns best with it: width `hidden` everywhere, length-preserving convolutions (padding
k//2), a masked BatchNorm whose statistics ignore padding, MaxPool with ceil_mode (so a
1-step sequence survives), MLP hidden -> hidden -> out. Padding never leaks into z, even
in training mode.

Both variants carry per-dimension input statistics as buffers (`spatial_mean`, ...;
identity until `set_input_stats`), so checkpoints take them to evaluation and translation.

Pure torch (no fairseq2): runs on any recent torch, CPU or CUDA.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

SPAMO_MIN_LEN = 16
"""Shortest fused sequence with a valid output step after SpaMo's K5 P2 K5 P2 stack."""
POOLINGS = ("mean", "max")
INPUT_STAT_KEYS = ("spatial_mean", "spatial_std", "motion_mean", "motion_std")


def lengths_to_mask(lengths: Tensor, max_len: int | None = None) -> Tensor:
    """[B] lengths -> [B, L] bool mask, True on real steps."""
    max_len = int(lengths.max().item()) if max_len is None else max_len
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


def pack_left(x: Tensor, keep: Tensor) -> tuple[Tensor, Tensor]:
    """Move the kept steps of each row to the front (order preserved), trim the width.

    x [B, L, D], keep [B, L] bool -> (x' [B, L', D], mask' [B, L']), L' = max kept count;
    steps past a row's count are zero.
    """
    order = torch.argsort((~keep).to(torch.int8), dim=1, stable=True)
    x = torch.gather(x, 1, order[..., None].expand(-1, -1, x.size(-1)))
    lengths = keep.sum(1)
    width = max(int(lengths.max().item()), 1)
    mask = lengths_to_mask(lengths, width)
    return x[:, :width] * mask[..., None].to(x.dtype), mask


def spamo_lengths(lengths: Tensor) -> Tensor:
    """Valid output lengths of SpaMo's temporal conv: T -> floor((floor((T - 4) / 2) - 4) / 2)."""
    return torch.div(torch.div(lengths - 4, 2, rounding_mode="floor") - 4, 2, rounding_mode="floor")


def pool_steps(y: Tensor, mask: Tensor, kind: str) -> Tensor:
    """y [B, L, D], mask [B, L] (>= 1 True per row) -> [B, D]: mean or max over the valid steps."""
    if kind == "mean":
        m = mask[..., None].to(y.dtype)
        return (y * m).sum(1) / m.sum(1).clamp_min(1.0)
    if kind == "max":
        return y.masked_fill(~mask[..., None], float("-inf")).amax(1)
    raise ValueError(f"unknown pooling {kind!r}; use one of {POOLINGS}")


class _InputStats(nn.Module):
    """Per-dimension input standardisation buffers shared by both variants."""

    def _register_stats(self, spatial_dim: int, motion_dim: int) -> None:
        for name, dim in (("spatial", spatial_dim), ("motion", motion_dim)):
            self.register_buffer(f"{name}_mean", torch.zeros(dim))
            self.register_buffer(f"{name}_std", torch.ones(dim))

    def set_input_stats(self, stats: dict[str, dict]) -> None:
        """Standardise inputs with {"spatial"|"motion": {"mean": [D], "std": [D]}} (cache.features.feature_stats)."""
        with torch.no_grad():
            for name in ("spatial", "motion"):
                getattr(self, f"{name}_mean").copy_(torch.as_tensor(stats[name]["mean"]))
                getattr(self, f"{name}_std").copy_(torch.as_tensor(stats[name]["std"]).clamp_min(1e-6))

    def has_input_stats(self) -> bool:
        """Whether the statistics differ from identity (mean 0, std 1)."""
        return any(bool((getattr(self, k) != (0.0 if k.endswith("mean") else 1.0)).any()) for k in INPUT_STAT_KEYS)

    def _standardise(self, x: Tensor, name: str, proj: nn.Linear) -> Tensor:
        x = (x.to(getattr(self, f"{name}_mean").dtype) - getattr(self, f"{name}_mean")) / getattr(self, f"{name}_std")
        return proj(x.to(proj.weight.dtype))

    def _streams(self, spatial: Tensor, spatial_mask: Tensor | None, motion: Tensor | None, motion_mask: Tensor | None,
                 spatial_proj: nn.Linear, motion_proj: nn.Linear) -> tuple[Tensor, Tensor, bool]:
        """Both streams standardised, projected and concatenated in time (spatial steps first), with their
        masks (None = all real) and whether a motion stream was joined (then the steps need packing)."""
        if spatial_mask is None:
            spatial_mask = torch.ones(spatial.shape[:2], dtype=torch.bool, device=spatial.device)
        x = self._standardise(spatial, "spatial", spatial_proj)
        if motion is None:
            return x, spatial_mask, False
        if motion_mask is None:
            motion_mask = torch.ones(motion.shape[:2], dtype=torch.bool, device=motion.device)
        xm = self._standardise(motion, "motion", motion_proj)
        return torch.cat([x, xm], 1), torch.cat([spatial_mask, motion_mask], 1), True


# ------------------------------------------------------------------------------- SpaMo
class TemporalConv(nn.Module):
    """VAC/CorrNet TemporalConv of type 2 ("K5 P2 K5 P2") as SpaMo instantiates it.

    `temporal_conv` indices match SpaMo's: 0 conv, 1 bn, 2 relu, 3 pool, 4 conv, 5 bn, 6 relu, 7 pool.
    """

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        layers: list[nn.Module] = []
        for k, ks in enumerate(("K5", "P2", "K5", "P2")):
            if ks[0] == "P":
                layers.append(nn.MaxPool1d(kernel_size=int(ks[1]), ceil_mode=False))
            else:
                layers += [nn.Conv1d(input_size if k == 0 else hidden_size, hidden_size, int(ks[1]), stride=1, padding=0),
                           nn.BatchNorm1d(hidden_size), nn.ReLU(inplace=True)]
        self.temporal_conv = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """x [B, C, L] -> [B, H, L'] (L' = spamo_lengths(L))."""
        return self.temporal_conv(x)


class SpamoVisualBlock(_InputStats):
    """SpaMo's visual block (see the module docstring) + a pooling to z [B, out_dim]."""

    name = "spamo"

    def __init__(self, spatial_dim: int, motion_dim: int, hidden: int = 768, out_dim: int = 1024, *,
                 pooling: str = "mean"):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {pooling!r}; use one of {POOLINGS}")
        self.spatial_dim, self.motion_dim, self.hidden, self.out_dim, self.pooling = spatial_dim, motion_dim, hidden, out_dim, pooling
        self.spatio_proj = nn.Linear(spatial_dim, hidden)
        self.spatiotemp_proj = nn.Linear(motion_dim, hidden)
        self.temporal_encoder = TemporalConv(hidden, hidden)
        self.fusion_proj = nn.Sequential(nn.Linear(hidden, out_dim), nn.GELU(), nn.Linear(out_dim, out_dim))
        self._register_stats(spatial_dim, motion_dim)

    def spec(self) -> dict[str, Any]:
        """What a checkpoint of this block records about its shape and choices."""
        return {"visual_block": self.name, "spatial_dim": self.spatial_dim, "motion_dim": self.motion_dim,
                "hidden": self.hidden, "out_dim": self.out_dim, "pooling": self.pooling, "min_len": SPAMO_MIN_LEN}

    def sequence(self, spatial: Tensor, spatial_mask: Tensor | None = None, motion: Tensor | None = None,
                 motion_mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """The per-step output before pooling: (y [B, L', out_dim], valid lengths [B])."""
        x, keep, _ = self._streams(spatial, spatial_mask, motion, motion_mask, self.spatio_proj, self.spatiotemp_proj)
        # joint fusion: valid spatial rows then valid motion rows, zero-padded to the longest
        x, mask = pack_left(x, keep)
        lengths = mask.sum(1).clamp_min(SPAMO_MIN_LEN)  # too-short sequences: see the module docstring
        if x.size(1) < SPAMO_MIN_LEN:
            x = nn.functional.pad(x, (0, 0, 0, SPAMO_MIN_LEN - x.size(1)))
        h = self.temporal_encoder(x.transpose(1, 2)).transpose(1, 2)  # [B, L', H]
        return self.fusion_proj(h), spamo_lengths(lengths)

    def forward(self, spatial: Tensor, spatial_mask: Tensor | None = None, motion: Tensor | None = None,
                motion_mask: Tensor | None = None) -> Tensor:
        """Masks are bool [B, T] / [B, C], True on real steps (None = all real) -> z [B, out_dim]."""
        y, lengths = self.sequence(spatial, spatial_mask, motion, motion_mask)
        return pool_steps(y, lengths_to_mask(lengths, y.size(1)), self.pooling)


# ------------------------------------------------------------------------------- slt-pipe-masked
class MaskedBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm1d over [B, C, L] whose batch statistics ignore padded steps."""

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:  # type: ignore[override]
        if mask is None or not self.training:
            return super().forward(x)
        m = mask[:, None, :].to(x.dtype)
        n = m.sum().clamp_min(1.0)
        mean = (x * m).sum(dim=(0, 2)) / n
        var = (((x - mean[None, :, None]) ** 2) * m).sum(dim=(0, 2)) / n
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                mom = self.momentum if self.momentum is not None else 0.1
                unbiased = var * n / (n - 1).clamp_min(1.0)
                self.running_mean.mul_(1 - mom).add_(mom * mean.detach().to(self.running_mean.dtype))
                self.running_var.mul_(1 - mom).add_(mom * unbiased.detach().to(self.running_var.dtype))
                self.num_batches_tracked.add_(1)
        y = (x - mean[None, :, None]) / torch.sqrt(var[None, :, None] + self.eps)
        if self.affine:
            y = y * self.weight[None, :, None] + self.bias[None, :, None]
        return y


class TemporalConvBlock(nn.Module):
    """Conv1d(k, same padding) + masked BatchNorm + ReLU (+ MaxPool 2, ceil), mask-aware."""

    def __init__(self, dim: int, kernel: int = 5, max_pool: bool = True):
        super().__init__()
        self.conv = nn.Conv1d(dim, dim, kernel, padding=kernel // 2)
        self.bn = MaskedBatchNorm1d(dim)
        self.max_pool = max_pool

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        # x [B, C, L], mask [B, L]
        m = mask[:, None, :].to(x.dtype)
        x = torch.relu(self.bn(self.conv(x * m), mask)) * m
        if self.max_pool:
            x = nn.functional.max_pool1d(x, 2, ceil_mode=True)  # values >= 0 after ReLU, pads are 0
            lengths = (mask.sum(1) + 1) // 2
            mask = lengths_to_mask(lengths, x.size(-1))
        return x, mask


class MaskedVisualBlock(_InputStats):
    """slt-pipe's padding-exact variant (see the module docstring): z [B, out_dim]."""

    name = "slt-pipe-masked"

    def __init__(self, spatial_dim: int, motion_dim: int, hidden: int = 1024, out_dim: int = 1024, *,
                 kernel: int = 5, num_conv: int = 2, max_pool: bool = True, dropout: float = 0.0,
                 pooling: str = "mean"):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {pooling!r}; use one of {POOLINGS}")
        self.spatial_dim, self.motion_dim, self.hidden, self.out_dim = spatial_dim, motion_dim, hidden, out_dim
        self.pooling, self.max_pool = pooling, max_pool
        self.spatial_proj = nn.Linear(spatial_dim, hidden)
        self.motion_proj = nn.Linear(motion_dim, hidden)
        self.temporal = nn.ModuleList(TemporalConvBlock(hidden, kernel, max_pool) for _ in range(num_conv))
        self.mlp = nn.Sequential(nn.Linear(hidden, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, out_dim))
        self._register_stats(spatial_dim, motion_dim)

    def spec(self) -> dict[str, Any]:
        return {"visual_block": self.name, "spatial_dim": self.spatial_dim, "motion_dim": self.motion_dim,
                "hidden": self.hidden, "out_dim": self.out_dim, "pooling": self.pooling, "max_pool": self.max_pool}

    def forward(self, spatial: Tensor, spatial_mask: Tensor | None = None, motion: Tensor | None = None,
                motion_mask: Tensor | None = None) -> Tensor:
        """Masks are bool [B, T] / [B, C], True on real steps (None = all real)."""
        b = spatial.size(0)
        x, mask, joined = self._streams(spatial, spatial_mask, motion, motion_mask, self.spatial_proj, self.motion_proj)
        if joined:
            x, mask = pack_left(x, mask)
        x = x.transpose(1, 2)  # [B, H, L]
        for block in self.temporal:
            x, mask = block(x, mask)
        z = pool_steps(self.mlp(x.transpose(1, 2)), mask, self.pooling)
        assert z.shape == (b, self.out_dim)
        return z


VISUAL_BLOCKS = {SpamoVisualBlock.name: SpamoVisualBlock, MaskedVisualBlock.name: MaskedVisualBlock}
VisualBlock = SpamoVisualBlock | MaskedVisualBlock


def build_visual_block(kind: str, spatial_dim: int, motion_dim: int, out_dim: int, *, hidden: int,
                       pooling: str = "mean", max_pool: bool = True) -> SpamoVisualBlock | MaskedVisualBlock:
    """The `train.visual_block` variant `kind` with these widths."""
    if kind == SpamoVisualBlock.name:
        return SpamoVisualBlock(spatial_dim, motion_dim, hidden, out_dim, pooling=pooling)
    if kind == MaskedVisualBlock.name:
        return MaskedVisualBlock(spatial_dim, motion_dim, hidden, out_dim, max_pool=max_pool, pooling=pooling)
    raise ValueError(f"unknown visual block {kind!r}; use one of {sorted(VISUAL_BLOCKS)}")

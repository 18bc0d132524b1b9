"""SpaMo visual block: fuse the spatial and motion streams into one SONAR-space vector z.

Each stream is projected to `hidden` by its own Linear, the two (valid parts of the)
sequences are concatenated along time (spatial frames first, then motion clips), a
temporal convolution stack (2 x [Conv1d k=5, BatchNorm, ReLU, MaxPool(2)]) runs over
time, an MLP maps every step to `out_dim`, and a masked mean over time gives z [B, out_dim].

Variable lengths: padding never leaks into the result. The concatenation re-packs each
sample so its motion clips follow its last real frame (not the padding), padded steps are
zeroed before every convolution, BatchNorm statistics are taken over real steps only
(`MaskedBatchNorm1d`, same parameter/buffer names as `nn.BatchNorm1d`), and the mask is
halved with every MaxPool (ceil, so a 1-step sequence survives).

Pure torch (no fairseq2): runs on any recent torch, CPU or CUDA.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn


def lengths_to_mask(lengths: Tensor, max_len: int | None = None) -> Tensor:
    """[B] lengths -> [B, L] bool mask, True on real steps."""
    max_len = int(lengths.max().item()) if max_len is None else max_len
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


def pack_left(x: Tensor, keep: Tensor) -> tuple[Tensor, Tensor]:
    """Move the kept steps of each row to the front (order preserved), trim the width.

    x [B, L, D], keep [B, L] bool -> (x' [B, L', D], mask' [B, L']), L' = max kept count.
    """
    order = torch.argsort((~keep).to(torch.int8), dim=1, stable=True)
    x = torch.gather(x, 1, order[..., None].expand(-1, -1, x.size(-1)))
    lengths = keep.sum(1)
    width = max(int(lengths.max().item()), 1)
    mask = lengths_to_mask(lengths, width)
    return x[:, :width] * mask[..., None].to(x.dtype), mask


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
    """Conv1d(k) + masked BatchNorm + ReLU (+ MaxPool 2), mask-aware."""

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


class VisualBlock(nn.Module):
    """SpaMo fusion of spatial [B, T, Ds] and motion [B, C, Dm] features into z [B, out_dim]."""

    def __init__(
        self,
        spatial_dim: int,
        motion_dim: int,
        hidden: int = 1024,
        out_dim: int = 1024,
        *,
        kernel: int = 5,
        num_conv: int = 2,
        max_pool: bool = True,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.spatial_dim, self.motion_dim, self.hidden, self.out_dim = spatial_dim, motion_dim, hidden, out_dim
        self.spatial_proj = nn.Linear(spatial_dim, hidden)
        self.motion_proj = nn.Linear(motion_dim, hidden)
        self.temporal = nn.ModuleList(TemporalConvBlock(hidden, kernel, max_pool) for _ in range(num_conv))
        self.mlp = nn.Sequential(nn.Linear(hidden, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, out_dim))
        # Per-dimension input standardisation (identity until `set_input_stats`); buffers, so
        # checkpoints carry the statistics to evaluation and translation.
        for name, dim in (("spatial", spatial_dim), ("motion", motion_dim)):
            self.register_buffer(f"{name}_mean", torch.zeros(dim))
            self.register_buffer(f"{name}_std", torch.ones(dim))

    def set_input_stats(self, stats: dict[str, dict]) -> None:
        """Standardise inputs with {"spatial"|"motion": {"mean": [D], "std": [D]}} (cache.features.feature_stats)."""
        with torch.no_grad():
            for name in ("spatial", "motion"):
                getattr(self, f"{name}_mean").copy_(torch.as_tensor(stats[name]["mean"]))
                getattr(self, f"{name}_std").copy_(torch.as_tensor(stats[name]["std"]).clamp_min(1e-6))

    def forward(
        self,
        spatial: Tensor,
        spatial_mask: Tensor | None = None,
        motion: Tensor | None = None,
        motion_mask: Tensor | None = None,
    ) -> Tensor:
        """Masks are bool [B, T] / [B, C], True on real steps (None = all real)."""
        b = spatial.size(0)
        if spatial_mask is None:
            spatial_mask = torch.ones(spatial.shape[:2], dtype=torch.bool, device=spatial.device)
        spatial = (spatial.to(self.spatial_mean.dtype) - self.spatial_mean) / self.spatial_std
        x = self.spatial_proj(spatial.to(self.spatial_proj.weight.dtype))
        mask = spatial_mask
        if motion is not None:
            if motion_mask is None:
                motion_mask = torch.ones(motion.shape[:2], dtype=torch.bool, device=motion.device)
            motion = (motion.to(self.motion_mean.dtype) - self.motion_mean) / self.motion_std
            xm = self.motion_proj(motion.to(self.motion_proj.weight.dtype))
            x, mask = pack_left(torch.cat([x, xm], 1), torch.cat([spatial_mask, motion_mask], 1))
        x = x.transpose(1, 2)  # [B, H, L]
        for block in self.temporal:
            x, mask = block(x, mask)
        y = self.mlp(x.transpose(1, 2))  # [B, L, out]
        m = mask[..., None].to(y.dtype)
        z = (y * m).sum(1) / m.sum(1).clamp_min(1.0)
        assert z.shape == (b, self.out_dim)
        return z

    def load_checkpoint(self, path: str | Path, *, strict: bool = True) -> None:
        """Initialise from a safetensors file of this block's state dict (a `visual.` prefix is stripped)."""
        from safetensors.torch import load_file

        from cache.errors import WeightsError

        path = Path(path)
        if not path.is_file():
            raise WeightsError("pretrained visual block not found", path=path, fix="check --pretrained-visual")
        state = load_file(str(path))
        state = {k.removeprefix("visual."): v for k, v in state.items()}
        missing, unexpected = self.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.endswith(("_mean", "_std"))]  # older blocks: no input stats
        if strict and (missing or unexpected):
            raise WeightsError(
                f"visual block checkpoint does not fit: missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}",
                path=path,
                fix="check spatial/motion/hidden dims and key names",
            )

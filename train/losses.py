"""Training losses: SONAR-space alignment of z to the target embedding s, and token CE.

alignment = w_mse * MSE(z, s) + w_cos * (1 - cos(z, s))   (paper: 7000 and 2.7)
MSE is the mean over all elements; the cosine term is averaged over the batch. A weight of
0 switches its term off and its computation is skipped. s is used as is (never normalised).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def alignment_loss(z: Tensor, s: Tensor, w_mse: float, w_cos: float) -> tuple[Tensor, dict[str, float]]:
    """Returns (weighted loss, {'mse': ..., 'cos': ...} for the terms computed)."""
    z, s = z.float(), s.float()
    total = z.new_zeros(())
    parts: dict[str, float] = {}
    if w_mse:
        mse = F.mse_loss(z, s)
        total = total + w_mse * mse
        parts["mse"] = float(mse.detach())
    if w_cos:
        cos = F.cosine_similarity(z, s, dim=-1).mean()
        total = total + w_cos * (1.0 - cos)
        parts["cos"] = float(cos.detach())
    return total, parts


def token_ce(logits: Tensor, targets: Tensor, ignore_mask: Tensor | None = None, label_smoothing: float = 0.0) -> Tensor:
    """Mean token cross-entropy. logits [B, L, V], targets [B, L]; ignore_mask True = not scored."""
    logits = logits.float()
    t = targets.clone()
    if ignore_mask is not None:
        t[ignore_mask] = -100
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), t.reshape(-1), ignore_index=-100, label_smoothing=label_smoothing)

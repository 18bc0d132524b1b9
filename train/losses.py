"""Training losses: SONAR-space alignment of z to the target embedding s, and token CE.

alignment = w_mse * MSE(z, s) + w_cos * (1 - cos(z, s))   (paper: 7000 and 2.7)
MSE is the mean over all elements; the cosine term is averaged over the batch. A weight of
0 switches its term off and its computation is skipped. s is used as is (never normalised).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from train.augment import VideoAugmenter, sample_languages
from train.config import TrainConfig


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


# --------------------------------------------------------------------------- the training objective


def step_generator(seed: int, step: int) -> torch.Generator:
    """The RNG of one step's augmentations and language draws: a function of (seed, step), so resumes repeat it."""
    return torch.Generator().manual_seed(seed * 1_000_003 + step)


def select_targets(batch, lang_idx: Tensor, pad_idx: int) -> tuple[Tensor, Tensor]:
    """Per-sample embedding [B, D] and token ids [B, L] of the chosen language."""
    b = lang_idx.size(0)
    s = batch.embeddings[torch.arange(b, device=lang_idx.device), lang_idx]
    width = max(t.size(1) for t in batch.tokens.values())
    stacked = torch.stack([F.pad(batch.tokens[lang], (0, width - batch.tokens[lang].size(1)), value=pad_idx)
                           for lang in batch.langs])  # [n_langs, B, L]
    toks = stacked[lang_idx, torch.arange(b, device=lang_idx.device)]
    keep = int((toks != pad_idx).sum(1).max().item())
    return s, toks[:, : max(keep, 2)]


def compute_loss(cfg: TrainConfig, visual, dec, batch, gen: torch.Generator,
                 augment: VideoAugmenter | None) -> tuple[Tensor, dict[str, float]]:
    """loss = w_mse*MSE(z,s) + w_cos*(1-cos(z,s)) + w_ce*CE(decode(z)) + w_ae*CE(decode(s)) on one batch,
    after the video augmentations and (multilingual) the draw of each sample's target language."""
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

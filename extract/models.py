"""The two feature models (ViT per frame, VideoMAE per clip), their inputs, and their identity.

Paper profile (SpaMo-compatible, see shared reference):
  spatial  timm `vit_large_patch14_clip_224.openai`, class token of the last block's output
           *before* the final norm; S2 multi-scale: the 1x view's token and the mean of the
           four 224 tiles of the 2x view, concatenated (2 x 1024 = 2048-d).
  motion   transformers `VideoMAEModel` (`MCG-NJU/videomae-large`), 16-frame clips, the first
           token of `last_hidden_state` (or the token mean), 1024-d.
Tiny profile: the same classes at tiny sizes, initialised from a fixed seed (no download).

Preprocessing is split so that the CPU part (decode, resize, crop: `prepare_views`) runs in
Ray CPU tasks and the device part (normalise, tile, forward) runs in the model actors, both
through `FeatureExtractor`, which `slt-pipe translate --video` also uses in-process.
"""

from __future__ import annotations

import functools
import hashlib
import math
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from cache.errors import WeightsError
from extract.config import ExtractConfig

TINY_VIT = "tiny-vit"
TINY_VIDEOMAE = "tiny-videomae"
TINY_SEED = 0
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RESIZE = "bicubic-antialias shortest side, centre crop"
"""How frames become model inputs (both streams share the 1x view)."""


# --------------------------------------------------------------------------- CPU preprocessing


def prepare_views(frames: np.ndarray, image_size: int, scales: list[int], *, chunk: int = 64) -> dict[int, np.ndarray]:
    """uint8 [T, H, W, 3] -> {scale: uint8 [T, s*S, s*S, 3]}: shortest side resized to s*S, centre-cropped.

    Vectorised over frames with torch (antialiased bicubic, close to PIL's); `chunk` bounds the
    float32 working memory on large video frames.
    """
    views: dict[int, np.ndarray] = {}
    needed = sorted(set(scales) | {1})  # the 1x view also feeds the motion stream
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)
    for s in needed:
        side = s * image_size
        parts = [_resize_crop(x[i:i + chunk], side) for i in range(0, x.shape[0], chunk)]
        views[s] = torch.cat(parts).permute(0, 2, 3, 1).contiguous().numpy()
    return views


def _resize_crop(x: Tensor, side: int) -> Tensor:
    h, w = x.shape[-2:]
    k = side / min(h, w)
    nh, nw = max(side, round(h * k)), max(side, round(w * k))
    if (nh, nw) != (h, w):
        y = nn.functional.interpolate(x.float(), size=(nh, nw), mode="bicubic", antialias=True, align_corners=False)
        x = y.round_().clamp_(0, 255).to(torch.uint8)
    top, left = (nh - side) // 2, (nw - side) // 2
    return x[:, :, top:top + side, left:left + side]


def clip_index(frames: int, clip_len: int, stride: int) -> np.ndarray:
    """[C, clip_len] frame indices of the sliding clips (SpaMo: windows past the end are dropped;
    a video shorter than one clip is padded by repeating its last frame)."""
    if frames <= 0:
        raise ValueError("a video needs at least one frame")
    if frames < clip_len:
        return np.minimum(np.arange(clip_len), frames - 1)[None]
    starts = np.arange(0, frames - clip_len + 1, stride)
    return starts[:, None] + np.arange(clip_len)[None]


def max_decode_side(cfg: ExtractConfig) -> int:
    """Longest side worth decoding: twice the largest view keeps aspect ratios up to 2:1 exact."""
    return 2 * max(cfg.spatial_scales + [1]) * cfg.image_size


# --------------------------------------------------------------------------- model construction


def _tiny_vit(image_size: int) -> nn.Module:
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(TINY_SEED)
    model = VisionTransformer(img_size=image_size, patch_size=16, embed_dim=64, depth=2, num_heads=4, mlp_ratio=2.0,
                              pre_norm=True, num_classes=0, act_layer="quick_gelu")
    _rescale_init(model)
    return model


def _tiny_videomae(image_size: int, clip_len: int) -> nn.Module:
    from transformers import VideoMAEConfig, VideoMAEModel

    torch.manual_seed(TINY_SEED + 1)
    config = VideoMAEConfig(image_size=image_size, patch_size=16, num_frames=clip_len, tubelet_size=2, hidden_size=64,
                            num_hidden_layers=2, num_attention_heads=4, intermediate_size=128, use_mean_pooling=False)
    model = VideoMAEModel(config)
    _rescale_init(model)
    return model


def _rescale_init(model: nn.Module) -> None:
    """Unit-gain init (std 1/sqrt(fan_in)) instead of the pre-training init (std 0.02).

    Why: with std 0.02 an untrained transformer is nearly the identity on its input tokens and
    attention is uniform, so a class token learns nothing about where a shape is; unit gain
    keeps attention content-dependent, so random tiny features still carry colour and shape.
    """
    gen = torch.Generator().manual_seed(TINY_SEED + 2)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if p.dim() == 2:
                p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(p.shape[1]))
            elif name.endswith(("cls_token", "pos_embed")):
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)


def _timm_kwargs(name: str) -> dict[str, Any]:
    # OpenAI CLIP towers use QuickGELU; timm's plain `_clip_` names use GELU (timm notes it), so
    # the weights would run with the wrong activation: ask for QuickGELU explicitly.
    if "_clip_" in name and name.endswith(".openai") and "quickgelu" not in name:
        return {"act_layer": "quick_gelu"}
    return {}


def build_spatial(cfg: ExtractConfig, *, random_init: bool = False) -> nn.Module:
    """The ViT of `cfg.spatial_model` with real weights (or tiny/seeded; `random_init` is bench-only)."""
    import timm

    if cfg.spatial_model == TINY_VIT:
        return _tiny_vit(cfg.image_size)
    kwargs = {**_timm_kwargs(cfg.spatial_model), "num_classes": 0, "img_size": cfg.image_size}
    if random_init:
        return timm.create_model(cfg.spatial_model, pretrained=False, **kwargs)
    weights = spatial_weights_file(cfg)
    return timm.create_model(cfg.spatial_model, pretrained=True, pretrained_cfg_overlay={"file": str(weights)}, **kwargs)


def build_motion(cfg: ExtractConfig, *, random_init: bool = False) -> nn.Module:
    """The VideoMAE of `cfg.motion_model` with real weights (or tiny/seeded; `random_init` is bench-only)."""
    from transformers import VideoMAEConfig, VideoMAEModel

    if cfg.motion_model == TINY_VIDEOMAE:
        return _tiny_videomae(cfg.image_size, cfg.clip_len)
    if random_init:
        config = VideoMAEConfig(image_size=cfg.image_size, num_frames=cfg.clip_len, hidden_size=1024, num_hidden_layers=24,
                                num_attention_heads=16, intermediate_size=4096, use_mean_pooling=False)
        return VideoMAEModel(config)
    snapshot = motion_snapshot(cfg)
    return VideoMAEModel.from_pretrained(str(snapshot), local_files_only=True)


# --------------------------------------------------------------------------- weights lookup


_SPATIAL_FILES = ("model.safetensors", "open_clip_model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin")
_MOTION_FILES = ("model.safetensors", "pytorch_model.bin")


def spatial_weights_file(cfg: ExtractConfig) -> Path:
    """The ViT weights file: `spatial_weights` (file or snapshot dir), else the HF cache of `timm/{name}`."""
    if cfg.spatial_weights:
        p = Path(cfg.spatial_weights).expanduser()
        found = p if p.is_file() else _first_file(p, _SPATIAL_FILES)
        if found is None:
            raise WeightsError(f"no ViT weights for {cfg.spatial_model} (looked for {', '.join(_SPATIAL_FILES)})", path=p,
                               fix="point extract.spatial_weights at the .safetensors file or the snapshot folder")
        return found
    repo = f"timm/{cfg.spatial_model}"
    found = _hf_cached(repo, _SPATIAL_FILES)
    if found is None:
        raise WeightsError(f"ViT weights {repo} are not in the Hugging Face cache ({_hf_home()})", path=_hf_home(),
                           fix=f"on a machine with network: `huggingface-cli download {repo}` (copy the cache here), "
                               "or set extract.spatial_weights=/path/to/model.safetensors")
    return found


def motion_snapshot(cfg: ExtractConfig) -> Path:
    """The VideoMAE snapshot folder (config.json + weights): `motion_weights`, else the HF cache."""
    if cfg.motion_weights:
        p = Path(cfg.motion_weights).expanduser()
        if not (p / "config.json").is_file() or _first_file(p, _MOTION_FILES) is None:
            raise WeightsError(f"not a VideoMAE snapshot for {cfg.motion_model}: needs config.json and one of "
                               f"{', '.join(_MOTION_FILES)}", path=p,
                               fix="point extract.motion_weights at the folder `huggingface-cli download` made")
        return p
    found = _hf_cached(cfg.motion_model, _MOTION_FILES)
    if found is None or not (found.parent / "config.json").is_file():
        raise WeightsError(f"VideoMAE weights {cfg.motion_model} are not in the Hugging Face cache ({_hf_home()})",
                           path=_hf_home(),
                           fix=f"on a machine with network: `huggingface-cli download {cfg.motion_model}` (copy the "
                               "cache here), or set extract.motion_weights=/path/to/snapshot")
    return found.parent


def _first_file(folder: Path, names: tuple[str, ...]) -> Path | None:
    return next((folder / n for n in names if (folder / n).is_file()), None)


def _hf_home() -> Path:
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def _hf_cached(repo: str, names: tuple[str, ...]) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    for n in names:
        hit = try_to_load_from_cache(repo, n)
        if isinstance(hit, str):
            return Path(hit)
    return None


@functools.lru_cache(maxsize=16)
def _sha256_weights(path: str, size: int, mtime_ns: int) -> str:
    # The HF cache stores LFS files as blobs named by their sha256: no need to read 1 GB.
    real = Path(path).resolve()
    if real.parent.name == "blobs" and len(real.name) == 64:
        return real.name
    h = hashlib.sha256()
    with open(real, "rb") as f:
        while block := f.read(1 << 24):
            h.update(block)
    return h.hexdigest()


def _file_identity(path: Path) -> dict[str, Any]:
    st = path.stat()
    return {"file": path.name, "bytes": st.st_size, "sha256": _sha256_weights(str(path), st.st_size, st.st_mtime_ns)}


def _state_sha256(model: nn.Module) -> str:
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


# --------------------------------------------------------------------------- identity


def model_identity(cfg: ExtractConfig, *, random_init: bool = False) -> dict[str, Any]:
    """What determines the features: models, their weights (sha256), tokens, normalisation.

    Raises WeightsError (naming where it looked) when real weights are absent. `random_init`
    is for benchmarks only: paper-size models with random weights, marked as such.
    """
    if random_init:
        return {"spatial": {"name": cfg.spatial_model, "weights": "random-init (benchmark only)"},
                "motion": {"name": cfg.motion_model, "weights": "random-init (benchmark only)"}}
    return _identity(cfg.spatial_model, cfg.spatial_weights, cfg.motion_model, cfg.motion_weights, cfg.image_size,
                     cfg.clip_len, cfg.motion_pool)


@functools.lru_cache(maxsize=8)
def _identity(spatial_model: str, spatial_weights: str | None, motion_model: str, motion_weights: str | None,
              image_size: int, clip_len: int, motion_pool: str) -> dict[str, Any]:
    cfg = ExtractConfig(spatial_model=spatial_model, spatial_weights=spatial_weights, motion_model=motion_model,
                        motion_weights=motion_weights, image_size=image_size, clip_len=clip_len, motion_pool=motion_pool)
    spatial: dict[str, Any] = {"name": spatial_model, "library": "timm", "token": "cls of last block, before final norm",
                               "resize": RESIZE, "mean": list(CLIP_MEAN), "std": list(CLIP_STD)}
    if spatial_model == TINY_VIT:
        spatial["weights"] = {"seed": TINY_SEED, "state_sha256": _state_sha256(_tiny_vit(image_size))}
    else:
        spatial.update(_timm_kwargs(spatial_model))
        spatial["weights"] = _file_identity(spatial_weights_file(cfg))
    motion: dict[str, Any] = {"name": motion_model, "library": "transformers.VideoMAEModel", "pool": motion_pool,
                              "resize": RESIZE, "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}
    if motion_model == TINY_VIDEOMAE:
        motion["weights"] = {"seed": TINY_SEED + 1, "state_sha256": _state_sha256(_tiny_videomae(image_size, clip_len))}
    else:
        snap = motion_snapshot(cfg)
        motion["weights"] = _file_identity(_first_file(snap, _MOTION_FILES))  # type: ignore[arg-type]
    return {"spatial": spatial, "motion": motion}


# --------------------------------------------------------------------------- the extractor


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@dataclass
class Precision:
    """Compute precision (storage dtype is separate: ExtractConfig.dtype)."""

    device: str
    autocast: str | None

    def context(self):
        if self.autocast is None:
            return nullcontext()
        return torch.autocast(self.device, dtype=getattr(torch, self.autocast))


class FeatureExtractor:
    """Both models on one device; the one code path for Ray actors and on-the-fly translation.

    `spatial(frames)` / `motion(frames)` take raw uint8 [T, H, W, 3] frames of one video; the
    batch methods take already prepared views/clips (the Ray hot path, batches span videos).
    """

    def __init__(self, cfg: ExtractConfig, device: str | torch.device = "auto", *, random_init: bool = False):
        self.cfg = cfg
        self.device = resolve_device(device) if isinstance(device, str) else device
        self.precision = Precision(self.device.type, cfg.autocast if self.device.type == "cuda" and cfg.autocast != "none" else None)
        self.vit = build_spatial(cfg, random_init=random_init).eval().to(self.device)
        self.videomae = build_motion(cfg, random_init=random_init).eval().to(self.device)
        self.scales = sorted(cfg.spatial_scales)
        self.spatial_dim = int(self.vit.embed_dim) * len(self.scales)
        self.motion_dim = int(self.videomae.config.hidden_size)
        self._clip_mean, self._clip_std = self._stats(CLIP_MEAN, CLIP_STD)
        self._in_mean, self._in_std = self._stats(IMAGENET_MEAN, IMAGENET_STD)
        self.frames_forwarded = 0
        self.clips_forwarded = 0

    def _stats(self, mean, std) -> tuple[Tensor, Tensor]:
        return (torch.tensor(mean, device=self.device).view(1, 3, 1, 1),
                torch.tensor(std, device=self.device).view(1, 3, 1, 1))

    def _to_device(self, x: np.ndarray | Tensor) -> Tensor:
        t = torch.from_numpy(x) if isinstance(x, np.ndarray) else x
        if self.device.type == "cuda":
            # Pinned + non_blocking: the host queues the copy and goes on preparing the next batch.
            return t.pin_memory().to(self.device, non_blocking=True)
        return t

    @torch.inference_mode()
    def spatial_batch(self, views: dict[int, np.ndarray | Tensor]) -> Tensor:
        """{scale: uint8 [B, s*S, s*S, 3]} -> float [B, Ds] on the device (not synchronised)."""
        S = self.cfg.image_size
        images, counts = [], []
        for s in self.scales:
            x = self._to_device(views[s])  # [B, sS, sS, 3]
            b = x.shape[0]
            if s > 1:  # S2: cut the s-times view into s*s tiles of S, each a model input
                x = x.view(b, s, S, s, S, 3).permute(0, 1, 3, 2, 4, 5).reshape(b * s * s, S, S, 3)
            images.append(x)
            counts.append(s * s)
        x = torch.cat(images).permute(0, 3, 1, 2).float().div_(255).sub_(self._clip_mean).div_(self._clip_std)
        with self.precision.context():
            tok = _vit_cls_pre_norm(self.vit, x).float()
        out, at = [], 0
        b = tok.shape[0] // sum(counts)
        for c in counts:
            out.append(tok[at:at + b * c].view(b, c, -1).mean(1))
            at += b * c
        self.frames_forwarded += b
        return torch.cat(out, dim=1)

    @torch.inference_mode()
    def motion_batch(self, clips: np.ndarray | Tensor) -> Tensor:
        """uint8 [B, L, S, S, 3] clips -> float [B, Dm] on the device (not synchronised)."""
        x = self._to_device(clips)
        b, L = x.shape[:2]
        x = x.flatten(0, 1).permute(0, 3, 1, 2).float().div_(255).sub_(self._in_mean).div_(self._in_std)
        x = x.view(b, L, *x.shape[1:])
        with self.precision.context():
            h = self.videomae(pixel_values=x).last_hidden_state
        self.clips_forwarded += b
        return (h[:, 0] if self.cfg.motion_pool == "first" else h.mean(1)).float()

    def prepare(self, frames: np.ndarray) -> dict[int, np.ndarray]:
        return prepare_views(frames, self.cfg.image_size, self.scales)

    def spatial(self, frames: np.ndarray) -> np.ndarray:
        """One video's raw uint8 [T, H, W, 3] -> float32 [T, Ds]."""
        views = self.prepare(frames)
        B = self.cfg.batch_frames
        out = [self.spatial_batch({s: v[i:i + B] for s, v in views.items()}) for i in range(0, len(frames), B)]
        return torch.cat(out).cpu().numpy()

    def motion(self, frames: np.ndarray) -> np.ndarray:
        """One video's raw uint8 [T, H, W, 3] -> float32 [C, Dm]."""
        view = prepare_views(frames, self.cfg.image_size, [1])[1]
        clips = view[clip_index(len(view), self.cfg.clip_len, self.cfg.clip_stride)]
        B = self.cfg.batch_clips
        return torch.cat([self.motion_batch(clips[i:i + B]) for i in range(0, len(clips), B)]).cpu().numpy()


def _vit_cls_pre_norm(vit: nn.Module, x: Tensor) -> Tensor:
    """Class token of the last block's output, before the final norm (SpaMo's CLIP feature)."""
    x = vit.patch_embed(x)
    x = vit._pos_embed(x)
    x = vit.norm_pre(x)
    x = vit.blocks(x)
    return x[:, 0]


def transformer_flops(tokens: int, width: int, layers: int, hidden: int, patch_inputs: int, patches: int) -> float:
    """Analytic forward FLOPs (2 per multiply-add) of a ViT-style encoder: patch embedding,
    then per layer QKV, attention scores and mixing, output projection, and the MLP."""
    n, d = tokens, width
    per_layer = 2 * n * d * 3 * d + 2 * 2 * n * n * d + 2 * n * d * d + 2 * 2 * n * d * hidden
    return float(2 * patches * patch_inputs * d + layers * per_layer)


def spatial_flops_per_frame(fx: "FeatureExtractor") -> float:
    """ViT FLOPs of one frame: one image per scale-1 view plus s*s tiles per scale s."""
    vit = fx.vit
    patch = vit.patch_embed.patch_size[0]
    patches = (fx.cfg.image_size // patch) ** 2
    one = transformer_flops(patches + 1, int(vit.embed_dim), len(vit.blocks), vit.blocks[0].mlp.fc1.out_features,
                            3 * patch * patch, patches)
    return one * sum(s * s for s in fx.scales)


def motion_flops_per_clip(fx: "FeatureExtractor") -> float:
    c = fx.videomae.config
    patches = (c.num_frames // c.tubelet_size) * (c.image_size // c.patch_size) ** 2
    return transformer_flops(patches, c.hidden_size, c.num_hidden_layers, c.intermediate_size,
                             3 * c.tubelet_size * c.patch_size ** 2, patches)

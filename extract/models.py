"""The two feature streams (spatial per frame, motion per clip): recipes, models, identity.

Paper profile, SpaMo's features exactly (shared/reference.md, "Feature compatibility"):
  spatial  CLIP ViT-L/14 vision tower (transformers `CLIPVisionModel`, from any format the
           user holds: extract/clip.py), class token of the last layer *before* the post
           layer norm; S2: the normalised 224 crop upsampled 2x with plain bicubic, four 224
           tiles, their class tokens averaged; concatenated with the 1x token: 2048-d.
  motion   VideoMAE-L (extract/videomae.py), 16-frame clips with stride 8, the first token
           of the last layer *before* the final LayerNorm, 1024-d.
  input    `CLIPImageProcessor` / `VideoMAEImageProcessor` crops (extract/preprocess.py) of
           the PHOENIX frames squashed to 256x256 (SpaMo's fullFrame-256x256px).
Tiny profile (`tiny-vit`, `tiny-videomae`): timm/transformers models of the same families
at tiny sizes, seeded, with a fast torch resize; a separate recipe ("tiny") that the
paper path never reaches.

Work is split so that the CPU part (`Recipe.prepare`: decode-side resize and crop) runs in
Ray CPU tasks and the device part (normalise, tile, forward) in the model actors, both
through `FeatureExtractor`, which `slt-pipe translate --video` also uses in-process.
"""

from __future__ import annotations

import functools
import math
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from extract import clip as clipm
from extract import videomae as maem
from extract.clip import CLIP_MEAN, CLIP_STD, ImageRecipe
from extract.config import ExtractConfig
from extract.videomae import IMAGENET_MEAN, IMAGENET_STD

if TYPE_CHECKING:  # torch, numpy and the model libraries load where they are used: a cached run keys without them
    import numpy as np
    import torch
    from torch import Tensor, nn

TINY_VIT = "tiny-vit"
TINY_VIDEOMAE = "tiny-videomae"
TINY_SEED = 0
TINY_VIT_ARCH: dict[str, Any] = dict(patch_size=16, embed_dim=64, depth=2, num_heads=4, mlp_ratio=2.0, pre_norm=True,
                                     num_classes=0, act_layer="quick_gelu")
"""timm VisionTransformer settings of the tiny spatial model (besides img_size)."""
TINY_VIDEOMAE_ARCH: dict[str, Any] = dict(patch_size=16, tubelet_size=2, hidden_size=64, num_hidden_layers=2,
                                          num_attention_heads=4, intermediate_size=128, use_mean_pooling=False)
"""transformers VideoMAEConfig settings of the tiny motion model (besides image_size and num_frames)."""
TINY_INIT = "unit gain: 2-d params randn/sqrt(fan_in), cls_token/pos_embed randn*0.5, generator seed+2, sorted names"
"""How `_rescale_init` draws the tiny weights; change this text whenever that function changes."""
TINY_LIBRARIES = ("torch", "timm", "transformers")
"""The libraries whose code generates the tiny weights from the seed (their versions are in the identity)."""
TINY_RESIZE = "torch bicubic-antialias shortest side (rounded), centre crop"
"""How the tiny recipe makes model inputs (both streams share the 1x view)."""


def is_tiny(cfg: ExtractConfig) -> bool:
    tiny = (cfg.spatial_model == TINY_VIT, cfg.motion_model == TINY_VIDEOMAE)
    if tiny[0] != tiny[1]:
        from cache.errors import SltPipeError

        raise SltPipeError(f"spatial_model {cfg.spatial_model!r} and motion_model {cfg.motion_model!r} mix the tiny "
                           "and the paper recipe", fix="use both tiny models (--profile tiny) or neither")
    return tiny[0]


# --------------------------------------------------------------------------- tiny recipe (CPU)


def prepare_views(frames: np.ndarray, image_size: int, scales: list[int], *, chunk: int = 64) -> dict[int, np.ndarray]:
    """uint8 [T, H, W, 3] -> {scale: uint8 [T, s*S, s*S, 3]}: shortest side resized to s*S, centre-cropped.

    Vectorised over frames with torch (antialiased bicubic); `chunk` bounds the float32
    working memory on large video frames.
    """
    import numpy as np
    import torch

    views: dict[int, np.ndarray] = {}
    needed = sorted(set(scales) | {1})  # the 1x view also feeds the motion stream
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)
    for s in needed:
        side = s * image_size
        parts = [_resize_crop(x[i:i + chunk], side) for i in range(0, x.shape[0], chunk)]
        views[s] = torch.cat(parts).permute(0, 2, 3, 1).contiguous().numpy()
    return views


def _resize_crop(x: Tensor, side: int) -> Tensor:
    import torch
    from torch import nn

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
    import numpy as np

    if frames <= 0:
        raise ValueError("a video needs at least one frame")
    if frames < clip_len:
        return np.minimum(np.arange(clip_len), frames - 1)[None]
    starts = np.arange(0, frames - clip_len + 1, stride)
    return starts[:, None] + np.arange(clip_len)[None]


# --------------------------------------------------------------------------- the recipe


@dataclass(frozen=True)
class Recipe:
    """Everything the CPU side needs to turn decoded frames into model inputs (picklable)."""

    kind: str
    """"tiny" or "spamo"."""
    scales: tuple[int, ...]
    image_size: int
    """tiny: the model input side; spamo: the CLIP crop side (from its image processor)."""
    clip: ImageRecipe | None = None
    mae: ImageRecipe | None = None
    squash: int | None = None
    """spamo: side of the square every frame is squashed to first (PHOENIX: 256), or None."""

    @property
    def spatial_keys(self) -> tuple[Any, ...]:
        return tuple(sorted(set(self.scales) | {1})) if self.kind == "tiny" else ("clip",)

    @property
    def motion_key(self) -> Any:
        return 1 if self.kind == "tiny" else "mae"

    def max_decode_side(self) -> int | None:
        """Longest side worth decoding (tiny shrinks big video frames early; spamo resizes the
        original frame, as the image processors do)."""
        return 2 * max(self.scales + (1,)) * self.image_size if self.kind == "tiny" else None

    def prepare(self, frames: np.ndarray) -> dict[Any, np.ndarray]:
        """Decoded uint8 [T, H, W, 3] -> named uint8 views (all [T, h, w, 3])."""
        if self.kind == "tiny":
            return prepare_views(frames, self.image_size, list(self.scales))
        from extract.preprocess import processor_crop, squash

        assert self.clip is not None and self.mae is not None
        images = squash(frames, self.squash) if self.squash else frames  # once, for both processors
        return {"clip": processor_crop(images, self.clip), "mae": processor_crop(images, self.mae)}

    def to_json(self) -> dict[str, Any]:
        if self.kind == "tiny":
            return {"kind": "tiny", "resize": TINY_RESIZE, "image_size": self.image_size, "scales": list(self.scales),
                    "spatial_norm": {"mean": list(CLIP_MEAN), "std": list(CLIP_STD)},
                    "motion_norm": {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}}
        from extract.preprocess import SQUASH_RESAMPLER

        assert self.clip is not None and self.mae is not None
        return {"kind": "spamo", "scales": list(self.scales),
                "s2": "normalised crop upsampled with F.interpolate(bicubic), tiles' class tokens averaged",
                "squash": (f"{self.squash}x{self.squash} ({SQUASH_RESAMPLER}, a no-op on frames already that size, "
                           "e.g. fullFrame-256x256px)") if self.squash else "none",
                "spatial": self.clip.to_json(), "motion": self.mae.to_json()}


@dataclass(frozen=True)
class PaperModels:
    """The paper recipe's resolved weights and architectures (no tensor loaded yet)."""

    clip: clipm.ClipWeights | None
    clip_config: Any
    clip_ignored: dict[str, int]
    mae: maem.VideoMAEWeights | None
    mae_config: Any
    mae_ignored: dict[str, int]


def resolve_paper(cfg: ExtractConfig, *, random_init: bool = False) -> PaperModels:
    """Locate both checkpoints, detect their formats and check from names and shapes that each
    fills its architecture. Raises WeightsError (naming file and fix) before any work starts.

    Once per process and config: a command asks for every split's key, the feature widths and
    the recipe, and checking a ViT-L from its names and shapes builds it on the meta device.
    Done again when a file it read changed size or mtime."""
    from extract.hf_cache import hf_cache_dir

    memo_key = (cfg.spatial_model, cfg.spatial_weights, cfg.spatial_arch, cfg.motion_model, cfg.motion_weights,
                cfg.motion_arch, random_init, str(hf_cache_dir()))
    hit = _PAPER.get(memo_key)
    if hit is not None and hit[0] == _stamp(hit[1]):
        return hit[1]
    paper = _resolve_paper(cfg, random_init=random_init)
    _PAPER[memo_key] = (_stamp(paper), paper)
    return paper


_PAPER: dict[tuple, tuple[tuple, PaperModels]] = {}
"""resolve_paper's memo: config fields -> (stamp of the files read, the result)."""


def _stamp(paper: PaperModels) -> tuple:
    """(path, size, mtime) of every file resolve_paper read: weights, shards, the snapshots' configs."""
    from extract.weights import weight_files

    files: list[Path] = []
    for w in (paper.clip, paper.mae):
        if w is not None:
            files += [w.path, *weight_files(w.path)]
            if w.snapshot is not None:
                files += [w.snapshot / "config.json", w.snapshot / "preprocessor_config.json"]
    out = []
    for f in files:
        try:
            st = f.stat()
            out.append((str(f), st.st_size, st.st_mtime_ns))
        except OSError:
            out.append((str(f), None, None))  # absent now or before: a change shows as a different stamp
    return tuple(out)


def _resolve_paper(cfg: ExtractConfig, *, random_init: bool) -> PaperModels:
    if random_init:  # benchmarks only: paper sizes, random weights, marked so in the identity
        from transformers import CLIPVisionConfig, VideoMAEConfig

        return PaperModels(None, CLIPVisionConfig(**clipm.ARCHS["ViT-L/14"]), {}, None,
                           VideoMAEConfig(**maem.ARCHS["VideoMAE-L"]), {})
    return PaperModels(*clipm.resolve(cfg.spatial_model, cfg.spatial_weights, cfg.spatial_arch),
                       *maem.resolve(cfg.motion_model, cfg.motion_weights, cfg.motion_arch))


def make_recipe(cfg: ExtractConfig, paper: PaperModels | None = None) -> Recipe:
    scales = tuple(sorted(cfg.spatial_scales))
    if is_tiny(cfg):
        return Recipe("tiny", scales, cfg.image_size)
    from extract.preprocess import squash_side

    paper = paper or resolve_paper(cfg)
    size = int(paper.clip_config.image_size)
    clip_r = clipm.read_recipe(paper.clip.snapshot if paper.clip else None, clipm.clip_default_recipe(size))
    mae_size = int(paper.mae_config.image_size)
    mae_r = clipm.read_recipe(paper.mae.snapshot if paper.mae else None, maem.default_recipe(mae_size))
    if clip_r.crop != (size, size) or mae_r.crop != (mae_size, mae_size):
        from cache.errors import WeightsError

        raise WeightsError(f"image processor crops {clip_r.crop} / {mae_r.crop} do not match the models' input sizes "
                           f"{size} / {mae_size}", path=clip_r.source, fix="use the snapshot's own preprocessor_config.json")
    return Recipe("spamo", scales, size, clip_r, mae_r, squash_side(cfg.squash if cfg.squash != "auto" else "none"))


def feature_dims(cfg: ExtractConfig, *, random_init: bool = False) -> tuple[int, int]:
    """(spatial, motion) widths without building the models."""
    if is_tiny(cfg):
        return TINY_VIT_ARCH["embed_dim"] * len(cfg.spatial_scales), TINY_VIDEOMAE_ARCH["hidden_size"]
    paper = resolve_paper(cfg, random_init=random_init)
    return int(paper.clip_config.hidden_size) * len(cfg.spatial_scales), int(paper.mae_config.hidden_size)


# --------------------------------------------------------------------------- tiny models


def _tiny_vit(image_size: int) -> nn.Module:
    import torch
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(TINY_SEED)
    model = VisionTransformer(img_size=image_size, **TINY_VIT_ARCH)
    _rescale_init(model)
    return model


def _tiny_videomae(image_size: int, clip_len: int) -> nn.Module:
    import torch
    from transformers import VideoMAEConfig, VideoMAEModel

    torch.manual_seed(TINY_SEED + 1)
    config = VideoMAEConfig(image_size=image_size, num_frames=clip_len, **TINY_VIDEOMAE_ARCH)
    model = VideoMAEModel(config)
    _rescale_init(model)
    return model


def _rescale_init(model: nn.Module) -> None:
    """Unit-gain init (std 1/sqrt(fan_in)) instead of the pre-training init (std 0.02).

    Why: with std 0.02 an untrained transformer is nearly the identity on its input tokens and
    attention is uniform, so a class token learns nothing about where a shape is; unit gain
    keeps attention content-dependent, so random tiny features still carry colour and shape.
    Described by TINY_INIT in the identity: keep the two in step.
    """
    import torch

    gen = torch.Generator().manual_seed(TINY_SEED + 2)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if p.dim() == 2:
                p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(p.shape[1]))
            elif name.endswith(("cls_token", "pos_embed")):
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)


# --------------------------------------------------------------------------- identity


def model_identity(cfg: ExtractConfig, *, random_init: bool = False) -> dict[str, Any]:
    """What determines the features: models and their weights (sha256 of the files actually
    loaded), token choices and the preprocessing recipe. Raises WeightsError when weights are
    absent or do not fill their architecture."""
    if is_tiny(cfg):
        recipe = make_recipe(cfg)
        generated = {"init": TINY_INIT, "init_seed": TINY_SEED + 2, "libraries": dict(library_versions(TINY_LIBRARIES))}
        return {"spatial": {"name": TINY_VIT, "library": "timm", "token": "cls of last block, before final norm",
                            "weights": {"seed": TINY_SEED, "arch": {"img_size": cfg.image_size, **TINY_VIT_ARCH},
                                        **generated}},
                "motion": {"name": TINY_VIDEOMAE, "library": "transformers.VideoMAEModel", "pool": cfg.motion_pool,
                           "token": "last_hidden_state (after the final LayerNorm)",
                           "weights": {"seed": TINY_SEED + 1, "arch": {"image_size": cfg.image_size,
                                                                       "num_frames": cfg.clip_len, **TINY_VIDEOMAE_ARCH},
                                       **generated}},
                "recipe": recipe.to_json()}
    paper = resolve_paper(cfg, random_init=random_init)
    recipe = make_recipe(cfg, paper)
    if random_init:
        spatial: dict[str, Any] = {"weights": "random-init (benchmark only)"}
        motion: dict[str, Any] = {"weights": "random-init (benchmark only)"}
    else:
        spatial = clipm.identity(paper.clip, paper.clip_config, paper.clip_ignored)  # type: ignore[arg-type]
        motion = maem.identity(paper.mae, paper.mae_config, paper.mae_ignored)  # type: ignore[arg-type]
    spatial.update(name=cfg.spatial_model, token="class token of the last layer, before post_layernorm "
                                                 "(hidden_states[-1][:, 0])")
    motion.update(name=cfg.motion_model, pool=cfg.motion_pool,
                  token=("first token" if cfg.motion_pool == "first" else "mean of the tokens")
                  + " of the last layer, before the final LayerNorm (hidden_states[-1])")
    return {"spatial": spatial, "motion": motion, "recipe": recipe.to_json()}


@functools.lru_cache(maxsize=None)
def library_versions(names: tuple[str, ...]) -> dict[str, str]:
    """Installed versions, read from package metadata (importing torch or timm would cost seconds)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in names:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


# --------------------------------------------------------------------------- the extractor


def _inference_mode(fn: Callable) -> Callable:
    """`torch.inference_mode()` as a decorator that imports torch when the method runs, not at import."""
    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        import torch

        with torch.inference_mode():
            return fn(*args, **kwargs)

    return run


def resolve_device(name: str) -> torch.device:
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@dataclass
class Precision:
    """Compute precision (storage dtype is separate: ExtractConfig.dtype)."""

    device: str
    autocast: str | None

    def context(self):
        import torch

        if self.autocast is None:
            return nullcontext()
        return torch.autocast(self.device, dtype=getattr(torch, self.autocast))


class FeatureExtractor:
    """Both models on one device; the one code path for Ray actors and on-the-fly translation.

    `spatial(frames)` / `motion(frames)` take raw uint8 [T, H, W, 3] frames of one video; the
    batch methods take already prepared views/clips (the Ray hot path, batches span videos).
    """

    def __init__(self, cfg: ExtractConfig, device: str | torch.device = "auto", *, random_init: bool = False):
        import torch

        self.cfg = cfg
        self.device = resolve_device(device) if isinstance(device, str) else device
        self.precision = Precision(self.device.type, cfg.autocast if self.device.type == "cuda" and cfg.autocast != "none" else None)
        self.scales = sorted(cfg.spatial_scales)
        if is_tiny(cfg):
            self.recipe = make_recipe(cfg)
            self.vit: nn.Module = _tiny_vit(cfg.image_size)
            self.videomae: nn.Module = _tiny_videomae(cfg.image_size, cfg.clip_len)
            self.spatial_dim = int(self.vit.embed_dim) * len(self.scales)  # type: ignore[operator]
            clip_norm, mae_norm = (CLIP_MEAN, CLIP_STD), (IMAGENET_MEAN, IMAGENET_STD)
        else:
            paper = resolve_paper(cfg, random_init=random_init)
            self.recipe = make_recipe(cfg, paper)
            if random_init:
                from transformers import CLIPVisionModel, VideoMAEModel

                self.vit, self.videomae = CLIPVisionModel(paper.clip_config).eval(), VideoMAEModel(paper.mae_config).eval()
            else:
                self.vit = clipm.load(paper.clip, paper.clip_config)  # type: ignore[arg-type]
                self.videomae = maem.load(paper.mae, paper.mae_config)  # type: ignore[arg-type]
            self.spatial_dim = int(paper.clip_config.hidden_size) * len(self.scales)
            assert self.recipe.clip is not None and self.recipe.mae is not None
            clip_norm = (self.recipe.clip.mean, self.recipe.clip.std)
            mae_norm = (self.recipe.mae.mean, self.recipe.mae.std)
        self.vit = self.vit.eval().to(self.device)
        self.videomae = self.videomae.eval().to(self.device)
        self.motion_dim = int(self.videomae.config.hidden_size)
        self._clip_mean, self._clip_std = (torch.tensor(v, device=self.device) for v in clip_norm)
        self._mae_mean, self._mae_std = (torch.tensor(v, device=self.device) for v in mae_norm)
        self.frames_forwarded = 0
        self.clips_forwarded = 0

    def _to_device(self, x: np.ndarray | Tensor) -> Tensor:
        import numpy as np
        import torch

        t = torch.from_numpy(x) if isinstance(x, np.ndarray) else x
        if self.device.type == "cuda":
            # Pinned + non_blocking: the host queues the copy and goes on preparing the next batch.
            return t.pin_memory().to(self.device, non_blocking=True)
        return t

    @_inference_mode
    def spatial_batch(self, views: dict[Any, np.ndarray | Tensor]) -> Tensor:
        """Prepared views (`Recipe.spatial_keys`, each uint8 [B, h, w, 3]) -> float [B, Ds] on the device."""
        import torch

        from extract.preprocess import normalise, s2_tiles

        if self.recipe.kind == "tiny":
            return self._tiny_spatial(views)
        x = normalise(self._to_device(views["clip"]), self._clip_mean, self._clip_std)  # [B, 3, S, S]
        b = x.shape[0]
        images, counts = [], []
        for s in self.scales:
            images.append(x if s == 1 else s2_tiles(x, s))
            counts.append(s * s)
        with self.precision.context():
            tok = clipm.cls_pre_norm(self.vit, torch.cat(images)).float()
        out, at = [], 0
        for c in counts:
            out.append(tok[at:at + b * c].view(b, c, -1).mean(1))
            at += b * c
        self.frames_forwarded += b
        return torch.cat(out, dim=1)

    def _tiny_spatial(self, views: dict[Any, np.ndarray | Tensor]) -> Tensor:
        import torch

        from extract.preprocess import normalise

        S = self.cfg.image_size
        images, counts = [], []
        for s in self.scales:
            x = self._to_device(views[s])  # [B, sS, sS, 3]
            b = x.shape[0]
            if s > 1:  # cut the s-times view into s*s tiles of S, each a model input
                x = x.view(b, s, S, s, S, 3).permute(0, 1, 3, 2, 4, 5).reshape(b * s * s, S, S, 3)
            images.append(x)
            counts.append(s * s)
        x = normalise(torch.cat(images), self._clip_mean, self._clip_std)
        with self.precision.context():
            tok = _vit_cls_pre_norm(self.vit, x).float()
        out, at = [], 0
        b = tok.shape[0] // sum(counts)
        for c in counts:
            out.append(tok[at:at + b * c].view(b, c, -1).mean(1))
            at += b * c
        self.frames_forwarded += b
        return torch.cat(out, dim=1)

    @_inference_mode
    def motion_batch(self, clips: np.ndarray | Tensor) -> Tensor:
        """uint8 [B, L, S, S, 3] clips -> float [B, Dm] on the device (not synchronised)."""
        from extract.preprocess import normalise

        x = normalise(self._to_device(clips), self._mae_mean, self._mae_std)  # [B, L, 3, S, S]
        with self.precision.context():
            if self.recipe.kind == "tiny":
                h = self.videomae(pixel_values=x).last_hidden_state
            else:
                h = maem.first_token_pre_norm(self.videomae, x)
        self.clips_forwarded += x.shape[0]
        return (h[:, 0] if self.cfg.motion_pool == "first" else h.mean(1)).float()

    def prepare(self, frames: np.ndarray) -> dict[Any, np.ndarray]:
        return self.recipe.prepare(frames)

    def spatial(self, frames: np.ndarray, views: dict[Any, np.ndarray] | None = None) -> np.ndarray:
        """One video's raw uint8 [T, H, W, 3] -> float32 [T, Ds]."""
        views = views if views is not None else self.prepare(frames)
        import torch

        B = self.cfg.batch_frames
        keys = self.recipe.spatial_keys
        out = [self.spatial_batch({k: views[k][i:i + B] for k in keys}) for i in range(0, len(frames), B)]
        return torch.cat(out).cpu().numpy()

    def motion(self, frames: np.ndarray, views: dict[Any, np.ndarray] | None = None) -> np.ndarray:
        """One video's raw uint8 [T, H, W, 3] -> float32 [C, Dm]."""
        views = views if views is not None else self.prepare(frames)
        view = views[self.recipe.motion_key]
        clips = view[clip_index(len(view), self.cfg.clip_len, self.cfg.clip_stride)]
        import torch

        B = self.cfg.batch_clips
        return torch.cat([self.motion_batch(clips[i:i + B]) for i in range(0, len(clips), B)]).cpu().numpy()


def _vit_cls_pre_norm(vit: nn.Module, x: Tensor) -> Tensor:
    """Class token of the last block's output, before the final norm (timm tiny ViT)."""
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
    if fx.recipe.kind == "tiny":
        vit = fx.vit
        patch, width, layers = vit.patch_embed.patch_size[0], int(vit.embed_dim), len(vit.blocks)
        hidden, size = vit.blocks[0].mlp.fc1.out_features, fx.cfg.image_size
    else:
        c = fx.vit.config
        patch, width, layers, hidden, size = c.patch_size, c.hidden_size, c.num_hidden_layers, c.intermediate_size, c.image_size
    patches = (size // patch) ** 2
    one = transformer_flops(patches + 1, width, layers, hidden, 3 * patch * patch, patches)
    return one * sum(s * s for s in fx.scales)


def motion_flops_per_clip(fx: "FeatureExtractor") -> float:
    c = fx.videomae.config
    patches = (c.num_frames // c.tubelet_size) * (c.image_size // c.patch_size) ** 2
    return transformer_flops(patches, c.hidden_size, c.num_hidden_layers, c.intermediate_size,
                             3 * c.tubelet_size * c.patch_size ** 2, patches)

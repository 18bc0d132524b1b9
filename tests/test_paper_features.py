"""The paper recipe's features: strict loading in every format users hold, and SpaMo equivalence.

References are written here with the libraries' own classes (transformers' image processors
and models, timm's ViT, an OpenAI-layout CLIP tower following OpenAI's code), never with
slt-pipe's conversion code, so a wrong key mapping or preprocessing step shows up as a
feature mismatch.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from cache.errors import WeightsError
from extract.datasets import open_dataset
from extract.vision.assets import save_clip_snapshot, save_videomae_snapshot
from extract.vision.decode import read_frames
from extract.vision.encoders import clip as clipm
from extract.vision.encoders import videomae as maem
from extract.vision.streams import FeatureExtractor, model_identity
from helpers import cosines, random_clip, random_videomae
from helpers import pil_images as _images
from helpers import scramble_weights as scramble
from pipeline.config import build_config
from pipeline.extract_stage import stage_config

REPO = Path(__file__).resolve().parents[1]
CLI = [str(REPO / ".venv/bin/slt-pipe")] if (REPO / ".venv/bin/slt-pipe").exists() else [sys.executable, "-m", "pipeline.cli"]
SMALL = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4, patch_size=16,
             image_size=64, hidden_act="quick_gelu", layer_norm_eps=1e-5)
SMALL_MAE = dict(image_size=64, patch_size=16, num_channels=3, num_frames=16, tubelet_size=2, hidden_size=64,
                 num_hidden_layers=2, num_attention_heads=4, intermediate_size=128, hidden_act="gelu", qkv_bias=True,
                 use_mean_pooling=False, layer_norm_eps=1e-12)


# --------------------------------------------------------------------------- data in the PHOENIX layout


def write_phoenix(root: Path, videos: dict[str, np.ndarray], *, with_256: bool = False) -> Path:
    """A PHOENIX-2014-T release (split 'test') with the given 210x260 videos as PNG frames; with_256
    also writes SpaMo's fullFrame-256x256px copy (PIL bicubic squash)."""
    base = root / "PHOENIX-2014-T-release-v3/PHOENIX-2014-T"
    ann = base / "annotations/manual"
    ann.mkdir(parents=True)
    rows = ["name|video|start|end|speaker|orth|translation"]
    for name, frames in videos.items():
        rows.append(f"{name}|{name}/1/*.png|-1|-1|Signer01|REGEN|morgen regnet es")
        for folder, size in (("fullFrame-210x260px", None), ("fullFrame-256x256px", 256)):
            if size and not with_256:
                continue
            d = base / "features" / folder / "test" / name
            d.mkdir(parents=True)
            for i, f in enumerate(frames, start=1):
                im = Image.fromarray(f)
                (im.resize((size, size), Image.Resampling.BICUBIC) if size else im).save(d / f"images{i:04d}.png")
    (ann / "PHOENIX-2014-T.test.corpus.csv").write_text("\n".join(rows) + "\n")
    return root


def video(seed: int, frames: int) -> np.ndarray:
    """Smooth random 210x260 frames (blurred noise: random weights see structure, not just colour)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(frames, 14, 13, 3), dtype=np.uint8)
    return np.stack([np.asarray(Image.fromarray(f).resize((260, 210), Image.Resampling.BILINEAR)) for f in small])


def frame_paths(root: Path, name: str, folder: str) -> list[Path]:
    d = root / "PHOENIX-2014-T-release-v3/PHOENIX-2014-T/features" / folder / "test" / name
    return sorted(d.glob("*.png"))


# --------------------------------------------------------------------------- references


PIL_FILTER = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR,
              "nearest": Image.Resampling.NEAREST}


@torch.no_grad()
def reference_spatial(snapshot: Path, pngs: list[Path], squash: int | None = None, *, resample: str = "bicubic",
                      token: str = "pre", scales: tuple[int, ...] = (1, 2), model: nn.Module | None = None) -> np.ndarray:
    """SpaMo's spatial feature, written with transformers' classes: CLIPImageProcessor, then
    CLIPVisionModel(output_hidden_states=True).hidden_states[-1][:, 0] of the crop and of the four
    tiles of its 2x bicubic upsampling (F.interpolate), averaged, concatenated.

    The keywords make the controls: `resample` overrides the processor's bicubic resize,
    `token="post"` takes the class token after post_layernorm (pooler_output), `scales=(1,)`
    the 224 view alone; `model` reuses a loaded CLIPVisionModel of `snapshot`."""
    from transformers import CLIPImageProcessor, CLIPVisionModel

    proc = CLIPImageProcessor.from_pretrained(snapshot)
    model = model if model is not None else CLIPVisionModel.from_pretrained(snapshot).eval()

    def cls(pixel_values: torch.Tensor) -> torch.Tensor:
        out = model(pixel_values=pixel_values, output_hidden_states=True)
        return out.hidden_states[-1][:, 0] if token == "pre" else out.pooler_output

    x = proc(images=_images(pngs, squash), resample=PIL_FILTER[resample], return_tensors="pt")["pixel_values"]
    s = x.shape[-1]
    parts = [cls(x)]
    if 2 in scales:
        big = torch.nn.functional.interpolate(x, size=(2 * s, 2 * s), mode="bicubic")
        tiles = [big[..., :s, :s], big[..., :s, s:], big[..., s:, :s], big[..., s:, s:]]
        parts.append(torch.stack([cls(t) for t in tiles]).mean(0))
    return torch.cat(parts, dim=1).numpy()


@torch.no_grad()
def reference_motion(snapshot: Path, pngs: list[Path], squash: int | None = None, *, resample: str = "bilinear",
                     token: str = "pre", max_clips: int | None = None, model: nn.Module | None = None) -> np.ndarray:
    """SpaMo's motion feature with transformers' classes: VideoMAEImageProcessor on 16-frame clips
    (stride 8; a short video repeats its last frame), VideoMAEModel hidden_states[-1][:, 0].

    Controls: `resample` overrides the processor's bilinear resize, `token="post"` takes
    last_hidden_state[:, 0] (after the final LayerNorm); `max_clips` stops early."""
    from transformers import VideoMAEImageProcessor, VideoMAEModel

    proc = VideoMAEImageProcessor.from_pretrained(snapshot)
    model = model if model is not None else VideoMAEModel.from_pretrained(snapshot).eval()
    images = _images(pngs, squash)
    if len(images) < 16:
        images = images + [images[-1]] * (16 - len(images))
    clips = [images[i:i + 16] for i in range(0, len(images) - 16 + 1, 8)][:max_clips]
    out = []
    for c in clips:
        x = proc(c, resample=PIL_FILTER[resample], return_tensors="pt")["pixel_values"]
        o = model(pixel_values=x, output_hidden_states=True)
        out.append(o.hidden_states[-1][:, 0] if token == "pre" else o.last_hidden_state[:, 0])
    return torch.cat(out).numpy()


def slt_features(root: Path, spatial: Path, motion: Path, archs: tuple[str, str] = ("snapshot", "snapshot"),
                 spatial_frames: int | None = None, **extract) -> tuple[np.ndarray, np.ndarray, FeatureExtractor]:
    """slt-pipe's paper-profile features of the dataset's first video (the Ray workers' code path);
    `spatial_frames` limits the spatial stream to the first frames (full-size runs on a CPU)."""
    cfg = build_config({"profile": "paper"}, {"dataset": {"name": "phoenix", "root": str(root), "splits": ["test"]},
                                               "extract": {"clip": {"weights": str(spatial), "arch": archs[0]},
                                                           "videomae": {"weights": str(motion), "arch": archs[1]},
                                                           "dtype": "float32", **extract}})
    ds = open_dataset("phoenix", root, ["test"])
    fx = FeatureExtractor(stage_config(cfg, "phoenix"), "cpu")
    frames = read_frames(ds.samples["test"][0].frames, max_side=fx.recipe.max_decode_side())
    views = fx.prepare(frames)
    k = spatial_frames or len(frames)
    return fx.spatial(frames[:k], {n: v[:k] for n, v in views.items()}), fx.motion(frames, views), fx


THRESHOLD = 1 - 1e-8
"""Least cosine between slt-pipe's features and the independent reference (float32). Measured on the
CPU with `scramble`d weights: the noise floor (slt-pipe vs the reference) is 1 - cos <= 2e-16 for the
small models and for ViT-L/14 + VideoMAE-L alike (the same float32 operations; another BLAS or batch
split moves it to ~1e-12 at most), while the closest controls at full size are 8e-7 (CLIP, 224x224
squash), 1.2e-6 (CLIP, bilinear resize) and 3e-6 (VideoMAE, bicubic resize) away: the threshold sits
>= 80x below every control and far above the noise floor."""
MARGIN = 10
"""Every control must be at least MARGIN times further from slt-pipe's features than THRESHOLD allows."""


def assert_discriminating(what: str, got: np.ndarray, correct: np.ndarray, controls: dict[str, np.ndarray]) -> dict:
    """`got` matches the correct reference (min cosine >= THRESHOLD), and each control reference (a
    deliberate recipe fault, computed on the first rows / columns only) is clearly below THRESHOLD, so
    this check fails when slt-pipe makes any of those faults. Returns the measured cosines."""
    measured = {"reference": float(cosines(got, correct).min())}
    assert measured["reference"] >= THRESHOLD, (
        f"{what}: slt-pipe vs the reference: min cosine {measured['reference']:.10f} < {THRESHOLD:.10f}")
    for name, ref in controls.items():
        measured[name] = float(cosines(got[:len(ref), :ref.shape[1]], ref).min())
        assert 1 - measured[name] >= MARGIN * (1 - THRESHOLD), (
            f"{what}: control {name!r} is not clearly below the threshold: min cosine {measured[name]:.10f}")
    print(what, {k: f"1-cos={1 - v:.2e}" for k, v in measured.items()})
    return measured


def check_spamo_recipe(root: Path, clip: Path, mae: Path, archs: tuple[str, str] = ("snapshot", "snapshot"), *,
                       spatial_frames: int | None = None, control_rows: int | None = None) -> tuple[dict, dict]:
    """slt-pipe's features of the PHOENIX video in `root` against the transformers reference and against
    controls, each the reference with one recipe choice made wrong: the token after the final LayerNorm,
    the other resampler in the image processor, no 256x256 squash (the processors' centre crop of the
    210x260 frame) and a 224x224 squash. Controls run on the first `control_rows` frames / clips (CLIP's
    at scale 1, its first 1024 dims). Returns the measured cosines (spatial, motion)."""
    from transformers import CLIPVisionModel, VideoMAEModel

    sp, mo, fx = slt_features(root, clip, mae, archs, spatial_frames)
    assert fx.recipe.squash == 256
    pngs = frame_paths(root, "v1", "fullFrame-210x260px")
    cm = CLIPVisionModel.from_pretrained(clip).eval()
    assert sp.shape == (spatial_frames or len(pngs), 2 * cm.config.hidden_size)  # S2: scales 1 and 2
    assert mo.shape == ((len(pngs) - 16) // 8 + 1, fx.models["videomae"].config.hidden_size)
    few = pngs[:control_rows or len(sp)]
    spatial = assert_discriminating("CLIP", sp, reference_spatial(clip, pngs[:len(sp)], 256, model=cm), {
        "post_layernorm token": reference_spatial(clip, few, 256, token="post", scales=(1,), model=cm),
        "bilinear resize": reference_spatial(clip, few, 256, resample="bilinear", scales=(1,), model=cm),
        "no squash": reference_spatial(clip, few, None, scales=(1,), model=cm),
        "224x224 squash": reference_spatial(clip, few, 224, scales=(1,), model=cm)})
    del cm
    vm = VideoMAEModel.from_pretrained(mae).eval()
    n = control_rows
    motion = assert_discriminating("VideoMAE", mo, reference_motion(mae, pngs, 256, model=vm), {
        "final LayerNorm token": reference_motion(mae, pngs, 256, token="post", max_clips=n, model=vm),
        "bicubic resize": reference_motion(mae, pngs, 256, resample="bicubic", max_clips=n, model=vm),
        "no squash": reference_motion(mae, pngs, None, max_clips=n, model=vm),
        "224x224 squash": reference_motion(mae, pngs, 224, max_clips=n, model=vm)})
    return spatial, motion


# --------------------------------------------------------------------------- other formats' own code


class OpenAIBlock(nn.Module):
    """OpenAI CLIP's ResidualAttentionBlock (clip/model.py), same parameter names."""

    def __init__(self, d: int, heads: int):
        super().__init__()
        self.attn = nn.MultiheadAttention(d, heads)
        self.ln_1 = nn.LayerNorm(d)
        self.mlp = nn.Sequential(OrderedDict([("c_fc", nn.Linear(d, 2 * d)), ("gelu", nn.Identity()),  # ratio 2: SMALL
                                              ("c_proj", nn.Linear(2 * d, d))]))
        self.ln_2 = nn.LayerNorm(d)

    def forward(self, x):
        y = self.ln_1(x)
        x = x + self.attn(y, y, y, need_weights=False)[0]
        h = self.mlp.c_fc(self.ln_2(x))
        return x + self.mlp.c_proj(h * torch.sigmoid(1.702 * h))  # QuickGELU


class OpenAIVisual(nn.Module):
    """OpenAI CLIP's VisionTransformer; forward returns the class token before ln_post."""

    def __init__(self, width: int, layers: int, heads: int, patch: int, image: int, out: int = 16):
        super().__init__()
        scale = width ** -0.5
        self.conv1 = nn.Conv2d(3, width, patch, patch, bias=False)
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.positional_embedding = nn.Parameter(scale * torch.randn((image // patch) ** 2 + 1, width))
        self.ln_pre = nn.LayerNorm(width)
        self.transformer = nn.Module()
        self.transformer.resblocks = nn.Sequential(*[OpenAIBlock(width, heads) for _ in range(layers)])
        self.ln_post = nn.LayerNorm(width)
        self.proj = nn.Parameter(scale * torch.randn(width, out))

    def forward(self, x):
        x = self.conv1(x).flatten(2).permute(0, 2, 1)
        cls = self.class_embedding.to(x.dtype) + torch.zeros(x.shape[0], 1, x.shape[-1], dtype=x.dtype)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype)
        x = self.ln_pre(x).permute(1, 0, 2)  # NLD -> LND, as OpenAI's code
        x = self.transformer.resblocks(x).permute(1, 0, 2)
        return x[:, 0]


class OpenAICLIP(nn.Module):
    """The outer CLIP module: `visual` plus (a stand-in for) the text tower, as OpenAI's files hold."""

    def __init__(self, **kw):
        super().__init__()
        self.visual = OpenAIVisual(**kw)
        self.token_embedding = nn.Embedding(10, 8)
        self.logit_scale = nn.Parameter(torch.ones([]))

    def forward(self, x):
        return self.visual(x)


def openai_clip(seed: int = 3) -> OpenAICLIP:
    torch.manual_seed(seed)
    m = OpenAICLIP(width=64, layers=3, heads=4, patch=16, image=64).eval()
    with torch.no_grad():  # non-trivial norms, so a swapped LayerNorm shows
        for mod in m.modules():
            if isinstance(mod, nn.LayerNorm):
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.normal_(0, 0.1)
    return m


def timm_clip(seed: int = 4) -> nn.Module:
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(seed)
    return VisionTransformer(img_size=64, patch_size=16, embed_dim=64, depth=3, num_heads=4, mlp_ratio=2.0,
                             pre_norm=True, num_classes=16, act_layer="quick_gelu",
                             norm_layer=lambda d, **kw: nn.LayerNorm(d, eps=1e-5, **kw)).eval()


def timm_cls_pre_norm(vit: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return vit.blocks(vit.norm_pre(vit._pos_embed(vit.patch_embed(x))))[:, 0]


@pytest.fixture()
def small_arch(monkeypatch):
    monkeypatch.setitem(clipm.ARCHS, "test-S", SMALL)
    monkeypatch.setitem(maem.ARCHS, "test-S", SMALL_MAE)
    return "test-S"


def pixels(seed: int = 0, n: int = 3, size: int = 64) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def loaded(path: Path, arch: str = "test-S") -> nn.Module:
    w = clipm.locate("unused", str(path))
    config = clipm.vision_config(arch, w)
    clipm.check(w, config)
    return clipm.load(w, config)


# --------------------------------------------------------------------------- spatial formats


@pytest.mark.parametrize("full_clip", [False, True], ids=["CLIPVisionModel", "CLIPModel"])
def test_transformers_snapshot_loads_every_tensor_and_matches_transformers(tmp_path, small_arch, full_clip):
    ref = random_clip(64, 3, 4, 128, 16, 64)
    snap = save_clip_snapshot(ref, tmp_path / "snap", full_clip=full_clip)
    w = clipm.locate("unused", str(snap))
    assert w.format == "transformers"
    ignored = clipm.check(w, clipm.vision_config(small_arch, w))
    assert ("text tower" in ignored) == full_clip  # dropped by name, and said so
    model = loaded(snap)
    x = pixels()
    with torch.no_grad():
        want = ref(pixel_values=x, output_hidden_states=True).hidden_states[-1][:, 0]
        assert torch.equal(clipm.cls_pre_norm(model, x), want)


def test_sharded_transformers_snapshot(tmp_path, small_arch):
    ref = random_clip(64, 3, 4, 128, 16, 64)
    ref.save_pretrained(tmp_path / "snap", max_shard_size="100KB")
    assert (tmp_path / "snap/model.safetensors.index.json").is_file()
    with torch.no_grad():
        x = pixels()
        assert torch.equal(clipm.cls_pre_norm(loaded(tmp_path / "snap"), x),
                           ref(pixel_values=x, output_hidden_states=True).hidden_states[-1][:, 0])


def test_timm_repo_matches_timm(tmp_path, small_arch):
    from safetensors.torch import save_file

    vit = timm_clip()
    repo = tmp_path / "timm-repo"
    repo.mkdir()
    save_file(vit.state_dict(), repo / "model.safetensors")
    (repo / "config.json").write_text(json.dumps({"architecture": "vit_large_patch14_clip_224", "num_classes": 16}))
    assert clipm.locate("unused", str(repo)).format == "timm"
    x = pixels(1)
    with torch.no_grad():
        torch.testing.assert_close(clipm.cls_pre_norm(loaded(repo), x), timm_cls_pre_norm(vit, x), rtol=1e-5, atol=1e-5)


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
@pytest.mark.parametrize("kind", ["open_clip_pytorch_model.bin", "open_clip_model.safetensors", "ViT-L-14.pt"])
def test_openai_and_open_clip_files_match_openai_code(tmp_path, small_arch, kind):
    from safetensors.torch import save_file

    ref = openai_clip()
    path = tmp_path / kind
    if kind.endswith(".bin"):
        torch.save(ref.state_dict(), path)
    elif kind.endswith(".safetensors"):
        save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, path)
    else:  # OpenAI's release: a TorchScript archive in fp16
        torch.jit.save(torch.jit.trace(OpenAICLIP.half(openai_clip()), pixels(0, 1).half()), str(path))
        ref = ref.half().float()  # the same weights, rounded as the file holds them
    w = clipm.locate("unused", str(path))
    assert w.format == ("openai" if kind.endswith(".pt") else "open_clip")
    x = pixels(2)
    with torch.no_grad():
        got, want = clipm.cls_pre_norm(loaded(path), x), ref(x)
    assert cosines(got.numpy(), want.numpy()).min() > 0.9999
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def _drop_one(state: dict, key_part: str) -> dict:
    victim = sorted(k for k in state if key_part in k)[0]
    return {k: v for k, v in state.items() if k != victim}


def without_parameter(model: nn.Module, name: str) -> nn.Module:
    """`model` with parameter `name` turned into a plain tensor attribute: tracing bakes it into the
    code as a constant, so the TorchScript archive still runs but its state dict lacks that tensor."""
    owner, attr = name.rsplit(".", 1)
    mod = model.get_submodule(owner)
    value = getattr(mod, attr).detach().clone()
    del mod._parameters[attr]
    setattr(mod, attr, value)
    return model


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
@pytest.mark.parametrize("fmt", ["transformers", "timm", "open_clip", "openai"])
def test_every_spatial_format_refuses_a_partial_file(tmp_path, small_arch, fmt):
    from safetensors.torch import save_file

    if fmt == "transformers":
        state = random_clip(64, 3, 4, 128, 16, 64).state_dict()
        victim_part, path = "layers.1.mlp.fc2.weight", tmp_path / "snap"
        path.mkdir()
        (path / "config.json").write_text(json.dumps({"model_type": "clip_vision_model", **SMALL}))
        save_file(_drop_one(state, victim_part), path / "model.safetensors")
    elif fmt == "timm":
        state = timm_clip().state_dict()
        victim_part, path = "blocks.1.mlp.fc2.weight", tmp_path / "model.safetensors"
        save_file(_drop_one(state, victim_part), path)
    elif fmt == "open_clip":
        state = openai_clip().state_dict()
        victim_part, path = "resblocks.1.mlp.c_proj.weight", tmp_path / "open_clip_pytorch_model.bin"
        torch.save(_drop_one(state, victim_part), path)
    else:  # OpenAI's ViT-L-14.pt: a real TorchScript archive (fp16, as released) whose state lacks one tensor
        victim = "visual.transformer.resblocks.1.mlp.c_proj.weight"
        path = tmp_path / "ViT-L-14.pt"
        partial = without_parameter(OpenAICLIP.half(openai_clip()), victim)
        torch.jit.save(torch.jit.trace(partial, pixels(0, 1).half()), str(path))
        archive = torch.jit.load(str(path))
        assert victim not in archive.state_dict() and victim.replace("weight", "bias") in archive.state_dict()
        assert archive(pixels(0, 1).half()).shape == (1, 64)  # a working archive, only the tensor is absent
    assert clipm.locate("unused", str(path)).format == fmt  # the format detector classified it as such
    with pytest.raises(WeightsError) as e:
        loaded(path)
    msg = e.value.render()
    assert "missing 1 of" in msg and "vision_model.encoder.layers.1.mlp.fc2.weight" in msg and str(path) in msg
    assert "fix:" in msg


def test_two_layer_file_is_refused_for_the_24_layer_architecture(tmp_path):
    """A full-width CLIP with 2 of ViT-L/14's 24 layers: refused from the header alone."""
    from safetensors.torch import save_file

    state = random_clip(1024, 2, 16, 4096, 14, 224).state_dict()
    snap = tmp_path / "snap"
    snap.mkdir()
    save_file(state, snap / "model.safetensors")
    w = clipm.locate("unused", str(snap))
    with pytest.raises(WeightsError, match=r"missing 352 of 391 tensors: vision_model.encoder.layers.2.layer_norm1"):
        clipm.check(w, clipm.vision_config("ViT-L/14", w))


def test_unknown_tensor_and_wrong_shape_are_refused(tmp_path, small_arch):
    from safetensors.torch import save_file

    state = random_clip(64, 3, 4, 128, 16, 64).state_dict()
    state["vision_model.extra.weight"] = torch.zeros(2)
    state["vision_model.post_layernorm.weight"] = torch.zeros(63)
    save_file(state, tmp_path / "model.safetensors")
    with pytest.raises(WeightsError, match=r"1 unexpected: vision_model.extra.weight.*1 mis-shaped: "
                                           r"vision_model.post_layernorm.weight \[63\] \(needs \[64\]\)"):
        loaded(tmp_path / "model.safetensors")


def test_missing_weights_name_where_they_were_looked_for(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(WeightsError) as e:
        clipm.locate("openai/clip-vit-large-patch14", None)
    assert "huggingface-cli download openai/clip-vit-large-patch14" in e.value.render()
    assert "timm/vit_large_patch14_clip_224.openai" in e.value.render()
    with pytest.raises(WeightsError, match="not in the Hugging Face cache"):
        maem.locate("MCG-NJU/videomae-large", None)
    with pytest.raises(WeightsError, match="CLIP weights not found"):
        clipm.locate("x", str(tmp_path / "nope.safetensors"))


# --------------------------------------------------------------------------- motion formats


@pytest.mark.parametrize("pretraining", [True, False], ids=["VideoMAEForPreTraining", "VideoMAEModel"])
def test_videomae_snapshot_loads_and_refuses_partial(tmp_path, small_arch, pretraining):
    from safetensors.torch import load_file, save_file

    ref = random_videomae(64, 2, 4, 128, 64)
    snap = save_videomae_snapshot(ref, tmp_path / "mae", pretraining=pretraining)
    w = maem.locate("unused", str(snap))
    config = maem.videomae_config(small_arch, w)
    ignored = maem.check(w, config)
    assert ("pre-training decoder" in ignored) == pretraining
    model = maem.load(w, config)
    x = torch.randn(2, 16, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(maem.first_token_pre_norm(model, x),
                                   ref(pixel_values=x, output_hidden_states=True).hidden_states[-1])
    state = load_file(snap / "model.safetensors")
    save_file(_drop_one(state, "layer.1.output.dense.weight"), snap / "model.safetensors")
    with pytest.raises(WeightsError, match=r"missing 1 of .*encoder.layer.1.output.dense.weight"):
        maem.check(w, config)


# --------------------------------------------------------------------------- SpaMo recipe, end to end


@pytest.fixture(scope="module")
def small_snapshots(tmp_path_factory):
    d = tmp_path_factory.mktemp("snaps")
    clip = save_clip_snapshot(random_clip(64, 3, 4, 128, 16, 64), d / "clip", full_clip=True)
    mae = save_videomae_snapshot(random_videomae(64, 2, 4, 128, 64), d / "mae")
    return clip, mae


@pytest.mark.parametrize("with_256", [False, True], ids=["squash-in-memory", "fullFrame-256x256px"])
def test_spamo_recipe_matches_the_transformers_reference(tmp_path, small_snapshots, with_256):
    clip, mae = small_snapshots
    root = write_phoenix(tmp_path / "data", {"v1": video(0, 20)}, with_256=with_256)
    sp, mo, fx = slt_features(root, clip, mae)
    folder = "fullFrame-256x256px" if with_256 else "fullFrame-210x260px"
    pngs = frame_paths(root, "v1", folder)
    squash = None if with_256 else 256
    ref_sp, ref_mo = reference_spatial(clip, pngs, squash), reference_motion(mae, pngs, squash)
    assert sp.shape == ref_sp.shape == (20, 128) and mo.shape == ref_mo.shape == (1, 64)
    assert cosines(sp, ref_sp).min() >= 0.99999 and cosines(mo, ref_mo).min() >= 0.99999
    # Controls: the recipe's choices are visible in the numbers, so the test can fail.
    crop = reference_spatial(clip, frame_paths(root, "v1", "fullFrame-210x260px"), None)  # centre crop, no squash
    assert cosines(sp, crop).min() < 0.999
    assert fx.recipe.squash == 256


@pytest.fixture(scope="module")
def scrambled_snapshots(tmp_path_factory):
    """The small CLIP (as a CLIPModel snapshot) and VideoMAE (VideoMAEForPreTraining) with `scramble`d weights."""
    d = tmp_path_factory.mktemp("scrambled")
    clip = save_clip_snapshot(scramble(random_clip(64, 3, 4, 128, 16, 64), 11), d / "clip", full_clip=True)
    mae = save_videomae_snapshot(scramble(random_videomae(64, 2, 4, 128, 64), 12), d / "mae")
    return clip, mae


def test_spamo_recipe_tells_token_resampler_and_squash_apart(tmp_path, scrambled_snapshots):
    """The default run's discriminating check: 24 PHOENIX frames (2 VideoMAE clips), weights away from the
    init; slt-pipe matches the reference and every one-choice-wrong control is clearly below THRESHOLD."""
    clip, mae = scrambled_snapshots
    root = write_phoenix(tmp_path / "data", {"v1": video(0, 24)})
    check_spamo_recipe(root, clip, mae)


def test_unsquashed_frames_follow_the_processors_resize_and_centre_crop(tmp_path, small_snapshots):
    """extract.squash=none (other datasets): the 210x260 frame is resized on its shortest side with the
    long side truncated (64 x 79) and centre-cropped, exactly as the image processors do."""
    clip, mae = small_snapshots
    root = write_phoenix(tmp_path / "data", {"v1": video(2, 17)})
    sp, mo, fx = slt_features(root, clip, mae, squash="none")
    pngs = frame_paths(root, "v1", "fullFrame-210x260px")
    assert fx.recipe.squash is None
    assert cosines(sp, reference_spatial(clip, pngs)).min() >= 0.99999
    assert cosines(mo, reference_motion(mae, pngs)).min() >= 0.99999


def test_manifest_identity_records_format_hashes_and_recipe(tmp_path, small_snapshots):
    clip, mae = small_snapshots
    cfg = build_config({"profile": "paper"}, {"extract": {"clip": {"weights": str(clip), "arch": "snapshot"},
                                                          "videomae": {"weights": str(mae), "arch": "snapshot"}}})
    ident = model_identity(stage_config(cfg, "phoenix"))
    spatial, motion = ident["streams"]
    assert (spatial["name"], spatial["kind"], motion["name"], motion["kind"]) == ("clip", "frame", "videomae", "clip")
    assert spatial["format"] == "transformers" and spatial["ignored_by_name"]["text tower"] > 0
    assert spatial["weights"][0]["file"] == "model.safetensors"
    assert len(spatial["weights"][0]["sha256"]) == 64
    assert motion["ignored_by_name"]["pre-training decoder"] > 0
    assert ident["recipe"]["squash"].startswith("256x256") and ident["recipe"]["videomae"]["resample"] == "bilinear"
    assert ident["recipe"]["clip"]["source"].endswith("preprocessor_config.json")
    assert "before post_layernorm" in spatial["token"]
    assert model_identity(stage_config(cfg, "how2sign"))["recipe"]["squash"] == "none"


def test_partial_snapshot_fails_extract_with_one_error_and_no_cache_entry(tmp_path, small_snapshots):
    import shutil

    from safetensors.torch import load_file, save_file

    clip, mae = small_snapshots
    bad = tmp_path / "clip-partial"
    shutil.copytree(clip, bad)
    state = load_file(bad / "model.safetensors")
    save_file(_drop_one(state, "vision_model.encoder.layers.2.self_attn.k_proj.weight"), bad / "model.safetensors")
    root = write_phoenix(tmp_path / "data", {"v1": video(1, 4)})
    cache = tmp_path / "cache"
    r = subprocess.run(CLI + ["extract", "--dataset", "phoenix", "--root", str(root), "--profile", "paper",
                              "--cache", str(cache), "--split", "test",
                              "--set", f"extract.clip.weights={bad}", "--set", f"extract.videomae.weights={mae}",
                              "--set", "extract.clip.arch=snapshot", "--set", "extract.videomae.arch=snapshot"],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode != 0, r.stdout + r.stderr
    err = r.stderr
    assert "Traceback" not in err
    assert "missing 1 of" in err and "layers.2.self_attn.k_proj.weight" in err and "fix:" in err
    assert not (cache / "features").exists() or not any((cache / "features").iterdir())


# --------------------------------------------------------------------------- full size


@pytest.fixture(scope="module")
def full_size_snapshots(tmp_path_factory):
    """24-layer, full-width CLIPVisionModel (ViT-L/14) and VideoMAE-L with `scramble`d weights, as snapshots."""
    d = tmp_path_factory.mktemp("full")
    clip = save_clip_snapshot(scramble(random_clip(1024, 24, 16, 4096, 14, 224), 21), d / "clip")
    mae = save_videomae_snapshot(scramble(random_videomae(1024, 24, 16, 4096, 224), 22), d / "mae", pretraining=False)
    return clip, mae


@pytest.mark.slow
def test_full_size_vit_l14_and_videomae_l_match_the_reference(tmp_path, full_size_snapshots):
    """The Done-when check at full size (ViT-L/14 + VideoMAE-L, the paper architectures, PHOENIX PNGs):
    slt-pipe matches the transformers reference to THRESHOLD and every one-choice-wrong control (token
    after the final LayerNorm, other resampler, no / other squash) is clearly below it. 24 frames give 2
    VideoMAE clips (16 frames, stride 8); CLIP runs on 2 frames with S2, its controls on 1 (CPU time)."""
    torch.set_num_threads(2)
    clip, mae = full_size_snapshots
    root = write_phoenix(tmp_path / "data", {"v1": video(5, 24)})
    spatial, motion = check_spamo_recipe(root, clip, mae, ("ViT-L/14", "VideoMAE-L"), spatial_frames=2, control_rows=1)
    assert len(spatial) == 5 and len(motion) == 5


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_bf16_on_gpu_stays_close_to_fp32_on_cpu(tmp_path, small_snapshots):
    """`pytest -m gpu` on a CUDA machine: the extractor's bf16 autocast path against fp32 on the CPU."""
    clip, mae = small_snapshots
    root = write_phoenix(tmp_path / "data", {"v1": video(3, 20)})
    cpu_sp, cpu_mo, _ = slt_features(root, clip, mae)
    cfg = build_config({"profile": "paper"}, {"extract": {"clip": {"weights": str(clip), "arch": "snapshot"},
                                                          "videomae": {"weights": str(mae), "arch": "snapshot"}}})
    fx = FeatureExtractor(stage_config(cfg, "phoenix"), "cuda")
    assert fx.precision.autocast == "bfloat16"
    frames = read_frames(open_dataset("phoenix", root, ["test"]).samples["test"][0].frames)
    views = fx.prepare(frames)
    assert cosines(fx.spatial(frames, views), cpu_sp).min() > 0.99
    assert cosines(fx.motion(frames, views), cpu_mo).min() > 0.99

"""The encoder registry, and DINOv2 as the proof that an encoder is one file plus one config entry.

DINOv2 is checked against reference code written with transformers' own classes
(`BitImageProcessor` + `Dinov2Model.pooler_output`) and, for the torch hub format, against
timm's VisionTransformer, whose parameter names are the hub's; and its loader refuses a file
that does not fill the architecture.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from cache.errors import SltPipeError, WeightsError
from extract.config import ExtractConfig
from extract.vision.assets import save_clip_snapshot, save_videomae_snapshot
from extract.vision.encoders import ENCODERS, MotionEncoder, SpatialEncoder
from extract.vision.encoders import dinov2 as dino
from extract.vision.preprocess import IMAGENET_MEAN, IMAGENET_STD
from extract.vision.streams import FeatureExtractor, feature_dims, stream_layout
from helpers import random_clip, random_videomae

TINY_DINO = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, mlp_ratio=4, patch_size=14,
                 image_size=70, layer_norm_eps=1e-6, layerscale_value=1.0, qkv_bias=True, use_swiglu_ffn=False)
"""A tiny Dinov2Config: its 5x5 position grid is interpolated to the 4x4 of a 56-pixel crop, as
dinov2-large's 37x37 grid is to the 16x16 of its 224 crop."""


def _randomise(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Every parameter random (layer scales and norms too), so a wrong mapping shows in the numbers."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in sorted(model.named_parameters()):
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    return model.eval()


def dinov2_snapshot(out: Path, *, classifier: bool = False) -> Path:
    """A transformers snapshot of a tiny Dinov2Model (or, with `classifier`, Dinov2ForImageClassification) + its processor."""
    from transformers import BitImageProcessor, Dinov2Config, Dinov2ForImageClassification, Dinov2Model

    config = Dinov2Config(**TINY_DINO, num_labels=3)
    model = _randomise(Dinov2ForImageClassification(config) if classifier else Dinov2Model(config), seed=4)
    model.save_pretrained(out)
    BitImageProcessor(size={"shortest_edge": 64}, crop_size={"height": 56, "width": 56}, resample=3,
                      image_mean=list(IMAGENET_MEAN), image_std=list(IMAGENET_STD)).save_pretrained(out)
    return out


def frames(seed: int = 0, t: int = 5) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (t, 90, 120, 3), dtype=np.uint8)


def reference_dinov2(snapshot: Path, images: np.ndarray) -> torch.Tensor:
    """transformers' own pipeline: BitImageProcessor, then Dinov2Model's pooler_output."""
    from transformers import AutoImageProcessor, Dinov2Model

    proc = AutoImageProcessor.from_pretrained(snapshot)
    model = Dinov2Model.from_pretrained(snapshot).eval()  # a classifier snapshot loads its `dinov2.` backbone
    with torch.no_grad():
        return model(pixel_values=proc(list(images), return_tensors="pt")["pixel_values"]).pooler_output


def cfg_with(streams: list[str], **settings) -> ExtractConfig:
    cfg = ExtractConfig(streams=streams, squash="none", dtype="float32", spatial_scales=[1])
    for name, values in settings.items():
        setattr(cfg, name, dataclasses.replace(getattr(cfg, name), **values))
    return cfg


# --------------------------------------------------------------------------- the registry


def test_every_encoder_is_registered_with_a_kind_and_its_settings_are_one_config_entry():
    assert {"clip", "videomae", "dinov2", "tiny-vit", "tiny-videomae"} <= set(ENCODERS)
    fields = {f.name: f for f in dataclasses.fields(ExtractConfig)}
    for name, cls in ENCODERS.items():
        assert issubclass(cls, (SpatialEncoder, MotionEncoder)) and cls.kind in ("frame", "clip") and cls.title
        if cls.family == "paper":  # weights come from its own section: extract.<name>.model / weights / arch
            settings = fields[name].default_factory()
            assert {"model", "weights", "arch"} <= {f.name for f in dataclasses.fields(settings)}, name
            assert cls.formats, name


def test_streams_are_checked_before_any_work():
    with pytest.raises(SltPipeError, match="unknown feature encoder 'siglip'") as e:
        feature_dims(ExtractConfig(streams=["siglip", "videomae"]))
    assert "dinov2" in e.value.fix
    with pytest.raises(SltPipeError, match="one frame encoder and one clip encoder"):
        feature_dims(ExtractConfig(streams=["clip", "dinov2"]))
    with pytest.raises(SltPipeError, match="mixes the tiny and the paper"):
        feature_dims(ExtractConfig(streams=["tiny-vit", "videomae"]))


def test_dinov2_without_weights_names_the_cache_and_the_download(tmp_path, monkeypatch):
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_HUB_CACHE", str(tmp_path / "empty-hf"))
    with pytest.raises(WeightsError) as e:
        feature_dims(cfg_with(["dinov2", "videomae"]))
    assert "facebook/dinov2-large" in e.value.problem and "huggingface-cli download facebook/dinov2-large" in e.value.fix


# --------------------------------------------------------------------------- DINOv2: transformers snapshot


@pytest.mark.parametrize("classifier", [False, True], ids=["Dinov2Model", "Dinov2ForImageClassification"])
def test_dinov2_snapshot_matches_transformers_and_extracts_beside_clip(tmp_path, classifier):
    """streams = clip, dinov2, videomae: the spatial features are CLIP's columns then DINOv2's, and
    DINOv2's equal transformers' BitImageProcessor + Dinov2Model.pooler_output."""
    snap = dinov2_snapshot(tmp_path / "dino", classifier=classifier)
    clip = save_clip_snapshot(random_clip(48, 2, 4, 96, 16, 64), tmp_path / "clip")
    mae = save_videomae_snapshot(random_videomae(40, 2, 4, 80, 64), tmp_path / "mae")
    cfg = cfg_with(["clip", "dinov2", "videomae"], clip={"weights": str(clip), "arch": "snapshot"},
                   dinov2={"weights": str(snap), "arch": "snapshot"},
                   videomae={"weights": str(mae), "arch": "snapshot"})
    assert feature_dims(cfg) == (48 + 32, 40)
    layout = stream_layout(cfg)
    assert [(s["name"], s["array"], s["columns"]) for s in layout] == [
        ("clip", "spatial", [0, 48]), ("dinov2", "spatial", [48, 80]), ("videomae", "motion", [0, 40])]
    fx = FeatureExtractor(cfg, "cpu")
    images = frames(t=24)
    sp, mo = fx.spatial(images), fx.motion(images)
    assert sp.shape == (24, 80) and mo.shape == (2, 40)
    want = reference_dinov2(snap, images).numpy()
    np.testing.assert_allclose(sp[:, 48:], want, rtol=1e-4, atol=1e-4)
    assert np.abs(sp[:, :48]).max() > 0 and not np.allclose(sp[:, 48:], 0)  # control: the reference is not trivial
    ident = next(s for s in fx.recipe.encoders if s.name == "dinov2").identity()
    assert ident["format"] == "transformers" and ident["token"].startswith("class token after the final LayerNorm")
    assert ident["ignored_by_name"] == ({"classification head": 2} if classifier else {})
    assert fx.recipe.to_json()["dinov2"]["shortest_edge"] == 64  # the snapshot's own processor


def test_dinov2_s2_doubles_the_width():
    cfg = ExtractConfig(streams=["dinov2", "videomae"])
    cfg.spatial_scales = [1, 2]
    enc = ENCODERS["dinov2"](cfg, random_init=True)
    assert enc.width() == 2 * 1024 and enc.resolved.recipe.crop == (224, 224)


# --------------------------------------------------------------------------- DINOv2: torch hub checkpoint


def hub_vit(seed: int = 5):
    """timm's ViT with DINOv2's layout (layer scale, class token, 14-px patches): its state dict
    uses the torch hub checkpoint's names (blocks.N.attn.qkv, ls1.gamma, norm)."""
    from timm.models.vision_transformer import VisionTransformer

    vit = VisionTransformer(img_size=56, patch_size=14, embed_dim=32, depth=2, num_heads=2, mlp_ratio=4,
                            init_values=1.0, num_classes=0, qkv_bias=True)
    return _randomise(vit, seed)


def save_hub(vit, path: Path, *, mask_token: bool = True) -> Path:
    state = dict(vit.state_dict())
    if mask_token:  # the hub checkpoint has the pre-training mask token; timm's copy does not
        state["mask_token"] = torch.zeros(1, 32)
    torch.save(state, path)
    return path


def test_dinov2_hub_checkpoint_matches_timm(tmp_path, monkeypatch):
    monkeypatch.setitem(dino.ARCHS, "test-T", {**TINY_DINO, "image_size": 56})
    vit = hub_vit()
    path = save_hub(vit, tmp_path / "dinov2_vitt14_pretrain.pth")
    w = dino.locate("unused", str(path))
    assert w.format == "hub"
    config = dino.dinov2_config("test-T", w)
    assert dino.check(w, config) == {}
    model = dino.load(w, config)
    x = torch.randn(3, 3, 56, 56)
    with torch.no_grad():
        got = model(pixel_values=x).pooler_output
        want = vit.forward_features(x)[:, 0]  # class token after timm's final norm
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_dinov2_loader_refuses_partial_or_foreign_files(tmp_path, monkeypatch):
    from safetensors.torch import load_file, save_file

    monkeypatch.setitem(dino.ARCHS, "test-T", {**TINY_DINO, "image_size": 56})
    # hub format: one tensor missing, and timm's copy without the mask token
    vit = hub_vit()
    state = dict(vit.state_dict(), mask_token=torch.zeros(1, 32))
    del state["blocks.1.ls2.gamma"]
    torch.save(state, tmp_path / "partial.pth")
    for path, missing in ((tmp_path / "partial.pth", "encoder.layer.1.layer_scale2.lambda1"),
                          (save_hub(vit, tmp_path / "timm.pth", mask_token=False), "embeddings.mask_token")):
        w = dino.locate("unused", str(path))
        with pytest.raises(WeightsError, match="missing") as e:
            dino.check(w, dino.dinov2_config("test-T", w))
        assert missing in e.value.problem and e.value.path == str(path)
        with pytest.raises(WeightsError):
            dino.load(w, dino.dinov2_config("test-T", w))  # loading refuses it too, not a random tensor
    # transformers format: a snapshot with one layer's key projection removed
    snap = dinov2_snapshot(tmp_path / "dino")
    state = load_file(snap / "model.safetensors")
    del state["encoder.layer.0.attention.attention.key.weight"]
    save_file(state, snap / "model.safetensors")
    cfg = cfg_with(["dinov2", "videomae"], dinov2={"weights": str(snap), "arch": "snapshot"})
    with pytest.raises(WeightsError, match="encoder.layer.0.attention.attention.key.weight") as e:
        ENCODERS["dinov2"](cfg)
    assert e.value.path == str(snap / "model.safetensors") and "extract.dinov2.weights" in e.value.fix
    # not DINOv2 at all
    save_file({"text.weight": torch.zeros(2, 2)}, tmp_path / "other.safetensors")
    with pytest.raises(WeightsError, match="not a DINOv2 checkpoint"):
        dino.locate("unused", str(tmp_path / "other.safetensors"))


def test_a_snapshot_of_another_size_than_the_configured_arch_suggests_arch_snapshot(tmp_path):
    """A small snapshot with the default ViT-L/14 would fail as hundreds of mis-shaped tensors: its
    config.json says what it is, so the error says that and the fix sets arch to 'snapshot'."""
    from extract.vision.encoders.clip import ClipVit

    snap = save_clip_snapshot(random_clip(64, 2, 4, 128, 16, 32), tmp_path / "clip")
    with pytest.raises(WeightsError) as e:
        ClipVit(cfg_with(["clip", "videomae"], clip={"weights": str(snap)}))
    assert e.value.problem == "the snapshot is 2 layers x 64 (its config.json), the configured extract.clip.arch " \
                              "'ViT-L/14' is 24 x 1024"
    assert e.value.fix.startswith("--set extract.clip.arch=snapshot")
    assert ClipVit(cfg_with(["clip", "videomae"], clip={"weights": str(snap), "arch": "snapshot"})).width() == 64


def test_a_file_of_another_encoder_names_that_encoder_and_no_arch(tmp_path):
    """VideoMAE pointed at CLIP's snapshot, CLIP at VideoMAE's: which encoder the file is, not an `arch` to try."""
    from extract.vision.encoders.clip import ClipVit
    from extract.vision.encoders.videomae import VideoMAE

    clip = save_clip_snapshot(random_clip(64, 1, 4, 128, 16, 32), tmp_path / "clip")
    mae = save_videomae_snapshot(random_videomae(64, 1, 4, 128, 32), tmp_path / "mae")
    with pytest.raises(WeightsError) as e:
        VideoMAE(cfg_with(["clip", "videomae"], videomae={"weights": str(clip), "arch": "snapshot"}))
    assert "a CLIP checkpoint, not VideoMAE's" in e.value.problem and ".arch" not in e.value.fix
    with pytest.raises(WeightsError) as e:
        ClipVit(cfg_with(["clip", "videomae"], clip={"weights": str(mae), "arch": "snapshot"}))
    assert "it looks like a VideoMAE checkpoint" in e.value.problem and ".arch" not in e.value.fix


def test_the_weights_every_node_must_see_are_the_files_resolved_here(tmp_path):
    """On a cluster, extract asks every node for the dataset, the cache and these (ray_session.check_shared_paths):
    a node that read its own hub cache would compute other features."""
    from extract.vision.streams import weight_paths

    clip = save_clip_snapshot(random_clip(64, 1, 4, 128, 16, 32), tmp_path / "clip")
    mae = save_videomae_snapshot(random_videomae(64, 1, 4, 128, 32), tmp_path / "mae")
    cfg = cfg_with(["clip", "videomae"], clip={"weights": str(clip), "arch": "snapshot"},
                   videomae={"weights": str(mae), "arch": "snapshot"})
    paths = weight_paths(cfg)
    assert set(paths) == {"clip weights", "videomae weights"}
    assert paths["clip weights"].parent == clip and paths["videomae weights"].parent == mae
    assert weight_paths(ExtractConfig(streams=["tiny-vit", "tiny-videomae"])) == {}  # built in memory: no files

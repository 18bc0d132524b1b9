"""DINOv3, SigLIP 2 and V-JEPA 2: each equals transformers' own classes, and refuses what does not fill it.

Each encoder is run through slt-pipe's loader and preprocessing (`FeatureExtractor`) on a tiny
random-init snapshot saved as the real repo ships it (`extract.vision.tiny_snapshots`), and
compared with reference code written with transformers' classes directly (the processor, then
the model's output the encoder documents as its feature). DINOv3's and V-JEPA 2's processors
resize with torchvision, slt-pipe with PIL: the exact comparison uses frames already at the
processor's size, and a second one bounds the difference a real resize makes.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from cache.errors import WeightsError
from extract.config import ExtractConfig
from extract.vision.encoders import ENCODERS
from extract.vision.streams import (
    FeatureExtractor,
    clip_index,
    feature_dims,
    model_identity,
    stream_classes,
    stream_layout,
)
from extract.vision.tiny_snapshots import (
    CLIP_FRAMES,
    IMAGE,
    save_dinov3_snapshot,
    save_siglip2_snapshot,
    save_vjepa2_snapshot,
)

NEW = ("dinov3", "siglip2", "vjepa2")


@pytest.fixture(scope="module")
def snaps(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("new-encoders")
    return {"dinov3": save_dinov3_snapshot(root / "dinov3"), "siglip2": save_siglip2_snapshot(root / "siglip2"),
            "vjepa2": save_vjepa2_snapshot(root / "vjepa2")}


def cfg_for(streams: list[str], snaps: dict[str, Path], **paths: Path) -> ExtractConfig:
    cfg = ExtractConfig(streams=streams, squash="none", dtype="float32", spatial_scales=[1], clip_len=CLIP_FRAMES,
                        clip_stride=2)
    for name in NEW:
        where = paths.get(name, snaps[name])
        setattr(cfg, name, dataclasses.replace(getattr(cfg, name), weights=str(where), arch="snapshot"))
    return cfg


@pytest.fixture(scope="module")
def extractor(snaps) -> FeatureExtractor:
    return FeatureExtractor(cfg_for(["dinov3", "siglip2", "vjepa2"], snaps), "cpu")


def frames(side: int, t: int = 8, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (t, side, side, 3), dtype=np.uint8)


# --------------------------------------------------------------------------- references (transformers only)


def ref_dinov3(snap: Path, images: np.ndarray) -> torch.Tensor:
    from transformers import AutoImageProcessor, DINOv3ViTModel

    pixels = AutoImageProcessor.from_pretrained(snap)(list(images), return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        return DINOv3ViTModel.from_pretrained(snap).eval()(pixel_values=pixels).pooler_output


def ref_siglip2(snap: Path, images: np.ndarray) -> torch.Tensor:
    from transformers import AutoImageProcessor, SiglipModel

    pixels = AutoImageProcessor.from_pretrained(snap)(list(images), return_tensors="pt")["pixel_values"]
    with torch.no_grad():  # SiglipModel's own image path, text tower and all loaded
        return SiglipModel.from_pretrained(snap).eval().vision_model(pixel_values=pixels).pooler_output


def ref_vjepa2(snap: Path, images: np.ndarray, clips: np.ndarray) -> torch.Tensor:
    from transformers import AutoVideoProcessor, VJEPA2Model

    proc = AutoVideoProcessor.from_pretrained(snap)
    model = VJEPA2Model.from_pretrained(snap).eval()
    videos = proc([images[c] for c in clips], return_tensors="pt")["pixel_values_videos"]
    with torch.no_grad():
        return model.get_vision_features(videos).mean(1)


# --------------------------------------------------------------------------- equivalence


def test_the_three_encoders_equal_transformers_side_by_side(snaps, extractor):
    """streams = dinov3, siglip2, vjepa2: DINOv3's columns, then SigLIP 2's, then V-JEPA 2's clips,
    each equal to transformers' processor + model on frames at the processors' sizes."""
    cfg = extractor.cfg
    assert feature_dims(cfg) == (64, 32)
    assert [(s["name"], s["columns"]) for s in stream_layout(cfg)] == [
        ("dinov3", [0, 32]), ("siglip2", [32, 64]), ("vjepa2", [0, 32])]
    images = frames(IMAGE)
    sp, mo = extractor.spatial(images), extractor.motion(images)
    np.testing.assert_allclose(sp[:, :32], ref_dinov3(snaps["dinov3"], images).numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(sp[:, 32:], ref_siglip2(snaps["siglip2"], images).numpy(), rtol=1e-4, atol=1e-4)
    clips = clip_index(len(images), cfg.clip_len, cfg.clip_stride)
    want = ref_vjepa2(snaps["vjepa2"], frames(36), clips)  # the processor's resize to 36 is then an identity...
    got = extractor.motion(frames(36))
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-4, atol=1e-4)
    assert mo.shape == (len(clips), 32) and np.abs(sp).min(axis=0).max() > 0
    assert not np.allclose(sp[:, :32], sp[:, 32:]) and not np.allclose(sp[0], sp[1])  # control: not trivial


def test_a_real_resize_differs_from_the_torchvision_processors_by_about_a_grey_level(snaps, extractor):
    """DINOv3 and V-JEPA 2 resize with PIL here, with torchvision in transformers: close, not equal."""
    images = frames(80, t=CLIP_FRAMES, seed=3)
    got = extractor.spatial(images)[:, :32]
    want = ref_dinov3(snaps["dinov3"], images).numpy()
    scale = np.abs(want).mean()
    assert np.abs(got - want).mean() < 0.05 * scale  # same features up to the resampler's rounding
    np.testing.assert_allclose(extractor.spatial(images)[:, 32:], ref_siglip2(snaps["siglip2"], images).numpy(),
                               rtol=1e-4, atol=1e-4)  # SiglipImageProcessor resizes with PIL too: exact
    mo = extractor.motion(images)
    want_mo = ref_vjepa2(snaps["vjepa2"], images, clip_index(len(images), CLIP_FRAMES, 2)).numpy()
    assert np.abs(mo - want_mo).mean() < 0.05 * np.abs(want_mo).mean()


def test_identity_recipe_and_token_are_recorded(extractor):
    ident = {s["name"]: s for s in model_identity(extractor.cfg)["streams"]}
    assert ident["dinov3"]["token"].startswith("class token after the final LayerNorm")
    assert ident["siglip2"]["token"].startswith("attention-pooling head") and ident["siglip2"]["ignored_by_name"] == {
        "text tower": 22, "logit scale": 1, "logit bias": 1}
    assert ident["vjepa2"]["pool"] == "mean" and "JEPA predictor" in ident["vjepa2"]["ignored_by_name"]
    recipe = extractor.recipe.to_json()
    assert recipe["dinov3"]["resize"] == recipe["siglip2"]["resize"] == "exact" and "resize" not in recipe["vjepa2"]
    assert recipe["vjepa2"]["shortest_edge"] == 36 and recipe["vjepa2"]["source"].endswith(
        "video_preprocessor_config.json")


def test_random_init_paper_sizes():
    cfg = ExtractConfig(streams=["dinov3", "vjepa2"])  # S2 on: [1, 2]
    assert ENCODERS["dinov3"](cfg, random_init=True).width() == 2 * 1024
    assert ENCODERS["siglip2"](cfg, random_init=True).resolved.recipe.crop == (256, 256)
    v = ENCODERS["vjepa2"](cfg, random_init=True)
    assert v.width() == 1024 and v.resolved.recipe.shortest_edge == 292


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(("name", "tensor"), [("dinov3", "layer.1.mlp.up_proj.weight"),
                                              ("siglip2", "vision_model.head.probe"),
                                              ("vjepa2", "encoder.layer.0.attention.key.weight")])
def test_a_snapshot_missing_one_tensor_is_refused(snaps, tmp_path, name, tensor):
    from safetensors.torch import load_file, save_file

    snap = Path(shutil.copytree(snaps[name], tmp_path / name))
    state = load_file(snap / "model.safetensors")
    del state[tensor]
    save_file(state, snap / "model.safetensors")
    streams = [name, "vjepa2"] if name != "vjepa2" else ["dinov3", "vjepa2"]
    with pytest.raises(WeightsError, match="missing 1 of") as e:
        ENCODERS[name](cfg_for(streams, snaps, **{name: snap}))
    assert tensor.removeprefix("encoder.") in e.value.problem
    assert e.value.path == str(snap / "model.safetensors") and f"extract.{name}.weights" in e.value.fix


def test_a_foreign_snapshot_is_refused_naming_the_encoder_it_looks_like(snaps):
    """DINOv3 pointed at SigLIP's files, SigLIP at DINOv3's, V-JEPA 2 at SigLIP's and DINOv3 at V-JEPA 2's:
    the error says which encoder's checkpoint it is, and the fix does not suggest another `arch`."""
    for name, other, words in (("dinov3", "siglip2", "not a transformers DINOv3 checkpoint: it looks like a SigLIP 2"),
                               ("siglip2", "dinov3", "not a SigLIP vision checkpoint: it looks like a DINOv3"),
                               ("vjepa2", "siglip2", "not a V-JEPA 2 checkpoint: it looks like a SigLIP 2"),
                               ("dinov3", "vjepa2", "it looks like a V-JEPA 2 checkpoint")):
        with pytest.raises(WeightsError, match=words) as e:
            ENCODERS[name](cfg_for(["dinov3", "vjepa2"], snaps, **{name: snaps[other]}))
        assert f"--set extract.{name}.weights=PATH" in e.value.fix and ".arch" not in e.value.fix, e.value.fix


@pytest.mark.parametrize(("name", "repo"), [("dinov3", "facebook/dinov3-vitl16-pretrain-lvd1689m"),
                                            ("siglip2", "google/siglip2-large-patch16-256"),
                                            ("vjepa2", "facebook/vjepa2-vitl-fpc64-256")])
def test_absent_weights_name_the_cache_and_the_download(tmp_path, monkeypatch, name, repo):
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_HUB_CACHE", str(tmp_path / "empty-hf"))
    with pytest.raises(WeightsError) as e:
        ENCODERS[name](ExtractConfig(streams=[name, "vjepa2"] if name != "vjepa2" else ["clip", name]))
    assert repo in e.value.problem and f"huggingface-cli download {repo}" in e.value.fix
    assert e.value.path == str(tmp_path / "empty-hf") and f"extract.{name}.weights" in e.value.fix


def test_doctor_reports_each_new_encoders_weights(snaps, tmp_path, monkeypatch):
    import huggingface_hub.constants as c

    from pipeline.config import build_config
    from pipeline.doctor import FAIL, OK, Context, check_feature_models

    sets = {n: {"weights": str(snaps[n]), "arch": "snapshot"} for n in NEW}
    cfg = build_config({"profile": "paper"}, {"extract": {"streams": ["dinov3", "siglip2", "vjepa2"], **sets}})
    rows = check_feature_models(cfg, Context())
    assert [r.check for r in rows] == ["spatial weights (DINOv3)", "spatial weights (SigLIP 2)",
                                       "motion weights (V-JEPA 2)"]
    assert all(r.status == OK and "transformers format" in r.detail and "sha256 model.safetensors" in r.detail
               for r in rows), [r.detail for r in rows]
    assert "text tower (22)" in rows[1].detail and rows[2].data["encoder"] == "vjepa2"
    monkeypatch.setattr(c, "HF_HUB_CACHE", str(tmp_path / "empty-hf"))
    cfg = build_config({"profile": "paper"}, {"extract": {"streams": ["siglip2", "vjepa2"]}})
    rows = check_feature_models(cfg, Context())
    assert [r.status for r in rows] == [FAIL, FAIL]
    assert "huggingface-cli download google/siglip2-large-patch16-256" in rows[0].fix


def test_new_settings_leave_other_configs_keys_alone():
    """What a features key records of the encoders is the identity of those in extract.streams only."""
    ident = model_identity(ExtractConfig(streams=["dinov2", "videomae"]), random_init=True)
    text = repr(ident)
    assert all(n not in text for n in NEW) and [s["name"] for s in ident["streams"]] == ["dinov2", "videomae"]
    assert "resize" not in ident["recipe"]["dinov2"]  # the recipe of an earlier encoder keeps its fields


# --------------------------------------------------------------------------- the encoder grid


def test_the_encoder_grid_compares_stream_sets_each_one_features_entry():
    """pipeline/grids/encoders.toml: every variant a valid stream set of its own; the seeds of a
    variant differ in train.seed only, so they read the same features entries."""
    from pipeline.ablate_stage import expand_seeds, grid_options, grid_path, read_grid
    from pipeline.config import build_config, to_dict

    grid = grid_path(Path("encoders"))
    opts = grid_options(grid)
    trials = read_grid(grid, build_config({"profile": "paper"}))
    streams = {t.name: tuple(t.cfg.extract.streams) for t in trials}
    assert opts.baseline == "clip+videomae" == trials[0].name and opts.seeds == 3
    assert set(streams) == {"+".join(s) for s in streams.values()}  # each variant is named by its streams
    assert len(set(streams.values())) == len(streams) == 6
    assert {e for s in streams.values() for e in s} == {"clip", "dinov2", "dinov3", "siglip2", "videomae", "vjepa2"}
    for t in trials:
        assert [c.kind for c in stream_classes(t.cfg.extract)] == ["frame", "clip"]
    seeds = expand_seeds(trials[:1], 3)
    data = [{k: v for k, v in to_dict(t.cfg).items() if k != "train"} for t in seeds]
    assert data[0] == data[1] == data[2] and [t.cfg.train.seed for t in seeds] == [0, 1, 2]


@pytest.mark.slow
def test_the_encoder_grid_runs_on_the_toy_extracting_before_and_only_reading_in_the_trials(tmp_path):
    """bench/encoder_grid.py end to end on a 24-video toy (about 2 minutes on 2 cores)."""
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, "-m", "bench.encoder_grid", "--dir", str(tmp_path), "--videos", "24",
                           "--steps", "10", "--seeds", "1"], capture_output=True, text=True, cwd=repo, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert "18 features entries = 6 stream sets x 3 splits" in out
    line = next(line for line in out.splitlines() if line.startswith("stream computations: "))
    assert line.startswith("stream computations: 18 = 6 encoders x 3 splits (")  # each encoder once per split
    assert all(f"{e} 3" in line for e in ("clip", "dinov2", "dinov3", "siglip2", "videomae", "vjepa2")), line
    assert out.count("reused") == 6 and "NOT FOUND" not in out
    assert "cache entries created while the 6 trials ran: none" in out
    assert "dinov3+vjepa2" in out and "siglip2+videomae" in out  # the summary table's rows

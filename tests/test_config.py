import pytest

from cache.errors import SltPipeError
from extract.config import ExtractConfig
from pipeline.config import build_config, field_docs, load_toml, parse_override
from pipeline.project import resolve_config
from pipeline.toml_writer import to_toml
from train.config import TrainConfig


def test_toml_round_trip(tmp_path):
    cfg = build_config({"profile": "tiny"}, parse_override("train.lr=0.005"), parse_override("dataset.splits=train,dev"))
    f = tmp_path / "c.toml"
    f.write_text(to_toml(cfg))
    again = build_config(load_toml(f))
    assert again == cfg
    assert again.train.lr == 0.005
    assert again.dataset.splits == ["train", "dev"]


def test_profiles_differ_and_layers_override():
    tiny, paper = build_config({"profile": "tiny"}), build_config({"profile": "paper"})
    assert tiny.extract.streams == ["tiny-vit", "tiny-videomae"]
    assert paper.extract.streams == ["clip", "videomae"] and paper.extract.clip.model == "openai/clip-vit-large-patch14"
    assert paper.embed.sonar_encoder == "text_sonar_basic_encoder"
    # a later layer beats the profile
    cfg = build_config({"profile": "tiny"}, {"extract": {"clip": {"model": "my-vit"}}})
    assert cfg.extract.clip.model == "my-vit" and cfg.extract.clip.arch == "ViT-L/14"  # the rest of the table kept


def test_the_old_flat_encoder_fields_name_their_new_place():
    with pytest.raises(SltPipeError, match="extract.spatial_weights was renamed") as e:
        build_config({"extract": {"spatial_weights": "/models/clip"}})
    assert e.value.fix == "write extract.clip.weights instead"
    with pytest.raises(SltPipeError, match="extract.motion_model was renamed") as e:
        build_config({"extract": {"motion_model": "MCG-NJU/videomae-base"}})
    assert "extract.videomae.model" in e.value.fix


def test_encoder_sections_round_trip_through_toml(tmp_path):
    cfg = build_config({"profile": "paper"}, {"extract": {"streams": ["dinov2", "videomae"],
                                                          "dinov2": {"weights": "/models/dinov2"}}})
    text = to_toml(cfg)
    assert '[extract.dinov2]\nmodel = "facebook/dinov2-large"\nweights = "/models/dinov2"' in text
    (tmp_path / "c.toml").write_text(text)
    assert build_config(load_toml(tmp_path / "c.toml")) == cfg


def test_unknown_field_and_bad_values_are_clear():
    with pytest.raises(SltPipeError, match="did you mean train.lr"):
        build_config({"train": {"lrr": 1}})
    with pytest.raises(SltPipeError, match="profile"):
        build_config({"profile": "huge"})
    with pytest.raises(SltPipeError, match="train.steps must be an integer, got .many."):
        build_config({"train": {"steps": "many"}})
    with pytest.raises(SltPipeError, match="section.field=value"):
        parse_override("lr=3")


def test_project_file_then_flags(tmp_path, monkeypatch):
    (tmp_path / "slt-pipe.toml").write_text('profile = "paper"\n[dataset]\nname = "phoenix"\nroot = "data/phoenix"\n')
    monkeypatch.chdir(tmp_path)
    cfg = resolve_config()
    assert cfg.profile == "paper" and cfg.dataset.name == "phoenix"
    assert cfg.dataset.root == (tmp_path / "data/phoenix").resolve()  # relative to the file
    cfg = resolve_config(flags={"dataset.name": "toy", "profile": None}, sets=["train.steps=7"])
    assert cfg.dataset.name == "toy" and cfg.profile == "paper" and cfg.train.steps == 7


def test_every_field_is_documented():
    for cls in (ExtractConfig, TrainConfig):
        docs = field_docs(cls)
        import dataclasses

        missing = [f.name for f in dataclasses.fields(cls) if f.name not in docs]
        assert not missing, f"{cls.__name__} fields without docstring: {missing}"

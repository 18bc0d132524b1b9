import pytest

from cache.errors import SltPipeError
from pipeline.config import build_config, field_docs, load_toml, parse_override, to_toml
from pipeline.project import resolve_config
from extract.config import ExtractConfig
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
    assert tiny.extract.spatial_model == "tiny-vit"
    assert paper.extract.spatial_model == "openai/clip-vit-large-patch14"
    assert paper.embed.sonar_encoder == "text_sonar_basic_encoder"
    # a later layer beats the profile
    cfg = build_config({"profile": "tiny"}, {"extract": {"spatial_model": "my-vit"}})
    assert cfg.extract.spatial_model == "my-vit"


def test_unknown_field_and_bad_values_are_clear():
    with pytest.raises(SltPipeError, match="did you mean train.lr"):
        build_config({"train": {"lrr": 1}})
    with pytest.raises(SltPipeError, match="profile"):
        build_config({"profile": "huge"})
    with pytest.raises(SltPipeError, match="must be int"):
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

"""One TOML writer (`pipeline.config.to_toml`) for `init`, `config show` and every config file slt-pipe writes.

(a) A project made by `init` with nested --sets (extract.clip.weights and .arch: one sub-table, both
kept) is valid TOML that every command reading it gets the same values from; (b) whatever config
is written reads back as itself (tiny, paper, nested overrides, and seeded random overrides).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cache.errors import SltPipeError
from pipeline.cli import app
from pipeline.config import PROJECT_FILE, build_config, deep_merge, flat_fields, load_toml, parse_overrides
from pipeline.toml_writer import to_toml

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=True)


# --------------------------------------------------------------------------- (a) init -> every reader


@pytest.fixture
def project(tmp_path, monkeypatch) -> tuple[Path, Path]:
    """`slt-pipe init` with two --sets into [extract.clip] and a float in scientific notation; returns
    (project folder, the clip weights path, which has a space, quotes and a non-ASCII letter in it)."""
    folder = tmp_path / "proj"
    folder.mkdir()
    monkeypatch.chdir(folder)
    monkeypatch.setenv("SLT_PIPE_CACHE", str(tmp_path / "cache"))
    weights = tmp_path / 'models dir "ü"' / "clip"
    r = invoke("init", "--dataset", "toy", "--profile", "tiny", "--langs", "deu", "--set", f"extract.clip.weights={weights}",
               "--set", "extract.clip.arch=snapshot", "--set", "train.lr=1e-4")
    assert r.exit_code == 0, r.output
    return folder, weights


def test_init_writes_nested_sets_as_one_valid_sub_table(project):
    folder, weights = project
    text = (folder / PROJECT_FILE).read_text()
    data = tomllib.loads(text)  # the bug: json.dumps wrote clip = {"weights": ...}, which is not TOML
    assert data["extract"] == {"clip": {"weights": str(weights), "arch": "snapshot"}}  # the second --set kept the first
    assert data["train"] == {"lr": 1e-4} and data["embed"] == {"langs": ["deu_Latn"]}
    assert "[extract.clip]" in text and "clip = {" not in text


def test_every_reader_of_the_project_file_gets_its_values(project, tmp_path, monkeypatch):
    folder, weights = project
    from pipeline.project import resolve

    res = resolve()
    assert res.project_file == folder / PROJECT_FILE
    cfg = res.config
    assert (cfg.extract.clip.weights, cfg.extract.clip.arch, cfg.train.lr) == (str(weights), "snapshot", 1e-4)
    assert cfg.embed.langs == ["deu_Latn"] and cfg.profile == "tiny" and cfg.dataset.name == "toy"
    where = res.origins()
    assert all(where[k].startswith("project file") for k in ("extract.clip.weights", "extract.clip.arch", "train.lr"))

    r = invoke("config", "show")
    assert r.exit_code == 0, r.output
    assert build_config(tomllib.loads(r.output)) == cfg  # what config show prints reads back as the same config
    r = invoke("config", "show", "--explain")
    assert r.exit_code == 0, r.output
    assert re.search(rf"^extract\.clip\.weights = {re.escape(json.dumps(str(weights)))}\s+# project file", r.output, re.M)
    assert re.search(r"^extract\.clip\.arch = \"snapshot\"\s+# project file", r.output, re.M)
    assert re.search(r"^train\.lr = 0\.0001\s+# project file", r.output, re.M)
    r = invoke("config", "show", "--explain", "--json")
    assert json.loads(r.output)["extract.clip.weights"] == {"value": str(weights), "from": f"project file {folder / PROJECT_FILE}"}
    # the same file passed with --config from elsewhere
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    r = invoke("config", "show", "--json", "--config", str(folder / PROJECT_FILE))
    assert json.loads(r.output)["extract"]["clip"] == {"model": "openai/clip-vit-large-patch14", "weights": str(weights),
                                                       "arch": "snapshot"}
    monkeypatch.chdir(folder)
    # a stage command reads it too: it gets past the config to its own read-only check of the cache
    r = invoke("cache", "stats", "--cache", str(tmp_path / "cache"))
    assert isinstance(r.exception, SltPipeError) and "not in the cache" in r.exception.problem, r.output


def test_doctor_reads_the_project_file(project, tmp_path):
    """The real CLI in a subprocess, paper profile: the CLIP row names the weights the project file set."""
    folder, weights = project
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "FAIRSEQ2_", "SLT_PIPE_", "RAY_"))}
    for sub in ("hf/hub", "f2-cache", "f2-cards"):
        (tmp_path / sub).mkdir(parents=True)
    env.update(HF_HOME=str(tmp_path / "hf"), HF_HUB_CACHE=str(tmp_path / "hf/hub"), HF_HUB_OFFLINE="1",
               FAIRSEQ2_CACHE_DIR=str(tmp_path / "f2-cache"), FAIRSEQ2_USER_ASSET_DIR=str(tmp_path / "f2-cards"),
               SLT_PIPE_CACHE=str(tmp_path / "cache"), PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-m", "pipeline.cli", "doctor", "--profile", "paper", "--json"], cwd=folder,
                          env=env, capture_output=True, text=True, timeout=300)
    assert "invalid TOML" not in proc.stderr, proc.stderr
    rows = {r["check"]: r for r in json.loads(proc.stdout)["rows"]}
    clip = rows["spatial weights (CLIP)"]
    assert clip["status"] == "FAIL" and str(weights) in clip["detail"]  # looked for where the project file says
    assert clip["data"] == {"model": "openai/clip-vit-large-patch14", "weights": str(weights), "arch": "snapshot"}
    assert rows["dataset toy"]["status"] == "ok"


def test_init_without_nested_sets_writes_what_it_always_wrote(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert invoke("init", "--profile", "tiny", "--set", "train.lr=0.003", "--set", "train.steps=7").exit_code == 0
    from pipeline.project import PROJECT_HEADER

    assert (tmp_path / PROJECT_FILE).read_text() == PROJECT_HEADER + "\n" + (
        'profile = "tiny"\n\n[dataset]\nname = "toy"\n\n[embed]\nlangs = ["deu_Latn", "eng_Latn", "fra_Latn"]\n\n'
        "[train]\nlr = 0.003\nsteps = 7\n")


def test_sets_merge_deeply_and_the_last_wins():
    layer = parse_overrides(["extract.clip.weights=/a", "extract.clip.arch=snapshot", "extract.clip.weights=/b",
                             "train.lr=1e-4"])
    assert layer == {"extract": {"clip": {"weights": "/b", "arch": "snapshot"}}, "train": {"lr": 1e-4}}


# --------------------------------------------------------------------------- (b) round trips


def round_trip(cfg, tmp_path: Path):
    f = tmp_path / "c.toml"
    f.write_text(to_toml(cfg))
    return build_config(load_toml(f))


NESTED = {"extract": {"streams": ["dinov2", "videomae"], "clip": {"weights": "/models/clip", "arch": "snapshot"},
                      "dinov2": {"weights": '/data/ü "quoted" \\ back\tslash 😀'}, "videomae": {"arch": "snapshot"}},
          "train": {"lr": 1e-4, "min_lr": 1e-12, "steps": 3}, "dataset": {"splits": ["dev"]}, "embed": {"references": False}}


@pytest.mark.parametrize("layers", [({"profile": "tiny"},), ({"profile": "paper"},), ({"profile": "paper"}, NESTED),
                                    ({"profile": "tiny"}, NESTED)], ids=["tiny", "paper", "paper-nested", "tiny-nested"])
def test_config_round_trips_through_toml(layers, tmp_path):
    cfg = build_config(*layers)
    assert round_trip(cfg, tmp_path) == cfg
    assert to_toml(round_trip(cfg, tmp_path)) == to_toml(cfg)


def test_a_layer_round_trips_through_toml():
    """What `init` writes: only the given fields, nested tables as [a.b] sections, None dropped."""
    layer = {"profile": "paper", **NESTED, "cache": {"dir": "/data/cache dir", "unset": None}}
    text = to_toml(layer)
    assert tomllib.loads(text) == {**layer, "cache": {"dir": "/data/cache dir"}}
    assert "[extract.clip]" in text and "\n[extract]\n" in text
    only_sub = {"extract": {"clip": {"weights": "/x"}}}  # a table of sub-tables only: no empty header of its own
    assert to_toml(only_sub) == '\n[extract.clip]\nweights = "/x"\n' and tomllib.loads(to_toml(only_sub)) == only_sub


STRINGS = ["plain", 'a "quote"', "back\\slash", "tab\tand\nnewline", "ü é ß", "emoji 😀", "del \x7f ctl \x01", "", "~/x"]
FLOATS = [1e-4, 1e-12, 3e20, 0.1, 2.5, -7.0, 1.0, math.inf]


def nest(dotted: str, value) -> dict:
    out: dict = {}
    node = out
    *parents, leaf = dotted.split(".")
    for p in parents:
        node = node.setdefault(p, {})
    node[leaf] = value
    return out


def random_value(value, rng: random.Random):
    """A random value of `value`'s own type (a string where the field is a string, a path or unset)."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return rng.choice([0, 1, 7, 123456789, -3])
    if isinstance(value, float):
        return rng.choice(FLOATS)
    if isinstance(value, list):
        return [rng.choice(STRINGS[:6]) for _ in range(rng.randint(0, 3))] if all(isinstance(v, str) for v in value) else value
    return rng.choice(STRINGS)


@pytest.mark.parametrize("seed", range(12))
def test_random_overrides_round_trip(seed, tmp_path):
    """A property over random configs: a third of the fields overridden with random values of their type
    (tricky strings, tiny and huge floats, inf), each kept when the config accepts it."""
    rng = random.Random(seed)
    profile = {"profile": rng.choice(["tiny", "paper"])}
    kept: dict = {}
    for dotted, value in flat_fields(build_config(profile)).items():
        if dotted == "profile" or rng.random() > 0.33:
            continue
        one = nest(dotted, random_value(value, rng))
        try:
            build_config(profile, kept, one)
        except SltPipeError:
            continue  # a value this field refuses (a Literal, a number in a path field, ...)
        deep_merge(kept, one)
    cfg = build_config(profile, kept)
    assert kept and round_trip(cfg, tmp_path) == cfg, to_toml(cfg)


def test_fields_of_every_section_are_covered_by_the_round_trips():
    """The nested case really nests: every section and an encoder sub-table appear in its TOML."""
    text = to_toml(build_config({"profile": "paper"}, NESTED))
    for f in dataclasses.fields(build_config()):
        if f.name != "profile":
            assert f"[{f.name}]" in text
    assert "[extract.clip]" in text and 'weights = "/models/clip"' in text

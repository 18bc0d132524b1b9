"""A cached re-run of `extract` and `embed-targets` answers from the manifests alone.

The re-runs go through `python tests/test_noop.py ARGS...` (= `slt-pipe ARGS...`, see the
bottom of this file) in a subprocess in which importing Ray, timm, transformers, fairseq2,
sonar or PyAV fails, and the model constructors, the tiny-SONAR training and frame decoding
raise: a cached run that reached any of them prints FORBIDDEN and fails.

The default test keeps the build to seconds: it publishes the features, tiny-SONAR and
targets entries under the keys the stages compute (`features_key`, `tiny_sonar_key_inputs`,
`targets_key`), manifests and placeholder files without arrays, since a cached run reads no
more than that. The slow test builds them for real first (Ray extraction, tiny-SONAR training).
"""

from __future__ import annotations

import importlib.abc
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from pipeline.config import build_config

REPO = Path(__file__).parents[1]
VIDEOS = 12
QUIET = Console(stderr=True, quiet=True)
FORBIDDEN_IMPORTS = ("ray", "timm", "transformers", "fairseq2", "sonar", "av")
"""Packages a cached run has no reason to import."""
LANGS = "deu_Latn,eng_Latn"


def _args(cache: Path, root: Path) -> list[str]:
    return ["--profile", "tiny", "--dataset", "toy", "--root", str(root), "--cache", str(cache)]


def _embed_args(cache: Path, root: Path) -> list[str]:
    return ["embed-targets", *_args(cache, root), "--langs", LANGS, "--set", "embed.tiny_sonar_steps=3",
            "--set", "embed.device=cpu"]


def _cfg(cache: Path, root: Path):
    return build_config({"profile": "tiny", "dataset": {"name": "toy", "root": str(root)}, "cache": {"dir": str(cache)},
                         "embed": {"langs": LANGS.split(","), "tiny_sonar_steps": 3, "device": "cpu"}})


def _publish_manifests(cfg) -> dict[str, str]:
    """Every entry a cached run looks up, under its real key, with no arrays: what such a run reads.
    Returns split -> features key."""
    from cache.store import Cache
    from pipeline import embed_stage as es
    from pipeline.dataset import configured_dataset
    from pipeline.extract_stage import FEATURES_LAYOUT, features_key

    cache, dataset = Cache(cfg.cache.dir), configured_dataset(cfg, QUIET)
    keys = {}
    for split in cfg.dataset.splits:
        key, inputs = features_key(cfg, dataset, split)
        with cache.begin("features", key, inputs) as pending:
            pending.publish(dataset=dataset.name, split=split, items=len(dataset.samples[split]), failures=[],
                            layout=FEATURES_LAYOUT)
        keys[split] = key
    key, inputs = es.tiny_sonar_key_inputs(cfg, dataset)
    with cache.begin("tiny-sonar", key, inputs) as pending:
        for name in ("encoder.pt", "decoder.pt", "tokenizer.model"):
            (pending.dir / name).write_bytes(b"placeholder: a cached run only hashes it")
        (pending.dir / "config.json").write_text("{}")
        tiny = pending.publish(dataset=dataset.name, items=inputs["items"]).dir
    models = es.text_models(cfg, dataset, tiny)
    for lang in es.target_langs(cfg):
        key, inputs = es.targets_key(cfg, dataset, lang, models)
        with cache.begin("targets", key, inputs) as pending:
            pending.publish(dataset=dataset.name, lang=lang, items=sum(len(dataset.samples[s]) for s in
                                                                       cfg.dataset.splits))
    return keys


@pytest.fixture(scope="module")
def toy12(toy_corpus) -> Path:
    """The VIDEOS-video toy corpus (read only)."""
    return toy_corpus(VIDEOS)


def _rerun(args: list[str], tmp_path: Path) -> str:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "XDG_CACHE_HOME": str(tmp_path / "xdg"),
           "PYTHONPATH": str(REPO)}
    res = subprocess.run([sys.executable, str(Path(__file__).resolve()), *args], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=120)
    said = res.stdout + res.stderr
    assert "FORBIDDEN" not in said, said
    assert res.returncode == 0, said
    return said


def _check_cached(cache: Path, toy12: Path, tmp_path: Path, feature_keys: dict[str, str]) -> None:
    said = _rerun(["extract", *_args(cache, toy12)], tmp_path)
    for split, key in feature_keys.items():
        assert f"cached features toy/{split}: features/{key}" in said, said
    said = _rerun(_embed_args(cache, toy12), tmp_path)
    for lang in LANGS.split(","):
        assert f"cached targets {lang}" in said, said
    assert "built" not in said, said


def test_cached_extract_and_embed_build_no_model_start_no_ray_decode_nothing(toy12, tmp_path):
    cfg = _cfg(tmp_path / "slt-cache", toy12)
    _check_cached(cfg.cache.dir, toy12, tmp_path, _publish_manifests(cfg))


@pytest.mark.slow
def test_cached_rerun_after_a_real_extraction(toy12, tmp_path):
    from pipeline.embed_stage import embed_targets
    from pipeline.extract_stage import extract

    cfg = _cfg(tmp_path / "slt-cache", toy12)
    report = extract(cfg, QUIET)
    assert report.computed == list(cfg.dataset.splits)
    assert not embed_targets(cfg, QUIET).failures
    _check_cached(cfg.cache.dir, toy12, tmp_path, {s: e.key for s, e in report.entries.items()})


def test_manifest_only_commands_import_no_model_library(tmp_path):
    """`--help`, `cache ls` and `config show` start without torch, Ray or transformers."""
    code = ("import sys, runpy; sys.argv = ['slt-pipe'] + sys.argv[1:]\n"
            "try:\n    runpy.run_module('pipeline.cli', run_name='__main__')\nexcept SystemExit:\n    pass\n"
            "print('LOADED', sorted(m for m in ('torch', 'ray', 'transformers', 'timm') if m in sys.modules))")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONPATH": str(REPO), "SLT_PIPE_CACHE": str(tmp_path)}
    for args in (["--help"], ["cache", "ls", "--help"], ["cache", "ls"], ["config", "show", "--help"]):
        res = subprocess.run([sys.executable, "-c", code, *args], cwd=tmp_path, env=env, capture_output=True,
                             text=True, timeout=60)
        assert "LOADED []" in res.stdout, (args, res.stdout, res.stderr)


def test_weight_files_are_hashed_once_per_machine_and_again_when_they_change(tmp_path, monkeypatch):
    import cache.keys as keys
    from cache.sonar_models import file_identity

    real_hash = keys.sha256_file
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(keys, "_MEMO_DIR", None)  # a library caller that named no cache: memo in memory only
    monkeypatch.setattr(keys, "_MEMO", {})
    hashed_before: list[Path] = []
    monkeypatch.setattr(keys, "sha256_file", lambda p, **k: hashed_before.append(Path(p)) or "x" * 64)
    keys.sha256_memo(Path(__file__))
    assert hashed_before and not (tmp_path / "xdg").exists() and not (tmp_path / "home").exists()
    keys.use_memo_dir(tmp_path / "cache")  # what the CLI does with --cache
    monkeypatch.setattr(keys, "_MEMO", {})
    hashed: list[Path] = []
    monkeypatch.setattr(keys, "sha256_file", lambda p, **k: hashed.append(Path(p)) or real_hash(p, **k))
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"w" * 1000)
    first = file_identity(weights)
    assert file_identity(weights) == first and len(hashed) == 1
    monkeypatch.setattr(keys, "_MEMO", {})  # a new process: the memo on disk answers
    assert file_identity(weights) == first and len(hashed) == 1
    assert keys.hash_memo_path() == tmp_path / "cache" / keys.HASH_MEMO and keys.hash_memo_path().is_file()
    assert not (tmp_path / "xdg").exists() and not (tmp_path / "home").exists()  # never behind the user's back
    weights.write_bytes(b"v" * 1001)  # rewritten: new size and mtime
    second = file_identity(weights)
    assert len(hashed) == 2 and second["sha256"] == real_hash(weights) != first["sha256"]


def test_weights_are_resolved_once_per_config_until_a_file_changes(tmp_path, monkeypatch):
    import extract.vision.encoders.base as base
    from extract.config import ExtractConfig
    from extract.vision.encoders.clip import ClipVit, ClipWeights

    clip = tmp_path / "clip.safetensors"
    clip.write_bytes(b"c")
    calls: list[int] = []

    def resolve(self):
        calls.append(1)
        return base.Resolved(ClipWeights(clip, "transformers", "test", None), None)

    monkeypatch.setattr(ClipVit, "resolve", resolve)
    monkeypatch.setattr(base, "_MEMO", {})
    cfg = ExtractConfig()
    cfg.clip.weights = str(clip)
    first = ClipVit(cfg).resolved
    assert all(ClipVit(cfg).resolved is first for _ in range(3)) and len(calls) == 1
    other = ExtractConfig()
    other.clip.weights = str(tmp_path)
    ClipVit(other)  # another config
    assert len(calls) == 2
    clip.write_bytes(b"cc")
    assert ClipVit(cfg).resolved is not first and len(calls) == 3


# ------------------------------------------------------------------ the guarded CLI (subprocess side)


class _RefuseImports(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in FORBIDDEN_IMPORTS:
            print(f"FORBIDDEN: a cached run imported {name}", file=sys.stderr)
            raise ImportError(f"FORBIDDEN import of {name} in a cached run")
        return None


def _forbid_calls() -> None:
    import cache.sonar_models
    import extract.text.embed
    import extract.text.nllb
    import extract.text.tiny_sonar
    import extract.vision.decode
    import extract.vision.encoders.clip
    import extract.vision.encoders.tiny
    import extract.vision.encoders.videomae
    import extract.vision.streams

    for module, name in [(extract.vision.encoders.tiny, "tiny_vit"), (extract.vision.encoders.tiny, "tiny_videomae"),
                         (extract.vision.streams, "FeatureExtractor"), (extract.vision.encoders.clip.ClipVit, "resolve"),
                         (extract.vision.encoders.videomae.VideoMAE, "resolve"),
                         (extract.vision.decode, "read_frames"), (extract.text.tiny_sonar, "train_tiny_sonar"),
                         (cache.sonar_models, "load_sonar_encoder"), (cache.sonar_models, "load_sonar_decoder"),
                         (cache.sonar_models, "load_sonar_tokenizer"), (extract.text.nllb, "NllbTranslator"),
                         (extract.text.nllb, "make_tiny_nllb"), (extract.text.embed, "SonarEncoder")]:
        def boom(*a, _what=f"{module.__name__}.{name}", **k):
            print(f"FORBIDDEN: a cached run called {_what}", file=sys.stderr)
            raise SystemExit(f"FORBIDDEN: {_what}")

        setattr(module, name, boom)


if __name__ == "__main__":
    sys.meta_path.insert(0, _RefuseImports())
    _forbid_calls()
    from pipeline.cli import main

    sys.argv[0] = "slt-pipe"
    main()

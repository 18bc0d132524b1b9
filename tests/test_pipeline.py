"""End to end on real caches: extract -> embed-targets -> train -> evaluate -> translate, and ablate.

One small toy corpus and one cache are built once for the module (Ray extraction, tiny
SONAR trained on the toy sentences); every test then reads them, as a user's second run
would. Training runs are a few steps: these tests check wiring and cache reuse, not
learning (that is `slt-pipe demo --control`, reported in the README).
"""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from rich.console import Console

from artefacts import artefact
from cache.errors import CacheError, SltPipeError
from pipeline.config import build_config

VIDEOS = 30
QUIET = Console(stderr=True, quiet=True)


def make_cfg(cache: Path, root: Path, out: Path | None = None, **train: object):
    layer = {
        "profile": "tiny",
        "dataset": {"name": "toy", "root": str(root)},
        "cache": {"dir": str(cache)},
        "embed": {"langs": ["deu_Latn", "eng_Latn", "fra_Latn"]},
        "train": {"steps": 6, "batch_size": 8, "eval_every": 0, "save_every": 3, "hidden_dim": 32,
                  "beam_size": 1, "max_len": 24, "loader_workers": 1, "device": "cpu", **train},
    }
    if out is not None:
        layer["train"]["out"] = str(out)
    return build_config(layer, TINY_SETTINGS)


TINY_SETTINGS: dict = {"embed": {"tiny_sonar_steps": 40}}
"""Keeps the module's one tiny-SONAR training short; quality is tested in test_embed*."""


@pytest.fixture(scope="module")
def toy30(toy_corpus) -> Path:
    """The VIDEOS-video toy corpus (read only)."""
    return toy_corpus(VIDEOS)


@pytest.fixture(scope="module")
def cached(tmp_path_factory, toy30):
    """(cache dir, toy root) with features and targets, built once per machine (an artefact); the
    module's own copy, which its tests add to and rename in."""
    cache = tmp_path_factory.mktemp("c") / "cache"
    shutil.copytree(pipeline_cache(toy30), cache, symlinks=True)
    return cache, toy30


def pipeline_cache(root: Path) -> Path:
    """The artefact behind `cached` (read only): features and targets of the VIDEOS-video toy at `root`."""
    return artefact("pipeline-cache", lambda d: _build_cache(d, root), inputs={"toy": str(root), "settings": TINY_SETTINGS},
                    code=["pipeline.extract_stage", "pipeline.embed_stage"])


def _build_cache(cache: Path, root: Path) -> None:
    from pipeline import embed_stage, extract_stage

    cfg = make_cfg(cache, root)
    assert not extract_stage.extract(cfg, QUIET).failures
    embed_stage.embed_targets(cfg, QUIET)


def test_train_without_caches_names_the_command(tmp_path, toy30):
    from pipeline import train_stage

    cfg = make_cfg(tmp_path / "empty-cache", toy30, tmp_path / "run")
    with pytest.raises(CacheError) as e:
        train_stage.train(cfg, console=QUIET)
    assert "slt-pipe extract" in str(e.value)
    assert not (tmp_path / "run" / "ckpt").exists()


def test_train_evaluate_translate_on_real_caches(cached, tmp_path, monkeypatch):
    from pipeline import train_stage, translate_stage
    from train.model import TrainInputs

    cache, root = cached

    def boom(*a, **k):
        raise AssertionError("train must only read caches")

    import cache.sonar_models as sm
    import extract.vision.streams as em

    loads = sm.load_sonar_encoder
    monkeypatch.setattr(sm, "load_sonar_encoder", boom)
    monkeypatch.setattr(em, "FeatureExtractor", boom)
    cfg = make_cfg(cache, root, tmp_path / "run", normalize_features=True)
    result = train_stage.train(cfg, console=QUIET)
    assert result.step == 6
    monkeypatch.setattr(sm, "load_sonar_encoder", loads)  # evaluation embeds hypotheses (SONAR similarity)
    run = tmp_path / "run"
    from safetensors.torch import load_file

    weights = load_file(str(run / "ckpt/last/weights.safetensors"))
    assert not torch.allclose(weights["visual.spatial_std"], torch.ones_like(weights["visual.spatial_std"]))
    inputs = TrainInputs.from_json(json.loads((run / "inputs.json").read_text()))
    assert set(inputs.features) == {"train", "dev", "test"}
    assert all(Path(p).is_relative_to(cache) for p in [*inputs.features.values(), *inputs.targets.values()])
    assert inputs.tiny_dir is not None and Path(inputs.tiny_dir).is_relative_to(cache)

    from extract.datasets import open_dataset

    toy = open_dataset("toy", root, ["train", "dev", "test"])
    # the eng/fra targets are the toy's own sentences, not translations
    from cache.targets import TargetReader

    for lang in ("eng_Latn", "fra_Latn"):
        with TargetReader(inputs.targets[lang]) as r:
            for split in ("train", "test"):
                assert r.texts(split) == [toy.references[split][lang][i] for i in r.ids(split)]
                assert set(r.sources(split)) == {"reference"}

    logs, table = Console(file=io.StringIO(), width=250), Console(file=io.StringIO(), width=250)
    scores = train_stage.evaluate(run, split="test", console=logs, out=table, checkpoint="last")
    assert set(scores) == {"deu_Latn", "eng_Latn", "fra_Latn"}  # every language with targets
    truth = {lang: toy.references["test"].get(lang, {}) for lang in scores}
    truth["deu_Latn"] = {s.id: s.text for s in toy.samples["test"]}
    from extract.text.embed import SonarEncoder

    sonar = SonarEncoder.from_spec("tiny", inputs.tiny_dir)
    hyps: dict[str, dict[str, str]] = {}
    for lang, s in scores.items():
        assert -1.0 <= s["cosine"] <= 1.0 and s["references"] == "reference"
        lines = Path(s["tsv"]).read_text().splitlines()
        header = lines[0].split("\t")
        assert header == ["id", "ref", "hyp", "sent_bleu", "z_cos", "sonar_sim"] and len(lines) == 1 + s["n"]
        rows = [row.split("\t") for row in lines[1:]]
        assert {r[0]: r[1] for r in rows} == truth[lang]
        hyps[lang] = {r[0]: r[2] for r in rows}
        # the reported BLEU is sacrebleu's corpus BLEU of the TSV's hypotheses against its references,
        # in the toy's declared casing (lower-cased, as PHOENIX's tables) and 13a tokens
        assert s["bleu"] == pytest.approx(toy_bleu([r[2] for r in rows], [r[1] for r in rows]), abs=1e-9), lang
        # SONAR similarity: cos(embedding of the hypothesis, the stored reference embedding), per sample
        with TargetReader(inputs.targets[lang]) as reader:
            ref_emb = dict(zip(reader.ids("test"), np.asarray(reader.embeddings("test"))))
        hyp_emb = sonar.embed([r[2] for r in rows], lang)
        want = [float(np.dot(h, ref_emb[r[0]]) / (np.linalg.norm(h) * np.linalg.norm(ref_emb[r[0]])))
                for h, r in zip(hyp_emb, rows)]
        np.testing.assert_allclose([float(r[5]) for r in rows], want, atol=1e-4)
        assert abs(np.mean([float(r[4]) for r in rows]) - s["cosine"]) < 1e-5  # z against the reference, per sample
        assert s["sonar_encoder"] == "tiny" and abs(s["sonar_similarity"] - np.mean(want)) < 1e-4
    assert "SONAR similarity" in logs.file.getvalue() and "SONAR sim" in table.file.getvalue()
    assert "test (run)" in table.file.getvalue() and "BLEURT skipped" not in table.file.getvalue()
    assert "BLEURT skipped" in logs.file.getvalue() and "test (run)" not in logs.file.getvalue()
    with pytest.raises(SltPipeError, match="cannot write spa_Latn"):  # a tiny SONAR knows only deu, eng, fra
        train_stage.evaluate(run, split="test", langs="spa", console=QUIET)
    with pytest.raises(SltPipeError, match=r"train, dev, test"):
        train_stage.evaluate(run, split="val", console=QUIET)

    sample = toy.samples["test"][0]
    with pytest.raises(SltPipeError, match="cannot write spa_Latn"):  # checked before the extractor is built
        translate_stage.translate_video(run, sample.frames.dir, "spa")
    with pytest.raises(SltPipeError, match="video not found"):
        translate_stage.translate_video(run, tmp_path / "nope.mp4", "eng")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(SltPipeError, match="not a video file"):
        translate_stage.translate_video(run, tmp_path / "notes.txt", "eng")

    monkeypatch.undo()  # translate computes features on the fly: it may build the extractor
    assert not (run / "ckpt" / "best").exists()  # no dev evaluation: translate reads `last`, as evaluate did here
    text = translate_stage.translate_video(run, sample.frames.dir, "eng")
    assert text and text == hyps["eng_Latn"][sample.id]  # the same model, decoding and settings as evaluate


def toy_bleu(hyps: list[str], refs: list[str]) -> float:
    """Corpus BLEU as the toy's tables report it: sacrebleu, 13a tokens, lower-cased (DatasetSpec.bleu_case)."""
    import sacrebleu

    from extract.datasets import DATASETS

    assert DATASETS["toy"].bleu_case == "lc"
    return float(sacrebleu.corpus_bleu(hyps, [refs], tokenize="13a", lowercase=True).score)


def _parse(fix: str) -> None:
    """Each `slt-pipe ...` command of a fix parses with the real CLI (a bad option or name raises)."""
    import shlex

    import typer.main

    from pipeline.cli import app

    group = typer.main.get_command(app)
    for command in fix.split("; then")[0].split(" && "):
        words = shlex.split(command)
        assert words[0] == "slt-pipe", command
        group.commands[words[1]].make_context(words[1], words[2:])


def test_missing_targets_name_the_language_and_a_command_that_works(cached, tmp_path):
    from pipeline import train_stage

    cache, root = cached
    cfg = make_cfg(cache, root, tmp_path / "run")
    cfg.embed.langs = ["eng_Latn", "spa_Latn"]
    with pytest.raises(CacheError, match="no spa_Latn targets") as e:
        train_stage.train(cfg, console=QUIET)
    fix = e.value.fix
    assert "slt-pipe embed-targets --dataset toy --root " in fix and "--langs deu_Latn,eng_Latn,spa_Latn" in fix
    assert f"--cache {cache}" in fix and "--set embed.tiny_sonar_steps=40" in fix  # what keys the entries
    _parse(fix)
    assert not (tmp_path / "run").exists()


def test_evaluate_a_split_the_run_lacks_suggests_commands_that_work(cached, tmp_path):
    """A run trained on train,dev; `evaluate --split test` names the command that makes its test targets,
    and after running it as printed, the same evaluate works."""
    import shlex

    from typer.testing import CliRunner

    from pipeline import train_stage
    from pipeline.cli import app

    cache, root = cached
    cfg = make_cfg(cache, root, tmp_path / "run", steps=2)
    cfg.embed.langs = ["deu_Latn"]
    train_stage.train(cfg, console=QUIET)
    # as if trained with --set dataset.splits=train,dev: its entries hold no test split
    for name, edit in (("pipeline.json", lambda d: d["dataset"].update(splits=["train", "dev"])),
                       ("inputs.json", lambda d: d["features"].pop("test"))):
        recorded = json.loads((tmp_path / "run" / name).read_text())
        edit(recorded)
        (tmp_path / "run" / name).write_text(json.dumps(recorded))
    with pytest.raises(CacheError, match="the cache has no deu_Latn targets for split test") as e:
        train_stage.evaluate(tmp_path / "run", split="test", console=QUIET)
    _parse(e.value.fix)
    command = shlex.split(e.value.fix.split("; then")[0])
    assert command[:2] == ["slt-pipe", "embed-targets"] and "--split" in command
    result = CliRunner().invoke(app, command[1:])
    assert result.exit_code == 0, result.output
    scores = train_stage.evaluate(tmp_path / "run", split="test", console=QUIET, checkpoint="last")
    assert set(scores) == {"deu_Latn"} and scores["deu_Latn"]["references"] == "reference"


def test_zero_shot_french_on_the_toy_with_and_without_references(cached, tmp_path):
    """Trained with German targets only, the run decodes French: scored against the toy's own French
    where the cache has them, cross-lingually against the German references where it has none."""
    from pipeline import train_stage
    from pipeline.dataset import configured_dataset

    cache, root = cached
    cfg = make_cfg(cache, root, tmp_path / "run", steps=2)
    cfg.embed.langs = ["deu_Latn"]
    train_stage.train(cfg, console=QUIET)
    run = tmp_path / "run"
    assert set(json.loads((run / "inputs.json").read_text())["targets"]) == {"deu_Latn"}
    fra = train_stage.evaluate(run, split="test", langs="fra", console=QUIET, checkpoint="last")["fra_Latn"]
    assert fra["kind"] == "references" and fra["references"] == "reference"
    with_refs = [r.split("\t") for r in Path(fra["tsv"]).read_text().splitlines()[1:]]
    assert fra["bleu"] == pytest.approx(toy_bleu([r[2] for r in with_refs], [r[1] for r in with_refs]), abs=1e-9)

    entry = train_stage.find_targets(cfg, configured_dataset(cfg), ["fra_Latn"])[0]["fra_Latn"].parent
    aside = entry.with_name(entry.name + ".aside")
    entry.rename(aside)  # as on PHOENIX: no French text anywhere in the cache
    try:
        logs = Console(file=io.StringIO(), width=250)
        zs = train_stage.evaluate(run, split="test", langs="fra", console=logs, checkpoint="last")["fra_Latn"]
    finally:
        aside.rename(entry)
    assert zs["kind"] == "zero-shot" and zs["references"] == "none" and "bleu" not in zs
    assert zs["xl_against"] == "deu_Latn reference"
    assert "zero-shot, scored cross-lingually against the deu_Latn references" in logs.file.getvalue()
    rows = [r.split("\t") for r in Path(zs["tsv"]).read_text().splitlines()[1:]]
    # cross-lingual SONAR similarity: the mean cosine of each French hypothesis's tiny-SONAR embedding with
    # the stored German reference embedding of its video, recomputed here
    from cache.targets import TargetReader
    from extract.text.embed import SonarEncoder

    inputs = json.loads((run / "inputs.json").read_text())
    with TargetReader(Path(inputs["targets"]["deu_Latn"])) as reader:
        deu = dict(zip(reader.ids("test"), np.asarray(reader.embeddings("test"), np.float64)))
    emb = np.asarray(SonarEncoder.from_spec("tiny", inputs["tiny_dir"]).embed([r[2] for r in rows], "fra_Latn"), np.float64)
    cos = [float(h @ deu[r[0]] / (np.linalg.norm(h) * np.linalg.norm(deu[r[0]]))) for h, r in zip(emb, rows)]
    assert zs["xl_sonar_similarity"] == pytest.approx(float(np.mean(cos)), abs=1e-4)
    assert [r[2] for r in rows] == [r[2] for r in with_refs]  # the same French, scored two ways
    toy = configured_dataset(cfg)
    assert {r[0]: r[1] for r in rows} == {s.id: s.text for s in toy.samples["test"]}  # the German reference


def test_resume_through_the_stage(cached, tmp_path):
    from pipeline import train_stage

    cache, root = cached
    full = train_stage.train(make_cfg(cache, root, tmp_path / "full"), console=QUIET)
    train_stage.train(make_cfg(cache, root, tmp_path / "part", stop_at=3), console=QUIET)
    rest = train_stage.train(make_cfg(cache, root, tmp_path / "part"), resume=True, console=QUIET)
    assert rest.losses[0][0] == 4 and rest.step == 6
    assert dict(rest.losses) == pytest.approx({s: loss for s, loss in full.losses if s > 3}, rel=1e-5)


def test_a_run_directory_holds_one_run(cached, tmp_path):
    """train --out into an existing run: refused, unless --resume or --overwrite (which clears it first)."""
    from pipeline import train_stage

    cache, root = cached
    run = tmp_path / "run"
    train_stage.train(make_cfg(cache, root, run, steps=2), console=QUIET)
    (run / "predictions_test_deu_Latn.tsv").write_text("id\tref\thyp\n")  # as evaluate leaves them
    events = sorted((run / "tb").iterdir())
    with pytest.raises(SltPipeError, match="already holds a slt-pipe run") as e:
        train_stage.train(make_cfg(cache, root, run, steps=2), console=QUIET)
    assert "--resume" in e.value.fix and "--overwrite" in e.value.fix
    train_stage.train(make_cfg(cache, root, run, steps=2), overwrite=True, console=QUIET)
    assert not (run / "predictions_test_deu_Latn.tsv").exists()
    assert not set(events) & set((run / "tb").iterdir())  # only the new run's TensorBoard events
    stranger = tmp_path / "notes"
    stranger.mkdir()
    (stranger / "thesis.tex").write_text("x")
    with pytest.raises(SltPipeError, match="not a slt-pipe run"):
        train_stage.train(make_cfg(cache, root, stranger, steps=2), overwrite=True, console=QUIET)
    assert (stranger / "thesis.tex").exists()


def test_warmup_longer_than_the_run_is_clipped_and_said(cached, tmp_path):
    from rich.console import Console

    from pipeline import train_stage

    cache, root = cached
    console = Console(record=True, width=200)
    cfg = make_cfg(cache, root, tmp_path / "run", steps=3, warmup_steps=100)
    train_stage.train(cfg, console=console)
    assert "warmup_steps = 100 is longer than the run (3 steps); clipped to 3" in console.export_text()
    recorded = json.loads((tmp_path / "run/pipeline.json").read_text())
    assert recorded["train"]["warmup_steps"] == 3


def test_ablation_reads_shared_caches_and_recomputes_nothing(cached, tmp_path):
    """Two seeds per variant; every trial is scored in every language (langs=deu zero-shot in eng and fra,
    here against the toy's own sentences); the summary has mean, std and the paired test's p."""
    from extract.text import embed as et
    from pipeline import ablate_stage

    cache, root = cached
    grid = tmp_path / "grid.toml"
    grid.write_text('[ablate]\nseeds = 2\n[variants]\nfull = []\n"langs=deu" = ["embed.langs=deu"]\n')
    before = ablate_stage.cache_listing(cache)
    calls = dict(et.CALLS)
    rows = ablate_stage.run_ablation(make_cfg(cache, root), grid, tmp_path / "abl", QUIET, parallel=2)
    assert [(r["variant"], r["seed"]) for r in rows] == [("full", 0), ("full", 1), ("langs=deu", 0), ("langs=deu", 1)]
    assert all(set(r["scores"]) == {"deu_Latn", "eng_Latn", "fra_Latn"} for r in rows)
    assert json.loads((tmp_path / "abl/runs/langs_deu/seed1/inputs.json").read_text())["targets"].keys() == {"deu_Latn"}
    assert rows[2]["scores"]["eng_Latn"]["references"] == "reference"  # deu-only training, eng scored against the toy's own
    assert ablate_stage.cache_listing(cache) == before  # no entry created or rebuilt
    assert et.CALLS == calls  # no translation or embedding in the preparation either
    log = json.loads((tmp_path / "abl" / "ablation_log.json").read_text())
    assert log["cache_entries_created_during_trials"] == [] and log["eval_langs"] == ["deu_Latn", "eng_Latn", "fra_Latn"]
    csv_rows = (tmp_path / "abl" / "results.csv").read_text().splitlines()
    assert csv_rows[0].startswith("variant,seed,lang,bleu") and len(csv_rows) == 1 + 4 * 3
    summary = list(csv.DictReader((tmp_path / "abl" / "summary.csv").open()))
    assert len(summary) == 2 * 3 and all(r["seeds"] == "2" for r in summary)
    for r in summary:
        seeds = [x["scores"][r["lang"]]["bleu"] for x in rows if x["variant"] == r["variant"]]
        assert float(r["bleu_mean"]) == pytest.approx(np.mean(seeds), abs=1e-4)
        assert float(r["bleu_std"]) == pytest.approx(np.std(seeds, ddof=1), abs=1e-4)
        assert (r["p_bleu"] == "") == (r["variant"] == "full") and (r["p_bleu"] == "" or 0 <= float(r["p_bleu"]) <= 1)
    assert (tmp_path / "abl" / "results.png").stat().st_size > 0
    md = (tmp_path / "abl" / "summary.md").read_text()
    assert "| langs=deu |" in md and " ± " in md and "(p=" in md and "paired bootstrap" in md
    # a re-run (after a crash, say) trains nothing that finished: same results, every trial reused
    (tmp_path / "abl/runs/full/seed1/trial.json").unlink()  # as if killed before its last write
    again = ablate_stage.run_ablation(make_cfg(cache, root), grid, tmp_path / "abl", QUIET, parallel=2)
    log = json.loads((tmp_path / "abl" / "ablation_log.json").read_text())
    assert log["reused"] == ["full seed 0", "langs=deu seed 0", "langs=deu seed 1"]
    assert [r["scores"] for r in again] == [r["scores"] for r in rows]

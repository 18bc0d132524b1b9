"""Results on stdout, progress and notes on stderr: each command run for real, both streams captured.

One 12-video toy goes through the CLI as a user would pipe it (`slt-pipe extract ... > keys.txt`):
what a command built, its keys, its summary table and its scores are on stdout; progress bars,
notes and log lines on stderr, never mixed in. Also `--help` showing this project's values.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SLT = [sys.executable, "-m", "pipeline.cli"]
TRAIN = ["--set", "train.steps=2", "--set", "train.eval_every=0", "--set", "train.hidden_dim=32",
         "--set", "train.beam_size=1", "--set", "train.max_len=8", "--set", "train.batch_size=4",
         "--set", "train.device=cpu", "--set", "train.loader_workers=1"]


def slt(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    full = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "", **(env or {})}
    return subprocess.run([*SLT, *args], cwd=cwd, env=full, capture_output=True, text=True, timeout=300)


def ok(r: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert r.returncode == 0, f"stdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    return r


@pytest.fixture(scope="module")
def project(tmp_path_factory, toy_corpus) -> Path:
    """A project directory (slt-pipe.toml: tiny profile, the 12-video toy, deu+eng, its own cache)."""
    home = tmp_path_factory.mktemp("project")
    ok(slt("init", "--dataset", "toy", "--root", str(toy_corpus(12)), "--langs", "deu,eng",
           "--cache", str(home / "cache"), "--set", "embed.tiny_sonar_steps=3", "--set", "embed.device=cpu", cwd=home))
    return home


@pytest.fixture(scope="module")
def pipeline_runs(project) -> dict[str, subprocess.CompletedProcess]:
    """Every stage once, in order, through the CLI; extract and embed-targets twice (built, then cached)."""
    runs: dict[str, subprocess.CompletedProcess] = {}
    runs["extract"] = ok(slt("extract", "--workers", "0", cwd=project))
    runs["extract again"] = ok(slt("extract", "--workers", "0", cwd=project))
    runs["embed-targets"] = ok(slt("embed-targets", cwd=project))
    runs["embed-targets again"] = ok(slt("embed-targets", cwd=project))
    runs["train"] = ok(slt("train", "--out", "runs/s", *TRAIN, cwd=project))
    runs["evaluate"] = ok(slt("evaluate", "--run", "runs/s", "--split", "test", "--blaser", "none", cwd=project))
    runs["report"] = ok(slt("report", "--run", "runs/s", cwd=project))
    return runs


def option_help(text: str, option: str) -> str:
    """The help of one option, its wrapped lines joined (click wraps at the terminal's width)."""
    lines = text.splitlines()
    start = next(k for k, line in enumerate(lines) if line.strip().startswith(option + " "))
    block = [lines[start]]
    for line in lines[start + 1:]:
        if not line.startswith("      "):  # the next option (2 spaces) or the end of the section
            break
        block.append(line)
    return " ".join(" ".join(block).split()).replace("- ", "-")  # click's wrapping may split a path at a hyphen


def keys(text: str, kind: str) -> list[str]:
    return re.findall(rf"\b{kind}/[0-9a-f]{{20}}\b", text)


def test_extract_prints_its_entries_on_stdout_and_its_progress_on_stderr(pipeline_runs):
    built, cached = pipeline_runs["extract"], pipeline_runs["extract again"]
    for split in ("train", "dev", "test"):
        assert re.search(rf"^built features toy/{split}: features/[0-9a-f]{{20}} \(\d+ videos; tiny-vit computed, "
                             r"tiny-videomae computed\)$", built.stdout, re.M), built.stdout
        assert re.search(rf"^cached features toy/{split}: features/[0-9a-f]{{20}} \(\d+ videos\)$", cached.stdout, re.M)
    assert len(keys(built.stdout, "features")) == 3 and keys(built.stdout, "features") == keys(cached.stdout, "features")
    assert "extracted " in built.stderr and "frames forwarded" in built.stderr  # the log: stderr only
    assert "extracted " not in built.stdout and "frames" not in built.stdout
    assert "features/" not in cached.stderr  # nothing to log on a cached run: the result is on stdout


def test_embed_targets_prints_entries_and_table_on_stdout_and_its_log_on_stderr(pipeline_runs):
    built, cached = pipeline_runs["embed-targets"], pipeline_runs["embed-targets again"]
    for lang in ("deu_Latn", "eng_Latn"):
        assert re.search(rf"^built targets {lang}: targets/[0-9a-f]{{20}} \(12 sentences\)$", built.stdout, re.M), built.stdout
        assert re.search(rf"^cached targets {lang}: targets/[0-9a-f]{{20}}", cached.stdout, re.M)
    for run in (built, cached):
        assert "embed-targets toy" in run.stdout and "language" in run.stdout  # the summary table
        assert "┃" not in run.stderr and not re.search(r"^(built|cached) targets", run.stderr, re.M)
    assert "tiny SONAR" in built.stderr and "tiny SONAR" not in built.stdout


def test_train_evaluate_and_report_print_results_on_stdout(pipeline_runs, project):
    train, evaluate, report = pipeline_runs["train"], pipeline_runs["evaluate"], pipeline_runs["report"]
    assert re.match(r"trained 2 steps \(\w+\); last loss \S+; best dev BLEU", train.stdout), train.stdout
    assert "trained" not in train.stderr and "train toy:" in train.stderr
    assert "BLEU" in evaluate.stdout and "deu_Latn" in evaluate.stdout  # the score table
    assert "┃" not in evaluate.stderr and "┃" not in train.stderr  # no table on stderr
    assert (project / report.stdout.strip()).resolve() == (project / "runs/s/report.html").resolve()
    assert report.stderr.strip() == ""


@pytest.mark.slow  # loads the run and the extractor (9 s); its error paths run by default (test_newcomer_messages)
def test_translate_prints_only_the_sentence_on_stdout(pipeline_runs, project, toy_corpus):
    test_videos = sorted((toy_corpus(12) / "PHOENIX-2014-T-release-v3/PHOENIX-2014-T/features/fullFrame-210x260px/test").iterdir())
    r = ok(slt("translate", "--run", "runs/s", "--video", str(test_videos[0]), "--lang", "deu", cwd=project))
    lines = r.stdout.splitlines()
    assert len(lines) == 1 and lines[0].strip(), r.stdout
    assert lines[0] not in r.stderr


def test_cheap_commands_keep_stdout_for_results(project):
    shown = ok(slt("config", "show", cwd=project))
    assert 'profile = "tiny"' in shown.stdout and "note" not in shown.stdout
    listed = ok(slt("cache", "ls", cwd=project))
    assert "features" in listed.stdout and listed.stderr.strip() == ""


def test_train_help_shows_this_projects_recipe_and_every_default(project):
    """A tiny-profile project's `train --help` lists the values it trains with (1200 steps, lr 0.001,
    batch 32: preset tiny), each with its layer, and --out's default, never the paper's 50000 / 1e-4 / 16."""
    r = ok(slt("train", "--help", cwd=project, env={"COLUMNS": "250"}))
    assert "train.steps = 1200   from preset tiny (via profile tiny)" in r.stdout
    assert "train.lr = 0.001   from preset tiny" in r.stdout and "train.batch_size = 32   from preset tiny" in r.stdout
    assert "50000" not in r.stdout
    assert "[here: runs/latest, from default]" in option_help(r.stdout, "--out")
    assert (f"[here: deu_Latn,eng_Latn, from project file {project / 'slt-pipe.toml'}]"
            in option_help(r.stdout, "--langs"))
    # options typed before --help count, as they would for the command
    paper = ok(slt("train", "--profile", "paper", "--steps", "9", "--set", "train.lr=0.5", "--help", cwd=project,
                   env={"COLUMNS": "250"}))
    assert "train.steps = 9   from flag --steps" in paper.stdout and "train.lr = 0.5   from --set train.lr=0.5" in paper.stdout
    assert "train.batch_size = 16   from default; source: SpaMo" in paper.stdout


@pytest.mark.parametrize("command", ["extract", "embed-targets", "demo", "ablate", "doctor"])
def test_commands_with_presets_show_this_projects_values(project, command):
    r = ok(slt(command, "--help", cwd=project, env={"COLUMNS": "250"}))
    said = option_help(r.stdout, "--cache")
    assert f"[here: {project / 'cache'}, from project file {project / 'slt-pipe.toml'}]" in said


def test_help_survives_a_broken_project_file_and_says_why(tmp_path):
    (tmp_path / "slt-pipe.toml").write_text('profile = "paper\n')
    r = ok(slt("train", "--help", cwd=tmp_path, env={"COLUMNS": "250"}))
    assert "This project's values are not shown" in r.stdout and "invalid TOML" in r.stdout
    assert "train.steps = 50000   source: SpaMo" in r.stdout  # the paper recipe, labelled as such
    r = ok(slt("extract", "--help", cwd=tmp_path, env={"COLUMNS": "250"}))
    assert "(this project's values are not shown:" in r.stdout

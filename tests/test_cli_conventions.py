"""A command line that cannot mislead: layering, no surprise work, gc, interrupts, conventions."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cache.errors import SltPipeError
from cache.store import Cache, PendingEntry
from helpers import entry_stores, finished_shards, first_shard_written, partial_shards, same_shard_files, store_bytes
from pipeline.cli import app

REPO = Path(__file__).resolve().parents[1]
SLT = [sys.executable, "-m", "pipeline.cli"]
runner = CliRunner()


def slt(*args: str, cwd: Path, env: dict | None = None, **kw) -> subprocess.CompletedProcess:
    """The real CLI in a subprocess: stdout and stderr are pipes, as in a SLURM log."""
    full = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run([*SLT, *args], cwd=cwd, env=full, capture_output=True, text=True, timeout=120, **kw)


def invoke(*args: str, **kw):
    return runner.invoke(app, list(args), catch_exceptions=True, **kw)


# ------------------------------------------------------------------ layering


def test_profile_flag_beats_a_tiny_project_and_explain_names_layers(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SLT_PIPE_CACHE", raising=False)
    r = invoke("init", "--profile", "tiny", "--set", "train.lr=0.003")
    assert r.exit_code == 0, r.output
    text = (tmp_path / "slt-pipe.toml").read_text()
    assert "streams" not in text and "batch_frames" not in text  # no copied defaults
    assert "lr = 0.003" in text

    from pipeline.project import resolve

    res = resolve(flags={"profile": "paper"})
    assert res.config.profile == "paper"
    assert res.config.extract.streams == ["clip", "videomae"]  # not the project's tiny-vit
    assert res.config.train.lr == 0.003  # the user's own pin still wins over the profile
    where = res.origins()
    assert where["profile"] == "flag --profile"
    assert where["train.lr"].startswith("project file")
    assert where["train.preset"] == "profile paper"

    r = invoke("config", "show", "--profile", "paper", "--explain")
    assert r.exit_code == 0, r.output
    assert re.search(r'^extract\.clip\.model = "openai/clip-vit-large-patch14"\s+# default$', r.output, re.M)
    assert re.search(r'^extract\.streams = \["clip", "videomae"\]\s+# default$', r.output, re.M)
    assert re.search(r"^train\.lr = 0\.003\s+# project file", r.output, re.M)


def test_cache_dir_layers_env_then_project_then_flag(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SLT_PIPE_CACHE", str(tmp_path / "env-cache"))
    from pipeline.project import resolve_config

    assert invoke("init").exit_code == 0
    assert resolve_config().cache.dir == tmp_path / "env-cache"  # init saved no cache.dir
    assert invoke("init", "--force", "--cache", str(tmp_path / "proj-cache")).exit_code == 0
    assert resolve_config().cache.dir == tmp_path / "proj-cache"
    assert resolve_config(flags={"cache.dir": tmp_path / "flag-cache"}).cache.dir == tmp_path / "flag-cache"


def test_an_old_full_project_file_is_read_with_a_note(tmp_path, monkeypatch):
    from pipeline.config import build_config
    from pipeline.project import resolve
    from pipeline.toml_writer import to_toml

    monkeypatch.chdir(tmp_path)
    (tmp_path / "slt-pipe.toml").write_text(to_toml(build_config({"profile": "tiny"})))  # what old init wrote
    res = resolve(flags={"profile": "paper"})
    assert res.config.extract.streams == ["tiny-vit", "tiny-videomae"]  # still read as written ...
    (note,) = res.notes  # ... but the user is told, with the fix
    assert "older `slt-pipe init`" in note and re.search(r"pins \d+ copied defaults of profile tiny \(embed\.batch_size, embed\.beam_size, embed\.nllb_model", note)
    assert "slt-pipe init --force --dataset toy --profile tiny" in note
    r = slt("config", "show", "--profile", "paper", cwd=tmp_path)
    assert "pins" in r.stderr and "copied defaults" in r.stderr


def test_init_checks_names_and_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = invoke("init", "--dataset", "phenix")
    assert isinstance(r.exception, SltPipeError) and "did you mean --dataset phoenix" in r.exception.render()
    r = invoke("init", "--dataset", "phoenix", "--root", str(tmp_path / "nonexistent"))
    assert isinstance(r.exception, SltPipeError) and "not a directory" in r.exception.render()
    r = invoke("init", "--set", "train.lrr=1")
    assert isinstance(r.exception, SltPipeError) and "did you mean train.lr" in r.exception.render()
    assert not (tmp_path / "slt-pipe.toml").exists()


# ------------------------------------------------------------------ no surprise work


@pytest.mark.parametrize("command", [["cache", "stats"], ["train"], ["extract"]])
def test_no_project_file_names_init_and_does_nothing(tmp_path, monkeypatch, command):
    monkeypatch.chdir(tmp_path)
    cache = tmp_path / "cache"
    r = invoke(*command, "--cache", str(cache))
    assert isinstance(r.exception, SltPipeError), r.output
    assert "no project file" in r.exception.problem and "slt-pipe init" in (r.exception.fix or "")
    assert not cache.exists()


def test_read_only_stats_never_generates_the_toy(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cache = tmp_path / "cache"
    r = invoke("cache", "stats", "--dataset", "toy", "--cache", str(cache))
    assert isinstance(r.exception, SltPipeError) and "not in the cache" in r.exception.problem
    assert "slt-pipe extract --dataset toy" in r.exception.fix
    assert not (cache / "datasets").exists()


# ------------------------------------------------------------------ gc and locks


def test_gc_keeps_resumable_and_locked_partials(tmp_path):
    cache = Cache(tmp_path)
    resumable = cache.begin("features", "resumable", {})
    (resumable.dir / "shard0").write_bytes(b"x" * 10)
    resumable.release()
    cache.begin("features", "empty", {}).release()
    busy = cache.begin("features", "busy", {})  # a live builder holds this lock
    (busy.dir / "shard0").write_bytes(b"y")
    (tmp_path / "features" / "stale.lock").write_text("")  # left by a kill -9

    r = invoke("cache", "gc", "--cache", str(tmp_path), "--dry-run")
    assert r.exit_code == 0, r.output
    assert re.search(r"keep .*resumable\.partial .*resumable: 1 finished files", r.output)
    assert re.search(r"keep .*busy\.partial .*being built", r.output)
    assert re.search(r"would remove .*empty\.partial", r.output)
    assert re.search(r"would remove .*stale\.lock", r.output)
    assert (tmp_path / "features" / "empty.partial").exists()  # dry run touched nothing

    assert invoke("cache", "gc", "--cache", str(tmp_path)).exit_code == 0
    assert (tmp_path / "features" / "resumable.partial" / "shard0").exists()
    assert not (tmp_path / "features" / "empty.partial").exists()
    assert not (tmp_path / "features" / "stale.lock").exists()
    assert (tmp_path / "features" / "busy.partial").exists()

    assert invoke("cache", "gc", "--cache", str(tmp_path), "--partial").exit_code == 0
    assert not (tmp_path / "features" / "resumable.partial").exists()
    assert (tmp_path / "features" / "busy.partial").exists()  # never while its lock is held
    busy.release()


def test_no_lock_file_is_left_after_success_or_failure(tmp_path):
    cache = Cache(tmp_path)
    with cache.begin("t", "ok", {}) as p:
        (p.dir / "a").write_text("1")
        p.publish()
    with pytest.raises(RuntimeError):
        with cache.begin("t", "bad", {}) as p:
            raise RuntimeError("boom")
    assert sorted(x.name for x in (tmp_path / "t").iterdir()) == ["bad.partial", "ok"]
    # a second builder still cannot overlap a live one after lock files come and go
    held = cache.begin("t", "k", {})
    with pytest.raises(SltPipeError, match="another slt-pipe process"):
        cache.begin("t", "k", {})
    held.release()
    cache.begin("t", "k", {}).release()


# ------------------------------------------------------------------ interrupts


def test_ctrl_c_prints_what_was_kept_and_exits_130(tmp_path, monkeypatch, capsys):
    import pipeline.cli as cli
    from pipeline.cli_options import CACHE_DIRS

    cache = Cache(tmp_path)

    def interrupted() -> None:
        CACHE_DIRS.add(tmp_path)
        p = cache.begin("features", "abc", {})
        (p.dir / "shard0").write_bytes(b"1")
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "app", interrupted)
    with pytest.raises(SystemExit) as e:
        cli.main()
    assert e.value.code == 130
    text = capsys.readouterr().err
    assert "interrupted" in text and "features/abc (1 finished files)" in text and "same command again" in text
    assert len(text.strip().splitlines()) == 1


# ------------------------------------------------------------------ conventions


def test_dash_h_is_help_on_the_root_and_every_subcommand():
    for path in ((), ("train",), ("cache", "gc"), ("config", "show")):
        short, long = invoke(*path, "-h"), invoke(*path, "--help")
        assert short.exit_code == 0 and short.output == long.output and "Usage:" in short.output, path


def test_version_and_plain_boolean_switches():
    r = invoke("--version")
    assert r.exit_code == 0 and re.fullmatch(r"slt-pipe \d+\.\d+\.\d+\n", r.output)
    import typer.main

    def leaves(cmd, path=()):
        if hasattr(cmd, "commands"):  # typer's own click: isinstance(cmd, click.Group) is always False
            for name, sub in cmd.commands.items():
                yield from leaves(sub, path + (name,))
        else:
            yield path

    for path in leaves(typer.main.get_command(app)):
        text = invoke(*path, "--help", env={"COLUMNS": "200"}).output
        assert "<bool>" not in text, path


def test_tables_in_a_pipe_are_not_wrapped_or_cut(tmp_path):
    deep = tmp_path / ("a-rather-long-folder-name-" * 4) / "cache"
    cache = Cache(deep)
    with cache.begin("translations", "0123456789abcdef" * 4, {}) as p:
        (p.dir / "x").write_text("1")
        p.publish(dataset="toy", items=3)
    r = slt("cache", "ls", "--cache", str(deep), cwd=tmp_path, env={"COLUMNS": ""})
    assert r.returncode == 0, r.stderr
    assert "0123456789abcdef" * 4 in r.stdout and "translations" in r.stdout
    assert str(deep) in r.stdout


def test_every_environment_variable_named_is_documented():
    readme = (REPO / "README.md").read_text()
    names = set()
    for package in ("cache", "extract", "pipeline", "train"):
        for path in (REPO / package).rglob("*.py"):
            src = path.read_text()
            names.update(re.findall(r"environ(?:\.get)?\(?\[?\"([A-Z][A-Z0-9_]+)\"", src))
            names.update(re.findall(r"\$([A-Z][A-Z0-9_]{3,})", src))
            names.update(re.findall(r"\b(SLT_PIPE_[A-Z_]+|FAIRSEQ2_[A-Z_]+|HF_[A-Z_]+)=", src))
    names -= {"PYTHONPATH", "PATH", "HOME", "COLUMNS", "OMP_NUM_THREADS", "CUDA_VISIBLE_DEVICES"}
    missing = sorted(n for n in names if f"`{n}`" not in readme)
    assert not missing, f"environment variables named in messages but not in README.md: {missing}"


# ------------------------------------------------------------------ fixes that work when pasted


def suggested_commands(text: str) -> list[list[str]]:
    """`slt-pipe ...` commands quoted in an error or note, as argv lists without `slt-pipe`."""
    import shlex

    return [shlex.split(c)[1:] for c in re.findall(r"`(slt-pipe [^`]+)`", text)]


def parses(argv: list[str]) -> None:
    """The command and every option exist (click's own parser; nothing runs)."""
    import click
    import typer.main

    cmd: click.Command = typer.main.get_command(app)
    ctx = None
    while hasattr(cmd, "commands"):  # typer's own click: isinstance(cmd, click.Group) is always False
        name, argv = argv[0], argv[1:]
        assert name in cmd.commands, f"no command {name!r}"
        cmd = cmd.commands[name]
    cmd.make_context(cmd.name, list(argv), parent=ctx)


def test_suggested_commands_parse_and_the_cheap_ones_work(tmp_path, monkeypatch):
    from pipeline.config import build_config
    from pipeline.project import resolve
    from pipeline.toml_writer import to_toml

    monkeypatch.chdir(tmp_path)
    cache = tmp_path / "cache"
    seen: list[list[str]] = []

    r = invoke("train", "--cache", str(cache))  # no project file
    seen += suggested_commands(r.exception.render())
    r = invoke("cache", "stats", "--dataset", "toy", "--cache", str(cache), "--set", "dataset.toy_videos=12")
    cmds = suggested_commands(r.exception.render())
    assert ["extract", "--dataset", "toy", "--cache", str(cache), "--set", "dataset.toy_videos=12"] in cmds
    seen += cmds
    (tmp_path / "slt-pipe.toml").write_text(to_toml(build_config({"profile": "tiny"})))
    (note,) = resolve().notes
    old_file = suggested_commands(note)
    seen += old_file
    c = Cache(cache)
    with c.begin("t", "k", {}) as p:
        (p.dir / "f").write_text("1")
        entry = p.publish()
    (entry.dir / "f").write_text("2")
    r = slt("cache", "verify", "--cache", str(cache), cwd=tmp_path)
    assert r.returncode == 1
    gc = [c for c in suggested_commands(r.stderr) if c[:2] == ["cache", "gc"]]
    seen += gc
    assert len(seen) >= 5
    for argv in seen:
        parses(argv)
    # the cheap ones, run as pasted
    assert invoke(*gc[0]).exit_code == 0 and not (cache / "t" / "k").exists()
    assert old_file[-1][:2] == ["init", "--force"]
    assert invoke(*old_file[-1]).exit_code == 0 and resolve().notes == []
    # init made a project that names the toy: the read-only stats now looks for it instead of asking for init
    assert "not in the cache" in invoke("cache", "stats", "--cache", str(cache)).exception.problem


def test_error_messages_keep_long_paths_whole_in_a_pipe(tmp_path):
    missing = tmp_path / ("a-rather-long-folder-name-" * 5) / "PHOENIX-2014-T-release-v3"
    r = slt("init", "--dataset", "phoenix", "--root", str(missing), cwd=tmp_path, env={"COLUMNS": ""})
    assert r.returncode == 2
    assert f"error: {missing}: dataset root is not a directory" in r.stderr.splitlines()[0]
    assert "Traceback" not in r.stderr


@pytest.mark.slow
@pytest.mark.parametrize(("signame", "code", "said"), [("SIGINT", 130, "interrupted"),
                                                      ("SIGTERM", 143, "terminated (SIGTERM)")])
def test_ctrl_c_on_a_real_extract_keeps_work_and_resumes(tmp_path, signame, code, said):
    """SIGINT (Ctrl-C) or SIGTERM (what SLURM, Kubernetes and spot reclaim send first) mid-extraction:
    one line, exit 130 or 143 within a grace period, no lock and no process left, and the re-run resumes.
    Its own local Ray, not the session's head: what it tests is that the driver's Ray stops with it."""
    import signal
    import time

    from test_ray_cluster import EXTRACT_40, alive, descendants

    from clean_runs import clean_run

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    args = [*SLT, *EXTRACT_40, "--cache", str(tmp_path / "c")]
    # SIG_DFL: a shell that started pytest in the background hands its children SIGINT ignored
    proc = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 240
    features = tmp_path / "c" / "features"
    while time.time() < deadline:  # wait for the first finished shard
        if first_shard_written(tmp_path / "c"):
            break
        time.sleep(0.5)
    started = descendants(proc.pid)
    sent = time.time()
    proc.send_signal(getattr(signal, signame))
    _, stderr = proc.communicate(timeout=120)
    grace = time.time() - sent
    assert proc.returncode == code, stderr
    assert grace < 30, f"{signame}: {grace:.1f} s to stop"  # the README documents the measured grace period
    last = stderr.strip().splitlines()[-1]
    assert last.startswith(f"{said}: kept the finished work of stream/") and "same command again" in last
    assert "Traceback" not in stderr
    assert not list(features.glob("*.lock"))
    time.sleep(5)  # Ray's two agents are not waited for (see test_ray_cluster's kill -9 test)
    assert any("ModelWorker" in a for a in started.values())
    left = {p: a for p, a in alive(started).items() if "Agent" not in a and "agent" not in a}
    assert not left, f"still running after {signame}: {left}"
    done, before = partial_shards(tmp_path / "c")
    again = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr

    (entry,) = (m.parent for m in features.glob("*/manifest.json"))
    # the shards finished before Ctrl-C are the very files it wrote: same inode, mtime and bytes
    assert same_shard_files(tmp_path / "c", before), "finished shards were rewritten"

    # an uninterrupted run of the same command (one per machine, shared with the kill -9 test): the
    # resumed entry holds its bytes, and how many shards it has
    (clean_entry,) = (m.parent for m in (clean_run(EXTRACT_40) / "features").glob("*/manifest.json"))
    total = len(finished_shards(next(iter(entry_stores(clean_entry).values())) / "features.zarr" / "shards"))
    assert 1 <= len(done) < total, f"interrupted too late to test resuming ({len(done)} of {total} shards)"
    assert f"resuming: {len(done)} of {total} shards already done" in again.stderr
    assert f"{total - len(done)} of {total} shards computed" in again.stderr  # only the others were computed
    assert entry.name == clean_entry.name and not list(features.glob("*.partial"))
    assert store_bytes(entry) == store_bytes(clean_entry)


def test_ablation_grid_base_layers_like_a_config_file(tmp_path, monkeypatch):
    """The grid's [base] sits above the project file and below flags; profiles still mean what they say."""
    from pipeline.ablate_stage import read_grid
    from pipeline.project import resolve

    monkeypatch.chdir(tmp_path)
    assert invoke("init", "--profile", "tiny").exit_code == 0
    grid = tmp_path / "grid.toml"
    grid.write_text('[base]\nprofile = "paper"\n[base.train]\nlr = 0.01\nsteps = 9\n[variants]\nfull = []\nslow = ["train.lr=0.001"]\n')
    res = resolve(sets=["train.steps=3"])
    full, slow = read_grid(grid, res.config, res.layers)
    assert full.cfg.extract.streams == ["clip", "videomae"]  # the grid's profile, not tiny
    assert (full.cfg.train.lr, full.cfg.train.steps) == (0.01, 3)  # --set beats the grid's [base]
    assert slow.cfg.train.lr == 0.001  # the variant beats both


def test_a_split_name_the_release_lacks_names_the_flag_and_the_splits(tmp_path, monkeypatch):
    from extract.datasets.toy import make_toy

    monkeypatch.chdir(tmp_path)
    make_toy(tmp_path / "toy", videos=12, seed=0, frames=False)
    r = invoke("cache", "stats", "--dataset", "toy", "--root", str(tmp_path / "toy"), "--split", "validation",
               "--cache", str(tmp_path / "c"))
    assert isinstance(r.exception, SltPipeError)
    assert "PHOENIX calls that split 'dev'" in r.exception.problem
    assert r.exception.fix == "this release has splits train, dev, test: pass --split train,dev,test (or a subset)"
    # a split the fix names, pasted, gets past the reader (to the next missing thing: no features yet)
    r = invoke("cache", "stats", "--dataset", "toy", "--root", str(tmp_path / "toy"), "--split", "dev",
               "--cache", str(tmp_path / "c"))
    assert isinstance(r.exception, SltPipeError) and r.exception.problem.startswith("no features entry")


def test_a_second_builder_waits_for_the_first_and_reuses_its_entry(tmp_path):
    """Two jobs of one entry cooperate: the second waits for the lock, then reads what the first published."""
    import threading

    cache = Cache(tmp_path)
    first = cache.begin("features", "k", {})
    (first.dir / "data").write_text("done once")
    notes: list[str] = []
    got: list = []
    waiter = threading.Thread(target=lambda: got.append(cache.claim("features", "k", {}, note=notes.append)))
    waiter.start()
    waiter.join(timeout=1.0)
    assert waiter.is_alive() and notes and f"process {os.getpid()}" in notes[0]  # still waiting, and says for whom
    first.publish()
    waiter.join(timeout=10)
    assert got and (got[0].dir / "data").read_text() == "done once"
    assert not list((tmp_path / "features").glob("*.lock"))
    free = cache.claim("features", "absent", {}, note=notes.append)  # nobody building: no wait, the lock is ours
    assert isinstance(free, PendingEntry) and len(notes) == 1
    free.release()


@pytest.mark.slow
def test_two_concurrent_extracts_of_one_entry_both_succeed_and_compute_once(tmp_path):
    import json

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    args = [*SLT, "extract", "--dataset", "toy", "--cache", str(tmp_path / "c"), "--split", "train",
            "--set", "dataset.toy_videos=24"]
    first = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    second = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    outs = [p.communicate(timeout=600) for p in (first, second)]
    assert [first.returncode, second.returncode] == [0, 0], [o[1][-2000:] for o in outs]
    said = outs[0][1] + outs[1][1]
    assert "waiting for slt-pipe process" in said  # one of them waited (for the toy, the features, or both)
    assert said.count("extracted ") == 1  # the features were computed by one process only
    entries = [json.loads(m.read_text()) for m in (tmp_path / "c" / "features").glob("*/manifest.json")]
    assert len(entries) == 1 and not list((tmp_path / "c").rglob("*.lock"))


@pytest.mark.slow
def test_two_concurrent_embed_targets_both_succeed_and_build_once(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    args = [*SLT, "embed-targets", "--dataset", "toy", "--cache", str(tmp_path / "c"), "--langs", "deu,eng",
            "--set", "dataset.toy_videos=24", "--set", "embed.tiny_sonar_steps=40", "--set", "embed.references=false"]
    procs = [subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
    said = outs[0][1] + outs[1][1]
    assert "waiting for slt-pipe process" in said
    assert said.count("tiny SONAR: training") == 1  # trained once, by one of them
    assert len(list((tmp_path / "c" / "targets").glob("*/manifest.json"))) == 2  # deu and eng, once each
    assert not list((tmp_path / "c").rglob("*.lock")) and not list((tmp_path / "c").rglob("*.partial"))


def test_verbose_after_the_subcommand_means_the_same(tmp_path):
    from pipeline.cli import hoist_verbose

    r = slt("cache", "ls", "--verbose", "--cache", str(tmp_path), cwd=tmp_path)
    assert r.returncode == 0 and "No such option" not in r.stderr, r.stderr
    assert hoist_verbose(["extract", "--verbose", "--", "--verbose"]) == ["--verbose", "extract", "--", "--verbose"]
    assert hoist_verbose(["extract", "--split", "dev"]) == ["extract", "--split", "dev"]


def test_a_bench_runs_from_any_directory(tmp_path):
    r = subprocess.run([sys.executable, "-m", "bench.encoder_grid", "--help"], cwd=tmp_path, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0 and "--videos" in r.stdout, r.stderr


def test_help_shows_no_dataset_default_where_the_command_has_none(tmp_path, monkeypatch):
    """extract, embed-targets, import-features and train refuse to guess a dataset: help must not show one."""
    monkeypatch.chdir(tmp_path)  # no project file here
    said = "--dataset <str> Dataset reader: toy, phoenix, csl-daily or how2sign. [here:"
    for cmd in ("extract", "embed-targets", "import-features", "train"):
        text = " ".join(invoke(cmd, "--help").output.split())
        assert f"{said} none chosen: pass --dataset" in text and f"{said} toy" not in text, cmd
    assert f"{said} phoenix, from flag --dataset]" in " ".join(invoke("extract", "--dataset", "phoenix", "--help").output.split())

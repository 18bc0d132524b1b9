"""What a newcomer reads first: bad input to `translate`, a missing toy root, a wrong `--set` type.

Each test asserts the whole message and its fix line, through the real CLI in a subprocess where
the command exists (as a user's terminal or a SLURM log shows it).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cache.errors import DatasetError, SltPipeError
from helpers import write_mp4

REPO = Path(__file__).resolve().parents[1]
SLT = [sys.executable, "-m", "pipeline.cli"]
CLI_USES_TRANSLATE_STAGE = "translate_stage" in (REPO / "pipeline" / "cli.py").read_text()
TRANSLATE = """\
import sys
from cache.errors import SltPipeError
from pipeline.translate_stage import translate_video
try:
    print(translate_video(sys.argv[1], sys.argv[2], sys.argv[3]))
except SltPipeError as e:
    print("error: " + e.render(), file=sys.stderr)
    sys.exit(2)
"""
"""`slt-pipe translate` as the CLI runs it (same error rendering), until the CLI calls translate_stage."""


def run(argv: list[str], cwd: Path) -> tuple[subprocess.CompletedProcess, float]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "SLT_PIPE_CACHE": str(cwd / "cache"), "COLUMNS": ""}
    started = time.perf_counter()
    r = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    return r, time.perf_counter() - started


def slt(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return run([*SLT, *args], cwd)[0]


def translate(run_dir: Path, video: Path, lang: str, cwd: Path) -> tuple[subprocess.CompletedProcess, float]:
    if CLI_USES_TRANSLATE_STAGE:
        return run([*SLT, "translate", "--run", str(run_dir), "--video", str(video), "--lang", lang], cwd)
    return run([sys.executable, "-c", TRANSLATE, str(run_dir), str(video), lang], cwd)


def fake_run(tmp_path: Path) -> Path:
    """A run directory with the files translate looks for (never parsed: every test fails before)."""
    run_dir = tmp_path / "run"
    (run_dir / "ckpt" / "last").mkdir(parents=True)
    for name in ("pipeline.json", "inputs.json", "config.json", "ckpt/last/weights.safetensors"):
        (run_dir / name).write_text("{}")
    return run_dir


# ------------------------------------------------------------------ translate checks its input first


def test_translate_rejects_a_bad_video_before_loading_anything(tmp_path):
    """An empty folder: the error within a second of what `slt-pipe --help` costs (no torch, no run loaded)."""
    help_s = min(run([*SLT, "--help"], tmp_path)[1] for _ in range(3))
    empty = tmp_path / "frames"
    empty.mkdir()
    run_dir = fake_run(tmp_path)
    # the fastest of three, as for --help: a loaded machine (xdist workers beside it) delays single runs
    r, took = min((translate(run_dir, empty, "deu", tmp_path) for _ in range(3)), key=lambda rt: rt[1])
    assert r.returncode == 2, r.stderr
    assert r.stderr.splitlines() == [f"error: {empty}: no PNG/JPEG frames in the folder",
                                     "  fix: point --video at a frame folder or an mp4"]
    assert took < help_s + 1.0, f"{took:.2f} s for a bad path (--help: {help_s:.2f} s)"


def test_translate_checks_video_language_and_run_without_torch(tmp_path):
    from PIL import Image

    from pipeline.translate_stage import translate_video

    good = tmp_path / "good"
    good.mkdir()
    Image.new("RGB", (8, 8)).save(good / "0001.png")
    code = (
        "import sys\n"
        "from cache.errors import SltPipeError\n"
        "from pipeline.translate_stage import translate_video\n"
        "for run, video, lang in [a.split('|') for a in sys.argv[1:]]:\n"
        "    try:\n"
        "        translate_video(run, video, lang)\n"
        "    except SltPipeError as e:\n"
        "        print(e.render())\n"
        "print('torch' in sys.modules)\n"
    )
    damaged = fake_run(tmp_path / "damaged")
    (damaged / "inputs.json").write_text("")  # cut short while it was written
    cases = [f"{tmp_path / 'nope'}|{good}|deu", f"{tmp_path}|{good}|deu", f"{fake_run(tmp_path)}|{good}|xx",
             f"{tmp_path / 'run'}|{tmp_path / 'missing.mp4'}|deu", f"{damaged}|{good}|deu"]
    r, _ = run([sys.executable, "-c", code, *cases], tmp_path)
    assert r.stdout.splitlines() == [
        f"{tmp_path / 'nope'}: run directory not found",
        "  fix: pass the --out directory of a `slt-pipe train` run",
        f"{tmp_path}: not a slt-pipe run directory (no pipeline.json, inputs.json, config.json)",
        "  fix: pass the --out directory of a `slt-pipe train` run",
        "unknown language code 'xx' (no close match)",
        "  fix: use an ISO 639-3 code (deu, eng, fra, spa, zho) or a FLORES-200 code (deu_Latn, zho_Hans)",
        f"{tmp_path / 'missing.mp4'}: video not found",
        "  fix: pass an existing frame folder or mp4",
        f"{damaged / 'inputs.json'}: the run's record is damaged (not a JSON object)",
        "  fix: pass the --out directory of a finished `slt-pipe train` run, or train again",
        "False",  # every check above ran without importing torch
    ], r.stderr
    (tmp_path / "run" / "ckpt" / "last" / "weights.safetensors").unlink()
    with pytest.raises(SltPipeError) as e:
        translate_video(tmp_path / "run", good, "deu")
    assert e.value.render() == (f"{tmp_path / 'run/ckpt/last/weights.safetensors'}: the run has no trained weights\n"
                                "  fix: train first, or pass the --out directory of a finished `slt-pipe train`")


def test_a_text_file_named_mp4_gets_one_error_about_one_video(tmp_path):
    """No libav line ('moov atom not found') on stderr, even with PyAV's log on as torchvision.io leaves it;
    the error names the file, and its fix speaks of this one video, not of a sample to drop."""
    fake = tmp_path / "clip.mp4"
    fake.write_text("these are notes, not a video\n" * 20)
    r, _ = translate(fake_run(tmp_path), fake, "deu", tmp_path)
    assert r.stderr.splitlines() == [
        f"error: {fake}: cannot open video (Invalid data found when processing input)",
        "  fix: re-encode the video (e.g. ffmpeg -i in.mp4 -c:v libx264 out.mp4), or pass another one"]
    code = ("import sys, av\n"
            "av.logging.set_level(av.logging.ERROR)  # what importing torchvision.io does\n"
            "from extract.datasets.base import VideoFile\n"
            "from extract.vision.decode import read_frames\n"
            "try:\n"
            "    read_frames(VideoFile(sys.argv[1]))\n"
            "except Exception as e:\n"
            "    print(e, file=sys.stderr)\n")
    r, _ = run([sys.executable, "-c", code, str(fake)], tmp_path)
    assert "moov atom" not in r.stderr and r.stderr.splitlines() == [
        f"{fake}: cannot open video (Invalid data found when processing input)",
        "  fix: re-download or re-encode the mp4 (e.g. ffmpeg -i in.mp4 -c:v libx264 out.mp4), or drop the sample"]


def test_one_video_fixes_never_say_drop_the_sample(tmp_path):
    """The same checks as for a dataset's sample, worded for the one video `translate` was given."""
    from extract.datasets.base import PngFolder, VideoFile
    from extract.vision.decode import one_video, read_frames

    bad = tmp_path / "frames"
    bad.mkdir()
    (bad / "0001.png").write_text("not a png")
    cut = tmp_path / "cut.mp4"
    write_mp4(cut, frames=24)
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])
    seen = {}
    for name, src in {"image": PngFolder(bad, ("0001.png",)), "video": VideoFile(cut)}.items():
        for mode in ("sample", "one"):
            with pytest.raises(DatasetError) as e:
                if mode == "one":
                    with one_video():
                        read_frames(src)
                else:
                    read_frames(src)
            seen[name, mode] = e.value.fix
    assert seen["image", "sample"] == ("restore the frame from the release (or re-extract the video's frames), "
                                       "or drop the sample")
    assert seen["image", "one"] == "re-extract the video's frames (or replace the unreadable one)"
    assert seen["video", "sample"].endswith(", or drop the sample")
    assert seen["video", "one"] == "re-encode the video (e.g. ffmpeg -i in.mp4 -c:v libx264 out.mp4), or pass another one"


@pytest.mark.skipif(not CLI_USES_TRANSLATE_STAGE, reason="pipeline/cli.py does not call translate_stage yet")
def test_translate_cli_names_the_wrong_suffix(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("x")
    r = slt("translate", "--run", str(fake_run(tmp_path)), "--video", str(notes), cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.splitlines() == [f"error: {notes}: not a video file (.txt)",
                                     "  fix: pass a frame folder or a video (.mp4, .m4v, .mov, .avi, .mkv, .webm)"]


# ------------------------------------------------------------------ the toy's root


def test_a_missing_toy_root_says_how_to_make_the_toy(tmp_path):
    missing = tmp_path / "no such toy"
    quoted = f"'{missing}'"
    r = slt("extract", "--dataset", "toy", "--root", str(missing), cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.splitlines() == [
        f"error: {missing}: dataset root of 'toy' is not a directory",
        f"  fix: generate the toy there with `slt-pipe make-toy --out {quoted}` and pass --root {quoted}, "
        "or drop --root to generate it in the cache"]
    r = slt("init", "--dataset", "toy", "--root", str(missing), cwd=tmp_path)
    assert r.returncode == 2 and not (tmp_path / "slt-pipe.toml").exists()
    assert r.stderr.splitlines() == [
        f"error: {missing}: dataset root is not a directory",
        f"  fix: generate the toy there with `slt-pipe make-toy --out {quoted}` and pass --root {quoted}, "
        "or drop --root to generate it in the cache"]


def test_a_missing_release_root_keeps_its_fix(tmp_path):
    missing = tmp_path / "PHOENIX-2014-T-release-v3"
    r = slt("extract", "--dataset", "phoenix", "--root", str(missing), cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.splitlines() == [f"error: {missing}: dataset root of 'phoenix' is not a directory",
                                     "  fix: pass --root pointing at the unpacked release"]


# ------------------------------------------------------------------ wrong-type --set


@pytest.mark.parametrize(("override", "problem", "fix"), [
    ("train.steps=abc", "train.steps must be an integer, got 'abc'", "--set train.steps=1200"),
    ("train.steps=1.5", "train.steps must be an integer, got 1.5", "--set train.steps=1200"),
    ("train.steps=true", "train.steps must be an integer, got True", "--set train.steps=1200"),
    ("train.lr=fast", "train.lr must be a number, got 'fast'", "--set train.lr=0.001"),
    ("embed.references=maybe", "embed.references must be true or false, got 'maybe'", "--set embed.references=true"),
    ("dataset.name=[1]", "dataset.name must be a string, got [1]", "--set dataset.name=toy"),
    ("train.out=[1]", "train.out must be a path, got [1]", "--set train.out=runs/latest"),
    ("dataset.root=true", "dataset.root must be a path or none, got True", "--set dataset.root=path/to/dir"),
    ("extract.fps=fast", "extract.fps must be a number or none, got 'fast'", "--set extract.fps=1.0"),
    ("train.pooling=avg", "train.pooling must be one of mean, max, got 'avg'", "--set train.pooling=mean"),
    ("extract.spatial_scales=1,x", "extract.spatial_scales must be a list of integers, got '1,x'",
     "--set extract.spatial_scales=1,2"),
    ("extract.streams=7", "extract.streams must be a list of strings, got 7",
     "--set extract.streams=tiny-vit,tiny-videomae"),
])
def test_a_wrong_type_set_has_one_wording_and_an_example(tmp_path, override, problem, fix):
    """The example is the value the field has without the wrong --set (here: the tiny profile's)."""
    r = slt("config", "show", "--set", override, cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.splitlines() == [f"error: {problem}", f"  fix: {fix}"]


def test_the_example_fix_works_and_speaks_where_the_value_came_from(tmp_path):
    r = slt("config", "show", "--set", "train.steps=1200", cwd=tmp_path)
    assert r.returncode == 0 and "\nsteps = 1200\n" in r.stdout
    (tmp_path / "slt-pipe.toml").write_text('[train]\nsteps = "many"\n')
    r = slt("config", "show", cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.splitlines() == ["error: train.steps must be an integer, got 'many'",
                                     f"  fix: in {tmp_path / 'slt-pipe.toml'}, write steps = 1200 in the train section"]
    from pipeline.config import build_config

    with pytest.raises(SltPipeError) as e:  # the paper recipe's own value when no profile is tiny
        build_config({"profile": "paper", "train": {"steps": "many"}})
    assert e.value.render() == "train.steps must be an integer, got 'many'\n  fix: --set train.steps=50000"
    with pytest.raises(SltPipeError) as e:
        build_config({"extract": {"clip": 3}})
    assert e.value.render() == ("extract.clip must be a table, got 3\n"
                                "  fix: set its fields one by one, e.g. --set extract.clip.model=openai/clip-vit-large-patch14")

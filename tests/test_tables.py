"""Tables that fit the terminal and break no word, and no padding in a pipe.

`slt-pipe doctor` is run as a user runs it: on a terminal of 80 and of 120 columns (rich honours
TTY_COMPATIBLE=1 and COLUMNS) and in a pipe. Whatever the layout, every word of every cell (paths,
URLs, keys) stays whole on one line, every fix is one line that pastes, no line of a terminal is wider
than the terminal, and no line of a pipe ends in blanks or is wider than its words need. The console
behind every command (pipeline.console.SltConsole) is checked on its own, and so is `cache ls`.
Also: `cache gc --dry-run` says what it would remove and what it keeps, with the real counts.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from rich.table import Table
from typer.testing import CliRunner

from cache.keys import KEY_CHARS
from cache.store import Cache
from pipeline.cli import app
from pipeline.console import LOG_TABLE_WIDTH, LOG_WIDTH, SltConsole, _Stripped, table_fits

REPO = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "pipeline.cli"]
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
BORDERS = "┏┃┡│├└┗━┳╇┼┴"
TIMEOUT = 180
# fixes a user pastes: each must come out whole, on one line
COMMANDS = ("huggingface-cli download openai/clip-vit-large-patch14", "huggingface-cli download MCG-NJU/videomae-large",
            "--set extract.clip.weights=PATH", "--set extract.videomae.weights=PATH",
            "$FAIRSEQ2_USER_ASSET_DIR/sonar.yaml", "'name: text_sonar_basic_encoder@user'",
            "huggingface-cli download facebook/nllb-200-distilled-600M", "embed.nllb_model=/path/to/snapshot")


def text_of(raw: str) -> list[str]:
    return ANSI.sub("", raw).splitlines()


@pytest.fixture(scope="module")
def machine():
    """A machine with nothing downloaded, under a short /tmp folder (so its paths fit 80 columns whole)."""
    d = Path(tempfile.mkdtemp(prefix="slt-t", dir="/tmp"))
    for sub in ("hf/hub", "f2c", "cards", "cache", "cwd"):
        (d / sub).mkdir(parents=True)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("HF_", "FAIRSEQ2_", "SLT_PIPE_", "RAY_", "COLUMNS", "LINES", "TTY_", "FORCE_COLOR"))}
    env.update(HF_HOME=str(d / "hf"), HF_HUB_CACHE=str(d / "hf/hub"), HF_HUB_OFFLINE="1",
               FAIRSEQ2_CACHE_DIR=str(d / "f2c"), FAIRSEQ2_USER_ASSET_DIR=str(d / "cards"),
               SLT_PIPE_CACHE=str(d / "cache"), PYTHONPATH=str(REPO), NO_COLOR="1")
    yield d, env
    shutil.rmtree(d, ignore_errors=True)


def doctor_on_a_terminal(rows: list[dict], columns: int) -> list[str]:
    """What `slt-pipe doctor --profile paper` prints on a terminal `columns` wide, rendered here from its
    --json rows by the CLI's own table and console (the CLI itself runs in a pipe here, and `cache ls` on a
    terminal)."""
    from pipeline import doctor
    from pipeline.config import build_config

    fields = ("check", "status", "detail", "fix")
    table, under = doctor.table(build_config({"profile": "paper"}), [doctor.Row(**{k: r[k] for k in fields}) for r in rows])
    buf = io.StringIO()
    console = SltConsole(file=buf, force_terminal=True, width=columns, soft_wrap=True, no_color=True)
    console.print(table, highlight=False)
    console.print(under, highlight=False)
    return text_of(buf.getvalue())


def run(machine, *args: str, columns: int | None = None) -> subprocess.CompletedProcess:
    """The CLI on a terminal `columns` wide, or (None) with stdout and stderr piped, as in a log."""
    d, env = machine
    if columns is not None:
        env = {**env, "TTY_COMPATIBLE": "1", "COLUMNS": str(columns)}
    return subprocess.run(CLI + list(args), capture_output=True, text=True, timeout=TIMEOUT, cwd=d / "cwd", env=env)


@pytest.fixture(scope="module")
def doctor_rows(machine) -> list[dict]:
    proc = run(machine, "doctor", "--profile", "paper", "--json")
    assert proc.returncode == 1, proc.stderr
    return json.loads(proc.stdout)["rows"]


def assert_whole(lines: list[str], text: str) -> None:
    """Every word of `text` (a path, a URL, a key) is on one line, unbroken."""
    for word in text.split():
        assert any(word in ln for ln in lines), f"{word!r} is broken across lines"


@pytest.mark.parametrize("columns", [80, 120, None], ids=["80-columns", "120-columns", "pipe"])
def test_doctor_fits_breaks_no_word_and_every_fix_is_one_line(machine, doctor_rows, columns):
    if columns is not None:  # a terminal's layout, without more runs of the checks (cache ls runs on a real one)
        proc = subprocess.CompletedProcess([], 1, "\n".join(doctor_on_a_terminal(doctor_rows, columns)), "")
    else:
        proc = run(machine, "doctor", "--profile", "paper", columns=columns)
    assert proc.returncode == 1, proc.stderr
    lines = text_of(proc.stdout)
    fixes = [ln for ln in lines if ln.startswith("fix (")]
    # each fix: one line of its own, word for word the row's fix (what --json says)
    assert fixes == [f"fix ({r['check']}): {r['fix']}" for r in doctor_rows if r["fix"]]
    for cmd in COMMANDS:
        assert any(cmd in ln for ln in fixes), cmd
    for r in doctor_rows:
        assert_whole(lines, r["check"])
        assert_whole(lines, r["detail"])
    rest = [ln for ln in lines if not ln.startswith("fix (")]
    widest = max(len(w) for r in doctor_rows for w in r["detail"].split())
    if columns is not None:  # a terminal: nothing wider than it (a fix wraps on screen only)
        assert all(len(ln) <= columns for ln in rest), max(rest, key=len)
    else:  # a log: no trailing blanks, no line padded past what its words need
        assert not [ln for ln in proc.stdout.splitlines() if ln != ln.rstrip()]
        assert all(len(ln) <= max(LOG_TABLE_WIDTH, widest + 40) for ln in rest), max(rest, key=len)
    drawn = [ln for ln in rest if ln[:1] and ln[0] in BORDERS]
    if columns == 80:  # too narrow for the detail column's longest URL: a record per check
        assert not drawn
        assert "  status  FAIL" in lines and "spatial weights (CLIP)" in lines
    else:
        assert sum("│ FAIL " in ln for ln in drawn) == sum(r["status"] == "FAIL" for r in doctor_rows)
    assert lines[-1] == f"{sum(r['blocker'] for r in doctor_rows)} blockers"
    assert not proc.stderr.strip() or "┃" not in proc.stderr  # the results are on stdout


def test_doctor_at_110_columns_narrows_the_check_column_to_keep_a_table(machine, doctor_rows):
    """The user's terminal: rich alone would fold the widest column; the check names wrap instead."""
    lines = doctor_on_a_terminal(doctor_rows, 110)
    drawn = [ln for ln in lines if ln[:1] and ln[0] in BORDERS]
    assert drawn and all(len(ln) <= 110 for ln in drawn)
    for r in doctor_rows:
        assert_whole(lines, r["detail"])


# --------------------------------------------------------------------------- the console itself


PATH = "/data/phoenix/" + "x" * 20 + "/frames"


def table(title: str = "cache /tmp/a/cache") -> Table:
    t = Table(title=title, show_lines=True, caption="key: the content hash of the entry's inputs")
    for col in ("kind", "key", "detail"):
        t.add_column(col)
    t.add_row("features", "a" * 40, f"read from {PATH} and some words" * 3)
    t.add_row("targets", "b" * 40, "[red]no[/]")
    return t


def terminal(width: int) -> tuple[SltConsole, io.StringIO]:
    buf = io.StringIO()
    return SltConsole(file=buf, width=width, force_terminal=True, color_system=None, soft_wrap=True), buf


@pytest.mark.parametrize("width", [80, 120])
def test_a_table_on_a_terminal_fits_and_keeps_keys_and_paths_whole(width):
    console, buf = terminal(width)
    console.print(table())
    lines = text_of(buf.getvalue())
    assert all(len(ln) <= width for ln in lines), max(lines, key=len)
    for word in ("a" * 40, "b" * 40, PATH, "/tmp/a/cache", "entry's"):
        assert any(word in ln for ln in lines)
    drawn = [ln for ln in lines if ln[:1] and ln[0] in BORDERS]
    if width == 80:  # 8 + 40 + 41 cells of unbreakable words and the borders do not fit 80: records
        assert not drawn and not table_fits(console, table(), 80)
        assert "  key     " + "a" * 40 in lines and "features" in lines and "no" in " ".join(lines)
    else:
        assert drawn and table_fits(console, table(), 120)


def piped(capsys, *objects) -> str:
    console = SltConsole(file=_Stripped(stderr=False), width=LOG_WIDTH, soft_wrap=True)
    for o in objects:
        console.print(o)
    return capsys.readouterr().out


def test_a_table_in_a_pipe_has_no_padding_and_no_broken_word(capsys):
    t = table()
    t.add_row("hub", "c" * 150, "a key longer than the log width")
    text = piped(capsys, t, "plain text  ")
    lines = text.splitlines()
    assert not [ln for ln in lines if ln != ln.rstrip()]
    assert any("c" * 150 in ln for ln in lines) and any(PATH in ln for ln in lines)
    # as wide as its longest words need (each column's, padded by a blank each side, and 4 borders), no wider
    assert max(len(ln) for ln in lines) == len("features") + 150 + len(PATH) + 3 * 2 + 4
    assert lines[-1] == "plain text"
    short = piped(capsys, Table("a", "b", title="t"))
    assert max(len(ln) for ln in short.splitlines()) < 20  # a small table stays small


def test_the_stripped_stream_follows_sys_stdout(capsys):
    """A console made at import time still writes to the stream a test (or CliRunner) swapped in."""
    s = _Stripped(stderr=False)
    s.write("a  \nb\t\n\x1b[1mc  \x1b[0m\nd  ")
    assert capsys.readouterr().out == "a\nb\n\x1b[1mc\x1b[0m\nd  "


def key(i: int) -> str:
    return f"{i:02d}" + "f" * (KEY_CHARS - 2)


def _cache_with(tmp_path: Path, n: int) -> Cache:
    cache = Cache(tmp_path / "cache")
    for i in range(n):
        with cache.begin("features", key(i), {}) as p:
            (p.dir / "shard0").write_bytes(b"x" * (i + 1))
            p.publish(dataset="toy", items=i + 1)
    return cache


@pytest.mark.parametrize("columns", [80, 120, None], ids=["80-columns", "120-columns", "pipe"])
def test_cache_ls_keeps_every_key_whole(machine, tmp_path, columns):
    cache = _cache_with(tmp_path, 3)
    proc = run(machine, "cache", "ls", "--cache", str(cache.root), columns=columns)
    assert proc.returncode == 0, proc.stderr
    lines = text_of(proc.stdout)
    for i in range(3):
        assert any(key(i) in ln for ln in lines)
    assert any(str(cache.root) in ln for ln in lines)
    drawn = [ln for ln in lines if ln[:1] and ln[0] in BORDERS]
    assert bool(drawn) == (columns != 80)  # 80 columns are too few for the seven columns: a record per entry
    if columns is None:  # a log: no blanks at the ends, and short cells ("326 B") never wrap: a line per entry
        assert not [ln for ln in proc.stdout.splitlines() if ln != ln.rstrip()]
        assert max(len(ln) for ln in lines) <= LOG_TABLE_WIDTH
        assert [ln.split()[1] for ln in drawn if ln.startswith("│")] == ["features"] * 3
    else:
        assert all(len(ln) <= columns for ln in lines if str(cache.root) not in ln), max(lines, key=len)


# --------------------------------------------------------------------------- cache gc: what it says


def test_gc_dry_run_counts_what_it_keeps(tmp_path):
    cache = _cache_with(tmp_path, 7)
    r = CliRunner().invoke(app, ["cache", "gc", "--cache", str(cache.root), "--dry-run"])
    assert r.exit_code == 0, r.output
    assert r.output.splitlines()[-1] == "0 entries to remove; 7 kept (complete)"

    resumable = cache.begin("features", "resumable", {})
    (resumable.dir / "shard0").write_bytes(b"x")
    resumable.release()
    cache.begin("features", "empty", {}).release()
    busy = cache.begin("features", "busy", {})  # a live builder holds this lock
    (cache.root / "features" / "stale.lock").write_text("")
    try:
        r = CliRunner().invoke(app, ["cache", "gc", "--cache", str(cache.root), "--dry-run"])
        assert r.output.splitlines()[-1] == ("2 entries to remove (1 empty, 1 stale lock or deletion); "
                                             "9 kept (7 complete, 1 being built, 1 resumable)")
        r = CliRunner().invoke(app, ["cache", "gc", "--cache", str(cache.root)])
        assert r.output.splitlines()[-1] == ("2 entries removed (1 empty, 1 stale lock or deletion); "
                                             "9 kept (7 complete, 1 being built, 1 resumable)")
    finally:
        busy.release()
    empty = CliRunner().invoke(app, ["cache", "gc", "--cache", str(tmp_path / "none"), "--dry-run"])
    assert empty.output.splitlines()[-1] == "0 entries to remove; 0 kept"

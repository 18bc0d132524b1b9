"""Uninterrupted CLI runs that several crash tests compare their resumed runs against: each is an
artefact (tests/artefacts.py), run once per machine and code version, so a kill -9 test and two
Ctrl-C tests of the same command share one reference instead of running it three times."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from artefacts import artefact

REPO = Path(__file__).resolve().parents[1]


def clean_run(argv: list[str]) -> Path:
    """The cache directory of `slt-pipe ARGV --cache C`, run to the end once (read only). ARGV must
    not name --cache; what else it names keys the run."""
    assert "--cache" not in argv, argv

    def build(d: Path) -> None:
        r = subprocess.run([sys.executable, "-m", "pipeline.cli", *argv, "--cache", str(d / "cache")], cwd=d,
                           env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=900)
        assert r.returncode == 0, f"the clean run {argv} failed:\n{r.stderr[-3000:]}"

    return artefact("clean-run", build, inputs={"argv": argv}, code=["pipeline.cli"]) / "cache"

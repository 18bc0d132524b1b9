"""What each documented pytest command selects: the default run deselects `slow` and `gpu`
(pyproject's addopts), and a command-line `-m gpu` overrides addopts' `-m` and selects the gpu test."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GPU_TEST = "tests/test_paper_features.py::test_bf16_on_gpu_stays_close_to_fp32_on_cpu"


def collected(*args: str) -> list[str]:
    """Test ids `pytest --collect-only ARGS` lists (one a line: addopts gives -q; a second -q would print counts;
    -n 0: xdist's workers would each collect again, selecting the same)."""
    r = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-p", "no:cacheprovider", "-n", "0", *args,
                        "tests/test_paper_features.py"], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    return [line for line in r.stdout.splitlines() if "::" in line]


def test_m_gpu_selects_the_gpu_test_and_the_default_run_does_not():
    assert collected("-m", "gpu") == [GPU_TEST]
    default = collected()
    assert default and GPU_TEST not in default
    assert GPU_TEST not in collected("-m", "slow")

"""A full disk in every writer (torch checkpoints, HDF5, Zarr, JSON, the report, the import): one
error naming the file, nothing half-written published, and the same command resumes once there is
room. The disk is real: a tmpfs of a few MB mounted for the test (root can mount one, as on CI and
the dev machines; elsewhere the tests skip and say so)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest
from rich.console import Console
from test_pipeline import cached, make_cfg, toy30  # noqa: F401 (fixtures: the features and targets train reads)
from test_report import run  # noqa: F401 (fixture: a finished run to report on)
from test_spamo_io import TOY, cfg_of, write_spamo

from cache.errors import DiskFullError
from helpers import store_bytes

REPO = Path(__file__).resolve().parents[1]
QUIET = Console(stderr=True, quiet=True)


@contextlib.contextmanager
def small_disk(where: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` mounted at `where` for the block (a real file system that fills up)."""
    where.mkdir(parents=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True,
                       text=True)
    if r.returncode:
        pytest.skip(f"cannot mount a {size} tmpfs for a full disk ({r.stderr.strip()}): these tests need root")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True)


def leftovers(root: Path) -> list[Path]:
    """Hidden temporaries and half shards a failed write must not leave behind."""
    return [p for p in root.rglob("*") if p.name.startswith(".") and ".tmp" in p.name]


def test_report_on_a_full_disk_is_one_error_naming_the_file(run, tmp_path):  # noqa: F811
    from pipeline.report import write_report

    with small_disk(tmp_path / "small", "16k") as small:
        r = subprocess.run([sys.executable, "-m", "pipeline.cli", "report", "--run", str(run), "--out",
                            str(small / "report.html")], capture_output=True, text=True, timeout=120,
                           env={**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "300"})
        assert r.returncode == 2, r.stderr
        assert r.stderr.splitlines() == [f"error: disk full writing {small / 'report.html'}",
                                         f"  fix: {DiskFullError(None).fix}"], r.stderr
        assert not list(small.iterdir())  # no half page, no temporary
    assert write_report(run, tmp_path / "big" / "report.html").stat().st_size > 16 * 1024  # it did not fit


def test_import_on_a_full_disk_keeps_its_shards_and_resumes_to_the_clean_entry(tmp_path, toy_corpus):
    from cache.store import Cache
    from extract.datasets import open_dataset
    from pipeline import spamo_stage

    toy = toy_corpus(TOY)
    source = tmp_path / "save_dir"
    write_spamo(source, open_dataset("toy", toy, ["train"]))
    cfg = cfg_of(tmp_path / "clean", toy, splits=["train"])
    clean = spamo_stage.import_features(cfg, source, console=QUIET).entries["train"]
    with small_disk(tmp_path / "small", "1m") as small:
        with pytest.raises(DiskFullError) as e:
            spamo_stage.import_features(cfg_of(small, toy, splits=["train"]), source, console=QUIET)
        assert e.value.written.startswith(f"{small}/features/{clean.key}.partial/features.zarr/")
        assert not leftovers(small)
        shutil.copytree(small, tmp_path / "big")  # the cache moves to a larger disk
    again = spamo_stage.import_features(cfg_of(tmp_path / "big", toy, splits=["train"]), source, console=QUIET)
    entry = again.entries["train"]
    assert entry.key == clean.key and store_bytes(entry.dir) == store_bytes(clean.dir)
    assert Cache(tmp_path / "big").get("features", clean.key) is not None


@pytest.mark.slow  # trains the tiny SONAR twice (the run that meets the full disk, then the one with room)
def test_embed_targets_on_a_full_disk_names_the_checkpoint_and_resumes(tmp_path, toy_corpus):
    """torch.save reports ENOSPC as `unexpected pos`: the tiny SONAR's decoder.pt (2.5 MB) meets a full 3 MB disk."""
    from helpers import toy_embed_cfg
    from pipeline.embed_stage import embed_targets

    toy = toy_corpus(TOY)
    def cfg(cache: Path):
        return toy_embed_cfg(cache, toy, langs=["deu_Latn"], tiny_sonar_steps=20)

    with small_disk(tmp_path / "small", "3m") as small:
        with pytest.raises(DiskFullError) as e:
            embed_targets(cfg(small), QUIET)
        assert e.value.written.startswith(f"{small}/tiny-sonar/") and e.value.written.endswith(".pt"), e.value.written
        assert not list(small.glob("*/*/manifest.json"))  # nothing published
        shutil.copytree(small, tmp_path / "big")
    report = embed_targets(cfg(tmp_path / "big"), QUIET)
    assert set(report.entries) == {"deu_Latn"} and report.entries["deu_Latn"].dir.is_dir()


@pytest.mark.slow  # two trainings
def test_train_on_a_full_disk_names_the_file_and_a_larger_disk_trains(cached, tmp_path):  # noqa: F811
    from pipeline import train_stage

    cache, root = cached
    with small_disk(tmp_path / "small", "64k") as small:
        with pytest.raises(DiskFullError) as e:
            train_stage.train(make_cfg(cache, root, small / "run"), console=QUIET)
        assert e.value.written.startswith(f"{small}/run/"), e.value.written
        assert not leftovers(small)
    result = train_stage.train(make_cfg(cache, root, tmp_path / "run"), console=QUIET)
    assert (tmp_path / "run" / "ckpt").is_dir() and result is not None

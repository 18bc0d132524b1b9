"""Dataset readers: `open_dataset(name, root, splits)` -> a validated `Dataset`.

Names: phoenix (PHOENIX-2014-T release v3), toy (the generated corpus, same layout and
reader as phoenix), csl-daily (CSL-Daily), how2sign (How2Sign). Each reader checks the
whole release up front: a bad annotation file raises one `DatasetError` naming the file and
the fix; a sample without frames (missing or empty folder, missing clip) is kept with
`Sample.problem` set and listed by `Dataset.skipped(split)`, so one bad sample never refuses
its split (see extract/datasets/base.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

from cache.errors import DatasetError
from extract.datasets.base import Dataset, FrameSource, PngFolder, Sample, VideoFile
from extract.datasets.phoenix import validate_frames


def _phoenix(name: str) -> Callable[[Path, Sequence[str]], Dataset]:
    def open_(root: Path, splits: Sequence[str]) -> Dataset:
        from extract.datasets.phoenix import open_phoenix

        return open_phoenix(root, splits, name=name)

    return open_


def _csl(root: Path, splits: Sequence[str]) -> Dataset:
    from extract.datasets.csl_daily import open_csl_daily

    return open_csl_daily(root, splits)


def _how2sign(root: Path, splits: Sequence[str]) -> Dataset:
    from extract.datasets.how2sign import open_how2sign

    return open_how2sign(root, splits)


READERS: dict[str, Callable[[Path, Sequence[str]], Dataset]] = {
    "phoenix": _phoenix("phoenix"),
    "toy": _phoenix("toy"),
    "csl-daily": _csl,
    "how2sign": _how2sign,
}


def open_dataset(name: str, root: Path, splits: Sequence[str]) -> Dataset:
    """Open and validate `splits` of dataset `name` found at `root`."""
    reader = READERS.get(name)
    if reader is None:
        raise DatasetError(f"unknown dataset {name!r}", fix=f"use one of: {', '.join(READERS)}")
    root = Path(root).expanduser().resolve()  # absolute: Ray workers do not share our cwd
    if not root.is_dir():
        raise DatasetError(f"dataset root of {name!r} is not a directory", path=root,
                           fix="pass --root pointing at the unpacked release")
    if isinstance(splits, str):
        splits = [splits]
    if not splits:
        raise DatasetError(f"no splits requested for dataset {name!r}", fix="pass e.g. --split train")
    return reader(root, list(dict.fromkeys(splits)))


__all__ = ["Dataset", "FrameSource", "PngFolder", "Sample", "VideoFile", "READERS", "open_dataset", "validate_frames"]

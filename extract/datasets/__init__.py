"""Dataset readers: `open_dataset(name, root, splits)` -> a validated `Dataset`.

Names: phoenix (PHOENIX-2014-T release v3), toy (the generated corpus, same layout and
reader as phoenix), csl-daily (CSL-Daily), how2sign (How2Sign). Each reader checks the
whole release up front: a bad annotation file raises one `DatasetError` naming the file and
the fix; a sample without frames (missing or empty folder, missing clip) is kept with
`Sample.problem` set and listed by `Dataset.skipped(split)`, so one bad sample never refuses
its split (see extract/datasets/base.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal, Sequence

from cache.errors import DatasetError
from extract.datasets.base import Dataset, FrameSource, PngFolder, Sample, VideoFile
from extract.datasets.phoenix import validate_frames


@dataclass(frozen=True)
class DatasetSpec:
    """What a dataset declares once, for every stage that must treat it alike."""

    name: str
    """The reader's name (`dataset.name`)."""
    read: Callable[[Path, Sequence[str]], Dataset]
    """Opens and validates the requested splits found at a root."""
    bleu_case: Literal["lc", "mixed"]
    """Casing of the dataset's published BLEU tables (`train.bleu_case = auto`): SpaMo lower-cases
    hypotheses and references for every dataset it reports."""
    squash: int | None
    """Side of the square SpaMo squashes frames to before the image processors (`extract.squash =
    auto`): 256 for the PHOENIX layout (its fullFrame-256x256px copy), None to keep the aspect."""


def _read_phoenix(name: str) -> Callable[[Path, Sequence[str]], Dataset]:
    def read(root: Path, splits: Sequence[str]) -> Dataset:
        from extract.datasets.phoenix import open_phoenix

        return open_phoenix(root, splits, name=name)

    return read


def _read_csl(root: Path, splits: Sequence[str]) -> Dataset:
    from extract.datasets.csl_daily import open_csl_daily

    return open_csl_daily(root, splits)


def _read_how2sign(root: Path, splits: Sequence[str]) -> Dataset:
    from extract.datasets.how2sign import open_how2sign

    return open_how2sign(root, splits)


DATASETS: dict[str, DatasetSpec] = {s.name: s for s in (
    DatasetSpec("phoenix", _read_phoenix("phoenix"), bleu_case="lc", squash=256),
    DatasetSpec("toy", _read_phoenix("toy"), bleu_case="lc", squash=256),  # PHOENIX layout, same reader
    DatasetSpec("csl-daily", _read_csl, bleu_case="lc", squash=None),
    DatasetSpec("how2sign", _read_how2sign, bleu_case="lc", squash=None),
)}
"""Registry: dataset name -> its declaration. A new dataset is one reader module plus one line here."""


def dataset_spec(name: str) -> DatasetSpec:
    try:
        return DATASETS[name]
    except KeyError:
        import difflib

        close = difflib.get_close_matches(name, DATASETS, n=1)
        raise DatasetError(f"unknown dataset {name!r}", fix=(f"did you mean --dataset {close[0]}? " if close else "")
                           + f"use one of: {', '.join(DATASETS)}") from None


def missing_root_fix(name: str, root: Path) -> str:
    """The fix for a --root that is not a directory: the toy has no release to unpack, it is generated."""
    if name == "toy":
        import shlex

        where = shlex.quote(str(root))
        return (f"generate the toy there with `slt-pipe make-toy --out {where}` and pass --root {where}, "
                "or drop --root to generate it in the cache")
    return "pass --root pointing at the unpacked release"


def open_dataset(name: str, root: Path, splits: Sequence[str]) -> Dataset:
    """Open and validate `splits` of dataset `name` found at `root`."""
    spec = dataset_spec(name)
    root = Path(root).expanduser().resolve()  # absolute: Ray workers do not share our cwd
    if not root.is_dir():
        raise DatasetError(f"dataset root of {name!r} is not a directory", path=root, fix=missing_root_fix(name, root))
    if isinstance(splits, str):
        splits = [splits]
    if not splits:
        raise DatasetError(f"no splits requested for dataset {name!r}", fix="pass e.g. --split train")
    return spec.read(root, list(dict.fromkeys(splits)))


__all__ = ["Dataset", "FrameSource", "PngFolder", "Sample", "VideoFile", "DATASETS", "DatasetSpec", "dataset_spec", "missing_root_fix", "open_dataset", "validate_frames"]

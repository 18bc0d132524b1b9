"""CSL-Daily (Chinese sign language -> Chinese) reader.

Release layout (root = the folder holding `sentence/` and `sentence_label/`, or its parent
with a `CSL-Daily/` folder)::

    sentence/frames_512x512/{name}/000000.jpg, 000001.jpg, ...
    sentence_label/csl2020ct_v2.pkl    dict; "info": [{name, length, label_char, label_word,
                                       label_gloss, signer, ...}, ...]
    sentence_label/split_1.txt         "name|split" lines (train/dev/test); a "Name|Split"
                                       header line is tolerated

Reference text = "".join(label_char) (Chinese has no spaces; evaluate BLEU with sacrebleu
tokenize="zh"); gloss = " ".join(label_gloss). The labels file is a pickle because that is
how the release ships it: only open releases you trust.

A sample whose frame folder is missing or holds no .jpg frames is kept with `Sample.problem`
set: extraction skips and lists it (see extract/datasets/base.py); bad label or split files
still raise.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any, Sequence

from cache.errors import DatasetError
from extract.datasets.base import Dataset, PngFolder, Sample, list_frame_files, problem_text, sorted_samples

SOURCE_LANG = "zho_Hans"
FRAMES = Path("sentence/frames_512x512")
LABELS = Path("sentence_label/csl2020ct_v2.pkl")
SPLITS_FILE = Path("sentence_label/split_1.txt")
KNOWN_SPLITS = ("train", "dev", "test")


def resolve_root(root: Path) -> Path:
    root = Path(root)
    for cand in (root, root / "CSL-Daily"):
        if (cand / LABELS).is_file() or (cand / SPLITS_FILE).is_file():
            return cand
    raise DatasetError(f"not a CSL-Daily release: no {LABELS} here or in CSL-Daily/", path=root,
                       fix="pass --root pointing at the folder that holds sentence/ and sentence_label/")


def open_csl_daily(root: Path, splits: Sequence[str]) -> Dataset:
    """Read and validate the requested splits; raises DatasetError on the first bad annotation."""
    base = resolve_root(root)
    labels = read_labels(base / LABELS)
    assignment = read_splits(base / SPLITS_FILE, labels)
    samples: dict[str, list[Sample]] = {}
    for split in splits:
        names = [n for n, s in assignment.items() if s == split]
        if not names:
            raise DatasetError(f"split {split!r} has no videos (splits present: {sorted(set(assignment.values()))})",
                               path=base / SPLITS_FILE, fix="use train, dev or test")
        samples[split] = sorted_samples(_sample(base, n, split, labels[n]) for n in names)
    references = {split: {SOURCE_LANG: {s.id: s.text for s in ss}} for split, ss in samples.items()}
    return Dataset(name="csl-daily", root=base, source_lang=SOURCE_LANG, samples=samples,
                   references=references, annotation_files=[base / LABELS, base / SPLITS_FILE])


def read_labels(path: Path) -> dict[str, dict[str, Any]]:
    """{name: record} from the labels pickle, each with a non-empty label_char."""
    if not path.is_file():
        raise DatasetError("labels file is missing", path=path, fix="restore sentence_label/ from the CSL-Daily release")
    try:
        with open(path, "rb") as f:
            data = pickle.load(f)
    except Exception as e:  # unpickling raises many types on a damaged file
        raise DatasetError(f"cannot read labels pickle ({type(e).__name__}: {e})", path=path,
                           fix="restore the file from the CSL-Daily release") from e
    info = data.get("info") if isinstance(data, dict) else None
    if not isinstance(info, list):
        raise DatasetError("labels pickle has no 'info' list", path=path,
                           fix="use csl2020ct_v2.pkl from the release (a dict with an 'info' list)")
    out: dict[str, dict[str, Any]] = {}
    for i, rec in enumerate(info):
        if not isinstance(rec, dict) or not isinstance(rec.get("name"), str) or not rec.get("label_char"):
            raise DatasetError(f"info[{i}] lacks a name or label_char", path=path,
                               fix="restore the file from the CSL-Daily release")
        if rec["name"] in out:
            raise DatasetError(f"info[{i}]: duplicate name {rec['name']!r}", path=path,
                               fix="restore the file from the CSL-Daily release")
        out[rec["name"]] = rec
    return out


def read_splits(path: Path, labels: dict[str, dict[str, Any]]) -> dict[str, str]:
    """{name: split} from split_1.txt; every name must have labels."""
    if not path.is_file():
        raise DatasetError("split file is missing", path=path, fix="restore sentence_label/split_1.txt from the release")
    out: dict[str, str] = {}
    for i, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        parts = [p.strip() for p in line.split("|")]
        if i == 1 and [p.lower() for p in parts] == ["name", "split"]:
            continue
        if len(parts) != 2 or not parts[0] or parts[1] not in KNOWN_SPLITS:
            raise DatasetError(f"line {i}: expected 'name|split' with split in {'/'.join(KNOWN_SPLITS)}, got {line!r}",
                               path=path, fix="fix or delete that line")
        if parts[0] not in labels:
            raise DatasetError(f"line {i}: {parts[0]!r} has no entry in {LABELS.name}", path=path,
                               fix="delete that line or restore the labels file")
        if parts[0] in out:
            raise DatasetError(f"line {i}: {parts[0]!r} is listed twice", path=path, fix="delete one of the lines")
        out[parts[0]] = parts[1]
    return out


def _sample(base: Path, name: str, split: str, rec: dict[str, Any]) -> Sample:
    folder = base / FRAMES / name
    files = list_frame_files(folder)
    problem = None
    if not files:
        what = "frame folder has no .jpg frames" if folder.is_dir() else "frame folder is missing"
        problem = problem_text(folder, f"{what} (sample {name!r}, split {split})",
                               f"restore {folder} from the release, or delete the line {name}|{split} from "
                               f"{base / SPLITS_FILE}")
    gloss = rec.get("label_gloss")
    return Sample(id=name, split=split, text="".join(str(c) for c in rec["label_char"]),
                  gloss=" ".join(str(g) for g in gloss) if gloss else None, frames=PngFolder(folder, files),
                  problem=problem)

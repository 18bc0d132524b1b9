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
still raise one DatasetError naming the file, the entry (`info[i]`) or line, and the fix:
an unreadable pickle or one of the wrong shape (not a dict, no `info` list, an entry
without a name or with a label_char/label_gloss that is not a list of strings), an empty
label_char, a duplicate name, a split line with another delimiter, an unknown split name,
a name missing from the pickle or listed twice (or in two splits), a split file without
lines, non-UTF-8 text. A UTF-8 BOM in the split file is accepted.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any, Sequence

from cache.errors import DatasetError
from extract.datasets.base import (
    DELIMITER_NAMES,
    Dataset,
    PngFolder,
    Sample,
    delimiter_fix,
    list_frame_files,
    other_delimiter,
    problem_text,
    read_annotation_lines,
    sorted_samples,
)

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
            present = sorted(set(assignment.values()))
            raise DatasetError(f"split {split!r} has no videos (splits present: {present})", path=base / SPLITS_FILE,
                               fix=f"ask for one of: {', '.join(present)} (--split {','.join(present)})")
        samples[split] = sorted_samples(_sample(base, n, split, labels[n]) for n in names)
    references = {split: {SOURCE_LANG: {s.id: s.text for s in ss}} for split, ss in samples.items()}
    return Dataset(name="csl-daily", root=base, source_lang=SOURCE_LANG, samples=samples,
                   references=references, annotation_files=[base / LABELS, base / SPLITS_FILE])


def read_labels(path: Path) -> dict[str, dict[str, Any]]:
    """{name: record} from the labels pickle; every record is checked for the fields read."""
    if not path.is_file():
        raise DatasetError("labels file is missing", path=path, fix="restore sentence_label/ from the CSL-Daily release")
    try:
        with open(path, "rb") as f:
            data = pickle.load(f)
    except Exception as e:  # unpickling raises many types on a damaged file
        raise DatasetError(f"cannot read labels pickle ({type(e).__name__}: {e})", path=path,
                           fix="restore the file from the CSL-Daily release") from e
    fix = f"use {LABELS.name} from the CSL-Daily release (a dict whose 'info' list holds one dict per video)"
    if not isinstance(data, dict):
        raise DatasetError(f"labels pickle holds a {type(data).__name__}, expected a dict with an 'info' list",
                           path=path, fix=fix)
    info = data.get("info")
    if not isinstance(info, list):
        what = "has no 'info' key" if info is None else f"'info' is a {type(info).__name__}"
        raise DatasetError(f"labels pickle {what}, expected an 'info' list", path=path, fix=fix)
    if not info:
        raise DatasetError("labels pickle's 'info' list is empty (no videos)", path=path, fix=fix)
    out: dict[str, dict[str, Any]] = {}
    first: dict[str, int] = {}
    for i, rec in enumerate(info):
        _check_record(path, i, rec)
        if rec["name"] in out:
            raise DatasetError(f"info[{i}]: duplicate name {rec['name']!r} (first at info[{first[rec['name']]}])",
                               path=path, fix="restore the file from the CSL-Daily release")
        out[rec["name"]], first[rec["name"]] = rec, i
    return out


def _check_record(path: Path, i: int, rec: object) -> None:
    """One `info` entry: a dict with a name, a non-empty label_char and, if present, a label_gloss list."""
    fix = "restore the file from the CSL-Daily release"
    if not isinstance(rec, dict):
        raise DatasetError(f"info[{i}] is a {type(rec).__name__}, expected a dict with name and label_char",
                           path=path, fix=fix)
    name = rec.get("name")
    if not isinstance(name, str) or not name.strip():
        raise DatasetError(f"info[{i}]: 'name' is {name!r}, expected the video's folder name", path=path, fix=fix)
    chars = rec.get("label_char")
    if not _is_tokens(chars):
        raise DatasetError(f"info[{i}] ({name!r}): 'label_char' is {type(chars).__name__}, expected a list of "
                           "characters", path=path, fix=fix)
    if not "".join(chars).strip():
        raise DatasetError(f"info[{i}] ({name!r}): empty label_char (no reference text)", path=path,
                           fix=f"restore the file from the CSL-Daily release, or delete the line starting {name}| "
                           f"from {path.parent / SPLITS_FILE.name}")
    gloss = rec.get("label_gloss")
    if gloss is not None and not _is_tokens(gloss):
        raise DatasetError(f"info[{i}] ({name!r}): 'label_gloss' is {type(gloss).__name__}, expected a list of glosses",
                           path=path, fix=fix)


def _is_tokens(value: object) -> bool:
    return isinstance(value, (list, tuple)) and all(isinstance(t, str) for t in value)


def read_splits(path: Path, labels: dict[str, dict[str, Any]]) -> dict[str, str]:
    """{name: split} from split_1.txt; every name must have labels.

    Text rules (BOM accepted, UTF-8 only, delimiter, no rows) are those of every reader: see
    extract/datasets/base.py."""
    if not path.is_file():
        raise DatasetError("split file is missing", path=path, fix="restore sentence_label/split_1.txt from the release")
    lines = read_annotation_lines(path, fix="restore the file from the release")
    _check_delimiter(path, lines)
    out: dict[str, str] = {}
    where: dict[str, int] = {}
    for i, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line:
            continue
        parts = [p.strip() for p in line.split("|")]
        if i == 1 and [p.lower() for p in parts] == ["name", "split"]:
            continue
        name, split = _split_line(path, i, line, parts)
        if name not in labels:
            raise DatasetError(f"line {i}: {name!r} has no entry in {LABELS.name}", path=path,
                               fix=f"delete line {i} or restore {LABELS.name} from the release")
        if name in out:
            again = "twice" if out[name] == split else f"in two splits, {out[name]} and {split}"
            raise DatasetError(f"line {i}: {name!r} is listed {again} (first on line {where[name]})", path=path,
                               fix=f"a video belongs to one split: delete line {i} or line {where[name]}")
        out[name], where[name] = split, i
    if not out:
        raise DatasetError("no 'name|split' lines (every split is empty)", path=path,
                           fix="restore sentence_label/split_1.txt from the CSL-Daily release")
    return out


def _check_delimiter(path: Path, lines: list[str]) -> None:
    """Refuse a file written with another delimiter as a whole (one error, one conversion)."""
    found = other_delimiter(lines[0], "|", "\t,; ") if lines else None
    if found is not None and not any("|" in line for line in lines):
        raise DatasetError(f"line 1: the file is {DELIMITER_NAMES[found]}-separated, expected 'name|split' lines",
                           path=path, fix=delimiter_fix(path, found, "|"))


def _split_line(path: Path, i: int, line: str, parts: list[str]) -> tuple[str, str]:
    """(name, split) of one split-file line; says which delimiter a wrong one uses."""
    if len(parts) != 2 or not parts[0]:
        found = other_delimiter(line, "|", "\t,; ")
        looks = f" (it is {DELIMITER_NAMES[found]}-separated)" if found else ""
        raise DatasetError(f"line {i}: expected 'name|split', got {line!r}{looks}", path=path,
                           fix=f"write line {i} as name|split (split in {'/'.join(KNOWN_SPLITS)}), or delete it")
    if parts[1] not in KNOWN_SPLITS:
        raise DatasetError(f"line {i}: unknown split {parts[1]!r} for {parts[0]!r}, expected {'/'.join(KNOWN_SPLITS)}",
                           path=path, fix=f"change it to one of {', '.join(KNOWN_SPLITS)} or delete line {i}")
    return parts[0], parts[1]


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

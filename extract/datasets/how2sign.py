"""How2Sign (ASL -> English) reader: sentence clips, or full videos cut by realigned times.

Annotations: `how2sign_realigned_{train,val,test}.csv`, tab-separated, header
`VIDEO_ID VIDEO_NAME SENTENCE_ID SENTENCE_NAME START_REALIGNED END_REALIGNED SENTENCE`.
The split `val` plays the role of `dev`: asking for "dev" (or "val") reads the val file;
samples are keyed under the split name that was asked for.

Folders searched, relative to the root (`{s}` = train, val or test, the file's split name).
The first match wins, so a layout can mix both kinds.

CSV file `how2sign_realigned_{s}.csv`:
    ./   annotations/   {s}/   {s}/text/en/raw_text/re_aligned/
    sentence_level/{s}/text/en/raw_text/re_aligned/   (official download script)

Sentence clip `{SENTENCE_NAME}.mp4` (preferred, whole file):
    ./   clips/   {s}/   {s}/clips/   {s}/rgb_front/clips/   {s}/rgb_front/raw_videos/
    sentence_level/{s}/rgb_front/raw_videos/   sentence_level/{s}/rgb_front/clips/

Full video `{VIDEO_NAME}.mp4`, cut to [START_REALIGNED, END_REALIGNED) seconds:
    videos/   raw_videos/   {s}/videos/   video_level/{s}/rgb_front/raw_videos/
    (plus every clip folder above)

Clip and video names never collide (clips carry a `_N-` sentence suffix), so one index of
all mp4s found in those folders serves both look-ups. Videos are 24 fps front RGB
(1280x720); `extract.vision.decode.read_frames(fps=...)` resamples if asked.

The public release does not match its own CSVs (see extract/datasets/base.py for the policy):
  * A row with neither its clip nor its full video (117 train, 2 val, 14 test rows of the
    release) is kept with `Sample.problem` set: extraction skips and lists it.
  * A window whose END_REALIGNED lies past the end of its full video (how2sign-data issue #9,
    e.g. rows ending at 141-144 s of a 140 s video) is skipped and listed too, not clipped:
    the sentence's end is not in the video, and published How2Sign results ignore these
    samples. It is found at decode time from the container's duration (opening every full
    video here would cost a pass over the release), so the row's file and line travel with
    the window (`VideoFile.origin`) into the message.
A malformed CSV still raises one DatasetError naming the file, the line and the fix: a
comma-separated file or header (says which delimiter it found), a missing column, a
duplicate SENTENCE_NAME (in one file or in two splits; asking for both dev and val is
refused for that reason), a header and no rows, non-UTF-8 text, an empty SENTENCE, a
non-numeric or non-finite time, a negative START or an END not after START. A UTF-8 BOM
is accepted (see extract/datasets/base.py).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Sequence

from cache.errors import DatasetError
from extract.datasets.base import (
    DELIMITER_NAMES,
    Dataset,
    Sample,
    VideoFile,
    claim_once,
    delimiter_fix,
    other_delimiter,
    problem_text,
    read_annotation_lines,
    sorted_samples,
)

SOURCE_LANG = "eng_Latn"
COLUMNS = ("VIDEO_ID", "VIDEO_NAME", "SENTENCE_ID", "SENTENCE_NAME", "START_REALIGNED", "END_REALIGNED", "SENTENCE")
FILE_SPLIT = {"train": "train", "dev": "val", "val": "val", "test": "test"}

CSV_DIRS = (".", "annotations", "{s}", "{s}/text/en/raw_text/re_aligned",
            "sentence_level/{s}/text/en/raw_text/re_aligned")
CLIP_DIRS = (".", "clips", "{s}", "{s}/clips", "{s}/rgb_front/clips", "{s}/rgb_front/raw_videos",
             "sentence_level/{s}/rgb_front/raw_videos", "sentence_level/{s}/rgb_front/clips")
VIDEO_DIRS = ("videos", "raw_videos", "{s}/videos", "video_level/{s}/rgb_front/raw_videos")


def open_how2sign(root: Path, splits: Sequence[str]) -> Dataset:
    """Read and validate the requested splits; raises DatasetError on the first bad annotation."""
    root = Path(root)
    samples: dict[str, list[Sample]] = {}
    annotation_files: dict[str, list[Path]] = {}
    seen: dict[str, tuple[Path, int]] = {}
    _refuse_dev_and_val(root, splits)
    for split in splits:
        if split not in FILE_SPLIT:
            raise DatasetError(f"unknown How2Sign split {split!r}", path=root, fix="use train, dev (= val) or test")
        s = FILE_SPLIT[split]
        csv_path = find_csv(root, s)
        rows = read_realigned_csv(csv_path)
        for line, row in rows:
            name = row["SENTENCE_NAME"]
            claim_once(seen, name, csv_path, line, label="SENTENCE_NAME", noun="sentence")
        mp4s = index_mp4s(root, s)
        samples[split] = sorted_samples(_sample(row, split, mp4s, csv_path, root, s) for row in rows)
        annotation_files[split] = [csv_path]
    references = {split: {SOURCE_LANG: {x.id: x.text for x in ss}} for split, ss in samples.items()}
    return Dataset(name="how2sign", root=root, source_lang=SOURCE_LANG, samples=samples, references=references,
                   annotation_files=[p for files in annotation_files.values() for p in files],
                   split_annotation_files=annotation_files)


def _refuse_dev_and_val(root: Path, splits: Sequence[str]) -> None:
    """dev and val are one file: asking for both would list every val sentence in two splits."""
    if "dev" in splits and "val" in splits:
        rest = [x for x in splits if x != "val"]
        raise DatasetError("splits 'dev' and 'val' are both How2Sign's val file; each sentence would be in two splits",
                           path=root, fix=f"ask for one of them: --split {','.join(rest)}")


def find_csv(root: Path, s: str) -> Path:
    name = f"how2sign_realigned_{s}.csv"
    for d in CSV_DIRS:
        p = root / d.format(s=s) / name
        if p.is_file():
            return p
    raise DatasetError(f"annotation file {name} not found (looked in {', '.join(d.format(s=s) for d in CSV_DIRS)})",
                       path=root, fix=f"put {name} from the How2Sign release in the root (or drop the split)")


def read_realigned_csv(path: Path) -> list[tuple[int, dict[str, str]]]:
    """[(line number, {column: value})] of one realigned CSV, validated row by row.

    Text rules (BOM accepted, UTF-8 only, delimiter, empty split, empty SENTENCE) are those
    of every reader: see extract/datasets/base.py."""
    lines = read_annotation_lines(path, fix="restore the file from the How2Sign release (UTF-8, tab-separated)")
    header = _header(path, lines)
    rows: list[tuple[int, dict[str, str]]] = []
    seen: dict[str, int] = {}
    for i, raw in enumerate(lines[1:], start=2):
        if not raw.strip():
            continue
        cols = raw.split("\t")
        if len(cols) != len(header):
            found = other_delimiter(raw, "\t", ",;|")
            what = f"the row is {DELIMITER_NAMES[found]}-separated" if found else f"{len(cols)} columns"
            raise DatasetError(f"line {i}: {what}, expected {len(header)} tab-separated columns", path=path,
                               fix=f"fix or delete line {i} (columns {' '.join(header)}, separated by tabs)")
        row = {h: c.strip() for h, c in zip(header, cols)}
        name = row["SENTENCE_NAME"]
        if not name:
            raise DatasetError(f"line {i}: empty SENTENCE_NAME", path=path, fix=f"fix or delete line {i}")
        if not row["SENTENCE"]:
            raise DatasetError(f"line {i}: empty SENTENCE for {name!r}", path=path,
                               fix=f"write the English sentence into the SENTENCE column of line {i}, "
                               "or delete the row")
        if name in seen:
            raise DatasetError(f"line {i}: duplicate SENTENCE_NAME {name!r} (first on line {seen[name]})", path=path,
                               fix=f"delete line {i} or line {seen[name]}")
        _check_window(path, i, row)
        seen[name] = i
        rows.append((i, row))
    if not rows:
        raise DatasetError("line 1: a header and no rows (an empty split)", path=path,
                           fix="restore the file from the How2Sign release, or leave this split out of --split")
    return rows


def _header(path: Path, lines: list[str]) -> list[str]:
    """The header's column names; refuses an empty file, another delimiter or missing columns."""
    if not lines or not lines[0].strip():
        raise DatasetError("line 1: the file is empty (no header)", path=path,
                           fix=f"restore the file from the How2Sign release; its header is {' '.join(COLUMNS)} "
                           "separated by tabs")
    found = other_delimiter(lines[0], "\t", ",;|")
    if found is not None:
        raise DatasetError(f"line 1: the header is {DELIMITER_NAMES[found]}-separated, expected tab-separated",
                           path=path, fix=delimiter_fix(path, found, "\t"))
    header = [c.strip() for c in lines[0].split("\t")]
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise DatasetError(f"line 1: header lacks column {', '.join(missing)}", path=path,
                           fix=f"restore the file; its header is {' '.join(COLUMNS)} separated by tabs")
    return header


def _check_window(path: Path, line: int, row: dict[str, str]) -> None:
    """A row's START/END_REALIGNED: finite numbers of seconds, 0 <= start < end."""
    start, end = row["START_REALIGNED"], row["END_REALIGNED"]
    seconds = f"write the times of line {line} in seconds, e.g. 12.5, or delete the row"
    try:
        t0, t1 = float(start), float(end)
    except ValueError as e:
        raise DatasetError(f"line {line}: START_REALIGNED {start!r} / END_REALIGNED {end!r}: not numbers (seconds)",
                           path=path, fix=seconds) from e
    if not (math.isfinite(t0) and math.isfinite(t1)):
        raise DatasetError(f"line {line}: START_REALIGNED {start!r} / END_REALIGNED {end!r}: not finite", path=path,
                           fix=seconds)
    if t0 < 0:
        raise DatasetError(f"line {line}: START_REALIGNED {start} is negative", path=path,
                           fix=f"fix the times of line {line} or delete the row")
    if t1 <= t0:
        what = "before" if t1 < t0 else "equal to"
        raise DatasetError(f"line {line}: END_REALIGNED {end} is {what} START_REALIGNED {start} (an empty window)",
                           path=path, fix=f"swap or fix the two times of line {line}, or delete the row")


def index_mp4s(root: Path, s: str) -> dict[str, Path]:
    """{file stem: path} of every mp4 in the searched folders (first folder wins)."""
    out: dict[str, Path] = {}
    for d in CLIP_DIRS + VIDEO_DIRS:
        folder = root / d.format(s=s)
        try:
            with os.scandir(folder) as it:
                for e in it:
                    if e.name.lower().endswith(".mp4") and e.is_file():
                        out.setdefault(e.name[:-4], folder / e.name)
        except (FileNotFoundError, NotADirectoryError):
            continue
    return out


def _sample(line_row: tuple[int, dict[str, str]], split: str, mp4s: dict[str, Path], csv_path: Path,
            root: Path, s: str) -> Sample:
    line, row = line_row
    name = row["SENTENCE_NAME"]
    problem = None
    if name in mp4s:
        frames = VideoFile(mp4s[name])
    elif row["VIDEO_NAME"] in mp4s:
        origin = (f"END_REALIGNED on line {line} of {csv_path} (How2Sign's realigned END times overrun their "
                  "videos, how2sign-data issue #9)")
        frames = VideoFile(mp4s[row["VIDEO_NAME"]], float(row["START_REALIGNED"]), float(row["END_REALIGNED"]),
                           origin=origin)
    else:
        # Never read; names where the clip would go so the listing points somewhere useful.
        frames = VideoFile(root / CLIP_DIRS[4].format(s=s) / f"{name}.mp4")
        problem = problem_text(
            root, f"no video for {name!r} ({csv_path.name} line {line}): neither {name}.mp4 nor "
            f"{row['VIDEO_NAME']}.mp4 in the searched folders (e.g. {s}/rgb_front/clips/, clips/, videos/; see "
            "extract/datasets/how2sign.py); the public release lacks some clips (how2sign-data issue #4)",
            f"none needed (the sample is skipped), or put {name}.mp4 in {root / CLIP_DIRS[4].format(s=s)}/")
    return Sample(id=name, split=split, text=row["SENTENCE"], gloss=None, frames=frames, problem=problem)

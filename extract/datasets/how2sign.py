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
(1280x720); `extract.video.read_frames(fps=...)` resamples if asked.

The public release does not match its own CSVs (see extract/datasets/base.py for the policy):
  * A row with neither its clip nor its full video (117 train, 2 val, 14 test rows of the
    release) is kept with `Sample.problem` set: extraction skips and lists it.
  * A window whose END_REALIGNED lies past the end of its full video (how2sign-data issue #9,
    e.g. rows ending at 141-144 s of a 140 s video) is skipped and listed too, not clipped:
    the sentence's end is not in the video, and published How2Sign results ignore these
    samples. It is found at decode time from the container's duration (opening every full
    video here would cost a pass over the release), so the row's file and line travel with
    the window (`VideoFile.origin`) into the message.
A malformed CSV (header, columns, duplicate SENTENCE_NAME, a non-numeric time) still raises.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from cache.errors import DatasetError
from extract.datasets.base import Dataset, Sample, VideoFile, problem_text, sorted_samples

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
    for split in splits:
        if split not in FILE_SPLIT:
            raise DatasetError(f"unknown How2Sign split {split!r}", path=root, fix="use train, dev (= val) or test")
        s = FILE_SPLIT[split]
        csv_path = find_csv(root, s)
        rows = read_realigned_csv(csv_path)
        mp4s = index_mp4s(root, s)
        samples[split] = sorted_samples(_sample(row, split, mp4s, csv_path, root, s) for row in rows)
        annotation_files[split] = [csv_path]
    references = {split: {SOURCE_LANG: {x.id: x.text for x in ss}} for split, ss in samples.items()}
    return Dataset(name="how2sign", root=root, source_lang=SOURCE_LANG, samples=samples, references=references,
                   annotation_files=[p for files in annotation_files.values() for p in files],
                   split_annotation_files=annotation_files)


def find_csv(root: Path, s: str) -> Path:
    name = f"how2sign_realigned_{s}.csv"
    for d in CSV_DIRS:
        p = root / d.format(s=s) / name
        if p.is_file():
            return p
    raise DatasetError(f"annotation file {name} not found (looked in {', '.join(d.format(s=s) for d in CSV_DIRS)})",
                       path=root, fix=f"put {name} from the How2Sign release in the root (or drop the split)")


def read_realigned_csv(path: Path) -> list[tuple[int, dict[str, str]]]:
    """[(line number, {column: value})] of one realigned CSV, validated row by row."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(f"cannot read annotation file ({e})", path=path, fix="restore the file (UTF-8, tab-separated)") from e
    header = [c.strip() for c in lines[0].split("\t")] if lines else []
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise DatasetError(f"line 1: header lacks {', '.join(missing)} (is the file tab-separated?)", path=path,
                           fix=f"restore the file; its header is {' '.join(COLUMNS)} separated by tabs")
    rows: list[tuple[int, dict[str, str]]] = []
    seen: dict[str, int] = {}
    for i, raw in enumerate(lines[1:], start=2):
        if not raw.strip():
            continue
        cols = raw.split("\t")
        if len(cols) != len(header):
            raise DatasetError(f"line {i}: {len(cols)} tab-separated columns, expected {len(header)}", path=path,
                               fix="fix or delete that row")
        row = {h: c.strip() for h, c in zip(header, cols)}
        name = row["SENTENCE_NAME"]
        if not name or not row["SENTENCE"]:
            raise DatasetError(f"line {i}: empty SENTENCE_NAME or SENTENCE", path=path, fix="fix or delete that row")
        if name in seen:
            raise DatasetError(f"line {i}: duplicate SENTENCE_NAME {name!r} (first on line {seen[name]})", path=path,
                               fix="delete one of the two rows")
        try:
            start, end = float(row["START_REALIGNED"]), float(row["END_REALIGNED"])
        except ValueError as e:
            raise DatasetError(f"line {i}: START_REALIGNED/END_REALIGNED are not numbers", path=path,
                               fix="fix or delete that row") from e
        if not 0 <= start < end:
            raise DatasetError(f"line {i}: window [{start}, {end}) is empty or negative", path=path,
                               fix="fix or delete that row")
        seen[name] = i
        rows.append((i, row))
    return rows


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

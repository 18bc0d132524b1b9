"""Common types of every dataset reader: where a video's frames are, and what it says.

Readers validate a release up front and return a `Dataset` of plain, frozen records, so
the extraction stage never meets a half-checked sample deep inside a long job. Frames are
not read here (see `extract.vision.decode.read_frames`); only their locations are recorded.

A dataset's cache identity is `Dataset.fingerprint`: it hashes what determines the
features (frame file names and sizes, or their bytes) and the annotation files, never
mtimes or the absolute root, so a dataset copied to another disk keeps its cache entries.

Bad samples (one policy for every reader): a sample whose frames are missing or empty is
kept in `Dataset.samples` with `Sample.problem` set ("<reason>; fix: <fix>"), never raised,
so one bad sample does not refuse its split and shard membership (sorted ids cut every
`shard_videos`) is the same before and after the file is restored. Extraction skips such
samples and lists them; `Dataset.skipped(split)` lists them for other stages. Problems only
found while decoding (an unreadable frame, a window past the end of the video) follow the
same path at decode time. Annotation-file problems (a bad header, a duplicate id) are not
one sample's and still raise `DatasetError`.

Annotation files (one policy for every reader, read through `read_annotation_lines`):
  * UTF-8 only. A leading UTF-8 BOM is accepted silently: spreadsheet programs add one when
    a user re-saves a release file ("CSV UTF-8"), and it carries no meaning. Any other
    non-UTF-8 byte refuses the file, naming the line and byte offset and the `iconv` fix.
  * Lines end at LF (a CR before it is dropped) and nowhere else: `str.splitlines` would
    also cut a sentence at U+2028 or NEL (U+0085) and shift every line number after it.
  * The delimiter is checked on the header: a file separated by another one (a PHOENIX CSV
    saved with commas, a How2Sign CSV with commas instead of tabs) says which delimiter it
    found and which is expected, with a command that converts it.
  * A file with a header and no rows (an empty split) is an error, never an empty dataset.
  * An empty reference text is an annotation error, not a skipped sample: the text is the
    training target and the evaluation reference, so skipping would silently shrink a test
    set (and move its BLEU) for what is a one-line edit of the file.
  * Duplicate ids, within a file or across the requested splits, are errors naming both places.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Literal

from cache.errors import DatasetError
from cache.keys import sha256_file

FRAME_SUFFIXES = (".png", ".jpg", ".jpeg")
"""Image files that count as video frames in a frame folder."""


@dataclass(frozen=True)
class PngFolder:
    """A video stored as image frames (PNG or JPEG), one file per frame."""

    dir: Path
    files: tuple[str, ...]
    """Frame file names in temporal order (numeric-aware, so images10 follows images9)."""

    def paths(self) -> list[Path]:
        return [self.dir / f for f in self.files]


@dataclass(frozen=True)
class VideoFile:
    """An mp4: the whole file, or the window [start, end) in seconds of it."""

    path: Path
    start: float | None = None
    end: float | None = None
    origin: str | None = field(default=None, compare=False)
    """The annotation that set the window (file and line), named in errors about it; not identity."""


FrameSource = PngFolder | VideoFile


def source_path(src: FrameSource) -> Path:
    """The folder or file a video is read from: what a message about it names."""
    return src.dir if isinstance(src, PngFolder) else src.path


@dataclass(frozen=True)
class Sample:
    id: str
    split: str
    text: str
    """Reference translation in the dataset's source language."""
    gloss: str | None
    frames: FrameSource
    problem: str | None = None
    """Why the sample cannot be extracted, "<path>: <reason>; fix: <fix>" (see `problem_text`);
    None for a good sample. Such samples stay in their split and are skipped, never decoded."""


@dataclass
class Dataset:
    name: str
    root: Path
    """The resolved release folder; fingerprints name files relative to it."""
    source_lang: str
    """NLLB code of the reference texts: deu_Latn, zho_Hans, eng_Latn."""
    samples: dict[str, list[Sample]]
    """split -> samples, sorted by id."""
    references: dict[str, dict[str, dict[str, str]]] = field(default_factory=dict)
    """split -> NLLB language code -> sample id -> gold text (source language always present)."""
    annotation_files: list[Path] = field(default_factory=list)
    """Files whose content defines the texts and splits."""
    split_annotation_files: dict[str, list[Path]] = field(default_factory=dict)
    """split -> the subset of `annotation_files` that defines it (PHOENIX: its own CSV), so a
    dev-only edit does not change the train fingerprint; a split not listed uses them all."""
    frames_folders: dict[str, str] = field(default_factory=dict)
    """split -> the frame folder read, relative to `root` (PHOENIX: 210x260 or SpaMo's 256x256 copy)."""

    def fingerprint(self, split: str, mode: Literal["stat", "content"] = "stat") -> dict:
        """Deterministic, JSON-able identity of one split, for cache keys.

        `stat` hashes each frame file's name and size (fast: one stat per file); `content`
        hashes every byte (slow, catches same-size edits). Files are named relative to
        `root`, so copying the dataset elsewhere keeps the fingerprint. The per-sample
        listing is folded into one sha256 so the key's inputs stay small for 1M frames.
        """
        if mode not in ("stat", "content"):
            raise DatasetError(f"unknown fingerprint mode {mode!r}", fix="use 'stat' or 'content'")
        samples = self._split(split)
        h = hashlib.sha256()
        frames = 0
        for s in sorted(samples, key=lambda s: s.id):
            record, n = self._record(s, mode)
            frames += n
            h.update(_canonical([s.id, record]).encode())
            h.update(b"\n")
        return {
            "dataset": self.name,
            "split": split,
            "mode": mode,
            "samples": len(samples),
            "frame_files": frames,
            "items_sha256": h.hexdigest(),
            "annotations": {_rel(p, self.root): _sha256_file(p) for p in sorted(self._annotations(split))},
        }

    def sample_digests(self, split: str, mode: Literal["stat", "content"] = "stat") -> dict[str, str]:
        """sample id -> sha256 of what determines its features (frame records, or its problem),
        root-relative like `fingerprint`; extraction keys each shard on its samples' digests."""
        return {s.id: hashlib.sha256(_canonical([s.id, self._record(s, mode)[0]]).encode()).hexdigest()
                for s in self._split(split)}

    def skipped(self, split: str) -> list[tuple[str, str, str]]:
        """(sample id, reason, fix) of the split's samples that extraction skips, sorted by id."""
        return [(s.id, *split_problem(s.problem)) for s in self._split(split) if s.problem is not None]

    def _record(self, s: Sample, mode: str) -> tuple[object, int]:
        if s.problem is not None:
            # Its files are absent or empty: the problem is the identity, so restoring them
            # changes the fingerprint. Root-relative, so a copied dataset keeps its key.
            return {"problem": s.problem.replace(str(self.root), ".")}, 0
        return _frames_record(s.frames, self.root, mode)

    def text_fingerprint(self, split: str) -> str:
        """sha256 over the sorted (id, text) pairs of one split: changes only when a text does."""
        pairs = sorted((s.id, s.text) for s in self._split(split))
        return hashlib.sha256(_canonical(pairs).encode()).hexdigest()

    def _annotations(self, split: str) -> list[Path]:
        return self.split_annotation_files.get(split) or self.annotation_files

    def _split(self, split: str) -> list[Sample]:
        if split not in self.samples:
            raise DatasetError(
                f"split {split!r} was not opened for dataset {self.name!r} (have {sorted(self.samples)})",
                path=self.root,
                fix=f"pass --split {','.join([*sorted(self.samples), split])} (or set dataset.splits) so {split!r} is read",
            )
        return self.samples[split]


# --------------------------------------------------------------------------- helpers


def natural_key(name: str) -> tuple:
    """Sort key that orders embedded numbers numerically: images2 < images10."""
    return tuple(int(p) if p.isdigit() else p.lower() for p in re.split(r"(\d+)", name))


def list_frame_files(folder: Path) -> tuple[str, ...]:
    """Image file names directly in `folder`, numeric-aware sorted; () if it has none or is missing."""
    try:
        with os.scandir(folder) as it:
            names = [e.name for e in it if e.name.lower().endswith(FRAME_SUFFIXES) and e.is_file()]
    except (FileNotFoundError, NotADirectoryError):
        return ()
    return tuple(sorted(names, key=natural_key))


def problem_text(path: Path | str, reason: str, fix: str) -> str:
    """The `Sample.problem` of a sample that cannot be extracted: names the item and the fix."""
    return f"{path}: {reason}; fix: {fix}"


def split_problem(problem: str) -> tuple[str, str]:
    """(reason, fix) of a `problem_text`; the fix is "" when the text has none."""
    reason, sep, fix = problem.rpartition("; fix: ")
    return (reason, fix) if sep else (problem, "")


# --------------------------------------------------------------------------- annotation text

UTF8_BOM = b"\xef\xbb\xbf"
DELIMITER_NAMES = {"|": "'|'", "\t": "tab", ",": "','", ";": "';'", " ": "space"}
"""Delimiters a hand-edited annotation file is found with, and how messages name them."""


def read_annotation_lines(path: Path, *, fix: str) -> list[str]:
    """The lines of a UTF-8 annotation file (no line ends, no trailing empty line).

    A leading BOM is dropped (see the module docstring); `fix` is offered when the file
    cannot be read at all. Non-UTF-8 text raises naming the line and the byte offset."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise DatasetError(f"cannot read annotation file ({e.strerror})", path=path, fix=fix) from e
    skip = len(UTF8_BOM) if data.startswith(UTF8_BOM) else 0
    try:
        text = data[skip:].decode("utf-8")
    except UnicodeDecodeError as e:
        raise not_utf8(path, data, skip + e.start) from e
    lines = [line.removesuffix("\r") for line in text.split("\n")]
    if lines[-1] == "":
        lines.pop()
    return lines


def not_utf8(path: Path, data: bytes, offset: int) -> DatasetError:
    """The error for a file whose byte at `offset` is not UTF-8: line, offsets and the iconv fix."""
    line = data.count(b"\n", 0, offset) + 1
    column = offset - (data.rfind(b"\n", 0, offset) + 1) + 1
    q = shlex.quote(str(path))
    return DatasetError(
        f"line {line}: not UTF-8 text (byte 0x{data[offset]:02x} at byte offset {offset} of the file, "
        f"byte {column} of the line); the file was probably saved as Latin-1",
        path=path, fix=f"convert it to UTF-8: iconv -f latin1 -t utf-8 {q} > {q}.utf8 && mv {q}.utf8 {q}")


def other_delimiter(line: str, expected: str, candidates: str = "|\t,;") -> str | None:
    """The delimiter `line` seems to use when `expected` is absent from it; None otherwise."""
    if expected in line:
        return None
    found = max((d for d in candidates if d != expected), key=line.count)
    return found if line.count(found) else None


def delimiter_fix(path: Path, found: str, expected: str) -> str:
    """A pasteable command that rewrites a `found`-separated file `expected`-separated (quotes
    honoured, so a comma inside a quoted sentence stays in the sentence)."""
    q, tmp = shlex.quote(str(path)), shlex.quote(f"{path}.fixed")
    script = (f"import csv,sys; [print({expected!r}.join(r)) for r in csv.reader(open(sys.argv[1], "
              f"encoding='utf-8-sig', newline=''), delimiter={found!r})]")
    return (f"restore the file from the release, or convert it: python3 -c \"{script}\" {q} > {tmp} "
            f"&& mv {tmp} {q}")


def sorted_samples(samples: Iterable[Sample]) -> list[Sample]:
    return sorted(samples, key=lambda s: s.id)


def _frames_record(src: FrameSource, root: Path, mode: str) -> tuple[list, int]:
    if isinstance(src, PngFolder):
        if mode == "content":
            return [[f, _sha256_file(src.dir / f)] for f in src.files], len(src.files)
        return [[f, _size(src.dir / f)] for f in src.files], len(src.files)
    what = _sha256_file(src.path) if mode == "content" else _size(src.path)
    return [_rel(src.path, root), what, src.start, src.end], 1


def _size(path: Path) -> int:
    try:
        return os.stat(path).st_size
    except OSError as e:
        raise DatasetError(f"cannot stat frame file ({e.strerror})", path=path,
                           fix="restore the file, or re-open the dataset after removing the sample") from e


def _sha256_file(path: Path) -> str:
    try:
        return sha256_file(path)
    except OSError as e:
        raise DatasetError(f"cannot read file ({e.strerror})", path=path, fix="restore the file") from e


def _rel(path: Path, root: Path) -> str:
    """Path relative to the dataset root (POSIX form); just the name if it lies elsewhere."""
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return Path(path).name


def _canonical(obj: object) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def claim_once(seen: dict[str, tuple[Path, int]], name: str, path: Path, line: int, *,
               label: str = "sample", noun: str = "sample") -> None:
    """Record that `name` is on `line` of `path`; a name another split already claimed is an error."""
    if name in seen:
        other, other_line = seen[name]
        raise DatasetError(f"line {line}: {label} {name!r} also appears in {other} line {other_line}", path=path,
                           fix=f"a {noun} belongs to one split: delete line {line} of {path} "
                               f"or line {other_line} of {other}")
    seen[name] = (path, line)

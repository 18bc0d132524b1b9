"""PHOENIX-2014-T (release v3) reader; the toy corpus uses the same layout and this code.

Release layout (root = `PHOENIX-2014-T-release-v3/PHOENIX-2014-T/`)::

    annotations/manual/PHOENIX-2014-T.{train,dev,test}.corpus.csv
        '|'-separated, header  name|video|start|end|speaker|orth|translation
    annotations/manual/PHOENIX-2014-T.{split}.translations.json      (optional, slt-pipe)
        {name: {"eng_Latn": "...", "fra_Latn": "..."}}  -> Dataset.references
    features/fullFrame-210x260px/{split}/{name}/images0001.png, images0002.png, ...
    features/fullFrame-256x256px/{split}/{name}/...   (optional: SpaMo's squashed copy, read
        instead of the 210x260 frames when the split's folder exists)

The CSV's `video` column says `{name}/1/*.png` but the release stores the frames directly
in `{name}/`; both are accepted (`{name}/` first, then `{name}/1/`). The root may be given
as `PHOENIX-2014-T/`, as `PHOENIX-2014-T-release-v3/`, or as the folder holding the
latter (what `make_toy` and `slt-pipe make-toy --out DIR` produce).

Everything is validated when the dataset is opened (rows, duplicates, frame folders), so
a long extraction job never fails on an annotation problem. A row whose frame folder is
missing or holds no frames is kept with `Sample.problem` set (skipped and listed by
extraction, see extract/datasets/base.py); a bad CSV (delimiter, header, columns, a name
twice or in two splits, an empty translation, no rows, non-UTF-8 text) still raises,
naming the file, the line and the fix. A UTF-8 BOM is accepted. `validate_frames` checks
the images themselves and reports, rather than raises, so batch jobs can skip bad videos.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

from cache.errors import DatasetError
from extract.datasets.base import (
    DELIMITER_NAMES,
    Dataset,
    PngFolder,
    Sample,
    VideoFile,
    claim_once,
    delimiter_fix,
    list_frame_files,
    other_delimiter,
    problem_text,
    read_annotation_lines,
    sorted_samples,
    split_problem,
)

SOURCE_LANG = "deu_Latn"
HEADER = ("name", "video", "start", "end", "speaker", "orth", "translation")
RELEASE_DIR = "PHOENIX-2014-T-release-v3"
CORPUS_DIR = "PHOENIX-2014-T"
ANNOTATIONS = Path("annotations/manual")
FRAMES = Path("features/fullFrame-210x260px")
FRAMES_256 = Path("features/fullFrame-256x256px")
"""SpaMo's input: the 210x260 frames squashed to 256x256 by the user; read instead when present."""


def corpus_csv(root: Path, split: str) -> Path:
    return root / ANNOTATIONS / f"PHOENIX-2014-T.{split}.corpus.csv"


def translations_json(root: Path, split: str) -> Path:
    return root / ANNOTATIONS / f"PHOENIX-2014-T.{split}.translations.json"


def resolve_root(root: Path) -> Path:
    """The `PHOENIX-2014-T/` folder, whichever of the accepted levels `root` points at."""
    root = Path(root)
    for cand in (root, root / CORPUS_DIR, root / RELEASE_DIR / CORPUS_DIR):
        if (cand / ANNOTATIONS).is_dir():
            return cand
    raise DatasetError(
        f"not a PHOENIX-2014-T release: no {ANNOTATIONS}/ here, in {CORPUS_DIR}/ or in {RELEASE_DIR}/{CORPUS_DIR}/",
        path=root,
        fix=f"pass --root pointing at {RELEASE_DIR}/ (or {RELEASE_DIR}/{CORPUS_DIR}/) of the unpacked release",
    )


def open_phoenix(root: Path, splits: Sequence[str], *, name: str = "phoenix") -> Dataset:
    """Read and validate the requested splits; raises DatasetError on the first bad annotation.

    A sample without frames is kept with `Sample.problem` set (see the module docstring)."""
    base = resolve_root(root)
    samples: dict[str, list[Sample]] = {}
    references: dict[str, dict[str, dict[str, str]]] = {}
    annotation_files: dict[str, list[Path]] = {}
    seen: dict[str, tuple[Path, int]] = {}
    frames_folders: dict[str, str] = {}
    for split in splits:
        csv_path = corpus_csv(base, split)
        rows = read_corpus_csv(csv_path)
        for row_name, (line, _, _) in rows.items():
            claim_once(seen, row_name, csv_path, line)
        # SpaMo reads the 256x256 copy; use it when the user made one for this split.
        frames_rel = FRAMES_256 if (base / FRAMES_256 / split).is_dir() else FRAMES
        frames_dir = base / frames_rel / split
        frames_folders[split] = str(frames_rel / split)
        split_samples = [
            Sample(n, split, text, gloss or None, *_frame_folder(frames_dir, n, csv_path, line))
            for n, (line, gloss, text) in rows.items()
        ]
        samples[split] = sorted_samples(split_samples)
        refs = {SOURCE_LANG: {n: text for n, (_, _, text) in rows.items()}}
        annotation_files[split] = [csv_path]
        tj = translations_json(base, split)
        if tj.is_file():
            for lang, texts in read_translations(tj, set(rows)).items():
                refs.setdefault(lang, {}).update(texts)
            annotation_files[split].append(tj)
        references[split] = refs
    return Dataset(name=name, root=base, source_lang=SOURCE_LANG, samples=samples, references=references,
                   annotation_files=[p for files in annotation_files.values() for p in files],
                   split_annotation_files=annotation_files, frames_folders=frames_folders)


def read_corpus_csv(path: Path) -> dict[str, tuple[int, str, str]]:
    """{name: (line number, orth, translation)} of one corpus CSV, validated row by row.

    Text rules (BOM accepted, UTF-8 only, delimiter, empty split, empty translation) are
    those of every reader: see extract/datasets/base.py."""
    if not path.is_file():
        order = {"train": 0, "dev": 1, "test": 2}
        have = sorted((f.name[len("PHOENIX-2014-T."):-len(".corpus.csv")] for f in path.parent.glob("PHOENIX-2014-T.*.corpus.csv")),
                      key=lambda name: (order.get(name, 3), name))
        hint = f"this release has splits {', '.join(have)}: pass --split {','.join(have)} (or a subset)" if have \
            else "check --root: no PHOENIX-2014-T.*.corpus.csv is in this folder"
        alias = {"validation": "dev", "val": "dev", "eval": "dev"}.get(path.name.split(".")[1])
        raise DatasetError("split annotation file is missing" + (f" (PHOENIX calls that split {alias!r})" if alias else ""),
                           path=path, fix=hint)
    lines = read_annotation_lines(path, fix="restore the file from the release (UTF-8 text)")
    _check_header(path, lines)
    rows: dict[str, tuple[int, str, str]] = {}
    for i, raw in enumerate(lines[1:], start=2):
        if not raw.strip():
            continue
        cols = raw.split("|")
        if len(cols) != len(HEADER):
            found = other_delimiter(raw, "|")
            what = f"the row is {DELIMITER_NAMES[found]}-separated" if found else f"{len(cols)} columns"
            raise DatasetError(f"line {i}: {what}, expected {len(HEADER)} '|'-separated columns", path=path,
                               fix=f"fix or delete line {i} ({'|'.join(HEADER)})")
        name, orth, text = cols[0].strip(), cols[5].strip(), cols[6].strip()
        if not name:
            raise DatasetError(f"line {i}: empty name", path=path, fix=f"fix or delete line {i}")
        if not text:
            raise DatasetError(f"line {i}: empty translation for {name!r}", path=path,
                               fix=f"write the German sentence into the last column of line {i}, or delete the row")
        if name in rows:
            raise DatasetError(f"line {i}: duplicate name {name!r} (first on line {rows[name][0]})", path=path,
                               fix=f"delete line {i} or line {rows[name][0]}")
        rows[name] = (i, orth, text)
    if not rows:
        raise DatasetError("line 1: a header and no rows (an empty split)", path=path,
                           fix="restore the file from the release, or leave this split out of --split")
    return rows


def _check_header(path: Path, lines: list[str]) -> None:
    """Refuse an empty file, another delimiter, or missing columns, saying which."""
    expected = "|".join(HEADER)
    if not lines or not lines[0].strip():
        raise DatasetError("line 1: the file is empty (no header)", path=path,
                           fix=f"restore the file from the release; its first line is {expected}")
    found = other_delimiter(lines[0], "|")
    if found is not None:
        raise DatasetError(f"line 1: the header is {DELIMITER_NAMES[found]}-separated, expected '|'-separated",
                           path=path, fix=delimiter_fix(path, found, "|"))
    cols = tuple(c.strip() for c in lines[0].split("|"))
    if cols != HEADER:
        missing = [c for c in HEADER if c not in cols]
        what = f"lacks column {', '.join(missing)}" if missing else f"is {'|'.join(cols)!r}"
        raise DatasetError(f"line 1: header {what}; expected {expected!r}", path=path,
                           fix=f"restore the file from the release; its header is {expected}")


def read_translations(path: Path, names: set[str]) -> dict[str, dict[str, str]]:
    """{lang: {name: text}} from an optional translations JSON; names not in the split are ignored.

    Same text rules as the CSV (BOM accepted, UTF-8 only, an empty text is an error); a
    name given twice is refused rather than letting the last one win silently."""
    lines = read_annotation_lines(path, fix='write valid JSON {name: {"eng_Latn": "...", ...}} or delete the file')
    try:
        data = json.loads("\n".join(lines), object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as e:
        raise DatasetError(f"line {e.lineno}, column {e.colno}: not valid JSON ({e.msg})", path=path,
                           fix='write valid JSON {name: {"eng_Latn": "...", ...}} or delete the file') from e
    except _DuplicateKey as e:
        raise DatasetError(f"entry {e.args[0]!r} appears twice", path=path, fix="keep one of the two entries") from e
    if not isinstance(data, dict):
        raise DatasetError("translations must be a JSON object {name: {lang: text}}", path=path,
                           fix="rewrite the file in that shape or delete it")
    out: dict[str, dict[str, str]] = {}
    for name, texts in data.items():
        if not isinstance(texts, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in texts.items()):
            raise DatasetError(f"entry {name!r} is not an object of {{lang: text}} strings", path=path,
                               fix="fix that entry or delete the file")
        if name in names:
            for lang, text in texts.items():
                if not text.strip():
                    raise DatasetError(f"entry {name!r}: empty {lang} text", path=path,
                                       fix=f"write the {lang} sentence of {name!r}, or delete that language from it")
                if lang != SOURCE_LANG:
                    out.setdefault(lang, {})[name] = text.strip()
    return out


class _DuplicateKey(Exception):
    """A JSON object key seen twice (raised inside json.loads, turned into a DatasetError)."""


def _unique_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def _frame_folder(frames_dir: Path, name: str, csv_path: Path, line: int) -> tuple[PngFolder, str | None]:
    """The sample's frames, and its problem when it has none (missing or empty folder)."""
    for folder in (frames_dir / name, frames_dir / name / "1"):
        files = list_frame_files(folder)
        if files:
            return PngFolder(folder, files), None
    folder = frames_dir / name
    what = "frame folder has no .png frames" if folder.is_dir() else "frame folder is missing"
    return PngFolder(folder, ()), problem_text(
        folder, f"{what} (sample {name!r}, {csv_path.name} line {line}; also looked in {name}/1/)",
        f"restore {folder} from the release, or delete line {line} from {csv_path}")


# --------------------------------------------------------------------------- frame checks


def validate_frames(dataset: Dataset, deep: bool = False, *, splits: Sequence[str] | None = None,
                    workers: int = 8) -> list[tuple[str, Path, str]]:
    """Problems with the frame files, as (sample id, path, reason); [] when all is well.

    Reports instead of raising so a batch job can skip the bad videos. Shallow checks
    that each file exists and is non-empty; deep also opens every image and runs PIL's
    `verify` (PNG chunk CRCs up to IEND, so truncation and bit rot are caught), and for
    mp4s opens the container and decodes its first frame. Files are checked on a thread
    pool because the work is I/O bound.
    """
    jobs: list[tuple[str, Path, bool]] = []
    known: list[tuple[str, Path, str]] = []
    for split in splits if splits is not None else list(dataset.samples):
        for s in dataset._split(split):
            if s.problem is not None:  # the reader found it already: nothing on disk to check
                where = s.frames.dir if isinstance(s.frames, PngFolder) else s.frames.path
                known.append((s.id, where, split_problem(s.problem)[0]))
            elif isinstance(s.frames, PngFolder):
                jobs.extend((s.id, p, True) for p in s.frames.paths())
            else:
                jobs.append((s.id, s.frames.path, False))
    check = _check_deep if deep else _check_shallow
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        reasons = list(pool.map(lambda j: check(j[1], j[2]), jobs))
    return known + [(sid, path, r) for (sid, path, _), r in zip(jobs, reasons) if r is not None]


def _check_shallow(path: Path, is_image: bool) -> str | None:
    try:
        size = path.stat().st_size
    except OSError as e:
        return f"cannot stat: {e.strerror}"
    return "empty file" if size == 0 else None


def _check_deep(path: Path, is_image: bool) -> str | None:
    if (shallow := _check_shallow(path, is_image)) is not None:
        return shallow
    if not is_image:
        return _check_video(path)
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.verify()
    except Exception as e:  # PIL raises OSError, SyntaxError, ValueError... for bad files
        return f"unreadable image: {type(e).__name__}: {e}"
    return None


def _check_video(path: Path) -> str | None:
    from extract.vision.decode import read_frames

    try:
        read_frames(VideoFile(path), max_frames=1)
    except DatasetError as e:
        return e.problem
    return None

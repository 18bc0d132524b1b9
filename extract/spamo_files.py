"""SpaMo's feature files: their names in every layout, detection, checked reading, writing.

SpaMo (scripts/vit_extract_feature.py and scripts/mae_extract_feature.py, commit 04bbfbe) keeps
one float32 .npy per video and stream (shared/reference.md, "SpaMo's feature files"):

    {DIR}/clip-vit-large-patch14_feat_{DS}/{split}/{fileid}_s2wrapping.npy   [frames, 2048]
    {DIR}/mae_feat_{DS}/{split}/{fileid}_overlap-8.npy                      [clips, 1024]

DS is Phoenix14T, CSL-Daily or How2Sign; How2Sign names carry `_{start}` (START_REALIGNED)
before the suffix, and its val split is saved as `dev`. Users also hold the same folders
without suffixes or with `_overlap-8-pretrained` (SpaMo's training config), and the
authors' release `PHOENIX14T/spa_feat_p14t/{split}/{fileid}.npy` + `mo_feat_p14t/...`.
`detect_layout` finds which one a folder holds from the dataset's own ids, so no layout
is guessed from one file name.

Reading checks each video as SpaMo's procedure made it (`check_video`): both files, the
widths of the paper recipe, a clip count that follows from the frame count (16-frame
windows every 8 frames, a video under 16 frames padded to one clip), finite values. A
video that fails is one (id, reason, fix) the caller lists and skips: the project's
skip-and-list policy. The fix names the SpaMo command that makes the file.
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from cache.errors import DatasetError, SltPipeError
from cache.files import write_atomic

SPATIAL_WIDTH = 2048
"""CLIP ViT-L/14's class token at scales 1 and 2 (S2), concatenated."""
MOTION_WIDTH = 1024
"""VideoMAE-L's first token."""
CLIP_LEN, CLIP_STRIDE = 16, 8
NPY_MAGIC = b"\x93NUMPY"
SPATIAL_MODEL = "clip-vit-large-patch14"
"""The last part of SpaMo's --model_name, which names its spatial folder."""
DS_NAMES = {"phoenix": "Phoenix14T", "toy": "Phoenix14T", "csl-daily": "CSL-Daily", "how2sign": "How2Sign"}
"""slt-pipe dataset -> SpaMo's DS (the last folder name of its --anno_root)."""
SPLIT_FOLDERS = {"train": ("train",), "dev": ("dev", "val"), "val": ("dev", "val"), "test": ("test",)}
"""slt-pipe split -> SpaMo's output folder names for it, the one its scripts write first."""
SCRIPT = {"spatial": "scripts/vit_extract_feature.py", "motion": "scripts/mae_extract_feature.py"}
SCRIPT_ARGS = {"spatial": "--s2_mode s2wrapping --scales 1 2", "motion": "--overlap_size 8"}
WIDTHS = {"spatial": SPATIAL_WIDTH, "motion": MOTION_WIDTH}
WIDTH_WHY = {"spatial": "CLIP ViT-L/14's class token at S2 scales 1 and 2 (SpaMo's --s2_mode s2wrapping --scales 1 2)",
             "motion": "VideoMAE-L's first token (SpaMo's mae_extract_feature.py)"}
STREAMS = ("spatial", "motion")


def clip_count(frames: int) -> int:
    """VideoMAE clips SpaMo makes of a `frames`-frame video (extract.vision.streams.clip_count's rule)."""
    from extract.vision.streams import clip_count as count

    return count(frames, CLIP_LEN, CLIP_STRIDE)


# --------------------------------------------------------------------------- layouts


@dataclass(frozen=True)
class Layout:
    """One naming of SpaMo's files: where each stream's `{split}/` folders are and how files are named."""

    name: str
    spatial_dir: Path
    motion_dir: Path
    spatial_postfix: str
    motion_postfix: str
    timed: bool = False
    """How2Sign: `_{start}` before the postfix."""

    def folder(self, stream: str) -> Path:
        return self.spatial_dir if stream == "spatial" else self.motion_dir

    def postfix(self, stream: str) -> str:
        return self.spatial_postfix if stream == "spatial" else self.motion_postfix

    def pattern(self, stream: str) -> str:
        start = "_{start}" if self.timed else ""
        return f"{self.folder(stream)}/{{split}}/{{fileid}}{start}{self.postfix(stream)}.npy"

    def describe(self) -> str:
        """The one line `import-features` reports."""
        return f"SpaMo layout: {self.name} ({self.pattern('spatial')}, {self.pattern('motion')})"

    def to_json(self, root: Path) -> dict[str, Any]:
        def rel(p: Path) -> str:
            return os.path.relpath(p, root)

        return {"name": self.name, "spatial": f"{rel(self.spatial_dir)}/{{split}}/{{fileid}}"
                f"{'_{start}' if self.timed else ''}{self.spatial_postfix}.npy",
                "motion": f"{rel(self.motion_dir)}/{{split}}/{{fileid}}{'_{start}' if self.timed else ''}"
                f"{self.motion_postfix}.npy"}


def candidate_layouts(root: Path, dataset: str) -> list[Layout]:
    """Every layout SpaMo's files may have under `root` for `dataset`, most specific first."""
    ds = ds_name(dataset)
    timed = ds == "How2Sign"
    script = (root / f"{SPATIAL_MODEL}_feat_{ds}", root / f"mae_feat_{ds}")
    out = [Layout("script output", *script, "_s2wrapping", "_overlap-8", timed),
           Layout("script output, SpaMo's training names", *script, "_s2wrapping", "_overlap-8-pretrained", timed),
           Layout("script output without suffixes", *script, "", "", timed)]
    if ds == "Phoenix14T":
        for base in (root / "PHOENIX14T", root):
            released = (base / "spa_feat_p14t", base / "mo_feat_p14t")
            out += [Layout("released features", *released, "", ""),
                    Layout("released features, SpaMo's training names", *released, "_s2wrapping",
                           "_overlap-8-pretrained")]
    return out


def ds_name(dataset: str) -> str:
    try:
        return DS_NAMES[dataset]
    except KeyError:
        raise SltPipeError(f"SpaMo has no feature files for dataset {dataset!r}",
                           fix=f"use one of: {', '.join(DS_NAMES)}") from None


def split_dir(layout: Layout, stream: str, split: str) -> Path:
    """The folder of `split` (How2Sign's dev: SpaMo writes `dev`; a `val` folder is read too)."""
    names = SPLIT_FOLDERS.get(split, (split,))
    for name in names:
        d = layout.folder(stream) / name
        if d.is_dir():
            return d
    return layout.folder(stream) / names[0]


def index_folder(folder: Path, postfix: str, timed: bool) -> dict[str, str]:
    """fileid -> file name of the `{fileid}[_{start}]{postfix}.npy` files in `folder` (one listing)."""
    out: dict[str, str] = {}
    try:
        names = os.listdir(folder)
    except (FileNotFoundError, NotADirectoryError):
        return out
    tail = f"{postfix}.npy"
    for name in names:
        if not name.endswith(tail):
            continue
        stem = name[: -len(tail)]
        if timed:
            stem, _, start = stem.rpartition("_")
            if not stem or not _is_number(start):
                continue
        out.setdefault(stem, name)
    return out


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


@dataclass
class SplitFiles:
    """The files of one split in a layout: fileid -> path, per stream."""

    layout: Layout
    split: str
    found: dict[str, dict[str, Path]]

    def path(self, stream: str, video_id: str) -> Path | None:
        return self.found[stream].get(video_id)

    def expected(self, stream: str, video_id: str) -> Path:
        """Where the file of a missing video would be (named in its message)."""
        start = "_{start}" if self.layout.timed else ""
        return split_dir(self.layout, stream, self.split) / f"{video_id}{start}{self.layout.postfix(stream)}.npy"


def split_files(layout: Layout, split: str) -> SplitFiles:
    found = {}
    for stream in STREAMS:
        d = split_dir(layout, stream, split)
        found[stream] = {k: d / v for k, v in index_folder(d, layout.postfix(stream), layout.timed).items()}
    return SplitFiles(layout, split, found)


def detect_layout(root: Path, dataset: str, ids: dict[str, list[str]]) -> Layout:
    """The layout under `root` that holds the most of the dataset's videos (`ids`: split -> ids)."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError("SpaMo feature folder " + ("is not a directory" if root.exists() else "does not exist"),
                           path=root, fix="pass the --save_dir of SpaMo's extraction scripts, or the folder holding "
                           "PHOENIX14T/")
    best, best_hits = None, 0
    for layout in candidate_layouts(root, dataset):
        if not (layout.spatial_dir.is_dir() or layout.motion_dir.is_dir()):
            continue
        hits = 0
        for split, names in ids.items():
            files = split_files(layout, split)
            hits += sum(n in files.found["spatial"] for n in names) + sum(n in files.found["motion"] for n in names)
        if hits > best_hits:
            best, best_hits = layout, hits
    if best is None:
        script = candidate_layouts(root, dataset)[0]
        raise DatasetError(f"no SpaMo feature files of {dataset}'s {', '.join(ids)} videos found: looked for "
                           f"{script.pattern('spatial')} and the other namings SpaMo's files have; "
                           f"found {_found_instead(root, candidate_layouts(root, dataset), ids)}",
                           path=root, fix=f"pass the --save_dir of SpaMo's {SCRIPT['spatial']} and {SCRIPT['motion']} "
                           f"for this dataset (the folder holding {script.spatial_dir.name}/ and "
                           f"{script.motion_dir.name}/), or the folder holding the released PHOENIX14T/")
    return best


def _found_instead(root: Path, layouts: list[Layout], ids: dict[str, list[str]], few: int = 4) -> str:
    """A few names of what `root` holds where the dataset's files were looked for: the files of the
    first layout folder that exists (another corpus's videos), else the top-level entries."""
    for layout in layouts:
        for split in ids:
            d = split_dir(layout, "spatial", split)
            names = sorted(os.listdir(d)) if d.is_dir() else []
            if names:
                more = f" (and {len(names) - few} more)" if len(names) > few else ""
                return (f"{len(names)} file(s) in {d} but none of this dataset's videos: "
                        f"{', '.join(names[:few])}{more} (e.g. {ids[split][0] if ids[split] else '?'} is missing)")
    names = sorted(os.listdir(root))
    if not names:
        return "an empty folder"
    more = f" (and {len(names) - few} more)" if len(names) > few else ""
    return f"{', '.join(n + ('/' if (root / n).is_dir() else '') for n in names[:few])}{more}"


# --------------------------------------------------------------------------- reading and checking


@dataclass
class VideoFeatures:
    """One video read from SpaMo's files: float32 arrays and the sha256 of each file read."""

    id: str
    spatial: np.ndarray
    motion: np.ndarray
    sha256: dict[str, str]
    """file path -> sha256 of its bytes."""


class FileProblem(Exception):
    """One file that cannot be imported: the (reason, fix) of its video's failure."""

    def __init__(self, reason: str, fix: str):
        super().__init__(reason)
        self.reason, self.fix = reason, fix


def spamo_command(stream: str, dataset: str, save_dir: Path) -> str:
    """The SpaMo command that writes `stream`'s files (named in a missing or bad file's fix)."""
    return (f"python {SCRIPT[stream]} --anno_root ANNO_ROOT/{ds_name(dataset)} --video_root VIDEO_ROOT "
            f"--save_dir {save_dir} {SCRIPT_ARGS[stream]} (SpaMo's repository)")


def read_npy(path: Path) -> tuple[np.ndarray, str]:
    """(array, sha256 of the file's bytes); a truncated or foreign file is a FileProblem naming it."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise FileProblem(f"{path}: cannot read ({e.strerror})", "restore the file") from None
    digest = hashlib.sha256(data).hexdigest()
    if not data.startswith(NPY_MAGIC):
        raise FileProblem(f"{path}: not a .npy file (it starts with {data[:8]!r}, a .npy file with {NPY_MAGIC!r})", "")
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, EOFError, OSError) as e:
        raise FileProblem(f"{path}: {_npy_damage(data, e)}", "") from None
    if not isinstance(array, np.ndarray):
        raise FileProblem(f"{path}: not a single .npy array", "")
    return array, digest


def _npy_damage(data: bytes, error: BaseException) -> str:
    """What is wrong with bytes np.load refused: a cut-off array says how much of it is there."""
    from numpy.lib import format as npy

    f = io.BytesIO(data)
    try:
        version = npy.read_magic(f)
        header = npy.read_array_header_1_0(f) if version == (1, 0) else npy.read_array_header_2_0(f)
    except (ValueError, EOFError, OSError):
        return "a .npy file whose header cannot be read"
    shape, _, dtype = header
    if dtype.hasobject:  # numpy's advice (allow_pickle=True) would run code from the file: never given
        return f"a .npy file of Python objects ({dtype}), not of numbers: SpaMo's files hold float32 arrays"
    want = int(np.prod(shape)) * dtype.itemsize
    have = len(data) - f.tell()
    if have < want:
        return (f"truncated .npy file: {have} of the {want} bytes its header declares "
                f"({dtype} {tuple(shape)}) are there")
    return f"unreadable .npy file ({type(error).__name__})"


def check_video(video_id: str, frames: int | None, files: SplitFiles, dataset: str, save_dir: Path) -> VideoFeatures:
    """Read one video's two files and check them against SpaMo's procedure; FileProblem otherwise.

    `frames`: the video's frame count when the dataset knows it without decoding (frame folders),
    else None (the spatial rows are then the frame count)."""
    arrays, digests = {}, {}
    for stream in STREAMS:
        path = files.path(stream, video_id)
        if path is None:
            expected = files.expected(stream, video_id)
            raise FileProblem(f"no SpaMo {stream} file {expected}",
                              f"make it with {spamo_command(stream, dataset, save_dir)}, or restore it")
        try:
            array, digest = read_npy(path)
        except FileProblem as e:
            raise FileProblem(e.reason, e.fix or f"re-make it with {spamo_command(stream, dataset, save_dir)}, "
                              "or restore it") from None
        _check_array(stream, path, array, dataset, save_dir)
        arrays[stream], digests[str(path)] = np.ascontiguousarray(array, dtype=np.float32), digest
    _check_counts(files, video_id, frames, arrays, dataset, save_dir)
    return VideoFeatures(video_id, arrays["spatial"], arrays["motion"], digests)


def _check_array(stream: str, path: Path, array: np.ndarray, dataset: str, save_dir: Path) -> None:
    remake = f"re-make it with {spamo_command(stream, dataset, save_dir)}"
    if array.ndim != 2 or array.shape[1] != WIDTHS[stream]:
        raise FileProblem(f"{path}: {stream} array of shape {list(array.shape)}, expected [rows, {WIDTHS[stream]}] "
                          f"({WIDTH_WHY[stream]})", remake)
    if not np.issubdtype(array.dtype, np.floating):
        raise FileProblem(f"{path}: {array.dtype} values, expected float32", remake)
    if not array.shape[0]:
        raise FileProblem(f"{path}: no rows", remake)
    bad = int(array.size - np.count_nonzero(np.isfinite(array)))
    if bad:
        raise FileProblem(f"{path}: {bad} non-finite values (NaN or inf)", remake)


def _check_counts(files: SplitFiles, video_id: str, frames: int | None, arrays: dict[str, np.ndarray],
                  dataset: str, save_dir: Path) -> None:
    rows = arrays["spatial"].shape[0]
    if frames is not None and rows != frames:
        raise FileProblem(f"{files.path('spatial', video_id)}: {rows} frames, the video has {frames}",
                          f"the file is of another video or version of it: re-make it with "
                          f"{spamo_command('spatial', dataset, save_dir)}")
    clips, want = arrays["motion"].shape[0], clip_count(frames if frames is not None else rows)
    if clips != want:
        raise FileProblem(f"{files.path('motion', video_id)}: {clips} clips, SpaMo's windowing (16-frame clips "
                          f"every 8 frames, a video under 16 frames padded) gives {want} for "
                          f"{frames if frames is not None else rows} frames",
                          f"re-make it with {spamo_command('motion', dataset, save_dir)}")


def digest_files(files: SplitFiles, ids: Iterable[str], root: Path) -> tuple[str, dict[str, str]]:
    """(sha256 over every file of the split's videos, relative path -> sha256 of each), read in chunks.

    Why a pass of its own: the entry's key must be known before it is built, and holding every
    array of a split in memory would take gigabytes. A missing file is part of the identity."""
    from cache.keys import sha256_file

    listing: dict[str, str] = {}
    h = hashlib.sha256()
    for vid in sorted(ids):
        for stream in STREAMS:
            path = files.path(stream, vid)
            rel = os.path.relpath(path if path is not None else files.expected(stream, vid), root)
            try:
                digest = sha256_file(path) if path is not None else "missing"
            except OSError:
                digest = "unreadable"
            listing[rel] = digest
            h.update(f"{vid}\t{stream}\t{rel}\t{digest}\n".encode())
    return h.hexdigest(), listing


# --------------------------------------------------------------------------- writing (export)


def export_paths(out: Path, dataset: str, split: str, video_id: str, start: str | None = None) -> tuple[Path, Path]:
    """(spatial, motion) paths of one video in SpaMo's script layout under `out`."""
    ds = ds_name(dataset)
    timed = f"_{start}" if start is not None else ""
    folder = SPLIT_FOLDERS.get(split, (split,))[0]
    return (out / f"{SPATIAL_MODEL}_feat_{ds}" / folder / f"{video_id}{timed}_s2wrapping.npy",
            out / f"mae_feat_{ds}" / folder / f"{video_id}{timed}_overlap-8.npy")


def write_npy(path: Path, array: np.ndarray) -> None:
    """np.save of a float32 C-ordered array, as SpaMo's scripts save (temp file + rename: never half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.save(f, np.ascontiguousarray(array, dtype=np.float32))

    write_atomic(path, write, fsync=False)


def how2sign_starts(annotation_files: list[Path]) -> dict[str, str]:
    """SENTENCE_NAME -> `str(START_REALIGNED)` as SpaMo's scripts put it in file names (a float's str)."""
    from extract.datasets.how2sign import read_realigned_csv

    out: dict[str, str] = {}
    for path in annotation_files:
        for _, row in read_realigned_csv(path):
            out[row["SENTENCE_NAME"]] = str(float(row["START_REALIGNED"]))
    return out


# --------------------------------------------------------------------------- what the files declare


def declared_recipe(layout: Layout, dataset: str) -> dict[str, Any]:
    """The recipe SpaMo's file names and widths declare (its paper recipe), for the entry's key and
    manifest: what the features are, though slt-pipe did not compute them (no weight hashes exist)."""
    phoenix = ds_name(dataset) == "Phoenix14T"
    return {
        "streams": [
            {"name": "clip", "kind": "frame", "model": "openai/clip-vit-large-patch14",
             "token": "class token of hidden_states[-1] (before post_layernorm)", "scales": [1, 2],
             "width": SPATIAL_WIDTH, "postfix": layout.spatial_postfix},
            {"name": "videomae", "kind": "clip", "model": "MCG-NJU/videomae-large",
             "token": "hidden_states[-1][:, 0] (before the final LayerNorm)", "clip_len": CLIP_LEN,
             "clip_stride": CLIP_STRIDE, "width": MOTION_WIDTH, "postfix": layout.motion_postfix},
        ],
        "recipe": {"source": "SpaMo's scripts/vit_extract_feature.py and scripts/mae_extract_feature.py (04bbfbe), "
                             "as the files' names and widths declare; imported, not recomputed",
                   "squash": "256x256 (SpaMo's fullFrame-256x256px)" if phoenix else "none",
                   "weights": "not recorded in SpaMo's files"},
    }


def stream_layout() -> list[dict[str, Any]]:
    """Which columns each encoder fills (the store's `streams` attr, as extraction records it)."""
    return [{"name": "clip", "kind": "frame", "array": "spatial", "columns": [0, SPATIAL_WIDTH]},
            {"name": "videomae", "kind": "clip", "array": "motion", "columns": [0, MOTION_WIDTH]}]


def spamo_recipe_mismatch(attrs: dict[str, Any]) -> str | None:
    """Why a features store is not SpaMo's recipe (None: it is): CLIP then VideoMAE, by identity, with
    S2 scales [1, 2], 16/8 clips and the first token, at SpaMo's widths. Widths alone are not enough:
    DINOv3 + V-JEPA 2 at 1024 wide fill the same shapes with other features."""
    streams = (attrs.get("models") or {}).get("streams") or []
    found = [f"{s.get('name')} ({s.get('model', '?')})" for s in streams]
    if [s.get("name") for s in streams] != ["clip", "videomae"]:
        return f"it holds the streams {', '.join(found) or 'of an unknown recipe'}; SpaMo's are clip, videomae"
    recipe = {"spatial_scales": [1, 2], "clip_len": CLIP_LEN, "clip_stride": CLIP_STRIDE, "motion_pool": "first"}
    other = {k: attrs.get(k) for k, v in recipe.items() if attrs.get(k) != v}
    if other:
        return (f"its recipe has {', '.join(f'{k} = {v}' for k, v in other.items())}; SpaMo's has "
                f"{', '.join(f'{k} = {recipe[k]}' for k in other)}")
    widths = [s.get("width") for s in streams]
    if widths != [SPATIAL_WIDTH, MOTION_WIDTH]:
        return f"its streams are {widths[0]} / {widths[1]} wide; SpaMo's are {SPATIAL_WIDTH} / {MOTION_WIDTH}"
    return None

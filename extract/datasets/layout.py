"""What a dataset release holds, split by split, found without extracting anything (`slt-pipe doctor`).

`check_layout` opens the splits with the readers extraction uses and counts their frames
(mp4s by their headers only, a sample of them when there are many), so the facts doctor
reports are the readers' own, never a second reading of the release layout.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from cache.errors import DatasetError, SltPipeError
from extract.datasets.base import PngFolder, Sample

MP4_SAMPLE = 200
"""mp4 datasets: frame counts are read from this many containers and extrapolated beyond it."""


@dataclass
class SplitLayout:
    split: str
    samples: list[Sample] = field(default_factory=list)
    frames: list[int] = field(default_factory=list)
    """Frames per sample, in `samples` order (0: none; see `frame_counts`)."""
    estimated: bool = False
    """Some mp4s' counts are the probed ones' mean."""
    folder: str = ""
    """The frame folder read, relative to the root ("" when the reader names none)."""
    error: DatasetError | None = None
    """Why the split does not open (its samples are then empty)."""
    gaps: tuple[int, int, list[str]] | None = None
    """PHOENIX layout, split that does not open: (frame folders missing or empty, samples, the first few)."""

    @property
    def problems(self) -> list[Sample]:
        """Samples the reader kept with a problem: extraction skips and lists them."""
        return [s for s in self.samples if s.problem]

    @property
    def empty(self) -> list[str]:
        """Ids of samples without frames."""
        return [s.id for s, n in zip(self.samples, self.frames) if n == 0]


@dataclass
class Layout:
    name: str
    root: Path
    """The resolved release folder (the given root when the dataset does not open)."""
    splits: list[SplitLayout]
    error: DatasetError | None = None
    """A problem across splits (each opens alone, together they do not: e.g. an id in two splits)."""
    with_256: list[str] | None = None
    """PHOENIX: the splits read from SpaMo's fullFrame-256x256px copy (None for other datasets) ..."""
    without_256: list[str] | None = None
    """... and those read from the 210x260 frames."""


def check_layout(name: str, root: Path, splits: Sequence[str], *, fps: float | None = None) -> Layout:
    """Open `splits` of dataset `name` at `root` together, else one by one to tell which fails."""
    from extract.datasets import open_dataset

    try:
        ds = open_dataset(name, root, splits)
    except DatasetError as whole:
        ds, first_error = None, whole
    out: list[SplitLayout] = []
    if ds is not None:
        out = [SplitLayout(s, ds.samples[s], folder=ds.frames_folders.get(s, "")) for s in splits]
    else:
        for s in splits:
            try:
                one = open_dataset(name, root, [s])
                out.append(SplitLayout(s, one.samples[s], folder=one.frames_folders.get(s, "")))
            except DatasetError as err:
                gaps = phoenix_layout_gaps(Path(root), s) if name in ("phoenix", "toy") else None
                out.append(SplitLayout(s, error=err, gaps=gaps))
        if not any(s.error for s in out):  # each split opens alone: the problem is across splits
            return Layout(name, Path(root), [], first_error)
    for s in out:
        if s.error is None:
            s.frames, s.estimated = frame_counts(s.samples, fps)
    layout = Layout(name, ds.root if ds is not None else Path(root), out)
    if name == "phoenix":
        from extract.datasets.phoenix import FRAMES_256

        folders = {s.split: s.folder for s in out if s.error is None}
        layout.with_256 = [s for s, f in folders.items() if f.startswith(str(FRAMES_256))]
        layout.without_256 = [s for s in folders if s not in layout.with_256]
    return layout


def phoenix_layout_gaps(root: Path, split: str) -> tuple[int, int, list[str]] | None:
    """(missing or empty frame folders, samples, first few folders) of one PHOENIX-layout split, or
    None when its CSV cannot be read (the reader's own error says why)."""
    from extract.datasets.base import list_frame_files
    from extract.datasets.phoenix import FRAMES, FRAMES_256, corpus_csv, read_corpus_csv, resolve_root

    try:
        base = resolve_root(root)
        rows = read_corpus_csv(corpus_csv(base, split))
    except SltPipeError:
        return None
    frames_dir = base / (FRAMES_256 if (base / FRAMES_256 / split).is_dir() else FRAMES) / split
    bad = [str(frames_dir / n) for n in rows
           if not (list_frame_files(frames_dir / n) or list_frame_files(frames_dir / n / "1"))]
    return len(bad), len(rows), bad[:5]


def frame_counts(samples: Sequence[Sample], fps: float | None) -> tuple[list[int], bool]:
    """Frames per sample: exact for frame folders; mp4s are probed (headers only), a sample of
    them when there are many, and the mean is used for the rest (returns estimated=True)."""
    from extract.vision.decode import count_frames

    counts: list[int | None] = [len(s.frames.files) if isinstance(s.frames, PngFolder) else None for s in samples]
    videos = [i for i, c in enumerate(counts) if c is None]
    estimated = False
    if videos:
        step = max(1, len(videos) // MP4_SAMPLE)
        probed: dict[int, int] = {}
        for i in videos[::step]:
            try:
                probed[i] = count_frames(samples[i].frames, fps=fps)
            except SltPipeError:
                probed[i] = 0  # a bad video: extract skips it (and reports it)
        mean = round(sum(probed.values()) / max(1, len(probed)))
        estimated = len(probed) < len(videos)
        for i in videos:
            counts[i] = probed.get(i, mean)
    return [int(c or 0) for c in counts], estimated

"""Decode a sample's frames into one uint8 array [T, H, W, 3] (RGB): frame folders with PIL, mp4s with PyAV.

Which frames come back is a pure function of the files (never of decode timing, threads or
the run), so features are reproducible; every failure is a `DatasetError` naming the file, so
the runner records the video and goes on. The exact rules are on `read_frames`.
"""

from __future__ import annotations

import contextlib
import math
import threading
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextvars import ContextVar
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from cache.errors import DatasetError
from extract.datasets.base import FrameSource, PngFolder, VideoFile, source_path

_ONE_VIDEO: ContextVar[bool] = ContextVar("slt_pipe_one_video", default=False)
"""Set by `one_video()`: the source is a video the user passed, not a sample of a dataset."""


@contextlib.contextmanager
def one_video():
    """Errors raised inside speak of the one video the user passed (`translate --video`), not of a
    dataset's sample that extraction could skip: their fixes never say 'drop the sample'."""
    token = _ONE_VIDEO.set(True)
    try:
        yield
    finally:
        _ONE_VIDEO.reset(token)


def _fix(dataset: str, one: str) -> str:
    """The fix for a sample of a dataset, or for the one video of `one_video()`."""
    return one if _ONE_VIDEO.get() else dataset


def _fix_image() -> str:
    return _fix("restore the frame from the release (or re-extract the video's frames), or drop the sample",
                "re-extract the video's frames (or replace the unreadable one)")


def _fix_video() -> str:
    return _fix("re-download or re-encode the mp4 (e.g. ffmpeg -i in.mp4 -c:v libx264 out.mp4), or drop the sample",
                "re-encode the video (e.g. ffmpeg -i in.mp4 -c:v libx264 out.mp4), or pass another one")


_FIX_FPS = "pass a positive rate, e.g. --set extract.fps=25, or leave extract.fps unset to keep the native rate"
_DEFAULT_RATE = Fraction(25)  # a header without a frame rate (and too few frames to measure one)
# Seconds before a window's start to seek to, in turn, until decoding starts at or before it.
_SEEK_BACK = (Fraction(0), Fraction(1), Fraction(4), Fraction(16))


def read_frames(src: FrameSource, *, fps: float | None = None, max_side: int | None = None,
                max_frames: int | None = None) -> np.ndarray:
    """All frames of `src` as uint8 [T, H, W, 3].

    Frame folders (PHOENIX, CSL-Daily, toy) are read file by file as stored (`fps` is ignored:
    their native rate is the dataset's). mp4s (How2Sign) are seeked to the window start and
    decoding stops at its end, so a sentence cut from a long video costs only its own frames.
    The mp4 rules, all in exact fractions (issue #15: a count that changed between runs came
    from reading the stream after its container was closed):

    - A frame's time is `pts * time_base`. `fps` and window bounds are taken as the decimals they
      print as (`29.97` is 2997/100), then rounded to the nearest tick of the time base, so a
      bound written as a frame's time means that frame.
    - Window [start, end): the frames with start <= time < end (None: open). A seek that lands
      past `start` (a keyframe its B-frames delay) is redone earlier, so keyframes never decide
      a window's first frame. A window is never clipped: one ending more than a frame past the
      container's duration is an error (How2Sign's overrunning END times).
    - `fps=None` keeps every native frame. A number resamples by frame selection (no blending):
      with t0, t1 the first and last frame's times and d the median frame step, one output frame
      per instant t0 + k/fps < t1 + d, each the latest frame at or before its instant.
    - Header values are copied out while the container is open (`_StreamInfo`).

    `max_side` shrinks frames whose longer side exceeds it (aspect kept; never enlarges),
    which saves memory on 1280x720 video when the model wants 224 px anyway. `max_frames`
    stops early (used by cheap validity checks; no resampling then).
    """
    frames = _read(src, fps, max_side, max_frames, _Stacked())
    if frames.shape[0] == 0:
        _no_frames(src)
    return frames


Prepare = Callable[[np.ndarray], Mapping[Any, np.ndarray]]
"""uint8 [T, H, W, 3] -> {key: uint8 [T, ...]}, frame by frame (a model recipe's `prepare`)."""

STREAM_CHUNK = 16
"""Frames prepared at a time by `read_prepared` (16 full 720p RGB frames: 44 MB)."""
STREAM_WORKERS = 2
"""Threads `read_prepared` prepares chunks on while the calling thread decodes."""


def read_prepared(src: FrameSource, prepare: Prepare, *, fps: float | None = None, max_side: int | None = None,
                  chunk: int = STREAM_CHUNK, workers: int = STREAM_WORKERS) -> dict[Any, np.ndarray]:
    """`prepare(read_frames(src, fps=fps, max_side=max_side))`, byte for byte, streamed.

    `prepare` must work frame by frame (preparing chunks and concatenating each key's arrays
    equals preparing all frames at once, as the recipes' resizes and crops do). It is called
    on chunks of `chunk` decoded frames, in decode order, on `workers` threads while the
    calling thread goes on decoding (0: in the calling thread, in turn); at most `workers` + 1
    chunks wait or run at a time, so memory is bounded by chunks, not by the video. The
    prepared frames are then put in pts order and resampled to `fps` (frame selection, which
    a per-frame prepare commutes with). The same errors as `read_frames`, in the same order;
    whatever `prepare` raises is raised as is.
    """
    if chunk < 1:
        raise ValueError("chunk must be >= 1")
    sink = _Streamed(prepare, chunk, workers)
    try:
        views = _read(src, fps, max_side, None, sink)
    except _PrepareFailed as e:
        raise e.error from None  # with its own traceback, from the thread that prepared
    except _ConvertFailed as e:
        raise DatasetError(f"corrupt or truncated video ({e.error})", path=src.path, fix=_fix_video()) from e.error
    finally:
        sink.close()
    if sink.frames == 0:
        _no_frames(src)
    return views


def _read(src: FrameSource, fps: float | None, max_side: int | None, max_frames: int | None, sink: _Sink) -> Any:
    out_rate = _output_rate(fps)
    if isinstance(src, PngFolder):
        return _read_folder(src, max_side, max_frames, sink)
    if isinstance(src, VideoFile):
        return _read_video(src, out_rate, max_side, max_frames, sink)
    raise TypeError(f"not a frame source: {type(src).__name__}")


def _no_frames(src: FrameSource) -> None:
    raise DatasetError("video has no frames" + _window_text(src), path=source_path(src),
                       fix=_fix("check the file / folder (and for a window, its start and end times) or drop the sample",
                                "check the file / folder: it must hold at least one frame"))


def count_frames(src: FrameSource, *, fps: float | None = None) -> int:
    """Frame count without decoding: exact for frame folders; for mp4s, from the header.

    The header's frame count (or duration), average rate, start time and time base describe
    a constant-rate grid of frame times (each rounded to the time base, as muxers write
    them); the window and resampling rules of `read_frames` are applied to that grid. So for
    a constant-rate mp4 with a true header (what encoders write) this equals
    `len(read_frames(...))`; for variable-rate video, dropped frames or a wrong header it is
    an ESTIMATE that can be a few frames off. Use it for progress and planning, never for
    indexing.
    """
    out_rate = _output_rate(fps)
    if isinstance(src, PngFolder):
        return len(src.files)
    av = _av()
    bounds = _window(src)
    container = _open_container(src.path)
    try:
        stream = _video_stream(container, src.path)
        info = _stream_info(container, stream, src.path, av)
        start, end = (_on_tick(x, info.time_base) for x in bounds)
        total = info.frames or _frames_in_duration(info) or _count_packets(container, stream, src.path, av)
    finally:
        container.close()
    grid = _Grid(info, total)
    first = 0 if start is None else grid.first_at_or_after(start)
    stop = total if end is None else grid.first_at_or_after(end)
    if out_rate is None or stop <= first:
        return max(0, stop - first)
    pts = [grid.pts(i) for i in range(first, stop)]
    return _resampled_count((pts[-1] - pts[0]) * info.time_base + _frame_step(pts, info), out_rate)


def _output_rate(fps: float | None) -> Fraction | None:
    if fps is None:
        return None
    try:
        value = float(fps)
    except (TypeError, ValueError):
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise DatasetError(f"fps must be a positive number, got {fps!r}", fix=_FIX_FPS)
    return _decimal(value)


def _decimal(x: float) -> Fraction:
    """`x` as the decimal it prints as (0.1 -> 1/10): what the user wrote, not its binary neighbour."""
    return Fraction(repr(float(x)))


# --------------------------------------------------------------------------- where decoded frames go


class _Sink:
    """Receives decoded frames in decode order; `result(index)` gives the frames at `index` (None: all, in order)."""

    frames = 0
    _reformatter: Any = None

    def add(self, frame: np.ndarray) -> None:
        raise NotImplementedError

    def add_video(self, frame: Any, size: tuple[int, int]) -> None:
        """A decoded PyAV frame, to become RGB at `size` (w, h); here at once, one scaler for all
        frames (5x faster than one each)."""
        if self._reformatter is None:
            self._reformatter = _av().video.reformatter.VideoReformatter()
        self.add(_rgb(self._reformatter, frame, size))

    def result(self, index: np.ndarray | None) -> Any:
        raise NotImplementedError


class _Stacked(_Sink):
    """read_frames: every frame kept, stacked into one array at the end."""

    def __init__(self) -> None:
        self.kept: list[np.ndarray] = []

    def add(self, frame: np.ndarray) -> None:
        self.kept.append(frame)
        self.frames += 1

    def result(self, index: np.ndarray | None) -> np.ndarray:
        if not self.kept:
            return np.zeros((0, 0, 0, 3), np.uint8)
        if index is None:
            return np.stack(self.kept)
        return np.stack([self.kept[i] for i in index])


class _PrepareFailed(Exception):
    """What `prepare` raised, carried past the decoder's error handling (which would call a
    ValueError a corrupt video) and raised as is by `read_prepared`."""

    def __init__(self, error: Exception):
        super().__init__(error)
        self.error = error


class _ConvertFailed(Exception):
    """A PyAV frame that did not become RGB on a preparing thread: a corrupt video, as on the decoding thread."""

    def __init__(self, error: Exception):
        super().__init__(error)
        self.error = error


def _rgb(reformatter: Any, frame: Any, size: tuple[int, int]) -> np.ndarray:
    return reformatter.reformat(frame, format="rgb24", width=size[0], height=size[1]).to_ndarray()


_local = threading.local()


def _prepare_chunk(prepare: Prepare, items: list[Any]) -> dict[Any, np.ndarray]:
    """prepare() of a chunk of frames: arrays, or (PyAV frame, size) pairs made RGB here first
    (on the preparing thread, with its own scaler: the same bytes as the decoding thread's)."""
    frames = []
    for x in items:
        if isinstance(x, tuple):
            if getattr(_local, "reformatter", None) is None:
                _local.reformatter = _av().video.reformatter.VideoReformatter()
            try:
                x = _rgb(_local.reformatter, *x)
            except Exception as e:
                raise _ConvertFailed(e) from None
        frames.append(x)
    del items
    try:
        views = dict(prepare(np.stack(frames)))
        for key, v in views.items():
            if len(v) != len(frames):
                raise ValueError(f"prepare returned {len(v)} rows under {key!r} for {len(frames)} frames: "
                                 "read_prepared needs a prepare that works frame by frame")
    except Exception as e:
        raise _PrepareFailed(e) from None
    return views


class _Streamed(_Sink):
    """read_prepared: frames prepared in chunks as they arrive (on worker threads), raw frames dropped."""

    def __init__(self, prepare: Prepare, chunk: int, workers: int) -> None:
        self.prepare, self.chunk = prepare, chunk
        self.workers = max(0, workers)
        self.pool = ThreadPoolExecutor(self.workers, thread_name_prefix="prepare") if self.workers else None
        self.buf: list[np.ndarray] = []
        self.parts: list[Future | dict[Any, np.ndarray]] = []
        self.settled = 0
        """parts[:settled] are results; the rest may still be futures."""

    def add(self, frame: np.ndarray) -> None:
        self.buf.append(frame)
        self.frames += 1
        if len(self.buf) >= self.chunk:
            self._flush()

    def add_video(self, frame: Any, size: tuple[int, int]) -> None:
        if self.pool is None:
            super().add_video(frame, size)
        else:  # the RGB conversion too runs on the preparing threads: the decoding thread only decodes
            self.add((frame, size))  # type: ignore[arg-type]

    def _flush(self) -> None:
        if not self.buf:
            return
        frames, self.buf = self.buf, []
        if self.pool is None:
            self.parts.append(_prepare_chunk(self.prepare, frames))
            self.settled = len(self.parts)
            return
        while len(self.parts) - self.settled > self.workers:  # bound the raw frames in flight
            self._settle_one()
        self.parts.append(self.pool.submit(_prepare_chunk, self.prepare, frames))

    def _settle_one(self) -> None:
        part = self.parts[self.settled]
        if isinstance(part, Future):
            self.parts[self.settled] = part.result()  # re-raises what prepare raised
        self.settled += 1

    def result(self, index: np.ndarray | None) -> dict[Any, np.ndarray]:
        self._flush()
        while self.settled < len(self.parts):
            self._settle_one()
        parts: list[dict[Any, np.ndarray]] = self.parts  # type: ignore[assignment]
        self.parts = []
        if not parts:
            return {}
        keys = list(parts[0])
        views = {k: parts[0][k] if len(parts) == 1 else np.concatenate([p[k] for p in parts]) for k in keys}
        if index is None or (len(index) == self.frames and np.array_equal(index, np.arange(self.frames))):
            return views
        return {k: v[index] for k, v in views.items()}

    def close(self) -> None:
        self.buf, self.parts = [], []
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)


# --------------------------------------------------------------------------- frame folders


def _read_folder(src: PngFolder, max_side: int | None, max_frames: int | None, sink: _Sink) -> Any:
    files = src.files if max_frames is None else src.files[:max_frames]
    first = None
    mismatch: DatasetError | None = None
    for f in files:
        a = _read_image(src.dir / f, max_side)  # an unreadable file is raised first, as it is read
        if first is None:
            first = a.shape
        if a.shape != first:
            # raised once every file is read: an unreadable file later on takes precedence
            mismatch = mismatch or DatasetError(
                f"frame size {a.shape[1]}x{a.shape[0]} differs from the first frame's {first[1]}x{first[0]}",
                path=src.dir / f, fix="all frames of a video must have one size; re-extract the frames")
        if mismatch is None:
            sink.add(a)
    if mismatch is not None:
        raise mismatch
    return sink.result(None)


def _read_image(path: Path, max_side: int | None) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()
            rgb = im.convert("RGB")
    except FileNotFoundError as e:
        raise DatasetError("frame file is missing", path=path, fix=_fix_image()) from e
    except Exception as e:  # PIL raises OSError, SyntaxError, ValueError... on corrupt files
        raise DatasetError(f"unreadable image ({type(e).__name__}: {e})", path=path, fix=_fix_image()) from e
    if max_side is not None and max(rgb.size) > max_side:
        w, h = _shrunk(rgb.size[0], rgb.size[1], max_side)
        rgb = rgb.resize((w, h), Image.Resampling.BILINEAR)
    return np.asarray(rgb, dtype=np.uint8)


# --------------------------------------------------------------------------- mp4


def _av():
    """PyAV, with FFmpeg's own log lines off: every failure reaches the user as one DatasetError naming the
    file and its fix, never as a stray libav line ('moov atom not found'). PyAV logs nothing by default,
    but importing torchvision.io turns its log on (ERROR), so this checks on every use."""
    import av

    if av.logging.get_level() is not None:
        av.logging.set_level(None)
    return av


def _reason(e: Exception) -> str:
    """A PyAV error in a few words: FFmpeg's text without the file name the DatasetError already names."""
    return getattr(e, "strerror", None) or str(e)


@dataclass(frozen=True)
class _StreamInfo:
    """The header values the reader needs, copied out of a PyAV stream while its container is open.

    A stream read after `container.close()` reads freed memory: that gave one mp4 132
    frames on one run and 131 on the next (issue #15).
    """

    time_base: Fraction
    """Seconds per pts unit."""
    rate: Fraction | None
    """Average frame rate in the header (frames/s); None when it gives none."""
    frames: int
    """Frame count in the container's index; 0 when unknown."""
    duration: Fraction | None
    """Seconds; None when the header gives none."""
    start: Fraction
    """Time of the first frame in seconds (the stream's start_time; 0 when unknown)."""


def _open_container(path: Path):
    av = _av()
    if not Path(path).is_file():
        raise DatasetError("video file is missing", path=path, fix=_fix_video())
    try:
        return av.open(str(path), mode="r")
    except (av.error.FFmpegError, OSError, ValueError) as e:
        raise DatasetError(f"cannot open video ({_reason(e)})", path=path, fix=_fix_video()) from e


def _video_stream(container, path: Path):
    if not container.streams.video:
        raise DatasetError("file has no video stream", path=path, fix=_fix_video())
    return container.streams.video[0]


def _stream_info(container, stream, path: Path, av) -> _StreamInfo:
    if not stream.time_base:
        raise DatasetError("video stream has no time base, so its frames have no times", path=path, fix=_fix_video())
    tb = Fraction(stream.time_base)
    rate = stream.average_rate or stream.guessed_rate
    if stream.duration is not None:
        duration: Fraction | None = stream.duration * tb
    elif container.duration is not None:
        duration = Fraction(container.duration, av.time_base)
    else:
        duration = None
    return _StreamInfo(time_base=tb, rate=Fraction(rate) if rate else None, frames=int(stream.frames or 0),
                       duration=duration, start=stream.start_time * tb if stream.start_time is not None else Fraction(0))


@dataclass(frozen=True)
class _Grid:
    """The frame times a constant-rate stream's header implies: frame i at start + i/rate,
    rounded to the nearest pts tick."""

    info: _StreamInfo
    frames: int

    def pts(self, i: int) -> int:
        rate = self.info.rate or _DEFAULT_RATE
        return round((self.info.start + Fraction(i) / rate) / self.info.time_base)

    def first_at_or_after(self, t: Fraction) -> int:
        """Index of the first grid frame at or after `t` (a tick); `frames` if none."""
        return bisect_left(range(self.frames), t / self.info.time_base, key=self.pts)


def _frames_in_duration(info: _StreamInfo) -> int:
    if info.duration is None or info.rate is None:
        return 0
    return round(info.duration * info.rate)


def _count_packets(container, stream, path: Path, av) -> int:
    """No frame count nor duration in the header: demux (no decode) and count."""
    try:
        return sum(1 for pk in container.demux(stream) if pk.size)
    except (av.error.FFmpegError, OSError, ValueError) as e:
        raise DatasetError(f"corrupt or truncated video ({e})", path=path, fix=_fix_video()) from e


def _window(src: VideoFile) -> tuple[Fraction | None, Fraction | None]:
    """The window's bounds in exact seconds (None: open on that side)."""
    bounds = []
    for name, x in (("start", src.start), ("end", src.end)):
        if x is not None and not math.isfinite(x):
            fix = f"correct {src.origin}" if src.origin else "give the window finite start and end times in seconds"
            raise DatasetError(f"window {name} time is {x}, not a number of seconds", path=src.path, fix=fix)
        bounds.append(None if x is None else _decimal(x))
    return bounds[0], bounds[1]


def _on_tick(t: Fraction | None, time_base: Fraction) -> Fraction | None:
    """A window bound rounded to the nearest pts tick: a float that means a frame's time is that time."""
    return None if t is None else round(t / time_base) * time_base


def _read_video(src: VideoFile, fps: Fraction | None, max_side: int | None, max_frames: int | None,
                sink: _Sink) -> Any:
    av = _av()
    bounds = _window(src)
    container = _open_container(src.path)
    try:
        stream = _video_stream(container, src.path)
        # Slice threads only: frame threading (AUTO/FRAME) deadlocks in FFmpeg when decoding stops
        # before the end of the file, as every window that ends early does (PyAV #1849; it hung CI
        # on a many-core machine). Videos are decoded in parallel across workers instead.
        stream.thread_type = "SLICE"
        info = _stream_info(container, stream, src.path, av)
        start, end = (_on_tick(x, info.time_base) for x in bounds)
        _check_window(src, end, info)
        pts = _decode_window(container, stream, src.path, start, end, info, max_side, max_frames, av, sink)
    finally:
        container.close()
    if not pts:
        return sink.result(None)
    # Decoders emit presentation order; sorting (stable) makes the order a function of pts alone.
    order = np.array(sorted(range(len(pts)), key=pts.__getitem__), dtype=np.int64)
    pts = [pts[i] for i in order]
    if max_frames is None:
        _check_complete(src, end, info, pts)
    if fps is None or max_frames is not None:
        return sink.result(order)
    return sink.result(order[_resample_index(pts, info.time_base, _frame_step(pts, info), fps)])


def _decode_window(container, stream, path: Path, start: Fraction | None, end: Fraction | None, info: _StreamInfo,
                   max_side: int | None, max_frames: int | None, av, sink: _Sink) -> list[int]:
    """The frames of [start, end) into `sink` and their pts, seeking first when the window starts late."""
    sought = False
    try:
        for target in _seek_targets(start, info):
            if target is not None or sought:
                at = info.start if target is None else target
                try:
                    container.seek(math.floor(at / info.time_base), stream=stream, backward=True, any_frame=False)
                except av.error.FFmpegError:
                    continue  # a broken index: try earlier, in the end from the beginning
                sought = True
            decoded = _decode_from(container, stream, path, start, end, info.time_base, max_side, max_frames, sink,
                                   after_seek=target is not None)
            if decoded is not None:
                return decoded
    except (av.error.FFmpegError, OSError, ValueError) as e:
        raise DatasetError(f"corrupt or truncated video ({e})", path=path, fix=_fix_video()) from e
    raise DatasetError("cannot seek to the start of the video", path=path, fix=_fix_video())


def _seek_targets(start: Fraction | None, info: _StreamInfo) -> list[Fraction | None]:
    """Times to seek to for a window starting at `start`, ever earlier; None is the file's beginning."""
    if start is None or start <= info.start:
        return [None]
    return [start - back for back in _SEEK_BACK if start - back > info.start] + [None]


def _decode_from(container, stream, path: Path, start: Fraction | None, end: Fraction | None, time_base: Fraction,
                 max_side: int | None, max_frames: int | None, sink: _Sink, *, after_seek: bool) -> list[int] | None:
    """Frames of [start, end) from where the container stands into `sink`, in decode order; their pts.

    None when `after_seek` and the first frame decoded is already past `start`: the seek
    landed on a keyframe shown after the window starts, and the caller seeks earlier (before
    any frame went into `sink`).
    """
    size = None
    pts: list[int] = []
    first = True
    decoder = container.decode(stream)
    try:
        for frame in decoder:
            if frame.pts is None:
                raise DatasetError("a frame has no timestamp (pts)", path=path,
                                   fix=_fix("re-mux the mp4 (e.g. ffmpeg -i in.mp4 -c copy out.mp4), or drop the sample",
                                            "re-mux the video (e.g. ffmpeg -i in.mp4 -c copy out.mp4)"))
            t = frame.pts * time_base
            if first and after_seek and start is not None and t > start:
                return None
            first = False
            if start is not None and t < start:
                continue
            if end is not None and t >= end:
                break
            if size is None:
                size = _shrunk(frame.width, frame.height, max_side) if max_side else (frame.width, frame.height)
            sink.add_video(frame, size)
            pts.append(int(frame.pts))
            if max_frames is not None and len(pts) >= max_frames:
                break
    finally:
        decoder.close()
    return pts


def _check_window(src: VideoFile, end: Fraction | None, info: _StreamInfo) -> None:
    """A window must end inside the video (one frame of slack for rounding in the annotations)."""
    if end is None or info.duration is None:
        return
    if end > info.duration + 1 / (info.rate or _DEFAULT_RATE):
        fix = f"none needed, or correct {src.origin}" if src.origin else "correct the window's end time, or drop the sample"
        raise DatasetError(f"window [{src.start}, {src.end}) s ends past the end of {Path(src.path).name} "
                           f"({float(info.duration):.1f} s); skipped", path=src.path, fix=fix)


def _check_complete(src: VideoFile, end: Fraction | None, info: _StreamInfo, pts: list[int]) -> None:
    """Catch truncation that FFmpeg decodes silently (moov atom first, 'faststart').

    A whole file must yield the frame count its index lists; a window must run to its end
    (or to the end of the video) give or take two frames.
    """
    if src.start is None and src.end is None and info.frames:
        if len(pts) < info.frames:
            raise DatasetError(f"truncated video: the container lists {info.frames} frames, only {len(pts)} decode",
                               path=src.path, fix=_fix_video())
        return
    ends = [x for x in (end, info.duration) if x is not None]
    if not ends:
        return
    expected_end = min(ends)
    step = _frame_step(pts, info)
    last = pts[-1] * info.time_base
    if last + step < expected_end - 2 * step:
        raise DatasetError(f"truncated video: frames stop at {float(last):.2f} s, expected until {float(expected_end):.2f} s",
                           path=src.path, fix=_fix_video())


def _frame_step(pts: list[int], info: _StreamInfo) -> Fraction:
    """Native frame duration in seconds: the median step between sorted timestamps (the lower
    one for an even count, to stay exact); the header's rate for a single frame."""
    steps = sorted(b - a for a, b in zip(pts, pts[1:]) if b > a)
    if steps:
        return steps[(len(steps) - 1) // 2] * info.time_base
    return 1 / (info.rate or _DEFAULT_RATE)


def _resampled_count(span: Fraction, fps: Fraction) -> int:
    """Output frames for native frames covering `span` seconds: one per instant t0 + k/fps inside it."""
    return max(1, math.ceil(span * fps))


def _resample_index(pts: list[int], time_base: Fraction, step: Fraction, fps: Fraction) -> np.ndarray:
    """Index of the frame shown at each output instant t0 + k/fps: the latest at or before it.

    In pts units instant k is k / (fps * time_base) = k * q / p for fps * time_base = p / q, so
    frame i is at or before it iff (pts_i - pts_0) * p <= k * q: integers, no rounding.
    """
    r = fps * time_base
    keys = [(x - pts[0]) * r.numerator for x in pts]
    n_out = _resampled_count((pts[-1] - pts[0]) * time_base + step, fps)
    return np.array([bisect_right(keys, k * r.denominator) - 1 for k in range(n_out)], dtype=np.int64)


def _shrunk(w: int, h: int, max_side: int | None) -> tuple[int, int]:
    if not max_side or max(w, h) <= max_side:
        return w, h
    s = max_side / max(w, h)
    return max(1, round(w * s)), max(1, round(h * s))


def _window_text(src: FrameSource) -> str:
    if isinstance(src, VideoFile) and (src.start is not None or src.end is not None):
        return f" in the window [{src.start}, {src.end}) s"
    return ""

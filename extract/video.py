"""Decode a sample's frames into one uint8 array [T, H, W, 3] (RGB).

Frame folders (PHOENIX, CSL-Daily, toy) are read file by file with PIL. mp4s (How2Sign)
are decoded with PyAV: the container is seeked to the window start and decoding stops at
its end, so a sentence cut from a long video costs only its own frames.

Frame rate: frame folders are returned as stored (`fps` is ignored: their native rate is
the dataset's, e.g. 25 fps for PHOENIX). For mp4s, `fps=None` keeps every native frame
(How2Sign: 24 fps); a number resamples to that rate by picking, for each output instant
`t0 + k / fps`, the latest decoded frame at or before it (frame index selection, no
blending), so 24 -> 12 fps keeps every other frame and 24 -> 25 repeats one frame a second.

Every failure (missing file, truncated or corrupt image or mp4, no frames, a window that
ends past the end of the video) is a `DatasetError` naming the file, so the extraction
runner can record it and skip the video. A window is never clipped to the video: a window
ending more than one frame past the container's duration is an error (How2Sign's overrunning
END times: the sentence's end is not in the video; see extract/datasets/how2sign.py).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from cache.errors import DatasetError
from extract.datasets.base import FrameSource, PngFolder, VideoFile

_FIX_IMAGE = "restore the frame from the release (or re-extract the video's frames), or drop the sample"
_FIX_VIDEO = "re-download or re-encode the mp4 (e.g. ffmpeg -i in.mp4 -c:v libx264 out.mp4), or drop the sample"


def read_frames(src: FrameSource, *, fps: float | None = None, max_side: int | None = None,
                max_frames: int | None = None) -> np.ndarray:
    """All frames of `src` as uint8 [T, H, W, 3].

    `max_side` shrinks frames whose longer side exceeds it (aspect kept; never enlarges),
    which saves memory on 1280x720 video when the model wants 224 px anyway. `max_frames`
    stops early (used by cheap validity checks).
    """
    if fps is not None and fps <= 0:
        raise DatasetError(f"fps must be positive, got {fps}", fix="pass a positive --set extract.fps=... or leave it unset")
    if isinstance(src, PngFolder):
        frames = _read_folder(src, max_side, max_frames)
        where: Path = src.dir
    elif isinstance(src, VideoFile):
        frames = _read_video(src, fps, max_side, max_frames)
        where = src.path
    else:
        raise TypeError(f"not a frame source: {type(src).__name__}")
    if frames.shape[0] == 0:
        raise DatasetError("video has no frames" + _window_text(src), path=where,
                           fix="check the file / folder (and for a window, its start and end times) or drop the sample")
    return frames


def count_frames(src: FrameSource, *, fps: float | None = None) -> int:
    """Frame count without decoding: exact for frame folders, an estimate for mp4s.

    For mp4s it is derived from the container's frame count or duration and the window,
    so it can differ from `len(read_frames(...))` by a frame or two; use it for progress
    and batch planning, not for indexing.
    """
    if isinstance(src, PngFolder):
        return len(src.files)
    av = _av()
    container = _open_container(src.path)
    try:
        stream = _video_stream(container, src.path)
        rate = float(stream.average_rate or stream.guessed_rate or 0) or 25.0
        if src.start is None and src.end is None and stream.frames:
            native = int(stream.frames)
            duration = native / rate
        else:
            total = _duration_s(container, stream, av)
            if not math.isfinite(total):  # no duration in the header: demux (no decode) and count
                total = sum(1 for pk in container.demux(stream) if pk.size) / rate
            lo = max(0.0, src.start or 0.0)
            hi = total if src.end is None else min(src.end, total)
            duration = max(0.0, hi - lo)
            native = int(round(duration * rate))
    finally:
        container.close()
    if fps is None:
        return native
    return max(1, int(round(duration * fps))) if native else 0


# --------------------------------------------------------------------------- frame folders


def _read_folder(src: PngFolder, max_side: int | None, max_frames: int | None) -> np.ndarray:
    files = src.files if max_frames is None else src.files[:max_frames]
    arrays = [_read_image(src.dir / f, max_side) for f in files]
    if not arrays:
        return np.zeros((0, 0, 0, 3), np.uint8)
    first = arrays[0].shape
    for f, a in zip(files, arrays):
        if a.shape != first:
            raise DatasetError(f"frame size {a.shape[1]}x{a.shape[0]} differs from the first frame's {first[1]}x{first[0]}",
                               path=src.dir / f, fix="all frames of a video must have one size; re-extract the frames")
    return np.stack(arrays)


def _read_image(path: Path, max_side: int | None) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()
            rgb = im.convert("RGB")
    except FileNotFoundError as e:
        raise DatasetError("frame file is missing", path=path, fix=_FIX_IMAGE) from e
    except Exception as e:  # PIL raises OSError, SyntaxError, ValueError... on corrupt files
        raise DatasetError(f"unreadable image ({type(e).__name__}: {e})", path=path, fix=_FIX_IMAGE) from e
    if max_side is not None and max(rgb.size) > max_side:
        w, h = _shrunk(rgb.size[0], rgb.size[1], max_side)
        rgb = rgb.resize((w, h), Image.Resampling.BILINEAR)
    return np.asarray(rgb, dtype=np.uint8)


# --------------------------------------------------------------------------- mp4


def _av():
    import av

    return av


def _open_container(path: Path):
    av = _av()
    if not Path(path).is_file():
        raise DatasetError("video file is missing", path=path, fix=_FIX_VIDEO)
    try:
        return av.open(str(path), mode="r")
    except (av.error.FFmpegError, OSError, ValueError) as e:
        raise DatasetError(f"cannot open video ({e})", path=path, fix=_FIX_VIDEO) from e


def _video_stream(container, path: Path):
    if not container.streams.video:
        raise DatasetError("file has no video stream", path=path, fix=_FIX_VIDEO)
    return container.streams.video[0]


def _duration_s(container, stream, av) -> float:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return math.inf


def _read_video(src: VideoFile, fps: float | None, max_side: int | None, max_frames: int | None) -> np.ndarray:
    av = _av()
    container = _open_container(src.path)
    try:
        stream = _video_stream(container, src.path)
        stream.thread_type = "AUTO"
        _check_window(src, stream, _duration_s(container, stream, av))
        frames, times = _decode_window(container, stream, src, max_side, max_frames, av)
        if frames and max_frames is None:
            _check_complete(src, stream, times, _duration_s(container, stream, av))
    finally:
        container.close()
    if not frames:
        return np.zeros((0, 0, 0, 3), np.uint8)
    out = np.stack(frames)
    if fps is None or max_frames is not None:
        return out
    rate = float(stream.average_rate or 0) or _median_rate(times)
    return out[_resample_index(np.asarray(times), rate, fps)]


def _decode_window(container, stream, src: VideoFile, max_side: int | None, max_frames: int | None, av):
    start = src.start if src.start is not None and src.start > 0 else None
    end = src.end
    if start is not None and stream.time_base is not None:
        try:
            container.seek(int(start / stream.time_base), stream=stream, backward=True, any_frame=False)
        except av.error.FFmpegError:
            container.seek(0)
    size = None
    frames: list[np.ndarray] = []
    times: list[float] = []
    rate = float(stream.average_rate or 0) or 25.0
    try:
        for index, frame in enumerate(container.decode(stream)):
            t = frame.time if frame.time is not None else index / rate
            if start is not None and t < start - 1e-6:
                continue
            if end is not None and t >= end - 1e-6:
                break
            if size is None:
                size = _shrunk(frame.width, frame.height, max_side) if max_side else (frame.width, frame.height)
            frames.append(frame.to_ndarray(format="rgb24", width=size[0], height=size[1]))
            times.append(t)
            if max_frames is not None and len(frames) >= max_frames:
                break
    except (av.error.FFmpegError, OSError, ValueError) as e:
        raise DatasetError(f"corrupt or truncated video ({e})", path=src.path, fix=_FIX_VIDEO) from e
    return frames, times


def _check_window(src: VideoFile, stream, duration: float) -> None:
    """A window must end inside the video (one frame of slack for rounding in the annotations)."""
    if src.end is None or not math.isfinite(duration):
        return
    rate = float(stream.average_rate or 0) or 25.0
    if src.end > duration + 1.0 / rate:
        fix = f"none needed, or correct {src.origin}" if src.origin else "correct the window's end time, or drop the sample"
        raise DatasetError(f"window [{src.start}, {src.end}) s ends past the end of {Path(src.path).name} ({duration:.1f} s); "
                           "skipped", path=src.path, fix=fix)


def _check_complete(src: VideoFile, stream, times: list[float], duration: float) -> None:
    """Catch truncation that FFmpeg decodes silently (moov atom first, 'faststart').

    A whole file must yield the frame count its index lists; a window must run to its end
    (or to the end of the video) give or take two frames.
    """
    if src.start is None and src.end is None and stream.frames:
        if len(times) < stream.frames:
            raise DatasetError(f"truncated video: the container lists {stream.frames} frames, only {len(times)} decode",
                               path=src.path, fix=_FIX_VIDEO)
        return
    rate = float(stream.average_rate or 0) or _median_rate(times)
    expected_end = min(src.end if src.end is not None else math.inf, duration)
    if math.isfinite(expected_end) and times[-1] + 1.0 / rate < expected_end - 2.0 / rate:
        raise DatasetError(f"truncated video: frames stop at {times[-1]:.2f} s, expected until {expected_end:.2f} s",
                           path=src.path, fix=_FIX_VIDEO)


def _resample_index(times: np.ndarray, native_fps: float, fps: float) -> np.ndarray:
    """Indices of the frames shown at t0 + k/fps: the latest frame at or before each instant."""
    t0 = times[0]
    duration = (times[-1] - t0) + 1.0 / native_fps
    n_out = max(1, int(round(duration * fps)))
    targets = t0 + np.arange(n_out) / fps
    idx = np.searchsorted(times, targets + 1e-6, side="right") - 1
    return np.clip(idx, 0, len(times) - 1)


def _median_rate(times: list[float]) -> float:
    if len(times) < 2:
        return 25.0
    d = float(np.median(np.diff(times)))
    return 1.0 / d if d > 0 else 25.0


def _shrunk(w: int, h: int, max_side: int | None) -> tuple[int, int]:
    if not max_side or max(w, h) <= max_side:
        return w, h
    s = max_side / max(w, h)
    return max(1, round(w * s)), max(1, round(h * s))


def _window_text(src: FrameSource) -> str:
    if isinstance(src, VideoFile) and (src.start is not None or src.end is not None):
        return f" in the window [{src.start}, {src.end}) s"
    return ""

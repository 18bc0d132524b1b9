"""mp4 decoding and resampling are a pure function of the frame timestamps (issue #15).

Each test video carries its frame number in its pixels (one black/white block per bit), so
a test can tell exactly which frames `read_frames` picked; the expected picks are computed
here by brute force from packet timestamps read separately with PyAV and with FFmpeg's command-line
decoder (the `imageio-ffmpeg` wheel's binary), not with extract.vision.decode's code.
"""

from __future__ import annotations

import hashlib
import json
import re
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

import extract.vision.decode as video
from extract.datasets import VideoFile
from extract.vision.decode import count_frames, read_frames

W, H, BITS = 64, 48, 8
RATES = (None, 12, 25, 29.97)
REPEATS = 10


@dataclass(frozen=True)
class Clip:
    """A test video: its native rate and the mp4 track's time base (1/timescale)."""

    name: str
    fps: int
    timescale: int
    frames: int


# 1/1000 rounds 24 fps frame times to whole ms (steps of 41 and 42): boundary frames sit
# off the 1/fps grid, where float accumulation used to flip them. 1/90000 is exact.
CLIPS = (Clip("24fps_ms", 24, 1000, 72), Clip("30fps_90k", 30, 90000, 90))


def codec() -> str:
    import av

    return "libx264" if "libx264" in av.codecs_available else "mpeg4"


def pattern(i: int) -> np.ndarray:
    """Frame i: BITS vertical bars, white where i has a 1 bit; survives lossy coding."""
    img = np.zeros((H, W, 3), np.uint8)
    bar = W // BITS
    for b in range(BITS):
        if i >> b & 1:
            img[:, b * bar:(b + 1) * bar] = 255
    return img


def frame_numbers(frames: np.ndarray) -> list[int]:
    """The frame numbers drawn by `pattern`, read back from decoded (possibly lossy) frames."""
    bar = W // BITS
    bars = frames.reshape(len(frames), H, BITS, bar, 3).mean(axis=(1, 3, 4)) > 128
    return [int(sum(1 << b for b in range(BITS) if row[b])) for row in bars]


def write_clip(path: Path, clip: Clip) -> Path:
    import av

    with av.open(str(path), mode="w", options={"video_track_timescale": str(clip.timescale)}) as container:
        stream = container.add_stream(codec(), rate=Fraction(clip.fps))
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        if stream.codec_context.name == "libx264":
            # short GOPs with B-frames: keyframes are shown after frames decoded before them,
            # so seeking into a window is exercised, not just decoding from the start
            stream.options = {"x264-params": "keyint=12:min-keyint=12:scenecut=0:bframes=2"}
        else:
            stream.bit_rate = 2_000_000
            stream.codec_context.gop_size = 12
        for i in range(clip.frames):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(pattern(i), format="rgb24")))
        container.mux(stream.encode())
    return path


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("determinism")
    return {c.name: write_clip(root / f"{c.name}.mp4", c) for c in CLIPS}


def packet_times(path: Path) -> tuple[list[Fraction], Fraction]:
    """Presentation times of the video packets (one per frame in mp4), sorted, and the time
    base: PyAV's demuxer, no decoding."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        tb = Fraction(stream.time_base)
        pts = [p.pts for p in container.demux(stream) if p.size]
    return sorted(p * tb for p in pts), tb


def windows(times: list[Fraction]) -> list[tuple[float | None, float | None]]:
    """Whole file, a window between frames, and windows bounded exactly by frame times."""
    return [(None, None), (0.5, 2.0), (float(times[13]), float(times[50])), (float(times[7]), None),
            (None, float(times[40]))]


def expected_picks(times: list[Fraction], tb: Fraction, start: float | None, end: float | None,
                   fps: float | None) -> list[int]:
    """The documented rule, by brute force: bounds rounded to the nearest tick, frames with
    start <= t < end, then for each instant t0 + k/fps before t_last + step the latest frame
    at or before it."""
    lo = None if start is None else round(Fraction(str(start)) / tb) * tb
    hi = None if end is None else round(Fraction(str(end)) / tb) * tb
    inside = [i for i, t in enumerate(times) if (lo is None or t >= lo) and (hi is None or t < hi)]
    if fps is None or not inside:
        return inside
    ts = [times[i] for i in inside]
    step = statistics.median_low([b - a for a, b in zip(ts, ts[1:])])
    rate = Fraction(str(fps))
    picks = []
    k = 0
    while ts[0] + k / rate < ts[-1] + step:
        instant = ts[0] + k / rate
        picks.append(inside[max(j for j, t in enumerate(ts) if t <= instant)])
        k += 1
    return picks


Case = tuple[str, float | None, float | None, float | None]
"""(mp4 path, window start, window end, fps)"""


def digest_of(frames: np.ndarray) -> str:
    return f"{frames.shape}:{hashlib.sha256(frames.tobytes()).hexdigest()}"


def digest(path: str, start: float | None, end: float | None, fps: float | None) -> str:
    return digest_of(read_frames(VideoFile(Path(path), start, end), fps=fps))


@pytest.fixture(scope="module")
def cases(clips) -> list[Case]:
    return [(str(path), s, e, fps) for path in clips.values() for s, e in windows(packet_times(path)[0])
            for fps in RATES]


@pytest.fixture(scope="module")
def decoded(cases) -> dict[Case, np.ndarray]:
    """Each case decoded once, shared by the tests that only look at the result."""
    return {c: read_frames(VideoFile(Path(c[0]), c[1], c[2]), fps=c[3]) for c in cases}


def test_picks_follow_the_timestamps(clips, decoded):
    """Count and frames equal the brute-force rule on PyAV's packet timestamps, for every window and rate."""
    for name, path in clips.items():
        times, tb = packet_times(path)
        assert len(times) == next(c.frames for c in CLIPS if c.name == name)
        for start, end in windows(times):
            for fps in RATES:
                got = frame_numbers(decoded[str(path), start, end, fps])
                assert got == expected_picks(times, tb, start, end, fps), (name, start, end, fps)


def test_boundary_frames_are_exact(clips):
    """A bound written as a frame's time includes that frame at the start and excludes it at the end."""
    path = clips["24fps_ms"]
    times, _ = packet_times(path)
    assert times[13] == Fraction(542, 1000)  # rounded to the ms, off the 1/24 s grid
    got = frame_numbers(read_frames(VideoFile(path, float(times[13]), float(times[50]))))
    assert got == list(range(13, 50))
    path = clips["30fps_90k"]
    assert frame_numbers(read_frames(VideoFile(path, 13 / 30, 26 / 30))) == list(range(13, 26))  # floats near 13/30, 26/30


def test_every_window_start_survives_the_seek(clips):
    """Windows starting at each frame begin with that frame, wherever the keyframes are."""
    for path in clips.values():
        times, _ = packet_times(path)
        for i in range(0, len(times) - 6, 5):
            got = frame_numbers(read_frames(VideoFile(path, float(times[i]), float(times[i + 6]))))
            assert got == list(range(i, i + 6)), (path.name, i)


def test_repeated_decodes_are_identical(clips, decoded):
    """Whole files and a frame-bounded window, at every rate, decoded REPEATS times."""
    some = []
    for path in clips.values():
        whole, _, framed, *_ = windows(packet_times(path)[0])
        some += [(str(path), *w, fps) for w in (whole, framed) for fps in RATES]
    first = [digest_of(decoded[c]) for c in some]
    for _ in range(REPEATS - 1):
        assert [digest(*c) for c in some] == first


def test_threads_and_a_fresh_process_decode_the_same(cases):
    here = [digest(*c) for c in cases]
    with ThreadPoolExecutor(max_workers=4) as pool:  # concurrent decodes of the same files
        assert list(pool.map(lambda c: digest(*c), cases)) == here
    code = ("import json, sys; sys.path.insert(0, 'tests');"
            "from test_decode_determinism import digest;"
            "print(json.dumps([digest(*c) for c in json.load(sys.stdin)]))")
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run([sys.executable, "-c", code], input=json.dumps(cases), capture_output=True, text=True,
                         cwd=root, timeout=60, check=True)
    assert json.loads(out.stdout) == here


def test_frame_threading_is_never_switched_on(cases, monkeypatch):
    """FFmpeg's frame threading (AUTO/FRAME) deadlocks when decoding stops before the end of a
    file once torchvision is loaded (PyAV #1849; timm loads it). It hung CI in the thread-pool
    test above on a many-core machine; `bench/frame_threads.py` reproduces it on two cores.
    Every decode read_frames starts uses slice threading at most."""
    import av

    seen = []
    real = video._stream_info  # read_frames asks for the stream's info once its threading is chosen

    def spy(container, stream, *args):
        seen.append(stream.thread_type)
        return real(container, stream, *args)

    monkeypatch.setattr(video, "_stream_info", spy)
    for c in cases[:: max(1, len(cases) // 8)]:
        digest(*c)
    assert len(seen) >= 8
    frame = av.codec.context.ThreadType.FRAME
    assert not any(t & frame for t in seen), seen


def test_count_frames_agrees_with_read_frames(decoded):
    """Constant-rate files with a true header (24 fps rounded to the ms, 30 fps in 1/90000):
    the header-only count is what decoding returns, for every window and rate."""
    for (path, start, end, fps), frames in decoded.items():
        assert count_frames(VideoFile(Path(path), start, end), fps=fps) == len(frames), (path, start, end, fps)


class Guarded:
    """A PyAV stream that fails the test when read after its container is closed."""

    def __init__(self, real, owner: "Watched"):
        self._real, self._owner = real, owner

    def __getattr__(self, name):
        assert not self._owner.closed, f"stream.{name} read after the container was closed"
        return getattr(self._real, name)

    def __setattr__(self, name, value):
        if name.startswith("_"):
            object.__setattr__(self, name, value)
        else:
            setattr(self._real, name, value)


class Watched:
    """A PyAV input container that records seeks and closing; `late` shifts the first seek
    that many seconds past its target, as a keyframe shown after the window start would."""

    def __init__(self, real, late: float = 0.0):
        self.real, self.closed, self.late, self.seeks = real, False, late, []
        self.streams = type("Streams", (), {"video": [Guarded(s, self) for s in real.streams.video]})()

    def seek(self, offset, *, stream=None, **kw):
        self.seeks.append(offset)
        if self.late and stream is not None and len(self.seeks) == 1:
            offset += round(Fraction(str(self.late)) / stream._real.time_base)
        return self.real.seek(offset, stream=stream._real if stream is not None else None, **kw)

    def decode(self, stream):
        return self.real.decode(stream._real)

    def demux(self, stream):
        return self.real.demux(stream._real)

    def __getattr__(self, name):
        return getattr(self.real, name)

    def close(self):
        self.closed = True
        self.real.close()


def watch(monkeypatch, late: float = 0.0) -> list[Watched]:
    """Route extract.vision.decode's container opens through `Watched`; returns the containers opened."""
    opened: list[Watched] = []
    real_open = video._open_container
    monkeypatch.setattr(video, "_open_container", lambda p: opened.append(Watched(real_open(p), late)) or opened[-1])
    return opened


def test_the_stream_is_not_read_after_close(clips, monkeypatch):
    """The bug of issue #15: reading a PyAV stream after its container closed reads freed memory."""
    opened = watch(monkeypatch)
    path = clips["24fps_ms"]
    for start, end in windows(packet_times(path)[0]):
        for fps in (None, 25):
            assert len(read_frames(VideoFile(path, start, end), fps=fps)) > 0
            assert count_frames(VideoFile(path, start, end), fps=fps) > 0
    assert opened and all(c.closed for c in opened)


def test_a_seek_that_lands_late_is_redone_earlier(clips, monkeypatch):
    """A seek landing 0.3 s past the window start (a delayed keyframe) must not cost the window its first frames."""
    path = clips["30fps_90k"]
    opened = watch(monkeypatch, late=0.3)
    assert frame_numbers(read_frames(VideoFile(path, 1.5, 2.0))) == list(range(45, 60))
    assert len(opened[0].seeks) == 2  # landed late, so seeked again 1 s earlier


def ffmpeg_exe() -> str:
    """FFmpeg's command-line tool: the static binary in the `imageio-ffmpeg` wheel (the `test` extra),
    or IMAGEIO_FFMPEG_EXE. Missing is a failure, not a skip: this is the decode's independent check."""
    try:
        import imageio_ffmpeg
    except ImportError:
        pytest.fail("no ffmpeg for the independent decode check: the `imageio-ffmpeg` wheel ships one; "
                    "install the test extra (`./setup.sh`, or `.venv/bin/python -m pip install -e '.[test]'`)")
    return imageio_ffmpeg.get_ffmpeg_exe()


def ffmpeg_frames(path: Path) -> tuple[list[Fraction], Fraction, list[int]]:
    """What FFmpeg's own command-line decoder (another process) shows: each decoded frame's
    presentation time (showinfo, timestamps kept as in the file), the stream's time base, and the
    frame number drawn in each frame's pixels, in the order it outputs them."""
    out = subprocess.run([ffmpeg_exe(), "-nostdin", "-hide_banner", "-copyts", "-i", str(path), "-map", "0:v:0",
                          "-vf", "showinfo", "-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "rgb24",
                          "pipe:1"], capture_output=True, check=True, timeout=60)
    log = out.stderr.decode(errors="replace")
    num, den = re.search(r"config in time_base: (\d+)/(\d+)", log).groups()
    tb = Fraction(int(num), int(den))
    pts = [int(p) for p in re.findall(r"\bn: *\d+ pts: *(-?\d+)", log)]
    frames = np.frombuffer(out.stdout, np.uint8).reshape(-1, H, W, 3)
    assert len(frames) == len(pts), (len(frames), len(pts))
    return [p * tb for p in pts], tb, frame_numbers(frames)


def test_picks_match_ffmpeg(clips, decoded):
    """The same frames by FFmpeg's command-line decoder: the brute-force rule applied to its frame
    timestamps, checked by the frame numbers in its own decoded pixels, for every window and rate."""
    for path in clips.values():
        times, tb, numbers = ffmpeg_frames(path)
        assert numbers == list(range(len(times))) and times == sorted(times), path.name  # each frame once, in order
        assert (times, tb) == packet_times(path), path.name
        for start, end in windows(times):
            for fps in RATES:
                want = [numbers[i] for i in expected_picks(times, tb, start, end, fps)]
                assert frame_numbers(decoded[str(path), start, end, fps]) == want, (path.name, start, end, fps)

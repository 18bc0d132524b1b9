"""read_prepared (prepare applied to chunks as frames are decoded) equals prepare(read_frames(...)),
byte for byte, for every window, rate, chunk size and thread count; and decode_video's two ways
agree, errors included."""

from __future__ import annotations

import os
import threading
import time
from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

import extract.vision.decode as video
import extract.vision.ray_backend as ray_runner
from cache.errors import DatasetError
from extract.datasets import PngFolder, VideoFile
from extract.vision.decode import read_frames, read_prepared
from extract.vision.preprocess import processor_crop
from extract.vision.runner import decode_video

W, H, N, FPS = 64, 48, 60, 24


def pattern(i: int) -> np.ndarray:
    """Frame i: its number in 6 vertical bars plus a gradient, so resizes see real detail."""
    img = np.tile(np.linspace(0, 120, W, dtype=np.uint8)[None, :, None], (H, 1, 3))
    for b in range(6):
        if i >> b & 1:
            img[: H // 2, b * 8:(b + 1) * 8] = 255
    img[H // 2:, :, 1] = (7 * i) % 256
    return img


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """h264 with B-frames and 12-frame GOPs (seeks land before windows), times rounded to the ms."""
    import av

    path = tmp_path_factory.mktemp("stream") / "clip.mp4"
    with av.open(str(path), mode="w", options={"video_track_timescale": "1000"}) as container:
        codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
        stream = container.add_stream(codec, rate=Fraction(FPS))
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        if codec == "libx264":
            stream.options = {"x264-params": "keyint=12:min-keyint=12:scenecut=0:bframes=2"}
        else:
            stream.codec_context.gop_size = 12
        for i in range(N):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(pattern(i), format="rgb24")))
        container.mux(stream.encode())
    return path


def crops(frames: np.ndarray) -> dict[str, np.ndarray]:
    """A recipe-like per-frame prepare: the processors' PIL resizes and crops, and a strided view."""
    small = SimpleNamespace(shortest_edge=20, crop=(16, 16), resample="bicubic", resize="shortest")
    odd = SimpleNamespace(shortest_edge=33, crop=(30, 24), resample="bilinear", resize="shortest")
    return {"clip": processor_crop(frames, small), "mae": processor_crop(frames, odd),
            "raw": np.ascontiguousarray(frames[:, ::3, ::2])}


def same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(a[k].dtype == b[k].dtype and a[k].shape == b[k].shape
                                        and a[k].tobytes() == b[k].tobytes() for k in a)


WINDOWS = [(None, None), (0.5, 2.0), (13 / 24, 50 / 24), (7 / 24, None), (None, 40 / 24), (1.0, 1.05)]
RATES = [None, 12, 25, 29.97, 7]


def test_streamed_equals_prepare_of_read_frames_for_windows_and_rates(clip):
    checked = 0
    for start, end in WINDOWS:
        for fps in RATES:
            src = VideoFile(clip, start, end)
            want = crops(read_frames(src, fps=fps))
            for chunk, workers in ((16, 2), (1, 0), (5, 1), (7, 3), (1000, 2)):
                got = read_prepared(src, crops, fps=fps, chunk=chunk, workers=workers)
                assert same(got, want), (start, end, fps, chunk, workers)
                checked += 1
    assert checked == len(WINDOWS) * len(RATES) * 5


def test_streamed_with_max_side_and_repeated_frames(clip):
    src = VideoFile(clip, 0.25, 1.75)
    for side in (32, 40, None):
        assert same(read_prepared(src, crops, max_side=side, fps=30, chunk=4),
                    crops(read_frames(src, max_side=side, fps=30)))
    up = read_prepared(VideoFile(clip), crops, fps=30)["raw"]
    assert len(up) == round(N * 30 / FPS)  # 24 -> 30 fps repeats frames: the picks are copied after preparing


def test_prepare_sees_chunks_in_decode_order_at_most_workers_at_a_time(clip):
    sizes, live, peak = [], [0], [0]
    lock = threading.Lock()

    def slow(frames):
        with lock:
            live[0] += 1
            peak[0] = max(peak[0], live[0])
        time.sleep(0.01)
        with lock:
            live[0] -= 1
            sizes.append(len(frames))
        return {"x": frames[:, :1, :1]}

    out = read_prepared(VideoFile(clip), slow, chunk=8, workers=2)
    assert sorted(sizes) == sorted([8] * (N // 8) + [N % 8]) and peak[0] <= 2
    assert same(out, {"x": read_frames(VideoFile(clip))[:, :1, :1]})


def test_png_folder_streamed(tmp_path):
    files = []
    for i in range(11):
        Image.fromarray(pattern(i)).save(tmp_path / f"images{i + 1:04d}.png")
        files.append(f"images{i + 1:04d}.png")
    src = PngFolder(tmp_path, tuple(files))
    for chunk, workers in ((4, 2), (1, 0), (64, 1)):
        assert same(read_prepared(src, crops, chunk=chunk, workers=workers), crops(read_frames(src)))
        assert same(read_prepared(src, crops, max_side=40, chunk=chunk, workers=workers),
                    crops(read_frames(src, max_side=40)))


def test_errors_are_those_of_read_frames(tmp_path, clip):
    # a frame of another size, and an unreadable file after it: the unreadable file is reported, as before
    for i in range(6):
        Image.fromarray(pattern(i)).save(tmp_path / f"f{i}.png")
    Image.fromarray(np.zeros((10, 10, 3), np.uint8)).save(tmp_path / "f2.png")
    (tmp_path / "f4.png").write_bytes(b"not a png")
    src = PngFolder(tmp_path, tuple(f"f{i}.png" for i in range(6)))
    for read in (lambda: read_frames(src), lambda: read_prepared(src, crops, chunk=2)):
        with pytest.raises(DatasetError) as e:
            read()
        assert e.value.path == str(tmp_path / "f4.png")
    (tmp_path / "f4.png").unlink()
    Image.fromarray(pattern(4)).save(tmp_path / "f4.png")
    for read in (lambda: read_frames(src), lambda: read_prepared(src, crops, chunk=2)):
        with pytest.raises(DatasetError, match="differs") as e:
            read()
        assert e.value.path == str(tmp_path / "f2.png")
    with pytest.raises(DatasetError, match="no frames"):
        read_prepared(PngFolder(tmp_path, ()), crops)
    # a truncated mp4 and a window past the end
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(clip.read_bytes()[: clip.stat().st_size // 2])
    for src in (VideoFile(cut), VideoFile(clip, 1.0, 9.0)):
        with pytest.raises(DatasetError) as old:
            read_frames(src)
        with pytest.raises(DatasetError) as new:
            read_prepared(src, crops)
        assert (new.value.problem, new.value.path) == (old.value.problem, old.value.path)


@pytest.mark.parametrize("workers", [0, 2])
def test_what_prepare_raises_is_raised_as_is(clip, workers):
    """Not a 'corrupt video' DatasetError: the decoder's error handling never sees it."""

    class Boom(ValueError):
        pass

    def bad(frames):
        raise Boom("recipe bug")

    with pytest.raises(Boom, match="recipe bug"):
        read_prepared(VideoFile(clip), bad, workers=workers)
    with pytest.raises(ValueError, match="frame by frame"):
        read_prepared(VideoFile(clip), lambda f: {"x": f[:1]}, chunk=8, workers=workers)


def test_streamed_decoding_never_switches_frame_threading_on(clip, monkeypatch):
    import av

    seen = []
    real = video._stream_info

    def spy(container, stream, *args):
        seen.append(stream.thread_type)
        return real(container, stream, *args)

    monkeypatch.setattr(video, "_stream_info", spy)
    for start, end in WINDOWS:
        read_prepared(VideoFile(clip, start, end), crops)
    assert len(seen) == len(WINDOWS)
    assert not any(t & av.codec.context.ThreadType.FRAME for t in seen), seen


class Recipe:
    """decode_video's view of a recipe: max_decode_side() and a per-frame prepare()."""

    def __init__(self, side):
        self.side = side

    def max_decode_side(self):
        return self.side

    def prepare(self, frames):
        return crops(frames)


def test_decode_video_both_ways(clip, tmp_path):
    for fps, side, src in ((None, None, VideoFile(clip)), (25, 40, VideoFile(clip, 0.5, 2.0)),
                           (None, None, VideoFile(tmp_path / "missing.mp4"))):
        cfg = SimpleNamespace(fps=fps)
        new, old = (decode_video(src, cfg, Recipe(side), streamed=s) for s in (True, False))
        assert new.error == old.error
        assert (new.views is None) == (old.views is None)
        if old.views is not None:
            assert same(new.views, old.views)
    assert new.error and "missing" in new.error[0]


def test_idle_priority_is_the_decode_threads_alone():
    from extract.vision.runner import idle_priority

    before = os.sched_getscheduler(0)
    seen = {}

    def decode():
        idle_priority()
        seen["decode"] = os.sched_getscheduler(0)
        t = threading.Thread(target=lambda: seen.__setitem__("child", os.sched_getscheduler(0)))
        t.start()
        t.join()

    t = threading.Thread(target=decode)
    t.start()
    t.join()
    assert seen == {"decode": os.SCHED_IDLE, "child": os.SCHED_IDLE}
    assert os.sched_getscheduler(0) == before  # the worker's own thread keeps its priority
    assert ray_runner.DecodeTuning().streamed and not ray_runner.OLD_DECODE.streamed

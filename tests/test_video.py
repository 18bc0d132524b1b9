"""read_frames / count_frames on frame folders and mp4s, and their errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cache.errors import DatasetError
from extract.datasets import PngFolder, VideoFile
from extract.vision.decode import count_frames, read_frames
from helpers import level, write_mp4


def write_pngs(folder: Path, n: int = 5, size: tuple[int, int] = (20, 30)) -> PngFolder:
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for i in range(n):
        name = f"images{i + 1:04d}.png"
        Image.fromarray(np.full(size + (3,), level(i), np.uint8)).save(folder / name)
        files.append(name)
    return PngFolder(folder, tuple(files))


def means(frames: np.ndarray) -> np.ndarray:
    return frames.reshape(len(frames), -1).mean(axis=1)


@pytest.fixture(scope="module")
def mp4(tmp_path_factory) -> Path:
    return write_mp4(tmp_path_factory.mktemp("video") / "clip.mp4")


# --------------------------------------------------------------------------- frame folders


def test_png_folder(tmp_path):
    src = write_pngs(tmp_path / "v")
    frames = read_frames(src)
    assert frames.shape == (5, 20, 30, 3) and frames.dtype == np.uint8
    assert np.allclose(means(frames), [level(i) for i in range(5)])
    assert count_frames(src) == 5
    assert read_frames(src, fps=12).shape == frames.shape  # folders are read as stored
    assert read_frames(src, max_side=15).shape == (5, 10, 15, 3)


def test_grey_and_rgba_pngs_become_rgb(tmp_path):
    Image.fromarray(np.full((8, 8), 7, np.uint8)).save(tmp_path / "a1.png")
    Image.fromarray(np.full((8, 8, 4), 9, np.uint8)).save(tmp_path / "a2.png")
    frames = read_frames(PngFolder(tmp_path, ("a1.png", "a2.png")))
    assert frames.shape == (2, 8, 8, 3)


def test_jpeg_folder(tmp_path):
    for i in range(3):
        Image.fromarray(np.full((16, 16, 3), level(i), np.uint8)).save(tmp_path / f"{i:06d}.jpg")
    frames = read_frames(PngFolder(tmp_path, ("000000.jpg", "000001.jpg", "000002.jpg")))
    assert frames.shape == (3, 16, 16, 3)


def test_corrupt_png_names_the_file(tmp_path):
    src = write_pngs(tmp_path)
    bad = tmp_path / src.files[2]
    bad.write_bytes(bad.read_bytes()[:40])
    with pytest.raises(DatasetError) as e:
        read_frames(src)
    assert e.value.path == str(bad) and e.value.fix


def test_not_an_image_names_the_file(tmp_path):
    src = write_pngs(tmp_path)
    bad = tmp_path / src.files[0]
    bad.write_text("hello")
    with pytest.raises(DatasetError) as e:
        read_frames(src)
    assert e.value.path == str(bad)


def test_missing_png_names_the_file(tmp_path):
    src = write_pngs(tmp_path)
    (tmp_path / src.files[-1]).unlink()
    with pytest.raises(DatasetError, match="missing") as e:
        read_frames(src)
    assert e.value.path == str(tmp_path / src.files[-1])


def test_frames_of_different_sizes_are_an_error(tmp_path):
    src = write_pngs(tmp_path, n=2)
    Image.fromarray(np.zeros((5, 5, 3), np.uint8)).save(tmp_path / src.files[1])
    with pytest.raises(DatasetError, match="differs"):
        read_frames(src)


def test_empty_folder_is_an_error(tmp_path):
    with pytest.raises(DatasetError, match="no frames"):
        read_frames(PngFolder(tmp_path, ()))


# --------------------------------------------------------------------------- mp4


def test_whole_mp4(mp4):
    frames = read_frames(VideoFile(mp4))
    assert frames.shape == (48, 64, 64, 3) and frames.dtype == np.uint8
    assert np.allclose(means(frames), [level(i) for i in range(48)], atol=4)
    assert count_frames(VideoFile(mp4)) == 48


def test_window_is_seeked_and_cut(mp4):
    src = VideoFile(mp4, start=0.5, end=1.5)
    frames = read_frames(src)
    assert frames.shape[0] == 24
    assert np.allclose(means(frames), [level(i) for i in range(12, 36)], atol=4)
    assert abs(count_frames(src) - 24) <= 1


def test_fps_resampling_selects_frames(mp4):
    half = read_frames(VideoFile(mp4), fps=12)
    assert half.shape[0] == 24
    assert np.allclose(means(half), [level(i) for i in range(0, 48, 2)], atol=4)
    assert count_frames(VideoFile(mp4), fps=12) == 24
    more = read_frames(VideoFile(mp4), fps=30)
    assert more.shape[0] == 60
    assert np.all(np.diff(means(more)) > -2)  # still in temporal order, some frames repeated
    assert np.array_equal(read_frames(VideoFile(mp4), fps=24), read_frames(VideoFile(mp4)))


def test_max_side_shrinks_video(mp4):
    assert read_frames(VideoFile(mp4, 0.0, 0.25), max_side=32).shape == (6, 32, 32, 3)


def test_h264_decodes(tmp_path):
    """H.264 is what the releases ship; PyAV's wheel bundles libx264, so its absence is a broken install."""
    import av

    assert "libx264" in av.codecs_available, "this PyAV build has no libx264; fix: ./setup.sh (PyAV's wheel has it)"
    path = write_mp4(tmp_path / "x264.mp4", frames=16, codec="libx264")
    frames = read_frames(VideoFile(path))
    assert frames.shape == (16, 64, 64, 3)


def test_truncated_mp4_is_a_dataset_error(mp4, tmp_path):
    bad = tmp_path / "truncated.mp4"
    data = mp4.read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError) as e:
        read_frames(VideoFile(bad))
    assert e.value.path == str(bad) and e.value.fix
    with pytest.raises(DatasetError):
        count_frames(VideoFile(bad))


def test_truncated_faststart_mp4_is_caught(tmp_path):
    """With the index first, FFmpeg decodes a cut file silently: the frame count gives it away."""
    good = write_mp4(tmp_path / "fast.mp4", faststart=True)
    bad = tmp_path / "fast_cut.mp4"
    data = good.read_bytes()
    bad.write_bytes(data[: int(len(data) * 0.6)])
    assert read_frames(VideoFile(good)).shape[0] == 48
    with pytest.raises(DatasetError, match="truncated") as e:
        read_frames(VideoFile(bad))
    assert e.value.path == str(bad)
    with pytest.raises(DatasetError, match="truncated"):
        read_frames(VideoFile(bad, start=0.25, end=1.75))
    assert read_frames(VideoFile(bad, start=0.1, end=0.4)).shape[0] == 7


def test_garbage_and_missing_mp4(tmp_path):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\0" * 1000)
    with pytest.raises(DatasetError) as e:
        read_frames(VideoFile(junk))
    assert e.value.path == str(junk)
    with pytest.raises(DatasetError, match="missing") as e:
        read_frames(VideoFile(tmp_path / "nope.mp4"))
    assert e.value.path == str(tmp_path / "nope.mp4")


def test_window_past_the_end_is_an_error_not_clipped(mp4):
    """The 2 s video: a window ending past it is refused (its sentence's end is not in the video)."""
    for start, end in ((10.0, 11.0), (1.0, 2.5)):
        with pytest.raises(DatasetError, match=r"ends past the end of clip.mp4 \(2.0 s\)") as e:
            read_frames(VideoFile(mp4, start=start, end=end, origin="END_REALIGNED on line 7 of x.csv"))
        assert e.value.path == str(mp4) and e.value.fix == "none needed, or correct END_REALIGNED on line 7 of x.csv"
    assert read_frames(VideoFile(mp4, start=1.5, end=2.0 + 0.5 / 24)).shape[0] == 12  # within a frame: kept


@pytest.mark.parametrize("fps", [0, -1.0, float("nan"), float("inf"), "fast"])
def test_bad_fps_is_a_dataset_error(mp4, fps):
    for call in (read_frames, count_frames):
        with pytest.raises(DatasetError, match="fps must be a positive number") as e:
            call(VideoFile(mp4), fps=fps)
        assert "--set extract.fps=" in e.value.fix


def test_non_finite_window_is_a_dataset_error(mp4):
    with pytest.raises(DatasetError, match="window end time is nan") as e:
        read_frames(VideoFile(mp4, start=0.5, end=float("nan"), origin="END_REALIGNED on line 3 of x.csv"))
    assert e.value.path == str(mp4) and e.value.fix == "correct END_REALIGNED on line 3 of x.csv"

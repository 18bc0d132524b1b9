"""720p mp4 decode + preprocessing: the old way against the streamed one, in one run.

    .venv/bin/python bench/decode.py                       # 12 s 1280x720 25 fps h264 (How2Sign's size), paper recipe
    .venv/bin/python bench/decode.py --recipe tiny         # the tiny profile's decode size and resize
    .venv/bin/python bench/decode.py --recipe rgb          # decoding to RGB alone (no resize)
    .venv/bin/python bench/decode.py --video some.mp4      # an mp4 of your own instead of the generated one

before: `prepare(read_frames(VideoFile(path), max_side=...))`, what `decode_video(..., streamed=False)`
does: every decoded frame is kept at decode size, stacked into one array, then prepared.
after: `read_prepared(VideoFile(path), prepare, max_side=...)`, what `decode_video` does by
default: frames are prepared in chunks on worker threads while decoding goes on, and only the
prepared (224 px) frames are kept. Both results are compared byte for byte.

The paper recipe is SpaMo's preprocessing without weights: CLIPImageProcessor's defaults
(shortest edge 224 with PIL bicubic, centre crop 224) and VideoMAEImageProcessor's (224,
bilinear), both from the original frame (How2Sign is not squashed), via
`extract.vision.preprocess.processor_crop`. The tiny recipe decodes at most 448 px (swscale) and
resizes with torch bicubic-antialias to 112 and 224 px, as the tiny profile does. The rgb
"recipe" measures decoding to full-size RGB alone: its prepare keeps every 8th pixel of every
8th row (a strided copy, so "after" holds no full-size frames either).

The video (FFmpeg's testsrc2 pattern) is generated with PyAV's lavfi and libx264 (both in
PyAV's wheels; no ffmpeg needed) into a temporary folder. Each way runs `--repeats` times, alternating, best of each reported, with
the cores other processes took meanwhile ("others": the figures are only fair near 0).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from extract.datasets import VideoFile  # noqa: E402
from extract.vision.decode import STREAM_CHUNK, STREAM_WORKERS, read_frames, read_prepared  # noqa: E402


def make_video(path: Path, seconds: float, width: int, height: int, rate: int) -> Path:
    """FFmpeg's testsrc2 pattern (through PyAV's own lavfi; what `ffmpeg -f lavfi -i testsrc2=...
    -c:v libx264 -pix_fmt yuv420p` makes), else a moving numpy pattern; libx264, yuv420p."""
    import av

    n = round(seconds * rate)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=Fraction(rate))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for frame in _pattern(n, width, height, rate):
            frame.pts = None
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def _pattern(n: int, width: int, height: int, rate: int):
    import av

    try:
        source = av.open(f"testsrc2=size={width}x{height}:rate={rate}", format="lavfi")
    except Exception:  # a PyAV build without libavfilter's lavfi device
        source = None
    if source is not None:
        with source:
            for i, frame in enumerate(source.decode(source.streams.video[0])):
                if i == n:
                    return
                yield frame.reformat(format="yuv420p")
        return
    yy, xx = np.mgrid[0:height, 0:2 * width]
    base = np.stack([(xx * 255 // (2 * width)), (yy * 255 // height), ((xx + yy) % 256)], axis=-1).astype(np.uint8)
    for i in range(n):
        shift = (i * 7) % width
        img = base[:, shift:shift + width].copy()
        x0, y0 = (i * 11) % (width - 160), (i * 5) % (height - 120)
        img[y0:y0 + 120, x0:x0 + 160] = (255 - 3 * i % 256, 40, 200)
        yield av.VideoFrame.from_ndarray(img, format="rgb24")


def paper_recipe() -> Any:
    """The paper profile's recipe for How2Sign (CLIP 224 bicubic + VideoMAE 224 bilinear, PIL, from the
    full frame; no squash): `extract.vision.streams.make_recipe` on the architectures alone, no weights."""
    from extract.vision.streams import make_recipe
    from pipeline.config import build_config

    recipe = make_recipe(build_config({"profile": "paper"}, {"extract": {"squash": "none"}}).extract, random_init=True)
    return SimpleNamespace(name="paper (CLIP 224 bicubic + VideoMAE 224 bilinear, PIL, from the full frame)",
                           prepare=recipe.prepare, max_decode_side=recipe.max_decode_side)


def tiny_recipe() -> Any:
    """The tiny profile's recipe: decoded at most 448 px, torch bicubic-antialias to 112 and 224 px."""
    from extract.vision.streams import make_recipe
    from pipeline.config import build_config

    recipe = make_recipe(build_config({"profile": "tiny"}).extract)
    return SimpleNamespace(name=f"tiny (decode <= {recipe.max_decode_side()} px, torch bicubic-antialias)",
                           prepare=recipe.prepare, max_decode_side=recipe.max_decode_side)


def rgb_recipe() -> Any:
    """Decoding to full-size RGB alone: the prepare is a strided 1/8 copy of each frame."""
    def prepare(frames: np.ndarray) -> dict[str, np.ndarray]:
        return {"rgb/8": np.ascontiguousarray(frames[:, ::8, ::8])}

    return SimpleNamespace(name="rgb (full-size RGB decode; prepare keeps a 1/8 strided copy)", prepare=prepare,
                           max_decode_side=lambda: None)


class OtherLoad:
    """CPU that processes other than this one and its descendants (Ray's included) take from now
    on: the noise in a benchmark on a shared machine. Linux /proc; 0 elsewhere. Processes that
    end in between are not counted (an underestimate)."""

    def __init__(self) -> None:
        self.t0, self.start = time.perf_counter(), self._others()

    @staticmethod
    def _procs() -> dict[int, tuple[int, float]]:
        out = {}
        tick = os.sysconf("SC_CLK_TCK")
        for d in Path("/proc").iterdir():
            if d.name.isdigit():
                try:
                    fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                out[int(d.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)  # ppid, utime+stime
        return out

    def _others(self) -> dict[int, float]:
        procs = self._procs()
        ours = {os.getpid()}
        changed = True
        while changed:
            grown = {p for p, (ppid, _) in procs.items() if ppid in ours} - ours
            changed = bool(grown)
            ours |= grown
        return {p: cpu for p, (_, cpu) in procs.items() if p not in ours}

    def cores(self) -> float:
        """Cores the others took on average since construction."""
        end = self._others()
        used = sum(cpu - self.start.get(p, 0.0) for p, cpu in end.items())
        return max(0.0, used) / max(1e-9, time.perf_counter() - self.t0)


def decode_only(path: Path) -> int:
    """PyAV's decoder alone (slice threads, no RGB conversion): the floor of any reader."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "SLICE"
        return sum(1 for _ in container.decode(stream))


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--video", type=Path, help="an existing mp4 instead of the generated clip")
    ap.add_argument("--seconds", type=float, default=12.0)
    ap.add_argument("--size", default="1280x720", help="WxH of the generated clip")
    ap.add_argument("--rate", type=int, default=25, help="frame rate of the generated clip")
    ap.add_argument("--recipe", choices=["paper", "tiny", "rgb"], default="paper")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--workers", type=int, default=STREAM_WORKERS, help="read_prepared's prepare threads")
    ap.add_argument("--chunk", type=int, default=STREAM_CHUNK, help="read_prepared's frames per chunk")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)  # what a decode task runs with (extract.vision.ray_backend._decode_task)
    recipe = {"paper": paper_recipe, "tiny": tiny_recipe, "rgb": rgb_recipe}[args.recipe]()
    with tempfile.TemporaryDirectory() as tmp:
        path = args.video
        if path is None:
            w, h = (int(x) for x in args.size.lower().split("x"))
            t, path = timed(lambda: make_video(Path(tmp) / "clip.mp4", args.seconds, w, h, args.rate))
            print(f"generated {path.name}: {w}x{h} {args.rate} fps {args.seconds:g} s libx264 "
                  f"({path.stat().st_size / 1e6:.1f} MB, {t:.1f} s to encode)")
        src = VideoFile(path)
        side = recipe.max_decode_side()

        def before() -> dict[str, np.ndarray]:
            return recipe.prepare(read_frames(src, max_side=side))

        def after() -> dict[str, np.ndarray]:
            return read_prepared(src, recipe.prepare, max_side=side, chunk=args.chunk, workers=args.workers)

        secs, frames = timed(lambda: decode_only(path))
        print(f"recipe {recipe.name}")
        print(f"PyAV decode alone, no RGB (reference): {frames / secs:7.1f} frames/s")
        runs: dict[str, list[float]] = {"before": [], "after": []}
        outs: dict[str, dict[str, np.ndarray]] = {}
        others: dict[str, list[float]] = {"before": [], "after": []}
        for _ in range(max(1, args.repeats)):
            for name, fn in (("before", before), ("after", after)):
                load = OtherLoad()
                secs, outs[name] = timed(fn)
                others[name].append(load.cores())
                n = len(next(iter(outs[name].values())))
                runs[name].append(n / secs)
        a, b = outs["before"], outs["after"]
        same = a.keys() == b.keys() and all(a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]) for k in a)
        n = len(next(iter(a.values())))
        for name, label in (("before", "prepare(read_frames(...))"), ("after", f"read_prepared(..., chunk={args.chunk}, "
                                                                             f"workers={args.workers})")):
            print(f"{name:6s} {label:44s} {max(runs[name]):7.1f} frames/s  "
                  f"(runs: {', '.join(f'{x:.1f}' for x in runs[name])}; "
                  f"others took {', '.join(f'{x:.2f}' for x in others[name])} cores)")
        print(f"ratio after / before: {max(runs['after']) / max(runs['before']):.2f}x   "
              f"({n} frames, {', '.join(f'{k} {v.shape[1]}x{v.shape[2]}' for k, v in a.items())}; "
              f"byte-identical: {same})")
        if not same:
            raise SystemExit("the streamed result differs from the old one")


if __name__ == "__main__":
    main()

"""Why extract.vision.decode decodes with slice threads only: FFmpeg's frame threading can deadlock
when decoding stops before the end of a file with torchvision loaded (PyAV #1849; timm loads
it), which every early-ending window does.

    .venv/bin/python bench/frame_threads.py            # each mode in its own process, 60 s limit

Each mode: 4 Python threads decode short mp4 files, 16 decoder threads each (what a 16-core
machine gets by default), stopping after a few frames, 30 rounds. Prints seconds or "hung".
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import sys, time
sys.path.insert(0, 'tests')
import torch, torchvision  # the reported hang needs both loaded (timm imports torchvision)
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
import av
import test_decode_determinism as t
mode, root = sys.argv[1], Path(sys.argv[2])
paths = [t.write_clip(root / f'{c.name}.mp4', c) for c in t.CLIPS]
def decode(job):
    path, stop = job
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type, stream.thread_count = mode, 16
        for i, _ in enumerate(container.decode(stream)):
            if i == stop:
                break
jobs = [(p, stop) for p in paths for stop in (3, 10, 20, 40)] * 5
t0 = time.perf_counter()
with ThreadPoolExecutor(4) as pool:
    for _ in range(30):
        list(pool.map(decode, jobs))
print(f'{time.perf_counter() - t0:.1f} s')
"""


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for mode in ("SLICE", "AUTO"):
            try:
                out = subprocess.run([sys.executable, "-c", CHILD, mode, tmp], cwd=ROOT, capture_output=True,
                                     text=True, timeout=60)
                result = out.stdout.strip() or out.stderr.strip().splitlines()[-1]
            except subprocess.TimeoutExpired:
                result = "hung (killed after 60 s)"
            print(f"{mode:>5}: {result}", flush=True)


if __name__ == "__main__":
    main()

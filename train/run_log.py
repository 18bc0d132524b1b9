"""A run's metrics: metrics.jsonl (one JSON row per log), TensorBoard (tb/), curves.png at the end.

The reader of metrics.jsonl is train.run_files.read_metrics, beside the run's other files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cache.files import write_text_atomic, writing
from train.run_files import METRICS_FILE, read_metrics


class RunLog:
    """On resume at `step`, rows logged after that step (lost with the crash) are dropped first."""

    def __init__(self, run_dir: Path, *, resume_step: int | None):
        from torch.utils.tensorboard import SummaryWriter

        self.run_dir = run_dir
        path = run_dir / METRICS_FILE
        self._path = path
        if resume_step is None:
            write_text_atomic(path, "", fsync=False)
        elif path.exists():
            rows = [x for x in path.read_text().splitlines() if x.strip() and json.loads(x)["step"] <= resume_step]
            write_text_atomic(path, "".join(r + "\n" for r in rows), fsync=False)
        self._file = path.open("a")
        self._tb = SummaryWriter(str(run_dir / "tb"), purge_step=resume_step)

    def write(self, row: dict[str, Any], *, scalars: dict[str, float]) -> None:
        """One metrics.jsonl row, and `scalars` (name -> value) to TensorBoard at the row's step."""
        with writing(self._path):
            self._file.write(json.dumps(row) + "\n")
            self._file.flush()
        for name, value in scalars.items():
            self._tb.add_scalar(name, value, row["step"])

    def close(self) -> None:
        self._file.close()
        self._tb.close()
        plot_curves(self.run_dir)


def plot_curves(run_dir: Path) -> Path | None:
    path = run_dir / METRICS_FILE
    if not path.exists():
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(path)[0]
    tr = [(r["step"], r["loss"]) for r in rows if r.get("kind") == "train"]
    ev = [(r["step"], r["bleu"]) for r in rows if r.get("kind") == "eval"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    if tr:
        axes[0].plot(*zip(*tr))
    axes[0].set(title="train loss", xlabel="step", yscale="log" if tr and min(v for _, v in tr) > 0 else "linear")
    if ev:
        axes[1].plot(*zip(*ev), marker="o")
    axes[1].set(title="dev BLEU", xlabel="step")
    fig.tight_layout()
    out = run_dir / "curves.png"
    with writing(out):
        fig.savefig(out, dpi=80)
    plt.close(fig)
    return out

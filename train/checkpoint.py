"""Checkpoints of a run: trainable weights (last and best) and the state a resume needs.

  ckpt/last/weights.safetensors   trainable weights only (visual.* incl. BatchNorm buffers, lora.*)
  ckpt/last/state.pt              optimizer, scheduler, step, RNG states, best BLEU
  ckpt/best/weights.safetensors   best dev BLEU so far (+ best.json)

state.pt is written under a temporary name and renamed, so a crash leaves the previous one.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cache.files import write_text_atomic, writing
from train.model import load_trainable, save_weights, trainable_state
from train.optim import Optimisation


@dataclass
class Progress:
    """Where a run stands: what a resume continues from."""

    step: int = 0
    best_bleu: float | None = None
    best_step: int | None = None


class Checkpoints:
    def __init__(self, run_dir: Path, weights_meta: dict[str, str]):
        self.last = run_dir / "ckpt" / "last"
        self.best = run_dir / "ckpt" / "best"
        self.meta = weights_meta

    @staticmethod
    def resumable(run_dir: Path) -> bool:
        return (run_dir / "ckpt" / "last" / "state.pt").exists()

    def save_last(self, visual: torch.nn.Module, dec: torch.nn.Module, optim: Optimisation, progress: Progress) -> None:
        save_weights(trainable_state(visual, dec), self.last / "weights.safetensors", self.meta)
        # not cache.files.write_atomic: torch names the zip's records after the file it writes ("state.pt/..." from
        # state.pt.tmp), so its hidden, pid-suffixed temporary would change the file's bytes
        tmp = self.last / "state.pt.tmp"
        with writing(tmp):  # torch reports a full disk as `unexpected pos`
            torch.save({"optimizer": optim.opt.state_dict(), "scheduler": optim.sched.state_dict(), "step": progress.step,
                        "best_bleu": progress.best_bleu, "best_step": progress.best_step, "rng": rng_state()}, tmp)
        tmp.replace(self.last / "state.pt")

    def save_best(self, visual: torch.nn.Module, dec: torch.nn.Module, record: dict[str, Any]) -> None:
        save_weights(trainable_state(visual, dec), self.best / "weights.safetensors", self.meta)
        write_text_atomic(self.best / "best.json", json.dumps(record, indent=2), fsync=False)

    def restore(self, visual: torch.nn.Module, dec: torch.nn.Module, optim: Optimisation) -> Progress:
        """Weights, optimiser, schedule and RNG states of ckpt/last, as they were when it was saved."""
        load_trainable(visual, dec, self.last / "weights.safetensors")
        st = torch.load(self.last / "state.pt", map_location="cpu", weights_only=False)
        optim.opt.load_state_dict(st["optimizer"])
        optim.sched.load_state_dict(st["scheduler"])
        set_rng_state(st["rng"])
        return Progress(st["step"], st["best_bleu"], st["best_step"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict:
    st = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def set_rng_state(st: dict) -> None:
    torch.set_rng_state(st["torch"])
    np.random.set_state(st["numpy"])
    random.setstate(st["python"])
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])

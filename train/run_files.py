"""The files evaluation and training leave in a run directory, with their readers beside the writers.

  metrics.jsonl                 one JSON row per log (train.run_log.RunLog writes it)
  scores_{split}.json           a split's scores per language (train.evaluate)
  predictions_{split}_{lang}.tsv  id, ref, hyp, then one column per per-sample score

The readers are lenient: `slt-pipe report` and the ablation read runs that are still going or
were cut by a crash, so a broken line or cell is skipped or empty, never an error.
"""

from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path
from typing import Any

from cache.files import write_text_atomic, writing

METRICS_FILE = "metrics.jsonl"
TSV_FIXED = ("id", "ref", "hyp")
"""The first columns of a predictions TSV; every later column is a per-sample score."""
_NLLB = re.compile(r"^predictions_(?P<split>.+)_(?P<lang>[a-z]{2,3}_[A-Z][a-z]{3})\.tsv$")
_LOOSE = re.compile(r"^predictions_(?P<split>[^_]+)_(?P<lang>.+)\.tsv$")


def is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def read_json(path: Path) -> tuple[Any, str | None]:
    """(content, None) or (None, why not)."""
    if not path.is_file():
        return None, f"no {path.name}"
    try:
        return json.loads(path.read_text(encoding="utf-8")), None
    except (OSError, ValueError) as e:
        return None, f"{path.name} is unreadable ({e})"


def read_metrics(path: Path) -> tuple[list[dict], int]:
    """(rows of metrics.jsonl, number of lines that were not JSON objects: a line cut by a crash)."""
    rows, bad = [], 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            bad += 1
            continue
        if isinstance(row, dict) and is_number(row.get("step")):
            rows.append(row)
        else:
            bad += 1
    return rows, bad


def run_weights(run_dir: Path, checkpoint: str = "best") -> Path:
    """RUN/ckpt/CHECKPOINT/weights.safetensors; 'best' falls back to 'last' (a run never evaluated on dev has no
    best). The file may not exist: the caller says what that means. Here, not in train.model: translate checks
    a run for its weights before importing torch."""
    weights = Path(run_dir) / "ckpt" / checkpoint / "weights.safetensors"
    if not weights.exists() and checkpoint == "best":
        weights = Path(run_dir) / "ckpt" / "last" / "weights.safetensors"
    return weights


def write_scores(run_dir: Path, split: str, results: dict[str, dict]) -> Path:
    path = Path(run_dir) / f"scores_{split}.json"
    write_text_atomic(path, json.dumps(results, indent=2), fsync=False)
    return path


def score_files(run: Path) -> dict[str, Path]:
    """split -> scores_{split}.json in `run`."""
    return {p.name[len("scores_"):-len(".json")]: p for p in run.glob("scores_*.json")}


def write_predictions(path: Path, ids: list[str], refs: list[str], hyps: list[str],
                      scores: dict[str, list[float | None]]) -> Path:
    """id, ref, hyp, then one column per score, in `scores`' order (None: a blank cell)."""
    with writing(path), path.open("w", newline="") as f:
        w = csv.writer(f, delimiter="\t", quoting=csv.QUOTE_MINIMAL)
        w.writerow([*TSV_FIXED, *scores])
        for i, (vid, ref, hyp) in enumerate(zip(ids, refs, hyps)):
            w.writerow([vid, ref, hyp] + ["" if v[i] is None else f"{v[i]:.6f}" for v in scores.values()])
    return path


def read_predictions(path: Path) -> tuple[list[str], list[dict[str, Any]]]:
    """(score column names, rows {id, ref, hyp, score: float | None}) of one predictions TSV."""
    csv.field_size_limit(1 << 30)
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.reader(f, delimiter="\t")
        header = next(reader, None)
        if header is None:
            return [], []
        head = [h.strip() for h in header]
        idx = {name: head.index(name) if name in head else k for k, name in enumerate(TSV_FIXED)}
        score_cols = [(k, h) for k, h in enumerate(head) if k not in idx.values() and h]
        rows = []
        for rec in reader:
            if not rec:
                continue
            row: dict[str, Any] = {n: rec[i] if i < len(rec) else "" for n, i in idx.items()}
            for k, name in score_cols:
                row[name] = _to_float(rec[k]) if k < len(rec) else None
            rows.append(row)
    return [h for _, h in score_cols], rows


def prediction_files(run: Path) -> dict[str, dict[str, Path]]:
    """split -> lang -> predictions_{split}_{lang}.tsv in `run`."""
    out: dict[str, dict[str, Path]] = {}
    for p in sorted(run.glob("predictions_*.tsv")):
        m = _NLLB.match(p.name) or _LOOSE.match(p.name)
        if m:
            out.setdefault(m["split"], {})[m["lang"]] = p
    return out


def _to_float(text: str) -> float | None:
    try:
        v = float(text)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None

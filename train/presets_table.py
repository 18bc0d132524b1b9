"""Text views of the training presets: `slt-pipe config show --presets` and `slt-pipe train --help`.

Both are built from `train.config` (the dataclass, its field docstrings and TRAIN_PRESETS),
so the printed values and sources cannot drift from the ones the trainer uses.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from train.config import PRESET_NOTES, TRAIN_PRESETS, TrainConfig, field_source, preset_config

HELP_FIELDS = ("steps", "batch_size", "lr", "lora_lr", "warmup_start_lr", "warmup_steps", "min_lr", "grad_clip",
               "max_frames", "visual_block", "hidden_dim", "pooling", "w_mse", "w_cos", "w_ce", "w_ae",
               "frame_mask", "frame_dropout", "p_video_aug", "lora_rank", "lora_alpha", "lora_dropout",
               "beam_size", "max_len", "bleu_case", "eval_every")
"""The settings `train --help` shows: the recipe, not the plumbing (paths, threads, logging)."""
SKIP = ("preset", "out")


def field_docs() -> dict[str, str]:
    """TrainConfig field -> docstring (the string literal after each field; train/ never imports pipeline/)."""
    import ast
    import inspect

    body = ast.parse(inspect.getsource(TrainConfig)).body[0].body  # type: ignore[attr-defined]
    docs: dict[str, str] = {}
    for node, nxt in zip(body, body[1:]):
        if isinstance(node, ast.AnnAssign) and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant):
            docs[node.target.id] = str(nxt.value.value)  # type: ignore[union-attr]
    return docs


def _fmt(v: object) -> str:
    return "none" if v is None else str(v)


def presets_text() -> str:
    """Every preset's value of every recipe field, with the source of the paper-spamo value."""
    docs = field_docs()
    configs = {name: preset_config(name) for name in TRAIN_PRESETS}
    names = [f.name for f in dataclasses.fields(TrainConfig) if f.name not in SKIP]
    lines = ["training presets (train.preset; the paper profile starts from paper-spamo, the tiny profile from tiny;",
             "a layer that sets train.preset brings its values in beneath that layer's own settings):", ""]
    for name, note in PRESET_NOTES.items():
        lines.append(f"  {name:<12} {note}")
    lines.append("")
    width = max(map(len, names)) + 2
    cols = {name: max(len(name), *(len(_fmt(getattr(c, f))) for f in names)) + 2 for name, c in configs.items()}
    lines.append("field".ljust(width) + "".join(n.ljust(cols[n]) for n in configs) + "source of the paper-spamo value")
    for f in names:
        row = f.ljust(width) + "".join(_fmt(getattr(c, f)).ljust(cols[n]) for n, c in configs.items())
        lines.append(row + field_source(docs.get(f, "")))
    lines += ["", "Values of generic and tiny that differ from paper-spamo are slt-pipe's choices "
                  "(train/config.py TRAIN_PRESETS says why)."]
    return "\n".join(lines)


def train_help(values: dict[str, tuple[Any, str]], problem: str | None = None) -> str:
    """The `slt-pipe train` command help: what it does, then the recipe this project would train with
    (`values`: dotted field -> (value, layer), `Resolved.explain()`), each value with its layer and,
    under the paper preset, where it holds the paper's value, that value's source; `problem`: why the project's values are unknown."""
    docs = field_docs()
    paper = preset_config("paper-spamo")
    head = "Train the visual block and LoRA SONAR decoder on cached features and targets only.\n\n"
    if not values:
        rows = [f"train.{f} = {_fmt(getattr(paper, f))}   source: {field_source(docs.get(f, ''))}" for f in HELP_FIELDS]
        return (head + f"This project's values are not shown ({problem}). The paper profile's recipe "
                "(preset paper-spamo):\n\n\b\n" + "\n".join(rows))
    preset = values.get("train.preset", ("?", ""))[0]
    rows = []
    for f in HELP_FIELDS:
        value, where = values[f"train.{f}"]
        source = field_source(docs.get(f, ""))
        paper_value = preset == "paper-spamo" and value == getattr(paper, f) and source
        rows.append(f"train.{f} = {_fmt(value)}   from {where}" + (f"; source: {source}" if paper_value else ""))
    return (head + f"The recipe this project trains with (train.preset {preset}, profile {values['profile'][0]}; "
            "each value with the layer it comes from; --set train.FIELD=VALUE changes any of it, "
            "`slt-pipe config show --presets` lists every preset, `config show --explain` every field):"
            "\n\n\b\n" + "\n".join(rows))

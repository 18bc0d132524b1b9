"""`--help` that shows what the command would use here: each option backed by a config field gets the
value this project gives it (slt-pipe.toml, $SLT_PIPE_CACHE, the profile and its presets) and the
layer it comes from; every other option gets its default. Resolved when help is asked for, never at
import, so a broken project file costs other commands nothing and the help still shows."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import typer
from typer.core import TyperCommand

Values = dict[str, tuple[Any, str]]
"""Dotted field -> (value, the layer it comes from): `Resolved.explain()`."""

COMMON_FIELDS = {"profile": "profile", "dataset": "dataset.name", "root": "dataset.root", "cache": "cache.dir",
                 "split": "dataset.splits", "langs": "embed.langs"}
"""Option (its Python name) -> the field it sets, for the options every config-reading command shares."""


def project_values(config_file: Path | None = None, flags: dict[str, Any] | None = None,
                   sets: list[str] | None = None) -> tuple[Values, str | None]:
    """The effective config here (with the options given before --help), field by field; ({}, why)
    when it cannot be resolved."""
    from cache.errors import SltPipeError
    from pipeline.project import resolve

    try:
        return resolve(config_file=config_file, flags=flags, sets=sets).explain(), None
    except SltPipeError as e:
        return {}, e.render()


def shown(value: Any) -> str:
    """A config value as a user would type it after the option."""
    if value is None:
        return "unset"
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return str(value)


def help_class(fields: dict[str, str] | None = None, *, intro: Callable[[Values, str | None], str] | None = None,
               needs_dataset: bool = False) -> type[TyperCommand]:
    """A command class whose help adds `[here: VALUE, from LAYER]` to each option that sets a config
    field (COMMON_FIELDS and `fields`); the others keep click's `[default: VALUE]`. `intro(values, problem)` replaces the
    description. `needs_dataset`: the command refuses to guess a dataset, so an unchosen one is shown as none."""
    mapping = {**COMMON_FIELDS, **(fields or {})}

    class ProjectHelp(TyperCommand):
        def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
            ctx.meta["slt_pipe_args"] = list(args)  # --help is eager: the other options are not parsed yet
            return super().parse_args(ctx, args)

        def format_help(self, ctx: Any, formatter: Any) -> None:  # typer vendors its own click
            values, problem = project_values(**_given(self, ctx, mapping))
            for param in self.params:
                if param.param_type_name == "option" and param.name != "help":
                    dotted = mapping.get(param.name or "")
                    unchosen = needs_dataset and dotted == "dataset.name" and values.get(dotted, ("", ""))[1] == "default"
                    param.help = _original(param, "help") + (NO_DATASET if unchosen else _suffix(param, dotted, values))
            if intro is not None:
                self.help = intro(values, problem)
            elif problem:
                self.help = f"{_original(self, 'help')}\n\n(this project's values are not shown: {problem})"
            super().format_help(ctx, formatter)

    return ProjectHelp


NO_DATASET = "  [here: none chosen: pass --dataset, --config, or run `slt-pipe init` for a project file]"
"""The suffix of --dataset where nothing chose one and the command does not guess (no default)."""


def _given(command: Any, ctx: Any, mapping: dict[str, str]) -> dict[str, Any]:
    """`project_values` arguments from the options typed on the command line before --help
    (`slt-pipe train --profile paper --help` shows the paper profile's values)."""
    args: list[str] = ctx.meta.get("slt_pipe_args", [])
    given: dict[str, Any] = {"config_file": None, "flags": {}, "sets": []}
    for param in command.params:
        if param.param_type_name != "option" or param.is_flag:
            continue
        for raw in _values_of(args, param.opts):
            if param.name == "sets":  # a repeatable option: each value is one --set, as typed
                given["sets"].append(raw)
                continue
            try:
                value = param.process_value(ctx, raw)
            except typer.BadParameter:
                continue  # a bad value is the command's error to report, not help's
            if param.name == "config":
                given["config_file"] = value
            elif param.name in mapping:
                given["flags"][mapping[param.name]] = value
    return given


def _values_of(args: list[str], opts: list[str]) -> list[str]:
    """Every value given to one of `opts` in `args` (`--opt VALUE` or `--opt=VALUE`)."""
    found = []
    for k, arg in enumerate(args):
        for opt in opts:
            if arg == opt and k + 1 < len(args):
                found.append(args[k + 1])
            elif arg.startswith(opt + "="):
                found.append(arg[len(opt) + 1:])
    return found


def _original(obj: Any, attr: str) -> str:
    """`obj.attr` as first declared: help may be formatted twice in one process (tests, a REPL)."""
    saved = f"_declared_{attr}"
    if not hasattr(obj, saved):
        setattr(obj, saved, getattr(obj, attr) or "")
    return getattr(obj, saved)


def _suffix(param: Any, dotted: str | None, values: Values) -> str:
    if dotted is None or dotted not in values:
        return ""  # click shows a plain option's own default ([default: ...])
    value, where = values[dotted]
    if param.is_flag and not value:
        return ""  # a flag that is off here: saying so on every flag is noise
    return f"  [here: {shown(value)}, from {where}]"

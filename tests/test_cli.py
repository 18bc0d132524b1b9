"""The CLI surface: the commands a user is promised, each option explained."""

from __future__ import annotations

from typing import Any

import typer.main

from pipeline.cli import app

PROMISED = {"extract", "embed-targets", "train", "evaluate", "translate", "demo", "make-toy", "cache", "config", "ablate"}


def _leaves(cmd: Any, path: tuple[str, ...] = ()):
    # duck-typed: typer ships its own copy of click, so isinstance against `click` is always False
    if hasattr(cmd, "commands"):
        for name, sub in cmd.commands.items():
            yield from _leaves(sub, path + (name,))
    else:
        yield path, cmd


def test_top_level_commands_are_there():
    assert PROMISED <= set(typer.main.get_command(app).commands)


def test_every_command_and_option_has_help():
    missing = []
    for path, cmd in _leaves(typer.main.get_command(app)):
        if not (cmd.help or "").strip():
            missing.append(" ".join(path))
        missing += [f"{' '.join(path)} {p.opts[0]}" for p in cmd.params
                    if p.param_type_name == "option" and p.name != "help" and not (p.help or "").strip()]
    assert not missing, missing
    leaves = [" ".join(path) for path, _ in _leaves(typer.main.get_command(app))]
    assert "cache ls" in leaves and "config show" in leaves and "extract" in leaves  # the groups are walked

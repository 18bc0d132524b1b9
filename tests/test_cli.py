"""The CLI surface: the commands a user is promised, each option explained."""

from __future__ import annotations

import click
import typer.main

from pipeline.cli import app

PROMISED = {"extract", "embed-targets", "train", "evaluate", "translate", "demo", "make-toy", "cache", "config", "ablate"}


def _leaves(cmd: click.Command, path: tuple[str, ...] = ()):
    if isinstance(cmd, click.Group):
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
                    if isinstance(p, click.Option) and p.name != "help" and not (p.help or "").strip()]
    assert not missing, missing

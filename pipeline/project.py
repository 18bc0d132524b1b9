"""Where the effective config comes from: profile, project file, --config, flags."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.config import PROJECT_FILE, Config, build_config, load_toml, parse_override


def find_project_file(start: Path | None = None) -> Path | None:
    """`slt-pipe.toml` in the working directory or the nearest parent that has one."""
    here = (start or Path.cwd()).resolve()
    for d in (here, *here.parents):
        if (d / PROJECT_FILE).is_file():
            return d / PROJECT_FILE
    return None


def resolve_config(
    *,
    config_file: Path | None = None,
    flags: dict[str, Any] | None = None,
    sets: list[str] | None = None,
    use_project_file: bool = True,
) -> Config:
    """Profile defaults <- project file <- --config FILE <- flags <- --set overrides."""
    layers: list[dict[str, Any]] = []
    project = find_project_file() if use_project_file else None
    if project is not None:
        layer = load_toml(project)
        _relative_paths(layer, project.parent)
        layers.append(layer)
    if config_file is not None:
        layer = load_toml(config_file)
        _relative_paths(layer, config_file.parent)
        layers.append(layer)
    if flags:
        layers.append(_nest({k: v for k, v in flags.items() if v is not None}))
    for s in sets or []:
        layers.append(parse_override(s))
    return build_config(*layers)


def _nest(flat: dict[str, Any]) -> dict[str, Any]:
    """{"dataset.root": x, "profile": p} -> {"dataset": {"root": x}, "profile": p}."""
    out: dict[str, Any] = {}
    for dotted, v in flat.items():
        node = out
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = v
    return out


def _relative_paths(layer: dict[str, Any], base: Path) -> None:
    """Paths in a config file are relative to the file, not to wherever slt-pipe runs."""
    for section, key in (("dataset", "root"), ("cache", "dir"), ("train", "out")):
        value = layer.get(section, {}).get(key)
        if isinstance(value, str) and not Path(value).expanduser().is_absolute():
            layer[section][key] = str((base / value).resolve())

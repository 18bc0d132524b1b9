"""Where the effective config comes from: profile, project file, --config, flags.

Layers, lowest first: the profile's defaults (and a training preset's), `$SLT_PIPE_CACHE`
for the cache dir, the project file `slt-pipe.toml`, `--config FILE`, command-line flags,
`--set` overrides. The project file holds only what the user chose at `init` (or wrote
since), so `--profile paper` in a project made with `--profile tiny` really means paper.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cache.errors import SltPipeError
from pipeline.config import (
    PROFILES,
    PROJECT_FILE,
    Config,
    Layer,
    build_config,
    build_named,
    deep_merge,
    flat_fields,
    load_toml,
    origins,
    parse_override,
    parse_overrides,
)
from pipeline.toml_writer import to_toml

PROJECT_HEADER = "# slt-pipe project file: only the settings chosen here; profiles and presets fill in the rest."
"""First line `init` writes; a project file without it and with many fields is an old full dump."""
OLD_DUMP_FIELDS = 20
"""An unmarked project file setting at least this many fields was written by an old `init`."""


@dataclass
class Resolved:
    """The effective config and how it was made."""

    config: Config
    layers: list[Layer]
    project_file: Path | None
    notes: list[str] = field(default_factory=list)
    """Things the user should know about the layers (e.g. an old project file pinning defaults)."""

    def origins(self) -> dict[str, str]:
        return origins(self.layers)

    def explain(self) -> dict[str, tuple[Any, str]]:
        """Dotted field -> (its value, JSON-able; the layer it comes from), for `config show --explain`."""
        import os

        where = self.origins()
        if where.get("cache.dir") == "default" and os.environ.get("SLT_PIPE_CACHE"):
            where["cache.dir"] = "$SLT_PIPE_CACHE"
        return {k: (str(v) if isinstance(v, Path) else v, where[k]) for k, v in flat_fields(self.config).items()}

    def user_set(self, dotted: str) -> bool:
        """Whether a user layer (project file, --config, a flag, --set) sets this field."""
        return any(dotted in flat_fields(layer) for _, layer in self.layers)


def find_project_file(start: Path | None = None) -> Path | None:
    """`slt-pipe.toml` in the working directory or the nearest parent that has one."""
    here = (start or Path.cwd()).resolve()
    for d in (here, *here.parents):
        if (d / PROJECT_FILE).is_file():
            return d / PROJECT_FILE
    return None


def resolve(
    *,
    config_file: Path | None = None,
    flags: dict[str, Any] | None = None,
    sets: list[str] | None = None,
    use_project_file: bool = True,
) -> Resolved:
    """Profile defaults <- project file <- --config FILE <- flags <- --set overrides."""
    layers: list[Layer] = []
    notes: list[str] = []
    project = find_project_file() if use_project_file else None
    if project is not None:
        layer = load_toml(project)
        _relative_paths(layer, project.parent)
        layers.append((f"project file {project}", layer))
        notes += old_dump_notes(project, layer)
    if config_file is not None:
        layer = load_toml(config_file)
        _relative_paths(layer, config_file.parent)
        layers.append((f"--config {config_file}", layer))
    if flags:
        given = {k: v for k, v in flags.items() if v is not None}
        for dotted, v in given.items():
            layers.append((f"flag {FLAG_NAMES.get(dotted, dotted)}", _nest({dotted: v})))
    for s in sets or []:
        layers.append((f"--set {s}", parse_override(s)))
    return Resolved(build_named(*layers), layers, project, notes)


def resolve_config(**kwargs: Any) -> Config:
    return resolve(**kwargs).config


FLAG_NAMES = {"profile": "--profile", "dataset.name": "--dataset", "dataset.root": "--root", "cache.dir": "--cache",
              "dataset.splits": "--split", "embed.langs": "--langs", "train.out": "--out", "train.steps": "--steps"}
"""Dotted field -> the flag that sets it, for `config show --explain`."""


def old_dump_notes(path: Path, layer: dict[str, Any]) -> list[str]:
    """A note when an old `init` copied a whole profile into the project file."""
    try:
        first = path.read_text().splitlines()[:1]
    except OSError:
        return []
    fields = flat_fields(layer)
    if first == [PROJECT_HEADER] or len(fields) < OLD_DUMP_FIELDS:
        return []
    profile = str(layer.get("profile", Config.profile))
    defaults = flat_fields(build_config({"profile": profile}))
    chosen = ("profile", "dataset.name", "dataset.root", "embed.langs", "cache.dir")
    # The fields that differ between profiles are the ones that silently defeat --profile: list them first.
    varies = {k for p in PROFILES for k, v in flat_fields(build_config({"profile": p})).items() if not _same(v, defaults.get(k))}
    pinned = sorted((k for k, v in fields.items() if k not in chosen and k in defaults and _same(defaults[k], v)),
                    key=lambda k: (k not in varies, k))
    if not pinned:
        return []
    args = [f"--dataset {fields.get('dataset.name', 'toy')}", f"--profile {profile}"]
    if fields.get("dataset.root"):
        args.append(f"--root {fields['dataset.root']}")
    if fields.get("embed.langs"):
        langs = fields["embed.langs"]
        args.append(f"--langs {','.join(langs) if isinstance(langs, list) else langs}")
    shown = ", ".join(pinned[:6]) + (f" and {len(pinned) - 6} more" if len(pinned) > 6 else "")
    return [f"{path} was written by an older `slt-pipe init`: it pins {len(pinned)} copied defaults of profile "
            f"{profile} ({shown}), which win over --profile and presets. To keep only your choices, run "
            f"`slt-pipe init --force {' '.join(args)}` in {path.parent} (add back any field you changed by hand)."]


def _same(a: Any, b: Any) -> bool:
    return str(a) == str(b) if isinstance(a, Path) or isinstance(b, Path) else a == b


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


def init_project(*, dataset: str | None, root: Path | None, profile: str | None, langs: str | None,
                 cache: Path | None, sets: list[str] | None, force: bool) -> Path:
    """`slt-pipe init`: write the project file in the working directory with only these choices (and the
    --sets, merged deeply), after checking every name and path; returns its path."""
    from extract.datasets import dataset_spec, missing_root_fix
    from extract.text.languages import resolve_langs

    path = Path(PROJECT_FILE)
    if path.exists() and not force:
        raise SltPipeError("already exists", path=path.resolve(), fix="edit it, or pass --force to overwrite")
    name = dataset or "toy"
    dataset_spec(name)  # an unknown name: the one error, with the close match
    if profile not in PROFILES:
        raise SltPipeError(f"unknown profile {profile!r}", fix=f"use one of: {', '.join(PROFILES)}")
    if root is not None and not root.expanduser().is_dir():
        raise SltPipeError("dataset root is not a directory", path=root.expanduser().resolve(),
                           fix=missing_root_fix(name, root.expanduser().resolve()))
    if root is None and name != "toy":
        raise SltPipeError(f"dataset {name!r} needs --root", fix=f"pass --root pointing at the unpacked {name} release")
    layer: dict[str, Any] = {"profile": profile, "dataset": {"name": name}, "embed": {"langs": resolve_langs(langs or "")}}
    if root:
        layer["dataset"]["root"] = str(root.expanduser().resolve())
    if cache:
        layer["cache"] = {"dir": str(cache.expanduser().resolve())}
    deep_merge(layer, parse_overrides(sets or []))
    build_config(layer)  # every --set must name a real field with a valid value
    path.write_text(PROJECT_HEADER + "\n" + to_toml(layer))
    return path


def require_dataset(resolved: Resolved) -> None:
    """A command that works on a dataset needs one chosen: a project file, --config or --dataset."""
    if resolved.user_set("dataset.name"):
        return
    where = "no project file (slt-pipe.toml) in this folder or its parents" if resolved.project_file is None \
        else f"{resolved.project_file} names no dataset"
    raise SltPipeError(f"{where}, and no --dataset given",
                       fix="run `slt-pipe init` here for the generated toy corpus, or `slt-pipe init --dataset phoenix "
                           "--root /path/to/PHOENIX-2014-T-release-v3 --profile paper` for real data (or pass --dataset "
                           "and --root to this command)")



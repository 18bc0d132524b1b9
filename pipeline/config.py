"""The one typed config that flows from the CLI down to every stage.

Resolution order (later wins): profile defaults -> project file (`slt-pipe.toml`) ->
`--config FILE` -> command-line flags and `--set section.field=value` overrides.
Stages receive the section they need (`ExtractConfig`, `EmbedConfig`, `TrainConfig`),
never a dict of strings.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from cache.errors import SltPipeError
from extract.config import DatasetConfig, EmbedConfig, ExtractConfig
from train.config import TrainConfig, train_preset

PROJECT_FILE = "slt-pipe.toml"
RENAMED = {"train.pretrained_visual": "train.init_visual_block",
           "extract.spatial_model": "extract.clip.model (and extract.streams for another encoder)",
           "extract.spatial_weights": "extract.clip.weights", "extract.spatial_arch": "extract.clip.arch",
           "extract.motion_model": "extract.videomae.model (and extract.streams for another encoder)",
           "extract.motion_weights": "extract.videomae.weights", "extract.motion_arch": "extract.videomae.arch"}
"""Old field -> new field, so an old config file gets the new name instead of a guess."""
PROFILES = ("tiny", "paper")


def default_cache_dir() -> Path:
    env = os.environ.get("SLT_PIPE_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "slt-pipe"


@dataclass
class CacheConfig:
    dir: Path = field(default_factory=default_cache_dir)
    """Cache root; default $SLT_PIPE_CACHE or ~/.cache/slt-pipe."""


@dataclass
class Config:
    profile: str = "tiny"
    """Model sizes: tiny (seeded tiny models of the paper architectures) or paper."""
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    extract: ExtractConfig = field(default_factory=ExtractConfig)
    embed: EmbedConfig = field(default_factory=EmbedConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def profile_overrides(profile: str) -> dict[str, dict[str, Any]]:
    """Section -> field -> value that a profile sets on top of the dataclass defaults."""
    if profile == "paper":
        # Training: the paper recipe (preset paper-spamo = TrainConfig's defaults).
        return {"train": {"preset": "paper-spamo"}}
    if profile == "tiny":
        return {
            "extract": {
                "streams": ["tiny-vit", "tiny-videomae"],
                "image_size": 112,
                "batch_frames": 64,
            },
            # The tiny NLLB only exercises the NLLB code path (it translates badly); the toy's
            # eng/fra targets come from the tiny SONAR translator, exact with greedy decoding.
            "embed": {"nllb_model": "tiny", "sonar_encoder": "tiny", "sonar_decoder": "tiny", "translator": "sonar",
                      "beam_size": 1, "batch_size": 128},
            # Training: preset tiny (train.config.TRAIN_PRESETS) keeps the toy demo's block and schedule.
            "train": {"preset": "tiny"},
        }
    raise SltPipeError(f"unknown profile {profile!r}", fix=f"use one of: {', '.join(PROFILES)}")


# ---------------------------------------------------------------- building and overriding


Layer = tuple[str, dict[str, Any]]
"""A named config layer: (where it came from, nested dict as in TOML)."""


def build_config(*layers: dict[str, Any]) -> Config:
    """Profile defaults, then each layer (a nested dict as in TOML) in order."""
    return build_named(*((f"layer {i + 1}", layer) for i, layer in enumerate(layers)))


def build_named(*layers: Layer) -> Config:
    """`build_config` over named layers (the names serve `origins`, and a wrong value's fix)."""
    expanded = expand_layers(layers)
    full: dict[str, Any] = {}
    for _, layer in expanded:
        deep_merge(full, copy.deepcopy(layer))  # copies: merging must not write into the callers' dicts
    try:
        return _from_dict(Config, full, "")
    except _BadValue as e:
        raise SltPipeError(e.problem, fix=_value_fix(e.field, expanded)) from None


def expand_layers(layers: typing.Sequence[Layer]) -> list[Layer]:
    """Every layer that goes into a Config, lowest first: profile, then each layer with its preset.

    A layer that names a training preset (`train.preset`) brings the preset's values in
    just beneath its own, so a later `--set train.preset=generic` replaces what earlier
    layers (or the profile) set, and the layer's own fields still win over the preset.
    """
    profile = Config.profile
    for _, layer in layers:
        profile = layer.get("profile", profile)
    out: list[Layer] = []
    for name, layer in ((f"profile {profile}", profile_overrides(str(profile))), *layers):
        preset = (layer.get("train") or {}).get("preset")
        if preset is not None:
            out.append((f"preset {preset} (via {name})", {"train": train_preset(str(preset))}))
        out.append((name, layer))
    return out


def origins(layers: typing.Sequence[Layer]) -> dict[str, str]:
    """Dotted field -> the layer its effective value came from ('default' if none set it)."""
    where = {dotted: "default" for dotted in flat_fields(Config())}
    for name, layer in expand_layers(layers):
        for dotted in flat_fields(layer):
            if dotted in where:
                where[dotted] = name
    return where


def flat_fields(obj: Any, prefix: str = "") -> dict[str, Any]:
    """A Config or a nested dict -> {dotted name: value} of its leaves."""
    if dataclasses.is_dataclass(obj):
        items = [(f.name, getattr(obj, f.name)) for f in dataclasses.fields(obj)]
    else:
        items = list(obj.items())
    out: dict[str, Any] = {}
    for k, v in items:
        if dataclasses.is_dataclass(v):
            out.update(flat_fields(v, f"{prefix}{k}."))
        elif isinstance(v, dict):
            out.update(flat_fields(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def load_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise SltPipeError("config file not found", path=path, fix="check the path, or run `slt-pipe init`") from None
    except tomllib.TOMLDecodeError as e:
        raise SltPipeError(f"invalid TOML: {e}", path=path, fix="fix the syntax of the file") from e


def parse_override(text: str) -> dict[str, Any]:
    """`section.field=value` -> {"section": {"field": value}}; the value is TOML (bare strings allowed)."""
    if "=" not in text or "." not in text.split("=", 1)[0]:
        raise SltPipeError(f"bad override {text!r}", fix="write --set section.field=value, e.g. --set train.lr=1e-4")
    dotted, raw = text.split("=", 1)
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    out: dict[str, Any] = {}
    node = out
    *parents, leaf = dotted.strip().split(".")
    for p in parents:
        node = node.setdefault(p, {})
    node[leaf] = value
    return out


def parse_overrides(texts: typing.Iterable[str]) -> dict[str, Any]:
    """Many `--set`s as one layer, merged deeply: `extract.clip.weights=...` and `extract.clip.arch=...`
    both land in [extract.clip]; a later value of the same field wins."""
    layer: dict[str, Any] = {}
    for text in texts:
        deep_merge(layer, parse_override(text))
    return layer


def to_dict(cfg: Any) -> dict[str, Any]:
    """Config -> plain JSON/TOML-able dict (paths as strings, None fields dropped for TOML)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        if dataclasses.is_dataclass(v):
            out[f.name] = to_dict(v)
        elif isinstance(v, Path):
            out[f.name] = str(v)
        elif v is not None:
            out[f.name] = v
    return out


def field_docs(cls: type) -> dict[str, str]:
    """Field docstrings (the string literal after each field) for `config show` and --help."""
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(cls))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs: dict[str, str] = {}
    for node, nxt in zip(body, body[1:]):
        if isinstance(node, ast.AnnAssign) and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant):
            docs[node.target.id] = str(nxt.value.value)  # type: ignore[union-attr]
    return docs


def deep_merge(into: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """Merge nested dict `new` into `into` in place (tables merge key by key, values replace); returns `into`."""
    for k, v in new.items():
        if isinstance(v, dict) and isinstance(into.get(k), dict):
            deep_merge(into[k], v)
        else:
            into[k] = v
    return into


def _from_dict(cls: type, data: dict[str, Any], where: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        import difflib

        bad = sorted(unknown)[0]
        if f"{where}{bad}" in RENAMED:
            raise SltPipeError(f"config field {where}{bad} was renamed", fix=f"write {RENAMED[where + bad]} instead")
        close = difflib.get_close_matches(bad, names, n=1)
        hint = f"did you mean {where}{close[0]}?" if close else f"valid: {', '.join(sorted(names))}"
        raise SltPipeError(f"unknown config field {where}{bad}", fix=hint)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        kwargs[f.name] = _coerce(hints[f.name], data[f.name], f"{where}{f.name}")
    return cls(**kwargs)


class _BadValue(SltPipeError):
    """A value of the wrong type for a field; `build_named` adds the fix (an example, written for
    where the value came from)."""

    def __init__(self, where: str, tp: Any, value: Any):
        self.field = where
        super().__init__(f"{where} must be {_expected(tp)}, got {value!r}")


_KINDS = {int: ("an integer", "integers"), float: ("a number", "numbers"), bool: ("true or false", "booleans"),
          str: ("a string", "strings"), Path: ("a path", "paths")}


def _expected(tp: Any, plural: bool = False) -> str:
    """What a field of type `tp` takes, in words: 'an integer', 'a list of numbers', 'one of mean, max'."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return _expected(inner[0], plural) + (" or none" if type(None) in args else "")
    if origin is Literal:
        return ("each " if plural else "") + "one of " + ", ".join(map(str, args))
    if origin is list:
        return "a list of " + _expected(args[0], plural=True)
    if dataclasses.is_dataclass(tp):
        return "tables" if plural else "a table"
    kind = _KINDS.get(tp, ("a " + getattr(tp, "__name__", str(tp)), getattr(tp, "__name__", str(tp)) + "s"))
    return kind[1] if plural else kind[0]


def _coerce(tp: Any, value: Any, where: str) -> Any:
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            first = next((f for f in dataclasses.fields(tp) if isinstance(f.default, (str, int, float))), None)
            example = f", e.g. --set {where}.{first.name}={_cli_value(first.default)}" if first else ""
            raise SltPipeError(f"{where} must be a table, got {value!r}", fix="set its fields one by one" + example)
        return _from_dict(tp, value, where + ".")
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None or value == "none":
            if type(None) in args:
                return None
        inner = [a for a in args if a is not type(None)]
        try:
            return _coerce(inner[0], value, where)
        except _BadValue:
            raise _BadValue(where, tp, value) from None
    if origin is Literal:
        if value not in args:
            raise _BadValue(where, tp, value)
        return value
    if origin is list:
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, list):
            raise _BadValue(where, tp, value)
        try:
            return [_coerce(args[0], v.strip() if isinstance(v, str) else v, where) for v in items]
        except _BadValue:
            raise _BadValue(where, tp, value) from None
    if tp in (str, Path):  # a number is a name too (`--set train.out=2024`); a list or a table is not
        if isinstance(value, (bool, list, dict)) or value is None:
            raise _BadValue(where, tp, value)
        return Path(str(value)).expanduser() if tp is Path else str(value)
    if tp is bool:
        if isinstance(value, str):
            if value.lower() in ("true", "1", "yes"):
                return True
            if value.lower() in ("false", "0", "no"):
                return False
        if isinstance(value, bool):
            return value
        raise _BadValue(where, tp, value)
    if tp in (int, float):
        if isinstance(value, (bool, list, dict)):
            raise _BadValue(where, tp, value)
        try:
            out = tp(value)
        except (TypeError, ValueError):
            raise _BadValue(where, tp, value) from None
        if tp is int and isinstance(value, float) and value != out:
            raise _BadValue(where, tp, value)
        return out
    return value


def _field(dotted: str) -> tuple[Any, Any]:
    """(declared type, dataclass default) of a dotted Config field."""
    cls: Any = Config
    obj: Any = Config()
    *parents, leaf = dotted.split(".")
    for name in parents:
        cls, obj = typing.get_type_hints(cls)[name], getattr(obj, name)
    return typing.get_type_hints(cls)[leaf], getattr(obj, leaf)


def _value_fix(dotted: str, layers: typing.Sequence[Layer]) -> str:
    """The fix for a wrong value of `dotted`: a valid example (the value it has without the wrong one: a lower
    layer's, the default, else one of its type), written where the wrong value came from."""
    tp, default = _field(dotted)
    candidates = [(name, flat_fields(layer)[dotted]) for name, layer in reversed(layers) if dotted in flat_fields(layer)]
    source = candidates[0][0] if candidates else "--set"  # the layer the wrong value came from
    example = None
    for v in [*(v for _, v in candidates), default]:
        try:
            example = _coerce(tp, v, dotted)
        except SltPipeError:
            continue
        if example is not None and example != []:
            break
    if example is None or example == []:
        example = _placeholder(tp, dotted)
    *section, leaf = dotted.split(".")
    for prefix in ("project file ", "--config "):
        if source.startswith(prefix):
            table = f"in the {'.'.join(section)} section" if section else "at the top"  # no brackets: rich eats them
            return f"in {source[len(prefix):]}, write {leaf} = {json.dumps(example, default=str)} {table}"
    if source.startswith("flag "):
        return f"{source[len('flag '):]} {_cli_value(example)}"
    return f"--set {dotted}={_cli_value(example)}"


def _placeholder(tp: Any, dotted: str) -> Any:
    """A valid value of type `tp` for a field whose default is none."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return _placeholder(next(a for a in args if a is not type(None)), dotted)
    if origin is Literal:
        return args[0]
    if origin is list:
        return [_placeholder(args[0], dotted)]
    if tp is str and dotted.endswith("langs"):
        return "deu_Latn"
    return {int: 1, float: 1e-4 if dotted.endswith("lr") else 1.0, bool: True, Path: Path("path/to/dir")}.get(tp, "text")


def _cli_value(v: Any) -> str:
    """`v` as `--set` reads it back (bare strings, lists comma-separated)."""
    import shlex

    if isinstance(v, list):
        return ",".join(_cli_value(x) for x in v)
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v)
    return shlex.quote(str(v))

"""Start a run's visual block from weights trained elsewhere (`train.init_visual_block=PATH`).

PATH may be:

* a slt-pipe run directory (its `ckpt/best`, else `ckpt/last`, weights are used),
* a checkpoint directory holding `weights.safetensors`, or that file itself: the
  `visual.*` tensors are the block; `lora.*` (the decoder's adapters) is named in a note
  and ignored on purpose,
* a plain state dict of the block: `.safetensors`, or a torch file (`.pt`, `.pth`,
  `.bin`, `.ckpt`; a Lightning `{"state_dict": ...}` wrapper is unwrapped). SpaMo's module
  names load as they are (`spatio_proj.*`, `spatiotemp_proj.*`, `temporal_encoder.*`,
  `fusion_proj.*`); the rest of a SpaMo checkpoint (`t5_model.*`, `logit_scale`) is named
  and ignored.

Loading is strict: missing, unexpected and mis-shaped tensors raise `WeightsError` naming
the file and the keys. The one allowance: a block without input statistics
(`spatial_mean`, ... : SpaMo feeds raw features) gets the identity, said in a note.

Feature recipe: every slt-pipe checkpoint records, in its safetensors metadata, the block's
shape (`block`) and the recipe of the features it was trained on (`features`: widths plus
the feature cache manifest's models, weights and preprocessing). A block is refused when
that recipe differs from this run's features (`train.init_visual_block_check=false` keeps
only the width check). Older run checkpoints without metadata: the recipe is read from the
run's `inputs.json` when its feature entry still exists. A plain state dict has no recipe;
its widths are checked by the strict load, and a note says the recipe was not checked.

The run copies what it loaded to `RUN/init_visual_block.safetensors` (+ `.json`: source
path, its sha256, ignored keys, notes), so nothing later reads PATH again.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from cache.errors import WeightsError
from cache.files import write_text_atomic
from cache.keys import sha256_file

BLOCK_FORMAT = "slt-pipe-visual-block/1"
COPY_NAME = "init_visual_block.safetensors"
RECORD_NAME = "init_visual_block.json"
TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")
IGNORED_PREFIXES = {
    "lora.": "slt-pipe's LoRA decoder adapters",
    "t5_model.": "SpaMo's language model",
    "logit_scale": "SpaMo's contrastive temperature",
}
"""Tensors of a checkpoint that are not the visual block, ignored on purpose (and named)."""
ALLOWED_MISSING = ("spatial_mean", "spatial_std", "motion_mean", "motion_std")
"""Input statistics: absent in blocks that were trained on raw features (identity is right for them)."""
FIX = ("pass a visual block of this run's variant and widths (train.visual_block, train.hidden_dim, the "
       "feature widths): a slt-pipe run dir, its ckpt/{best,last} or weights.safetensors, or a state dict "
       "with the block's own key names")


# ------------------------------------------------------------------------------ recipe
def feature_recipe(reader: Any, entry_dir: str | Path | None) -> dict[str, Any]:
    """What the block's input features are: widths, and the feature manifest's recipe if there is one."""
    recipe: dict[str, Any] = {"spatial_dim": int(reader.spatial_dim), "motion_dim": int(reader.motion_dim)}
    manifest = Path(entry_dir) / "manifest.json" if entry_dir is not None else None
    if manifest is not None and manifest.is_file():
        inputs = json.loads(manifest.read_text()).get("inputs", {})
        # the dataset fingerprint, storage dtype and sharding do not change what a feature means
        for key in ("models", "preprocess"):
            if key in inputs:
                recipe[key] = inputs[key]
    return recipe


def block_metadata(spec: dict[str, Any], recipe: dict[str, Any], **extra: str) -> dict[str, str]:
    """safetensors metadata (str -> str) recorded with every checkpoint of a block."""
    return {"format": BLOCK_FORMAT, "block": json.dumps(spec, sort_keys=True),
            "features": json.dumps(recipe, sort_keys=True), **extra}


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: d}


PROVENANCE_KEYS = ("found", "ignored_by_name", "library", "format")
"""Manifest fields that say where or how weights were found, not what the features are: not compared."""


def recipe_differences(theirs: dict[str, Any], ours: dict[str, Any]) -> list[str]:
    """'key: theirs != ours' for every recorded field both recipes have and that differs.

    Fields only one side records (older or newer manifests) are not compared, nor provenance.
    """
    a, b = _flatten(theirs), _flatten(ours)
    keys = [k for k in sorted(set(a) & set(b)) if not set(k.split(".")) & set(PROVENANCE_KEYS)]
    return [f"{k}: {a[k]!r} (block) != {b[k]!r} (this run)" for k in keys if a[k] != b[k]]


# ------------------------------------------------------------------------------ reading
def resolve_source(path: str | Path) -> tuple[Path, Path | None]:
    """(weights file, run dir if the file belongs to one) for a run dir, checkpoint dir or file."""
    p = Path(path).expanduser()
    if p.is_dir():
        for cand in (p / "ckpt" / "best" / "weights.safetensors", p / "ckpt" / "last" / "weights.safetensors",
                     p / "weights.safetensors"):
            if cand.is_file():
                return cand, _run_dir_of(cand)
        raise WeightsError("no visual block in this directory (no ckpt/best, ckpt/last or weights.safetensors)",
                           path=p, fix="pass a slt-pipe run directory that has trained, or the weights file itself")
    if not p.is_file():
        raise WeightsError("initial visual block not found", path=p,
                           fix="check train.init_visual_block (--init-visual-block): a run dir, checkpoint or state-dict file")
    if p.suffix not in (".safetensors", *TORCH_SUFFIXES):
        raise WeightsError(f"unknown weights format {p.suffix!r}", path=p,
                           fix=f"use .safetensors or a torch file ({', '.join(TORCH_SUFFIXES)})")
    return p, _run_dir_of(p)


def _run_dir_of(weights: Path) -> Path | None:
    # RUN/ckpt/{best,last}/weights.safetensors
    run = weights.parent.parent.parent
    return run if weights.parent.parent.name == "ckpt" and (run / "inputs.json").is_file() else None


def read_state(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors, safetensors metadata or {}) of a weights file; unreadable -> WeightsError."""
    try:
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as f:
                return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the same user problem
        raise WeightsError(f"cannot read the weights ({type(e).__name__}: {e})", path=path,
                           fix="pass a safetensors or torch state-dict file") from None
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]  # Lightning / SpaMo checkpoints
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError("not a state dict (name -> tensor)", path=path,
                           fix="save the block with torch.save(block.state_dict(), PATH) or safetensors")
    return dict(obj), {}


def split_block_keys(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """(the block's tensors, with a `visual.` prefix stripped; the ignored keys)."""
    prefixed = any(k.startswith("visual.") for k in state)
    block, ignored = {}, []
    for k, v in state.items():
        if any(k.startswith(p) for p in IGNORED_PREFIXES):
            ignored.append(k)
        elif prefixed:
            if k.startswith("visual."):
                block[k[len("visual."):]] = v
            else:
                block[k] = v  # reported as unexpected by the strict load
        else:
            block[k] = v
    return block, sorted(ignored)


def _summary(keys: list[str], n: int = 8) -> str:
    return ", ".join(keys[:n]) + (f" (+{len(keys) - n} more)" if len(keys) > n else "")


def _ignored_note(ignored: list[str]) -> str:
    groups = {p: [k for k in ignored if k.startswith(p)] for p in IGNORED_PREFIXES}
    return "; ".join(f"{len(ks)} {p}* tensors ({IGNORED_PREFIXES[p]})" for p, ks in groups.items() if ks)


# ------------------------------------------------------------------------------ loading
def load_initial_block(block: torch.nn.Module, source: str | Path, *, recipe: dict[str, Any], check: bool,
                       run_dir: Path) -> dict[str, Any]:
    """Load `source` into `block` strictly, check its recipe, copy it into run_dir; returns the record."""
    from safetensors.torch import save_file

    path, src_run = resolve_source(source)
    state, meta = read_state(path)
    tensors, ignored = split_block_keys(state)
    notes: list[str] = []
    if ignored:
        notes.append(f"ignored on purpose: {_ignored_note(ignored)}")

    # the shape the block was recorded with (slt-pipe checkpoints)
    spec = block.spec()  # type: ignore[operator]
    theirs = json.loads(meta["block"]) if "block" in meta else None
    if theirs is not None and theirs.get("visual_block") != spec["visual_block"]:
        raise WeightsError(f"the file holds a {theirs.get('visual_block')!r} visual block; this run builds "
                           f"{spec['visual_block']!r}", path=path,
                           fix=f"set train.visual_block={theirs.get('visual_block')} (and its hidden_dim "
                               f"{theirs.get('hidden')}), or start from a {spec['visual_block']} block")

    # the features it was trained on
    their_recipe = json.loads(meta["features"]) if "features" in meta else None
    if their_recipe is None and src_run is not None:
        their_recipe = _recipe_from_run(src_run)
    if their_recipe is None:
        notes.append("no feature recipe recorded with the block (plain state dict): only its widths were checked")
    else:
        diffs = [d for d in recipe_differences(their_recipe, recipe) if d.split(":")[0] in ("spatial_dim", "motion_dim")]
        if not diffs and check:
            diffs = recipe_differences(their_recipe, recipe)
        if diffs:
            raise WeightsError("the initial visual block was trained on other features:\n    " + "\n    ".join(diffs[:10]),
                               path=path,
                               fix="train on features of the same recipe (same models, weights and preprocessing), "
                                   "or set train.init_visual_block_check=false to start from it anyway (widths must match)")

    # strict load
    expected = block.state_dict()
    missing = sorted(k for k in expected if k not in tensors)
    identity = [k for k in missing if k in ALLOWED_MISSING]
    missing = [k for k in missing if k not in ALLOWED_MISSING]
    unexpected = sorted(k for k in tensors if k not in expected)
    misshaped = sorted(f"{k} {tuple(tensors[k].shape)} (file) vs {tuple(v.shape)} (block)"
                       for k, v in expected.items() if k in tensors and tensors[k].shape != v.shape)
    if missing or unexpected or misshaped:
        parts = [f"{label} {len(keys)}: {_summary(keys)}" for label, keys in
                 (("missing", missing), ("unexpected", unexpected), ("mis-shaped", misshaped)) if keys]
        raise WeightsError(f"the visual block does not fit this run's {spec['visual_block']} block "
                           f"(spatial {spec['spatial_dim']}, motion {spec['motion_dim']}, hidden {spec['hidden']}, "
                           f"out {spec['out_dim']}):\n    " + "\n    ".join(parts), path=path, fix=FIX)
    if identity:
        notes.append("no input statistics in the file: identity (the block was trained on raw features)")
    full = {k: tensors.get(k, v).to(v.dtype) for k, v in expected.items()}
    block.load_state_dict(full, strict=True)

    # the run's own copy: evaluate/translate/resume never read `source` again
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    digest = sha256_file(path)
    record = {"source": str(Path(source).expanduser().resolve()), "file": str(path.resolve()), "sha256": digest,
              "copy": COPY_NAME, "ignored": ignored, "notes": notes, "block": spec,
              "features": their_recipe if their_recipe is not None else None}
    save_file({k: v.detach().cpu().contiguous() for k, v in block.state_dict().items()}, str(run_dir / COPY_NAME),
              metadata=block_metadata(spec, their_recipe or {}, source=record["source"], source_sha256=digest))
    write_text_atomic(run_dir / RECORD_NAME, json.dumps(record, indent=2), fsync=False)
    return record


def _recipe_from_run(run: Path) -> dict[str, Any] | None:
    """The recipe of the features a (metadata-less) run trained on, from its inputs.json, if still there."""
    try:
        inputs = json.loads((run / "inputs.json").read_text())
        entry = Path(inputs["features"][inputs.get("train_split", "train")])
    except (OSError, KeyError, json.JSONDecodeError):
        return None
    manifest = entry / "manifest.json"
    if not manifest.is_file():
        return None
    m = json.loads(manifest.read_text())
    inp = m.get("inputs", {})
    recipe = {k: inp[k] for k in ("models", "preprocess") if k in inp}
    return recipe or None

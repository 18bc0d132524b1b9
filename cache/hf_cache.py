"""Finding a model in the local Hugging Face cache, never downloading it."""

from __future__ import annotations

from pathlib import Path


def hf_cache_dir() -> Path:
    """The hub cache in use ($HF_HUB_CACHE, $HF_HOME/hub, ~/.cache/huggingface/hub)."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def hf_snapshot(repo: str, files: tuple[str, ...]) -> Path | None:
    """The cached snapshot folder of `repo` holding one of `files`, or None (no network is asked;
    a name that cannot be a hub id, such as a missing local path, is simply not cached)."""
    from huggingface_hub import try_to_load_from_cache
    from huggingface_hub.errors import HFValidationError

    for name in files:
        try:
            hit = try_to_load_from_cache(repo, name)
        except HFValidationError:
            return None
        if isinstance(hit, str):
            return Path(hit).parent
    return None


def find_checkpoint(weights: str | None, repos: tuple[str, ...], candidates: tuple[str, ...], *, what: str,
                    setting: str, single_pt: bool = False) -> tuple[Path, Path | None, str]:
    """(weights file or shard index, the folder holding its config.json, how it was found): from
    `setting`'s value (a file, or a folder holding one of `candidates`; with `single_pt` also a
    folder holding exactly one .pt) or else the Hugging Face cache, trying `repos` in turn.
    WeightsError naming the place looked at and how to provide the files."""
    from cache.errors import WeightsError, setting_fix

    if weights:
        p = Path(weights).expanduser()
        if p.is_file():
            return p, p.parent, setting
        if p.is_dir():
            f = next((p / n for n in candidates if (p / n).is_file()), None)
            pts = sorted(p.glob("*.pt")) if single_pt and f is None else []
            f = f or (pts[0] if len(pts) == 1 else None)
            if f is not None:
                return f, p, setting
            raise WeightsError(f"no {what} weights in this folder (looked for {', '.join(candidates)}"
                               + (" or one .pt)" if single_pt else ")"), path=p,
                               fix=f"point it at the snapshot folder or the weights file: {setting_fix(setting)}")
        raise WeightsError(f"{what} weights not found", path=p,
                           fix=f"a snapshot folder or a weights file that exists: {setting_fix(setting)}")
    for repo in repos:
        snap = hf_snapshot(repo, candidates)
        if snap is not None:
            return next(snap / n for n in candidates if (snap / n).is_file()), snap, f"Hugging Face cache ({repo})"
    gate = (f" (a gated repo: log in with `huggingface-cli login` and accept its licence at "
            f"https://huggingface.co/{repos[0]} first)" if gated(repos[0]) else "")
    raise WeightsError(f"{what} weights {' or '.join(repos)} are not in the Hugging Face cache"
                       + ("; the repo is gated" if gate else ""), path=hf_cache_dir(),
                       fix=f"on a machine with network run `huggingface-cli download {repos[0]}`{gate} and copy the "
                           f"cache here (set HF_HOME), or give the files: {setting_fix(setting)}")


GATED_PREFIXES = ("facebook/dinov3-",)
"""Hugging Face repos that need a login and an accepted licence before they download."""


def gated(repo: str) -> bool:
    return repo.startswith(GATED_PREFIXES)

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

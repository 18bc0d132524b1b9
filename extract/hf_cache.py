"""Finding a model in the local Hugging Face cache, never downloading it."""

from __future__ import annotations

from pathlib import Path


def hf_cache_dir() -> Path:
    """The hub cache in use ($HF_HUB_CACHE, $HF_HOME/hub, ~/.cache/huggingface/hub)."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def hf_snapshot(repo: str, files: tuple[str, ...]) -> Path | None:
    """The cached snapshot folder of `repo` holding one of `files`, or None (no network is asked)."""
    from huggingface_hub import try_to_load_from_cache

    for name in files:
        hit = try_to_load_from_cache(repo, name)
        if isinstance(hit, str):
            return Path(hit).parent
    return None

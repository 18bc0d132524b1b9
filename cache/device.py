"""The one reading of a `device` setting: 'auto' is CUDA when there is one, else the CPU."""

from __future__ import annotations

from typing import Any


def resolve_device(name: Any = "auto") -> Any:
    """'auto' or None -> cuda if available else cpu; anything else is passed to torch.device."""
    import torch  # a cached run that never builds a model never imports torch

    if name is None or name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)

"""The one reading of a `device` setting: 'auto' is CUDA when there is one, else the CPU."""

from __future__ import annotations

from typing import Any


def resolve_device(name: Any = "auto") -> Any:
    """'auto' or None -> cuda if available else cpu; anything else is passed to torch.device."""
    import torch  # a cached run that never builds a model never imports torch

    if name is None or name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def check_devices() -> dict[str, Any]:
    """What torch sees, without allocating anything: {"torch": version, "cuda": bool, "gpus": [{"name",
    "memory_bytes", "capability"}], "bf16": bool or None without CUDA}."""
    import torch

    cuda = torch.cuda.is_available()
    gpus = []
    for i in range(torch.cuda.device_count() if cuda else 0):
        p = torch.cuda.get_device_properties(i)
        gpus.append({"name": p.name, "memory_bytes": int(p.total_memory), "capability": f"{p.major}.{p.minor}"})
    return {"torch": torch.__version__, "cuda": cuda, "gpus": gpus,
            "bf16": bool(torch.cuda.is_bf16_supported()) if cuda else None}

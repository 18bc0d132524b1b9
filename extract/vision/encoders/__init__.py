"""Feature encoders, one module each; `extract.streams` names the ones a run uses.

A module here defines a subclass of `SpatialEncoder` (run per frame: its vectors become the
spatial features) or `MotionEncoder` (run per clip of `clip_len` frames: the motion features)
and sets its `name`; defining the class registers it, and every module of this package is
imported below. So adding an encoder is its file plus, when it takes settings (model id,
weights, architecture), one field of its settings dataclass in `ExtractConfig`.
"""

from __future__ import annotations

import importlib
import pkgutil

from extract.vision.encoders.base import ENCODERS, Encoder, MotionEncoder, SpatialEncoder, encoder_class

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "base":
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["ENCODERS", "MotionEncoder", "Encoder", "SpatialEncoder", "encoder_class"]

"""`python tests/forbid_tiny_cli.py ARGS...` = `slt-pipe ARGS...` with every tiny-profile entry point
made to fail loudly, so a paper-profile run that reaches one of them cannot pass unnoticed."""

from __future__ import annotations

import sys

import cache.sonar_models
import extract.text.nllb
import extract.text.tiny_sonar
import extract.vision.encoders.tiny
import pipeline.embed_stage

FORBIDDEN = [
    (extract.vision.encoders.tiny, "tiny_vit"), (extract.vision.encoders.tiny, "tiny_videomae"), (extract.vision.encoders.tiny, "prepare_view"),
    (extract.text.tiny_sonar, "train_tiny_sonar"), (extract.text.nllb, "make_tiny_nllb"), (cache.sonar_models, "_tiny_config"),
    (pipeline.embed_stage, "ensure_tiny_sonar"), (pipeline.embed_stage, "ensure_tiny_nllb"),
    (pipeline.embed_stage, "require_tiny_sonar"),
]


def _forbid(module, name: str) -> None:
    def boom(*args, **kwargs):
        raise SystemExit(f"FORBIDDEN: the paper profile reached tiny-profile code {module.__name__}.{name}")

    setattr(module, name, boom)


for module, name in FORBIDDEN:
    _forbid(module, name)

if __name__ == "__main__":
    from pipeline.cli import main

    sys.argv[0] = "slt-pipe"
    main()

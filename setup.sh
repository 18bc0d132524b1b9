#!/usr/bin/env bash
# One command sets up everything: a .venv with the pinned stack and slt-pipe itself.
# Needs Python 3.11 (python3.11 or python3 of that version). No root, no apt: the
# libsndfile that fairseq2 loads comes with the soundfile wheel.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-$(command -v python3.11 || command -v python3)}
"$PY" -c 'import sys; assert sys.version_info[:2] == (3, 11), f"Python 3.11 needed, found {sys.version}"'
[[ -x .venv/bin/python ]] || "$PY" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[test]"
.venv/bin/python -c 'from cache.fairseq2_env import ensure_fairseq2; ensure_fairseq2(); import sonar, timm, zarr, ray, peft, imageio_ffmpeg; imageio_ffmpeg.get_ffmpeg_exe(); print("slt-pipe set up in .venv")'

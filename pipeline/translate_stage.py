"""`slt-pipe translate`: one video (a frame folder or a video file) -> text, with a trained run.

Everything the user passed is checked before anything heavy is imported or built: the video
(it exists, a folder holds PNG/JPEG frames, a file opens and decodes a first frame), the
language code and the run directory's files. So a wrong path fails in well under a second,
not after torch and the models have loaded. Errors about the video speak of that one video
(`extract.vision.decode.one_video`), never of a dataset's sample to drop.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cache.errors import SltPipeError
from train.run_files import run_weights

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm")
"""Files `translate --video` decodes (with PyAV); anything else must be a frame folder."""
RUN_FILES = ("pipeline.json", "inputs.json", "config.json")
"""What `slt-pipe train` writes into a run directory that translate reads (besides the weights)."""


def translate_video(run: Path, video: Path, lang: str) -> str:
    """One video (frame folder or video file) -> text in `lang`, features computed with the run's extractor config.

    The video, the language and the run directory are checked first (cheap: no torch, no model);
    then the run is loaded, the decoder's languages checked, the video decoded and translated.
    """
    from extract.text.languages import resolve_lang
    from extract.vision.decode import one_video, read_frames

    run, video = Path(run), Path(video)
    src = checked_video(video)
    code = resolve_lang(lang)
    check_run_dir(run)

    from cache.device import resolve_device
    from extract.vision.streams import FeatureExtractor
    from pipeline.extract_stage import stage_config
    from pipeline.train_stage import load_run, rebuild_hint
    from train.model import check_decoder_langs, translate_one

    cfg, inputs = load_run(run)
    check_decoder_langs(inputs, [code])
    weights = run_weights(run)
    if "visual_block" not in json.loads((run / "config.json").read_text()):
        cfg.train.visual_block = "slt-pipe-masked"  # runs from before the variants existed
    device = resolve_device(cfg.train.device)
    with one_video():
        frames = read_frames(src, fps=cfg.extract.fps)
    extractor = FeatureExtractor(stage_config(cfg, cfg.dataset.name), device)
    spatial, motion = extractor.spatial(frames), extractor.motion(frames)
    with rebuild_hint(cfg):  # it reads the source language's targets (their width)
        return translate_one(cfg.train, inputs, weights, spatial, motion, code, device)


def video_source(video: Path) -> Any:
    """A frame folder (PNG/JPEG, also PHOENIX's {name}/1/ layout) or a video file, by its name; nothing opened yet."""
    from extract.datasets.base import PngFolder, VideoFile, list_frame_files

    if video.is_dir():
        folder = video if list_frame_files(video) else video / "1"
        files = list_frame_files(folder) if folder.is_dir() else []
        if not files:
            raise SltPipeError("no PNG/JPEG frames in the folder", path=video, fix="point --video at a frame folder or an mp4")
        return PngFolder(folder, files)
    if video.is_file():
        if video.suffix.lower() not in VIDEO_SUFFIXES:
            raise SltPipeError(f"not a video file ({video.suffix or 'no suffix'})", path=video,
                               fix=f"pass a frame folder or a video ({', '.join(VIDEO_SUFFIXES)})")
        return VideoFile(video)
    raise SltPipeError("video not found", path=video, fix="pass an existing frame folder or mp4")


def checked_video(video: Path) -> Any:
    """`video_source`, and its first frame read: a text file named .mp4 or a broken first image fails here,
    in a fraction of a second, with an error about this one video."""
    from extract.vision.decode import one_video, read_frames

    src = video_source(video)
    with one_video():
        read_frames(src, max_frames=1)
    return src


def check_run_dir(run: Path) -> None:
    """The run directory holds what translate reads: its records (JSON objects) and trained weights."""
    fix = "pass the --out directory of a `slt-pipe train` run"
    if not run.is_dir():
        raise SltPipeError("run directory not found", path=run, fix=fix)
    missing = [name for name in RUN_FILES if not (run / name).is_file()]
    if missing:
        raise SltPipeError(f"not a slt-pipe run directory (no {', '.join(missing)})", path=run, fix=fix)
    for name in RUN_FILES:
        try:
            record = json.loads((run / name).read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            record = e
        if not isinstance(record, dict):
            raise SltPipeError("the run's record is damaged (not a JSON object)", path=run / name,
                               fix="pass the --out directory of a finished `slt-pipe train` run, or train again")
    weights = run_weights(run)
    if not weights.is_file():
        raise SltPipeError("the run has no trained weights", path=weights,
                           fix="train first, or pass the --out directory of a finished `slt-pipe train`")

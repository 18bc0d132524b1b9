"""Train, evaluate, translate and the demo: the trainer wired to the caches.

Training reads only cache entries: the features of every split (`extract_stage`), the
target embeddings of every language and the SONAR decoder (`embed_stage`). It never builds
a feature extractor, NLLB or the SONAR encoder; a missing entry is an error that names the
command to run. The run directory records the full pipeline config (`pipeline.json`) and
the cache entries it read (`inputs.json`), so `evaluate` and `translate` need only `--run`.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from cache.errors import SltPipeError
from pipeline.config import Config, build_config, to_dict

PIPELINE_FILE = "pipeline.json"


def train_inputs(cfg: Config, dataset: Any):
    """The trainer's inputs: cache entries only (raises with the command to run if one is missing)."""
    from pipeline.embed_stage import require_targets, sonar_decoder
    from pipeline.extract_stage import require_features
    from train.trainer import TrainInputs

    features = {split: entry.dir for split, entry in require_features(cfg, dataset).items()}
    targets = require_targets(cfg, dataset)
    spec, tiny_dir = sonar_decoder(cfg, dataset)
    if "train" not in features:
        raise SltPipeError("training needs the train split", fix="keep `train` in --split / [dataset] splits")
    return TrainInputs(features=features, targets=targets, source_lang=dataset.source_lang, decoder_spec=spec,
                       tiny_dir=tiny_dir, train_split="train", dev_split="dev", dataset=cfg.dataset.name)


def train(cfg: Config, *, resume: bool = False, overwrite: bool = False, console: Console):
    """Fit the visual block and LoRA decoder on the cached tensors of `cfg`'s dataset.

    A run directory holds one run: an existing one is continued (`resume`), cleared first
    (`overwrite`), or refused, so checkpoints, predictions and TensorBoard events of two runs
    never mix.
    """
    from pipeline.dataset import open_dataset
    from train.trainer import train as run_training

    run_dir = Path(cfg.train.out)
    _claim_run_dir(run_dir, resume=resume, overwrite=overwrite)
    if cfg.train.warmup_steps > cfg.train.steps:
        console.print(f"[yellow]note[/]: warmup_steps = {cfg.train.warmup_steps} is longer than the run "
                      f"({cfg.train.steps} steps); clipped to {cfg.train.steps}, so the peak rate is reached at the end")
        cfg.train.warmup_steps = cfg.train.steps
    dataset = open_dataset(cfg, console)
    inputs = train_inputs(cfg, dataset)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / PIPELINE_FILE).write_text(json.dumps(to_dict(cfg), indent=2))
    console.print(f"[bold]train[/] {dataset.name}: {len(dataset.samples.get('train', []))} videos, "
                  f"targets {', '.join(inputs.targets)} -> {run_dir}")
    result = run_training(cfg.train, inputs, resume=resume)
    best = "n/a" if result.best_bleu is None else f"{result.best_bleu:.2f} at step {result.best_step}"
    console.print(f"[green]trained[/] {result.step} steps ({result.stopped}); last loss {result.last_loss:.4g}; "
                  f"best dev BLEU {best}; curves in {run_dir / 'curves.png'}")
    return result


def _claim_run_dir(run_dir: Path, *, resume: bool, overwrite: bool) -> None:
    if resume and overwrite:
        raise SltPipeError("--resume and --overwrite contradict each other", fix="pass one of them")
    if not run_dir.exists() or not any(run_dir.iterdir()) or resume:
        return
    is_run = (run_dir / PIPELINE_FILE).is_file() or (run_dir / "config.json").is_file()
    if not overwrite:
        what = "already holds a slt-pipe run" if is_run else "is not empty"
        raise SltPipeError(f"the run directory {what}", path=run_dir,
                           fix="add --resume to continue it, --overwrite to clear it first, or pick another --out")
    if not is_run:  # never delete a folder that slt-pipe did not make
        raise SltPipeError("--overwrite refuses to clear a folder that is not a slt-pipe run", path=run_dir,
                           fix="pick an empty or new --out")
    shutil.rmtree(run_dir)


def load_run(run: Path) -> tuple[Config, Any]:
    """(pipeline config, TrainInputs) recorded in a run directory."""
    from train.trainer import TrainInputs

    run = Path(run)
    try:
        recorded = json.loads((run / PIPELINE_FILE).read_text())
        # runs from before the rename: the block they started from is already in their weights
        recorded.get("train", {}).pop("pretrained_visual", None)
        cfg = build_config(recorded)
        inputs = TrainInputs.from_json(json.loads((run / "inputs.json").read_text()))
    except FileNotFoundError as e:
        raise SltPipeError("not a slt-pipe run directory", path=run,
                           fix="pass the --out directory of a `slt-pipe train` run") from e
    return cfg, inputs


def evaluate(run: Path, *, split: str = "test", langs: str | None = None, bleurt: Path | None = None,
             console: Console, checkpoint: str = "best", case: str | None = None) -> dict[str, dict]:
    """Decode every video of `split` into each language; BLEU/chrF table, predictions TSV in the run dir.

    `case` (auto, lc, mixed) overrides the run's train.bleu_case for the headline BLEU.
    """
    from extract.languages import resolve_langs
    from train.evaluate import evaluate as run_evaluation

    cfg, inputs = load_run(run)
    if split not in inputs.features:
        raise SltPipeError(f"the run has no features for split {split!r} (it has {sorted(inputs.features)})",
                           fix=f"extract that split (slt-pipe extract --split {split}) and train with it listed")
    chosen = resolve_langs(langs) if langs else [inputs.source_lang]
    missing = [lang for lang in chosen if lang not in inputs.targets]
    if missing:
        raise SltPipeError(f"no references in {', '.join(missing)} for this run (it has {', '.join(inputs.targets)})",
                           fix=f"slt-pipe embed-targets --langs {','.join([*inputs.targets, *missing])}, then train again")
    results = run_evaluation(run, inputs, split, chosen, checkpoint=checkpoint, bleurt_checkpoint=bleurt,
                             device=cfg.train.device, case=case)
    console.print(score_table(f"{split} ({Path(run).name})", results))
    return results


def score_table(title: str, results: dict[str, dict]) -> Table:
    table = Table(title=title)
    for col in ("language", "BLEU", "case", "other case", "chrF", "BLEURT", "n", "predictions"):
        table.add_column(col)
    for lang, r in results.items():
        bleurt = f"{r['bleurt']:.4f}" if "bleurt" in r else "-"
        other = r.get("bleu_cased" if r.get("case") == "lc" else "bleu_lc")
        table.add_row(lang, f"{r['bleu']:.2f}", r.get("case", "mixed"), "-" if other is None else f"{other:.2f}",
                      f"{r['chrf']:.2f}", bleurt, str(r["n"]), r.get("tsv", ""))
    return table


def translate_video(run: Path, video: Path, lang: str) -> str:
    """One video (frame folder or mp4) -> text in `lang`, features computed with the run's extractor config."""
    import torch

    from extract.datasets.base import PngFolder, VideoFile, list_frame_files
    from extract.languages import resolve_lang
    from extract.models import FeatureExtractor
    from extract.video import read_frames
    from train.trainer import build_models, load_trainable, resolve_device

    cfg, inputs = load_run(run)
    video = Path(video)
    if video.is_dir():
        folder = video if list_frame_files(video) else video / "1"  # PHOENIX's {name}/1/ layout too
        files = list_frame_files(folder)
        if not files:
            raise SltPipeError("no PNG/JPEG frames in the folder", path=video, fix="point --video at a frame folder or an mp4")
        src: Any = PngFolder(folder, files)
    elif video.is_file():
        src = VideoFile(video)
    else:
        raise SltPipeError("video not found", path=video, fix="pass a frame folder or an mp4")
    if "visual_block" not in json.loads((Path(run) / "config.json").read_text()):
        cfg.train.visual_block = "slt-pipe-masked"  # runs from before the variants existed
    device = resolve_device(cfg.train.device)
    frames = read_frames(src, fps=cfg.extract.fps)
    from pipeline.extract_stage import stage_config

    extractor = FeatureExtractor(stage_config(cfg, cfg.dataset.name), device)
    spatial, motion = extractor.spatial(frames), extractor.motion(frames)
    visual, dec = build_models(cfg.train, inputs, spatial.shape[1], motion.shape[1], _emb_dim(inputs), device)
    weights = Path(run) / "ckpt" / "best" / "weights.safetensors"
    load_trainable(visual, dec, weights if weights.exists() else Path(run) / "ckpt" / "last" / "weights.safetensors")
    visual.eval()
    with torch.no_grad():
        sp = torch.as_tensor(spatial, dtype=torch.float32, device=device)[None]
        mo = torch.as_tensor(motion, dtype=torch.float32, device=device)[None]
        ones = lambda x: torch.ones(x.shape[:2], dtype=torch.bool, device=device)  # noqa: E731
        z = visual(sp, ones(sp), mo, ones(mo))
    return dec.generate(z, resolve_lang(lang), beam_size=cfg.train.beam_size, max_len=cfg.train.max_len)[0]


def _emb_dim(inputs: Any) -> int:
    from cache.targets import TargetReader

    with TargetReader(Path(inputs.targets[inputs.source_lang])) as r:
        return r.dim


# ------------------------------------------------------------------ demo


@dataclass
class DemoResult:
    run_dir: Path
    test: dict[str, dict]
    control: dict[str, dict] | None = None


def demo(cfg: Config, *, console: Console, control: bool = False) -> DemoResult:
    """make-toy -> extract -> embed-targets -> train -> evaluate (tiny profile), with a summary table.

    With `control`, a second run pairs every video with another video's targets
    (`--shuffle-targets`): it must not learn, which shows the first run's BLEU comes from
    the videos and not from the decoder's prior.
    """
    from pipeline import embed_stage, extract_stage

    console.rule("[bold]1/4 extract")
    report = extract_stage.extract(cfg, console)
    if report.failures:
        raise SltPipeError(f"{len(report.failures)} toy video(s) failed to extract", fix="see the list above")
    console.rule("[bold]2/4 embed-targets")
    embed_stage.embed_targets(cfg, console)
    console.rule("[bold]3/4 train")
    train(cfg, overwrite=True, console=console)
    console.rule("[bold]4/4 evaluate")
    langs = ",".join(cfg.embed.langs)
    test = evaluate(cfg.train.out, split="test", langs=langs, console=console)
    result = DemoResult(Path(cfg.train.out), test)
    if control:
        console.rule("[bold]control: videos shuffled against their targets")
        ctl = build_config(to_dict(cfg), {"train": {"shuffle_targets": True, "out": str(Path(cfg.train.out) / "control")}})
        train(ctl, overwrite=True, console=console)
        result.control = evaluate(ctl.train.out, split="test", langs=langs, console=console)
    table = Table(title="slt-pipe demo: toy test set")
    table.add_column("language")
    table.add_column("BLEU")
    table.add_column("chrF")
    if control:
        table.add_column("BLEU, shuffled-targets control")
    for lang, r in test.items():
        row = [lang, f"{r['bleu']:.2f}", f"{r['chrf']:.2f}"]
        if result.control is not None:
            row.append(f"{result.control[lang]['bleu']:.2f}")
        table.add_row(*row)
    console.print(table)
    run_dir = Path(cfg.train.out)
    console.print(f"plots: {run_dir / 'curves.png'}   predictions: {run_dir}/predictions_test_*.tsv   "
                  f"TensorBoard: tensorboard --logdir {run_dir / 'tb'}")
    return result

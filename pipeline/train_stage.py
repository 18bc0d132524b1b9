"""Train, evaluate, translate and the demo: the trainer wired to the caches.

Training reads only cache entries: the features of every split (`extract_stage`), the
target embeddings of every language and the SONAR decoder (`embed_stage`). It never builds
a feature extractor, NLLB or the SONAR encoder; a missing entry is an error that names the
command to run. The run directory records the full pipeline config (`pipeline.json`) and
the cache entries it read (`inputs.json`), so `evaluate` and `translate` need only `--run`.

Every input is checked before a model is built, and every fix names a command that works
when pasted (`suggest`: the dataset, root, profile, cache and data settings of the run).
Results (score tables) go to `out`, progress and notes to `console`: the CLI passes stdout
and stderr, so `slt-pipe evaluate ... > scores.txt` keeps only the table.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from rich.console import Console
from rich.table import Table

from cache.errors import CacheError, SltPipeError
from cache.files import write_text_atomic
from pipeline.commands import suggest
from pipeline.config import Config, build_config, to_dict

PIPELINE_FILE = "pipeline.json"


def _with(cfg: Config, *, splits: list[str] | None = None, langs: list[str] | None = None) -> Config:
    """`cfg` with other dataset splits and/or embed languages (the rest, and so the cache keys, unchanged)."""
    dataset = cfg.dataset if splits is None else dataclasses.replace(cfg.dataset, splits=list(splits))
    embed = cfg.embed if langs is None else dataclasses.replace(cfg.embed, langs=list(langs))
    return dataclasses.replace(cfg, dataset=dataset, embed=embed)


def bleu_case(setting: str, dataset: str) -> str:
    """'lc' or 'mixed' for train.bleu_case / evaluate --case `setting`: auto is the casing `dataset` declares
    (extract.datasets.DATASETS); a run that recorded no dataset (inputs.json from before it did) is scored as written."""
    from extract.datasets import DATASETS
    from train.evaluate import headline_case

    if setting == "auto" and dataset in DATASETS:
        return DATASETS[dataset].bleu_case
    return headline_case(setting)


# ------------------------------------------------------------------ cache look-ups


REBUILDS = {"features": "extract", "targets": "embed-targets"}
"""The stage that rebuilds an entry of each kind the trainer reads."""


@contextlib.contextmanager
def rebuild_hint(cfg: Config) -> Iterator[None]:
    """A corrupt entry read inside says the exact command that rebuilds it (with the user's settings)."""
    from cache.store import CorruptEntryError

    try:
        yield
    except CorruptEntryError as e:
        stage = REBUILDS.get(e.kind)
        if stage is None:
            raise
        langs = list(cfg.embed.langs) if stage == "embed-targets" else None
        raise e.with_rerun(suggest(cfg, stage, langs=langs)) from None



def find_features(cfg: Config, dataset: Any) -> tuple[dict[str, Path], list[str]]:
    """(split -> features entry dir of those in the cache, splits that have none). Loads no model.
    `train.features` says which: extracted with cfg's recipe, or imported (pipeline.spamo_stage)."""
    from pipeline.spamo_stage import find_selected

    return find_selected(cfg, dataset)


def find_targets(cfg: Config, dataset: Any, langs: list[str]) -> tuple[dict[str, Path], list[str]]:
    """(language -> targets.h5 of those in the cache for cfg's splits, languages that have none)."""
    from pipeline.embed_stage import require_targets

    found, missing = {}, []
    for lang in langs:
        try:
            found.update(require_targets(_with(cfg, langs=[lang]), dataset))
        except CacheError:  # its hint lacks the user's root and settings: the caller names the full command
            missing.append(lang)
    return found, missing


def _missing_targets(cfg: Config, dataset: Any, missing: list[str], found: dict[str, Path],
                     langs: list[str]) -> CacheError:
    have = f"the cache has {', '.join(found)}" if found else "the cache has none of them"
    return CacheError(f"no {', '.join(missing)} targets for {dataset.name} {','.join(cfg.dataset.splits)} ({have})",
                      fix=suggest(cfg, "embed-targets", langs=langs))


def train_inputs(cfg: Config, dataset: Any, console: Console | None = None):
    """The trainer's inputs: cache entries only, checked (an error names the command that makes what is missing)."""
    from extract.text.languages import resolve_langs
    from pipeline.embed_stage import sonar_decoder
    from pipeline.spamo_stage import missing_fix
    from train.data import entry_coverage, left_out_note
    from train.model import TrainInputs

    if "train" not in cfg.dataset.splits:
        raise SltPipeError("training needs the train split", fix="keep `train` in [dataset] splits")
    features, missing = find_features(cfg, dataset)
    if missing:
        raise CacheError(f"no features for {dataset.name} split(s) {', '.join(missing)} with this recipe in the cache",
                         fix=missing_fix(cfg, missing))
    src = dataset.source_lang
    asked = resolve_langs(cfg.embed.langs)
    langs = list(dict.fromkeys([src, *asked]))
    if src not in asked and console is not None:
        console.print(f"[yellow]note[/]: the source language {src} is trained on too (its targets choose the videos)")
    targets, absent = find_targets(cfg, dataset, langs)
    if absent:
        raise _missing_targets(cfg, dataset, absent, targets, langs)
    spec, tiny_dir = sonar_decoder(cfg, dataset)
    for split in list(features):
        with rebuild_hint(cfg):
            cov = entry_coverage(features[split], targets[src], split)
        note = left_out_note("train", cov, features[split])
        if note and console is not None:
            console.print(note, highlight=False, markup=False)
        if not cov.kept and split == "train":
            what = "is empty" if not cov.total else f"has no video with both features and a {src} target"
            raise SltPipeError(f"split train of {dataset.name} {what}", path=getattr(dataset, "root", None),
                               fix=f"check the dataset's train annotations, then {suggest(cfg, 'extract')}")
        if not cov.kept:
            del features[split]  # an empty dev or test split is said, never trained or scored on
            if console is not None:
                console.print(f"[yellow]note[/]: split {split} has no usable video; it is left out")
    return TrainInputs(features=features, targets=targets, source_lang=src, decoder_spec=spec,
                       tiny_dir=tiny_dir, train_split="train", dev_split="dev", dataset=cfg.dataset.name,
                       encoder_spec=cfg.embed.sonar_encoder)


def train(cfg: Config, *, resume: bool = False, overwrite: bool = False, console: Console, out: Console | None = None):
    """Fit the visual block and LoRA decoder on the cached tensors of `cfg`'s dataset.

    A run directory holds one run: an existing one is continued (`resume`), cleared first
    (`overwrite`), or refused, so checkpoints, predictions and TensorBoard events of two runs
    never mix.
    """
    from pipeline.dataset import configured_dataset
    from train.trainer import train as run_training

    run_dir = Path(cfg.train.out)
    dataset = configured_dataset(cfg, console)
    inputs = train_inputs(cfg, dataset, console)  # before --overwrite clears anything
    _claim_run_dir(run_dir, resume=resume, overwrite=overwrite)
    if cfg.train.warmup_steps > cfg.train.steps:
        console.print(f"[yellow]note[/]: warmup_steps = {cfg.train.warmup_steps} is longer than the run "
                      f"({cfg.train.steps} steps); clipped to {cfg.train.steps}, so the peak rate is reached at the end")
        cfg.train.warmup_steps = cfg.train.steps
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(run_dir / PIPELINE_FILE, json.dumps(to_dict(cfg), indent=2), fsync=False)
    console.print(f"[bold]train[/] {dataset.name}: {len(dataset.samples.get('train', []))} videos, "
                  f"targets {', '.join(inputs.targets)} -> {run_dir}")
    with rebuild_hint(cfg):
        result = run_training(cfg.train, inputs, resume=resume, case=bleu_case(cfg.train.bleu_case, inputs.dataset))
    best = "n/a" if result.best_bleu is None else f"{result.best_bleu:.2f} at step {result.best_step}"
    (out or console).print(f"[green]trained[/] {result.step} steps ({result.stopped}); last loss {result.last_loss:.4g}; "
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
    from train.model import TrainInputs

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


def evaluate(run: Path, *, split: str = "test", langs: str | None = None, bleurt: str | None = None,
             blaser: list[str] | None = None, console: Console, out: Console | None = None, checkpoint: str = "best",
             case: str | None = None, machine_references: bool = False) -> dict[str, dict]:
    """Decode every video of `split` into each language (default: every language with targets) and score it.

    Each language is scored against the dataset's own references; one without them is scored
    zero-shot, cross-lingually against the source-language references (and against machine
    translations where cached, labelled so). `bleurt`: a BLEURT snapshot folder or hub id;
    `blaser`: the BLASER cards to try (default both; each used when its weights are on disk).
    `case` (auto, lc, mixed) overrides the run's train.bleu_case for the headline BLEU (`bleu_case`). The
    split and languages are checked, and their cache entries found, before any model loads.
    The score table goes to `out` (default: `console`).
    """
    from train.evaluate import BLASER_MODELS

    cfg, inputs = load_run(run)
    inputs = eval_inputs(cfg, inputs, split, langs)
    with rebuild_hint(cfg if split in cfg.dataset.splits else _with(cfg, splits=[split])):
        return _evaluate(run, cfg, inputs, split, langs, bleurt, list(BLASER_MODELS if blaser is None else blaser),
                         console, out, checkpoint, case, machine_references)


def _evaluate(run: Path, cfg: Config, inputs: Any, split: str, langs: str | None, bleurt: str | None,
              blaser: list[str], console: Console, out: Console | None, checkpoint: str, case: str | None,
              machine_references: bool) -> dict[str, dict]:
    from train.data import entry_coverage, left_out_note
    from train.evaluate import evaluate as run_evaluation
    from train.evaluate import score_table

    cov = entry_coverage(inputs.features[split], inputs.targets[inputs.source_lang], split)
    note = left_out_note("evaluate", cov, inputs.features[split])
    if note:
        console.print(note, highlight=False, markup=False)
    if not cov.kept:
        what = "is empty" if not cov.total else f"has no video with both features and a {inputs.source_lang} target"
        raise SltPipeError(f"split {split} of {cfg.dataset.name} {what}: nothing to evaluate",
                           fix=f"evaluate another split: slt-pipe evaluate --run {shlex.quote(str(run))} --split "
                               f"{next((s for s in sorted(inputs.features) if s != split), 'test')}")
    chosen = list(inputs.targets) if langs is None else _chosen_langs(langs)
    case = bleu_case(case or cfg.train.bleu_case, inputs.dataset)  # a bad --case fails before any model loads
    results = run_evaluation(run, inputs, split, chosen, checkpoint=checkpoint, bleurt=bleurt, blaser=blaser,
                             device=cfg.train.device, case=case, machine_references=machine_references,
                             log=lambda text: console.print(text, highlight=False, markup=False))
    (out or console).print(score_table(f"{split} ({Path(run).name})", results))
    return results


def _chosen_langs(langs: str) -> list[str]:
    from extract.text.languages import resolve_langs

    return resolve_langs(langs)


def eval_inputs(cfg: Config, inputs: Any, split: str, langs: str | None) -> Any:
    """The run's inputs, plus the cache entries of a split or language it did not train with.

    The model decodes any language its decoder knows, on any split of the dataset: it needs
    that split's features (the run's recipe) and the source language's targets (the videos
    and their references). Another language's targets are its references where the cache has
    them; without them the language is scored zero-shot (train.evaluate). A recorded entry
    that is gone (cache gc, another cache) is looked up again by its key. Missing ones are
    one error naming the commands that make them. Loads no model.
    """
    from pipeline.dataset import configured_dataset
    from train.model import check_decoder_langs

    src = inputs.source_lang
    chosen = list(inputs.targets) if langs is None else _chosen_langs(langs)
    check_decoder_langs(inputs, chosen)
    features = {s: p for s, p in inputs.features.items() if Path(p).is_dir()}
    new_split = split not in inputs.features
    targets = {} if new_split else {lang: p for lang, p in inputs.targets.items() if Path(p).is_file()}
    want = [lang for lang in dict.fromkeys([src, *chosen]) if lang not in targets]
    if split in features and not want:
        return inputs
    one = _with(cfg, splits=[split])
    here = one if new_split else cfg  # a run's targets entries hold its own splits only
    lacking, fixes = [], []
    if split not in features:
        found, _ = find_features(one, _open_split(one, split, sorted(inputs.features)))
        if split not in found:
            from pipeline.spamo_stage import missing_fix

            lacking.append(f"{split} features made with the run's recipe")
            fixes.append(missing_fix(one, [split]))
        features.update(found)
    if want:
        found_t, absent = find_targets(here, configured_dataset(here), want)
        targets.update(found_t)
        if src in absent:  # other languages without targets are zero-shot
            lacking.append(f"{src} targets for split {','.join(here.dataset.splits)}")
            fixes.append(suggest(here, "embed-targets", langs=list(dict.fromkeys([src, *chosen]))))
    if lacking:
        raise CacheError(f"evaluate {split} {','.join(chosen)}: the cache has no {' and no '.join(lacking)}",
                         fix=" && ".join(fixes) + "; then run this evaluate again")
    return dataclasses.replace(inputs, features=features, targets=targets)


def _open_split(cfg: Config, split: str, known: list[str]) -> Any:
    """The dataset with just `split`; a name its reader does not know is an evaluate error, not a reader one."""
    from cache.errors import DatasetError
    from pipeline.dataset import configured_dataset

    try:
        return configured_dataset(cfg)
    except DatasetError as e:
        raise DatasetError(f"{cfg.dataset.name} has no split {split!r} ({e.problem})", path=e.path,
                           fix=f"pass --split with one of the run's splits ({', '.join(known)}) or another split "
                               f"of the dataset; the reader says: {e.fix}") from None


# ------------------------------------------------------------------ demo


@dataclass
class DemoResult:
    run_dir: Path
    test: dict[str, dict]
    control: dict[str, dict] | None = None


def demo(cfg: Config, *, console: Console, out: Console | None = None, control: bool = False) -> DemoResult:
    """make-toy -> extract -> embed-targets -> train -> evaluate (tiny profile), with a summary table.

    With `control`, a second run pairs every video with another video's targets
    (`--shuffle-targets`): it must not learn, which shows the first run's BLEU comes from
    the videos and not from the decoder's prior. Stages log to `console`; the summary goes to `out`.
    """
    from pipeline import embed_stage, extract_stage

    out = out or console
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
    from train.metrics import HEADLINE

    bleu = HEADLINE[0]
    table = Table(title="slt-pipe demo: toy test set")
    for col in ("language", "references", *(m.label for m in HEADLINE),
                *([f"{bleu.label}, shuffled-targets control"] if control else [])):
        table.add_column(col)
    for lang, r in test.items():
        row = [lang, r["references"], *(format(r[m.key], m.fmt) for m in HEADLINE)]
        if result.control is not None:
            row.append(format(result.control[lang][bleu.key], bleu.fmt) if lang in result.control else "-")
        table.add_row(*row)
    out.print(table)
    run_dir = Path(cfg.train.out)
    out.print(f"plots: {run_dir / 'curves.png'}   predictions: {run_dir}/predictions_test_*.tsv   "
                  f"TensorBoard: tensorboard --logdir {run_dir / 'tb'}")
    return result

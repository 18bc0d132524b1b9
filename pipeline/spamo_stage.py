"""import-features and export-features: SpaMo's .npy feature files into the cache and out of it.

Import publishes one features entry per split the way `extract` does (a claimed pending entry,
`FeatureStoreWriter` shards, one atomic rename; a killed import resumes its finished shards),
so `train`, `evaluate` and `ablate` read it like an extracted entry. Its key hashes the
dataset fingerprint, the recipe the files declare (extract.spamo_files.declared_recipe), the
import's name and the sha256 of every file read: a changed file is a new entry. The files'
hashes are listed in the entry (`spamo_files.json`). A video whose files fail a check is
skipped and listed (manifest `failures`, stderr) and the rest is published; the CLI exits 1.

Which entries training reads is `train.features` (`find_selected`): 'extracted', the key
`extract` computes from the config, or 'imported:NAME', per split the newest entry imported
under NAME whose dataset fingerprint is the configured dataset's (so an import of other
videos, or of an older annotation, is never trained on).
"""

from __future__ import annotations

import json
import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from cache.errors import CacheError, SltPipeError
from cache.features import dropped_if_unstarted
from cache.files import write_text_atomic
from cache.keys import make_key
from cache.store import Cache, Entry, PendingEntry
from pipeline.config import Config
from pipeline.console import count
from pipeline.dataset import configured_dataset

IMPORT_FORMAT = 1
IMPORTED = "imported:"
EXTRACTED = "extracted"
FILES_LISTING = "spamo_files.json"
"""In an imported entry: relative path (to the imported folder) -> sha256 of every file read."""
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass
class ImportReport:
    entries: dict[str, Entry] = field(default_factory=dict)
    failures: list[tuple[str, ...]] = field(default_factory=list)
    """(video id, reason, fix) of every skipped video of every split."""
    computed: list[str] = field(default_factory=list)
    layout: str = ""


# ------------------------------------------------------------------ which entries training reads


def imported_name(cfg: Config) -> str | None:
    """NAME of `train.features = imported:NAME`; None for 'extracted'. Anything else is an error."""
    value = cfg.train.features.strip()
    if value == EXTRACTED:
        return None
    name = value[len(IMPORTED):] if value.startswith(IMPORTED) else ""
    if not NAME.match(name):
        raise SltPipeError(f"train.features = {value!r} is neither 'extracted' nor 'imported:NAME'",
                           fix="set train.features=extracted (the default) or e.g. train.features=imported:spamo")
    return name


def find_imported(cache: Cache, dataset: Any, split: str, name: str, fingerprint: dict[str, Any]) -> Entry | None:
    """The newest features entry imported as `name` for this dataset's `split` (same fingerprint)."""
    found = [e for e in cache.entries("features") if isinstance(e, Entry)
             and (e.manifest.get("inputs", {}).get("import") or {}).get("name") == name
             and e.manifest.get("dataset") == dataset.name and e.manifest.get("split") == split
             and e.manifest["inputs"].get("dataset") == fingerprint]
    return max(found, key=lambda e: (str(e.manifest.get("created", "")), e.key), default=None)


def find_selected(cfg: Config, dataset: Any) -> tuple[dict[str, Path], list[str]]:
    """(split -> the features entry dir `train.features` selects, splits that have none). Loads no model."""
    from pipeline.extract_stage import features_key

    cache, found, missing = Cache(cfg.cache.dir), {}, []
    name = imported_name(cfg)
    for split in cfg.dataset.splits:
        if name is None:
            entry = cache.get("features", features_key(cfg, dataset, split)[0])
        else:
            entry = find_imported(cache, dataset, split, name, dataset.fingerprint(split, cfg.dataset.fingerprint))
        if entry is None:
            missing.append(split)
        else:
            found[split] = entry.dir
    return found, missing


def missing_fix(cfg: Config, splits: list[str]) -> str:
    """The command that makes the selected features of `splits`: extract, or the import of NAME."""
    from pipeline.commands import suggest

    name = imported_name(cfg)
    if name is None:
        return suggest(cfg, "extract", splits=splits)
    source = _imported_before(cfg, name) or "SPAMO_DIR"
    words = ["slt-pipe", "import-features", "--from", "spamo", source, "--name", name, "--dataset", cfg.dataset.name]
    if cfg.dataset.root is not None:
        words += ["--root", str(cfg.dataset.root)]
    words += ["--profile", cfg.profile, "--cache", str(cfg.cache.dir), "--split", ",".join(splits)]
    return (f"{shlex.join(words)} (no import named {name!r} of these videos is in the cache; SPAMO_DIR is SpaMo's "
            "feature folder)" if source == "SPAMO_DIR" else shlex.join(words))


def _imported_before(cfg: Config, name: str) -> str | None:
    """The folder an earlier import of `name` for this dataset read (its files may have been fixed since)."""
    for e in Cache(cfg.cache.dir).entries("features"):
        if isinstance(e, Entry) and (e.manifest.get("inputs", {}).get("import") or {}).get("name") == name \
                and e.manifest.get("dataset") == cfg.dataset.name and e.manifest.get("source", {}).get("dir"):
            return str(e.manifest["source"]["dir"])
    return None


# ------------------------------------------------------------------ import


def import_features(cfg: Config, source: Path, *, name: str = "spamo", dtype: str = "float32",
                    console: Console, out: Console | None = None) -> ImportReport:
    """Import SpaMo's feature files under `source` for every split of `cfg`; results go to `out`
    (stdout), the layout line, progress and skipped videos to `console` (stderr)."""
    from extract.spamo_files import detect_layout

    if not NAME.match(name):
        raise SltPipeError(f"--name {name!r}: use letters, digits, '.', '_' or '-'", fix="e.g. --name spamo")
    if dtype not in ("float32", "float16"):
        raise SltPipeError(f"--dtype {dtype!r}", fix="use float32 (SpaMo's values exactly) or float16")
    source = Path(source).expanduser().resolve()
    cache = Cache(cfg.cache.dir)
    dataset = configured_dataset(cfg, console)
    ids = {split: [s.id for s in dataset.samples[split]] for split in cfg.dataset.splits}
    layout = detect_layout(source, dataset.name, ids)
    report = ImportReport(layout=layout.describe())
    console.print(report.layout, highlight=False, markup=False)
    for split in cfg.dataset.splits:
        _import_split(cfg, cache, dataset, split, source, layout, name, dtype, report, console, out or console)
    if report.failures:
        console.print(f"[red]{len(report.failures)} video(s) skipped[/] in all; the others are published. Fix their "
                      "files (listed above) and re-run: the changed files make a new entry")
    return report


def import_key(cfg: Config, dataset: Any, split: str, layout: Any, name: str, dtype: str, digest: str,
               files: int) -> tuple[str, dict[str, Any]]:
    """The imported entry's key: the videos, what the files declare, every file's bytes, the name."""
    from extract.spamo_files import CLIP_LEN, CLIP_STRIDE, declared_recipe

    models = declared_recipe(layout, dataset.name)
    inputs = {
        "dataset": dataset.fingerprint(split, cfg.dataset.fingerprint),
        "import": {"format": "spamo", "name": name, "layout": layout.name, "files": files, "files_sha256": digest},
        "models": models,
        "preprocess": {"scales": [1, 2], "clip_len": CLIP_LEN, "clip_stride": CLIP_STRIDE, "motion_pool": "first",
                       "squash": models["recipe"]["squash"]},
        "dtype": dtype,
        "shard_videos": cfg.extract.shard_videos,
    }
    return make_key("features", inputs, format_version=IMPORT_FORMAT), inputs


def _import_split(cfg: Config, cache: Cache, dataset: Any, split: str, source: Path, layout: Any, name: str,
                  dtype: str, report: ImportReport, console: Console, out: Console) -> None:
    from extract.spamo_files import digest_files, split_files

    samples = dataset.samples[split]
    files = split_files(layout, split)
    digest, listing = digest_files(files, [s.id for s in samples], source)
    key, inputs = import_key(cfg, dataset, split, layout, name, dtype, digest, len(listing))
    got = cache.claim("features", key, inputs, note=lambda m: console.print(m, highlight=False))
    if isinstance(got, PendingEntry):
        console.print(f"[bold]import[/] {dataset.name}/{split}: {count(len(samples), 'video')} -> features/{key}",
                      highlight=False)
        with got as pending, dropped_if_unstarted(cache, pending):
            videos, failures = _write_entry(pending, samples, files, listing, source, dataset.name, dtype,
                                            cfg.extract.shard_videos, layout, console)
            if samples and not videos:  # an entry of no video is no import: removed under its lock
                cache.remove(pending.dir)
            else:
                entry = pending.publish(dataset=dataset.name, split=split, items=videos, failures=[list(f) for f in failures],
                                        config={"import": "spamo", "dtype": dtype, "shard_videos": cfg.extract.shard_videos},
                                        layout=_layout_text(), compute={"imported": "SpaMo .npy files (no model ran)"},
                                        source={"format": "spamo", "name": name, "dir": str(source),
                                                "layout": layout.to_json(source)})
        if samples and not videos:
            raise _nothing_usable(dataset.name, split, layout, failures)
        report.computed.append(split)
    else:
        entry = got
    report.entries[split] = entry
    status = "imported" if split in report.computed else "cached"
    _say_entry(dataset, split, entry, status, len(samples), report, console, out)


def _nothing_usable(dataset: str, split: str, layout: Any, failures: list) -> SltPipeError:
    """One error for a split none of whose videos has usable files: what was found, grouped, against
    what was expected (a width, a frame count), with one example file of each kind."""
    kinds: dict[str, list] = {}
    for vid, reason, fix in failures:
        path, sep, what = reason.partition(": ")
        kind = re.sub(r"\d+", "N", what if sep else reason)
        kinds.setdefault(kind, []).append((vid, reason, fix))
    parts = [f"{count(len(group), 'video')}: {group[0][1]}" for group in sorted(kinds.values(), key=len, reverse=True)]
    first_fix = max(kinds.values(), key=len)[0][2]
    return SltPipeError(f"import {dataset}/{split}: none of its {count(len(failures), 'video')} has usable SpaMo "
                        f"files ({layout.describe()}); " + "; ".join(parts[:3])
                        + (f"; and {len(parts) - 3} other kind(s) of problem" if len(parts) > 3 else ""),
                        fix=(first_fix + "; " if first_fix else "") + "nothing was imported (no entry is made of "
                        "no video): fix the files, then run the same command again")


def _layout_text() -> str:
    from pipeline.extract_stage import FEATURES_LAYOUT

    return FEATURES_LAYOUT


def _say_entry(dataset: Any, split: str, entry: Entry, status: str, total: int, report: ImportReport,
               console: Console, out: Console) -> None:
    failures = entry.manifest.get("failures", [])
    skipped = f"; {len(failures)} skipped" if failures else ""
    out.print(f"[green]{status}[/] features {dataset.name}/{split}: features/{entry.key} "
              f"({count(entry.items, 'video')}{skipped})", highlight=False)
    for f in failures:
        vid, reason, fix = (list(f) + [""])[:3]
        text = f"{dataset.name}/{split}/{vid}: {reason}" + (f"; fix: {fix}" if fix else "")
        console.print(f"[red]skipped[/] {escape(text)}", highlight=False)  # a [shape] is text, not markup
        report.failures.append((vid, reason, fix))
    if failures:
        console.print(f"[red]{dataset.name}/{split}: {len(failures)} of {count(total, 'video')} skipped[/]; "
                      f"the other {entry.items} {'is' if entry.items == 1 else 'are'} in features/{entry.key}",
                      highlight=False)


def _write_entry(pending: PendingEntry, samples: list[Any], files: Any, listing: dict[str, str], source: Path,
                 dataset: str, dtype: str, shard_videos: int, layout: Any, console: Console) -> tuple[int, list]:
    """Read, check and write every shard not yet done (a resumed import skips the finished ones)."""
    from cache.feature_store import FeatureStoreWriter
    from cache.progress import progress_bar
    from extract.spamo_files import MOTION_WIDTH, SPATIAL_WIDTH, declared_recipe, stream_layout
    from extract.vision.runner import plan_shards

    writer = FeatureStoreWriter(pending.dir, spatial_dim=SPATIAL_WIDTH, motion_dim=MOTION_WIDTH, dtype=dtype,
                                attrs={"shard_videos": shard_videos, "models": declared_recipe(layout, dataset),
                                       "streams": stream_layout(), "spatial_scales": [1, 2], "clip_len": 16,
                                       "clip_stride": 8, "motion_pool": "first", "imported_from": "spamo"})
    write_text_atomic(pending.dir / FILES_LISTING, json.dumps(listing, indent=1, sort_keys=True) + "\n", fsync=False)
    plan = plan_shards(samples, shard_videos)
    done = writer.done_shards()
    with progress_bar("videos", console=console, quiet_off_terminal=True) as bar:
        task = bar.add_task("import", total=len(samples))
        for shard in plan:
            if shard.index not in done:
                writer.write_shard(_read_shard(shard, files, listing, source, dataset))
            bar.advance(task, len(shard.samples))
    return writer.finish([s.index for s in plan])


def _read_shard(shard: Any, files: Any, listing: dict[str, str], source: Path, dataset: str) -> Any:
    """One shard's videos read and checked; a video that fails a check becomes its (id, reason, fix)."""
    from cache.feature_store import ShardData
    from extract.datasets import PngFolder
    from extract.spamo_files import FileProblem, check_video

    data = ShardData(shard.index, [], [], [], [])
    for sample in shard.samples:
        frames = len(sample.frames.files) if isinstance(sample.frames, PngFolder) and sample.problem is None else None
        try:
            video = check_video(sample.id, frames, files, dataset, source)
        except FileProblem as e:
            data.failures.append((sample.id, e.reason, e.fix))
            continue
        for path, digest in video.sha256.items():
            if listing.get(os.path.relpath(path, source)) != digest:
                raise SltPipeError("changed while it was being imported", path=path,
                                   fix="let the job that writes SpaMo's files finish, then re-run import-features")
        data.ids.append(sample.id)
        data.spatial.append(video.spatial)
        data.motion.append(video.motion)
    return data


# ------------------------------------------------------------------ export


@dataclass
class ExportReport:
    written: dict[str, int] = field(default_factory=dict)
    """split -> videos written."""


def export_features(cfg: Config, out_dir: Path, *, keys: list[str] | None = None, console: Console,
                    out: Console | None = None) -> ExportReport:
    """Write features entries in SpaMo's script layout under `out_dir`: the entries `train.features`
    selects for cfg's splits, or the entries `keys` names (their manifests say dataset and split)."""
    cache = Cache(cfg.cache.dir)
    out_dir = Path(out_dir).expanduser().resolve()
    if keys:
        entries = {}
        for key in keys:
            entry = cache.require("features", key, hint="`slt-pipe cache ls` lists the features entries")
            entries[str(entry.manifest.get("split", key))] = entry
        names = {str(e.manifest.get("dataset", "")) for e in entries.values()}
        if len(names) != 1:
            raise SltPipeError(f"--key names entries of several datasets ({', '.join(sorted(names))})",
                               fix="export one dataset at a time")
        dataset_name = names.pop()
    else:
        dataset = configured_dataset(cfg, console, generate=False)
        found, missing = find_selected(cfg, dataset)
        if missing:
            raise CacheError(f"no {cfg.train.features} features for {dataset.name} split(s) {', '.join(missing)}",
                             fix=missing_fix(cfg, missing))
        entries = {split: cache.get("features", Path(d).name) for split, d in found.items()}  # type: ignore[misc]
        dataset_name = dataset.name
    report = ExportReport()
    for split, entry in entries.items():
        report.written[split] = _export_entry(cfg, entry, dataset_name, split, out_dir, console)
        (out or console).print(f"[green]exported[/] features {dataset_name}/{split}: features/{entry.key} -> "
                               f"{out_dir} ({count(report.written[split], 'video')})", highlight=False)
    return report


def _export_entry(cfg: Config, entry: Entry, dataset_name: str, split: str, out_dir: Path, console: Console) -> int:
    from cache.features import FeatureReader
    from extract.spamo_files import export_paths, spamo_recipe_mismatch, write_npy

    reader = FeatureReader(entry.dir, rerun="`slt-pipe extract` or `slt-pipe import-features` with the same settings")
    mismatch = spamo_recipe_mismatch(reader.attrs)
    if mismatch is not None:
        raise SltPipeError(f"features/{entry.key} is not SpaMo's recipe (CLIP ViT-L/14 S2 + VideoMAE-L first "
                           f"token): {mismatch}; its files would be named as SpaMo's and mislabel them",
                           fix="export an entry of the paper profile (`--profile paper`: extract.streams = "
                               "[\"clip\", \"videomae\"], extract.spatial_scales = [1, 2]) or one imported from SpaMo")
    starts = _how2sign_starts(cfg, split) if dataset_name == "how2sign" else {}
    reader.preload(int(cfg.train.preload_gb * 1024**3))
    for vid in reader.ids:
        spatial, motion = reader.get_stored(vid)
        sp, mo = export_paths(out_dir, dataset_name, split, vid, starts.get(vid) if starts else None)
        write_npy(sp, spatial)
        write_npy(mo, motion)
    skipped = entry.manifest.get("failures", [])
    if skipped:
        console.print(f"[yellow]note[/]: {len(skipped)} video(s) of {dataset_name}/{split} have no features in "
                      f"features/{entry.key} (its manifest lists why); they are not exported", highlight=False)
    return len(reader.ids)


def _how2sign_starts(cfg: Config, split: str) -> dict[str, str]:
    """How2Sign file names carry START_REALIGNED: read from the configured dataset's annotation."""
    from extract.spamo_files import how2sign_starts

    if cfg.dataset.name != "how2sign":
        raise SltPipeError("How2Sign's SpaMo file names need START_REALIGNED from its annotation",
                           fix="pass --dataset how2sign --root DIR (the release the entry was made from)")
    import dataclasses

    one = dataclasses.replace(cfg, dataset=dataclasses.replace(cfg.dataset, splits=[split]))
    dataset = configured_dataset(one)
    return how2sign_starts(dataset.split_annotation_files.get(split) or dataset.annotation_files)

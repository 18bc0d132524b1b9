"""Extraction stage: key the features entry of each split, reuse it if cached, else build it.

Keys hash exactly what determines the features (dataset fingerprint, model identities and
weights, preprocessing, dtype, sharding; see cache/keys.py), so changing a training
setting never invalidates them.

Bad samples (a missing or empty frame folder or clip, an unreadable frame, a window past the
end of the video) are skipped and listed with reason and fix; the rest is published and the
entry's manifest `failures` holds [id, reason, fix] of each. Restoring a file changes the
dataset fingerprint, hence the key; the new entry then reuses (hard-links) every shard of the
older entry of the same split whose samples are unchanged, so only the repaired shards are
recomputed (`repaired_from` in the manifest names where the others came from).
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from rich.console import Console

from cache.features import dropped_if_unstarted
from cache.keys import canonical_json, make_key
from cache.store import Cache, Entry, PendingEntry
from extract.config import ExtractConfig
from pipeline.commands import suggest
from pipeline.config import Config, to_dict
from pipeline.dataset import configured_dataset

FEATURES_FORMAT = 2  # 2: tiny models identified by seed, architecture and library versions; crc32c on every chunk
FEATURES_LAYOUT = ("features.zarr: Zarr v3; shards/{k:05d}/spatial [sum T, Ds] and /motion [sum C, Dm] hold the "
                   "videos sorted_ids[k*shard_videos:(k+1)*shard_videos] concatenated; index/ids [N] and index/rows "
                   "[N, 5] = (shard, spatial start, stop, motion start, stop); every chunk zstd then crc32c; see cache/features.py")


@dataclass
class ExtractReport:
    entries: dict[str, Entry] = field(default_factory=dict)
    failures: list[tuple[str, ...]] = field(default_factory=list)
    """(sample id, reason, fix) of every skipped sample of every split."""
    computed: list[str] = field(default_factory=list)


def stage_config(cfg: Config, dataset_name: str) -> ExtractConfig:
    """The extract settings with `squash = "auto"` resolved for the dataset (what is keyed and run)."""
    from extract.vision.preprocess import resolve_squash

    return dataclasses.replace(cfg.extract, squash=resolve_squash(cfg.extract.squash, dataset_name))


def features_key(cfg: Config, dataset: Any, split: str) -> tuple[str, dict[str, Any]]:
    from extract.vision.streams import is_tiny, model_identity

    e = stage_config(cfg, dataset.name)
    inputs = {
        "dataset": dataset.fingerprint(split, cfg.dataset.fingerprint),
        "models": model_identity(e),
        "preprocess": {"image_size": e.image_size if is_tiny(e) else None, "scales": e.spatial_scales,
                       "clip_len": e.clip_len, "clip_stride": e.clip_stride, "motion_pool": e.motion_pool, "fps": e.fps,
                       "squash": e.squash, "frames_folder": dataset.frames_folders.get(split)},
        "dtype": e.dtype,
        "shard_videos": e.shard_videos,
    }
    return make_key("features", inputs, format_version=FEATURES_FORMAT), inputs


def extract(cfg: Config, console: Console, out: Console | None = None) -> ExtractReport:
    """Extract every split of `cfg`; what each split's entry is goes to `out` (stdout: a result), the
    rest (progress, notes, skipped videos) to `console` (stderr)."""
    from extract.ray_address import require_reachable

    require_reachable(cfg.extract.ray_address)  # before the dataset is read or the toy generated
    cache = Cache(cfg.cache.dir)
    dataset = configured_dataset(cfg, console)
    report = ExtractReport()
    with contextlib.ExitStack() as scope:
        ray_started = False

        def start_ray(ecfg: ExtractConfig) -> None:
            # One Ray for every split of the command, started on first need (a cached run starts none).
            nonlocal ray_started
            if not ray_started:
                from extract.ray_session import ray_session
                from extract.vision.runner import object_store_bytes
                from extract.vision.streams import weight_paths

                # what workers on other nodes read and write: each is asked up front whether it sees them
                shared = {"dataset": dataset.root, "cache": cache.root, **weight_paths(ecfg)}
                scope.enter_context(ray_session(ecfg.ray_address, object_store_bytes=object_store_bytes(ecfg),
                                                shared=shared))
                ray_started = True

        for split in cfg.dataset.splits:
            _extract_split(cfg, cache, dataset, split, report, start_ray, console, out or console)
    if report.failures:
        console.print(f"[red]{len(report.failures)} sample(s) skipped[/] in all; the others are published. Fix them "
                      "(listed above) and re-run: only their shards are recomputed")
    return report


def _extract_split(cfg: Config, cache: Cache, dataset: Any, split: str, report: ExtractReport,
                   start_ray: Callable[[ExtractConfig], None], console: Console, out: Console) -> None:
    key, inputs = features_key(cfg, dataset, split)
    got = cache.claim("features", key, inputs, note=lambda m: console.print(m, highlight=False))
    samples = dataset.samples[split]
    if isinstance(got, PendingEntry):
        from extract.vision.backend import pick_backend
        from extract.vision.runner import run_extraction  # torch, Ray, Zarr: only when there is work

        console.print(f"[bold]extract[/] {dataset.name}/{split}: {len(samples)} videos -> features/{key}")
        ecfg = stage_config(cfg, dataset.name)
        donors = repair_donors(cache, key, inputs, dataset.name, split)
        with got as pending:
            with dropped_if_unstarted(cache, pending):
                backend = pick_backend(ecfg, start_ray=lambda: start_ray(ecfg))
                result = run_extraction(ecfg, samples, pending, backend, console=console,
                                        digests=dataset.sample_digests(split, cfg.dataset.fingerprint),
                                        donors=[(e.key, e.dir) for e in donors])
            extra = {"repaired_from": result.reused} if result.reused else {}
            entry = pending.publish(dataset=dataset.name, split=split, items=result.done,
                                    failures=[list(f) for f in result.skipped], config=to_dict(ecfg),
                                    layout=FEATURES_LAYOUT, compute=result.compute, **extra)
        report.computed.append(split)
    else:
        entry = got
    report.entries[split] = entry
    failures = entry.manifest.get("failures", [])
    status = "built" if split in report.computed else "cached"
    skipped = f"; {len(failures)} skipped" if failures else ""
    out.print(f"[green]{status}[/] features {dataset.name}/{split}: features/{key} ({entry.items} videos{skipped})",
              highlight=False)
    for f in failures:
        vid, reason, fix = (list(f) + [""])[:3]
        console.print(f"[red]skipped[/] {dataset.name}/{split}/{vid}: {reason}" + (f"; fix: {fix}" if fix else ""),
                      highlight=False)
        report.failures.append((vid, reason, fix))
    if failures:
        console.print(f"[red]{dataset.name}/{split}: {len(failures)} of {len(samples)} sample(s) skipped[/]; "
                      f"the other {entry.items} are in features/{entry.key}")


def repair_donors(cache: Cache, key: str, inputs: dict[str, Any], name: str, split: str) -> list[Entry]:
    """Published features entries of the same dataset and split whose key inputs equal ours except
    the dataset's files: their unchanged shards can be reused (newest first)."""
    def same_but_files(other: dict[str, Any]) -> bool:
        mine, theirs = dict(inputs), dict(other)
        a, b = mine.pop("dataset", {}), theirs.pop("dataset", {})
        return canonical_json(mine) == canonical_json(theirs) and all(a.get(k) == b.get(k) for k in ("dataset", "split", "mode"))

    found = [e for e in cache.entries("features") if isinstance(e, Entry) and e.key != key
             and e.manifest.get("dataset") == name and e.manifest.get("split") == split
             and same_but_files(e.manifest.get("inputs", {})) and Path(e.dir).is_dir()]
    return sorted(found, key=lambda e: str(e.manifest.get("created", "")), reverse=True)


def feature_stats(cfg: Config, split: str, console: Console) -> dict[str, Any]:
    """Per-dimension mean/std of one split's features, computed with dask over the Zarr shards."""
    from rich.table import Table

    from cache.features import FeatureReader
    from cache.features import feature_stats as compute_stats

    dataset = configured_dataset(cfg, console, generate=False)  # read-only: find the generated toy, never make it
    key, _ = features_key(cfg, dataset, split)
    entry = Cache(cfg.cache.dir).require("features", key, hint=f"run `{suggest(cfg, 'extract', splits=[split])}` first")
    reader = FeatureReader(entry.dir)
    stats = compute_stats(reader)
    out: dict[str, Any] = {"videos": len(reader.ids), **stats}
    table = Table(title=f"features/{key} ({dataset.name}/{split}, {len(reader.ids)} videos)")
    for col in ("stream", "rows", "dims", "mean of means", "mean std", "min std", "max |mean|"):
        table.add_column(col)
    for name in ("spatial", "motion"):
        st = stats[name]
        mean, std = st["mean"], st["std"]
        if st["rows"]:
            table.add_row(name, str(st["rows"]), str(len(mean)), f"{mean.mean():.4g}", f"{std.mean():.4g}",
                          f"{std.min():.4g}", f"{abs(mean).max():.4g}")
        else:
            table.add_row(name, "0", str(len(mean)), "-", "-", "-", "-")
    console.print(table)
    return out

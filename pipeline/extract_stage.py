"""Extraction stage: key the features entry of each split, reuse it if cached, else build it.

Keys hash exactly what determines the features (dataset fingerprint, model identities and
weights, preprocessing, dtype, sharding; see cache/keys.py), so changing a training
setting never invalidates them. A split's features entry is a set of stream entries, one per
encoder, each keyed by what determines that encoder's features alone (cache/features.py):
only the streams the cache lacks are computed, together, from one decode of each video.

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

from cache.features import STREAM_KIND, dropped_if_unstarted, missing_streams, write_assembly
from cache.keys import canonical_json, make_key
from cache.store import Cache, Entry, PendingEntry
from extract.config import ExtractConfig
from pipeline.commands import suggest
from pipeline.config import Config, to_dict
from pipeline.dataset import configured_dataset

FEATURES_FORMAT = 2  # 2: tiny models identified by seed, architecture and library versions; crc32c on every chunk
FEATURES_LAYOUT = ("features.zarr: Zarr v3; shards/{k:05d}/spatial [sum T, Ds] and /motion [sum C, Dm] hold the "
                   "videos sorted_ids[k*shard_videos:(k+1)*shard_videos] concatenated; index/ids [N] and index/rows "
                   "[N, 5] = (shard, spatial start, stop, motion start, stop); every chunk zstd then crc32c; see "
                   "cache/feature_store.py")
"""One store holding both arrays: an import of SpaMo's files, and every entry before per-stream caching."""
STREAM_FORMAT = 1
STREAM_LAYOUT = ("features.zarr: Zarr v3; shards/{k:05d}/spatial [sum T, D] (a frame encoder) or /motion [sum C, D] "
                 "(a clip encoder) holds the videos sorted_ids[k*shard_videos:(k+1)*shard_videos] concatenated; "
                 "index/ids [N] and index/rows [N, 3] = (shard, start, stop); every chunk zstd then crc32c; see "
                 "cache/feature_store.py")
SET_LAYOUT = ("streams.json: the set's stream entries (stream/<key>) in extract.streams order and the columns each "
              "fills; a video's spatial features are its frame streams' rows side by side, its motion features its "
              "clip streams'; see cache/features.py")


@dataclass
class ExtractReport:
    entries: dict[str, Entry] = field(default_factory=dict)
    failures: list[tuple[str, ...]] = field(default_factory=list)
    """(sample id, reason, fix) of every skipped sample of every split."""
    computed: list[str] = field(default_factory=list)
    """Splits for which this run computed a stream."""
    streams: dict[str, dict[str, str]] = field(default_factory=dict)
    """split -> stream -> "computed" or "cached" (empty: the whole set was cached)."""


def stage_config(cfg: Config, dataset_name: str) -> ExtractConfig:
    """The extract settings with `squash = "auto"` resolved for the dataset (what is keyed and run)."""
    from extract.vision.preprocess import resolve_squash

    return dataclasses.replace(cfg.extract, squash=resolve_squash(cfg.extract.squash, dataset_name))


def features_key(cfg: Config, dataset: Any, split: str) -> tuple[str, dict[str, Any]]:
    """The key of a split's features entry: the set of `extract.streams`."""
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


def stream_key(cfg: Config, dataset: Any, split: str, name: str) -> tuple[str, dict[str, Any]]:
    """The key of one stream's features: its encoder and the settings that reach it (a frame encoder
    is not keyed by the clip settings, nor a clip encoder by the spatial scales)."""
    from extract.vision.encoders import encoder_class
    from extract.vision.streams import encoder_identity, is_tiny

    e = stage_config(cfg, dataset.name).only(name)
    per_kind = ({"scales": e.spatial_scales} if encoder_class(name).kind == "frame" else
                {"clip_len": e.clip_len, "clip_stride": e.clip_stride, "motion_pool": e.motion_pool})
    inputs = {
        "dataset": dataset.fingerprint(split, cfg.dataset.fingerprint),
        "stream": name,
        "model": encoder_identity(e),
        "preprocess": {"image_size": e.image_size if is_tiny(e) else None, **per_kind, "fps": e.fps,
                       "squash": e.squash, "frames_folder": dataset.frames_folders.get(split)},
        "dtype": e.dtype,
        "shard_videos": e.shard_videos,
    }
    return make_key(STREAM_KIND, inputs, format_version=STREAM_FORMAT), inputs


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
    note = lambda m: console.print(m, highlight=False)  # noqa: E731
    got = cache.claim("features", key, inputs, note=note)
    if isinstance(got, Entry) and missing_streams(got.dir):  # a stream entry went (gc --corrupt): rebuild the set
        cache.remove(got.dir)
        got = cache.claim("features", key, inputs, note=note)
    statuses: dict[str, str] = {}
    if isinstance(got, PendingEntry):
        with got as pending, dropped_if_unstarted(cache, pending):  # the set's partial holds no shard: dropped
            streams = _assemble(cfg, cache, dataset, split, pending, start_ray, console)
            entry = report.entries[split] = pending.publish(**_set_manifest(cfg, dataset, split, pending, streams))
        statuses = {n: st for n, (st, _) in streams.items()}
        if "computed" in statuses.values():
            report.computed.append(split)
    else:
        entry = report.entries[split] = got
    report.streams[split] = statuses
    failures = entry.manifest.get("failures", [])
    status = "built" if statuses else "cached"
    skipped = f"; {len(failures)} skipped" if failures else ""
    per_stream = "; " + ", ".join(f"{n} {st}" for n, st in statuses.items()) if statuses else ""
    out.print(f"[green]{status}[/] features {dataset.name}/{split}: features/{key} ({entry.items} videos{skipped}"
              f"{per_stream})", highlight=False)
    samples = dataset.samples[split]
    for f in failures:
        vid, reason, fix = (list(f) + [""])[:3]
        console.print(f"[red]skipped[/] {dataset.name}/{split}/{vid}: {reason}" + (f"; fix: {fix}" if fix else ""),
                      highlight=False)
        report.failures.append((vid, reason, fix))
    if failures:
        console.print(f"[red]{dataset.name}/{split}: {len(failures)} of {len(samples)} sample(s) skipped[/]; "
                      f"the other {entry.items} are in features/{entry.key}")


def _assemble(cfg: Config, cache: Cache, dataset: Any, split: str, pending: PendingEntry,
              start_ray: Callable[[ExtractConfig], None], console: Console) -> dict[str, tuple[str, Entry]]:
    """Every stream entry of the set published (computing the missing ones), then the set's index
    written into `pending`; stream -> ("computed" or "cached", its entry), in the set's order."""
    from extract.vision.streams import stream_layout

    ecfg = stage_config(cfg, dataset.name)
    keys = {name: stream_key(cfg, dataset, split, name) for name in ecfg.streams}
    note = lambda m: console.print(m, highlight=False)  # noqa: E731
    have: dict[str, Entry] = {}
    statuses: dict[str, str] = {}
    # First every stream no other process is building; then wait for those (one that died is ours to resume).
    for wait in (False, True):
        with contextlib.ExitStack() as held:  # an error releases the streams' locks; their work stays to resume
            claimed = {n: cache.claim(STREAM_KIND, *keys[n], note=note, wait=wait) for n in ecfg.streams if n not in have}
            mine = {n: held.enter_context(g) for n, g in claimed.items() if isinstance(g, PendingEntry)}
            have.update({n: g for n, g in claimed.items() if isinstance(g, Entry)})
            statuses.update({n: "cached" for n, g in claimed.items() if isinstance(g, Entry)})
            if mine:
                have.update(_compute_streams(cfg, cache, dataset, split, mine, ecfg, start_ray, console))
                statuses.update({n: "computed" for n in mine})
    layout = {s["name"]: s for s in stream_layout(ecfg)}
    write_assembly(pending.dir, [{**layout[n], "entry": have[n].key} for n in ecfg.streams],
                   _set_attrs(ecfg))
    return {n: (statuses[n], have[n]) for n in ecfg.streams}


def _compute_streams(cfg: Config, cache: Cache, dataset: Any, split: str, mine: dict[str, PendingEntry],
                     ecfg: ExtractConfig, start_ray: Callable[[ExtractConfig], None], console: Console) -> dict[str, Entry]:
    """Compute the streams `mine` (pending stream entries) in one run and publish each."""
    from extract.vision.backend import pick_backend
    from extract.vision.runner import run_extraction  # torch, Ray, Zarr: only when there is work

    names = [n for n in ecfg.streams if n in mine]
    run_cfg = dataclasses.replace(ecfg, streams=names)
    samples = dataset.samples[split]
    console.print(f"[bold]extract[/] {dataset.name}/{split}: {len(samples)} videos -> "
                  + ", ".join(f"{n} (stream/{mine[n].key})" for n in names))
    donors = {n: [(e.key, e.dir) for e in repair_donors(cache, STREAM_KIND, mine[n].key, mine[n].inputs,
                                                       dataset.name, split)] for n in names}
    with dropped_if_unstarted(cache, list(mine.values())):
        backend = pick_backend(run_cfg, start_ray=lambda: start_ray(run_cfg))
        result = run_extraction(run_cfg, samples, {n: mine[n].dir for n in names}, backend, console=console,
                                digests=dataset.sample_digests(split, cfg.dataset.fingerprint), donors=donors)
    published = {}
    for n in names:
        videos, failures = result.streams[n]
        extra = {"repaired_from": result.reused[n]} if n in result.reused else {}
        one = run_cfg.only(n)
        published[n] = mine[n].publish(dataset=dataset.name, split=split, stream=n, items=videos,
                                       failures=[list(f) for f in failures], config=to_dict(one),
                                       layout=STREAM_LAYOUT, compute=result.compute, **extra)
    return published


def _set_attrs(ecfg: ExtractConfig) -> dict[str, Any]:
    """What a one-store entry of the set held as its attributes (SpaMo's export checks them)."""
    from extract.vision.streams import model_identity, stream_layout

    return {"shard_videos": ecfg.shard_videos, "models": model_identity(ecfg), "streams": stream_layout(ecfg),
            "spatial_scales": ecfg.spatial_scales, "clip_len": ecfg.clip_len, "clip_stride": ecfg.clip_stride,
            "motion_pool": ecfg.motion_pool, "dtype": ecfg.dtype}


def _set_manifest(cfg: Config, dataset: Any, split: str, pending: PendingEntry,
                  streams: dict[str, tuple[str, Entry]]) -> dict[str, Any]:
    from cache.features import FeatureReader

    failures = sorted({tuple(f) for _, e in streams.values() for f in e.manifest.get("failures") or []})
    computed = [e for st, e in streams.values() if st == "computed"] or [e for _, e in streams.values()]
    return {"dataset": dataset.name, "split": split, "items": len(FeatureReader(pending.dir).ids),
            "failures": [list(f) for f in failures], "config": to_dict(stage_config(cfg, dataset.name)),
            "compute": computed[0].manifest.get("compute", {}),  # this run's, or (all cached) the first stream's
            "streams": {n: {"entry": f"{STREAM_KIND}/{e.key}", "computed": st == "computed"}
                        for n, (st, e) in streams.items()},
            "layout": SET_LAYOUT}


def repair_donors(cache: Cache, kind: str, key: str, inputs: dict[str, Any], name: str, split: str) -> list[Entry]:
    """Published entries of `kind` of the same dataset and split whose key inputs equal ours except
    the dataset's files: their unchanged shards can be reused (newest first)."""
    def same_but_files(other: dict[str, Any]) -> bool:
        mine, theirs = dict(inputs), dict(other)
        a, b = mine.pop("dataset", {}), theirs.pop("dataset", {})
        return canonical_json(mine) == canonical_json(theirs) and all(a.get(k) == b.get(k) for k in ("dataset", "split", "mode"))

    found = [e for e in cache.entries(kind) if isinstance(e, Entry) and e.key != key
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

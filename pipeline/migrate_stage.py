"""`slt-pipe cache migrate`: split a features entry from before per-stream caching into stream entries.

Such an entry holds every stream of its set in one store. It stays readable as it is; migrating
makes each of its streams an entry of its own (cache/features.py) by hard-linking its shards,
so that another set with one of those encoders reuses it. Nothing is recomputed.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console

from cache.features import STREAM_KIND, assembly, split_store
from cache.store import Cache, Entry, PendingEntry
from pipeline.config import Config, to_dict
from pipeline.dataset import configured_dataset
from pipeline.extract_stage import STREAM_LAYOUT, features_key, stage_config, stream_key


def migrate(cfg: Config, console: Console, out: Console) -> dict[str, dict[str, str]]:
    """Split `cfg`'s features entry of each split; split -> stream -> "migrated" or "cached"."""
    from extract.vision.streams import stream_layout

    cache = Cache(cfg.cache.dir)
    dataset = configured_dataset(cfg, console, generate=False)
    ecfg = stage_config(cfg, dataset.name)
    done: dict[str, dict[str, str]] = {}
    for split in cfg.dataset.splits:
        key, _ = features_key(cfg, dataset, split)
        entry = cache.get("features", key)
        where = f"features {dataset.name}/{split}: features/{key}"
        if entry is None:
            out.print(f"no {where} in the cache: nothing to migrate (`slt-pipe extract` builds it per stream)",
                      highlight=False)
            continue
        if assembly(entry.dir) is not None:
            out.print(f"{where} is per stream already", highlight=False)
            continue
        done[split] = {}
        for stream in stream_layout(ecfg):
            name = stream["name"]
            skey, inputs = stream_key(cfg, dataset, split, name)
            got = cache.claim(STREAM_KIND, skey, inputs, note=lambda m: console.print(m, highlight=False))
            if isinstance(got, Entry):
                done[split][name] = "cached"
                continue
            done[split][name] = "migrated"
            _migrate_stream(got, entry, stream, ecfg, dataset.name, split)
        out.print(f"[green]migrated[/] {where} -> " + ", ".join(
            f"{n} {st}" for n, st in done[split].items()) + " (hard links: nothing recomputed)", highlight=False)
    return done


def _migrate_stream(pending: PendingEntry, entry: Entry, stream: dict[str, Any], ecfg: Any, dataset: str,
                    split: str) -> None:
    from extract.vision.stream_writers import stream_attrs

    name = stream["name"]
    one = ecfg.only(name)
    with pending:
        videos, failures = split_store(entry.dir, pending.dir, stream, stream_attrs(one))
        pending.publish(dataset=dataset, split=split, stream=name, items=videos, failures=[list(f) for f in failures],
                        config=to_dict(one), layout=STREAM_LAYOUT, migrated_from=f"features/{entry.key}",
                        compute=entry.manifest.get("compute", {}))

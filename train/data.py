"""Dataset over the caches, padding collate, and a prefetching batch loader.

Reads caches only (`cache.features`, `cache.targets`); never imports `pipeline`/`extract`.
A sample is video id -> (spatial f16 [T, Ds], motion f16 [C, Dm], {lang: (embedding, token ids)}).
Videos are those with features and a target in the source language (`split_coverage` says
which were left out, `left_out_note` in one line); other languages are used for the ids they cover (per-sample
availability mask). Each target row keeps its `source`: REFERENCE (the dataset's own text)
or the translator that made it, so evaluation can score against true references only.

Batch order is a pure function of (seed, step) (epoch-wise permutations), so a resumed run
sees exactly the batches the uninterrupted run would; background threads only prefetch.
Training batches cap each video at `max_frames` spatial rows (SpaMo's max_frame_len): a
longer video gets a random contiguous crop, drawn from (seed, step) too.
"""

from __future__ import annotations

import json
import math
import queue
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch import Tensor

from cache.errors import SltPipeError

REFERENCE = "reference"
"""Target `source` of a dataset's own text (cache.targets); anything else is a machine translation."""


@dataclass
class Coverage:
    """Which videos of a split have both features and a source-language target."""

    split: str
    total: int
    """Videos with features or a target (the split as the caches know it)."""
    kept: list[str]
    """Ids with both, in target order."""
    without_features: list[str]
    without_targets: list[str]

    @property
    def left_out(self) -> int:
        return len(self.without_features) + len(self.without_targets)


def split_coverage(split: str, feature_ids: list[str], target_ids: list[str]) -> Coverage:
    """The videos usable for training or scoring, and the ones left out (a sample in one cache only never crashes)."""
    feats, targets = set(feature_ids), set(target_ids)
    kept = [i for i in target_ids if i in feats]
    return Coverage(split, len(feats | targets), kept, sorted(targets - feats), sorted(feats - targets))


def entry_coverage(features_dir: Path, targets_h5: Path, split: str) -> Coverage:
    """The coverage of `split` by a features entry and a targets HDF5 (their ids only: nothing else is read)."""
    from cache.features import FeatureReader
    from cache.targets import TargetReader

    with TargetReader(targets_h5) as t:
        target_ids = t.ids(split) if split in t.splits else []
    return split_coverage(split, list(FeatureReader(features_dir).ids), target_ids)


def left_out_note(stage: str, cov: Coverage, features_dir: Path) -> str | None:
    """'train: 3 of 480 videos of split train left out: 2 without features (listed in ...), 1 without targets'."""
    from cache.store import MANIFEST

    if not cov.left_out:
        return None
    parts = []
    if cov.without_features:
        manifest = Path(features_dir) / MANIFEST
        failures = {str(f[0]): str(f[1]) for f in json.loads(manifest.read_text()).get("failures", [])
                    if len(f) >= 2} if manifest.is_file() else {}
        listed = [f"{i} ({failures[i]})" for i in cov.without_features if i in failures]
        where = f"features/{Path(features_dir).name}"
        detail = (f" (listed in {where} failures: {', '.join(listed[:5])}{', ...' if len(listed) > 5 else ''})"
                  if listed else f" (not in {where})")
        parts.append(f"{len(cov.without_features)} without features{detail}")
    if cov.without_targets:
        parts.append(f"{len(cov.without_targets)} without targets")
    return f"{stage}: {cov.left_out} of {cov.total} videos of split {cov.split} left out: {', '.join(parts)}"


def target_sources(reader: Any, split: str) -> list[str]:
    """Per row, where the target text came from; readers without the field say it in their `translator` attr."""
    if hasattr(reader, "sources"):
        try:
            return list(reader.sources(split))
        except KeyError:  # a file written before the field existed
            pass
    label = getattr(reader, "translator", REFERENCE) or REFERENCE
    return [REFERENCE if label == REFERENCE else f"machine ({label})"] * len(reader.ids(split))


def open_features(entry_dir: Path):
    """A `cache.features.FeatureReader` for one feature cache entry."""
    from cache.features import FeatureReader

    return FeatureReader(entry_dir)


def open_targets(h5_path: Path):
    """A `cache.targets.TargetReader` for one language's target file."""
    from cache.targets import TargetReader

    return TargetReader(h5_path)


@dataclass
class RunData:
    """The cached features and targets one run trains and evaluates on, checked before any model is built."""

    features: dict[str, Any]
    """split -> FeatureReader."""
    targets: dict[str, Any]
    """language -> TargetReader."""
    train_split: str
    dev_split: str
    source_lang: str
    eval_langs: list[str]
    """Languages dev BLEU is measured in (train.eval_langs, else the source language)."""

    @property
    def train(self) -> Any:
        return self.features[self.train_split]

    @property
    def emb_dim(self) -> int:
        return int(np.asarray(self.targets[self.source_lang].embeddings(self.train_split)).shape[1])

    def loader(self, cfg: Any, dec: Any) -> "BatchLoader":
        """Training batches: tokens from the decoder's tokenizer, deterministic in (seed, step)."""
        ds = CacheDataset(self.train, self.targets, self.train_split, self.source_lang, encode=dec.encode_targets,
                          max_tokens=cfg.max_len + 2, shuffle_targets=cfg.shuffle_targets, seed=cfg.seed)
        return BatchLoader(ds, cfg.batch_size, pad_idx=dec.pad_idx, seed=cfg.seed, workers=cfg.loader_workers,
                           max_frames=cfg.max_frames)

    def dev(self) -> "CacheDataset | None":
        if self.dev_split not in self.features:
            return None
        return CacheDataset(self.features[self.dev_split], self.targets, self.dev_split, self.source_lang)


def open_run_data(cfg: Any, inputs: Any) -> RunData:
    """Open the run's entries (`TrainInputs`) and preload the train split (`train.preload_gb`)."""
    feats = {split: open_features(Path(p)) for split, p in inputs.features.items()}
    targets = {lang: open_targets(Path(p)) for lang, p in inputs.targets.items()}
    if inputs.train_split not in feats:
        raise SltPipeError(f"no features for the train split {inputs.train_split!r} (have {', '.join(sorted(feats))})",
                           fix="keep `train` among the dataset's splits")
    if inputs.source_lang not in targets:
        raise SltPipeError(f"no targets in the source language {inputs.source_lang} (have {', '.join(targets)})",
                           fix=f"embed-targets with {inputs.source_lang} among --langs")
    eval_langs = list(cfg.eval_langs) or [inputs.source_lang]
    unknown = [lang for lang in eval_langs if lang not in targets]
    if unknown:
        raise SltPipeError(f"train.eval_langs {', '.join(unknown)} has no targets in this run "
                           f"(it has {', '.join(targets)})", fix="add the language to --langs, or drop it from train.eval_langs")
    feats[inputs.train_split].preload(int(cfg.preload_gb * 2**30))
    return RunData(feats, targets, inputs.train_split, inputs.dev_split, inputs.source_lang, eval_langs)


@dataclass
class Batch:
    ids: list[str]
    spatial: Tensor  # [B, T, Ds] float32
    spatial_mask: Tensor  # [B, T] bool
    motion: Tensor  # [B, C, Dm] float32
    motion_mask: Tensor  # [B, C] bool
    langs: list[str]
    embeddings: Tensor  # [B, n_langs, D] float32 (zeros where unavailable)
    available: Tensor  # [B, n_langs] bool
    tokens: dict[str, Tensor]  # lang -> [B, L] long, pad where unavailable
    texts: dict[str, list[str | None]]

    def to(self, device) -> "Batch":
        d = dict(self.__dict__)
        for k in ("spatial", "spatial_mask", "motion", "motion_mask", "embeddings", "available"):
            d[k] = getattr(self, k).to(device, non_blocking=True)
        d["tokens"] = {k: v.to(device, non_blocking=True) for k, v in self.tokens.items()}
        return Batch(**d)


class CacheDataset:
    """Videos of one split paired with their targets in every language given."""

    def __init__(self, features: Any, targets: dict[str, Any], split: str, source_lang: str, *,
                 encode=None, max_tokens: int | None = None, shuffle_targets: bool = False, seed: int = 0):
        """features: FeatureReader; targets: lang -> TargetReader; encode(texts, lang, max_len) -> list[LongTensor]."""
        if source_lang not in targets:
            raise SltPipeError(f"no targets for the source language {source_lang} (have {', '.join(sorted(targets))})",
                               fix=f"embed-targets with {source_lang} among --langs")
        self.features = features
        self.split = split
        self.langs = [source_lang] + sorted(lang for lang in targets if lang != source_lang)
        self.coverage = split_coverage(split, list(features.ids), targets[source_lang].ids(split))
        self.ids = self.coverage.kept
        if not self.ids:
            what = "is empty" if not self.coverage.total else f"has no video with both features and a {source_lang} target"
            raise SltPipeError(f"split {split} {what}", fix="check the dataset's split and re-run extract and embed-targets")
        n, pos = len(self.ids), {v: k for k, v in enumerate(self.ids)}
        dim = None
        self.emb: dict[str, np.ndarray] = {}
        self.avail: dict[str, np.ndarray] = {}
        self.text: dict[str, list[str | None]] = {}
        self.source: dict[str, list[str | None]] = {}
        self.tok: dict[str, list[Tensor | None]] = {}
        for lang in self.langs:
            r = targets[lang]
            ids, texts, embs = r.ids(split), r.texts(split), np.asarray(r.embeddings(split), dtype=np.float32)
            dim = embs.shape[1] if dim is None else dim
            e = np.zeros((n, dim), np.float32)
            a = np.zeros(n, bool)
            tx: list[str | None] = [None] * n
            src: list[str | None] = [None] * n
            for vid, t, row, origin in zip(ids, texts, embs, target_sources(r, split)):
                k = pos.get(vid)
                if k is not None:
                    e[k], a[k], tx[k], src[k] = row, True, t, origin
            self.emb[lang], self.avail[lang], self.text[lang], self.source[lang] = e, a, tx, src
            if encode is not None:
                have = [k for k in range(n) if a[k]]
                enc = encode([tx[k] for k in have], lang, max_tokens)
                toks: list[Tensor | None] = [None] * n
                for k, t in zip(have, enc):
                    toks[k] = t
                self.tok[lang] = toks
        self.emb_dim = dim
        # control: pair every video with another video's targets (same permutation for all languages)
        self.target_index = np.arange(n)
        if shuffle_targets and n > 1:
            rng = np.random.default_rng(seed + 7919)
            perm = rng.permutation(n)
            fixed = perm == np.arange(n)
            perm[fixed] = np.roll(perm[fixed], 1) if fixed.sum() > 1 else perm[fixed]
            self.target_index = perm

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict:
        vid = self.ids[i]
        spatial, motion = self.features.get(vid)
        j = int(self.target_index[i])
        return {
            "id": vid, "spatial": spatial, "motion": motion,
            "targets": {lang: (self.emb[lang][j], self.tok[lang][j] if self.tok else None, self.text[lang][j])
                        for lang in self.langs if self.avail[lang][j]},
        }


def _pad(arrays: list[np.ndarray]) -> tuple[Tensor, Tensor]:
    lens = [max(len(a), 1) for a in arrays]
    out = np.zeros((len(arrays), max(lens), arrays[0].shape[1]), np.float32)
    for k, a in enumerate(arrays):
        out[k, : len(a)] = a
    lengths = torch.tensor([len(a) for a in arrays])
    return torch.from_numpy(out), torch.arange(out.shape[1])[None] < lengths[:, None]


def crop_frames(samples: list[dict], max_frames: int, rng: np.random.Generator) -> list[dict]:
    """Samples whose spatial rows exceed max_frames get a random contiguous crop of them.

    As SpaMo (`get_inputs`): only the per-frame (spatial) stream is cropped; the motion clips
    stay whole. One draw per cropped sample, in batch order, so the crop is a function of the rng seed.
    """
    out = []
    for s in samples:
        t = len(s["spatial"])
        start = int(rng.integers(0, t - max_frames + 1)) if t > max_frames else 0
        out.append({**s, "spatial": s["spatial"][start : start + max_frames]} if t > max_frames else s)
    return out


def collate(samples: list[dict], langs: list[str], pad_idx: int, emb_dim: int) -> Batch:
    spatial, smask = _pad([s["spatial"] for s in samples])
    motion, mmask = _pad([s["motion"] for s in samples])
    b, nl = len(samples), len(langs)
    emb = torch.zeros(b, nl, emb_dim)
    avail = torch.zeros(b, nl, dtype=torch.bool)
    tokens, texts = {}, {}
    for li, lang in enumerate(langs):
        seqs, tx = [], []
        for k, s in enumerate(samples):
            t = s["targets"].get(lang)
            if t is not None:
                emb[k, li] = torch.from_numpy(np.asarray(t[0]))
                avail[k, li] = True
            seqs.append(t[1] if t is not None and t[1] is not None else torch.full((2,), pad_idx, dtype=torch.long))
            tx.append(t[2] if t is not None else None)
        tokens[lang] = torch.nn.utils.rnn.pad_sequence(seqs, batch_first=True, padding_value=pad_idx)
        texts[lang] = tx
    return Batch([s["id"] for s in samples], spatial, smask, motion, mmask, list(langs), emb, avail, tokens, texts)


class BatchLoader:
    """Deterministic batches (function of seed and step), prefetched by background threads."""

    def __init__(self, dataset: CacheDataset, batch_size: int, *, pad_idx: int, shuffle: bool = True,
                 seed: int = 0, workers: int = 2, prefetch: int = 4, drop_last: bool = True, max_frames: int = 0):
        """max_frames > 0: training batches crop longer videos' spatial rows (see the module docstring)."""
        self.ds, self.batch_size, self.pad_idx, self.max_frames = dataset, batch_size, pad_idx, max_frames
        self.shuffle, self.seed, self.workers, self.prefetch = shuffle, seed, max(workers, 0), prefetch
        n = len(dataset)
        self.batch_size = min(batch_size, n)
        self.per_epoch = n // self.batch_size if drop_last else math.ceil(n / self.batch_size)

    def indices(self, step: int) -> list[int]:
        """Dataset indices of the batch for global step `step` (0-based)."""
        epoch, k = divmod(step, self.per_epoch)
        n = len(self.ds)
        order = np.random.default_rng([self.seed, epoch]).permutation(n) if self.shuffle else np.arange(n)
        return order[k * self.batch_size : (k + 1) * self.batch_size].tolist()

    def make(self, step: int) -> Batch:
        samples = [self.ds[i] for i in self.indices(step)]
        if self.max_frames > 0:
            samples = crop_frames(samples, self.max_frames, np.random.default_rng([self.seed, step, 512]))
        return collate(samples, self.ds.langs, self.pad_idx, self.ds.emb_dim)

    def iterate(self, start: int, stop: int) -> Iterator[tuple[int, Batch]]:
        """Yield (step, batch) for start <= step < stop, built ahead by `workers` threads."""
        if self.workers == 0:
            for step in range(start, stop):
                yield step, self.make(step)
            return
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(self.workers, thread_name_prefix="slt-loader") as pool:
            pending: "queue.SimpleQueue" = queue.SimpleQueue()
            nxt = start
            inflight = 0
            while nxt < stop and inflight < self.prefetch:
                pending.put((nxt, pool.submit(self.make, nxt)))
                nxt, inflight = nxt + 1, inflight + 1
            while inflight:
                step, fut = pending.get()
                inflight -= 1
                if nxt < stop:
                    pending.put((nxt, pool.submit(self.make, nxt)))
                    nxt, inflight = nxt + 1, inflight + 1
                yield step, fut.result()

    def eval_batches(self) -> Iterator[Batch]:
        """All samples once, in dataset order (last batch may be short)."""
        n = len(self.ds)
        for i in range(0, n, self.batch_size):
            yield collate([self.ds[j] for j in range(i, min(n, i + self.batch_size))], self.ds.langs, self.pad_idx, self.ds.emb_dim)

"""Evaluate a trained run: decode z (beam search) into each language and score it.

`evaluate(run_dir, inputs, split, langs)` -> {lang: scores}, also in scores_{split}.json, with
a predictions TSV per language (id, ref, hyp as decoded, then one column per per-sample score).
The metrics, what produces each and how every table shows them are the registry's
(`train.metrics`); every metric names what produced it (`producers`).

The headline BLEU casing comes resolved from the caller ('lc' or 'mixed': the pipeline reads
the dataset's declaration for train.bleu_case=auto). References: a language is scored against
the dataset's own texts; a language the dataset has no text in is zero-shot, scored
cross-lingually against the source-language reference (and against cached machine
translations, labelled so).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from cache.device import resolve_device
from train import confidence
from train.metrics import METRICS, Metric, Sample
from train.run_files import write_predictions, write_scores

BLASER_MODELS = ("blaser_2_0_ref", "blaser_2_0_qe")
"""The BLASER 2.0 cards evaluate tries (sonar-space's names); each is used when its weights are on disk."""


def headline_case(setting: str) -> str:
    """'lc' or 'mixed': the headline BLEU casing, as resolved by the caller from train.bleu_case or --case.

    Only the pipeline knows the dataset's declared casing (extract.datasets) and passes it down;
    an 'auto' that reaches here had no dataset to declare one and is scored as written.
    """
    if setting == "auto":
        return "mixed"
    if setting not in ("lc", "mixed"):
        from cache.errors import SltPipeError

        raise SltPipeError(f"unknown BLEU casing {setting!r}", fix="use auto, lc or mixed (evaluate --case, train.bleu_case)")
    return setting


@torch.no_grad()
def encode_split(visual, dataset, *, batch_size: int, device) -> tuple[list[str], torch.Tensor]:
    """z for every video of the dataset, in dataset order."""
    from train.data import collate

    visual.eval()
    ids, zs = [], []
    for i in range(0, len(dataset), batch_size):
        b = collate([dataset[j] for j in range(i, min(len(dataset), i + batch_size))], dataset.langs, 0, dataset.emb_dim)
        b = b.to(device)
        zs.append(visual(b.spatial, b.spatial_mask, b.motion, b.motion_mask).float().cpu())
        ids.extend(b.ids)
    return ids, torch.cat(zs)


def reference_rows(dataset, lang: str, machine_references: bool) -> tuple[list[int], str | None]:
    """(dataset rows scored for `lang`, label of their references); no rows and None: skip the language.

    Only the dataset's own texts count as references, unless `machine_references`, which
    scores every target row and names the translator in the label.
    """
    from train.data import REFERENCE

    sources = dataset.source[lang]
    true = [k for k, s in enumerate(sources) if s == REFERENCE]
    if not machine_references:
        return (true, REFERENCE) if true else ([], None)
    rows = [k for k, s in enumerate(sources) if s is not None]
    machine = sorted({s for s in sources if s is not None and s != REFERENCE})
    if not machine:
        return rows, REFERENCE
    label = "machine (" + ", ".join(_machine_name(m) for m in machine) + ")"
    return rows, f"{REFERENCE} + {label}" if true else label


def _machine_name(source: str) -> str:
    # cache.targets rows name the translator; older readers already wrap it as "machine (...)"
    return source[len("machine ("):-1] if source.startswith("machine (") and source.endswith(")") else source


class HypothesisEmbedder:
    """The SONAR text encoder the targets were embedded with, for SONAR similarity: the cosine
    between a hypothesis's embedding and its reference's (the stored target embedding)."""

    def __init__(self, spec: str, tiny_dir: Path | None, device):
        from cache.fairseq2_env import ensure_fairseq2

        ensure_fairseq2()
        from sonar.inference_pipelines.text import TextToEmbeddingModelPipeline

        from cache.sonar_models import load_sonar_encoder, load_sonar_tokenizer

        self.spec = spec
        self.pipeline = TextToEmbeddingModelPipeline(load_sonar_encoder(spec, tiny_dir, device),
                                                     load_sonar_tokenizer(spec, tiny_dir), device=torch.device(device))

    def __call__(self, texts: list[str], lang: str, batch_size: int = 64) -> torch.Tensor:
        return self.pipeline.predict(list(texts), source_lang=lang, batch_size=batch_size).float().cpu()


@dataclass
class Scorers:
    """The model-based metrics of one evaluation; each is None when its weights are absent
    (`evaluate` says why once). BLASER and SONAR similarity need `embedder`."""

    embedder: HypothesisEmbedder | None = None
    bleurt: Any = None
    """train.bleurt.BleurtScorer: score(references, candidates) -> list[float]; .producer"""
    blaser_ref: Any = None
    """train.blaser.BlaserScorer (a reference-based model): score(src, mt, ref) -> list[float]; .producer"""
    blaser_qe: Any = None
    """train.blaser.BlaserScorer (quality estimation): score(src, mt) -> list[float]; .producer"""


def true_references(dataset, lang: str) -> bool:
    """Whether the dataset has any text of its own in `lang` on this split (not only machine translations)."""
    from train.data import REFERENCE

    return any(s == REFERENCE for s in dataset.source.get(lang, []))


def score_split(visual, dec, dataset, langs: list[str], *, beam_size: int, max_len: int, batch_size: int, device,
                out_dir: Path | None = None, tag: str = "", case: str = "mixed",
                machine_references: bool = False, scorers: Scorers | None = None) -> dict[str, dict]:
    """Decode every requested language and score it; writes predictions TSVs (one row per decoded video) to out_dir.

    A language with true references is decoded for the rows that have them (`reference_rows`)
    and scored against them. A language the dataset has no text in (zero-shot: the decoder
    writes it, nothing was trained or written in it) is decoded for every video and scored
    cross-lingually, against the source-language reference (`xl_*`: SONAR similarity and
    BLASER-QE, both language-agnostic), and where machine translations of the references
    are cached, against those as well, labelled `machine (...)`.
    """
    scorers = scorers or Scorers()
    ids, z = encode_split(visual, dataset, batch_size=batch_size, device=device)
    pos = {v: k for k, v in enumerate(dataset.ids)}
    row_of = [pos[v] for v in ids]  # dataset row of each encoded video
    src = dataset.langs[0]
    results = {}
    for lang in langs:
        zero_shot = lang != src and not true_references(dataset, lang)
        scored, label = (reference_rows(dataset, lang, machine_references or zero_shot)
                         if lang in dataset.langs else ([], None))
        wanted = set(scored)
        keep = list(range(len(ids))) if zero_shot else [k for k, r in enumerate(row_of) if r in wanted]
        if not keep:
            continue
        rows = [row_of[k] for k in keep]
        hyps = dec.generate(z[keep], lang, beam_size=beam_size, max_len=max_len, batch_size=batch_size)
        hyp_emb = scorers.embedder(hyps, lang) if scorers.embedder is not None else None
        src_emb = torch.as_tensor(dataset.emb[src][rows])
        refd = [i for i, r in enumerate(rows) if r in wanted]  # decoded rows that have a reference in `lang`
        res: dict[str, Any] = {"kind": "zero-shot" if zero_shot else "references", "references": label or "none",
                               "n": len(refd), "producers": {}}
        per: dict[str, list] = {}
        if refd:
            sample = Sample(lang, src, case, [hyps[i] for i in refd], src_emb[refd],
                            None if hyp_emb is None else hyp_emb[refd], scorers,
                            refs=[dataset.text[lang][rows[i]] for i in refd],
                            target=torch.as_tensor(dataset.emb[lang][[rows[i] for i in refd]]), z=z[[keep[i] for i in refd]])
            _produce(sample, "reference", res, per)
        if zero_shot:
            res["xl_against"] = f"{src} reference"
            res["xl_n"] = len(keep)
            _produce(Sample(lang, src, case, hyps, src_emb, hyp_emb, scorers), "cross-lingual", res, per)
        for m in METRICS:
            if not m.corpus and m.column in per:
                res[m.key] = float(np.mean(per[m.column]))
        add_intervals(res, per)
        if out_dir is not None:
            at = {i: j for j, i in enumerate(refd)}  # decoded row -> its place among the reference rows
            cells = {m.column: per[m.column] if m.scope == "cross-lingual" else
                     [per[m.column][at[i]] if i in at else None for i in range(len(keep))]
                     for m in METRICS if m.column in per}
            # in a zero-shot language, a row without a reference in it shows the source-language reference
            refs = [dataset.text[lang][r] if r in wanted else dataset.text[src][r] for r in rows]
            res["tsv"] = str(write_predictions(Path(out_dir) / f"predictions{tag}_{lang}.tsv", [ids[k] for k in keep],
                                               refs, hyps, cells))
        results[lang] = res
    return results


def rests_on(m: Metric, res: dict[str, Any]) -> int:
    """How many sentences a metric's figure in a language's scores rests on: `n`, or `xl_n` cross-lingually."""
    return int(res.get("xl_n", 0) if m.scope == "cross-lingual" else res.get("n", 0))


def add_intervals(res: dict[str, Any], per: dict[str, list]) -> None:
    """Beside each score its 95% interval (`K_ci95`), then how they were computed (`ci`), what the less obvious
    figures measure (`notes`) and, on fewer than `confidence.MIN_SENTENCES` sentences, the `warning` naming the count.

    The corpus scores' intervals come with their producer's fields (sacrebleu's bootstrap, `bleu.intervals`);
    a mean of per-sentence scores gets the bootstrap over its sentences here.
    """
    sizes: dict[str, int] = {}
    for m in METRICS:
        if m.key not in res:
            continue
        if not m.corpus:
            res[confidence.ci_key(m.key)] = confidence.mean_interval(per[m.column])
        sizes["cross-lingual" if m.scope == "cross-lingual" else "with references"] = rests_on(m, res)
    if not sizes:
        return
    res["ci"] = confidence.info(_interval_kinds([res]))
    warning = confidence.small_sample_warning(sizes)
    if warning is not None:
        res["warning"] = warning
    notes = {m.key: m.note for m in METRICS if m.key in res and m.note is not None}
    if notes:
        res["notes"] = notes


def _interval_kinds(results: list[dict[str, Any]]) -> dict[str, list[str]]:
    """How the intervals of these scores were computed: method -> the labels of the metrics it gave one."""
    kinds: dict[str, list[str]] = {confidence.SACREBLEU: [], confidence.OVER_SENTENCES: []}
    for m in METRICS:
        if any(confidence.ci_key(m.key) in r for r in results):
            kinds[confidence.SACREBLEU if m.corpus else confidence.OVER_SENTENCES].append(m.label)
    return kinds


def _produce(sample: Sample, scope: str, res: dict[str, Any], per: dict[str, list]) -> None:
    """Every registered metric of `scope` that has a producer and its model: its column, producer and fields."""
    for m in METRICS:
        if m.scope != scope or m.produce is None:
            continue
        scored = m.produce(sample)
        if scored is None:
            continue
        res.update(scored.fields)
        res["producers"][m.producer] = scored.producer
        if m.column is not None:
            per[m.column] = scored.values


class DevHook:
    """Mean dev BLEU over the eval languages, for model selection while training (`train.eval_every`)."""

    def __init__(self, cfg, case: str, dev, langs: list[str], device):
        """`case`: the headline BLEU casing, 'lc' or 'mixed' (resolved by the caller)."""
        self.cfg, self.dev, self.langs, self.device = cfg, dev, langs, device
        self.case = headline_case(case)

    def __call__(self, visual, dec) -> tuple[float, dict[str, dict]]:
        visual.eval()
        try:
            scores = score_split(visual, dec, self.dev, self.langs, beam_size=self.cfg.beam_size,
                                 max_len=self.cfg.max_len, batch_size=self.cfg.batch_size, device=self.device,
                                 case=self.case, machine_references=True)  # best.json labels each language's references
        finally:
            visual.train()
        scores = {lang: s for lang, s in scores.items() if "bleu" in s}
        return float(np.mean([v["bleu"] for v in scores.values()])), scores


def language_notes(dataset, langs: list[str]) -> dict[str, str]:
    """Language -> how it is scored on this split, for a language that is not simply scored against its references."""
    src = dataset.langs[0]
    out = {}
    for lang in langs:
        if lang == src or true_references(dataset, lang):
            continue
        machine, label = reference_rows(dataset, lang, True) if lang in dataset.langs else ([], None)
        also = f", and against its machine translations (labelled {label})" if machine else ""
        fix = "" if machine else f"; embed-targets --langs {lang} adds its machine-translated references"
        out[lang] = (f"{lang} has no true references in split {dataset.split}: zero-shot, scored cross-lingually "
                     f"against the {src} references (SONAR similarity, BLASER-QE){also}{fix}")
    return out


def build_scorers(inputs, device, emb_dim: int, *, bleurt: str | Path | None, blaser: list[str],
                  log: Callable[[str], None]) -> Scorers:
    """The metrics whose models are here: SONAR similarity (the run's SONAR encoder), BLASER
    (when its fairseq2 card's weights are on disk), BLEURT (when `bleurt` names a snapshot).
    Each one absent is said through `log` with the reason; none is ever random-initialised."""
    from cache.sonar_models import TINY

    spec = inputs.encoder_spec or (TINY if inputs.decoder_spec == TINY else None)
    scorers = Scorers()
    if spec is None:
        log("SONAR similarity and BLASER skipped: the run does not record its SONAR encoder (trained before it was recorded)")
    else:
        scorers.embedder = HypothesisEmbedder(spec, inputs.tiny_dir, device)
    if blaser and spec == TINY:
        log("BLASER skipped: the run's SONAR is the tiny one, whose embeddings BLASER 2.0 was not trained on")
    elif blaser and spec is not None:
        from train.blaser import BlaserScorer, blaser_available

        for name in blaser:
            why = blaser_available(name)
            if why is not None:
                log(f"BLASER skipped ({name}): {why}")
                continue
            model = BlaserScorer(name, device=device)
            if model.input_dim != emb_dim:
                log(f"BLASER skipped ({name}): it takes {model.input_dim}-d SONAR embeddings, the run's are {emb_dim}-d")
                continue
            if model.needs_reference:
                scorers.blaser_ref = model
            else:
                scorers.blaser_qe = model
    if bleurt is None:
        log("BLEURT skipped: no checkpoint given (slt-pipe evaluate --bleurt lucadiliello/BLEURT-20 or a snapshot folder)")
    else:
        from train.bleurt import BleurtScorer

        scorers.bleurt = BleurtScorer(bleurt, device=device)
    return scorers


def _stderr(text: str) -> None:
    print(text, file=sys.stderr)


def evaluate(run_dir: str | Path, inputs, split: str = "test", langs: list[str] | None = None, *,
             checkpoint: str = "best", beam_size: int | None = None, bleurt: str | Path | None = None,
             blaser: list[str] = BLASER_MODELS, batch_size: int | None = None, device: str | None = None,
             case: str | None = None, machine_references: bool = False,
             log: Callable[[str], None] = _stderr) -> dict[str, dict]:
    """Score the run's `checkpoint` ('best' or 'last') on `split` for each language (default: every target language).

    Reads only the run dir and the caches: never `train.init_visual_block` (the trained weights
    hold the whole block). `case`: the headline BLEU casing, lc or mixed (default: the run's
    train.bleu_case; the caller resolves auto, see `headline_case`).
    A language without true references is scored zero-shot (`score_split`), said through `log`.
    Scores go to the return value and scores_{split}.json; `log` gets progress lines only.
    """
    from train import data as tdata
    from train.config import TrainConfig
    from train.data import CacheDataset
    from train.model import build_models, load_trainable
    from train.run_files import run_weights

    run_dir = Path(run_dir)
    raw = json.loads((run_dir / "config.json").read_text())
    names = {f for f in TrainConfig.__dataclass_fields__}
    cfg = TrainConfig(**{k: v for k, v in raw.items() if k in names})
    if "visual_block" not in raw:  # runs from before the variants existed used slt-pipe's masked block
        cfg.visual_block = "slt-pipe-masked"
    lc = headline_case(case or cfg.bleu_case)  # a bad --case fails before any model loads
    dev = resolve_device(device or cfg.device)
    weights = run_weights(run_dir, checkpoint)
    if not weights.exists():
        from cache.errors import WeightsError

        raise WeightsError("no trained weights in the run dir", path=weights, fix="train first (slt-pipe train)")
    if split not in inputs.features:
        from cache.errors import SltPipeError

        raise SltPipeError(f"the run has no features for split {split!r} (it has {', '.join(sorted(inputs.features))})",
                           fix=f"evaluate one of {', '.join(sorted(inputs.features))}")
    feats = tdata.open_features(Path(inputs.features[split]))
    targets = {lang: tdata.open_targets(Path(p)) for lang, p in inputs.targets.items()}
    ds = CacheDataset(feats, targets, split, inputs.source_lang)
    scorers = build_scorers(inputs, dev, ds.emb_dim, bleurt=bleurt, blaser=list(blaser), log=log)
    visual, dec = build_models(cfg, inputs, feats.spatial_dim, feats.motion_dim, ds.emb_dim, dev)
    load_trainable(visual, dec, weights)
    langs = list(langs or ds.langs)
    for how in language_notes(ds, langs).values():
        log(f"note: {how}")
    results = score_split(visual, dec, ds, langs, beam_size=beam_size or cfg.beam_size, max_len=cfg.max_len,
                          batch_size=batch_size or cfg.batch_size, device=dev, out_dir=run_dir, tag=f"_{split}",
                          case=lc, machine_references=machine_references, scorers=scorers)
    for lang, res in results.items():
        for line in describe(split, lang, res, lc):
            log(line)
    for text in dict.fromkeys(t for res in results.values() for t in res.get("notes", {}).values()):
        log(f"note: {text}")
    write_scores(run_dir, split, results)
    return results


def describe(split: str, lang: str, res: dict, case: str) -> list[str]:
    """One log line per metric of a language's scores, each with its 95% interval, the sentences it rests on
    and what produced it; then the small-sample warning, if any."""
    out, p = [], res.get("producers", {})
    for m in METRICS:
        if m.key not in res:
            continue
        if m.describe is not None:
            out += m.describe(split, lang, res, case)
        elif m.log is not None:
            name = m.log.format(xl_against=res.get("xl_against"))
            out.append(f"{split} {lang}: {name} {res[m.key]:.4f}{confidence.interval_text(res, m.key, '.4f')} "
                       f"on {rests_on(m, res)} sentences  [{p.get(m.producer, '')}]")
    if "warning" in res:
        out.append(f"warning: {split} {lang}: {res['warning']}")
    return out


def score_table(title: str, results: dict[str, dict]) -> Any:
    """The scores of a split: a table of one row per (language, metric) with the score, its 95% interval and the
    sentences it rests on, then plain lines: each language's references, the warnings, how the intervals were
    computed, what the less obvious figures measure, and the predictions TSVs.

    A path never goes in a cell, where rich would wrap it: the predictions are lines of their own that never wrap
    (print the result with `soft_wrap=True` so that one wider than the console is not cut at its edge either).
    What produced each score is in the log lines and scores_SPLIT.json `producers`.
    """
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title)
    table.add_column("language", no_wrap=True)
    table.add_column("metric", no_wrap=True)
    table.add_column("score", justify="right", no_wrap=True)
    table.add_column("95% CI", justify="right", no_wrap=True)
    table.add_column("n", justify="right", no_wrap=True)
    lines: list[Text] = []
    for lang, r in results.items():
        shown = [m for m in METRICS if m.key in r]
        for k, m in enumerate(shown):
            ci = r.get(confidence.ci_key(m.key))
            table.add_row(lang if k == 0 else "", m.label, format(r[m.key], m.fmt),
                          "-" if ci is None else confidence.format_interval(ci, m.fmt), str(rests_on(m, r)),
                          end_section=k == len(shown) - 1)
        if not shown:
            table.add_row(lang, "-", "-", "-", "0", end_section=True)
        lines.append(Text(f"{lang}: {_references(r)}; BLEU case {r.get('case', '-')}"))
    warned: dict[str, list[str]] = {}
    for lang, r in results.items():
        if "warning" in r:
            warned.setdefault(r["warning"], []).append(lang)
    for text, langs in warned.items():
        lines.append(Text(f"warning: {', '.join(langs)}: {text}", style="yellow"))
    if any("ci" in r for r in results.values()):
        lines.append(Text(f"95% CI ({confidence.RESAMPLES} resamples, seed {confidence.SEED}): "
                          + confidence.method_text(_interval_kinds(list(results.values())))))
    for text in dict.fromkeys(t for r in results.values() for t in r.get("notes", {}).values()):
        lines.append(Text(text))
    tsvs = [r["tsv"] for r in results.values() if r.get("tsv")]
    if tsvs:  # each path alone on its line: whole to copy (its name says the split and language)
        lines.append(Text("predictions (id, ref, hyp, per-sentence scores):"))
        lines += [Text(tsv, no_wrap=True, overflow="ignore") for tsv in tsvs]
    return Group(table, *lines)


def _references(r: dict) -> str:
    """What a language was scored against, as the score table says it."""
    refs = r.get("references", "reference")
    if r.get("kind") == "zero-shot":
        return f"zero-shot: cross-lingual vs {r.get('xl_against')}" + ("" if refs == "none" else f"; {refs}")
    return f"against {refs}"

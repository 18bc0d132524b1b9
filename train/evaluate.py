"""Evaluate a trained run: decode z (beam search) into each language and score it.

`evaluate(run_dir, inputs, split, langs)` -> {lang: scores}, also in scores_{split}.json, with
a predictions TSV per language (id, ref, hyp as decoded, then one column per per-sample score).
Every metric names what produced it (`producers`):

* BLEU and chrF (sacrebleu; `tokenize="zh"` for zho_Hans/zho_Hant/yue, else 13a). The headline
  pair uses `train.bleu_case`; "auto" is the casing of the dataset's published tables
  (`BLEU_CASE`: SpaMo lower-cases hypotheses and references, so PHOENIX-2014T numbers are
  lower-cased BLEU). The signature says which (`case:lc` / `case:mixed`); both BLEUs are kept.
* `cosine`: the predicted visual embedding z against the reference's SONAR embedding.
* `sonar_similarity`: the hypothesis's SONAR embedding (the encoder the targets were embedded
  with) against the reference's.
* `blaser_ref` / `blaser_qe`: BLASER 2.0 (sonar-space's fairseq2 cards), when their weights are
  on disk. A sign video has no text, so BLASER's `src` is the source-language reference's
  SONAR embedding (for the source language itself, src and ref are the same sentence).
* `bleurt`: BLEURT-20 in PyTorch (train.bleurt), when `--bleurt` names a snapshot.

References: a language is scored against the dataset's own texts (target rows whose `source`
is "reference"). A language the dataset has no text in is zero-shot: decoded for every video
and scored cross-lingually against the source-language reference (`xl_sonar_similarity`,
`xl_blaser_qe`), and, where machine translations of the references are cached, against
those too, labelled `"references": "machine (...)"`. `machine_references` also scores the
machine-translated rows of a language that has true references.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

CHINESE = ("zho_Hans", "zho_Hant", "yue_Hant")
BLEU_CASE = {"phoenix": "lc", "csl-daily": "lc", "how2sign": "lc", "toy": "lc"}
"""Dataset reader -> casing of its published BLEU tables (SpaMo: `.lower()` on hypotheses and references).
Datasets not listed are scored as written ("mixed")."""
BLASER_MODELS = ("blaser_2_0_ref", "blaser_2_0_qe")
"""The BLASER 2.0 cards evaluate tries (sonar-space's names); each is used when its weights are on disk."""


def bleu_case(setting: str, dataset: str) -> str:
    """'lc' or 'mixed' for train.bleu_case `setting` ('auto' looks the dataset up in BLEU_CASE)."""
    if setting == "auto":
        return BLEU_CASE.get(dataset, "mixed")
    if setting not in ("lc", "mixed"):
        from cache.errors import SltPipeError

        raise SltPipeError(f"unknown BLEU casing {setting!r}", fix="use auto, lc or mixed (evaluate --case, train.bleu_case)")
    return setting


def bleu_tokenizer(lang: str) -> str:
    return "zh" if lang in CHINESE else "13a"


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


def score(lang: str, refs: list[str], hyps: list[str], case: str = "mixed") -> dict:
    """BLEU and chrF; the headline pair in `case` ('lc' or 'mixed'), both BLEUs kept.

    Lower-casing is sacrebleu's own `lowercase=True`, so the signature says `case:lc`.
    """
    import sacrebleu

    out: dict = {"case": case, "n": len(refs)}
    for c in ("lc", "mixed"):
        bleu = sacrebleu.metrics.BLEU(tokenize=bleu_tokenizer(lang), lowercase=c == "lc")
        chrf = sacrebleu.metrics.CHRF(lowercase=c == "lc")
        b, ch = bleu.corpus_score(hyps, [refs]), chrf.corpus_score(hyps, [refs])
        name = "lc" if c == "lc" else "cased"
        out[f"bleu_{name}"], out[f"chrf_{name}"] = float(b.score), float(ch.score)
        out[f"signature_{name}"] = f"BLEU {bleu.get_signature()} | chrF {chrf.get_signature()}"
    head = "lc" if case == "lc" else "cased"
    out.update(bleu=out[f"bleu_{head}"], chrf=out[f"chrf_{head}"], signature=out[f"signature_{head}"])
    return out


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


PER_SAMPLE = ("sent_bleu", "z_cos", "sonar_sim", "blaser_ref", "blaser_qe", "bleurt", "xl_sonar_sim", "xl_blaser_qe")
"""Per-sample score columns of a predictions TSV (after id, ref, hyp), in this order; absent ones are left out."""
MEANS = {"z_cos": "cosine", "sonar_sim": "sonar_similarity", "blaser_ref": "blaser_ref", "blaser_qe": "blaser_qe",
         "bleurt": "bleurt", "xl_sonar_sim": "xl_sonar_similarity", "xl_blaser_qe": "xl_blaser_qe"}
"""Per-sample column -> the key of its mean in a language's scores."""


def _cos(a: torch.Tensor, b: torch.Tensor) -> list[float]:
    return torch.nn.functional.cosine_similarity(a.float(), b.float(), dim=-1).tolist()


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
        per: dict[str, list] = {}
        res: dict[str, Any] = {"kind": "zero-shot" if zero_shot else "references", "references": label or "none",
                               "n": len(refd), "producers": {}}
        refs = [dataset.text[lang][rows[i]] for i in refd]
        if refd:
            h = [hyps[i] for i in refd]
            res.update(score(lang, refs, h, case))
            res["producers"].update({"BLEU, chrF": res["signature"], "cosine": "cosine of z and the reference's SONAR embedding"})
            target = torch.as_tensor(dataset.emb[lang][[rows[i] for i in refd]])
            per["sent_bleu"] = _sentence_bleu(lang, refs, h, case)
            per["z_cos"] = _cos(z[[keep[i] for i in refd]], target)
            if hyp_emb is not None:
                per["sonar_sim"] = _cos(hyp_emb[refd], target)
                res["sonar_encoder"] = scorers.embedder.spec
                res["producers"]["SONAR similarity"] = f"cosine of SONAR embeddings ({scorers.embedder.spec})"
                for name, model in (("blaser_ref", scorers.blaser_ref), ("blaser_qe", scorers.blaser_qe)):
                    if model is not None:
                        extra = {"ref": target} if name == "blaser_ref" else {}
                        per[name] = list(model.score(src_emb[refd], hyp_emb[refd], **extra))
                        res["producers"][name] = f"{model.producer}; src = the {src} reference's embedding"
            if scorers.bleurt is not None:
                per["bleurt"] = list(scorers.bleurt.score(refs, h))
                res["producers"]["BLEURT"] = scorers.bleurt.producer
        if zero_shot:
            res["xl_against"] = f"{src} reference"
            res["xl_n"] = len(keep)
            if hyp_emb is not None:
                per["xl_sonar_sim"] = _cos(hyp_emb, src_emb)
                res["producers"]["cross-lingual SONAR similarity"] = (
                    f"cosine of the {lang} hypothesis's and the {src} reference's SONAR embeddings ({scorers.embedder.spec})")
                if scorers.blaser_qe is not None:
                    per["xl_blaser_qe"] = list(scorers.blaser_qe.score(src_emb, hyp_emb))
                    res["producers"]["cross-lingual BLASER-QE"] = f"{scorers.blaser_qe.producer}; src = the {src} reference"
        for col, values in per.items():
            if col in MEANS:
                res[MEANS[col]] = float(np.mean(values))
        if out_dir is not None:
            res["tsv"] = str(_write_predictions(Path(out_dir) / f"predictions{tag}_{lang}.tsv", [ids[k] for k in keep],
                                                [dataset.text[lang][r] if r in wanted else dataset.text[src][r] for r in rows],
                                                hyps, per, refd))
        results[lang] = res
    return results


def _sentence_bleu(lang: str, refs: list[str], hyps: list[str], case: str) -> list[float]:
    import sacrebleu

    bleu = sacrebleu.metrics.BLEU(tokenize=bleu_tokenizer(lang), lowercase=case == "lc", effective_order=True)
    return [float(bleu.sentence_score(h, [r]).score) for h, r in zip(hyps, refs)]


def _write_predictions(path: Path, ids: list[str], refs: list[str], hyps: list[str], per: dict[str, list],
                       refd: list[int]) -> Path:
    """id, ref, hyp, then the per-sample scores (PER_SAMPLE order; blank where a row has none).

    In a zero-shot language, a row without a reference in it shows the source-language
    reference in `ref`: its scores are the cross-lingual ones."""
    cols = [c for c in PER_SAMPLE if c in per]
    at = {i: j for j, i in enumerate(refd)}
    with path.open("w", newline="") as f:
        w = csv.writer(f, delimiter="\t", quoting=csv.QUOTE_MINIMAL)
        w.writerow(["id", "ref", "hyp"] + cols)
        for i, (vid, ref, hyp) in enumerate(zip(ids, refs, hyps)):
            cells = []
            for c in cols:
                j = i if c.startswith("xl_") else at.get(i)
                cells.append("" if j is None else f"{per[c][j]:.6f}")
            w.writerow([vid, ref, hyp] + cells)
    return path


class DevHook:
    """Mean dev BLEU over the eval languages, for model selection while training (`train.eval_every`)."""

    def __init__(self, cfg, dataset_name: str, dev, langs: list[str], device):
        self.cfg, self.dev, self.langs, self.device = cfg, dev, langs, device
        self.case = bleu_case(cfg.bleu_case, dataset_name)

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
    hold the whole block). `case` overrides the run's train.bleu_case (auto, lc or mixed).
    A language without true references is scored zero-shot (`score_split`), said through `log`.
    Scores go to the return value and scores_{split}.json; `log` gets progress lines only.
    """
    from train.config import TrainConfig
    from train import data as tdata
    from train.data import CacheDataset
    from train.model import build_models, load_trainable, resolve_device

    run_dir = Path(run_dir)
    raw = json.loads((run_dir / "config.json").read_text())
    names = {f for f in TrainConfig.__dataclass_fields__}
    cfg = TrainConfig(**{k: v for k, v in raw.items() if k in names})
    if "visual_block" not in raw:  # runs from before the variants existed used slt-pipe's masked block
        cfg.visual_block = "slt-pipe-masked"
    lc = bleu_case(case or cfg.bleu_case, inputs.dataset)  # a bad --case fails before any model loads
    dev = resolve_device(device or cfg.device)
    weights = run_dir / "ckpt" / checkpoint / "weights.safetensors"
    if not weights.exists() and checkpoint == "best":
        weights = run_dir / "ckpt" / "last" / "weights.safetensors"
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
    for lang, how in language_notes(ds, langs).items():
        log(f"note: {how}")
    results = score_split(visual, dec, ds, langs, beam_size=beam_size or cfg.beam_size, max_len=cfg.max_len,
                          batch_size=batch_size or cfg.batch_size, device=dev, out_dir=run_dir, tag=f"_{split}",
                          case=lc, machine_references=machine_references, scorers=scorers)
    for lang, res in results.items():
        for line in describe(split, lang, res, lc):
            log(line)
    (run_dir / f"scores_{split}.json").write_text(json.dumps(results, indent=2))
    return results


def _refs_words(label: str) -> str:
    from train.data import REFERENCE

    return "the dataset's references" if label == REFERENCE else f"{label} references"


def describe(split: str, lang: str, res: dict, case: str) -> list[str]:
    """One log line per metric of a language's scores, each naming what produced it."""
    out, p = [], res.get("producers", {})
    if "bleu" in res:
        other = f"cased {res['bleu_cased']:.2f}" if case == "lc" else f"lower-cased {res['bleu_lc']:.2f}"
        out.append(f"{split} {lang}: BLEU {res['bleu']:.2f} ({'lower-cased' if case == 'lc' else 'cased'}; {other}) "
                   f"chrF {res['chrf']:.2f} against {_refs_words(res['references'])}  [{res['signature']}]")
    for key, name, by in (("sonar_similarity", "SONAR similarity", "SONAR similarity"), ("blaser_ref", "BLASER 2.0 ref", "blaser_ref"),
                          ("blaser_qe", "BLASER 2.0 QE", "blaser_qe"), ("bleurt", "BLEURT", "BLEURT"),
                          ("xl_sonar_similarity", f"cross-lingual SONAR similarity vs {res.get('xl_against')}",
                           "cross-lingual SONAR similarity"),
                          ("xl_blaser_qe", f"cross-lingual BLASER-QE vs {res.get('xl_against')}", "cross-lingual BLASER-QE")):
        if key in res:
            out.append(f"{split} {lang}: {name} {res[key]:.4f}  [{p.get(by, '')}]")
    return out

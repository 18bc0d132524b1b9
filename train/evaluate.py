"""Evaluate a trained run: decode z (beam search) into each language and score it.

`evaluate(run_dir, inputs, split, langs)` -> {lang: {"bleu", "chrf", "signature", "case", "bleu_lc",
"bleu_cased", "signature_lc", "signature_cased", "n", "cosine", "tsv"[, "bleurt"]}}

sacrebleu BLEU + chrF (`tokenize="zh"` for zho_Hans/zho_Hant/yue, else 13a). Casing: the
headline "bleu"/"chrf" use `train.bleu_case`; "auto" is the casing of the dataset's published
tables (`BLEU_CASE`: SpaMo lower-cases hypotheses and references for every dataset it reports,
so PHOENIX-2014T numbers are lower-cased BLEU). The casing is part of the printed signature
(`case:lc` / `case:mixed`), and both BLEUs are kept. BLEURT only when a checkpoint path is
given; predictions TSV (id, ref, hyp; as decoded, not lower-cased) per language in the run dir.

References: a language is scored against the dataset's own texts only (target rows whose
`source` is "reference"); a language the dataset has no text in is skipped, unless
`machine_references` is set, and then its score says so (`"references": "machine (...)"`).
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import torch

CHINESE = ("zho_Hans", "zho_Hant", "yue_Hant")
BLEU_CASE = {"phoenix": "lc", "csl-daily": "lc", "how2sign": "lc", "toy": "lc"}
"""Dataset reader -> casing of its published BLEU tables (SpaMo: `.lower()` on hypotheses and references).
Datasets not listed are scored as written ("mixed")."""


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


def skipped_languages(dataset, langs: list[str], machine_references: bool = False) -> dict[str, str]:
    """Language -> why it is not scored on this split (no true references, or no targets at all)."""
    out = {}
    for lang in langs:
        if lang not in dataset.langs:
            out[lang] = f"no {lang} targets for split {dataset.split}"
        elif not reference_rows(dataset, lang, machine_references)[0]:
            out[lang] = (f"no true {lang} references in split {dataset.split} (its targets are machine translations)"
                         if not machine_references else f"no {lang} targets for the videos of split {dataset.split}")
    return out


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


def score_split(visual, dec, dataset, langs: list[str], *, beam_size: int, max_len: int, batch_size: int, device,
                out_dir: Path | None = None, tag: str = "", case: str = "mixed",
                machine_references: bool = False, embedder: HypothesisEmbedder | None = None) -> dict[str, dict]:
    """Decode and score each language that has references (`reference_rows`); writes predictions TSVs to out_dir.

    With `embedder`: SONAR similarity per sample (a TSV column) and its mean (`sonar_similarity`)."""
    ids, z = encode_split(visual, dataset, batch_size=batch_size, device=device)
    pos = {v: k for k, v in enumerate(dataset.ids)}
    results = {}
    for lang in langs:
        if lang in skipped_languages(dataset, [lang], machine_references):
            continue
        scored, label = reference_rows(dataset, lang, machine_references)
        wanted = set(scored)
        rows = [(vid, dataset.text[lang][pos[vid]]) for vid in ids]
        keep = [k for k, vid in enumerate(ids) if pos[vid] in wanted]
        hyps = dec.generate(z[keep], lang, beam_size=beam_size, max_len=max_len, batch_size=batch_size)
        refs = [rows[k][1] for k in keep]
        res = score(lang, refs, hyps, case)
        res["references"] = label
        target = torch.as_tensor(dataset.emb[lang][[pos[ids[k]] for k in keep]])
        res["cosine"] = float(torch.nn.functional.cosine_similarity(z[keep], target, dim=-1).mean())
        sims = None
        if embedder is not None and hyps:
            sims = torch.nn.functional.cosine_similarity(embedder(hyps, lang), target.float(), dim=-1).tolist()
            res["sonar_similarity"] = float(np.mean(sims))
            res["sonar_encoder"] = embedder.spec
        if out_dir is not None:
            path = Path(out_dir) / f"predictions{tag}_{lang}.tsv"
            with path.open("w", newline="") as f:
                w = csv.writer(f, delimiter="\t", quoting=csv.QUOTE_MINIMAL)
                w.writerow(["id", "ref", "hyp"] + (["sonar_sim"] if sims is not None else []))
                for i, (k, h) in enumerate(zip(keep, hyps)):
                    w.writerow([rows[k][0], rows[k][1], h] + ([f"{sims[i]:.6f}"] if sims is not None else []))
            res["tsv"] = str(path)
        results[lang] = res
    return results


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
        return float(np.mean([v["bleu"] for v in scores.values()])), scores


def bleurt_scores(checkpoint: str | Path, refs: list[str], hyps: list[str]) -> float:
    """Mean BLEURT with the `bleurt` package (google-research/bleurt) and a local checkpoint."""
    from cache.errors import SltPipeError, WeightsError

    if not Path(checkpoint).exists():
        raise WeightsError("BLEURT checkpoint not found", path=checkpoint, fix="download e.g. BLEURT-20 and pass its folder")
    try:
        from bleurt import score as bleurt_score  # type: ignore
    except ImportError as e:
        raise SltPipeError("BLEURT needs the `bleurt` package",
                           fix="pip install git+https://github.com/google-research/bleurt.git") from e
    scorer = bleurt_score.BleurtScorer(str(checkpoint))
    return float(np.mean(scorer.score(references=refs, candidates=hyps)))


def _stderr(text: str) -> None:
    print(text, file=sys.stderr)


def evaluate(run_dir: str | Path, inputs, split: str = "test", langs: list[str] | None = None, *,
             checkpoint: str = "best", beam_size: int | None = None, bleurt_checkpoint: str | Path | None = None,
             batch_size: int | None = None, device: str | None = None, case: str | None = None,
             machine_references: bool = False, log: Callable[[str], None] = _stderr) -> dict[str, dict]:
    """Score the run's `checkpoint` ('best' or 'last') on `split` for each language (default: every target language).

    Reads only the run dir and the caches: never `train.init_visual_block` (the trained weights
    hold the whole block). `case` overrides the run's train.bleu_case (auto, lc or mixed).
    Languages without true references are skipped (said through `log`) unless `machine_references`.
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
    visual, dec = build_models(cfg, inputs, feats.spatial_dim, feats.motion_dim, ds.emb_dim, dev)
    load_trainable(visual, dec, weights)
    langs = list(langs or ds.langs)
    for lang, why in skipped_languages(ds, langs, machine_references).items():
        hint = "" if machine_references or lang not in ds.langs else "; --machine-references scores it against them, labelled"
        log(f"note: {lang} skipped: {why}{hint}")
    spec = inputs.encoder_spec or ("tiny" if inputs.decoder_spec == "tiny" else None)
    embedder = HypothesisEmbedder(spec, inputs.tiny_dir, dev) if spec is not None else None
    if embedder is None:
        log("SONAR similarity skipped: the run does not record its SONAR encoder (trained before it was recorded)")
    results = score_split(visual, dec, ds, langs, beam_size=beam_size or cfg.beam_size, max_len=cfg.max_len,
                          batch_size=batch_size or cfg.batch_size, device=dev, out_dir=run_dir, tag=f"_{split}",
                          case=lc, machine_references=machine_references, embedder=embedder)
    for lang, res in results.items():
        other = f"cased {res['bleu_cased']:.2f}" if lc == "lc" else f"lower-cased {res['bleu_lc']:.2f}"
        log(f"{split} {lang}: BLEU {res['bleu']:.2f} ({'lower-cased' if lc == 'lc' else 'cased'}; {other}) "
            f"chrF {res['chrf']:.2f} against {res['references']} references  [{res['signature']}]")
        if "sonar_similarity" in res:
            log(f"{split} {lang}: SONAR similarity {res['sonar_similarity']:.4f} (cosine of hypothesis and reference "
                f"embeddings, encoder {res['sonar_encoder']})")
        if bleurt_checkpoint is not None:
            rows = list(csv.reader(open(res["tsv"]), delimiter="\t"))[1:]
            res["bleurt"] = bleurt_scores(bleurt_checkpoint, [r[1] for r in rows], [r[2] for r in rows])
            log(f"{split} {lang}: BLEURT {res['bleurt']:.4f}")
    if bleurt_checkpoint is None:
        log("BLEURT skipped: no checkpoint given (slt-pipe evaluate --bleurt DIR, e.g. BLEURT-20)")
    (run_dir / f"scores_{split}.json").write_text(json.dumps(results, indent=2))
    return results

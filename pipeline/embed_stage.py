"""Target stage: references -> translations into every language -> SONAR embeddings -> HDF5.

Cache entries (kind/key under the cache root), each published atomically (cache.store):

    tiny-sonar/{key}/    tiny profile only: the SONAR of the toy world (encoder.pt, decoder.pt,
                         config.json, tokenizer.model; extract.text.tiny_sonar), trained on the
                         dataset's train-split parallel references. Key: those texts + settings.
    tiny-nllb/{key}/     nllb_model 'tiny' only: a tiny M2M100 + NLLB tokenizer in HF format.
    translations/{key}/  translations.json: one split translated into one language. Key: the
                         split's text fingerprint, source and target language, translator identity.
    targets/{key}/       targets.h5 (layout in cache.targets): one language, every split. Key: the
                         splits' text fingerprints, the language, the translator identity (other
                         languages than the source only) and the encoder identity.

So adding a language builds one new targets entry (and its translations), changing nothing
loads no model, and no training setting is in any key.

Two refusals keep bad targets out of the cache: a language the translator cannot write at
all (a tiny translator outside its corpus' languages, an NLLB tokenizer without the code) is
refused before any model is trained or loaded, and machine translations that fail the quality
gates (extract.text.gates: empty, wrong script, repetitive, length outliers; thresholds
`embed.gate_*`) are refused before they are embedded. Either is a failure of the run, the other
languages still complete, and `embed.allow_poor_translations` publishes the second kind anyway.
Every targets manifest records the gate's figures and thresholds (`quality_gate`). Work in progress survives a crash
in the entries' `.partial` directories at fixed batch boundaries (chunks of
`RESUME_CHUNK_BATCHES` batches, translated or embedded), so a killed run resumes where it
stopped and ends with the same bytes as an uninterrupted one. The chunks run in this process
or on Ray workers (`embed.workers`, `embed.ray_address`; extract.text.jobs, extract.text.ray_backend),
with the same bytes either way; this module only orchestrates.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from cache.errors import CacheError, SltPipeError, WeightsError
from cache.keys import make_key
from cache.store import MANIFEST, Cache, Entry, PendingEntry
from cache.targets import TARGETS_FILE, SplitTargets, write_targets
from extract.text.embed import REFERENCE, source_label
from extract.text.jobs import InProcess, LazyTextModels, TextModelSpec, chunks
from extract.text.gates import GateThresholds, score_translations
from pipeline.commands import suggest
from pipeline.config import Config
from pipeline.dataset import open_dataset

TARGETS_FORMAT = 3  # 2: the dataset's own references win over machine translations; 3: fletcher32 embeddings, sha256 on strings
TRANSLATIONS_FORMAT = 1
TINY_SONAR_FORMAT = 1
TINY_NLLB_FORMAT = 1
TRANSLATIONS_FILE = "translations.json"
RESUME_CHUNK_BATCHES = 8
"""Batches per resumable chunk (translation or embedding): a crash loses at most this much work per worker."""
MAX_LEN = 128
"""Longest generated translation in tokens (part of the translator identity)."""
TINY_SETTINGS = {"dim": 128, "layers": 2, "batch_size": 32, "lr": 2e-3}
"""Tiny-SONAR architecture and optimiser (extract.text.tiny_sonar defaults), part of its key."""


@dataclass
class LangSummary:
    """One language of a run, as the summary table shows it."""

    lang: str
    source: str
    """'reference' (the dataset's own text) or the translator that made the texts."""
    sentences: int
    """Rows in targets.h5 (samples over all splits)."""
    translated: int
    """Distinct sentences sent to the translator in this run (0 when cached)."""
    embedded: int
    """Distinct sentences sent to the SONAR encoder in this run (0 when cached)."""
    seconds: float
    status: str
    """cached, built, refused (cannot be made well: nothing published) or failed."""
    key: str = ""
    gate: str = ""
    """The translation quality gate's figures, as the summary table shows them."""


@dataclass
class EmbedReport:
    entries: dict[str, Entry] = field(default_factory=dict)
    """Language -> its complete targets entry."""
    summary: list[LangSummary] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)
    """(language, error) of every language that was refused or could not be built; the others are."""
    calls: dict[str, int] = field(default_factory=dict)
    """Model calls (batches) this run made: {'translate': n, 'embed': n}."""


# ------------------------------------------------------------------ identities and keys


@dataclass
class TextModels:
    """What identifies the text models of a config, resolved without loading any model."""

    encoder: dict[str, Any]
    translator: dict[str, Any]
    tiny_sonar: Path | None
    """Directory of the tiny-SONAR entry when the encoder is 'tiny'."""
    tiny_nllb_key: str | None
    """Key of the tiny-NLLB entry when nllb_model is 'tiny' and NLLB translates."""


def target_langs(cfg: Config) -> list[str]:
    from extract.text.languages import resolve_langs

    return resolve_langs(cfg.embed.langs)


def text_models(cfg: Config, dataset: Any, tiny_sonar: Path | None) -> TextModels:
    from cache.sonar_models import sonar_identity

    e = cfg.embed
    encoder = sonar_identity(e.sonar_encoder, tiny_sonar)
    tiny_nllb_key = None
    if e.translator == "sonar":
        translator = {"kind": "sonar", "encoder": encoder, "decoder": sonar_identity(e.sonar_decoder, tiny_sonar),
                      "beam_size": e.beam_size, "max_seq_len": MAX_LEN}
    else:
        translator = {"kind": "nllb", "model": e.nllb_model, "num_beams": e.beam_size, "max_new_tokens": MAX_LEN}
        if e.nllb_model != "tiny":
            from extract.text.nllb import nllb_identity

            translator["model"] = nllb_identity(e.nllb_model)  # the snapshot's file hashes, not just its path
        else:
            tiny_nllb_key = tiny_nllb_key_inputs(cfg, dataset)[0]
            translator.update(model="tiny-nllb", entry=tiny_nllb_key)
    return TextModels(encoder, translator, tiny_sonar, tiny_nllb_key)


def reference_texts(cfg: Config, dataset: Any, split: str, lang: str) -> list[str | None]:
    """Per sample of the split, the dataset's own text in `lang` (the source text, or a shipped
    reference such as the toy's eng/fra), None where the dataset has none (or, with
    `embed.references = false`, for every language but the source)."""
    if lang == dataset.source_lang:
        return [s.text for s in dataset.samples[split]]
    by_id = dataset.references.get(split, {}).get(lang, {}) if cfg.embed.references else {}
    return [by_id.get(s.id) for s in dataset.samples[split]]


def needs_translation(cfg: Config, dataset: Any, lang: str) -> bool:
    """True references first: only samples without the dataset's own text in `lang` are translated."""
    return any(t is None for split in cfg.dataset.splits for t in reference_texts(cfg, dataset, split, lang))


def targets_key(cfg: Config, dataset: Any, lang: str, models: TextModels) -> tuple[str, dict[str, Any]]:
    src = dataset.source_lang
    inputs = {
        "texts": {split: dataset.text_fingerprint(split) for split in cfg.dataset.splits},
        "source_lang": src,
        "lang": lang,
        "translator": models.translator if needs_translation(cfg, dataset, lang) else None,
        "encoder": models.encoder,
    }
    return make_key("targets", inputs, format_version=TARGETS_FORMAT), inputs


def translations_key(dataset: Any, split: str, lang: str, models: TextModels) -> tuple[str, dict[str, Any]]:
    inputs = {"texts": dataset.text_fingerprint(split), "src": dataset.source_lang, "tgt": lang,
              "translator": models.translator}
    return make_key("translations", inputs, format_version=TRANSLATIONS_FORMAT), inputs


def tiny_corpus(cfg: Config, dataset: Any) -> dict[str, list[str]]:
    """The tiny models' training text: distinct train-split references, parallel over every
    language the dataset has for all of them (toy: deu, eng, fra). Never dev or test text."""
    from extract.text.languages import FLORES200
    from extract.text.tiny_sonar import parallel_references

    if "train" not in dataset.samples:
        dataset = open_dataset(dataclasses.replace(cfg, dataset=dataclasses.replace(cfg.dataset, splits=["train"])))
    src = dataset.source_lang
    ids = {s.id for s in dataset.samples.get("train", [])}
    refs = dataset.references.get("train", {})
    others = sorted(lang for lang, by_id in refs.items()
                    if lang != src and lang in FLORES200 and ids <= set(by_id))
    par = parallel_references(dataset, "train", [src, *others])
    seen: set[str] = set()
    keep = [i for i, t in enumerate(par[src]) if not (t in seen or seen.add(t))]  # type: ignore[func-returns-value]
    out = {lang: [texts[i] for i in keep] for lang, texts in par.items()}
    if not keep:
        raise SltPipeError("the tiny SONAR needs train-split sentences, and the dataset has none",
                           path=dataset.root, fix="use a dataset with a train split, or the paper profile")
    return out


def tiny_sonar_key_inputs(cfg: Config, dataset: Any) -> tuple[str, dict[str, Any]]:
    from extract.text.embed import texts_sha256

    corpus = tiny_corpus(cfg, dataset)
    inputs = {"corpus": {lang: texts_sha256(t) for lang, t in corpus.items()}, "items": len(next(iter(corpus.values()))),
              "seed": cfg.embed.tiny_seed, "steps": cfg.embed.tiny_sonar_steps, **TINY_SETTINGS}
    return make_key("tiny-sonar", inputs, format_version=TINY_SONAR_FORMAT), inputs


def tiny_nllb_key_inputs(cfg: Config, dataset: Any) -> tuple[str, dict[str, Any]]:
    from extract.text.embed import texts_sha256

    corpus = tiny_corpus(cfg, dataset)
    inputs = {"corpus": {lang: texts_sha256(t) for lang, t in corpus.items()},
              "seed": cfg.embed.tiny_seed, "steps": cfg.embed.tiny_nllb_steps}
    return make_key("tiny-nllb", inputs, format_version=TINY_NLLB_FORMAT), inputs


def _uses_tiny_sonar(cfg: Config) -> bool:
    enc, dec = cfg.embed.sonar_encoder == "tiny", cfg.embed.sonar_decoder == "tiny"
    if enc != dec:
        raise SltPipeError(
            f"sonar_encoder={cfg.embed.sonar_encoder!r} and sonar_decoder={cfg.embed.sonar_decoder!r}: "
            "the tiny SONAR's encoder and decoder only work as a pair",
            fix="set both embed.sonar_encoder and embed.sonar_decoder to 'tiny', or both to fairseq2 asset names")
    return enc


def _hint(cfg: Config) -> str:
    return f"run `{_command(cfg, target_langs(cfg))}`"


def _command(cfg: Config, langs: list[str], *extra: str) -> str:
    """The embed-targets command line of this config with other languages, to paste."""
    return " ".join([suggest(cfg, "embed-targets", langs=langs), *extra])


# ------------------------------------------------------------------ refusals and quality gates


class PoorTranslationsError(SltPipeError):
    """A language whose machine translations fail the quality gates: nothing is published for it."""

    def __init__(self, problem: str, *, figures: dict[str, Any], path: str | Path | None = None,
                 fix: str | None = None):
        super().__init__(problem, path=path, fix=fix)
        self.figures = figures


GATE_FIELDS = {"max_bad_fraction": (0.0, 1.0), "min_script_fraction": (0.0, 1.0), "max_repeats": (2, None),
               "min_unique_ratio": (0.0, 1.0), "length_factor": (1.0, None)}
"""GateThresholds field -> (lowest, highest) allowed value of its `embed.gate_*` config field."""


def gate_thresholds(cfg: Config) -> GateThresholds:
    """The configured gate thresholds, or SltPipeError naming the field out of range."""
    values = {name: getattr(cfg.embed, f"gate_{name}") for name in GATE_FIELDS}
    for name, (lo, hi) in GATE_FIELDS.items():
        v = values[name]
        if v < lo or (hi is not None and v > hi):
            allowed = f"between {lo} and {hi}" if hi is not None else f"at least {lo}"
            raise SltPipeError(f"embed.gate_{name} = {v} is out of range ({allowed})",
                               fix=f"--set embed.gate_{name}={getattr(GateThresholds(), name)} (the default)")
    return GateThresholds(**values)


def unwritable_langs(cfg: Config, dataset: Any, langs: list[str]) -> dict[str, SltPipeError]:
    """Languages to translate that the configured tiny translator cannot write at all, each with its error.

    The tiny SONAR and the tiny NLLB learn only the languages of the dataset's train-split
    references; asked for another, they write one of those (the toy's 'Spanish' is English).
    Decided from the references alone: no model is trained or loaded."""
    e = cfg.embed
    need = [lang for lang in langs if needs_translation(cfg, dataset, lang)]
    tiny = {"sonar": _uses_tiny_sonar(cfg), "nllb": e.nllb_model == "tiny"}[e.translator]
    if not need or not tiny:
        return {}
    known = list(tiny_corpus(cfg, dataset))
    bad = [lang for lang in need if lang not in known]
    keep = [lang for lang in langs if lang not in bad]
    name = "tiny SONAR" if e.translator == "sonar" else "tiny NLLB"
    drop = (f"drop it: `{_command(cfg, keep)}`" if keep
            else f"ask for languages it knows: `{_command(cfg, known)}`")
    return {lang: SltPipeError(
        f"{lang}: the {name} translator cannot write {lang}: it only learns the languages of "
        f"{dataset.name}'s train-split references ({', '.join(known)}), and asked for another language it "
        "writes one of those", path=dataset.root,
        fix=f"{drop}; or translate with a model that knows {lang} (`--profile paper`: SONAR and NLLB-200 "
        f"know the 202 FLORES-200 languages); or give every train sentence a {lang} reference") for lang in bad}


def _nllb_refusals(cfg: Config, src: str, langs: list[str]) -> dict[str, SltPipeError]:
    """Languages the NLLB snapshot's tokenizer has no token for, read from the tokenizer alone
    (WeightsError when it lacks the source language: then it can translate nothing)."""
    from extract.text.nllb import nllb_missing_langs

    model = cfg.embed.nllb_model
    missing = nllb_missing_langs(model, [src, *langs])
    if src in missing:
        raise WeightsError(f"NLLB model {model} has no language token for the source language {src}",
                           path=model if Path(model).exists() else None,
                           fix="use an NLLB-200 snapshot (--set embed.nllb_model=facebook/nllb-200-distilled-600M)")
    keep = [lang for lang in target_langs(cfg) if lang not in missing]
    return {lang: SltPipeError(
        f"{lang}: NLLB model {model} has no language token for {lang}, so it cannot translate into it",
        path=model if Path(model).exists() else None,
        fix=(f"drop it: `{_command(cfg, keep)}`; or " if keep else "")
        + "use an NLLB-200 snapshot whose tokenizer has it (--set embed.nllb_model=facebook/nllb-200-distilled-600M)")
        for lang in missing}


def _gate(cfg: Config, cache: Cache, dataset: Any, lang: str, pairs: list[tuple[str, str, str]],
          models: "_Models", thresholds: GateThresholds) -> dict[str, Any]:
    """Score the machine-translated (source, output, split) rows of a language; the figures for its
    manifest, or PoorTranslationsError when they fail and `embed.allow_poor_translations` is off."""
    if not pairs:
        return {"applied": False, "why": "every sentence is the dataset's own reference"}
    first: dict[str, tuple[str, str]] = {}
    for src_text, out, split in pairs:  # each distinct sentence once: the translator's work, not row counts
        first.setdefault(src_text, (out, split))
    scored = list(first.items())
    report = score_translations([(src_text, out) for src_text, (out, _) in scored], lang, dataset.source_lang,
                                thresholds)
    allow = cfg.embed.allow_poor_translations
    figures = {"applied": True, **report.figures(), "allow_poor_translations": allow,
               "published_despite_failing": allow and not report.passed}
    if report.passed or allow:
        return figures
    label = source_label(models.ident.translator)
    c = report.counts
    worst = "\n".join(f"    {_clip(f.source)} -> {_clip(f.output)}  ({f.detail})" for f in report.worst)
    split = scored[report.worst[0].index][1][1]
    where = cache.path("translations", translations_key(dataset, split, lang, models.ident)[0]) / TRANSLATIONS_FILE
    langs = target_langs(cfg)
    keep = [x for x in langs if x != lang]
    drop = f"drop it: `{_command(cfg, keep)}`; or " if keep else ""
    raise PoorTranslationsError(
        f"{lang}: {report.bad} of {report.checked} {label} translations from {dataset.source_lang} "
        f"({report.bad_fraction:.0%}) fail the quality gates (at most {thresholds.max_bad_fraction:.0%} may): "
        f"empty {c['empty']}, wrong script {c['wrong_script']}, repetitive {c['repetitive']}, "
        f"length outliers {c['length']}; nothing is published for {lang}. Worst:\n{worst}",
        figures=figures, path=where,
        fix=f"use a translator that knows {lang} (e.g. `--profile paper`: NLLB-200); or {drop}"
        f"publish them anyway: `{_command(cfg, langs, '--allow-poor-translations')}`")


def _clip(text: str, width: int = 60) -> str:
    return repr(text if len(text) <= width else text[: width - 3] + "...")


# ------------------------------------------------------------------ what the trainer reads


def require_tiny_sonar(cfg: Config, dataset: Any) -> Path:
    key, _ = tiny_sonar_key_inputs(cfg, dataset)
    entry = Cache(cfg.cache.dir).get("tiny-sonar", key)
    if entry is None:
        raise CacheError(f"no tiny SONAR for this corpus in the cache (tiny-sonar/{key})",
                         path=Cache(cfg.cache.dir).path("tiny-sonar", key), fix=_hint(cfg))
    return entry.dir


def require_targets(cfg: Config, dataset: Any) -> dict[str, Path]:
    """Language -> path of its complete targets.h5; CacheError naming the first missing one. Loads no model."""
    tiny = require_tiny_sonar(cfg, dataset) if _uses_tiny_sonar(cfg) else None
    models = text_models(cfg, dataset, tiny)
    cache = Cache(cfg.cache.dir)
    out = {}
    for lang in target_langs(cfg):
        key, _ = targets_key(cfg, dataset, lang, models)
        entry = cache.get("targets", key)
        if entry is None:
            raise CacheError(f"no {lang} targets for {dataset.name} {'/'.join(cfg.dataset.splits)} in the cache "
                             f"(targets/{key})", path=cache.path("targets", key), fix=_hint(cfg))
        out[lang] = entry.dir / TARGETS_FILE
    return out


def sonar_decoder(cfg: Config, dataset: Any) -> tuple[str, Path | None]:
    """(decoder spec for cache.sonar_models, tiny-SONAR entry dir or None). Never trains anything."""
    tiny = require_tiny_sonar(cfg, dataset) if _uses_tiny_sonar(cfg) else None
    return cfg.embed.sonar_decoder, tiny


# ------------------------------------------------------------------ building


def _note(console: Console):
    return lambda message: console.print(message, highlight=False)


def ensure_tiny_sonar(cfg: Config, dataset: Any, console: Console) -> Path:
    """The tiny-SONAR entry of this corpus and settings, trained (about a minute on CPU) if absent."""
    from extract.text.tiny_sonar import train_tiny_sonar

    cache = Cache(cfg.cache.dir)
    key, inputs = tiny_sonar_key_inputs(cfg, dataset)
    got = cache.claim("tiny-sonar", key, inputs, note=_note(console))
    if isinstance(got, Entry):
        return got.dir
    corpus = tiny_corpus(cfg, dataset)
    n, steps = inputs["items"], cfg.embed.tiny_sonar_steps
    console.print(f"[bold]tiny SONAR[/]: training on {n} train sentences x {len(corpus)} languages "
                  f"({', '.join(corpus)}), {steps} steps -> tiny-sonar/{key}")
    # A crash mid-training leaves nothing worth resuming: training restarts, deterministically.
    with got as pending, _steps(console, "train tiny SONAR", steps) as on_step:
        train_tiny_sonar(corpus, pending.dir, seed=cfg.embed.tiny_seed, steps=steps, device=_device(cfg),
                         on_step=on_step, **{k: v for k, v in TINY_SETTINGS.items()})
        entry = pending.publish(dataset=dataset.name, items=n, langs=list(corpus))
    return entry.dir


def ensure_tiny_nllb(cfg: Config, dataset: Any, console: Console) -> Path:
    from extract.text.nllb import make_tiny_nllb

    cache = Cache(cfg.cache.dir)
    key, inputs = tiny_nllb_key_inputs(cfg, dataset)
    got = cache.claim("tiny-nllb", key, inputs, note=_note(console))
    entry = got if isinstance(got, Entry) else None
    if entry is None:
        steps = cfg.embed.tiny_nllb_steps
        console.print(f"[bold]tiny NLLB[/]: training {steps} steps -> tiny-nllb/{key}")
        with got as pending, _steps(console, "train tiny NLLB", steps) as on_step:
            make_tiny_nllb(pending.dir, tiny_corpus(cfg, dataset), seed=cfg.embed.tiny_seed, train_steps=steps,
                           on_step=on_step)
            entry = pending.publish(dataset=dataset.name)
    return entry.dir


class _Models:
    """The run's text models: one spec (extract.text.jobs), built once, and the executor that runs
    jobs with it, in this process or on Ray workers (embed.workers / embed.ray_address). Nothing
    is loaded or started until a job needs it, so a cached run loads no model."""

    def __init__(self, cfg: Config, dataset: Any, ident: TextModels, console: Console, langs: list[str],
                 stack: contextlib.ExitStack, translating: bool):
        self.cfg, self.dataset, self.ident, self.console = cfg, dataset, ident, console
        self.langs = langs
        """The languages this run builds (the refused ones left out)."""
        self.translating = translating
        """Whether any translation is still to be computed (a tiny NLLB is then made or found)."""
        self._stack = stack
        self._executor: Any = None
        self.load_failed = False

    def spec(self) -> TextModelSpec:
        e = self.cfg.embed
        nllb = None
        if e.translator == "nllb" and self.translating:
            nllb = str(ensure_tiny_nllb(self.cfg, self.dataset, self.console)) if e.nllb_model == "tiny" else e.nllb_model
        return TextModelSpec(
            sonar_encoder=e.sonar_encoder, sonar_decoder=e.sonar_decoder, tiny_sonar=self.ident.tiny_sonar,
            translator=e.translator, nllb_path=nllb, langs=(self.dataset.source_lang, *self.langs),
            beam_size=e.beam_size, batch_size=e.batch_size, max_len=MAX_LEN, device=_device(self.cfg),
            threads=max(1, e.threads),
            encoder_identity=self.ident.encoder, translator_identity=self.ident.translator)

    def executor(self, kind: str) -> Any:
        """The job runner, with the model of `kind` ('translate' or 'embed') loaded where it runs in-process."""
        if self._executor is None:
            e = self.cfg.embed
            if e.workers or e.ray_address:
                from extract.text.ray_backend import RayPool

                spec = self.spec()
                shared = {"cache": Path(self.cfg.cache.dir)}
                if spec.nllb_path and Path(spec.nllb_path).exists():
                    shared["NLLB snapshot"] = Path(spec.nllb_path)
                pool = RayPool(spec, e.workers, e.ray_address, shared)
                with _status(self.console, f"starting Ray text workers ({e.ray_address or 'local Ray'})"):
                    self._executor = self._stack.enter_context(pool)
                self.console.print(f"embed-targets: {len(pool.actors)} Ray worker(s) on {pool.spec.device}")
            else:
                self._executor = InProcess(LazyTextModels(self.spec(), self._load))
        try:
            self._executor.prepare(kind)
        except WeightsError:
            self.load_failed = True
            raise
        return self._executor

    def run(self, jobs: list[Any], on_done: Callable[[int, Any], None], on_batch: Callable[[int], None]) -> None:
        try:
            self._executor.run(jobs, on_done, on_batch)
        except WeightsError:  # missing weights (in a Ray worker, say) fail every language alike
            self.load_failed = True
            raise

    def _load(self, what: str, fn: Callable[[], Any]) -> Any:
        try:
            with _status(self.console, f"loading {what}"):
                return fn()
        except SltPipeError:
            self.load_failed = True  # missing weights fail every language alike: stop the run
            raise


def embed_targets(cfg: Config, console: Console) -> EmbedReport:
    """Build (or find) the targets entry of every requested language; a summary table at the end.

    A language the translator cannot write at all is refused before any work; one whose
    translations fail the quality gates is refused before anything of it is published. Either
    is a failure of the report, and the other languages still complete. Ray workers, when the
    config asks for them, live for the whole run and are gone when it returns."""
    with contextlib.ExitStack() as stack:
        return _embed_targets(cfg, console, stack)


def _embed_targets(cfg: Config, console: Console, stack: contextlib.ExitStack) -> EmbedReport:
    from extract.text.embed import CALLS

    calls0 = dict(CALLS)
    cache = Cache(cfg.cache.dir)
    langs = target_langs(cfg)  # an unknown code is refused before the dataset is even read
    thresholds = gate_thresholds(cfg)
    dataset = open_dataset(cfg, console)
    src = dataset.source_lang
    if src not in langs:
        console.print(f"[yellow]note[/]: the source language {src} is not among --langs; its targets are not built")
    n = sum(len(dataset.samples[s]) for s in cfg.dataset.splits)
    report = EmbedReport()
    refused = unwritable_langs(cfg, dataset, langs)
    todo = [lang for lang in langs if lang not in refused]
    if todo:
        tiny = ensure_tiny_sonar(cfg, dataset, console) if _uses_tiny_sonar(cfg) else None
        ident = text_models(cfg, dataset, tiny)
        plan = {lang: targets_key(cfg, dataset, lang, ident) for lang in todo}
        refused.update(_uncached_nllb_refusals(cfg, cache, dataset, plan, console))
        todo = [lang for lang in todo if lang not in refused]
        models = _Models(cfg, dataset, ident, console, todo, stack, _translating(cfg, cache, dataset, plan, ident))
    for lang, error in refused.items():
        console.print(f"[red]refused[/] {escape(error.render())}", highlight=False)
        report.failures.append((lang, error.render()))
        report.summary.append(LangSummary(lang, _machine_label(cfg), n, 0, 0, 0.0, "refused", gate="cannot write it"))
    for lang in todo:
        key, inputs = plan[lang]
        t0 = time.monotonic()
        got = cache.claim("targets", key, inputs, note=_note(console))
        label = _label(cfg, dataset, lang, ident)
        if isinstance(got, Entry):
            entry = got
            console.print(f"[green]cached[/] targets {lang}: targets/{key} ({entry.items} sentences)")
            if (entry.manifest.get("quality_gate") or {}).get("published_despite_failing"):
                console.print(f"[yellow]warning[/] {lang}: these translations failed the quality gates and were "
                              "published with --allow-poor-translations (see quality_gate in its manifest)")
            report.entries[lang] = entry
            report.summary.append(LangSummary(lang, label, n, 0, 0, 0.0, "cached", key,
                                              _gate_cell(entry.manifest.get("quality_gate"))))
            continue
        console.print(f"[bold]embed-targets[/] {dataset.name} {lang} ({label}): {n} sentences -> targets/{key}")
        counts = {"translated": 0, "embedded": 0}
        try:
            entry = _build_language(cfg, cache, dataset, lang, got, models, console, counts, thresholds)
        except SltPipeError as e:
            if models.load_failed:  # missing weights fail every language alike: stop the run
                raise
            status = "refused" if isinstance(e, PoorTranslationsError) else "failed"
            said = e.render() if isinstance(e, PoorTranslationsError) else f"{lang}: {e.render()}"  # names lang
            console.print(f"[red]{status}[/] {escape(said)}", highlight=False)
            report.failures.append((lang, e.render()))
            report.summary.append(LangSummary(lang, label, n, counts["translated"], counts["embedded"],
                                              time.monotonic() - t0, status, key,
                                              _gate_cell(getattr(e, "figures", None))))
            continue
        report.entries[lang] = entry
        report.summary.append(LangSummary(lang, label, n, counts["translated"], counts["embedded"],
                                          time.monotonic() - t0, "built", key,
                                          _gate_cell(entry.manifest.get("quality_gate"))))
    order = {lang: i for i, lang in enumerate(langs)}
    report.summary.sort(key=lambda r: order[r.lang])
    report.failures.sort(key=lambda f: order[f[0]])
    report.calls = {k: CALLS[k] - calls0.get(k, 0) for k in CALLS}
    console.print(summary_table(report, dataset.name))
    if report.failures:
        console.print(f"[red]{len(report.failures)} language(s) refused or failed[/]; the others are cached. "
                      "Fix and re-run.")
    return report


def _translating(cfg: Config, cache: Cache, dataset: Any, plan: dict[str, tuple[str, dict[str, Any]]],
                 ident: TextModels) -> bool:
    """Whether this run has any translation left to compute (unpublished targets and translations)."""
    return any(needs_translation(cfg, dataset, lang) and cache.get("targets", key) is None and
               any(cache.get("translations", translations_key(dataset, split, lang, ident)[0]) is None
                   for split in cfg.dataset.splits)
               for lang, (key, _) in plan.items())


def _uncached_nllb_refusals(cfg: Config, cache: Cache, dataset: Any, plan: dict[str, tuple[str, dict[str, Any]]],
                            console: Console) -> dict[str, SltPipeError]:
    """A real NLLB's missing language tokens, for the languages still to translate; reads its tokenizer only."""
    e = cfg.embed
    if e.translator != "nllb" or e.nllb_model == "tiny":
        return {}
    pending = [lang for lang, (key, _) in plan.items()
               if needs_translation(cfg, dataset, lang) and cache.get("targets", key) is None]
    if not pending:
        return {}
    with _status(console, f"reading the tokenizer of NLLB {e.nllb_model}"):
        return _nllb_refusals(cfg, dataset.source_lang, pending)


def _build_language(cfg: Config, cache: Cache, dataset: Any, lang: str, claimed: PendingEntry,
                    models: _Models, console: Console, counts: dict[str, int], thresholds: GateThresholds) -> Entry:
    """Translate what the dataset lacks, gate the translations, embed, publish the claimed targets entry."""
    src = dataset.source_lang
    machine = source_label(models.ident.translator)
    with claimed as pending, _discard_on_error(cache, pending):
        texts: dict[str, list[str]] = {}
        sources: dict[str, list[str]] = {}
        machine_rows: list[tuple[str, str, str]] = []
        for split in cfg.dataset.splits:
            refs = reference_texts(cfg, dataset, split, lang)
            translated = (_translations(cfg, cache, dataset, split, lang, models, console, counts)
                          if any(t is None for t in refs) else refs)
            texts[split] = [r if r is not None else t for r, t in zip(refs, translated)]
            sources[split] = [REFERENCE if r is not None else machine for r in refs]
            machine_rows += [(s.text, t, split) for s, r, t in zip(dataset.samples[split], refs, translated)
                             if r is None]
        gate = _gate(cfg, cache, dataset, lang, machine_rows, models, thresholds)  # before anything is embedded
        if gate.get("published_despite_failing"):
            console.print(f"[yellow]warning[/] {lang}: {gate['bad']} of {gate['checked']} translations fail the "
                          "quality gates; published anyway (--allow-poor-translations), the manifest says so")
        h5 = pending.dir / TARGETS_FILE
        if not h5.exists():  # written by rename: if it is there, it is whole
            splits: dict[str, SplitTargets] = {}
            for split in cfg.dataset.splits:
                ids = [s.id for s in dataset.samples[split]]
                emb = _embeddings(pending.dir, split, texts[split], lang, cfg, models, console, counts)
                splits[split] = SplitTargets(ids, texts[split], emb, sources[split])
            write_targets(h5, lang, splits, key=pending.key, encoder=models.ident.encoder,
                          translator=pending.inputs["translator"])
        _keep_only(pending.dir, TARGETS_FILE)
        with _h5(h5) as f:
            dim = int(f.attrs["dim"])
        return pending.publish(dataset=dataset.name, lang=lang, source_lang=src, items=sum(
            len(dataset.samples[s]) for s in cfg.dataset.splits), splits={s: len(dataset.samples[s]) for s in
                                                                        cfg.dataset.splits}, dim=dim,
                               quality_gate=gate)


def _translations(cfg: Config, cache: Cache, dataset: Any, split: str, lang: str, models: _Models,
                  console: Console, counts: dict[str, int]) -> list[str]:
    """One split's texts in `lang`, from the translations cache or translated chunk by chunk."""
    from extract.text.embed import load_translations, save_translations

    src = dataset.source_lang
    texts = [s.text for s in dataset.samples[split]]
    key, inputs = translations_key(dataset, split, lang, models.ident)
    got = cache.claim("translations", key, inputs, note=_note(console))
    if isinstance(got, Entry):
        return load_translations(got.dir / TRANSLATIONS_FILE, texts)
    tr_id = models.ident.translator
    uniq, inverse = _unique(texts)
    with got as pending, _discard_on_error(cache, pending):
        jobs = chunks(uniq, "translate", src, lang, max(1, cfg.embed.batch_size) * RESUME_CHUNK_BATCHES)
        paths = [pending.dir / f"chunk-{i:05d}.json" for i in range(len(jobs))]
        results = _run_chunks(models, jobs, paths, lambda p, j: _load_chunk(p, list(j.texts)),
                              lambda p, j, out: save_translations(p, j.texts, out, src, lang, tr_id), console,
                              f"translate {src}->{lang} {split}", lambda n: _count(counts, "translated", n))
        done = [t for r in results for t in r or ()]
        full = [done[j] for j in inverse]
        save_translations(pending.dir / TRANSLATIONS_FILE, texts, full, src, lang, tr_id)
        _keep_only(pending.dir, TRANSLATIONS_FILE)
        pending.publish(dataset=dataset.name, split=split, src_lang=src, lang=lang, items=len(texts))
    return full


def _run_chunks(models: _Models, jobs: list[Any], paths: list[Path], load: Callable[[Path, Any], Any],
                save: Callable[[Path, Any, Any], None], console: Console, desc: str,
                on_computed: Callable[[int], None]) -> list[Any]:
    """Each job's result: from its chunk file where a finished one is there, else computed (in this
    process or on the Ray workers) and saved to its file as it arrives, so a crash resumes it."""
    results = [load(path, job) for path, job in zip(paths, jobs)]
    todo = [i for i, r in enumerate(results) if r is None]
    if not todo:
        return results
    kind = jobs[0].kind
    models.executor(kind)  # loads (and says so) before the live progress bar starts

    def finished(k: int, out: Any) -> None:
        i = todo[k]
        save(paths[i], jobs[i], out)
        results[i] = out
        on_computed(len(jobs[i].texts))

    total = sum(len(j.texts) for j in jobs)
    with _progress(console) as progress:
        task = progress.add_task(desc, total=total, completed=total - sum(len(jobs[i].texts) for i in todo))
        models.run([jobs[i] for i in todo], finished, lambda n: progress.advance(task, n))
    return results


def _count(counts: dict[str, int], what: str, n: int) -> None:
    counts[what] += n


def _load_chunk(path: Path, texts: list[str]) -> list[str] | None:
    from extract.text.embed import load_translations

    if not path.exists():
        return None
    try:
        return load_translations(path, texts)
    except CacheError:
        path.unlink()  # unreadable leftover: redo that chunk
        return None


def _embeddings(directory: Path, split: str, texts: list[str], lang: str, cfg: Config, models: _Models,
                console: Console, counts: dict[str, int]) -> np.ndarray:
    """Embeddings [N, D] of `texts`, each distinct text once, chunk by chunk; every chunk is kept
    in `directory` (`{split}-emb-NNNNN.npy`) until the entry is published, so a crash resumes it."""
    uniq, inverse = _unique(texts)
    jobs = chunks(uniq, "embed", lang, lang, max(1, cfg.embed.batch_size) * RESUME_CHUNK_BATCHES)
    paths = [directory / f"{split}-emb-{i:05d}.npy" for i in range(len(jobs))]
    results = _run_chunks(models, jobs, paths, lambda p, j: _load_array(p, len(j.texts)),
                          lambda p, j, emb: _save_array(p, emb), console, f"embed {lang} {split}",
                          lambda n: _count(counts, "embedded", n))
    if not uniq:
        return np.zeros((0, 0), np.float32)
    emb = np.concatenate([r for r in results if r is not None])
    return emb[np.asarray(inverse, dtype=np.int64)]


def _load_array(path: Path, rows: int) -> np.ndarray | None:
    """A finished chunk's embeddings, or None (absent, unreadable or of another size: redo it)."""
    if not path.exists():
        return None
    try:
        arr = np.load(path)
    except (OSError, ValueError):
        arr = None
    if arr is None or arr.ndim != 2 or len(arr) != rows:
        path.unlink()
        return None
    return arr


def _save_array(path: Path, arr: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        np.save(f, np.asarray(arr, np.float32))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


# ------------------------------------------------------------------ small helpers


def summary_table(report: EmbedReport, dataset: str) -> Table:
    """Per language: where its texts come from, how many sentences, what this run computed, the gate's figures."""
    table = Table(title=f"embed-targets {dataset}",
                  caption="translated / embedded: distinct sentences this run computed (0 = from the cache); "
                  "gate: machine translations that are empty / in the wrong script / repetitive / length outliers")
    for col in ("language", "source", "sentences", "translated", "embedded", "seconds", "gate", "status"):
        table.add_column(col, justify="right" if col in ("sentences", "translated", "embedded", "seconds") else "left",
                         no_wrap=True)
    style = {"cached": "green", "built": "bold", "failed": "red", "refused": "red"}
    for r in report.summary:
        table.add_row(r.lang, r.source, str(r.sentences), str(r.translated), str(r.embedded), f"{r.seconds:.1f}",
                      escape(r.gate), f"[{style[r.status]}]{r.status}[/]")
    return table


def _gate_cell(figures: dict[str, Any] | None) -> str:
    """A manifest's `quality_gate` in a few characters: 'ok 0/0/0/1 of 168', 'reference', ..."""
    if not figures:
        return "-"  # an entry made before the gates existed
    if not figures.get("applied"):
        return "reference (not gated)"
    c = "/".join(str(figures.get(k, 0)) for k in ("empty", "wrong_script", "repetitive", "length"))
    verdict = "ok" if figures.get("passed") else "POOR, allowed" if figures.get("published_despite_failing") else "FAIL"
    return f"{verdict} {c} of {figures.get('checked', 0)}"


def _machine_label(cfg: Config) -> str:
    """The translator's label before any identity is resolved (for languages refused up front)."""
    e = cfg.embed
    if e.translator == "sonar":
        return "sonar"
    return "tiny-nllb" if e.nllb_model == "tiny" else e.nllb_model


@contextlib.contextmanager
def _status(console: Console, what: str) -> Iterator[None]:
    """A spinner while `what` runs (a line when not on a terminal), then how long it took."""
    t0 = time.monotonic()
    if console.is_terminal:
        with console.status(f"{what} ..."):
            yield
    else:
        console.print(f"{what} ...", highlight=False)
        yield
    console.print(f"[dim]{what}: {time.monotonic() - t0:.1f}s[/]", highlight=False)


@contextlib.contextmanager
def _steps(console: Console, what: str, total: int) -> Iterator[Callable[[int, float], None]]:
    """`on_step(step, loss)` of a training loop: a live bar on a terminal, else a line every tenth of the way."""
    t0 = time.monotonic()
    if console.is_terminal:
        with _progress(console) as progress:
            task = progress.add_task(what, total=total, unit="steps", loss=None)
            yield lambda step, loss: progress.update(task, completed=step + 1, loss=loss)
        return
    every = max(1, total // 10)

    def line(step: int, loss: float) -> None:
        if (step + 1) % every == 0 or step + 1 == total:
            console.print(f"  {what}: step {step + 1}/{total}, loss {loss:.3f}, {time.monotonic() - t0:.0f}s",
                          highlight=False)

    yield line


class _Loss(ProgressColumn):
    """A training task's latest loss (blank for other tasks)."""

    def render(self, task: Any) -> Text:
        loss = task.fields.get("loss")
        return Text(f"loss {loss:.3f}" if loss is not None else "")


class _Rate(ProgressColumn):
    """Sentences (or steps) per second."""

    def render(self, task: Any) -> Text:
        speed = task.finished_speed or task.speed
        unit = task.fields.get("unit", "sent")
        return Text(f"{speed:.1f} {unit}/s" if speed else f"- {unit}/s")


def _progress(console: Console) -> Progress:
    # not on a terminal (CI logs, tests): no bars, the per-language lines and the table say it all
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), _Rate(), _Loss(),
                    TimeElapsedColumn(), console=console, transient=True, disable=not console.is_terminal)


def _device(cfg: Config) -> str:
    if cfg.embed.device != "auto":
        return cfg.embed.device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _label(cfg: Config, dataset: Any, lang: str, ident: TextModels) -> str:
    """Where a language's texts come from: the dataset's references, a translator, or both."""
    if not needs_translation(cfg, dataset, lang):
        return REFERENCE
    refs = sum(t is not None for split in cfg.dataset.splits for t in reference_texts(cfg, dataset, split, lang))
    machine = source_label(ident.translator)
    return f"{REFERENCE} + {machine}" if refs else machine


def _unique(texts: list[str]) -> tuple[list[str], list[int]]:
    """Distinct texts in first-seen order, and each text's index among them."""
    index: dict[str, int] = {}
    inverse = [index.setdefault(t, len(index)) for t in texts]
    return list(index), inverse


def _keep_only(directory: Path, name: str) -> None:
    """Drop resume leftovers (chunks, per-split arrays, temp files) so the entry holds its payload only."""
    for p in directory.iterdir():
        if p.is_file() and p.name not in (name, MANIFEST):
            p.unlink()


@contextlib.contextmanager
def _discard_on_error(cache: Cache, pending: Any) -> Iterator[None]:
    """A user-fixable error (SltPipeError) leaves no partial entry; a crash keeps it to resume from."""
    try:
        yield
    except SltPipeError:
        cache.remove(pending.dir)
        raise


def _h5(path: Path) -> Any:
    import h5py

    return h5py.File(path, "r")

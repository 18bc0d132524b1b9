"""Target stage: references -> translations into every language -> SONAR embeddings -> HDF5.

Cache entries (kind/key under the cache root), each published atomically (cache.store):

    tiny-sonar/{key}/    tiny profile only: the SONAR of the toy world (encoder.pt, decoder.pt,
                         config.json, tokenizer.model; extract.tiny_sonar), trained on the
                         dataset's train-split parallel references. Key: those texts + settings.
    tiny-nllb/{key}/     nllb_model 'tiny' only: a tiny M2M100 + NLLB tokenizer in HF format.
    translations/{key}/  translations.json: one split translated into one language. Key: the
                         split's text fingerprint, source and target language, translator identity.
    targets/{key}/       targets.h5 (layout in cache.targets): one language, every split. Key: the
                         splits' text fingerprints, the language, the translator identity (other
                         languages than the source only) and the encoder identity.

So adding a language builds one new targets entry (and its translations), changing nothing
loads no model, and no training setting is in any key. Work in progress survives a crash
in the entries' `.partial` directories at fixed batch boundaries (translation chunks of
`RESUME_CHUNK_BATCHES` batches, embeddings per split), so a killed run resumes where it
stopped and ends with the same bytes as an uninterrupted one.
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
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from cache.errors import CacheError, SltPipeError
from cache.keys import make_key
from cache.store import MANIFEST, Cache, Entry
from cache.targets import TARGETS_FILE, SplitTargets, write_targets
from extract.embed_targets import REFERENCE, source_label
from pipeline.config import Config
from pipeline.dataset import open_dataset

TARGETS_FORMAT = 2  # 2: the dataset's own references win over machine translations
TRANSLATIONS_FORMAT = 1
TINY_SONAR_FORMAT = 1
TINY_NLLB_FORMAT = 1
TRANSLATIONS_FILE = "translations.json"
RESUME_CHUNK_BATCHES = 8
"""Translation batches per resumable chunk: a crash loses at most this much translation work."""
MAX_LEN = 128
"""Longest generated translation in tokens (part of the translator identity)."""
TINY_SETTINGS = {"dim": 128, "layers": 2, "batch_size": 32, "lr": 2e-3}
"""Tiny-SONAR architecture and optimiser (extract.tiny_sonar defaults), part of its key."""


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
    """cached, built or failed."""
    key: str = ""


@dataclass
class EmbedReport:
    entries: dict[str, Entry] = field(default_factory=dict)
    """Language -> its complete targets entry."""
    summary: list[LangSummary] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)
    """(language, error) of every language that could not be built; the others are."""
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
    from extract.languages import resolve_langs

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
            from extract.nllb import nllb_identity

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
    from extract.languages import FLORES200
    from extract.tiny_sonar import parallel_references

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
    from extract.embed_targets import texts_sha256

    corpus = tiny_corpus(cfg, dataset)
    inputs = {"corpus": {lang: texts_sha256(t) for lang, t in corpus.items()}, "items": len(next(iter(corpus.values()))),
              "seed": cfg.embed.tiny_seed, "steps": cfg.embed.tiny_sonar_steps, **TINY_SETTINGS}
    return make_key("tiny-sonar", inputs, format_version=TINY_SONAR_FORMAT), inputs


def tiny_nllb_key_inputs(cfg: Config, dataset: Any) -> tuple[str, dict[str, Any]]:
    from extract.embed_targets import texts_sha256

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
    langs = ",".join(target_langs(cfg))
    return f"run `slt-pipe embed-targets --dataset {cfg.dataset.name} --langs {langs}` with the same profile"


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


def ensure_tiny_sonar(cfg: Config, dataset: Any, console: Console) -> Path:
    """The tiny-SONAR entry of this corpus and settings, trained (about a minute on CPU) if absent."""
    from extract.tiny_sonar import train_tiny_sonar

    cache = Cache(cfg.cache.dir)
    key, inputs = tiny_sonar_key_inputs(cfg, dataset)
    entry = cache.get("tiny-sonar", key)
    if entry is not None:
        return entry.dir
    corpus = tiny_corpus(cfg, dataset)
    n, steps = inputs["items"], cfg.embed.tiny_sonar_steps
    console.print(f"[bold]tiny SONAR[/]: training on {n} train sentences x {len(corpus)} languages "
                  f"({', '.join(corpus)}), {steps} steps -> tiny-sonar/{key}")
    # A crash mid-training leaves nothing worth resuming: training restarts, deterministically.
    with cache.begin("tiny-sonar", key, inputs) as pending, _progress(console) as progress:
        task = progress.add_task("train tiny SONAR", total=steps, unit="steps")
        train_tiny_sonar(corpus, pending.dir, seed=cfg.embed.tiny_seed, steps=steps, device=_device(cfg),
                         on_step=lambda step, loss: progress.update(task, completed=step + 1, loss=loss),
                         **{k: v for k, v in TINY_SETTINGS.items()})
        entry = pending.publish(dataset=dataset.name, items=n, langs=list(corpus))
    return entry.dir


def ensure_tiny_nllb(cfg: Config, dataset: Any, console: Console) -> Path:
    from extract.nllb import make_tiny_nllb

    cache = Cache(cfg.cache.dir)
    key, inputs = tiny_nllb_key_inputs(cfg, dataset)
    entry = cache.get("tiny-nllb", key)
    if entry is None:
        console.print(f"[bold]tiny NLLB[/]: training {cfg.embed.tiny_nllb_steps} steps -> tiny-nllb/{key}")
        with cache.begin("tiny-nllb", key, inputs) as pending:
            make_tiny_nllb(pending.dir, tiny_corpus(cfg, dataset), seed=cfg.embed.tiny_seed,
                           train_steps=cfg.embed.tiny_nllb_steps)
            entry = pending.publish(dataset=dataset.name)
    return entry.dir


class _Models:
    """The encoder and translator, each loaded on first use only (a cached run loads neither)."""

    def __init__(self, cfg: Config, dataset: Any, ident: TextModels, console: Console):
        self.cfg, self.dataset, self.ident, self.console = cfg, dataset, ident, console
        self._encoder_model: Any = None
        self._tokenizer: Any = None
        self._encoder: Any = None
        self._translator: Any = None
        self.load_failed = False

    def _sonar_parts(self) -> tuple[Any, Any]:
        from cache.sonar_models import load_sonar_encoder, load_sonar_tokenizer

        if self._encoder_model is None:
            spec, tiny = self.cfg.embed.sonar_encoder, self.ident.tiny_sonar
            self._encoder_model = self._load(lambda: load_sonar_encoder(spec, tiny, _device(self.cfg)))
            self._tokenizer = self._load(lambda: load_sonar_tokenizer(spec, tiny))
        return self._encoder_model, self._tokenizer

    @property
    def encoder(self) -> Any:
        from extract.embed_targets import SonarEncoder

        if self._encoder is None:
            model, tok = self._sonar_parts()
            self._encoder = SonarEncoder(model, tok, identity=self.ident.encoder, device=_device(self.cfg))
        return self._encoder

    @property
    def translator(self) -> Any:
        if self._translator is None:
            e = self.cfg.embed
            if e.translator == "sonar":
                from cache.sonar_models import load_sonar_decoder
                from extract.nllb import SonarTranslator

                model, tok = self._sonar_parts()
                decoder = self._load(lambda: load_sonar_decoder(e.sonar_decoder, self.ident.tiny_sonar, _device(self.cfg)))
                self._translator = SonarTranslator(model, decoder, tok, device=_device(self.cfg), beam_size=e.beam_size,
                                                   max_seq_len=MAX_LEN, batch_size=e.batch_size)
            else:
                from extract.nllb import NllbTranslator

                path = (str(ensure_tiny_nllb(self.cfg, self.dataset, self.console)) if e.nllb_model == "tiny"
                        else e.nllb_model)
                langs = [self.dataset.source_lang, *target_langs(self.cfg)]  # refused before any work if unknown
                self._translator = self._load(lambda: NllbTranslator(path, _device(self.cfg), num_beams=e.beam_size,
                                                                     max_new_tokens=MAX_LEN, batch_size=e.batch_size,
                                                                     langs=langs))
            # one identity, the one the keys were made from
            self._translator.identity = self.ident.translator
        return self._translator

    def _load(self, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except SltPipeError:
            self.load_failed = True  # missing weights fail every language alike: stop the run
            raise


def embed_targets(cfg: Config, console: Console) -> EmbedReport:
    """Build (or find) the targets entry of every requested language; a summary table at the end."""
    from extract.embed_targets import CALLS

    calls0 = dict(CALLS)
    cache = Cache(cfg.cache.dir)
    dataset = open_dataset(cfg, console)
    langs = target_langs(cfg)
    src = dataset.source_lang
    if src not in langs:
        console.print(f"[yellow]note[/]: the source language {src} is not among --langs; its targets are not built")
    tiny = ensure_tiny_sonar(cfg, dataset, console) if _uses_tiny_sonar(cfg) else None
    ident = text_models(cfg, dataset, tiny)
    models = _Models(cfg, dataset, ident, console)
    report = EmbedReport()
    for lang in langs:
        key, inputs = targets_key(cfg, dataset, lang, ident)
        t0 = time.monotonic()
        entry = cache.get("targets", key)
        n = sum(len(dataset.samples[s]) for s in cfg.dataset.splits)
        label = _label(cfg, dataset, lang, ident)
        if entry is not None:
            console.print(f"[green]cached[/] targets {lang}: targets/{key} ({entry.items} sentences)")
            report.entries[lang] = entry
            report.summary.append(LangSummary(lang, label, n, 0, 0, 0.0, "cached", key))
            continue
        console.print(f"[bold]embed-targets[/] {dataset.name} {lang} ({label}): {n} sentences -> targets/{key}")
        counts = {"translated": 0, "embedded": 0}
        try:
            entry = _build_language(cfg, cache, dataset, lang, key, inputs, models, console, counts)
        except SltPipeError as e:
            if models.load_failed:
                raise
            console.print(f"[red]failed[/] {lang}: {e.render()}", highlight=False)
            report.failures.append((lang, e.render()))
            report.summary.append(LangSummary(lang, label, n, counts["translated"], counts["embedded"],
                                              time.monotonic() - t0, "failed", key))
            continue
        report.entries[lang] = entry
        report.summary.append(LangSummary(lang, label, n, counts["translated"], counts["embedded"],
                                          time.monotonic() - t0, "built", key))
    report.calls = {k: CALLS[k] - calls0.get(k, 0) for k in CALLS}
    console.print(summary_table(report, dataset.name))
    if report.failures:
        console.print(f"[red]{len(report.failures)} language(s) failed[/]; the others are cached. Fix and re-run.")
    return report


def _build_language(cfg: Config, cache: Cache, dataset: Any, lang: str, key: str, inputs: dict[str, Any],
                    models: _Models, console: Console, counts: dict[str, int]) -> Entry:
    src = dataset.source_lang
    with cache.begin("targets", key, inputs) as pending, _discard_on_error(cache, pending):
        h5 = pending.dir / TARGETS_FILE
        if not h5.exists():  # written by rename: if it is there, it is whole
            splits: dict[str, SplitTargets] = {}
            machine = source_label(models.ident.translator)
            for split in cfg.dataset.splits:
                ids = [s.id for s in dataset.samples[split]]
                refs = reference_texts(cfg, dataset, split, lang)
                translated = (_translations(cfg, cache, dataset, split, lang, models, console, counts)
                              if any(t is None for t in refs) else refs)
                texts = [r if r is not None else t for r, t in zip(refs, translated)]
                sources = [REFERENCE if r is not None else machine for r in refs]
                emb = _embeddings(pending.dir / f"{split}.npy", texts, lang, cfg, models, console, counts,
                                  f"embed {lang} {split}")
                splits[split] = SplitTargets(ids, texts, emb, sources)
            write_targets(h5, lang, splits, key=key, encoder=models.ident.encoder,
                          translator=inputs["translator"])
        _keep_only(pending.dir, TARGETS_FILE)
        with _h5(h5) as f:
            dim = int(f.attrs["dim"])
        return pending.publish(dataset=dataset.name, lang=lang, source_lang=src, items=sum(
            len(dataset.samples[s]) for s in cfg.dataset.splits), splits={s: len(dataset.samples[s]) for s in
                                                                        cfg.dataset.splits}, dim=dim)


def _translations(cfg: Config, cache: Cache, dataset: Any, split: str, lang: str, models: _Models,
                  console: Console, counts: dict[str, int]) -> list[str]:
    """One split's texts in `lang`, from the translations cache or translated chunk by chunk."""
    from extract.embed_targets import load_translations, save_translations, translate_texts

    src = dataset.source_lang
    texts = [s.text for s in dataset.samples[split]]
    key, inputs = translations_key(dataset, split, lang, models.ident)
    entry = cache.get("translations", key)
    if entry is not None:
        return load_translations(entry.dir / TRANSLATIONS_FILE, texts)
    tr_id = models.ident.translator
    uniq, inverse = _unique(texts)
    chunk = max(1, cfg.embed.batch_size) * RESUME_CHUNK_BATCHES
    with cache.begin("translations", key, inputs) as pending, _discard_on_error(cache, pending):
        parts = [(uniq[a : a + chunk], pending.dir / f"chunk-{i:05d}.json")
                 for i, a in enumerate(range(0, len(uniq), chunk))]
        cached = [_load_chunk(path, part) for part, path in parts]
        # load the model (and print what loading prints) before the live progress bar starts
        translator = models.translator if any(c is None for c in cached) else None
        done: list[str] = []
        with _progress(console) as progress:
            task = progress.add_task(f"translate {src}->{lang} {split}", total=len(uniq))
            for (part, path), got in zip(parts, cached):
                if got is None:
                    got = translate_texts(part, src, lang, translator, batch_size=cfg.embed.batch_size,
                                          on_batch=lambda k: progress.advance(task, k))
                    save_translations(path, part, got, src, lang, tr_id)
                    counts["translated"] += len(part)
                else:
                    progress.advance(task, len(part))
                done.extend(got)
        full = [done[j] for j in inverse]
        save_translations(pending.dir / TRANSLATIONS_FILE, texts, full, src, lang, tr_id)
        _keep_only(pending.dir, TRANSLATIONS_FILE)
        pending.publish(dataset=dataset.name, split=split, src_lang=src, lang=lang, items=len(texts))
    return full


def _load_chunk(path: Path, texts: list[str]) -> list[str] | None:
    from extract.embed_targets import load_translations

    if not path.exists():
        return None
    try:
        return load_translations(path, texts)
    except CacheError:
        path.unlink()  # unreadable leftover: redo that chunk
        return None


def _embeddings(path: Path, texts: list[str], lang: str, cfg: Config, models: _Models, console: Console,
                counts: dict[str, int], desc: str) -> np.ndarray:
    """Embeddings [N, D] of `texts`, each distinct text once; kept in `path` until the entry is published."""
    from extract.embed_targets import embed_texts

    if path.exists():
        try:
            return np.load(path)
        except (OSError, ValueError):
            path.unlink()
    uniq, inverse = _unique(texts)
    encoder = models.encoder  # loaded before the live progress bar starts
    with _progress(console) as progress:
        task = progress.add_task(desc, total=len(uniq))
        emb = embed_texts(uniq, lang, encoder, batch_size=cfg.embed.batch_size,
                          on_batch=lambda k: progress.advance(task, k))
    counts["embedded"] += len(uniq)
    full = emb[np.asarray(inverse, dtype=np.int64)] if len(uniq) else emb
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        np.save(f, full)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return full


# ------------------------------------------------------------------ small helpers


def summary_table(report: EmbedReport, dataset: str) -> Table:
    """Per language: where its texts come from, how many sentences, what this run computed."""
    table = Table(title=f"embed-targets {dataset}",
                  caption="translated / embedded: distinct sentences this run computed (0 = from the cache)")
    for col in ("language", "source", "sentences", "translated", "embedded", "seconds", "status"):
        table.add_column(col, justify="right" if col in ("sentences", "translated", "embedded", "seconds") else "left",
                         no_wrap=True)
    style = {"cached": "green", "built": "bold", "failed": "red"}
    for r in report.summary:
        table.add_row(r.lang, r.source, str(r.sentences), str(r.translated), str(r.embedded), f"{r.seconds:.1f}",
                      f"[{style[r.status]}]{r.status}[/]")
    return table


class _Rate(ProgressColumn):
    """Sentences (or steps) per second."""

    def render(self, task: Any) -> Text:
        speed = task.finished_speed or task.speed
        unit = task.fields.get("unit", "sent")
        return Text(f"{speed:.1f} {unit}/s" if speed else f"- {unit}/s")


def _progress(console: Console) -> Progress:
    # not on a terminal (CI logs, tests): no bars, the per-language lines and the table say it all
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), _Rate(),
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

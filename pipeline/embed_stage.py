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
loads no model, and no training setting is in any key. This module claims the entries, publishes
them and prints the summary table; the text side's work is in extract.text (plan: which texts are
translated; translators: identities and refusals; gates; chunks: resumable work; backend: this
process or Ray workers, `embed.workers` / `embed.ray_address`, with the same bytes either way).
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from pathlib import Path
from typing import Any, Iterator

from rich.console import Console
from rich.markup import escape

from cache.device import resolve_device
from cache.errors import CacheError, SltPipeError, WorkersLost
from cache.keys import make_key
from cache.store import MANIFEST, Cache, Entry, PendingEntry
from cache.targets import TARGETS_FILE, SplitTargets, write_targets
from extract.text import tiny_models
from extract.text.backend import TextExecutor
from extract.text.chunks import embed_chunks, translate_chunks
from extract.text.gates import GateThresholds, PoorTranslationsError, gate_thresholds, judge
from extract.text.plan import needs_translation, source_label, targets_texts, text_model_ids, unwritable_langs
from extract.text.plan import target_langs as _target_langs
from extract.text.progress import steps
from extract.text.spec import TextModelIds
from extract.text.translators import translator_kind
from extract.text.translators.base import TinyModels, TranslatorContext
from pipeline.commands import suggest
from pipeline.config import Config
from pipeline.dataset import configured_dataset
from pipeline.embed_report import EmbedReport, LangSummary, gate_cell, summary_table

TARGETS_FORMAT = 3  # 2: the dataset's own references win over machine translations; 3: fletcher32 embeddings, sha256 on strings
TRANSLATIONS_FORMAT = 1
TRANSLATIONS_FILE = "translations.json"


# ------------------------------------------------------------------ identities and keys


def target_langs(cfg: Config) -> list[str]:
    return _target_langs(cfg.embed)


def text_models(cfg: Config, dataset: Any, tiny_sonar: Path | None) -> TextModelIds:
    """The identities of the text models of `cfg` (extract.text.plan.text_model_ids); loads no model."""
    return text_model_ids(_context(cfg, dataset), tiny_sonar)


def _context(cfg: Config, dataset: Any, console: Console | None = None) -> TranslatorContext:
    """The run as its translator is asked about it, with the tiny models of this cache."""
    console = console or Console(quiet=True)
    tiny = TinyModels(langs=lambda: list(tiny_corpus(cfg, dataset)),
                      nllb_key=lambda: tiny_nllb_key_inputs(cfg, dataset)[0],
                      nllb_dir=lambda: ensure_tiny_nllb(cfg, dataset, console))
    return TranslatorContext(embed=cfg.embed, source_lang=dataset.source_lang, langs=target_langs(cfg),
                             dataset=dataset.name, root=dataset.root, tiny=tiny, console=console,
                             command=lambda langs, *extra: _command(cfg, langs, *extra))


def targets_key(cfg: Config, dataset: Any, lang: str, models: TextModelIds) -> tuple[str, dict[str, Any]]:
    src = dataset.source_lang
    inputs = {
        "texts": {split: dataset.text_fingerprint(split) for split in cfg.dataset.splits},
        "source_lang": src,
        "lang": lang,
        "translator": models.translator if needs_translation(cfg.embed, cfg.dataset.splits, dataset, lang) else None,
        "encoder": models.encoder,
    }
    return make_key("targets", inputs, format_version=TARGETS_FORMAT), inputs


def translations_key(dataset: Any, split: str, lang: str, models: TextModelIds) -> tuple[str, dict[str, Any]]:
    inputs = {"texts": dataset.text_fingerprint(split), "src": dataset.source_lang, "tgt": lang,
              "translator": models.translator}
    return make_key("translations", inputs, format_version=TRANSLATIONS_FORMAT), inputs


def tiny_corpus(cfg: Config, dataset: Any) -> dict[str, list[str]]:
    """The tiny models' training text (extract.text.tiny_models), the train split read if need be."""
    if "train" not in dataset.samples:
        dataset = configured_dataset(dataclasses.replace(cfg, dataset=dataclasses.replace(cfg.dataset, splits=["train"])))
    return tiny_models.tiny_corpus(dataset)


def tiny_sonar_key_inputs(cfg: Config, dataset: Any) -> tuple[str, dict[str, Any]]:
    return tiny_models.tiny_sonar_key_inputs(cfg.embed, tiny_corpus(cfg, dataset))


def tiny_nllb_key_inputs(cfg: Config, dataset: Any) -> tuple[str, dict[str, Any]]:
    return tiny_models.tiny_nllb_key_inputs(cfg.embed, tiny_corpus(cfg, dataset))


def _hint(cfg: Config) -> str:
    return f"run `{_command(cfg, target_langs(cfg))}`"


def _command(cfg: Config, langs: list[str], *extra: str) -> str:
    """The embed-targets command line of this config with other languages, to paste."""
    return " ".join([suggest(cfg, "embed-targets", langs=langs), *extra])


# ------------------------------------------------------------------ what is left to do


def _pending(cfg: Config, cache: Cache, dataset: Any, plan: dict[str, tuple[str, dict[str, Any]]]) -> list[str]:
    """The languages of `plan` that have machine translations in an unpublished targets entry."""
    return [lang for lang, (key, _) in plan.items()
            if needs_translation(cfg.embed, cfg.dataset.splits, dataset, lang) and cache.get("targets", key) is None]


def _translating(cfg: Config, cache: Cache, dataset: Any, pending: list[str], ident: TextModelIds) -> bool:
    """Whether this run has any translation left to compute (unpublished targets and translations)."""
    return any(cache.get("translations", translations_key(dataset, split, lang, ident)[0]) is None
               for lang in pending for split in cfg.dataset.splits)


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
    tiny = require_tiny_sonar(cfg, dataset) if tiny_models.uses_tiny_sonar(cfg.embed) else None
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
    tiny = require_tiny_sonar(cfg, dataset) if tiny_models.uses_tiny_sonar(cfg.embed) else None
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
    n, total = inputs["items"], cfg.embed.tiny_sonar_steps
    console.print(f"[bold]tiny SONAR[/]: training on {n} train sentences x {len(corpus)} languages "
                  f"({', '.join(corpus)}), {total} steps -> tiny-sonar/{key}")
    # A crash mid-training leaves nothing worth resuming: training restarts, deterministically.
    with got as pending, steps(console, "train tiny SONAR", total) as on_step:
        train_tiny_sonar(corpus, pending.dir, seed=cfg.embed.tiny_seed, steps=total,
                         device=str(resolve_device(cfg.embed.device)), on_step=on_step, **tiny_models.TINY_SETTINGS)
        entry = pending.publish(dataset=dataset.name, items=n, langs=list(corpus))
    return entry.dir


def ensure_tiny_nllb(cfg: Config, dataset: Any, console: Console) -> Path:
    """The tiny-NLLB entry of this corpus and settings, trained if absent."""
    from extract.text.nllb import make_tiny_nllb

    cache = Cache(cfg.cache.dir)
    key, inputs = tiny_nllb_key_inputs(cfg, dataset)
    got = cache.claim("tiny-nllb", key, inputs, note=_note(console))
    entry = got if isinstance(got, Entry) else None
    if entry is None:
        total = cfg.embed.tiny_nllb_steps
        console.print(f"[bold]tiny NLLB[/]: training {total} steps -> tiny-nllb/{key}")
        with got as pending, steps(console, "train tiny NLLB", total) as on_step:
            make_tiny_nllb(pending.dir, tiny_corpus(cfg, dataset), seed=cfg.embed.tiny_seed, train_steps=total,
                           on_step=on_step)
            entry = pending.publish(dataset=dataset.name)
    return entry.dir


def embed_targets(cfg: Config, console: Console, out: Console | None = None) -> EmbedReport:
    """Build (or find) the targets entry of every requested language; a summary table at the end.

    What each language's entry is, and the table, go to `out` (stdout: results); the rest to `console`.

    A language the translator cannot write at all is refused before any work; one whose
    translations fail the quality gates is refused before anything of it is published. Either
    is a failure of the report, and the other languages still complete. Ray workers, when the
    config asks for them, live for the whole run and are gone when it returns."""
    from extract.ray_address import require_reachable

    require_reachable(cfg.embed.ray_address)  # before the models and the toy: seconds, not minutes
    with contextlib.ExitStack() as stack:
        return _embed_targets(cfg, console, out or console, stack)


def _embed_targets(cfg: Config, console: Console, out: Console, stack: contextlib.ExitStack) -> EmbedReport:
    from extract.text.embed import CALLS

    calls0 = dict(CALLS)
    cache = Cache(cfg.cache.dir)
    langs = target_langs(cfg)  # an unknown code is refused before the dataset is even read
    thresholds = gate_thresholds(cfg.embed)
    kind = translator_kind(cfg.embed.translator)
    dataset = configured_dataset(cfg, console)
    src = dataset.source_lang
    if src not in langs:
        console.print(f"[yellow]note[/]: the source language {src} is not among --langs; its targets are not built")
    n = sum(len(dataset.samples[s]) for s in cfg.dataset.splits)
    report = EmbedReport()
    ctx = _context(cfg, dataset, console)
    refused = unwritable_langs(ctx, cfg.dataset.splits, dataset)
    todo = [lang for lang in langs if lang not in refused]
    if todo:
        tiny = ensure_tiny_sonar(cfg, dataset, console) if tiny_models.uses_tiny_sonar(cfg.embed) else None
        ident = text_model_ids(ctx, tiny)
        plan = {lang: targets_key(cfg, dataset, lang, ident) for lang in todo}
        pending = _pending(cfg, cache, dataset, plan)
        refused.update(kind.lacks(ctx, pending) if pending else {})  # reads a tokenizer, loads no model
        todo = [lang for lang in todo if lang not in refused]
        translating = _translating(cfg, cache, dataset, pending, ident)
        models = TextExecutor(cfg.embed, ident, (src, *todo), cache_dir=Path(cfg.cache.dir), console=console,
                              stack=stack, translator_weights=lambda: kind.weights(ctx) if translating else None)
    for lang, error in refused.items():
        console.print(f"[red]refused[/] {escape(error.render())}", highlight=False)
        report.failures.append((lang, error.render()))
        report.summary.append(LangSummary(lang, kind.label(cfg.embed), n, 0, 0, 0.0, "refused", gate="cannot write it"))
    for lang in todo:
        key, inputs = plan[lang]
        t0 = time.monotonic()
        got = cache.claim("targets", key, inputs, note=_note(console))
        label = source_label(cfg.embed, cfg.dataset.splits, dataset, lang)
        if isinstance(got, Entry):
            entry = got
            out.print(f"[green]cached[/] targets {lang}: targets/{key} ({entry.items} sentences)", highlight=False)
            if (entry.manifest.get("quality_gate") or {}).get("published_despite_failing"):
                console.print(f"[yellow]warning[/] {lang}: these translations failed the quality gates and were "
                              "published with --allow-poor-translations (see quality_gate in its manifest)")
            report.entries[lang] = entry
            report.summary.append(LangSummary(lang, label, n, 0, 0, 0.0, "cached", key,
                                              gate_cell(entry.manifest.get("quality_gate"))))
            continue
        console.print(f"[bold]embed-targets[/] {dataset.name} {lang} ({label}): {n} sentences -> targets/{key}")
        counts = {"translated": 0, "embedded": 0}
        try:
            entry = _build_language(cfg, cache, dataset, lang, got, models, ctx, counts, thresholds)
        except SltPipeError as e:
            if models.load_failed:  # missing weights fail every language alike: stop the run
                raise
            status = "refused" if isinstance(e, PoorTranslationsError) else "failed"
            said = e.render() if isinstance(e, PoorTranslationsError) else f"{lang}: {e.render()}"  # names lang
            console.print(f"[red]{status}[/] {escape(said)}", highlight=False)
            report.failures.append((lang, e.render()))
            report.summary.append(LangSummary(lang, label, n, counts["translated"], counts["embedded"],
                                              time.monotonic() - t0, status, key,
                                              gate_cell(getattr(e, "figures", None))))
            continue
        report.entries[lang] = entry
        out.print(f"[bold]built[/] targets {lang}: targets/{key} ({entry.items} sentences)", highlight=False)
        report.summary.append(LangSummary(lang, label, n, counts["translated"], counts["embedded"],
                                          time.monotonic() - t0, "built", key,
                                          gate_cell(entry.manifest.get("quality_gate"))))
    order = {lang: i for i, lang in enumerate(langs)}
    report.summary.sort(key=lambda r: order[r.lang])
    report.failures.sort(key=lambda f: order[f[0]])
    report.calls = {k: CALLS[k] - calls0.get(k, 0) for k in CALLS}
    out.print(summary_table(report, dataset.name))
    if report.failures:
        ok = len(report.summary) - len(report.failures)
        rest = f"the other {ok} are cached" if ok else "no language was built"
        console.print(f"[red]{len(report.failures)} language(s) refused or failed[/]; {rest}. Fix and re-run.")
    return report


def _build_language(cfg: Config, cache: Cache, dataset: Any, lang: str, claimed: PendingEntry,
                    models: TextExecutor, ctx: TranslatorContext, counts: dict[str, int],
                    thresholds: GateThresholds) -> Entry:
    """Translate what the dataset lacks, gate the translations, embed, publish the claimed targets entry."""
    src, console, kind = dataset.source_lang, ctx.console, translator_kind(cfg.embed.translator)
    with claimed as pending, _discard_on_error(cache, pending):
        texts, sources, rows = targets_texts(cfg.embed, cfg.dataset.splits, dataset, lang, lambda split: _translations(
            cfg, cache, dataset, split, lang, models, console, counts))
        gate = judge(rows, lang, src, thresholds, allow=cfg.embed.allow_poor_translations, label=kind.label(cfg.embed),
                     where=lambda split: cache.path("translations", translations_key(
                         dataset, split, lang, models.ids)[0]) / TRANSLATIONS_FILE,
                     langs=ctx.langs, command=ctx.command)  # before anything is embedded
        if gate.get("published_despite_failing"):
            console.print(f"[yellow]warning[/] {lang}: {gate['bad']} of {gate['checked']} translations fail the "
                          "quality gates; published anyway (--allow-poor-translations), the manifest says so")
        h5 = pending.dir / TARGETS_FILE
        mark = models.losses()
        if not h5.exists():  # written by rename: if it is there, it is whole
            splits: dict[str, SplitTargets] = {}
            for split in cfg.dataset.splits:
                ids = [s.id for s in dataset.samples[split]]
                emb = embed_chunks(models, pending.dir, split, texts[split], lang, batch_size=cfg.embed.batch_size,
                                   console=console, on_computed=lambda k: counts.update(embedded=counts["embedded"] + k))
                splits[split] = SplitTargets(ids, texts[split], emb, sources[split])
            write_targets(h5, lang, splits, key=pending.key, encoder=models.ids.encoder,
                          translator=pending.inputs["translator"])
        _keep_only(pending.dir, TARGETS_FILE)
        with _h5(h5) as f:
            dim = int(f.attrs["dim"])
        sizes = {s: len(dataset.samples[s]) for s in cfg.dataset.splits}
        return pending.publish(dataset=dataset.name, lang=lang, source_lang=src, items=sum(sizes.values()),
                               splits=sizes, dim=dim, quality_gate=gate, **models.lost_workers(mark))


def _translations(cfg: Config, cache: Cache, dataset: Any, split: str, lang: str, models: TextExecutor,
                  console: Console, counts: dict[str, int]) -> list[str]:
    """One split's texts in `lang`, from the translations cache or translated chunk by chunk."""
    from extract.text.embed import load_translations, save_translations

    src = dataset.source_lang
    texts = [s.text for s in dataset.samples[split]]
    key, inputs = translations_key(dataset, split, lang, models.ids)
    got = cache.claim("translations", key, inputs, note=_note(console))
    if isinstance(got, Entry):
        return load_translations(got.dir / TRANSLATIONS_FILE, texts)
    tr_id = models.ids.translator
    with got as pending, _discard_on_error(cache, pending):
        mark = models.losses()
        full = translate_chunks(models, pending.dir, split, texts, src, lang, batch_size=cfg.embed.batch_size,
                                translator=tr_id, console=console,
                                on_computed=lambda k: counts.update(translated=counts["translated"] + k))
        save_translations(pending.dir / TRANSLATIONS_FILE, texts, full, src, lang, tr_id)
        _keep_only(pending.dir, TRANSLATIONS_FILE)
        pending.publish(dataset=dataset.name, split=split, src_lang=src, lang=lang, items=len(texts),
                        **models.lost_workers(mark))
    return full


# ------------------------------------------------------------------ small helpers


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
    except WorkersLost:
        raise  # finished chunks are kept: the same command resumes
    except SltPipeError:
        cache.remove(pending.dir)
        raise


def _h5(path: Path) -> Any:
    import h5py

    return h5py.File(path, "r")

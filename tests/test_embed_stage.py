"""The embed-targets stage on a real toy corpus and cache: keys, reuse, resume after SIGKILL, quality.

One toy corpus and one cache are built once for the session (tests/conftest.py: tiny SONAR trained
on the toy's train-split sentences, translations by the tiny SONAR translator); the tests then re-run
the stage as a user would and read the HDF5 files with plain h5py.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import TOY_EMBED_SETTINGS, TOY_LANGS, toy_embed_cfg
from rich.console import Console

from cache.errors import CacheError, SltPipeError
from pipeline.config import build_config

LANGS = TOY_LANGS
SETTINGS = TOY_EMBED_SETTINGS
KILL_VIDEOS = 40
KILL_SETTINGS = {"tiny_sonar_steps": 40, "batch_size": 8}
"""The crash test's own small corpus: quality is irrelevant there, many small batches are the point."""
QUIET = Console(stderr=True, quiet=True)
REPO = Path(__file__).parents[1]


def make_cfg(cache: Path, root: Path, langs=LANGS, splits=("train", "dev", "test"), **embed: object):
    return toy_embed_cfg(cache, root, langs, splits, **embed)


def h5_content(path: Path) -> dict:
    """Every dataset and attribute of an HDF5 file, read with plain h5py."""
    out: dict = {}
    with h5py.File(path, "r") as f:
        out["attrs"] = {k: f.attrs[k] for k in f.attrs}
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return out


def same_value(a: object, b: object) -> bool:
    """Exactly equal, type (and dtype) included: 1 is not 1.0, np.float32(1) is not np.float64(1)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)  # type: ignore[union-attr]
    if isinstance(a, np.generic):
        return a.dtype == b.dtype and a.tobytes() == b.tobytes()  # type: ignore[union-attr]
    return a == b


def assert_same_h5(a: Path, b: Path) -> None:
    """Every dataset of `a` equals `b`'s in dtype, shape and values; every attribute in type and value."""
    ca, cb = h5_content(a), h5_content(b)
    assert ca.keys() == cb.keys()
    for k in ca:
        if k == "attrs":
            assert ca[k].keys() == cb[k].keys()
            for name in ca[k]:
                assert same_value(ca[k][name], cb[k][name]), (name, ca[k][name], cb[k][name])
        else:
            assert same_value(np.asarray(ca[k]), np.asarray(cb[k])), k


@pytest.fixture(scope="module")
def built(toy_embedded):
    """(cfg, report, dataset) of a clean first run: trains the tiny SONAR, builds deu/eng/fra (tests/conftest.py).

    The session shares this cache: the tests here add entries to it (other settings, other languages)
    but never change or remove the three first-run entries and the tiny SONAR the other modules read."""
    return toy_embedded


# ------------------------------------------------------------------ first run, layout


def test_first_run_builds_every_language(built):
    cfg, report, ds = built
    assert not report.failures
    by_lang = {r.lang: r for r in report.summary}
    assert list(by_lang) == LANGS and all(r.status == "built" for r in report.summary)
    n = sum(len(ds.samples[s]) for s in cfg.dataset.splits)
    assert by_lang["deu_Latn"].translated == 0 and by_lang["deu_Latn"].source == "reference"
    assert by_lang["eng_Latn"].translated > 0 and by_lang["eng_Latn"].source == "sonar"
    for lang, entry in report.entries.items():
        path = entry.dir / "targets.h5"
        assert sorted(p.name for p in entry.dir.iterdir()) == ["manifest.json", "targets.h5"]
        assert entry.items == n
        with h5py.File(path, "r") as f:  # plain h5py, as the docstring of cache.targets shows
            assert f.attrs["lang"] == lang and f.attrs["key"] == entry.key
            for split in cfg.dataset.splits:
                ids = [s.decode() for s in f[f"{split}/ids"][:]]
                assert ids == [s.id for s in ds.samples[split]]
                emb = f[f"{split}/{lang}/embedding"][:]
                assert emb.dtype == np.float32 and emb.shape == (len(ids), f.attrs["dim"])
                norms = np.linalg.norm(emb, axis=1)
                assert 0.02 < norms.mean() < 3.0  # SONAR scale, not L2-normalised
                texts = [t.decode() for t in f[f"{split}/{lang}/text"][:]]
                if lang == "deu_Latn":
                    assert texts == [s.text for s in ds.samples[split]]
    # nothing half-built is left behind
    assert not list(Path(cfg.cache.dir).glob("*/*.partial"))


def test_true_references_first_the_toys_own_sentences_are_targets_and_references(built, monkeypatch):
    """With the default `embed.references = true`, the toy's eng/fra targets (and so the evaluation
    references, read from them) are the toy's own sentences; nothing is translated."""
    import extract.text.embed as et
    from cache.targets import TargetReader
    from pipeline.embed_stage import embed_targets

    cfg0, _, ds = built
    cfg = make_cfg(cfg0.cache.dir, cfg0.dataset.root, references=True)
    monkeypatch.setattr(et, "translate_texts", lambda *a, **k: pytest.fail("a language with references was translated"))
    report = embed_targets(cfg, QUIET)
    assert not report.failures and report.calls["translate"] == 0
    assert {r.lang: r.source for r in report.summary} == {lang: "reference" for lang in LANGS}
    for lang in ("eng_Latn", "fra_Latn"):
        with TargetReader(report.entries[lang].dir / "targets.h5") as r:
            for split in cfg.dataset.splits:
                assert r.texts(split) == [ds.references[split][lang][s.id] for s in ds.samples[split]]
                assert set(r.sources(split)) == {"reference"}


def test_unchanged_rerun_loads_no_model(built, monkeypatch):
    import cache.sonar_models as sm
    import extract.text.embed as et
    import extract.text.nllb as nl
    from pipeline.embed_stage import embed_targets

    def boom(*a, **k):
        raise AssertionError("a cached run must not load a model")

    for mod, name in [(sm, "load_sonar_encoder"), (sm, "load_sonar_decoder"), (nl, "NllbTranslator"),
                      (et, "SonarEncoder")]:
        monkeypatch.setattr(mod, name, boom)
    cfg, first, _ = built
    report = embed_targets(cfg, QUIET)
    assert report.calls == {"translate": 0, "embed": 0}
    assert [r.status for r in report.summary] == ["cached"] * 3
    assert {k: e.key for k, e in report.entries.items()} == {k: e.key for k, e in first.entries.items()}


def test_a_language_the_tiny_sonar_cannot_write_is_refused_before_any_work(built):
    """The toy's tiny SONAR knows deu/eng/fra only: asked for Spanish it would write English. spa is
    refused before any model call, with the fix; the others are served, and the report fails."""
    from pipeline.embed_stage import embed_targets, require_targets

    cfg, first, ds = built
    cfg4 = make_cfg(cfg.cache.dir, cfg.dataset.root, langs=["deu", "eng", "fra", "spa"])
    report = embed_targets(cfg4, QUIET)
    by_lang = {r.lang: r for r in report.summary}
    assert list(by_lang) == [*LANGS, "spa_Latn"]
    assert [by_lang[lang].status for lang in LANGS] == ["cached"] * 3
    assert by_lang["spa_Latn"].status == "refused" and by_lang["spa_Latn"].gate == "cannot write it"
    assert report.calls == {"translate": 0, "embed": 0}
    assert [lang for lang, _ in report.failures] == ["spa_Latn"]
    message = report.failures[0][1]
    assert "the tiny SONAR translator cannot write spa_Latn" in message and "deu_Latn, eng_Latn, fra_Latn" in message
    assert "--langs deu_Latn,eng_Latn,fra_Latn" in message and "--profile paper" in message
    for lang in LANGS:  # the others keep their keys
        assert report.entries[lang].key == first.entries[lang].key
    assert "spa_Latn" not in _published_langs(Path(cfg.cache.dir))
    with pytest.raises(CacheError, match="spa_Latn"):
        require_targets(cfg4, ds)
    # the tiny NLLB learns the same corpus: the same refusal, before it is trained
    by_nllb = embed_targets(make_cfg(cfg.cache.dir, cfg.dataset.root, langs=["deu", "spa"], translator="nllb"), QUIET)
    assert [r.status for r in by_nllb.summary] == ["cached", "refused"]
    assert "the tiny NLLB translator cannot write spa_Latn" in by_nllb.failures[0][1]


def test_a_corpus_without_english_refuses_english_before_training_anything(toy, tmp_path):
    """PHOENIX as released (German only), tiny profile, --langs eng: refused at once; no tiny SONAR is
    trained (that takes a minute), nothing is published, and the command exits non-zero."""
    from typer.testing import CliRunner

    from pipeline.cli import app

    german = tmp_path / "PHOENIX-2014-T-release-v3" / "PHOENIX-2014-T"
    ann = german / "annotations" / "manual"
    ann.mkdir(parents=True)
    for csv in (toy / "PHOENIX-2014-T-release-v3" / "PHOENIX-2014-T" / "annotations" / "manual").glob("*.corpus.csv"):
        shutil.copy(csv, ann / csv.name)
    (german / "features").symlink_to(toy / "PHOENIX-2014-T-release-v3" / "PHOENIX-2014-T" / "features")
    cache = tmp_path / "cache"
    t0 = time.monotonic()
    res = CliRunner().invoke(app, ["embed-targets", "--profile", "tiny", "--dataset", "phoenix", "--root", str(german),
                                   "--cache", str(cache), "--langs", "eng,fra", "--set", "embed.device=cpu"])
    assert res.exit_code == 1, res.output
    assert time.monotonic() - t0 < 20
    assert not (cache / "tiny-sonar").exists() and not (cache / "targets").exists()
    out = " ".join(res.output.split())  # rich wraps long lines
    assert "refused" in out and "the tiny SONAR translator cannot write eng_Latn" in out
    assert "train-split references (deu_Latn)" in out and "cannot write fra_Latn" in out


def test_require_targets_and_decoder_read_the_cache_only(built, tmp_path, monkeypatch):
    import cache.sonar_models as sm
    from pipeline.embed_stage import require_targets, sonar_decoder

    cfg, report, ds = built

    def boom(*a, **k):
        raise AssertionError("require_targets must not load a model")

    monkeypatch.setattr(sm, "load_sonar_encoder", boom)
    paths = require_targets(cfg, ds)
    assert paths == {lang: report.entries[lang].dir / "targets.h5" for lang in LANGS}
    spec, tiny_dir = sonar_decoder(cfg, ds)
    assert spec == "tiny" and (tiny_dir / "decoder.pt").is_file()
    # training settings never re-key targets
    trained = build_config({**_layer(cfg), "train": {"lr": 0.5, "steps": 3}})
    assert require_targets(trained, ds) == paths
    # a language never embedded, or an empty cache: the error names the entry and the command
    with pytest.raises(CacheError) as e:
        require_targets(make_cfg(cfg.cache.dir, cfg.dataset.root, langs=["deu", "ita"]), ds)
    assert "ita_Latn" in str(e.value) and f"slt-pipe embed-targets --dataset toy --root {cfg.dataset.root}" in str(e.value)
    assert "--langs deu_Latn,ita_Latn" in str(e.value)
    with pytest.raises(CacheError, match="tiny SONAR"):
        sonar_decoder(make_cfg(tmp_path / "empty", cfg.dataset.root), ds)


def _layer(cfg) -> dict:
    from pipeline.config import to_dict

    return to_dict(cfg)


# ------------------------------------------------------------------ quality of the tiny SONAR


def test_tiny_sonar_is_language_agnostic_and_decodes_held_out(built):
    """Held-out = dev + test sentences of the toy, never seen by the tiny SONAR (trained on train only)."""
    import sacrebleu
    import torch
    import torch.nn.functional as F

    from cache.sonar_models import load_sonar_decoder, load_sonar_encoder, load_sonar_tokenizer
    from cache.targets import TargetReader
    from extract.text.nllb import SonarTranslator
    from pipeline.embed_stage import require_targets, sonar_decoder

    cfg, _, ds = built
    _, tiny = sonar_decoder(cfg, ds)
    held_ids = [(split, s.id) for split in ("dev", "test") for s in ds.samples[split]]
    train_texts = {s.text for s in ds.samples["train"]}
    held = {lang: [ds.references[split][lang][i] for split, i in held_ids] for lang in LANGS}
    assert not train_texts & set(held["deu_Latn"])  # really held out
    tr = SonarTranslator(load_sonar_encoder("tiny", tiny), load_sonar_decoder("tiny", tiny),
                         load_sonar_tokenizer("tiny", tiny), batch_size=64)
    emb = {lang: tr.t2e.predict(texts, source_lang=lang, batch_size=64) for lang, texts in held.items()}
    n = len(held_ids)
    for a, b in (("deu_Latn", "eng_Latn"), ("deu_Latn", "fra_Latn"), ("eng_Latn", "fra_Latn")):
        s = F.normalize(emb[a], dim=-1) @ F.normalize(emb[b], dim=-1).T
        own, other = float(s.diag().mean()), float((s.sum() - s.diag().sum()) / (n * n - n))
        retrieval = float((s.argmax(1) == torch.arange(n)).float().mean())
        print(f"{a}/{b}: cos own {own:.3f} other {other:.3f} retrieval {retrieval:.2f}")
        assert own > other + 0.5 and retrieval >= 0.9, (a, b, own, other, retrieval)
    for lang in LANGS:
        out = tr.e2t.predict(emb[lang], target_lang=lang, batch_size=64, beam_size=1)
        exact = sum(o == r for o, r in zip(out, held[lang])) / n
        print(f"decode {lang} exact match {exact:.2f} on {n} held-out sentences")
        assert exact >= 0.8, list(zip(out, held[lang]))[:4]
    # the stage's translations of the held-out references, scored against the toy's gold ones
    targets = require_targets(cfg, ds)
    for lang in ("eng_Latn", "fra_Latn"):
        with TargetReader(targets[lang]) as r:
            hyp = [t for split in ("dev", "test") for t in r.texts(split)]
        bleu = sacrebleu.corpus_bleu(hyp, [held[lang]]).score
        print(f"tiny SONAR translation deu->{lang}: BLEU {bleu:.1f}")
        assert bleu >= 50


# ------------------------------------------------------------------ crash safety


def _cli(cache: Path, root: Path) -> list[str]:
    cmd = [str(REPO / ".venv/bin/slt-pipe"), "embed-targets", "--dataset", "toy", "--root", str(root),
           "--cache", str(cache), "--profile", "tiny", "--langs", "deu,eng,fra", "--translator", "sonar"]
    for k, v in {**SETTINGS, **KILL_SETTINGS, "device": "cpu"}.items():
        if k != "translator":
            cmd += ["--set", f"embed.{k}={str(v).lower() if isinstance(v, bool) else v}"]
    return cmd


def _kill_when(cmd: list[str], cwd: Path, ready) -> bool:
    """Start `cmd`, SIGKILL it as soon as `ready()` holds; False if it finished first."""
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while proc.poll() is None:
            if ready():
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                return True
            time.sleep(0.02)
        return False
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def _spy_chunk_writes(monkeypatch) -> dict[tuple[str, str, str], str]:
    """(kind, entry dir name, chunk file) -> sha256 of every resumable chunk the stage writes in this
    process, recorded after the project's own writer (extract.text.chunks) has written it."""
    import hashlib

    import extract.text.chunks as chunks_mod

    written: dict[tuple[str, str, str], str] = {}

    def record(path: Path) -> None:
        path = Path(path)
        key = (path.parent.parent.name, path.parent.name.removesuffix(".partial"), path.name)
        assert key not in written, f"chunk written twice in one run: {key}"
        written[key] = hashlib.sha256(path.read_bytes()).hexdigest()

    def spy(original):
        def wrapped(path, *a, **k):
            out = original(path, *a, **k)
            record(path)
            return out
        return wrapped

    monkeypatch.setattr(chunks_mod, "save_array", spy(chunks_mod.save_array))
    monkeypatch.setattr(chunks_mod, "save_translations", spy(chunks_mod.save_translations))
    return written


def _partial_chunks(cache: Path) -> dict[tuple[str, str, str], str]:
    """The same map for the chunk files a killed run left in `.partial` entries."""
    import hashlib

    return {(p.parent.parent.name, p.parent.name.removesuffix(".partial"), p.name): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(cache.glob("*/*.partial/*")) if re.fullmatch(r"chunk-\d{5}\.json|\w+-emb-\d{5}\.npy", p.name)}


@pytest.mark.slow
def test_sigkill_mid_run_then_rerun_gives_identical_hdf5(tmp_path, monkeypatch):
    """Kill once after the first translations entry is published and once mid-embedding; the third run
    finishes, and its HDF5 files equal an uninterrupted run's in every dataset and attribute. The third run
    computes exactly the chunks the killed runs had not finished: every chunk they left (the bytes the
    clean run wrote for it) is read, not redone, and the sentence counts it reports are the rest."""
    from extract.datasets.toy import make_toy
    from pipeline.embed_stage import embed_targets

    root = tmp_path / "toy"
    make_toy(root, videos=KILL_VIDEOS, seed=0)
    with monkeypatch.context() as m:
        clean_chunks = _spy_chunk_writes(m)
        clean = embed_targets(make_cfg(tmp_path / "clean", root, **KILL_SETTINGS), QUIET)
    assert {k[0] for k in clean_chunks} == {"translations", "targets"}
    cache = tmp_path / "cache"
    # share the clean run's tiny SONAR (a content-addressed entry) instead of training it again
    tiny = next((tmp_path / "clean" / "tiny-sonar").glob("*/manifest.json")).parent
    shutil.copytree(tiny, cache / "tiny-sonar" / tiny.name)
    cmd = _cli(cache, root)

    published = lambda kind: list(cache.glob(f"{kind}/*/manifest.json"))  # noqa: E731
    assert _kill_when(cmd, tmp_path, lambda: published("translations")), "run finished before the kill"
    assert len(published("targets")) < len(LANGS)
    assert list(cache.glob("*/*.partial")), "the killed run left its work in progress"
    assert _kill_when(cmd, tmp_path, lambda: list(cache.glob("targets/*.partial/*.npy")))
    assert len(published("targets")) < len(LANGS)

    left = _partial_chunks(cache)
    assert any(k[0] == "targets" for k in left), "no finished embedding chunk to resume from"
    assert {k: clean_chunks.get(k) for k in left} == left, "a leftover chunk differs from the clean run's"
    done = {(m.parent.parent.name, m.parent.name) for kind in ("translations", "targets") for m in published(kind)}
    todo = {k: v for k, v in clean_chunks.items() if k not in left and (k[0], k[1]) not in done}
    assert todo, "nothing left for the third run to compute"

    left_rows: dict[str, int] = {}  # targets key -> sentences in its leftover embedding chunks
    for kind, key, name in left:
        if kind == "targets":
            left_rows[key] = left_rows.get(key, 0) + len(np.load(cache / kind / f"{key}.partial" / name))
    rerun_chunks = _spy_chunk_writes(monkeypatch)  # the third run in this process: the CLI's settings (same keys)
    again = embed_targets(make_cfg(cache, root, **KILL_SETTINGS), QUIET)
    assert not again.failures
    assert not set(rerun_chunks) & set(left), "finished chunks were computed again"
    assert rerun_chunks == todo, "the third run must compute exactly the chunks not finished before"
    assert not list(cache.glob("*/*.partial"))
    clean_sum = {r.lang: r for r in clean.summary}
    for r in again.summary:
        key = clean.entries[r.lang].key
        if ("targets", key) in done:
            assert r.status == "cached" and r.embedded == 0, r
        else:  # the sentences of the leftover chunks were read, only the others embedded
            assert r.status == "built" and r.embedded == clean_sum[r.lang].embedded - left_rows.get(key, 0), r
    for lang, entry in clean.entries.items():
        again_h5 = cache / "targets" / entry.key / "targets.h5"
        assert again_h5.is_file(), f"{lang}: same inputs must give the same key"
        assert_same_h5(entry.dir / "targets.h5", again_h5)


# ------------------------------------------------------------------ errors and the NLLB path


def test_unknown_language_and_mismatched_tiny_pair(built):
    from pipeline.embed_stage import embed_targets

    cfg, _, _ = built
    with pytest.raises(SltPipeError, match="eng_Latn"):
        embed_targets(make_cfg(cfg.cache.dir, cfg.dataset.root, langs=["deu", "englsh"]), QUIET)
    with pytest.raises(SltPipeError, match="only work as a pair"):
        embed_targets(make_cfg(cfg.cache.dir, cfg.dataset.root, sonar_decoder="text_sonar_basic_decoder"), QUIET)


def test_a_failing_language_is_reported_and_the_others_finish(built, monkeypatch):
    import extract.text.embed as et
    from pipeline.embed_stage import embed_targets

    cfg, _, _ = built
    real = et.translate_texts

    def flaky(texts, src, tgt, *a, **k):
        if tgt == "eng_Latn":
            raise CacheError("translator returned 0 sentences for 3")
        return real(texts, src, tgt, *a, **k)

    monkeypatch.setattr(et, "translate_texts", flaky)
    # beam 2: another translator identity, so the dev translations are not in the cache yet
    dev = make_cfg(cfg.cache.dir, cfg.dataset.root, splits=["dev"], beam_size=2)
    report = embed_targets(dev, QUIET)
    assert [lang for lang, _ in report.failures] == ["eng_Latn"]
    assert set(report.entries) == {"deu_Latn", "fra_Latn"}
    status = {r.lang: r.status for r in report.summary}
    assert status == {"deu_Latn": "built", "eng_Latn": "failed", "fra_Latn": "built"}
    assert not list(Path(cfg.cache.dir).glob("*/*.partial"))  # the failed language left nothing behind


def _published_langs(cache: Path) -> dict[str, dict]:
    """Language -> manifest of every published targets entry."""
    manifests = (json.loads(p.read_text()) for p in cache.glob("targets/*/manifest.json"))
    return {m["lang"]: m for m in manifests}


def _cache_with_tiny_sonar_of(built, path: Path) -> Path:
    """A fresh cache holding only the module's tiny SONAR (a content-addressed entry: same corpus, same key)."""
    tiny = next(Path(built[0].cache.dir, "tiny-sonar").glob("*/manifest.json")).parent
    shutil.copytree(tiny, path / "tiny-sonar" / tiny.name)
    return path


def _garbage_for(lang: str, output: str, monkeypatch) -> None:
    """Make the translator write `output` for every sentence in `lang` (a translator that lacks it)."""
    import extract.text.embed as et

    real = et.translate_texts
    monkeypatch.setattr(et, "translate_texts", lambda texts, src, tgt, *a, **k: (
        [output] * len(texts) if tgt == lang else real(texts, src, tgt, *a, **k)))


def test_translations_failing_the_quality_gates_are_refused_and_the_others_published(built, tmp_path, monkeypatch):
    from pipeline.embed_stage import embed_targets

    cache = _cache_with_tiny_sonar_of(built, tmp_path / "cache")
    _garbage_for("fra_Latn", "。", monkeypatch)
    cfg = make_cfg(cache, built[0].dataset.root, splits=["dev"])
    log = io.StringIO()
    report = embed_targets(cfg, Console(file=log, width=300))
    assert [lang for lang, _ in report.failures] == ["fra_Latn"]  # the CLI exits 1 on failures
    said = " ".join(log.getvalue().split())  # rich wraps long lines
    assert "loading SONAR encoder tiny ..." in said and "loading SONAR decoder tiny: " in said  # not silence
    assert "refused " + " ".join(report.failures[0][1].splitlines()[0].split()) in said
    assert set(report.entries) == {"deu_Latn", "eng_Latn"} and set(_published_langs(cache)) == {"deu_Latn", "eng_Latn"}
    assert not list(cache.glob("targets/*.partial"))
    n = len(set(s.text for s in built[2].samples["dev"]))
    rows = {r.lang: r for r in report.summary}
    assert rows["fra_Latn"].status == "refused" and rows["fra_Latn"].gate == f"FAIL {n}/0/0/0 of {n}"
    assert rows["eng_Latn"].gate.startswith("ok 0/0/0/") and rows["deu_Latn"].gate == "reference (not gated)"
    message = report.failures[0][1]
    assert f"fra_Latn: {n} of {n} sonar translations from deu_Latn (100%) fail the quality gates" in message
    assert message.count(" -> '。'  (empty output (only '。'))") == 3  # the worst three examples
    assert "--allow-poor-translations" in message and re.search(r"drop it: `[^`]* --langs deu_Latn,eng_Latn[ `]", message)
    assert "translations.json: " in message  # the file holding the bad translations
    gates = {lang: m["quality_gate"] for lang, m in _published_langs(cache).items()}
    assert gates["deu_Latn"]["applied"] is False
    assert gates["eng_Latn"]["applied"] and gates["eng_Latn"]["passed"] and gates["eng_Latn"]["checked"] == n
    assert gates["eng_Latn"]["thresholds"]["max_bad_fraction"] == cfg.embed.gate_max_bad_fraction

    allowed = make_cfg(cache, built[0].dataset.root, splits=["dev"], allow_poor_translations=True)
    report = embed_targets(allowed, QUIET)
    assert not report.failures and report.calls["translate"] == 0  # the refused run's translations are reused
    gate = _published_langs(cache)["fra_Latn"]["quality_gate"]
    assert gate["published_despite_failing"] and gate["allow_poor_translations"] and not gate["passed"]
    assert gate["empty"] == n and gate["worst"][0]["output"] == "。"
    assert {r.lang: r.gate for r in report.summary}["fra_Latn"] == f"POOR, allowed {n}/0/0/0 of {n}"


def test_an_nllb_without_the_language_token_is_refused_before_any_model_load(built, tmp_path, monkeypatch):
    """A snapshot's tokenizer is asked first (extract.text.nllb.nllb_missing_langs, tested in test_text_assets);
    a language it lacks is refused before NLLB or SONAR is loaded, the others are served."""
    import extract.text.nllb as nl
    from pipeline.embed_stage import embed_targets

    def boom(*a, **k):
        raise AssertionError("a model was loaded before the languages were checked")

    monkeypatch.setattr(nl, "nllb_missing_langs", lambda model, langs: [x for x in langs if x == "eng_Latn"])
    monkeypatch.setattr(nl, "NllbTranslator", boom)
    cfg = make_cfg(built[0].cache.dir, built[0].dataset.root, langs=["deu", "eng"], translator="nllb",
                   nllb_model=str(tmp_path / "my-nllb"))
    report = embed_targets(cfg, QUIET)
    assert [r.status for r in report.summary] == ["cached", "refused"] and report.calls["translate"] == 0
    assert "NLLB model" in report.failures[0][1] and "has no language token for eng_Latn" in report.failures[0][1]


def test_long_preparations_report_progress_off_a_terminal():
    """Off a terminal (logs, CI) training steps show every tenth of the way and model loads say how
    long they took; on a terminal the same calls drive a live bar and a spinner."""
    import io

    from extract.text.progress import status as _status
    from extract.text.progress import steps as _steps

    log = io.StringIO()
    console = Console(file=log, width=200)
    with _steps(console, "train tiny SONAR", 40) as on_step:
        for step in range(40):
            on_step(step, 1.0 / (step + 1))
    with _status(console, "loading SONAR encoder tiny"):
        pass
    lines = log.getvalue().splitlines()
    assert [ln.split(",")[0].strip() for ln in lines[:10]] == [f"train tiny SONAR: step {4 * i}/40" for i in range(1, 11)]
    assert "loss 0.025" in lines[9] and lines[10] == "loading SONAR encoder tiny ..."
    assert lines[11].startswith("loading SONAR encoder tiny: ") and lines[11].endswith("s")
    live = Console(file=io.StringIO(), force_terminal=True, width=120)
    with _steps(live, "train tiny NLLB", 5) as on_step, _status(Console(file=io.StringIO()), "x"):
        on_step(4, 0.5)


def test_bad_gate_thresholds_are_refused_with_the_field(built):
    from pipeline.embed_stage import embed_targets

    cfg = make_cfg(built[0].cache.dir, built[0].dataset.root, gate_max_bad_fraction=1.5)
    with pytest.raises(SltPipeError) as e:
        embed_targets(cfg, QUIET)
    assert "embed.gate_max_bad_fraction = 1.5 is out of range" in str(e.value)
    assert "--set embed.gate_max_bad_fraction=0.05" in str(e.value)


def test_missing_sonar_weights_name_the_file(built, tmp_path, monkeypatch):
    from cache.errors import WeightsError
    from pipeline.embed_stage import embed_targets

    cfg, _, _ = built
    monkeypatch.setenv("FAIRSEQ2_CACHE_DIR", str(tmp_path / "fairseq2-cache"))
    monkeypatch.delenv("SLT_PIPE_DOWNLOAD", raising=False)
    paper = make_cfg(tmp_path / "cache", cfg.dataset.root, langs=["deu"], sonar_encoder="text_sonar_basic_encoder",
                     sonar_decoder="text_sonar_basic_decoder")
    with pytest.raises(WeightsError) as e:
        embed_targets(paper, QUIET)
    assert "text_sonar_basic_encoder" in str(e.value) and str(tmp_path / "fairseq2-cache") in str(e.value)
    assert not list((tmp_path / "cache").glob("targets/*/manifest.json"))


def test_nllb_translator_path_with_the_tiny_nllb(built):
    """translator=nllb, nllb_model=tiny: a tiny M2M100 in HF format, built once into the cache. Trained
    20 steps it writes empty strings: the gates refuse them, --allow-poor-translations publishes them."""
    from cache.targets import TargetReader
    from pipeline.embed_stage import embed_targets

    cfg, first, _ = built
    sonar = make_cfg(cfg.cache.dir, cfg.dataset.root, langs=["deu", "eng"], splits=["dev"])
    nllb = make_cfg(cfg.cache.dir, cfg.dataset.root, langs=["deu", "eng"], splits=["dev"], translator="nllb",
                    tiny_nllb_steps=20)
    by_sonar = embed_targets(sonar, QUIET)
    refused = embed_targets(nllb, QUIET)
    assert [lang for lang, _ in refused.failures] == ["eng_Latn"] and "tiny-nllb translations" in refused.failures[0][1]
    report = embed_targets(make_cfg(cfg.cache.dir, cfg.dataset.root, langs=["deu", "eng"], splits=["dev"],
                                    translator="nllb", tiny_nllb_steps=20, allow_poor_translations=True), QUIET)
    assert not report.failures and report.calls["translate"] == 0
    assert report.entries["deu_Latn"].key == by_sonar.entries["deu_Latn"].key  # source: no translator in its key
    eng = report.entries["eng_Latn"]
    assert eng.key != by_sonar.entries["eng_Latn"].key  # another translator, another entry
    assert list(Path(cfg.cache.dir, "tiny-nllb").glob("*/config.json"))
    with TargetReader(eng.dir) as r:
        assert set(r.sources("dev")) == {"tiny-nllb"} and r.splits == ["dev"]
        assert '"kind": "nllb"' in r.translator


# ------------------------------------------------------------------ Ray workers


@pytest.mark.slow
def test_ray_workers_publish_the_bytes_of_the_in_process_run(built, local_ray, tmp_path):
    """embed.workers=2: translation and embedding chunks run on two Ray actors, small batches so that
    each language is many chunks taken in any order; every targets file is byte-identical to the
    in-process run's, under the same key, and the model calls are those of an in-process run."""
    from extract.text.chunks import RESUME_CHUNK_BATCHES
    from pipeline.embed_stage import embed_targets

    cfg, first, _ = built
    small = {"batch_size": 1, "langs": ["deu", "eng"]}
    cache = tmp_path / "cache"
    tiny = next((Path(cfg.cache.dir) / "tiny-sonar").glob("*/manifest.json")).parent
    here = embed_targets(_with_tiny(tmp_path / "here", tiny, cfg, small), QUIET)
    ray_run = embed_targets(_with_tiny(cache, tiny, cfg, {**small, "workers": 2}), QUIET)
    assert not here.failures and not ray_run.failures
    distinct = len({s.text for s in built[2].samples["dev"]})
    assert distinct > 2 * RESUME_CHUNK_BATCHES, "the split must be several chunks for the order to vary"
    assert ray_run.calls == here.calls and here.calls["translate"] > 0 and here.calls["embed"] > 0
    for lang in ("deu_Latn", "eng_Latn"):
        a, b = here.entries[lang], ray_run.entries[lang]
        assert a.key == b.key
        assert (a.dir / "targets.h5").read_bytes() == (b.dir / "targets.h5").read_bytes(), lang
    assert not list(cache.glob("*/*.partial")) and not list(cache.glob("targets/*/*.npy"))


def _with_tiny(cache: Path, tiny: Path, cfg, embed: dict):
    """A config on `cache` holding a copy of the shared tiny SONAR, the dev split only."""
    if not (cache / "tiny-sonar" / tiny.name).exists():
        shutil.copytree(tiny, cache / "tiny-sonar" / tiny.name)
    return make_cfg(cache, cfg.dataset.root, splits=["dev"], **embed)

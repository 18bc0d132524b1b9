"""The embed-targets stage on a real toy corpus and cache: keys, reuse, resume after SIGKILL, quality.

One toy corpus and one cache are built once for the module (tiny SONAR trained on the toy's
train-split sentences, translations by the tiny SONAR translator); the tests then re-run
the stage as a user would and read the HDF5 files with plain h5py.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from rich.console import Console

from cache.errors import CacheError, SltPipeError
from pipeline.config import build_config

VIDEOS = 240
"""The demo's corpus size: 192 train sentences teach the tiny SONAR (default settings)."""
LANGS = ["deu_Latn", "eng_Latn", "fra_Latn"]
SETTINGS = {"translator": "sonar", "beam_size": 1, "batch_size": 128, "references": False}
"""Greedy tiny-SONAR translation (exact on this toy, and quick) of every language, the toy's own eng/fra
set aside so that the translation machinery is what these tests exercise."""
KILL_VIDEOS = 40
KILL_SETTINGS = {"tiny_sonar_steps": 40, "batch_size": 8}
"""The crash test's own small corpus: quality is irrelevant there, many small batches are the point."""
QUIET = Console(stderr=True, quiet=True)
REPO = Path(__file__).parents[1]


def make_cfg(cache: Path, root: Path, langs=LANGS, splits=("train", "dev", "test"), **embed: object):
    embed = {**SETTINGS, **embed}
    return build_config({
        "profile": "tiny",
        "dataset": {"name": "toy", "root": str(root), "splits": list(splits)},
        "cache": {"dir": str(cache)},
        "embed": {"langs": list(langs), "device": "cpu", **embed},
    })


def h5_content(path: Path) -> dict:
    """Every dataset and attribute of an HDF5 file, read with plain h5py."""
    out: dict = {}
    with h5py.File(path, "r") as f:
        out["attrs"] = {k: f.attrs[k] for k in f.attrs}
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return out


def assert_same_h5(a: Path, b: Path) -> None:
    ca, cb = h5_content(a), h5_content(b)
    assert ca.keys() == cb.keys()
    for k in ca:
        if k == "attrs":
            assert {x: str(v) for x, v in ca[k].items()} == {x: str(v) for x, v in cb[k].items()}
        else:
            np.testing.assert_array_equal(ca[k], cb[k], err_msg=k)


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    from extract.datasets.toy import make_toy

    root = tmp_path_factory.mktemp("toy")
    make_toy(root, videos=VIDEOS, seed=0)
    return root


@pytest.fixture(scope="module")
def built(tmp_path_factory, toy):
    """(cfg, report, dataset) of a clean first run: trains the tiny SONAR, builds deu/eng/fra."""
    from pipeline.dataset import open_dataset
    from pipeline.embed_stage import embed_targets

    cfg = make_cfg(tmp_path_factory.mktemp("cache"), toy)
    report = embed_targets(cfg, QUIET)
    return cfg, report, open_dataset(cfg)


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
    import extract.embed_targets as et
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
    import extract.embed_targets as et
    import extract.nllb as nl
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


def test_adding_a_language_translates_and_embeds_only_it(built):
    from pipeline.embed_stage import embed_targets, require_targets

    cfg, first, ds = built
    cfg4 = make_cfg(cfg.cache.dir, cfg.dataset.root, langs=["deu", "eng", "fra", "spa"])
    report = embed_targets(cfg4, QUIET)
    by_lang = {r.lang: r for r in report.summary}
    assert [by_lang[lang].status for lang in LANGS] == ["cached"] * 3
    assert by_lang["spa_Latn"].status == "built"
    # each distinct reference is translated once, each distinct translation embedded once: spa's, nobody else's
    from cache.targets import TargetReader

    with TargetReader(report.entries["spa_Latn"].dir) as r:
        spa = {split: set(r.texts(split)) for split in cfg.dataset.splits}
    src = {split: {s.text for s in ds.samples[split]} for split in cfg.dataset.splits}
    batches = lambda d: sum(-(-len(v) // cfg.embed.batch_size) for v in d.values())  # noqa: E731
    assert report.calls == {"translate": batches(src), "embed": batches(spa)}
    assert by_lang["spa_Latn"].translated == sum(map(len, src.values()))
    assert by_lang["spa_Latn"].embedded == sum(map(len, spa.values()))
    for lang in LANGS:  # the others keep their keys
        assert report.entries[lang].key == first.entries[lang].key
    assert set(require_targets(cfg4, ds)) == {*LANGS, "spa_Latn"}


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
    assert "ita_Latn" in str(e.value) and "slt-pipe embed-targets --dataset toy --langs deu_Latn,ita_Latn" in str(e.value)
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
    from extract.nllb import SonarTranslator
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


@pytest.mark.slow
def test_sigkill_mid_run_then_rerun_gives_identical_hdf5(tmp_path):
    """Kill once after the first translations entry is published and once mid-embedding; the third run
    finishes, and its HDF5 files equal an uninterrupted run's in every dataset and attribute."""
    from extract.datasets.toy import make_toy
    from pipeline.embed_stage import embed_targets

    root = tmp_path / "toy"
    make_toy(root, videos=KILL_VIDEOS, seed=0)
    clean = embed_targets(make_cfg(tmp_path / "clean", root, **KILL_SETTINGS), QUIET)
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

    res = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert not list(cache.glob("*/*.partial"))
    for lang, entry in clean.entries.items():
        again = cache / "targets" / entry.key / "targets.h5"
        assert again.is_file(), f"{lang}: same inputs must give the same key"
        assert_same_h5(entry.dir / "targets.h5", again)


# ------------------------------------------------------------------ errors and the NLLB path


def test_unknown_language_and_mismatched_tiny_pair(built):
    from pipeline.embed_stage import embed_targets

    cfg, _, _ = built
    with pytest.raises(SltPipeError, match="eng_Latn"):
        embed_targets(make_cfg(cfg.cache.dir, cfg.dataset.root, langs=["deu", "englsh"]), QUIET)
    with pytest.raises(SltPipeError, match="only work as a pair"):
        embed_targets(make_cfg(cfg.cache.dir, cfg.dataset.root, sonar_decoder="text_sonar_basic_decoder"), QUIET)


def test_a_failing_language_is_reported_and_the_others_finish(built, monkeypatch):
    import extract.embed_targets as et
    from pipeline.embed_stage import embed_targets

    cfg, _, _ = built
    real = et.translate_texts

    def flaky(texts, src, tgt, *a, **k):
        if tgt == "ita_Latn":
            raise CacheError("translator returned 0 sentences for 3")
        return real(texts, src, tgt, *a, **k)

    monkeypatch.setattr(et, "translate_texts", flaky)
    dev = make_cfg(cfg.cache.dir, cfg.dataset.root, langs=["deu", "ita", "nld"], splits=["dev"])
    report = embed_targets(dev, QUIET)
    assert [lang for lang, _ in report.failures] == ["ita_Latn"]
    assert set(report.entries) == {"deu_Latn", "nld_Latn"}
    status = {r.lang: r.status for r in report.summary}
    assert status == {"deu_Latn": "built", "ita_Latn": "failed", "nld_Latn": "built"}
    assert not list(Path(cfg.cache.dir).glob("*/*.partial"))  # the failed language left nothing behind


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
    """translator=nllb, nllb_model=tiny: a tiny M2M100 in HF format, built once into the cache."""
    from cache.targets import TargetReader
    from pipeline.embed_stage import embed_targets

    cfg, first, _ = built
    sonar = make_cfg(cfg.cache.dir, cfg.dataset.root, langs=["deu", "eng"], splits=["dev"])
    nllb = make_cfg(cfg.cache.dir, cfg.dataset.root, langs=["deu", "eng"], splits=["dev"], translator="nllb",
                    tiny_nllb_steps=20)
    by_sonar = embed_targets(sonar, QUIET)
    report = embed_targets(nllb, QUIET)
    assert not report.failures
    assert report.entries["deu_Latn"].key == by_sonar.entries["deu_Latn"].key  # source: no translator in its key
    eng = report.entries["eng_Latn"]
    assert eng.key != by_sonar.entries["eng_Latn"].key  # another translator, another entry
    assert list(Path(cfg.cache.dir, "tiny-nllb").glob("*/config.json"))
    with TargetReader(eng.dir) as r:
        assert set(r.sources("dev")) == {"tiny-nllb"} and r.splits == ["dev"]
        assert '"kind": "nllb"' in r.translator

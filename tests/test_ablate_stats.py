"""The ablation summary's statistics on hand-made trials: mean/std over seeds, the paired bootstrap
against the baseline, its marks, and the grid options. No training: a second each."""

from __future__ import annotations

import numpy as np
import pytest

from cache.errors import SltPipeError
from pipeline import ablate_results as tables
from pipeline import ablate_stage as ab

REFS = [f"der hund {w} im garten am morgen" for w in ("schläft", "bellt", "spielt", "läuft", "frisst", "sitzt")] * 8


def trial(variant: str, seed: int, hyps: list[str]) -> dict:
    import sacrebleu

    bleu = sacrebleu.corpus_bleu(hyps, [REFS]).score
    chrf = sacrebleu.corpus_chrf(hyps, [REFS]).score
    ids = [f"t{k}" for k in range(len(REFS))]
    return {"variant": variant, "seed": seed, "seed_index": seed, "train_s": 1.0,
            "scores": {"deu_Latn": {"bleu": bleu, "chrf": chrf, "case": "mixed", "references": "reference",
                                    "kind": "references", "cosine": 0.5}},
            "predictions": {"deu_Latn": {"ids": ids, "refs": REFS, "hyps": hyps}}}


def garble(k: int, seed: int) -> list[str]:
    """Every k-th sentence loses its verb (which one depends on the seed)."""
    return [r.replace(r.split()[2], "xx") if (i + seed) % k == 0 else r for i, r in enumerate(REFS)]


def test_identical_systems_are_not_significant_and_a_worse_one_is():
    base = [trial("base", s, garble(3 + s, s)) for s in range(3)]
    same = [trial("same", s, garble(3 + s, s)) for s in range(3)]
    worse = [trial("worse", s, [" ".join(r.split()[:2]) for r in REFS]) for s in range(3)]
    assert tables.paired_test(base, same, "deu_Latn")["p_bleu"] == pytest.approx(1.0)
    p = tables.paired_test(base, worse, "deu_Latn")
    assert p["p_bleu"] < 0.01 and p["p_chrf"] < 0.01
    summary = {r["variant"]: r for r in tables.summarize(base + same + worse, "base")}
    assert "p_bleu" not in summary["base"] and summary["worse"]["p_bleu"] < 0.01
    bleus = [t["scores"]["deu_Latn"]["bleu"] for t in base]
    assert summary["base"]["bleu_mean"] == pytest.approx(np.mean(bleus))
    assert summary["base"]["bleu_std"] == pytest.approx(np.std(bleus, ddof=1)) and summary["base"]["bleu_std"] > 0
    assert tables.mark(summary["worse"], "bleu").endswith(" *)") and "±" in tables.mark(summary["worse"], "bleu")
    assert not tables.mark(summary["same"], "bleu").endswith("*)")
    md = tables.summary_markdown(list(summary.values()))
    assert md.splitlines()[0] == "| variant | deu_Latn BLEU | deu_Latn chrF | seeds | n |"
    assert "| worse |" in md and "paired bootstrap" in md


def test_seeds_are_paired_by_index_and_different_sentences_refused():
    base = [trial("base", s, garble(3, s)) for s in range(2)]
    other = [trial("other", s, garble(3, s)) for s in range(2)]
    other[1]["predictions"]["deu_Latn"] = {**other[1]["predictions"]["deu_Latn"], "ids": ["x"] * len(REFS)}
    with pytest.raises(SltPipeError, match="different test sentences"):
        tables.paired_test(base, other, "deu_Latn")
    zero = trial("zs", 0, garble(3, 0))
    del zero["scores"]["deu_Latn"]["bleu"]  # a zero-shot language without references has no BLEU to test
    assert tables.paired_test(base, [zero], "deu_Latn") == {}


def test_grid_options_and_shipped_grids(tmp_path):
    grid = tmp_path / "g.toml"
    grid.write_text('[ablate]\nseeds = 2\nbaseline = "b"\nlangs = "deu,fra"\n[variants]\nb = []\n')
    opts = ab.grid_options(grid)
    assert (opts.seeds, opts.baseline, opts.langs) == (2, "b", ["deu", "fra"])
    assert ab.grid_options(grid, seeds=5).seeds == 5  # the command line wins
    grid.write_text('[ablate]\nrepeats = 2\n')
    with pytest.raises(SltPipeError, match="unknown key"):
        ab.grid_options(grid)
    for name in ("alignment", "augmentation", "encoders", "zero-shot"):
        path = ab.grid_path(name)
        assert path.is_file() and ab.grid_options(path).seeds == 3
        assert ab.grid_options(path).baseline in ab.load_toml(path)["variants"]
    with pytest.raises(SltPipeError, match="alignment, augmentation, encoders, zero-shot"):
        ab.grid_path(tmp_path / "nope")


def test_trial_paths_are_made_absolute(tmp_path, monkeypatch):
    """Ray workers run in slt-pipe's own directory: a relative --root or --cache must not reach them."""
    from pipeline.config import build_config

    monkeypatch.chdir(tmp_path)
    (tmp_path / "vb.safetensors").write_bytes(b"")
    cfg = build_config({"profile": "tiny", "dataset": {"name": "toy", "root": "toy"}, "cache": {"dir": "c"},
                        "train": {"out": "runs/x", "init_visual_block": "vb.safetensors"}})
    ab.absolute_paths(cfg)
    assert (cfg.dataset.root, cfg.cache.dir, cfg.train.out) == (tmp_path / "toy", tmp_path / "c", tmp_path / "runs/x")
    assert cfg.train.init_visual_block == str(tmp_path / "vb.safetensors")


def test_one_test_sentence_gets_no_significance_mark():
    """A paired bootstrap of one sentence (a 12-video toy's test split) is noise: no p, no `*`, 'n too small'."""
    def one(variant: str, seed: int, hyp: str) -> dict:
        t = trial(variant, seed, [hyp] * len(REFS))
        t["predictions"]["deu_Latn"] = {"ids": ["t0"], "refs": REFS[:1], "hyps": [hyp]}
        return t

    rows = [one("base", 0, REFS[0]), one("worse", 0, "xx")]
    assert tables.paired_test(rows[:1], rows[1:], "deu_Latn") == {"paired_n": 1}
    worse = {r["variant"]: r for r in tables.summarize(rows, "base")}["worse"]
    text = tables.mark(worse, "bleu")
    assert "*" not in text and "p=" not in text and text.endswith("(p: n too small, 1 sentence pair(s))")

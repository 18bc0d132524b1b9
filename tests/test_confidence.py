"""Every score carries its 95% interval and the sentences it rests on; a small split says it is noise.

The bootstrap itself (train.confidence) on hand-made numbers and sentences, checked against sacrebleu's own;
then evaluate end to end on the stand-in caches of test_eval_refs (5 test sentences, 30 dev), its
scores_SPLIT.json, log lines and score table; then the ablation summary's columns.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
import sacrebleu
from rich.console import Console
from stand_ins import make_tokenizer, make_toy_corpus
from test_ablate_stats import REFS, garble, trial
from test_eval_refs import EMB, LANGS, MACHINE, SourcedReader, _patched, _run_dir

from pipeline import ablate_results as tables
from pipeline.console import SltConsole
from train import confidence
from train import data as tdata
from train.evaluate import add_intervals, evaluate, score_table
from train.metrics import METRICS, bleu
from train.model import TrainInputs


def _width(ci: list[float]) -> float:
    return ci[1] - ci[0]


# ------------------------------------------------------------------ the bootstrap


def test_mean_interval_holds_the_mean_narrows_with_more_sentences_and_is_deterministic():
    values = list(np.random.default_rng(3).normal(0.2, 0.3, size=20))
    ci = confidence.mean_interval(values)
    assert ci[0] < np.mean(values) < ci[1]
    more = confidence.mean_interval(values * 4)  # the same sentences 4x: 4x the data, half the width
    assert more[0] < np.mean(values) < more[1] and _width(more) < 0.7 * _width(ci)
    assert confidence.mean_interval(values) == ci  # a fixed seed: reruns write the same json
    assert confidence.mean_interval(values, seed=confidence.SEED + 1) != ci


def test_bleu_and_chrf_intervals_are_sacrebleus_own_bootstrap(monkeypatch):
    hyps = garble(3, 0)
    monkeypatch.delenv("SACREBLEU_SEED", raising=False)  # sacrebleu's default seed
    got = bleu.intervals("deu_Latn", REFS, hyps)
    for key, metric in (("bleu", sacrebleu.metrics.BLEU(tokenize="13a")), ("chrf", sacrebleu.metrics.CHRF())):
        s = metric.corpus_score(hyps, [REFS], n_bootstrap=1000)
        assert got[f"{key}_ci95"] == pytest.approx([s._mean - s._ci, s._mean + s._ci])
        assert got[f"{key}_ci95"][0] < s.score < got[f"{key}_ci95"][1] and _width(got[f"{key}_ci95"]) > 0
    # deterministic whatever the environment says, and the environment is left as it was
    monkeypatch.setenv("SACREBLEU_SEED", "none")
    assert bleu.intervals("deu_Latn", REFS, hyps) == got
    assert bleu.intervals("deu_Latn", REFS, hyps) == got
    assert os.environ["SACREBLEU_SEED"] == "none"
    more = bleu.intervals("deu_Latn", REFS * 4, hyps * 4)
    assert _width(more["bleu_ci95"]) < _width(got["bleu_ci95"])


def test_a_corpus_interval_stays_within_0_to_100(monkeypatch):
    """sacrebleu's interval is symmetric about the resamples' mean: near 100 on 5 sentences it passes 100."""
    monkeypatch.delenv("SACREBLEU_SEED", raising=False)
    refs = ["der hund schläft im garten am morgen", "die katze spielt im haus", "es regnet heute sehr stark",
            "wir gehen morgen in die stadt", "das kind lacht laut"]
    hyps = [*refs[:4], "das kind lacht"]
    s = sacrebleu.metrics.BLEU().corpus_score(hyps, [refs], n_bootstrap=1000)
    assert s._mean + s._ci > 100
    lo, hi = bleu.intervals("deu_Latn", refs, hyps)["bleu_ci95"]
    assert lo == pytest.approx(s._mean - s._ci) and hi == 100.0 and lo < s.score < hi


def test_the_intervals_leave_the_point_estimates_and_signatures_as_they_were():
    hyps = garble(3, 1)
    plain = bleu.score("deu_Latn", REFS, hyps, "lc")
    from train.metrics.base import Sample

    fields = bleu.BLEU.produce(Sample("deu_Latn", "deu_Latn", "lc", hyps, None, None, None, refs=REFS)).fields
    assert {k: v for k, v in fields.items() if not k.endswith("_ci95")} == plain
    assert "bs:" not in fields["signature"] and set(fields) - set(plain) == {"bleu_ci95", "chrf_ci95"}


def test_the_warning_names_the_count_under_30_sentences():
    assert confidence.small_sample_warning({"with references": 5}).startswith("only 5 sentences:")
    assert confidence.small_sample_warning({"with references": 5, "cross-lingual": 5}).startswith("only 5 sentences:")
    mixed = confidence.small_sample_warning({"with references": 3, "cross-lingual": 40})
    assert mixed.startswith("only 3 sentences with references:")
    assert confidence.small_sample_warning({"with references": 30}) is None
    res = {"n": 30, "cosine": 0.5, "producers": {}}
    add_intervals(res, {"z_cos": [0.5] * 30})
    assert "warning" not in res and res["cosine_ci95"] == [0.5, 0.5] and res["ci"]["level"] == 0.95


# ------------------------------------------------------------------ evaluate


@pytest.fixture(scope="module")
def stand_ins(tmp_path_factory):
    """As test_eval_refs' (deu, fra: the dataset's own text; eng machine-translated), with a 5-sentence test
    split and a 30-sentence dev split."""
    feats, targets, sents = make_toy_corpus({"test": 5, "dev": 30}, LANGS, emb_dim=EMB)
    tok = make_tokenizer(sents, LANGS, tmp_path_factory.mktemp("tok"))
    sourced = {lang: SourcedReader(r, MACHINE if lang == "eng_Latn" else tdata.REFERENCE) for lang, r in targets.items()}
    return feats, sourced, tok


@pytest.fixture(scope="module")
def scored(stand_ins, tmp_path_factory):
    """(run dir, inputs, test scores, test log lines) of an untrained run, evaluated once for the module
    (the tests only read it; the stand-ins stay patched in while they run)."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        yield _scored(stand_ins, tmp_path_factory.mktemp("scored"), monkeypatch)


def _scored(stand_ins, tmp_path, monkeypatch):
    feats, _ = _patched(stand_ins, monkeypatch)
    inputs = TrainInputs(features={s: Path(f"/nonexistent/{s}") for s in ("test", "dev")},
                         targets={lang: Path(f"/nonexistent/{lang}") for lang in LANGS}, source_lang="deu_Latn",
                         decoder_spec="toy", encoder_spec="lookup")
    run = _run_dir(tmp_path / "a-run-directory-whose-path-is-longer-than-an-eighty-column-terminal", inputs,
                   feats["test"])
    log: list[str] = []
    return run, inputs, evaluate(run, inputs, "test", None, checkpoint="last", blaser=[], log=log.append), log


def test_evaluate_stores_an_interval_for_every_score_and_warns_on_5_sentences(scored):
    run, inputs, scores, log = scored
    saved = json.loads((run / "scores_test.json").read_text())
    for lang, s in saved.items():
        keys = [m.key for m in METRICS if m.key in s]
        assert {"bleu", "chrf", "cosine", "sonar_similarity"} <= set(keys)
        for k in keys:
            lo, hi = s[f"{k}_ci95"]
            assert isinstance(lo, float) and lo <= hi
        assert s["ci"] == {"level": 0.95, "method": s["ci"]["method"], "resamples": 1000, "seed": confidence.SEED}
        assert "BLEU, chrF: sacrebleu bootstrap" in s["ci"]["method"] and "over sentences" in s["ci"]["method"]
        assert s["n"] == 5 and s["warning"].startswith("only 5 sentences:")
        assert any(line.startswith(f"warning: test {lang}: only 5 sentences:") for line in log)
        assert "cosine between" in s["notes"]["sonar_similarity"]
    assert saved["eng_Latn"]["xl_n"] == 5 and "xl_sonar_similarity_ci95" in saved["eng_Latn"]
    assert any(line.startswith("test deu_Latn: BLEU ") and " on 5 sentences " in line for line in log)
    assert any(line.startswith("test deu_Latn: SONAR similarity ") and " on 5 sentences " in line for line in log)
    assert sum(line.startswith("note: SONAR sim: per sentence, the cosine") for line in log) == 1
    before = (run / "scores_test.json").read_bytes()
    evaluate(run, inputs, "test", None, checkpoint="last", blaser=[], log=lambda _: None)
    assert (run / "scores_test.json").read_bytes() == before  # deterministic


def test_a_split_of_30_sentences_has_no_warning(scored):
    run, inputs, _, _ = scored
    log: list[str] = []
    dev = evaluate(run, inputs, "dev", None, checkpoint="last", blaser=[], log=log.append)
    assert all(s["n"] == 30 and "warning" not in s and "bleu_ci95" in s for s in dev.values())
    assert not any("warning" in line for line in log)


@pytest.mark.parametrize("width", [80, 120])
def test_the_score_table_shows_intervals_and_n_and_never_breaks_a_path(scored, width):
    run, _, scores, _ = scored
    paths = [s["tsv"] for s in scores.values()]
    assert all(len(p) > 120 for p in paths)
    console = Console(width=width, record=True)
    console.print(score_table(f"test ({run.name})", scores), soft_wrap=True)
    text = console.export_text()
    lines = text.splitlines()
    for lang, s in scores.items():
        assert s["tsv"] in lines  # whole, on its own line
        assert confidence.format_interval(s["bleu_ci95"], ".2f") in text
        assert lang in next(line for line in lines if line.startswith("warning: ")) and "only 5 sentences" in text
    assert any("95% CI" in line and " n " in line for line in lines) and "resamples" in text
    assert "zero-shot: cross-lingual vs deu_Latn reference; machine" in text
    table = [line for line in lines if line[:1] in "┏┃┡│└"]
    assert table and all(len(line) <= width for line in table)
    assert all(line.rstrip().endswith(" 5 │") for line in table if "BLEU" in line)
    # slt-pipe's own console (what train_stage prints the table on) soft-wraps: the paths stay whole
    slt = SltConsole(width=width, record=True, soft_wrap=True)
    slt.print(score_table("test", scores))
    assert set(paths) <= set(slt.export_text().splitlines())
    # a plain rich Console (no soft_wrap) cuts a path too wide at its edge, but never wraps it
    plain = Console(width=width, record=True)
    plain.print(score_table("test", scores))
    rows = plain.export_text().splitlines()
    assert all(p[:width] in rows for p in paths) and not any(p[-12:] in r for p in paths for r in rows)


# ------------------------------------------------------------------ the ablation


def test_the_ablation_summary_gives_a_trials_interval_and_n(tmp_path):
    def with_intervals(t: dict, lo: float) -> dict:
        t["scores"]["deu_Latn"].update(n=len(REFS), bleu_ci95=[lo, lo + 10.0], chrf_ci95=[lo, lo + 4.0],
                                       cosine_ci95=[0.4, 0.6])
        return t

    base = [with_intervals(trial("base", s, garble(3 + s, s)), 50.0 + s) for s in range(3)]
    worse = [with_intervals(trial("worse", s, [" ".join(r.split()[:2]) for r in REFS]), 10.0) for s in range(3)]
    summary = {r["variant"]: r for r in tables.summarize(base + worse, "base")}
    b = summary["base"]
    assert (b["bleu_trial_ci95_lo"], b["bleu_trial_ci95_hi"]) == pytest.approx((51.0, 61.0)) and b["n"] == len(REFS)
    assert {"n", "bleu_trial_ci95_lo", "bleu_trial_ci95_hi", "cosine_trial_ci95_lo"} <= set(tables.SUMMARY_COLUMNS)
    assert "[51.00, 61.00]" in tables.mark(b, "bleu") and tables.mark(summary["worse"], "bleu").endswith(" *)")
    md = tables.summary_markdown(list(summary.values()))
    assert md.splitlines()[0].endswith("| seeds | n |") and f"| 3 | {len(REFS)} |" in md
    assert "one trial's 95% interval" in md and "warning" not in md  # 48 sentences
    tables.write_results(base + worse, list(summary.values()), tmp_path)
    with (tmp_path / tables.SUMMARY_FILE).open() as f:
        csv_rows = {r["variant"]: r for r in csv.DictReader(f)}
    assert float(csv_rows["base"]["bleu_trial_ci95_hi"]) == pytest.approx(61.0) and csv_rows["base"]["n"] == "48"
    small = [with_intervals(trial("base", 0, garble(3, 0)), 5.0)]
    small[0]["scores"]["deu_Latn"]["n"] = 5
    row = tables.summarize(small, "base")
    assert "warning: only 5 sentences:" in tables.summary_markdown(row)
    console = Console(width=200, record=True)
    console.print(tables.summary_table(row, 1))
    text = console.export_text()
    assert "only 5 sentences" in text and "[5.00, 15.00]" in text and "[lo, hi]: one trial's" in text

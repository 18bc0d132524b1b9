"""`slt-pipe report`: one offline HTML file of a run, its sample table sorted and filtered in a real browser.

The run directory is written by hand (what `slt-pipe train` and `evaluate` write), nothing is trained.
The browser tests render the page with headless Chromium (`--dump-dom`) and read the table it built, or
a layout probe's measurements (and a screenshot) at 1400 px; they skip without Chromium, except in CI
(`CI` set), where `.ci/run` installs it and a skip would hide a failure.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import struct
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cache.errors import SltPipeError
from pipeline.report import render, scores_table, write_report
from pipeline.report_chart import nice_ticks, svg_chart, tick_labels

TRICKY = '<b>&"bold" & </script><script>window.pwned=1</script>'
"""A reference that breaks any unescaped HTML, attribute or <script> block it lands in."""
LANGS = ("deu_Latn", "eng_Latn")
SIMS = {"deu_Latn": [0.91, 0.35, 0.62, None, 0.77], "eng_Latn": [0.12, 0.88, 0.55, 0.40, 0.05]}
"""Per-sample sonar_sim; None: the cell is empty (a sample without that score)."""


def _tsv(path: Path, lang: str, refs: list[str]) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f, delimiter="\t", quoting=csv.QUOTE_MINIMAL)  # as train.evaluate.score_split
        w.writerow(["id", "ref", "hyp", "sonar_sim", "sent_bleu"])
        for k, (ref, sim) in enumerate(zip(refs, SIMS[lang])):
            w.writerow([f"test/{k:04d}", ref, f"{lang} hypothesis {k}", "" if sim is None else f"{sim:.6f}", 10.0 * k])


@pytest.fixture
def run(tmp_path: Path) -> Path:
    """A finished run in an ablation (ABL/runs/full): configs, inputs, metrics, scores, two predictions TSVs."""
    run = tmp_path / "abl" / "runs" / "full"
    run.mkdir(parents=True)
    cache = tmp_path / "cache"
    (run / "config.json").write_text(json.dumps({"steps": 40, "lr": 3e-4, "w_mse": 1.0, "w_cos": 1.0, "seed": 0,
                                                 "out": str(run), "bleu_case": "auto"}, indent=2))
    (run / "pipeline.json").write_text(json.dumps({"profile": "tiny", "dataset": {"name": "toy", "splits": ["train", "dev", "test"]},
                                                   "train": {"steps": 40}}, indent=2))
    (run / "inputs.json").write_text(json.dumps({
        "features": {s: str(cache / "features" / f"feat{s}0123abcd") for s in ("train", "dev", "test")},
        "targets": {lang: str(cache / "targets" / f"tgt{lang[:3]}4567ef" / "targets.h5") for lang in LANGS},
        "source_lang": "deu_Latn", "decoder_spec": "tiny", "tiny_dir": None, "encoder_spec": "tiny", "dataset": "toy",
        "train_split": "train", "dev_split": "dev"}, indent=2))
    rows = [{"kind": "train", "step": s, "loss": 5.0 / s, "mse": 1.0 / s, "cos": 0.5 / s, "ce": 3.0 / s,
             "grad_norm": 1.5, "lr": 3e-4, "lora_lr": 1e-4, "elapsed_s": 2.0 * s} for s in range(1, 41)]
    rows += [{"kind": "eval", "step": s, "bleu": 3.0 * s / 10, "bleu_deu_Latn": 3.3, "chrf_deu_Latn": 20.0 + s}
             for s in (10, 20, 30, 40)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"kind": "train", "st')
    refs = {"deu_Latn": [TRICKY, "der zug kommt", "es regnet", "guten tag", "sonne"],
            "eng_Latn": ["the train comes", TRICKY, "it rains", "good day", "sun"]}
    scores = {}
    for lang in LANGS:
        _tsv(run / f"predictions_test_{lang}.tsv", lang, refs[lang])
        scores[lang] = {"bleu": 12.34, "chrf": 40.5, "bleu_lc": 12.34, "bleu_cased": 11.0, "case": "lc",
                        "signature": f"BLEU nrefs:1|case:lc|tok:13a|v:2.4 {lang}", "n": 5, "cosine": 0.81,
                        "references": "reference", "sonar_similarity": 0.6, "sonar_encoder": "tiny",
                        "blaser_qe": 3.21, "mystery_metric": 0.4242,
                        "producers": {"BLEU, chrF": "sacrebleu 2.4.3", "blaser_qe": "blaser_2_0_qe"},
                        "kind": "references", "tsv": str(run / f"predictions_test_{lang}.tsv")}
    (run / "scores_test.json").write_text(json.dumps(scores, indent=2))
    abl = run.parent.parent
    (abl / "results.csv").write_text("variant,lang,bleu_mean,bleu_std,p_value,sig\n"
                                     "full,deu_Latn,12.34,0.50,,\nno-cos,deu_Latn,10.10,0.40,0.03,*\n")
    return run


def test_the_page_is_self_contained_and_escaped(run):
    out = write_report(run)
    assert out == run / "report.html"
    page = out.read_text()
    assert not re.search(r"https?://", page), "no resource (or anything else) may be fetched"
    assert not re.search(r"<(link|img|iframe|object|embed)\b|\bsrc\s*=|@import|url\(", page, re.I)
    assert TRICKY not in page and "window.pwned" in page  # the text is there, escaped
    # exactly two scripts: the embedded data and the inline code, both whole (the reference closed none)
    assert len(re.findall(r"<script\b", page)) == 2 and len(re.findall(r"</script>", page)) == 2
    data = json.loads(re.search(r'<script type="application/json" id="samples-data">(.*?)</script>', page, re.S)[1])
    test = data["splits"]["test"]
    assert data["default"] == "test" and test["langs"] == list(LANGS) and len(test["rows"]) == 5
    keys = [c["key"] for c in test["columns"]]
    assert keys == ["id"] + [f"{lang}:{f}" for lang in LANGS for f in ("ref", "hyp", "sonar_sim", "sent_bleu")]
    assert test["rows"][0][1] == TRICKY and test["rows"][3][3] is None  # the empty score cell
    # config, cache keys, curves, scores (unknown keys too), producers, signature, ablation
    assert "&quot;w_mse&quot;: 1.0" in page and "features/feattest0123abcd" in page and "targets/tgtdeu4567ef" in page
    assert page.count("<svg") >= 3 and "train: loss" in page and "eval: bleu" in page and "<polyline" in page
    assert "1 line of metrics.jsonl skipped" in page
    assert '<th title="produced by sacrebleu 2.4.3">chrf</th>' in page
    for text in ("mystery_metric", "0.4242", "blaser_qe", "3.2100", "blaser_2_0_qe", "BLEU, chrF",
                 "BLEU nrefs:1|case:lc|tok:13a|v:2.4 deu_Latn"):
        assert text in page, text
    assert "<th>p_value</th>" in page and '<tr class="this"><td>full</td>' in page and "<td>*</td>" in page


def test_missing_pieces_are_said_and_a_non_run_is_refused(tmp_path, run):
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "config.json").write_text("{}")
    page = write_report(bare, tmp_path / "out" / "r.html").read_text()
    for text in ("no pipeline.json", "no inputs.json", "no metrics.jsonl yet", "no scores yet", "no predictions TSVs yet"):
        assert text in page, text
    assert "<script" not in page and "Ablation" not in page
    with pytest.raises(SltPipeError) as e:
        write_report(tmp_path / "nowhere")
    assert "nowhere" in e.value.render() and "slt-pipe train" in e.value.fix
    with pytest.raises(SltPipeError) as e:
        write_report(run.parent.parent)  # the ablation itself: the fix names one of its runs
    assert "runs" in e.value.fix and "--run" in e.value.fix
    with pytest.raises(SltPipeError, match="results.csv"):
        write_report(run, ablation=bare)


def test_cli_prints_the_path_and_takes_an_ablation(tmp_path, run):
    from pipeline.cli import app

    lone = tmp_path / "lone"
    shutil.copytree(run, lone)
    target = tmp_path / "r.html"
    r = CliRunner().invoke(app, ["report", "--run", str(lone), "--out", str(target), "--ablation", str(run.parent.parent)])
    assert r.exit_code == 0, r.output
    assert r.output.strip() == str(target) and "no-cos" in target.read_text()
    r = CliRunner().invoke(app, ["report", "--run", str(tmp_path / "nowhere")])
    assert r.exit_code != 0 and isinstance(r.exception, SltPipeError)


# ------------------------------------------------------------------ in a browser


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    if os.environ.get("CI"):
        pytest.fail("no chromium on PATH in CI: .ci/run installs Debian's chromium before the tests")
    pytest.skip("no chromium on PATH (apt-get install chromium)")


class _Table(HTMLParser):
    """The rendered sample table: [(id, {column: (text, data-v)})] in DOM order, and the status line."""

    def __init__(self):
        super().__init__()
        self.rows: list[tuple[str, dict[str, tuple[str, str | None]]]] = []
        self.status, self._in_body, self._cell, self._in_status = "", False, None, False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "tbody" and a.get("id") == "samples-body":
            self._in_body = True
        elif self._in_body and tag == "tr":
            self.rows.append((a["data-id"], {}))
        elif self._in_body and tag == "td":
            self._cell = a["data-col"]
            self.rows[-1][1][self._cell] = ("", a.get("data-v"))
        elif a.get("id") == "status":
            self._in_status = True

    def handle_endtag(self, tag):
        if tag == "tbody":
            self._in_body = False
        elif tag == "td":
            self._cell = None
        elif tag == "span":
            self._in_status = False

    def handle_data(self, data):
        if self._cell is not None:
            text, v = self.rows[-1][1][self._cell]
            self.rows[-1][1][self._cell] = (text + data, v)
        elif self._in_status:
            self.status += data


CHROMIUM_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                  "--disable-extensions", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync")
"""Headless, offline (the machine's network is closed: nothing may be tried)."""


def _chromium_run(chromium: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    r = subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr[-2000:]
    return r


def _render(chromium: str, page: Path, query: str, profile: Path) -> _Table:
    r = _chromium_run(chromium, profile, "--dump-dom", f"{page.resolve().as_uri()}?{query}")
    assert "</html>" in r.stdout, r.stderr[-2000:]
    table = _Table()
    table.feed(r.stdout)
    assert r.stdout.count("<script") == 2, "the reference opened a script of its own"
    return table


def test_the_browser_sorts_filters_and_shows_the_text_intact(run, tmp_path):
    chromium = _chromium()
    page = write_report(run)
    profile = tmp_path / "chromium-profile"

    t = _render(chromium, page, "", profile)  # by default one language: the first
    assert [i for i, _ in t.rows] == [f"test/{k:04d}" for k in range(5)]  # one row per sample, file order
    assert {col for _, cells in t.rows for col in cells} == {"id"} | {f"deu_Latn:{f}" for f in ("ref", "hyp", "sonar_sim", "sent_bleu")}
    assert t.rows[0][1]["deu_Latn:ref"][0] == TRICKY
    assert t.status.startswith("5 of 5 samples")
    t = _render(chromium, page, "lang=all", profile)  # every language side by side
    assert t.rows[0][1]["deu_Latn:ref"][0] == TRICKY and t.rows[1][1]["eng_Latn:ref"][0] == TRICKY
    assert len(t.rows[0][1]) == 1 + 2 * 4

    t = _render(chromium, page, "sort=sonar_sim&desc=1", profile)  # bare field: the first language's
    assert [i for i, _ in t.rows] == ["test/0000", "test/0004", "test/0002", "test/0001", "test/0003"]  # None last
    t = _render(chromium, page, "sort=eng_Latn:sonar_sim", profile)  # LANG:FIELD, no lang: that language is shown
    assert [i for i, _ in t.rows] == ["test/0004", "test/0000", "test/0003", "test/0002", "test/0001"]
    assert [float(c["eng_Latn:sonar_sim"][1]) for _, c in t.rows] == sorted(SIMS["eng_Latn"])
    assert all(not col.startswith("deu_Latn") for _, cells in t.rows for col in cells)
    t = _render(chromium, page, "sort=eng_Latn:sonar_sim&lang=all", profile)
    assert "deu_Latn:ref" in t.rows[0][1] and t.rows[0][0] == "test/0004"

    t = _render(chromium, page, "lang=eng&sort=sonar_sim&min=0.5", profile)  # lang (eng: eng_Latn) picks the column
    assert [i for i, _ in t.rows] == ["test/0002", "test/0001"]
    assert all(not col.startswith("deu_Latn") for _, cells in t.rows for col in cells)
    assert t.status.startswith("2 of 5 samples")
    t = _render(chromium, page, "min=0.6&max=0.8", profile)  # the first score column shown: deu sonar_sim
    assert [i for i, _ in t.rows] == ["test/0002", "test/0004"]

    t = _render(chromium, page, "lang=all&q=" + "%3Cb%3E%26%22BOLD", profile)  # case-insensitive text search
    assert [i for i, _ in t.rows] == ["test/0000", "test/0001"]
    t = _render(chromium, page, "q=" + "%3Cb%3E%26%22BOLD", profile)  # the default: the first language's text
    assert [i for i, _ in t.rows] == ["test/0000"]
    t = _render(chromium, page, "q=rains&lang=deu_Latn", profile)  # only the languages shown are searched
    assert t.rows == []


def test_a_seed_run_of_an_ablation_shows_the_summary_with_its_variant_marked(run, tmp_path):
    """ablate --seeds puts runs in ABL/runs/VARIANT/seedN; the report finds ABL and prefers summary.csv."""
    import shutil

    abl = run.parent.parent
    seed = abl / "runs" / "langs_deu" / "seed1"
    shutil.copytree(run, seed)
    (abl / "summary.csv").write_text("variant,lang,seeds,bleu_mean,bleu_std,p_bleu\n"
                                     "full,deu_Latn,3,12.3,0.5,\nlangs=deu,deu_Latn,3,10.1,0.4,0.03\n")
    page = write_report(seed).read_text()
    assert "summary.csv" in page and "p_bleu" in page
    marked = re.findall(r'<tr class="this">(.*?)</tr>', page)
    assert len(marked) == 1 and "langs=deu" in marked[0]
    assert "variant <b>langs_deu</b> (highlighted), seed1" in page


# ------------------------------------------------------------------ chart ticks


@pytest.mark.parametrize("lo, hi", [(150, 150), (149.5, 150.5), (149, 151), (0, 1e-9), (0, 0), (-3, -3),
                                    (11.685, 12.915), (0, 150_000), (0, 1e12), (-1e12, 1e12), (1e15, 1e15 + 1e6),
                                    (1e6, 1e6 + 1e-9), (0.001, 0.0011), (-1e-300, 1e-300)])
def test_ticks_and_their_labels_never_repeat(lo, hi):
    for integer in (False, True):
        ticks = nice_ticks(lo, hi, 6, integer=integer)
        labels = tick_labels(ticks)
        assert len(ticks) >= 2 and ticks == sorted(set(ticks)), (ticks, integer)
        assert len(set(labels)) == len(labels), labels
        assert all(abs(float(s) - t) <= (ticks[1] - ticks[0]) * 1e-6 for s, t in zip(labels, ticks)), labels  # exact
        if integer:
            assert all(float(t).is_integer() for t in ticks), ticks
        if hi - lo > max(abs(lo), abs(hi)) * 1e-9 and (not integer or hi - lo >= 2):  # no widening: inside the range
            assert lo - 1e-9 * abs(lo) <= ticks[0] and ticks[-1] <= hi + 1e-9 * abs(hi), ticks
    assert tick_labels(nice_ticks(149, 151, 6)) == ["149.0", "149.5", "150.0", "150.5", "151.0"]
    assert nice_ticks(149, 151, 6, integer=True) == [149, 150, 151]


def test_a_chart_of_one_dev_evaluation_has_distinct_ticks():
    """One eval row at step 150 once gave x ticks 149 150 150 150 151."""
    svg = svg_chart("eval: bleu", {"bleu": [(150.0, 12.3)]}, markers=True)
    xs = re.findall(r'class="xtick">([^<]*)<', svg)
    ys = re.findall(r'class="ytick">([^<]*)<', svg)
    assert xs == ["149", "150", "151"], xs
    assert len(ys) >= 3 and len(set(ys)) == len(ys), ys
    svg = svg_chart("train: loss", {"loss": [(s, 5.0 / s) for s in range(1, 41)]}, log=True)
    for cls in ("xtick", "ytick"):
        got = re.findall(rf'class="{cls}">([^<]*)<', svg)
        assert len(got) >= 2 and len(set(got)) == len(got), got


# ------------------------------------------------------------------ confidence intervals


def _ci_scores(lang: str, warn: bool) -> dict:
    s = {"bleu": 27.95, "bleu_ci95": [12.3, 41.0], "chrf": 50.1, "chrf_ci95": [44.0, 56.25],
         "sonar_similarity": 0.6, "sonar_similarity_ci95": [0.5512, 0.6437], "cosine": 0.81, "n": 12,
         "ci": {"level": 0.95, "method": "bootstrap over sentences", "resamples": 1000, "seed": 0},
         "signature": f"BLEU nrefs:1|case:lc {lang}"}
    if warn:
        s["warning"] = "only 12 sentences scored (N=12 < 100): the intervals are wide"
    return s


def test_scores_show_their_intervals_n_and_warnings_and_old_files_render_as_before(run):
    page = scores_table("test", {"deu_Latn": _ci_scores("deu_Latn", True), "eng_Latn": _ci_scores("eng_Latn", False)})
    assert '<td class="num">27.95 <span class="ci">[12.30, 41.00]</span></td>' in page
    assert '<td class="num">50.10 <span class="ci">[44.00, 56.25]</span></td>' in page
    assert '<td class="num">0.6000 <span class="ci">[0.5512, 0.6437]</span></td>' in page
    assert '<td class="num">0.8100</td>' in page  # a score without an interval: as before
    header = re.findall(r"<th[^>]*>([^<]*)</th>", page)
    assert header == ["language", "bleu", "chrf", "sonar_similarity", "cosine", "n"], header  # no K_ci95, no ci.*
    assert "_ci95" not in page and "resamples</dt>" not in page
    assert '<th title="sentences scored">n</th>' in page and '<td class="num">12</td>' in page
    # the warning: above the table, its language's row marked; the method under it, once
    assert page.index('class="warn" role="alert"') < page.index("<table")
    assert "deu_Latn:</b> only 12 sentences scored (N=12 &lt; 100): the intervals are wide" in page
    assert len(re.findall(r'<tr class="warn"><td>deu_Latn</td>', page)) == 1 and '<tr><td>eng_Latn</td>' in page
    assert page.count("95% confidence intervals, bootstrap over sentences, 1000 resamples, seed 0") == 1
    # an interval without its score is shown as it comes, in the details
    odd = scores_table("dev", {"deu_Latn": {"bleu": 3.0, "ter_ci95": [1.0, 2.0], "chrf_ci95": "n/a"}})
    assert "<dt>ter_ci95</dt><dd>[1.0, 2.0]</dd>" in odd and "<dt>chrf_ci95</dt><dd>n/a</dd>" in odd

    # the fixture's scores have none of these keys: the table is the one of before
    old = render(run)
    section = old[old.index('<section id="scores">'):old.index('<section id="samples">')]
    assert re.findall(r"<th[^>]*>([^<]*)</th>", section) == [
        "language", "bleu", "chrf", "bleu_lc", "bleu_cased", "cosine", "sonar_similarity", "blaser_qe",
        "mystery_metric", "n"]
    assert 'class="ci"' not in section and "warn" not in section and "confidence" not in section
    assert '<tr><td>deu_Latn</td><td class="num">12.34</td><td class="num">40.50</td>' in section


# ------------------------------------------------------------------ layout at 1400 px

PROBE = """(function () {
  const de = document.documentElement, box = document.getElementById('samples-box');
  const cells = [...document.querySelectorAll('#samples-body td[data-col$=":ref"], #samples-body td[data-col$=":hyp"]')];
  const lines = cells.map(td => { const r = document.createRange(); r.selectNodeContents(td);
    return Math.round(r.getBoundingClientRect().height / parseFloat(getComputedStyle(td).lineHeight)); });
  const m = {scrollWidth: de.scrollWidth, clientWidth: de.clientWidth, innerWidth: innerWidth,
             boxScroll: box && box.scrollWidth, boxClient: box && box.clientWidth, textCells: cells.length,
             textLines: Math.max(0, ...lines), langs: [...new Set(cells.map(td => td.dataset.col.split(':')[0]))]};
  const pre = document.createElement('pre'); pre.id = 'layout-probe'; pre.textContent = JSON.stringify(m);
  document.body.appendChild(pre);
})();"""
"""Test-only: measures the laid-out page (after the page's own script built the table) into the DOM."""
WIDE_LANGS = ("deu_Latn", "eng_Latn", "fra_Latn")
LONG = ("the weather tomorrow in the north will be sunny with some clouds in the afternoon and temperatures "
        "between twelve and eighteen degrees while on the coast a fresh wind blows from the west")


@pytest.fixture
def wide_run(tmp_path: Path) -> Path:
    """Three languages, long sentences, six per-sample scores, one dev evaluation, scores with intervals, long paths."""
    run = tmp_path / "wide"
    run.mkdir()
    (run / "config.json").write_text("{}")
    deep = "/".join(["a-rather-long-directory-name"] * 12)  # a path no line can break
    (run / "inputs.json").write_text(json.dumps({"features": {"test": f"/{deep}/features/feat0123abcd"},
                                                 "targets": {"deu_Latn": f"/{deep}/targets/tgt4567ef/targets.h5"},
                                                 "source_lang": "deu_Latn", "tiny_dir": f"/{deep}"}))
    rows = [{"kind": "train", "step": s, "loss": 5.0 / s} for s in range(1, 151)]
    rows.append({"kind": "eval", "step": 150, "bleu": 12.3, "chrf": 40.0})
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cols = ["sonar_sim", "xl_sonar_sim", "sent_bleu", "sent_chrf", "blaser_ref", "blaser_qe"]
    for lang in WIDE_LANGS:
        with (run / f"predictions_test_{lang}.tsv").open("w", newline="") as f:
            w = csv.writer(f, delimiter="\t")
            w.writerow(["id", "ref", "hyp", *cols])
            for k in range(12):
                w.writerow([f"test/{k:04d}", f"{lang} {LONG} {k}", f"{lang} {' '.join(reversed(LONG.split()))} {k}",
                            *[f"{0.1 * j + 0.01 * k:.6f}" for j in range(len(cols))]])
    (run / "scores_test.json").write_text(json.dumps({lang: _ci_scores(lang, lang == "fra_Latn") for lang in WIDE_LANGS}))
    return run


def _layout(chromium: str, page: Path, query: str, profile: Path) -> dict:
    probe = page.with_name("probe.html")
    probe.write_text(page.read_text().replace("</body>", f"<script>{PROBE}</script></body>"))
    r = _chromium_run(chromium, profile, "--window-size=1400,900", "--dump-dom", f"{probe.resolve().as_uri()}?{query}")
    m = re.search(r'<pre id="layout-probe">(.*?)</pre>', r.stdout)
    assert m, r.stdout[-2000:]
    return json.loads(m[1])


def test_the_page_fits_a_1400px_window(wide_run, tmp_path):
    """No horizontal page scroll at 1400 px: one language at a time by default, readable cells; lang=all
    scrolls inside the table's box. (The old layout: scrollWidth 1883 here, and cells of up to 20 lines.)"""
    chromium = _chromium()
    page = write_report(wide_run)
    profile = tmp_path / "chromium-profile"
    for query in ("", "lang=fra", "sort=eng_Latn:sonar_sim", "lang=all"):
        m = _layout(chromium, page, query, profile)
        assert m["innerWidth"] == 1400, m
        assert m["scrollWidth"] <= m["clientWidth"] <= m["innerWidth"], (query, m)  # the page never scrolls sideways
        if query == "lang=all":
            assert m["langs"] == list(WIDE_LANGS) and m["boxScroll"] > m["boxClient"], m  # its box scrolls instead
            assert m["textLines"] <= 6, m
        else:
            want = {"": "deu_Latn", "lang=fra": "fra_Latn", "sort=eng_Latn:sonar_sim": "eng_Latn"}[query]
            assert m["langs"] == [want] and m["textCells"] == 2 * 12, m
            assert m["boxScroll"] <= m["boxClient"] and m["textLines"] <= 4, (query, m)  # the table fits, few lines

    for query, name in (("", "report-1400.png"), ("lang=all", "report-1400-all.png")):  # to look at: tall, 1400 wide
        shot = tmp_path / name
        _chromium_run(chromium, profile, "--window-size=1400,2200", f"--screenshot={shot}",
                      f"{page.resolve().as_uri()}?{query}")
        head = shot.read_bytes()[:24]
        assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR"
        assert struct.unpack(">II", head[16:24]) == (1400, 2200)

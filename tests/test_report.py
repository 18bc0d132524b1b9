"""`slt-pipe report`: one offline HTML file of a run, its sample table sorted and filtered in a real browser.

The run directory is written by hand (what `slt-pipe train` and `evaluate` write), nothing is trained.
The browser tests render the page with headless Chromium (`--dump-dom`) and read the table it built;
they skip without Chromium, except in CI (`CI` set), where `.ci/run` installs it and a skip would hide a failure.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cache.errors import SltPipeError
from pipeline.report import write_report

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


def _render(chromium: str, page: Path, query: str, profile: Path) -> _Table:
    r = subprocess.run([chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                        "--no-first-run", "--disable-extensions", f"--user-data-dir={profile}", "--dump-dom",
                        f"{page.resolve().as_uri()}?{query}"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "</html>" in r.stdout, r.stderr[-2000:]
    table = _Table()
    table.feed(r.stdout)
    assert r.stdout.count("<script") == 2, "the reference opened a script of its own"
    return table


def test_the_browser_sorts_filters_and_shows_the_text_intact(run, tmp_path):
    chromium = _chromium()
    page = write_report(run)
    profile = tmp_path / "chromium-profile"

    t = _render(chromium, page, "", profile)
    assert [i for i, _ in t.rows] == [f"test/{k:04d}" for k in range(5)]  # one row per sample, file order
    assert t.rows[0][1]["deu_Latn:ref"][0] == TRICKY and t.rows[1][1]["eng_Latn:ref"][0] == TRICKY
    assert t.status.startswith("5 of 5 samples")

    t = _render(chromium, page, "sort=sonar_sim&desc=1", profile)  # bare field: the first language's
    assert [i for i, _ in t.rows] == ["test/0000", "test/0004", "test/0002", "test/0001", "test/0003"]  # None last
    t = _render(chromium, page, "sort=eng_Latn:sonar_sim", profile)
    assert [i for i, _ in t.rows] == ["test/0004", "test/0000", "test/0003", "test/0002", "test/0001"]
    assert [float(c["eng_Latn:sonar_sim"][1]) for _, c in t.rows] == sorted(SIMS["eng_Latn"])

    t = _render(chromium, page, "lang=eng&sort=sonar_sim&min=0.5", profile)  # lang (eng: eng_Latn) picks the column
    assert [i for i, _ in t.rows] == ["test/0002", "test/0001"]
    assert all(not col.startswith("deu_Latn") for _, cells in t.rows for col in cells)
    assert t.status.startswith("2 of 5 samples")
    t = _render(chromium, page, "min=0.6&max=0.8", profile)  # the first score column shown: deu sonar_sim
    assert [i for i, _ in t.rows] == ["test/0002", "test/0004"]

    t = _render(chromium, page, "q=" + "%3Cb%3E%26%22BOLD", profile)  # case-insensitive text search
    assert [i for i, _ in t.rows] == ["test/0000", "test/0001"]
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

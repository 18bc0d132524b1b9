"""The translation quality gates at stage level, on realistic bad NLLB output mixed with good output.

tests/test_translation_gates.py scores hand-made pairs; here the bad translations come out of the
real NLLB translator code path of embed-targets (`embed.translator = nllb` on a local snapshot
folder): the source batch is tokenised by the snapshot's NLLB tokenizer, `generate` is called with
the target language forced, and its token ids are decoded with `skip_special_tokens`, exactly as for
NLLB-200. Only the network's arithmetic is replaced: the tiny M2M100's `generate` returns the token
ids of the output chosen for each source sentence (`ScriptedNllb`), so the test decides which
outputs are wrong script (Cyrillic, CJK, code-switched), loops running to the token limit, stutters,
and length outliers, among correct translations (the toy's own English and French).

What the stage must do with them (README, "quality gates"): a language whose share of failing
outputs passes `embed.gate_max_bad_fraction` is refused, nothing of it is published, the other
languages are built, the command exits 1 and names the language, the figures, its worst examples
and the fix; its translations stay in the translations cache (the record of what was rejected), so
`--allow-poor-translations` publishes them without translating again, its manifest saying so. A
language under the threshold is built, its manifest naming the outputs that failed.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import toy_embed_cfg
from rich.console import Console

SPLITS = ("dev", "test")
SRC = "deu_Latn"
QUIET = Console(stderr=True, quiet=True)


@dataclass(frozen=True)
class Loop:
    """A decoder stuck in a loop: `prefix`, then `phrase` over and over until the token limit."""

    prefix: str
    phrase: str


# (split, position in the split) -> what the "model" writes for that sentence in eng_Latn, and the
# gate reasons that output must be flagged for (the first one is the one its example is shown under).
FAULTS: dict[str, dict[tuple[str, int], tuple[str | Loop, tuple[str, ...]]]] = {
    "wrong_script": {
        ("dev", 1): ("сегодня ночью на западе грозы и будет жарко", ("wrong_script",)),  # Russian for English
        ("dev", 9): ("今天北方有雨，天气会变暖", ("wrong_script", "length")),  # Chinese: also far too short
        ("test", 4): ("сегодня на западе сильный ветер, iPhone weather", ("wrong_script",)),  # code-switched
    },
    "repetitive": {
        ("dev", 3): (Loop("", "the "), ("repetitive", "length")),  # "the the the ..." to the limit
        ("test", 0): (Loop("today there will be ", "snow in the west "), ("repetitive", "length")),
        ("test", 7): ("{ref} rain rain rain rain", ("repetitive",)),  # a stutter in a sentence of fair length
    },
    "length": {
        ("dev", 5): ("rain.", ("length",)),
        ("dev", 17): ("{first2}", ("length",)),  # cut off after two words
        ("test", 11): ("{ref}, and later in the evening a cold front from the atlantic brings heavy showers, "
                       "gusty winds along the coast, fog over the lakes and black ice on many roads, so drivers "
                       "should take care, check the traffic news before leaving home and allow extra time "
                       "for every journey", ("length",)),  # a fluent hallucinated continuation
    },
}


def _good(ds, lang: str, split: str, sid: str) -> str:
    return ds.references[split][lang][sid]


class ScriptedNllb:
    """The outputs of the real NLLB path for a scripted `generate`: source text -> eng_Latn output."""

    def __init__(self, ds, faults: dict[tuple[str, int], tuple[str | Loop, tuple[str, ...]]]):
        self.ds = ds
        self.faults = faults
        self.calls = 0
        self.eng: dict[str, str | Loop] = {}
        for split in SPLITS:
            for i, s in enumerate(ds.samples[split]):
                ref = _good(ds, "eng_Latn", split, s.id)
                out = faults.get((split, i), (ref, ()))[0]
                if isinstance(out, str):
                    out = out.format(ref=ref, first2=" ".join(ref.split()[:2]))
                self.eng[s.text] = out

    def bad(self) -> list[tuple[str, str, tuple[str, ...]]]:
        """(split, source, reasons) of every scripted fault."""
        return [(split, self.ds.samples[split][i].text, reasons) for (split, i), (_, reasons) in self.faults.items()]

    def output(self, source: str, lang: str) -> str | Loop:
        if lang == "eng_Latn":
            return self.eng[source]
        sid = next(s.id for split in SPLITS for s in self.ds.samples[split] if s.text == source)
        split = next(split for split in SPLITS if any(s.id == sid for s in self.ds.samples[split]))
        return _good(self.ds, lang, split, sid)

    def install(self, monkeypatch) -> None:
        """Every NLLB model the stage loads gets this `generate` (the real loader runs first)."""
        import torch

        import extract.text.nllb as nl

        real_load = nl.load_nllb_model

        def load(model_id, device="cpu", dtype=None):
            model = real_load(model_id, device, dtype)
            tok = nl.load_nllb_tokenizer(model_id)

            def generate(input_ids, attention_mask=None, *, forced_bos_token_id, max_new_tokens, **_):
                self.calls += 1
                lang = tok.convert_ids_to_tokens(int(forced_bos_token_id))
                rows = []
                for source in tok.batch_decode(input_ids, skip_special_tokens=True):
                    out = self.output(source, lang)
                    if isinstance(out, Loop):
                        head = tok(out.prefix, add_special_tokens=False).input_ids if out.prefix else []
                        step = tok(out.phrase, add_special_tokens=False).input_ids
                        body = (head + step * max_new_tokens)[: max_new_tokens - 1]  # no </s>: the limit
                    else:
                        body = tok(out, add_special_tokens=False).input_ids + [tok.eos_token_id]
                    # decoder start (</s>), the forced language token, the output: as NLLB-200's generate
                    rows.append([model.config.decoder_start_token_id, int(forced_bos_token_id), *body])
                width = max(map(len, rows))
                return torch.tensor([r + [tok.pad_token_id] * (width - len(r)) for r in rows])

            model.generate = generate
            return model

        monkeypatch.setattr(nl, "load_nllb_model", load)


@pytest.fixture(scope="module")
def world(toy_embedded, tmp_path_factory):
    """(dataset root, tiny-SONAR entry, NLLB snapshot folder, dataset): a tiny M2M100 with an NLLB
    tokenizer whose SentencePiece model knows the toy's three languages and the scripted outputs'
    letters (Cyrillic, CJK), saved in HF format as an NLLB snapshot is."""
    from extract.text.nllb import make_tiny_nllb
    from pipeline.dataset import configured_dataset

    cfg, _, _ = toy_embedded
    ds = configured_dataset(toy_embed_cfg(cfg.cache.dir, cfg.dataset.root, splits=SPLITS))
    texts = [t for split in SPLITS for s in ds.samples[split]
             for t in (s.text, *(ds.references[split][lang][s.id] for lang in ("eng_Latn", "fra_Latn")))]
    texts += [o for faults in FAULTS.values() for o, _ in faults.values() if isinstance(o, str)]
    snapshot = make_tiny_nllb(tmp_path_factory.mktemp("nllb") / "my-nllb", texts, seed=0)
    tiny = next(Path(cfg.cache.dir, "tiny-sonar").glob("*/manifest.json")).parent
    return cfg.dataset.root, tiny, snapshot, ds


def _cache(world, path: Path) -> Path:
    """A fresh cache holding only the session's tiny SONAR (same corpus, same key)."""
    shutil.copytree(world[1], path / "tiny-sonar" / world[1].name)
    return path


def _cli(world, cache: Path, *extra: str):
    from typer.testing import CliRunner

    from pipeline.cli import app

    args = ["embed-targets", "--profile", "tiny", "--dataset", "toy", "--root", str(world[0]), "--cache", str(cache),
            "--split", ",".join(SPLITS), "--langs", "deu,eng,fra", "--translator", "nllb",
            "--set", f"embed.nllb_model={world[2]}", "--set", "embed.device=cpu", "--set", "embed.references=false",
            "--set", "embed.beam_size=1", "--set", "embed.batch_size=16", *extra]
    res = CliRunner().invoke(app, args, env={"COLUMNS": "400"})
    return res, " ".join(res.output.split())  # rich wraps long lines


def _manifests(cache: Path, kind: str) -> list[dict]:
    return [json.loads(p.read_text()) | {"dir": str(p.parent)} for p in cache.glob(f"{kind}/*/manifest.json")]


def _translations(cache: Path, lang: str) -> dict[str, list[str]]:
    """Split -> the published translations.json of `lang` (what the translator wrote, in sample order)."""
    out = {}
    for m in _manifests(cache, "translations"):
        if m["lang"] == lang:
            out[m["split"]] = json.loads(Path(m["dir"], "translations.json").read_text())["translations"]
    return out


def _clip(text: str, width: int = 60) -> str:
    return repr(text if len(text) <= width else text[: width - 3] + "...")


def _expected_outputs(scripted: ScriptedNllb, ds) -> dict[str, list[str]]:
    """Split -> what the stage must have stored for eng_Latn: the good references, the scripted faults;
    a loop as its decoded text (read back from translations.json and checked to be a loop)."""
    return {split: [scripted.eng[s.text] for s in ds.samples[split]] for split in SPLITS}


def _check_stored(stored: dict[str, list[str]], expected: dict[str, list], ds) -> dict[str, str]:
    """`stored` holds `expected` (a Loop: its prefix, then its phrase repeated, as the token limit cut it);
    returns source -> stored output."""
    assert sorted(stored) == sorted(SPLITS)
    by_source = {}
    for split in SPLITS:
        assert len(stored[split]) == len(expected[split]) == len(ds.samples[split])
        for s, got, want in zip(ds.samples[split], stored[split], expected[split]):
            if isinstance(want, Loop):
                phrase = want.phrase.strip()
                assert got.startswith(want.prefix + phrase), got
                assert got.count(phrase) >= 20 and len(got) > 4 * len(s.text), got  # ran to the limit
            else:
                assert got == want, (split, s.text)
            by_source[s.text] = got
    return by_source


def _counts(bad: list[tuple[str, str, tuple[str, ...]]]) -> dict[str, int]:
    return {r: sum(r in reasons for _, _, reasons in bad) for r in ("empty", "wrong_script", "repetitive", "length")}


DETAIL = {"wrong_script": "wrong script: ", "repetitive": "repetition: ", "length": "length: "}


@pytest.mark.parametrize("family", list(FAULTS))
def test_a_language_with_realistic_bad_nllb_output_is_refused_and_published_only_when_allowed(
        world, family, tmp_path, monkeypatch):
    """Three bad outputs of one kind among 45 good ones (6% > 5%): eng_Latn is refused with exactly
    those three as its worst examples, deu and fra are built, the command exits 1; with
    --allow-poor-translations the same translations are published, nothing translated again."""
    root, _, snapshot, ds = world
    scripted = ScriptedNllb(ds, FAULTS[family])
    scripted.install(monkeypatch)
    cache = _cache(world, tmp_path / "cache")
    n = sum(len(ds.samples[s]) for s in SPLITS)
    bad = scripted.bad()
    counts = _counts(bad)
    assert len(bad) / n > 0.05 >= (len(bad) - 1) / n  # one fewer would pass: the threshold is what refuses

    res, out = _cli(world, cache)
    assert res.exit_code == 1, res.output
    assert scripted.calls > 0  # the NLLB path translated (eng and fra), through the scripted generate
    message = (f"eng_Latn: {len(bad)} of {n} {snapshot} translations from {SRC} "
               f"({len(bad) / n:.0%}) fail the quality gates (at most 5% may): empty {counts['empty']}, "
               f"wrong script {counts['wrong_script']}, repetitive {counts['repetitive']}, "
               f"length outliers {counts['length']}; nothing is published for eng_Latn. Worst:")
    assert message in out, out
    stored = _check_stored(_translations(cache, "eng_Latn"), _expected_outputs(scripted, ds), ds)
    # the error names the translations.json holding its worst example, which is there for a person to read
    named = Path(re.search(r"refused (\S+/translations\.json): eng_Latn: ", out).group(1))
    entry = json.loads((named.parent / "manifest.json").read_text())
    in_named = json.loads(named.read_text())["translations"]
    assert entry["lang"] == "eng_Latn" and any(stored[source] in in_named for _, source, _ in bad)
    worst = out.split("Worst:", 1)[1]
    for _, source, reasons in bad:  # each bad output is named, under its first reason
        line = f"{_clip(source)} -> {_clip(stored[source])} ({DETAIL[reasons[0]]}"
        assert " ".join(line.split()) in worst, (line, worst)
    good = [s.text for split in SPLITS for s in ds.samples[split] if s.text not in {b[1] for b in bad}]
    assert not any(_clip(source) in worst for source in good)  # no correct translation is blamed
    assert "translations.json" in out and "--allow-poor-translations" in out
    assert re.search(r"drop it: `[^`]* --langs deu_Latn,fra_Latn[ `]", out), out
    c = counts
    assert f"FAIL {c['empty']}/{c['wrong_script']}/{c['repetitive']}/{c['length']} of {n}" in out  # summary table
    assert "1 language(s) refused or failed" in out

    published = {m["lang"]: m for m in _manifests(cache, "targets")}
    assert sorted(published) == ["deu_Latn", "fra_Latn"] and not list(cache.glob("targets/*.partial"))
    fra = published["fra_Latn"]["quality_gate"]
    assert fra["passed"] and fra["checked"] == n and fra["bad"] == 0 and fra["worst"] == []  # good NLLB output passes
    assert sorted(_translations(cache, "fra_Latn")) == sorted(SPLITS)

    calls = scripted.calls
    res, out = _cli(world, cache, "--allow-poor-translations")
    assert res.exit_code == 0, res.output
    assert scripted.calls == calls  # the refused run's translations are what is published
    assert f"eng_Latn: {len(bad)} of {n} translations fail the quality gates; published anyway" in out
    assert f"POOR, allowed {c['empty']}/{c['wrong_script']}/{c['repetitive']}/{c['length']} of {n}" in out
    eng = next(m for m in _manifests(cache, "targets") if m["lang"] == "eng_Latn")
    gate = eng["quality_gate"]
    assert gate["published_despite_failing"] and not gate["passed"] and gate["bad"] == len(bad)
    assert {k: gate[k] for k in counts} == counts
    assert sorted((w["source"], w["output"], w["reason"]) for w in gate["worst"]) == \
        sorted((source, stored[source], reasons[0]) for _, source, reasons in bad)
    from cache.targets import TargetReader

    with TargetReader(Path(eng["dir"])) as r:
        for split in SPLITS:
            assert r.texts(split) == [stored[s.text] for s in ds.samples[split]]
            assert set(r.sources(split)) == {str(snapshot)}


def test_a_few_bad_outputs_under_the_threshold_are_published_and_named_in_the_manifest(world, tmp_path, monkeypatch):
    """Two bad outputs of 48 (4% <= 5%): eng_Latn is built (the gate judges a language, not a sentence),
    and its manifest names both, with their reasons; the summary counts them."""
    from extract.text.gates import REASONS
    from pipeline.embed_stage import embed_targets

    root, _, snapshot, ds = world
    faults = {("dev", 3): FAULTS["repetitive"][("dev", 3)], ("dev", 1): FAULTS["wrong_script"][("dev", 1)]}
    scripted = ScriptedNllb(ds, faults)
    scripted.install(monkeypatch)
    cache = _cache(world, tmp_path / "cache")
    cfg = toy_embed_cfg(cache, root, ["deu", "eng"], SPLITS, translator="nllb", nllb_model=str(snapshot),
                        batch_size=16)
    report = embed_targets(cfg, QUIET)
    n = sum(len(ds.samples[s]) for s in SPLITS)
    assert not report.failures and scripted.calls == sum(-(-len(ds.samples[s]) // 16) for s in SPLITS)  # per batch
    rows = {r.lang: r for r in report.summary}
    assert rows["eng_Latn"].status == "built" and rows["eng_Latn"].translated == n
    counts = _counts(scripted.bad())
    c = counts
    assert rows["eng_Latn"].gate == f"ok {c['empty']}/{c['wrong_script']}/{c['repetitive']}/{c['length']} of {n}"
    gate = report.entries["eng_Latn"].manifest["quality_gate"]
    assert gate["passed"] and not gate["published_despite_failing"] and gate["bad"] == 2
    assert {k: gate[k] for k in counts} == counts
    stored = _check_stored(_translations(cache, "eng_Latn"), _expected_outputs(scripted, ds), ds)
    assert [(w["source"], w["output"], w["reason"]) for w in gate["worst"]] == \
        [(source, stored[source], reasons[0]) for _, source, reasons in sorted(scripted.bad(), key=lambda b: REASONS.index(b[2][0]))]

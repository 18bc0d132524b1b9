"""The translation quality gates on hand-made (source, output) pairs: each fault alone, and correct
translations in several scripts that must pass."""

from __future__ import annotations

import dataclasses

import pytest

from extract.text.gates import GateThresholds, max_run, score_translations, script_share, tokens

DEU = [
    "morgen gibt es im norden regen",
    "heute gibt es im süden viel sonne",
    "am montag gibt es in den bergen schnee",
    "in der nacht gibt es an der küste nebel",
    "am wochenende gibt es im osten gewitter",
    "am nachmittag liegen die temperaturen bei zwanzig grad",
]
ENG = [
    "tomorrow there will be rain in the north",
    "today there will be plenty of sunshine in the south",
    "on monday there will be snow in the mountains",
    "during the night there will be fog on the coast",
    "at the weekend there will be thunderstorms in the east",
    "in the afternoon temperatures will be around twenty degrees",
]
ZHO = ["明天北方有雨", "今天南方阳光充足", "周一山区有雪", "夜间沿海有雾", "周末东部有雷阵雨", "下午气温在二十度左右"]


def _good(outputs: list[str]) -> list[tuple[str, str]]:
    return list(zip(DEU, outputs))


def _with(i: int, output: str, pairs: list[tuple[str, str]] | None = None) -> list[tuple[str, str]]:
    """`pairs` (default: the correct English) with output i replaced."""
    pairs = list(pairs or _good(ENG))
    pairs[i] = (pairs[i][0], output)
    return pairs


def test_correct_translations_pass_in_latin_chinese_cyrillic_and_mixed_scripts():
    assert score_translations(_good(ENG), "eng_Latn", "deu_Latn").bad == 0
    zho = score_translations(_good(ZHO), "zho_Hans", "deu_Latn")
    assert zho.bad == 0 and zho.passed and zho.median_ratio < 0.5  # judged against zho's own ratio
    rus = ["завтра на севере дождь", "сегодня на юге много солнца", "в понедельник в горах снег",
           "ночью на побережье туман", "на выходных на востоке грозы", "днём температура около двадцати градусов"]
    assert score_translations(_good(rus), "rus_Cyrl", "deu_Latn").bad == 0
    # Japanese mixes kanji, hiragana and katakana; a brand name in Latin letters inside Chinese is fine
    jpn = ["明日は北部で雨が降ります", "今日は南部で晴れます", "月曜日は山で雪が降ります", "夜は海岸で霧が出ます",
           "週末は東部で雷雨になります", "午後の気温は二十度前後です"]
    assert score_translations(_good(jpn), "jpn_Jpan", "deu_Latn").bad == 0
    mixed = _with(4, "周末东部有雷阵雨，请用iPhone查看", _good(ZHO))
    assert score_translations(mixed, "zho_Hans", "deu_Latn").bad == 0


def test_empty_outputs_and_a_lone_ideographic_full_stop():
    r = score_translations(_with(1, "。", _with(3, "  ")), "eng_Latn", "deu_Latn")
    assert r.counts["empty"] == 2 and r.bad == 2 and not r.passed
    assert [f.index for f in r.worst[:2]] == [1, 3] and {f.reason for f in r.worst[:2]} == {"empty"}
    assert "only '。'" in r.worst[0].detail


def test_wrong_script_for_the_language_suffix():
    r = score_translations(_good(ENG), "zho_Hans", "deu_Latn")  # English asked for Chinese
    assert r.counts["wrong_script"] == len(ENG) and "mostly Latn" in r.worst[0].detail
    r = score_translations(_with(2, "明天北方有雨"), "eng_Latn", "deu_Latn")
    assert r.counts["wrong_script"] == 1 and r.worst[0].index == 2 and "0% of letters in Latn" in r.worst[0].detail
    assert script_share("Привет, мир", "Cyrl") == (1.0, "Cyrl")
    assert script_share("hello мир", "Cyrl")[0] == pytest.approx(3 / 8)
    assert script_share("2024 !", "Latn") == (None, "")  # nothing to judge


def test_degenerate_repetition_but_not_when_the_source_repeats():
    r = score_translations(_with(0, "rain rain rain rain rain in the north"), "eng_Latn", "deu_Latn")
    assert r.counts["repetitive"] == 1 and "'rain' 5 times in a row" in r.worst[0].detail
    r = score_translations(_with(5, "the temperatures will be the temperatures will be the temperatures will be "
                                    "the temperatures will be"), "eng_Latn", "deu_Latn")
    assert r.counts["repetitive"] == 1 and "4 times" in r.worst[0].detail
    r = score_translations(_with(2, "雪雪雪雪雪雪", _good(ZHO)), "zho_Hans", "deu_Latn")  # characters are Chinese tokens
    assert r.counts["repetitive"] == 1
    echo = [("ja ja ja ja ja", "yes yes yes yes yes"), *zip(DEU, ENG)]
    assert score_translations(echo, "eng_Latn", "deu_Latn").counts["repetitive"] == 0
    assert max_run(tokens("a b c a b c a b c", "Latn")) == (3, ["a", "b", "c"])
    assert tokens("明天, 有雨", "Hans") == ["明", "天", "有", "雨"]


def test_few_distinct_tokens_is_degenerate():
    r = score_translations(_with(1, "sun rain sun rain snow rain sun rain sun snow rain sun"), "eng_Latn", "deu_Latn")
    assert r.counts["repetitive"] == 1 and "3 distinct of 12 tokens" in r.worst[0].detail


def test_length_outliers_are_relative_to_the_languages_median():
    long = "tomorrow " + "there will be a great deal of rain and wind and cold in every part of the north " * 2
    r = score_translations(_with(0, long), "eng_Latn", "deu_Latn")
    assert r.counts["length"] == 1 and r.worst[0].index == 0 and r.worst[0].reason == "length"
    r = score_translations(_with(3, "fog"), "eng_Latn", "deu_Latn")
    assert r.counts["length"] == 1 and r.worst[0].index == 3
    # Chinese is about a fifth of German's length: not an outlier, an English-length output would be
    assert score_translations(_good(ZHO), "zho_Hans", "deu_Latn").counts["length"] == 0
    wordy = "今天南方阳光充足今天南方阳光充足今天南方阳光很充足的一天啊"
    r = score_translations(_with(1, wordy, _good(ZHO)), "zho_Hans", "deu_Latn")
    assert r.counts["length"] == 1


def test_threshold_and_worst_examples_order():
    pairs = _with(0, "", _with(1, "明天", _with(2, "snow snow snow snow snow")))
    r = score_translations(pairs, "eng_Latn", "deu_Latn")
    assert [f.reason for f in r.worst] == ["empty", "wrong_script", "repetitive"] and r.bad == 3
    assert r.compact() == f"1/1/1/{r.counts['length']} of 6" and not r.passed
    assert score_translations(pairs, "eng_Latn", "deu_Latn", GateThresholds(max_bad_fraction=0.5)).passed
    figures = r.figures()
    assert figures["thresholds"] == dataclasses.asdict(GateThresholds()) and figures["bad"] == 3
    assert figures["worst"][0] == {"source": DEU[0], "output": "", "reason": "empty", "detail": "empty output (nothing)"}
    assert score_translations([], "eng_Latn", "deu_Latn").passed


def test_config_defaults_are_the_gates_defaults():
    from extract.config import EmbedConfig

    e = EmbedConfig()
    assert {f.name: getattr(e, f"gate_{f.name}") for f in dataclasses.fields(GateThresholds)} == \
        dataclasses.asdict(GateThresholds())
    assert e.allow_poor_translations is False

"""Quality gates on machine translations, before they become training targets.

`score_translations(pairs, lang, src_lang, thresholds)` checks each distinct (source,
output) pair for four faults and returns a `GateReport` with the counts and the worst
examples:

* empty: no letter or digit at all ('' or a lone '。');
* wrong script: under `min_script_fraction` of the output's letters are in the script the
  NLLB code names (its suffix: Latn, Hans, Cyrl, ...), counted by Unicode character name;
* repetitive: an n-gram (n <= 4 tokens) repeated `max_repeats` times in a row (more than
  the source repeats it), or a long output with few distinct tokens;
* length outlier: output/source length ratio `length_factor` times above or below the
  language's median ratio, so that a language of short writing (zho vs deu) is judged
  against itself, not against a fixed ratio.

Pure functions, no model and no I/O. `judge` is what a failed gate means to embed-targets: a
language whose share of failing outputs passes `embed.gate_max_bad_fraction` is refused
(`PoorTranslationsError`, with its worst examples and the fix) unless
`embed.allow_poor_translations` publishes it anyway; either way its manifest records the figures.
"""

from __future__ import annotations

import math
import statistics
import unicodedata
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from cache.errors import SltPipeError
from extract.config import EmbedConfig

SCRIPT_NAMES: dict[str, frozenset[str]] = {
    "Latn": frozenset({"LATIN"}), "Cyrl": frozenset({"CYRILLIC"}), "Arab": frozenset({"ARABIC"}),
    "Grek": frozenset({"GREEK"}), "Hebr": frozenset({"HEBREW"}), "Armn": frozenset({"ARMENIAN"}),
    "Geor": frozenset({"GEORGIAN"}), "Ethi": frozenset({"ETHIOPIC"}), "Deva": frozenset({"DEVANAGARI"}),
    "Beng": frozenset({"BENGALI"}), "Gujr": frozenset({"GUJARATI"}), "Guru": frozenset({"GURMUKHI"}),
    "Knda": frozenset({"KANNADA"}), "Mlym": frozenset({"MALAYALAM"}), "Orya": frozenset({"ORIYA"}),
    "Sinh": frozenset({"SINHALA"}), "Taml": frozenset({"TAMIL"}), "Telu": frozenset({"TELUGU"}),
    "Thai": frozenset({"THAI"}), "Laoo": frozenset({"LAO"}), "Khmr": frozenset({"KHMER"}),
    "Mymr": frozenset({"MYANMAR"}), "Tibt": frozenset({"TIBETAN"}), "Tfng": frozenset({"TIFINAGH"}),
    "Hans": frozenset({"HAN"}), "Hant": frozenset({"HAN"}),
    # Japanese and Korean mix scripts by design: kana with kanji, hangul with the odd hanja
    "Jpan": frozenset({"HAN", "HIRAGANA", "KATAKANA"}), "Hang": frozenset({"HANGUL", "HAN"}),
}
"""NLLB script suffix -> the Unicode name prefixes (`_script_of`) of its letters."""

UNSPACED = frozenset({"Hans", "Hant", "Jpan", "Thai", "Laoo", "Khmr", "Mymr", "Tibt"})
"""Scripts written without spaces between words: their tokens are characters."""

MIN_LENGTH_CHARS = 10
"""Sources shorter than this (non-space characters) are too short for a meaningful length ratio."""

MIN_UNIQUE_TOKENS = 8
"""The distinct-token ratio is only judged on outputs of at least this many tokens."""

REASONS = ("empty", "wrong_script", "repetitive", "length")
"""The faults, most severe first (the order the worst examples are picked in)."""


@dataclass(frozen=True)
class GateThresholds:
    max_bad_fraction: float = 0.05
    """Largest share of translated sentences that may fail any check before the language is refused."""
    min_script_fraction: float = 0.5
    """Least share of an output's letters in the language's script (the NLLB code's suffix)."""
    max_repeats: int = 4
    """An n-gram (n <= 4 tokens) repeated this many times in a row, more than in the source, is degenerate."""
    min_unique_ratio: float = 0.3
    """Distinct tokens / tokens below this (outputs of 8 tokens or more) is degenerate."""
    length_factor: float = 3.0
    """A length ratio (output/source) this many times above or below the language's median is an outlier."""


@dataclass(frozen=True)
class Flagged:
    """One output that failed a check."""

    index: int
    """Position of the pair in the scored list."""
    source: str
    output: str
    reason: str
    """'empty', 'wrong_script', 'repetitive' or 'length'."""
    detail: str
    """What exactly is wrong, for people."""
    severity: float
    """Within a reason, larger is worse."""


@dataclass
class GateReport:
    """The gate figures of one language's translations."""

    lang: str
    thresholds: GateThresholds
    checked: int = 0
    """Pairs scored."""
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REASONS, 0))
    """Reason -> outputs failing it (an output may fail several)."""
    bad: int = 0
    """Outputs failing at least one check."""
    median_ratio: float | None = None
    """The language's median output/source length ratio (None: no pair long enough)."""
    worst: list[Flagged] = field(default_factory=list)
    """The worst outputs, one per output, most severe first."""

    @property
    def bad_fraction(self) -> float:
        return self.bad / self.checked if self.checked else 0.0

    @property
    def passed(self) -> bool:
        return self.bad_fraction <= self.thresholds.max_bad_fraction

    def compact(self) -> str:
        """'0/0/0/1 of 168' = empty / wrong script / repetitive / length outliers of the outputs checked."""
        c = self.counts
        return f"{c['empty']}/{c['wrong_script']}/{c['repetitive']}/{c['length']} of {self.checked}"

    def figures(self) -> dict[str, Any]:
        """JSON for a manifest: counts, thresholds and the worst examples."""
        return {"checked": self.checked, **{k: v for k, v in self.counts.items()}, "bad": self.bad,
                "bad_fraction": round(self.bad_fraction, 4), "passed": self.passed,
                "median_length_ratio": None if self.median_ratio is None else round(self.median_ratio, 4),
                "thresholds": asdict(self.thresholds),
                "worst": [{"source": f.source, "output": f.output, "reason": f.reason, "detail": f.detail}
                          for f in self.worst]}


def score_translations(pairs: Sequence[tuple[str, str]], lang: str, src_lang: str,
                       thresholds: GateThresholds = GateThresholds(), examples: int = 3) -> GateReport:
    """Gate figures of (source, output) pairs translated from `src_lang` into `lang` (FLORES-200 codes)."""
    report = GateReport(lang, thresholds, checked=len(pairs))
    script, src_script = _suffix(lang), _suffix(src_lang)
    flags: list[list[Flagged]] = [[] for _ in pairs]
    for i, (src, out) in enumerate(pairs):
        if not any(ch.isalnum() for ch in out):
            shown = f"only {out.strip()!r}" if out.strip() else "nothing"
            flags[i].append(Flagged(i, src, out, "empty", f"empty output ({shown})", 1.0))
            continue  # an empty output has no script, repetition or meaningful length
        share, found = script_share(out, script)
        if share is not None and share < thresholds.min_script_fraction:
            flags[i].append(Flagged(i, src, out, "wrong_script",
                                    f"wrong script: {share:.0%} of letters in {script}, mostly {found}", 1.0 - share))
        rep = _repetition(out, script, src, src_script, thresholds)
        if rep is not None:
            flags[i].append(Flagged(i, src, out, "repetitive", rep[0], rep[1]))
    _length_outliers(pairs, flags, thresholds, report)
    for per in flags:
        for f in per:
            report.counts[f.reason] += 1
    report.bad = sum(1 for per in flags if per)
    # one example per output, its most severe fault; the worst reasons first
    firsts = [min(per, key=lambda f: REASONS.index(f.reason)) for per in flags if per]
    firsts.sort(key=lambda f: (REASONS.index(f.reason), -f.severity, f.index))
    report.worst = firsts[:examples]
    return report


def script_share(text: str, script: str) -> tuple[float | None, str]:
    """(share of `text`'s letters in `script`, the most common script among them); (None, '') when
    there is nothing to judge: no letters of a known script, or a script this module does not know."""
    expected = SCRIPT_NAMES.get(script)
    counts: dict[str, int] = {}
    for ch in text:
        if unicodedata.category(ch).startswith("L"):
            name = _script_of(ch)
            if name:
                counts[name] = counts.get(name, 0) + 1
    total = sum(counts.values())
    if expected is None or not total:
        return None, ""
    share = sum(n for name, n in counts.items() if name in expected) / total
    return share, _display(max(counts, key=lambda k: counts[k]))


def tokens(text: str, script: str) -> list[str]:
    """Words (lower-cased, punctuation stripped); characters in scripts without spaces."""
    if script in UNSPACED:
        return [ch for ch in text if ch.isalnum()]
    words = ("".join(ch for ch in w if ch.isalnum()).lower() for w in text.split())
    return [w for w in words if w]


def max_run(toks: Sequence[str], max_n: int = 4) -> tuple[int, list[str]]:
    """The most times any n-gram (n <= max_n) occurs back to back, and that n-gram."""
    best, gram = (1, list(toks[:1]))
    for n in range(1, max_n + 1):
        for i in range(len(toks) - 2 * n + 1):
            k = 1
            while toks[i + k * n : i + (k + 1) * n] == toks[i : i + n]:
                k += 1
            if k > best:
                best, gram = k, list(toks[i : i + n])
    return best, gram


def _repetition(out: str, script: str, src: str, src_script: str,
                th: GateThresholds) -> tuple[str, float] | None:
    toks = tokens(out, script)
    reps, gram = max_run(toks)
    if reps >= th.max_repeats and reps > max_run(tokens(src, src_script))[0]:
        sep = "" if script in UNSPACED else " "
        return f"repetition: {sep.join(gram)!r} {reps} times in a row", float(reps)
    if len(toks) >= MIN_UNIQUE_TOKENS:
        ratio = len(set(toks)) / len(toks)
        if ratio < th.min_unique_ratio:
            return f"repetition: {len(set(toks))} distinct of {len(toks)} tokens", 1.0 - ratio
    return None


def _length_outliers(pairs: Sequence[tuple[str, str]], flags: list[list[Flagged]], th: GateThresholds,
                     report: GateReport) -> None:
    """Flag outputs whose length ratio is `length_factor` away from the median of the non-empty ones."""
    ratios = {i: _chars(out) / _chars(src) for i, (src, out) in enumerate(pairs)
              if _chars(src) >= MIN_LENGTH_CHARS and not any(f.reason == "empty" for f in flags[i])}
    if not ratios:
        return
    median = statistics.median(ratios.values())
    report.median_ratio = median
    for i, r in ratios.items():
        off = r / median
        if off > th.length_factor or off < 1.0 / th.length_factor:
            src, out = pairs[i]
            flags[i].append(Flagged(i, src, out, "length",
                                    f"length: {r:.2f}x the source, median {median:.2f}x", abs(math.log(off))))


def _chars(text: str) -> int:
    return sum(1 for ch in text if not ch.isspace())


def _suffix(lang: str) -> str:
    return lang.split("_", 1)[1] if "_" in lang else ""


def _script_of(ch: str) -> str:
    """The Unicode script of a letter from its character name ('' for script-neutral letters)."""
    name = unicodedata.name(ch, "")
    if name.startswith(("CJK ", "IDEOGRAPHIC ")):
        return "HAN"
    if name.startswith("MODIFIER LETTER"):
        return ""  # apostrophe-like letters many scripts use
    if name.startswith(("FULLWIDTH ", "HALFWIDTH ")):
        name = name.split(" ", 1)[1]
    first = name.split(" ", 1)[0]
    return first.split("-", 1)[0]  # KATAKANA-HIRAGANA PROLONGED SOUND MARK -> KATAKANA


def _display(name: str) -> str:
    """A Unicode script name as an NLLB suffix where one exists (LATIN -> Latn)."""
    if name == "HAN":
        return "Han"  # Hans and Hant share their letters
    for suffix, names in SCRIPT_NAMES.items():
        if names == {name}:
            return suffix
    return name.title()


# ------------------------------------------------------------------ what a failed gate means (embed-targets)


GATE_FIELDS = {"max_bad_fraction": (0.0, 1.0), "min_script_fraction": (0.0, 1.0), "max_repeats": (2, None),
               "min_unique_ratio": (0.0, 1.0), "length_factor": (1.0, None)}
"""GateThresholds field -> (lowest, highest) allowed value of its `embed.gate_*` config field."""


def gate_thresholds(embed: EmbedConfig) -> GateThresholds:
    """The configured gate thresholds, or SltPipeError naming the field out of range."""
    values = {name: getattr(embed, f"gate_{name}") for name in GATE_FIELDS}
    for name, (lo, hi) in GATE_FIELDS.items():
        v = values[name]
        if v < lo or (hi is not None and v > hi):
            allowed = f"between {lo} and {hi}" if hi is not None else f"at least {lo}"
            raise SltPipeError(f"embed.gate_{name} = {v} is out of range ({allowed})",
                               fix=f"--set embed.gate_{name}={getattr(GateThresholds(), name)} (the default)")
    return GateThresholds(**values)


class PoorTranslationsError(SltPipeError):
    """A language whose machine translations fail the quality gates: nothing is published for it."""

    def __init__(self, problem: str, *, figures: dict[str, Any], path: str | Path | None = None,
                 fix: str | None = None):
        super().__init__(problem, path=path, fix=fix)
        self.figures = figures


def judge(rows: list[tuple[str, str, str]], lang: str, src_lang: str, thresholds: GateThresholds, *, allow: bool,
          label: str, where: Callable[[str], Path], langs: list[str], command: Callable[..., str]) -> dict[str, Any]:
    """Score the machine-translated (source, output, split) rows of a language; the figures for its
    manifest, or PoorTranslationsError when they fail and `allow` (embed.allow_poor_translations) is off.

    `label` names the translator, `where(split)` the file holding a split's translations, `langs`
    every language of the run and `command(langs, *flags)` its command line, for the error's fix."""
    if not rows:
        return {"applied": False, "why": "every sentence is the dataset's own reference"}
    first: dict[str, tuple[str, str]] = {}
    for src_text, out, split in rows:  # each distinct sentence once: the translator's work, not row counts
        first.setdefault(src_text, (out, split))
    scored = list(first.items())
    report = score_translations([(src_text, out) for src_text, (out, _) in scored], lang, src_lang, thresholds)
    figures = {"applied": True, **report.figures(), "allow_poor_translations": allow,
               "published_despite_failing": allow and not report.passed}
    if report.passed or allow:
        return figures
    c = report.counts
    worst = "\n".join(f"    {_clip(f.source)} -> {_clip(f.output)}  ({f.detail})" for f in report.worst)
    keep = [x for x in langs if x != lang]
    drop = f"drop it: `{command(keep)}`; or " if keep else ""
    raise PoorTranslationsError(
        f"{lang}: {report.bad} of {report.checked} {label} translations from {src_lang} "
        f"({report.bad_fraction:.0%}) fail the quality gates (at most {thresholds.max_bad_fraction:.0%} may): "
        f"empty {c['empty']}, wrong script {c['wrong_script']}, repetitive {c['repetitive']}, "
        f"length outliers {c['length']}; nothing is published for {lang}. Worst:\n{worst}",
        figures=figures, path=where(scored[report.worst[0].index][1][1]),
        fix=f"use a translator that knows {lang} (e.g. `--profile paper`: NLLB-200); or {drop}"
        f"publish them anyway: `{command(langs, '--allow-poor-translations')}`")


def _clip(text: str, width: int = 60) -> str:
    return repr(text if len(text) <= width else text[: width - 3] + "...")

"""What an embed-targets run reports: per language, where its texts come from, what was computed,
the quality gate's figures; and the summary table that prints it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rich.markup import escape
from rich.table import Table

from cache.store import Entry


@dataclass
class LangSummary:
    """One language of a run, as the summary table shows it."""

    lang: str
    source: str
    """'reference' (the dataset's own text) or the translator that made the texts."""
    sentences: int
    """Rows in targets.h5 (samples over all splits)."""
    translated: int
    """Distinct sentences sent to the translator in this run (0 when cached)."""
    embedded: int
    """Distinct sentences sent to the SONAR encoder in this run (0 when cached)."""
    seconds: float
    status: str
    """cached, built, refused (cannot be made well: nothing published) or failed."""
    key: str = ""
    gate: str = ""
    """The translation quality gate's figures, as the summary table shows them."""


@dataclass
class EmbedReport:
    entries: dict[str, Entry] = field(default_factory=dict)
    """Language -> its complete targets entry."""
    summary: list[LangSummary] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)
    """(language, error) of every language that was refused or could not be built; the others are."""
    calls: dict[str, int] = field(default_factory=dict)
    """Model calls (batches) this run made: {'translate': n, 'embed': n}."""


def summary_table(report: EmbedReport, dataset: str) -> Table:
    """Per language: where its texts come from, how many sentences, what this run computed, the gate's figures."""
    table = Table(title=f"embed-targets {dataset}",
                  caption="translated / embedded: distinct sentences this run computed (0 = from the cache); "
                  "gate: machine translations that are empty / in the wrong script / repetitive / length outliers")
    for col in ("language", "source", "sentences", "translated", "embedded", "seconds", "gate", "status"):
        table.add_column(col, justify="right" if col in ("sentences", "translated", "embedded", "seconds") else "left",
                         no_wrap=True)
    style = {"cached": "green", "built": "bold", "failed": "red", "refused": "red"}
    for r in report.summary:
        table.add_row(r.lang, r.source, str(r.sentences), str(r.translated), str(r.embedded), f"{r.seconds:.1f}",
                      escape(r.gate), f"[{style[r.status]}]{r.status}[/]")
    return table


def gate_cell(figures: dict[str, Any] | None) -> str:
    """A manifest's `quality_gate` in a few characters: 'ok 0/0/0/1 of 168', 'reference', ..."""
    if not figures:
        return "-"  # an entry made before the gates existed
    if not figures.get("applied"):
        return "reference (not gated)"
    c = "/".join(str(figures.get(k, 0)) for k in ("empty", "wrong_script", "repetitive", "length"))
    verdict = "ok" if figures.get("passed") else "POOR, allowed" if figures.get("published_despite_failing") else "FAIL"
    return f"{verdict} {c} of {figures.get('checked', 0)}"

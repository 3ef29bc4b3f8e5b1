"""What a cross-run report says, apart from how it is laid out (Markdown, HTML)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ragdistill.report.cache_savings import CacheRow
from ragdistill.report.significance import Significance
from ragdistill.report.table import Table


@dataclass(frozen=True)
class GroupRow:
    """One bar of the per-group chart: a metric's mean over the group's runs."""

    group: str
    mean: float
    std: float | None  # None for a group of one run
    runs: int


@dataclass(frozen=True)
class Report:
    """The content of ``report.md`` and ``report.html``.

    Attributes:
        sources: The paths the user named, as typed.
        table: One row per finished run.
        links: Per run, its folder relative to the report's folder (so links survive moving both together).
        recall_png: File name of the recall@k figure next to the report, or None if no run has a curve.
        bar_png: File name of the per-group bar chart, or None if no run has ``bar_metric``.
        group_by: The config key the runs were grouped by for the bar chart.
        bar_metric: The metric the bar chart shows.
        groups: The bar chart's figures, one per group.
        cache: The teacher cache's figures, one per teacher/LM config of the runs that used it (empty when
            no run did, e.g. only evaluation runs), so a sweep report says how much scoring the cache saved.
        skipped: ``(folder label, reason)`` per run that has no usable metrics.
        notes: Per-run problems that did not stop the report, and figures that could not be drawn.
        written: When the report was written (ISO 8601, local time).
        significance: The paired tests between the runs (``--significance``), or None.
    """

    sources: list[str]
    table: Table
    links: list[str]
    recall_png: str | None
    bar_png: str | None
    group_by: str
    bar_metric: str
    groups: list[GroupRow]
    cache: list[CacheRow]
    skipped: list[tuple[str, str]]
    notes: list[str]
    written: str
    significance: Significance | None = None


def columns_note(report: Report, code: Callable[[str], str], best: str) -> str:
    """Say what the table's columns are and what was left out, so a reader knows it is not the whole config.

    Args:
        report: The report.
        code: How the markup writes a code span (Markdown backticks, HTML ``<code>``).
        best: The sentence that explains how the best value of a metric column is marked.
    """
    table = report.table
    note = (
        f"Config columns: the {len(table.config_keys)} keys that differ between runs"
        f" ({table.shared} keys equal in every run and run-dir paths are left out"
    )
    if table.implied:
        note += (
            f"; so are {table.implied} keys that only some runs have, under a {code('_target_')} that differs (the"
            f" class names them) or a config node the other runs lack ({code('trainer')} in an evaluation run)"
        )
    note += f"). Each run's full config is its {code('resolved_config.yaml')}."
    if any(table.best):
        note += f" {best}"
    return note

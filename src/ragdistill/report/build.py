"""Build the cross-run report: find the runs, lay out the table, draw the figures, write MD and HTML.

This is what ``ragdistill-report`` runs; tests and notebooks call :func:`build_report` directly.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from ragdistill.report.bars import group_stats, plot_metric_by_group
from ragdistill.report.cache_savings import SCORING_S, cache_rows, unmeasured_runs
from ragdistill.report.document import GroupRow, Report
from ragdistill.report.html_report import to_html
from ragdistill.report.markdown_report import to_markdown
from ragdistill.report.runs import Run, Skipped, find_runs
from ragdistill.report.significance import Test, compare_runs
from ragdistill.report.table import ABSENT, Table, build_table, format_value, path_labels, select_metrics
from ragdistill.utils.atomic import atomic_write_text
from ragdistill.utils.plots import curves_from_metrics, plot_recall_at_k

logger = logging.getLogger(__name__)

DEFAULT_GROUP_BY = "auto"
"""The teacher class where runs differ in it, else the first config key that differs (:func:`choose_group_by`)."""
TEACHER_KEY = "teacher._target_"
DEFAULT_BAR_METRIC = "test/gold/recall@5"
REPORT_DIR = "report"
RECALL_PNG = "recall_at_k.png"
BAR_PNG = "metric_by_group.png"
RECALL_PREFIX = "test/gold/recall@"
BASELINE_PREFIX = "test_bm25/gold/recall@"


@dataclass(frozen=True)
class ReportFiles:
    """What :func:`build_report` wrote (figures None where no run had the figures' metrics)."""

    markdown: Path
    html: Path
    recall_png: Path | None
    bar_png: Path | None
    runs: int
    skipped: int


def default_out_dir(paths: Sequence[str | os.PathLike[str]]) -> Path:
    """``<first path>/report``: the report lands beside the runs it describes (a file path: its folder)."""
    first = Path(paths[0])
    return (first.parent if first.is_file() else first) / REPORT_DIR


def build_report(
    paths: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str] | None = None,
    metrics: Sequence[str] | None = None,
    group_by: str = DEFAULT_GROUP_BY,
    bar_metric: str = DEFAULT_BAR_METRIC,
    ignore: Sequence[str] = (),
    significance: Test | None = None,
) -> ReportFiles:
    """Write ``report.md``, ``report.html`` and their PNG figures for every run dir under ``paths``.

    Args:
        paths: Run dirs or folders holding them at any depth (``outputs/``, ``multirun/<date>/<time>_<name>``).
        out_dir: Where to write; default :func:`default_out_dir`. Never searched for runs.
        metrics: Metric keys or ``fnmatch`` patterns for the table's columns, in order; default the
            :data:`~ragdistill.report.table.DEFAULT_METRICS` present in some run.
        group_by: Config key whose value groups runs in the bar chart (a ``_target_`` shows as its class name).
        bar_metric: The metric the bar chart averages per group.
        ignore: More ``fnmatch`` patterns of config keys to leave out of the table.
        significance: Add paired tests between the runs over their test questions (``student``: t-test,
            ``fisher``: randomization test), the first run being listed first; None for none.

    Returns:
        The files written and how many runs were reported and skipped.

    Raises:
        ValueError: If no path is given, no finished run is found, or a requested metric is in no run.
        FileNotFoundError: If a path does not exist.
    """
    if not paths:
        raise ValueError("no path given: name run dirs or folders holding them (outputs/, a multirun dir)")
    out = Path(out_dir) if out_dir is not None else default_out_dir(paths)
    runs, skipped = find_runs(paths, exclude=out)
    if not runs:
        raise ValueError(_no_runs_message(paths, skipped))

    labels = path_labels([run.path for run in runs] + [entry.path for entry in skipped])
    table = build_table(runs, select_metrics(runs, metrics), labels=labels[: len(runs)], ignore=ignore)
    paired = compare_runs(runs, table.labels, significance) if significance else None  # before any file is written
    notes = [f"{label}: {note}" for label, run in zip(table.labels, runs, strict=True) for note in run.notes]

    out.mkdir(parents=True, exist_ok=True)
    recall_png = _recall_figure(runs, legend_labels(table), out / RECALL_PNG, notes)
    group_by = choose_group_by(runs, table.config_keys) if group_by == DEFAULT_GROUP_BY else group_by
    groups = _group_values(runs, group_by, bar_metric)
    bar_png = None
    if groups:
        bar_png = plot_metric_by_group(
            groups, out / BAR_PNG, title=f"{bar_metric} by {group_by} (mean ± std)", ylabel=bar_metric
        )
    else:
        notes.append(f"no bar chart: no run has {bar_metric}")
    notes += [
        f"{table.labels[i]}: no {SCORING_S} (an older run); its scored shards are not in the teacher cache's"
        " scoring time and do not price the saving"
        for i in unmeasured_runs(runs)
    ]

    report = Report(
        sources=[str(path) for path in paths],
        table=table,
        links=[os.path.relpath(run.path, out.resolve()) for run in runs],
        recall_png=recall_png.name if recall_png else None,
        bar_png=bar_png.name if bar_png else None,
        group_by=group_by,
        bar_metric=bar_metric,
        groups=[GroupRow(group, *stats) for group, stats in group_stats(groups).items()],
        cache=cache_rows(runs),
        skipped=[(label, entry.reason) for label, entry in zip(labels[len(runs) :], skipped, strict=True)],
        notes=notes,
        written=datetime.now().isoformat(timespec="seconds"),
        significance=paired,
    )
    markdown, html = out / "report.md", out / "report.html"
    atomic_write_text(markdown, to_markdown(report))
    atomic_write_text(html, to_html(report))
    logger.info("Wrote the report of %d runs (%d skipped) to %s", len(runs), len(skipped), html)
    return ReportFiles(markdown, html, recall_png, bar_png, runs=len(runs), skipped=len(skipped))


def legend_labels(table: Table) -> list[str]:
    """Each run named by the config values that set it apart (``loss.temperature=0.05``), not by its job folder.

    A sweep's job folders are ``0``, ``1``, ...; what a reader of a figure wants is the swept value. Up to
    three differing keys, each by its last two dotted parts; the folder name where no key differs.
    """
    keys = table.config_keys[:3]
    if not keys:
        return list(table.labels)
    short = [".".join(key.removesuffix("._target_").split(".")[-2:]) for key in keys]
    labels = [", ".join(f"{name}={cell}" for name, cell in zip(short, row, strict=False)) for row in table.rows]
    if len(set(labels)) < len(labels):  # runs that differ only in keys beyond the third: keep them apart
        labels = [f"{label} ({path})" for label, path in zip(labels, table.labels, strict=True)]
    return labels


def choose_group_by(runs: Sequence[Run], differing: Sequence[str]) -> str:
    """The teacher class when runs differ in it (or nothing differs), else the first differing config key.

    Grouping a loss or temperature sweep by teacher gives one bar; grouping by what was swept compares it.
    """
    if TEACHER_KEY in differing or not differing:
        return TEACHER_KEY
    return differing[0]


def _no_runs_message(paths: Sequence[str | os.PathLike[str]], skipped: Sequence[Skipped]) -> str:
    where = ", ".join(str(path) for path in paths)
    message = f"no finished run under {where}: a run dir is a folder holding metrics.json"
    if skipped:
        message += "; found only unfinished ones:\n" + "\n".join(f"  {entry.path}: {entry.reason}" for entry in skipped)
    return message


def _recall_figure(runs: Sequence[Run], labels: Sequence[str], path: Path, notes: list[str]) -> Path | None:
    """All runs' test recall@k in one figure, plus BM25 once when every run measured the same BM25 curve."""
    curves = {
        label: curve
        for label, run in zip(labels, runs, strict=True)
        if (curve := curves_from_metrics(run.metrics, RECALL_PREFIX))
    }
    if not curves:
        notes.append(f"no recall@k figure: no run has {RECALL_PREFIX}<k> metrics")
        return None
    baselines = [curve for run in runs if (curve := curves_from_metrics(run.metrics, BASELINE_PREFIX))]
    if baselines and all(curve == baselines[0] for curve in baselines):
        curves["BM25 (same in every run)"] = baselines[0]  # differing BM25 curves are in the table instead
    return plot_recall_at_k(curves, path, title="Gold-paragraph recall@k on the test questions")


def _group_values(runs: Sequence[Run], group_by: str, metric: str) -> dict[str, list[float]]:
    """``group -> [metric of each run in it]`` for the runs that have the metric, groups in first-seen order."""
    groups: dict[str, list[float]] = {}
    for run in runs:
        if metric in run.metrics:
            value = run.config.get(group_by, ABSENT)
            missing = f"(no {group_by.removesuffix('._target_')})"  # "(no teacher)": an evaluation run
            group = missing if value == ABSENT else format_value(value, group_by)
            groups.setdefault(group, []).append(run.metrics[metric])
    return groups

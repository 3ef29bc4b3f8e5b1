"""The comparison table: one row per run, the config keys that differ between runs, the chosen metrics.

Only differing config keys are shown because a sweep's runs share hundreds of keys; a reader wants what
was changed. Keys that always differ for no reason of substance (run dirs, Hydra's runtime, tags that
restate the config) are left out, as are keys under a node whose ``_target_`` differs and that only some
runs have: the class already names them, and listing, say, every LM setting of the one LM teacher would
bury the columns that matter.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ragdistill.report.runs import Run, natural_key

RETRIEVER_METRICS = (
    "test/gold/recall@1",
    "test/gold/recall@5",
    "test/gold/recall@20",
    "test/gold/mrr@10",
    "test/rag/em",
    "test/rag/f1",
)
"""The retriever under test on the run's own data; the extra evaluation sets' columns follow these."""

COMPARISON_METRICS = (
    "test_fusion_rrf/gold/recall@1",
    "test_fusion_rrf/gold/recall@5",
    "test_fusion_rrf/gold/recall@20",
    "test_fusion_rrf/gold/mrr@10",
    "test_bm25/gold/recall@1",
    "test_bm25/gold/recall@5",
    "test_bm25/gold/recall@20",
    "test_bm25/gold/mrr@10",
    "teacher/top1_gold",
    "runtime/fit_s",
    "runtime/teacher_s",
)
"""What the retriever is compared with (fusion, BM25, the teacher), then cost."""

DEFAULT_METRICS = RETRIEVER_METRICS + COMPARISON_METRICS
"""Shown when present in at least one run: the retriever first, then what it is compared with, then cost."""

SET_METRICS = ("gold/recall@5", "gold/mrr@10", "gold/ndcg@10", "answer/recall@5")
"""Shown for each extra evaluation set (``evaluation.sets``) a run has, under the set's prefix, when present."""

OWN_PREFIXES = ("test", "val")
"""Prefixes with ``<prefix>/questions`` that are the run's own data, not an extra evaluation set."""

NOISY_KEYS = ("hydra.*", "paths.*", "*_dir", "*.dirpath", "*.dir", "tags")
"""Config keys (``fnmatch`` patterns) that differ between runs without changing what a run computes."""

HIGHER_IS_BETTER = ("*recall@*", "*mrr@*", "*ndcg@*", "*/rag/em", "*/rag/f1", "teacher/top1_*")
LOWER_IS_BETTER = ("runtime/*",)

ABSENT = "—"  # a key or metric the run does not have


@dataclass(frozen=True)
class Table:
    """A formatted comparison table; renderers only lay it out.

    Attributes:
        config_keys: The differing config keys, one column each, in config order.
        metric_keys: The metric columns, in the order chosen.
        labels: One name per run (its path relative to the runs' common folder).
        rows: Formatted cells per run: config values, then metrics.
        best: Per row, the metric columns (indices into ``metric_keys``) holding that column's best value.
        shared: How many config keys are equal in every run (left out).
        implied: How many differing keys were left out as implied by another column (see :func:`_is_implied`).
    """

    config_keys: list[str]
    metric_keys: list[str]
    labels: list[str]
    rows: list[list[str]]
    best: list[set[int]]
    shared: int
    implied: int


def build_table(
    runs: Sequence[Run], metric_keys: Sequence[str], labels: Sequence[str] | None = None, ignore: Sequence[str] = ()
) -> Table:
    """Lay out ``runs`` as rows with their differing config keys and ``metric_keys`` as columns.

    Args:
        runs: The finished runs, in row order.
        metric_keys: The metric columns (see :func:`select_metrics`).
        labels: One name per run; by default its path relative to the runs' common folder.
        ignore: ``fnmatch`` patterns of config keys to leave out, besides :data:`NOISY_KEYS`.
    """
    if labels is not None and len(labels) != len(runs):
        raise ValueError(f"got {len(labels)} labels for {len(runs)} runs")
    config_keys, shared, implied = differing_keys(runs, ignore=(*NOISY_KEYS, *ignore))
    best = [_best_rows(runs, key) for key in metric_keys]
    return Table(
        config_keys=config_keys,
        metric_keys=list(metric_keys),
        labels=list(labels) if labels is not None else path_labels([run.path for run in runs]),
        rows=[
            [format_value(run.config.get(key, ABSENT), key) for key in config_keys]
            + [format_metric(key, run.metrics.get(key)) for key in metric_keys]
            for run in runs
        ],
        best=[{j for j, rows in enumerate(best) if i in rows} for i in range(len(runs))],
        shared=shared,
        implied=implied,
    )


def differing_keys(runs: Sequence[Run], ignore: Sequence[str]) -> tuple[list[str], int, int]:
    """Config keys whose value is not the same in every run.

    Returns:
        The differing keys (first run's config order, then keys only later runs have), how many keys are
        shared by all runs, and how many differing keys were dropped as implied (see :func:`_is_implied`).
    """
    runs = [run for run in runs if run.config]  # an unreadable config has no keys, not different ones
    keys = list(dict.fromkeys(key for run in runs for key in run.config))
    differ: list[str] = []
    shared = 0
    for key in keys:
        if any(fnmatch.fnmatchcase(key, pattern) for pattern in ignore) or _holds_own_dir(runs, key):
            continue
        values = [run.config.get(key, ABSENT) for run in runs]
        if all(value == values[0] for value in values):
            shared += 1
        else:
            differ.append(key)
    classes = [key.removesuffix("_target_") for key in differ if key.endswith("._target_")]  # "teacher."
    nodes = [{key.split(".", 1)[0] for key in run.config} for run in runs]  # top-level nodes per run
    implied = {key for key in differ if _is_implied(key, runs, classes, nodes)}
    return [key for key in differ if key not in implied], shared, len(implied)


def _is_implied(key: str, runs: Sequence[Run], classes: Sequence[str], nodes: Sequence[set[str]]) -> bool:
    """Whether a differing key that only some runs have tells nothing another column does not.

    Two cases: it sits under a node whose ``_target_`` differs (``teacher.lm.path`` when the teacher class
    differs: the class names it), or its whole top-level node is missing from the runs that lack it and it
    is equal wherever present (``trainer._target_`` when some runs are evaluations without a trainer).
    """
    lacking = [i for i, run in enumerate(runs) if key not in run.config]
    if not lacking:
        return False
    if any(key.startswith(node) and key != f"{node}_target_" for node in classes):
        return True
    top = key.split(".", 1)[0]
    present = {repr(run.config[key]) for run in runs if key in run.config}
    return "." in key and len(present) == 1 and all(top not in nodes[i] for i in lacking)


def _holds_own_dir(runs: Sequence[Run], key: str) -> bool:
    """Whether some run's value for ``key`` names that run's own folder (a path derived from the run dir)."""
    return any(isinstance(value := run.config.get(key), str) and str(run.path) in value for run in runs)


def select_metrics(runs: Sequence[Run], requested: Sequence[str] | None = None) -> list[str]:
    """The metric columns: ``requested`` keys or ``fnmatch`` patterns in order, or the defaults present.

    The defaults are :data:`RETRIEVER_METRICS`, each extra evaluation set's :data:`SET_METRICS`, then
    :data:`COMPARISON_METRICS`.

    Raises:
        ValueError: If a requested key or pattern matches no metric of any run (the message lists some).
    """
    available = sorted({key for run in runs for key in run.metrics}, key=lambda key: natural_key(Path(key)))
    if requested is None:
        defaults = [*RETRIEVER_METRICS, *set_metrics(runs), *COMPARISON_METRICS]
        return [key for key in defaults if key in available]
    chosen: list[str] = []
    for pattern in requested:
        matched = [key for key in available if fnmatch.fnmatchcase(key, pattern)]
        if not matched:
            raise ValueError(
                f"metric {pattern!r} is in no run's metrics.json; available: {', '.join(available[:40])}"
                + (" ..." if len(available) > 40 else "")
            )
        chosen.extend(key for key in matched if key not in chosen)
    return chosen


def set_metrics(runs: Sequence[Run]) -> list[str]:
    """The :data:`SET_METRICS` of every extra evaluation set in ``runs``, in order of first appearance.

    A set is found by its ``<name>/questions`` figure, which only the retriever's own run of a set has.
    """
    names = dict.fromkeys(
        key.removesuffix("/questions")
        for run in runs
        for key in run.metrics
        if key.endswith("/questions") and key.count("/") == 1 and key.removesuffix("/questions") not in OWN_PREFIXES
    )
    return [f"{name}/{metric}" for name in names for metric in SET_METRICS]


def path_labels(paths: Sequence[Path]) -> list[str]:
    """Each path relative to the paths' common folder (``06-48-42_quickstart/0``), or its name if alone."""
    if len(paths) == 1:
        return [paths[0].name]
    common = Path(os.path.commonpath(paths))
    return [str(path.relative_to(common)) if path != common else path.name for path in paths]


def format_value(value: Any, key: str = "") -> str:
    """A config value as a short cell: a ``_target_`` as its class name, floats compactly (``2e-05``)."""
    if isinstance(value, str) and key.endswith("_target_"):
        return value.rsplit(".", 1)[-1]
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list | dict):
        return _compact(value)
    return str(value)


def _compact(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_compact(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key}: {_compact(item)}" for key, item in value.items()) + "}"
    return format_value(value)


def format_metric(key: str, value: float | None) -> str:
    """Three decimals for scores and fractions; one for seconds and megabytes (``runtime/...``)."""
    if value is None:
        return ABSENT
    return f"{value:.1f}" if key.startswith("runtime/") else f"{value:.3f}"


def _best_rows(runs: Sequence[Run], key: str) -> set[int]:
    """Rows holding the best value of a metric whose direction is known (ties all count); none with < 2 values."""
    values: Mapping[int, float] = {i: run.metrics[key] for i, run in enumerate(runs) if key in run.metrics}
    if len(values) < 2 or len(set(values.values())) < 2:
        return set()
    if any(fnmatch.fnmatchcase(key, pattern) for pattern in HIGHER_IS_BETTER):
        target = max(values.values())
    elif any(fnmatch.fnmatchcase(key, pattern) for pattern in LOWER_IS_BETTER):
        target = min(values.values())
    else:
        return set()
    # compare as shown: two runs that print the same value are equally best
    return {i for i, value in values.items() if format_metric(key, value) == format_metric(key, target)}

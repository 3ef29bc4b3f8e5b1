"""How much the shared teacher-signal cache saved the runs of a report.

A sweep that varies the loss or the retriever under one teacher scores the teacher's signal once and then
reuses the cached shards (``ragdistill.teachers.cache``); its ``runtime/fit_s`` alone hides that. Every
training run records what it did in ``metrics.json``: ``teacher/cache_shards_scored`` and
``teacher/cache_shards_reused`` (shards), and ``runtime/teacher_scoring_s`` (seconds spent scoring the
shards that were not cached).

Runs are grouped by their teacher and LM config (every ``teacher.*`` and ``lm.*`` key), the settings under
which runs share shards. The **estimated saving** of a group is what its reused shards would have cost
to score, under the assumption that *a reused shard would have cost the group's mean seconds per scored
shard* (scoring seconds / scored shards, from the group's own runs). It is an estimate: shards differ in
size, a first run pays warm-up costs, and runs on other hardware score at other speeds. A group that
scored no shard (its cache was filled by runs outside the report) has nothing to price a reused shard by,
so its saving is unknown (None), not zero.

Grouping is by config values as written, so it can split runs that do share shards (a different
``teacher.batch_size``, which the cache key ignores) or merge runs that do not (same teacher, other
data); the latter still prices shards by the right teacher's speed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ragdistill.report.runs import Run
from ragdistill.report.table import ABSENT, format_value

TOTAL = "teacher/cache_shards_total"  # present in every run that asked a teacher through the cache
SCORED = "teacher/cache_shards_scored"
REUSED = "teacher/cache_shards_reused"
SCORING_S = "runtime/teacher_scoring_s"  # missing in runs older than the metric
CACHE_PREFIXES = ("teacher.", "lm.")
"""Config keys that decide which runs share cache shards (the teacher and the LM it asks)."""

TEACHER_KEY = "teacher._target_"


@dataclass(frozen=True)
class CacheRow:
    """The cache figures of one group of runs with the same teacher and LM config.

    Attributes:
        teacher: The teacher's class name, with what tells it apart from a same-named group if there is one.
        runs: How many runs of the report are in the group.
        shards_scored: Shards the group's runs scored (cache misses).
        shards_reused: Shards the group's runs loaded from the cache.
        scoring_s: Seconds the group's runs spent scoring; runs that did not record it add nothing.
        saved_s: Estimated seconds the reused shards saved (see the module docstring); None when the group
            has no measured scored shard to price them by.
    """

    teacher: str
    runs: int
    shards_scored: int
    shards_reused: int
    scoring_s: float
    saved_s: float | None


@dataclass
class _Group:
    config: dict[str, Any]
    runs: int = 0
    scored: int = 0
    reused: int = 0
    seconds: float = 0.0
    measured: int = 0  # scored shards whose runs recorded SCORING_S: the denominator of the per-shard price


def cache_rows(runs: Sequence[Run]) -> list[CacheRow]:
    """One row per teacher/LM config among the runs that used the teacher cache, in first-seen order.

    Runs without ``teacher/cache_shards_total`` (evaluation-only runs) are left out. A run that scored
    shards but has no ``runtime/teacher_scoring_s`` (older runs) counts its shards but does not price them.
    """
    groups: dict[tuple[tuple[str, str], ...], _Group] = {}
    for run in runs:
        if TOTAL not in run.metrics:
            continue
        config = {key: value for key, value in run.config.items() if key.startswith(CACHE_PREFIXES)}
        group = groups.setdefault(_identity(config), _Group(config))
        scored = round(run.metrics.get(SCORED, 0.0))
        group.runs += 1
        group.scored += scored
        group.reused += round(run.metrics.get(REUSED, 0.0))
        if SCORING_S in run.metrics:
            group.seconds += run.metrics[SCORING_S]
            group.measured += scored
    labels = _labels([group.config for group in groups.values()])
    return [
        CacheRow(
            teacher=label,
            runs=group.runs,
            shards_scored=group.scored,
            shards_reused=group.reused,
            scoring_s=group.seconds,
            saved_s=group.reused * group.seconds / group.measured if group.measured else None,
        )
        for label, group in zip(labels, groups.values(), strict=True)
    ]


def unmeasured_runs(runs: Sequence[Run]) -> list[int]:
    """Indices of runs that scored shards without recording ``runtime/teacher_scoring_s`` (worth a note)."""
    return [
        i
        for i, run in enumerate(runs)
        if TOTAL in run.metrics and run.metrics.get(SCORED, 0.0) > 0 and SCORING_S not in run.metrics
    ]


def totals_sentence(rows: Sequence[CacheRow]) -> str:
    """One sentence with the scoring time and what it would have been without the cache.

    Only groups with a known saving count, so the time and the saving are measured on the same runs.
    """
    priced = [row for row in rows if row.saved_s is not None]
    if not priced:
        return (
            "No group scored a shard itself, so there is no scoring time to price the reused shards by"
            " (the cache was filled by runs outside this report)."
        )
    took = sum(row.scoring_s for row in priced)
    saved = sum(row.saved_s or 0.0 for row in priced)
    without = took + saved
    share = 100 * saved / without if without > 0 else 0.0
    return (
        f"Teacher scoring took {took:.1f} s; without the cache it would have taken about {without:.1f} s"
        f" ({share:.0f}% saved)."
    )


CACHE_HEADER = ("teacher", "runs", "shards scored", "shards reused", "scoring time (s)", "saved (s)")
"""The columns of the report's teacher-cache table, in both renderings."""


def cache_cells(row: CacheRow) -> list[str]:
    """One row's cells under :data:`CACHE_HEADER`, unescaped (each renderer escapes them its own way)."""
    return [
        row.teacher,
        str(row.runs),
        str(row.shards_scored),
        str(row.shards_reused),
        format_seconds(row.scoring_s),
        format_seconds(row.saved_s),
    ]


def format_seconds(seconds: float | None) -> str:
    """A table cell: seconds with one decimal, like the ``runtime/...`` columns; a dash for unknown."""
    return ABSENT if seconds is None else f"{seconds:.1f}"


def _identity(config: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    """A hashable stand-in for a config (values may be lists); ``repr`` keeps ``1`` and ``"1"`` apart."""
    return tuple(sorted((key, repr(value)) for key, value in config.items()))


def _labels(configs: Sequence[dict[str, Any]]) -> list[str]:
    """The teacher class name per group; same-named groups get the first key that tells them apart.

    ``LMLikelihoodTeacher (teacher.target=answer)`` next to ``LMLikelihoodTeacher (teacher.target=relevance)``.
    If that still leaves two labels equal (three groups that differ in different keys), later ones get
    `` #2``, `` #3``.
    """
    names = [format_value(config.get(TEACHER_KEY, ABSENT), TEACHER_KEY) for config in configs]
    labels = list(names)
    for name, count in Counter(names).items():
        if count < 2:
            continue
        same = [i for i, other in enumerate(names) if other == name]
        keys = dict.fromkeys(key for i in same for key in configs[i])
        key = next(
            (key for key in keys if len({repr(configs[i].get(key, ABSENT)) for i in same}) > 1),
            None,
        )
        if key is not None:
            for i in same:
                labels[i] = f"{name} ({key}={format_value(configs[i].get(key, ABSENT), key)})"
    seen: Counter[str] = Counter()
    for i, label in enumerate(labels):
        seen[label] += 1
        if seen[label] > 1:
            labels[i] = f"{label} #{seen[label]}"
    return labels

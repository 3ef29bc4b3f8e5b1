"""Bar chart of one metric per group of runs (per teacher, per experiment), written as a PNG.

Like :mod:`ragdistill.utils.plots`, figures use matplotlib's object API on an Agg canvas, so plotting
never changes the process-wide backend nor leaks open figures.
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ragdistill.utils.atomic import atomic_write_bytes

logger = logging.getLogger(__name__)


def group_stats(values: Mapping[str, Sequence[float]]) -> dict[str, tuple[float, float | None, int]]:
    """``group -> (mean, sample standard deviation or None for a single run, number of runs)``."""
    stats: dict[str, tuple[float, float | None, int]] = {}
    for group, group_values in values.items():
        array = np.asarray(group_values, dtype=np.float64)
        std = float(array.std(ddof=1)) if len(array) > 1 else None
        stats[group] = (float(array.mean()), std, len(array))
    return stats


def plot_metric_by_group(
    values: Mapping[str, Sequence[float]],
    path: str | os.PathLike[str],
    title: str,
    ylabel: str,
) -> Path:
    """Draw one bar per group at the mean of its runs, with ±1 standard deviation where it has several.

    Args:
        values: Group name (e.g. ``"GoldTeacher"``) -> the metric of each of its runs.
        path: Where to write the PNG; parent folders are created, the file is replaced atomically.
        title: Figure title.
        ylabel: Y-axis label (the metric's key).

    Returns:
        The path written.

    Raises:
        ValueError: If there is no group, or a group has no value.
    """
    if not values:
        raise ValueError("no groups to plot")
    empty = [group for group, group_values in values.items() if len(group_values) == 0]
    if empty:
        raise ValueError(f"groups {empty} have no value to plot")

    stats = group_stats(values)
    names = list(stats)
    means = [stats[name][0] for name in names]
    errors = [stats[name][1] or 0.0 for name in names]

    fig = Figure(figsize=(max(4.8, 1.2 * len(names) + 2.0), 4.4), dpi=150, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    colors = [f"C{i % 10}" for i in range(len(names))]
    ax.bar(range(len(names)), means, color=colors, alpha=0.85)
    spread = [i for i, name in enumerate(names) if stats[name][1] is not None]  # a single run has no spread
    if spread:
        ax.errorbar(
            spread, [means[i] for i in spread], yerr=[errors[i] for i in spread], fmt="none", ecolor="black", capsize=6
        )
    for i, name in enumerate(names):  # above the error bar, so the two never overlap
        label = f"{means[i]:.3f}\nn={stats[name][2]}"
        ax.annotate(
            label, (i, means[i] + errors[i]), xytext=(0, 4), textcoords="offset points", ha="center", va="bottom"
        )
    ax.set_xticks(
        range(len(names)), names, rotation=20 if len(names) > 4 else 0, ha="right" if len(names) > 4 else "center"
    )
    top = max(mean + error for mean, error in zip(means, errors, strict=True))
    if top > 0 and all(value >= 0 for group_values in values.values() for value in group_values):
        ax.set_ylim(0.0, top * 1.25)  # room for the two-line labels above the bars
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, axis="y", alpha=0.4)
    ax.set_axisbelow(True)

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    out = Path(path)
    atomic_write_bytes(out, buffer.getvalue())
    logger.info("Wrote bar chart of %s over %d groups to %s", ylabel, len(names), out)
    return out

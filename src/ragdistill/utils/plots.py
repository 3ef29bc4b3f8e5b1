"""Plots across systems and runs, written as PNG files without a display.

Figures are built with matplotlib's object API on an Agg canvas rather than ``pyplot``, so
plotting never changes the process-wide backend nor leaks open figures in long sweeps.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, MaxNLocator, NullLocator, ScalarFormatter

logger = logging.getLogger(__name__)


def curves_from_metrics(metrics: Mapping[str, float], prefix: str = "gold/recall@") -> dict[int, float]:
    """Pick one recall curve out of a flat metrics dict.

    Args:
        metrics: Flat metrics as :func:`ragdistill.evaluation.metrics.evaluate_run` returns them.
        prefix: Key prefix before the cut-off, e.g. ``"gold/recall@"`` or ``"answer/recall@"``.

    Returns:
        ``k -> value``, sorted by ``k``; keys whose suffix is not an integer are ignored.
    """
    curve = {}
    for key, value in metrics.items():
        suffix = key.removeprefix(prefix)
        if key.startswith(prefix) and suffix.isdigit():
            curve[int(suffix)] = float(value)
    return dict(sorted(curve.items()))


def plot_recall_at_k(
    curves: Mapping[str, Mapping[int, float]],
    path: str | os.PathLike[str],
    title: str,
    ylabel: str = "recall@k",
) -> Path:
    """Draw one recall@k line per system and write it as a PNG.

    Args:
        curves: System name (e.g. ``"bm25"``, ``"dense"``, ``"dense+bm25 (rrf)"``) -> ``k -> value``,
            values in [0, 1].
        path: Where to write the PNG; parent folders are created, and the file is replaced
            atomically so a reader never sees half a PNG.
        title: Figure title.
        ylabel: Y-axis label (e.g. ``"top-k accuracy"`` for answer recall).

    Returns:
        The path written.

    Raises:
        ValueError: If there is no curve, or a curve has no point or a ``k < 1`` (log axis).
    """
    if not curves:
        raise ValueError("no curves to plot")
    for name, curve in curves.items():
        if not curve or min(curve) < 1:
            raise ValueError(f"curve {name!r} needs at least one point, all at k >= 1; got ks {sorted(curve)}")

    fig = Figure(figsize=(6.4, 4.4), dpi=150, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    markers = "osD^vP*X"
    for i, (name, curve) in enumerate(curves.items()):
        ks = sorted(curve)
        ax.plot(ks, [curve[k] for k in ks], marker=markers[i % len(markers)], label=name)
    _style_axes(ax, sorted({k for curve in curves.values() for k in curve}), title, ylabel)

    out = save_png(fig, path)
    logger.info("Wrote recall@k plot of %d systems to %s", len(curves), out)
    return out


def save_png(fig: Figure, path: str | os.PathLike[str]) -> Path:
    """Write ``fig`` as a PNG, creating parent folders; replaced atomically so nobody sees half a PNG."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        fig.savefig(tmp, format="png")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


Series = Mapping[str, Mapping[int, float]]
"""Metric name -> optimizer step -> value."""


def plot_training_diagnostics(panels: Mapping[str, Series], path: str | os.PathLike[str], title: str) -> Path:
    """Draw one panel per diagnostic (e.g. loss, acc@1, teacher-student rank correlation) against the step.

    Args:
        panels: Panel title -> its series (e.g. ``{"loss": {"train/loss": {...}, "val/loss": {...}}}``);
            empty series and panels are left out. A series with one point (one validation) is drawn as a
            marker.
        path: The PNG to write (atomically).
        title: Figure title (e.g. the run name).

    Raises:
        ValueError: If no panel has a point.
    """
    drawn = {name: {key: s for key, s in series.items() if s} for name, series in panels.items()}
    drawn = {name: series for name, series in drawn.items() if series}
    if not drawn:
        raise ValueError("no training diagnostics to plot (no step was logged)")
    fig = Figure(figsize=(4.2 * len(drawn), 3.6), dpi=150, layout="constrained")
    FigureCanvasAgg(fig)
    for ax, (name, series) in zip(fig.subplots(1, len(drawn), squeeze=False)[0], drawn.items(), strict=True):
        for key, points in series.items():
            steps = sorted(points)
            ax.plot(steps, [points[s] for s in steps], marker="o" if len(steps) < 20 else None, label=key)
        ax.set_title(name)
        ax.set_xlabel("optimizer step")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # a 3-step run: ticks 0, 1, 2, not 0.25, 0.5, ...
        ax.grid(True, alpha=0.4)
        ax.legend(loc="best", fontsize="small")
    fig.suptitle(title)
    return save_png(fig, path)


def _style_axes(ax: Axes, ks: list[int], title: str, ylabel: str) -> None:
    """Log x-axis labelled exactly at the evaluated ks, y in [0, 1], grid and legend."""
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(FixedLocator(ks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(ScalarFormatter())
    pad = 1.15  # keep the end markers off the frame on a log axis
    ax.set_xlim(ks[0] / pad, ks[-1] * pad)
    ax.set_ylim(0.0, 1.0)
    ax.set_xlabel("k (passages retrieved)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, which="major", alpha=0.4)
    ax.legend(loc="best")

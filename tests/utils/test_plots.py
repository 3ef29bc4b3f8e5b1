"""Recall@k plot: a readable PNG from metric dicts."""

from __future__ import annotations

from pathlib import Path

import pytest

from ragdistill.utils.plots import curves_from_metrics, plot_recall_at_k

METRICS = {
    "gold/recall@20": 0.71,
    "gold/recall@1": 0.32,
    "gold/recall@100": 0.85,
    "gold/recall@5": 0.55,
    "gold/mrr@10": 0.41,
    "answer/recall@5": 0.6,
}


def test_curves_from_metrics() -> None:
    assert curves_from_metrics(METRICS) == {1: 0.32, 5: 0.55, 20: 0.71, 100: 0.85}
    assert list(curves_from_metrics(METRICS)) == [1, 5, 20, 100]
    assert curves_from_metrics(METRICS, prefix="answer/recall@") == {5: 0.6}


def test_plot_writes_png(tmp_path: Path) -> None:
    curves = {
        "bm25": curves_from_metrics(METRICS),
        "dense": {1: 0.41, 5: 0.66, 20: 0.8, 100: 0.9},
        "dense+bm25 (rrf)": {1: 0.45, 5: 0.7, 20: 0.84, 100: 0.93},
    }
    out = plot_recall_at_k(curves, tmp_path / "plots" / "recall.png", title="SQuAD-open dev, gold paragraph")
    assert out == tmp_path / "plots" / "recall.png"
    data = out.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000
    assert [p.name for p in out.parent.iterdir()] == ["recall.png"]  # no temp file left


def test_plot_rejects_empty_input(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no curves"):
        plot_recall_at_k({}, tmp_path / "x.png", title="t")
    with pytest.raises(ValueError, match="k >= 1"):
        plot_recall_at_k({"a": {0: 0.1}}, tmp_path / "x.png", title="t")


def test_a_three_step_run_gets_whole_step_ticks_and_visible_points(monkeypatch, tmp_path: Path) -> None:
    """A fixture run logs 3 steps: its diagnostics must read as 3 points on steps 0, 1, 2, not fractional ticks."""
    from ragdistill.utils import plots

    figures = []
    monkeypatch.setattr(plots, "save_png", lambda fig, path: figures.append(fig) or Path(path))
    series = {"loss": {"train/loss": {0: 0.9, 1: 0.7, 2: 0.6}, "val/loss": {2: 0.65}}}
    plots.plot_training_diagnostics(series, tmp_path / "d.png", title="fixture")

    (ax,) = figures[0].axes
    ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
    assert ticks and all(float(t).is_integer() for t in ticks)
    assert [line.get_marker() for line in ax.get_lines()] == ["o", "o"]  # short series: every point marked

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

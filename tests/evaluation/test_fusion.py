"""Run fusion: hand-computed RRF and weighted-sum orders, qid alignment, argument errors."""

from __future__ import annotations

import pytest

from ragdistill.evaluation.fusion import fuse_runs

DENSE = {"q1": {"d1": 0.9, "d2": 0.8, "d3": 0.7}}
BM25 = {"q1": {"d3": 12.0, "d1": 11.0, "d4": 3.0}}


def _order(entry: dict[str, float]) -> list[str]:
    return sorted(entry, key=entry.__getitem__, reverse=True)


def test_rrf_by_hand() -> None:
    fused = fuse_runs([DENSE, BM25], method="rrf", rrf_k=60)["q1"]
    expected = {
        "d1": 1 / 61 + 1 / 62,  # ranks 1 and 2
        "d3": 1 / 63 + 1 / 61,  # ranks 3 and 1
        "d2": 1 / 62,  # rank 2 in dense only
        "d4": 1 / 63,  # rank 3 in bm25 only
    }
    assert fused == pytest.approx(expected)
    assert _order(fused) == ["d1", "d3", "d2", "d4"]


def test_rrf_k0_ignores_score_scale() -> None:
    scaled = {"q1": {pid: 1000 * s for pid, s in DENSE["q1"].items()}}
    fused = fuse_runs([scaled, BM25], rrf_k=0)["q1"]
    assert fused == pytest.approx({"d1": 1 + 1 / 2, "d3": 1 / 3 + 1, "d2": 1 / 2, "d4": 1 / 3})


def test_wsum_min_max_by_hand() -> None:
    fused = fuse_runs([DENSE, BM25], method="wsum", weights=[0.75, 0.25])["q1"]
    dense_mm = {"d1": 1.0, "d2": 0.5, "d3": 0.0}  # (s - 0.7) / 0.2
    bm25_mm = {"d3": 1.0, "d1": 8 / 9, "d4": 0.0}  # (s - 3) / 9
    expected = {d: 0.75 * dense_mm.get(d, 0.0) + 0.25 * bm25_mm.get(d, 0.0) for d in ("d1", "d2", "d3", "d4")}
    assert fused == pytest.approx(expected)
    assert _order(fused)[:3] == ["d1", "d2", "d3"]


def test_qids_in_one_run_only_are_kept() -> None:
    other = {"q1": BM25["q1"], "q2": {"d9": 1.0}}
    fused = fuse_runs([DENSE, other])
    assert set(fused) == {"q1", "q2"}
    assert fused["q2"] == pytest.approx({"d9": 1 / 61})
    assert all(type(s) is float for entry in fused.values() for s in entry.values())


def test_argument_errors() -> None:
    with pytest.raises(ValueError, match=r"valid methods: rrf, wsum"):
        fuse_runs([DENSE, BM25], method="borda")
    with pytest.raises(ValueError, match="at least two runs"):
        fuse_runs([DENSE])
    with pytest.raises(ValueError, match="weights apply to method 'wsum' only"):
        fuse_runs([DENSE, BM25], weights=[0.5, 0.5])
    with pytest.raises(ValueError, match="2 weights for 3 runs"):
        fuse_runs([DENSE, BM25, DENSE], method="wsum", weights=[0.5, 0.5])
    with pytest.raises(ValueError, match="unknown normalisation"):
        fuse_runs([DENSE, BM25], method="wsum", norm="softmax")
    with pytest.raises(ValueError, match="run 1 retrieved no passage"):
        fuse_runs([DENSE, {"q1": {}}])

"""FaissIndex: exact search against numpy, approximate kinds against exact, save/load, errors."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import pytest

from ragdistill.index.faiss_index import (
    IDS_FILE,
    INDEX_FILE,
    MANIFEST_FILE,
    META_FILE,
    CorruptIndexError,
    FaissIndex,
)


def _ids(n: int) -> list[str]:
    return [f"p{i}" for i in range(n)]


def _clustered(n: int, dim: int, n_clusters: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors around random centres, and queries drawn near the same centres."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_clusters, dim))
    x = centres[rng.integers(n_clusters, size=n)] + 0.3 * rng.normal(size=(n, dim))
    q = centres[rng.integers(n_clusters, size=50)] + 0.3 * rng.normal(size=(50, dim))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return x.astype(np.float32), q.astype(np.float32)


@pytest.mark.parametrize("metric", ["ip", "l2"])
def test_flat_equals_brute_force(metric: str) -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 24)).astype(np.float32)  # [N, D]
    q = rng.normal(size=(7, 24)).astype(np.float32)  # [Q, D]
    index = FaissIndex("flat", metric=metric)
    index.build(x, _ids(300))

    scores, ids = index.search(q, k=10)

    neg_sq_l2 = -((q[:, None, :] - x[None, :, :]) ** 2).sum(-1)  # [Q, N]
    sims = q @ x.T if metric == "ip" else neg_sq_l2  # [Q, N]
    top = np.argsort(-sims, axis=1)[:, :10]  # [Q, 10]
    assert scores.shape == (7, 10)
    assert ids == [[f"p{j}" for j in row] for row in top]
    np.testing.assert_allclose(scores, np.take_along_axis(sims, top, axis=1), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(("kind", "min_recall"), [("hnsw", 0.95), ("ivfpq", 0.7)])
def test_approximate_kinds_recall_against_flat(kind: str, min_recall: float) -> None:
    x, q = _clustered(4000, 32, n_clusters=40)
    exact = FaissIndex("flat")
    exact.build(x, _ids(len(x)))
    approx = FaissIndex(kind, ivf_nlist=64, pq_m=16, nprobe=16)
    approx.build(x, _ids(len(x)))

    _, truth = exact.search(q, 10)
    _, found = approx.search(q, 10)

    recall = np.mean([len(set(t) & set(f)) / 10 for t, f in zip(truth, found, strict=True)])
    assert recall >= min_recall, f"{kind} recall@10 vs flat = {recall:.3f}"


def test_ivfpq_clamps_nlist_and_pq_m(caplog: pytest.LogCaptureFixture) -> None:
    x, q = _clustered(1000, 30, n_clusters=10)
    index = FaissIndex("ivfpq", ivf_nlist=1024, pq_m=16)
    with caplog.at_level(logging.WARNING, logger="ragdistill.index.faiss_index"):
        index.build(x, _ids(len(x)))
    assert "using nlist=25" in caplog.text  # 1000 // 39
    assert "using pq_m=15" in caplog.text  # largest divisor of 30 that is <= 16
    scores, ids = index.search(q, 5)
    assert scores.shape == (50, 5)
    assert all(len(row) == 5 for row in ids)


def test_k_is_clamped_and_padding_dropped() -> None:
    x, q = _clustered(400, 16, n_clusters=8)
    flat = FaissIndex("flat")
    flat.build(x, _ids(400))
    scores, ids = flat.search(q[:2], k=1000)
    assert scores.shape == (2, 400)
    assert sorted(ids[0]) == sorted(_ids(400))

    # One probed list out of ten holds fewer than 400 vectors: faiss pads with -1.
    ivf = FaissIndex("ivfpq", ivf_nlist=10, pq_m=4, nprobe=1)
    ivf.build(x, _ids(400))
    scores, ids = ivf.search(q[:2], k=400)
    for row_scores, row_ids in zip(scores, ids, strict=True):
        assert 0 < len(row_ids) < 400
        assert np.isfinite(row_scores[: len(row_ids)]).all()
        assert np.isneginf(row_scores[len(row_ids) :]).all()


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivfpq"])
def test_save_load_roundtrip(tmp_path: Path, kind: str) -> None:
    x, q = _clustered(2000, 16, n_clusters=20)
    index = FaissIndex(kind, hnsw_ef_search=64, ivf_nlist=32, pq_m=8, nprobe=8)
    index.build(x, _ids(len(x)))
    scores, ids = index.search(q, 10)

    index.save(tmp_path / "idx")
    loaded = FaissIndex.load(tmp_path / "idx")

    assert len(loaded) == 2000 and loaded.dim == 16 and loaded.kind == kind
    assert (loaded.hnsw_ef_search, loaded.nprobe) == (64, 8)
    loaded_scores, loaded_ids = loaded.search(q, 10)
    assert loaded_ids == ids
    np.testing.assert_allclose(loaded_scores, scores)
    assert not [p.name for p in (tmp_path / "idx").iterdir() if ".tmp" in p.name]


def test_bad_kind_and_metric() -> None:
    with pytest.raises(ValueError, match=r"valid kinds: flat, hnsw, ivfpq"):
        FaissIndex("ivf")
    with pytest.raises(ValueError, match=r"valid metrics: ip, l2"):
        FaissIndex(metric="cosine")


def test_empty_corpus_and_bad_ids() -> None:
    with pytest.raises(ValueError, match="empty corpus"):
        FaissIndex().build(np.zeros((0, 8), dtype=np.float32), [])
    with pytest.raises(ValueError, match="3 embeddings but 2 ids"):
        FaissIndex().build(np.zeros((3, 8), dtype=np.float32), ["a", "b"])
    with pytest.raises(ValueError, match="unique"):
        FaissIndex().build(np.zeros((2, 8), dtype=np.float32), ["a", "a"])


def test_search_errors() -> None:
    with pytest.raises(RuntimeError, match="build"):
        FaissIndex().search(np.zeros((1, 8), dtype=np.float32), 1)
    index = FaissIndex()
    index.build(np.eye(8, dtype=np.float32), _ids(8))
    with pytest.raises(ValueError, match=r"query dimension 5 does not match index dimension 8"):
        index.search(np.zeros((2, 5), dtype=np.float32), 3)
    with pytest.raises(ValueError, match="2-D"):
        index.search(np.zeros(8, dtype=np.float32), 3)


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    index = FaissIndex()
    index.build(np.eye(8, dtype=np.float32), _ids(8))
    return index.save(tmp_path / "idx")


def test_load_missing_file(saved: Path) -> None:
    (saved / INDEX_FILE).unlink()
    with pytest.raises(CorruptIndexError, match=rf"{INDEX_FILE} is missing"):
        FaissIndex.load(saved)
    with pytest.raises(FileNotFoundError, match=r"no faiss index in .*nowhere"):
        FaissIndex.load(saved.parent / "nowhere")


def _rewrite(saved: Path, name: str, data: bytes) -> None:
    """Replace ``name`` and re-record it in the manifest: a consistent-looking save with bad content."""
    (saved / name).write_bytes(data)
    manifest = json.loads((saved / MANIFEST_FILE).read_text(encoding="utf-8"))
    manifest["files"][name] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    (saved / MANIFEST_FILE).write_text(json.dumps(manifest), encoding="utf-8")


def test_load_corrupt_index(saved: Path) -> None:
    _rewrite(saved, INDEX_FILE, b"not a faiss index")
    with pytest.raises(ValueError, match="cannot read faiss index"):
        FaissIndex.load(saved)


def test_load_corrupt_json(saved: Path) -> None:
    _rewrite(saved, IDS_FILE, b'["p0", ')
    with pytest.raises(ValueError, match=rf"cannot read .*{IDS_FILE}"):
        FaissIndex.load(saved)


def test_load_ids_count_mismatch(saved: Path) -> None:
    _rewrite(saved, IDS_FILE, json.dumps(_ids(7)).encode())
    with pytest.raises(ValueError, match=r"holds 8 vectors but ids\.json has 7 ids"):
        FaissIndex.load(saved)


def test_load_meta_mismatch(saved: Path) -> None:
    meta = json.loads((saved / META_FILE).read_text(encoding="utf-8"))
    _rewrite(saved, META_FILE, json.dumps({**meta, "dim": 9}).encode())
    with pytest.raises(ValueError, match="dim=9"):
        FaissIndex.load(saved)


@pytest.mark.parametrize("metric", ["ip", "l2"])
def test_sharded_flat_returns_the_unsharded_top_k(metric: str) -> None:
    x, q = _clustered(301, 16, n_clusters=12)  # 301 rows over 4 shards: blocks of 76, 75, 75, 75
    single = FaissIndex("flat", metric=metric)
    single.build(x, _ids(len(x)))
    sharded = FaissIndex("flat", metric=metric, shards=4)
    sharded.build(x, _ids(len(x)))

    assert "shards=4" in repr(sharded) and len(sharded) == 301
    for k in (1, 10, 301):
        want_scores, want_ids = single.search(q, k)
        got_scores, got_ids = sharded.search(q, k)
        assert got_ids == want_ids
        np.testing.assert_allclose(got_scores, want_scores, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("kind", "min_recall"), [("hnsw", 0.95), ("ivfpq", 0.7)])
def test_sharded_approximate_kinds_recall_against_flat(kind: str, min_recall: float) -> None:
    x, q = _clustered(4000, 32, n_clusters=40)
    exact = FaissIndex("flat")
    exact.build(x, _ids(len(x)))
    sharded = FaissIndex(kind, ivf_nlist=32, pq_m=16, nprobe=16, shards=3)
    sharded.build(x, _ids(len(x)))

    _, truth = exact.search(q, 10)
    _, found = sharded.search(q, 10)

    recall = np.mean([len(set(t) & set(f)) / 10 for t, f in zip(truth, found, strict=True)])
    assert recall >= min_recall, f"sharded {kind} recall@10 vs flat = {recall:.3f}"


@pytest.mark.parametrize("kind", ["flat", "ivfpq"])
def test_sharded_save_load_roundtrip_replaces_an_earlier_save(tmp_path: Path, kind: str) -> None:
    x, q = _clustered(1000, 16, n_clusters=10)
    index = FaissIndex(kind, ivf_nlist=8, pq_m=8, nprobe=4, shards=3)
    index.build(x, _ids(len(x)))
    first = FaissIndex(kind, ivf_nlist=8, pq_m=8, shards=1)
    first.build(x, _ids(len(x)))
    first.save(tmp_path / "idx")  # an unsharded save in the same folder, replaced below
    index.save(tmp_path / "idx")

    files = sorted(p.name for p in (tmp_path / "idx").glob("*.faiss"))
    assert files == ["index-00000.faiss", "index-00001.faiss", "index-00002.faiss"]
    loaded = FaissIndex.load(tmp_path / "idx")
    assert (loaded.shards, loaded.nprobe, len(loaded)) == (3, 4, 1000)
    want_scores, want_ids = index.search(q, 10)
    got_scores, got_ids = loaded.search(q, 10)
    assert got_ids == want_ids
    np.testing.assert_allclose(got_scores, want_scores)


def test_sharded_load_names_a_missing_shard(tmp_path: Path) -> None:
    index = FaissIndex(shards=2)
    index.build(np.eye(8, dtype=np.float32), _ids(8))
    index.save(tmp_path / "idx")
    (tmp_path / "idx" / "index-00001.faiss").unlink()
    with pytest.raises(CorruptIndexError, match=r"index-00001\.faiss is missing"):
        FaissIndex.load(tmp_path / "idx")


def test_more_shards_than_passages_are_clamped(caplog: pytest.LogCaptureFixture) -> None:
    index = FaissIndex(shards=8)
    with caplog.at_level(logging.WARNING, logger="ragdistill.index.faiss_index"):
        index.build(np.eye(3, dtype=np.float32), _ids(3))
    assert "using 3 shards" in caplog.text
    _, ids = index.search(np.eye(3, dtype=np.float32), 1)
    assert ids == [["p0"], ["p1"], ["p2"]]

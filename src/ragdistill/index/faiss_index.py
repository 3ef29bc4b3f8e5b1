"""A small faiss wrapper: build over passage embeddings, search with query embeddings, save, load.

Shaped after Tevatron's ``FaissFlatSearcher``: the index knows passage ids (not just row numbers)
so callers get back ``[Q, k]`` scores and the matching passage ids, ready for a ranx run. With
``shards > 1`` the index is several independent faiss indexes over consecutive blocks of the corpus,
searched together (``faiss.IndexShards``) and saved as one file each (see :class:`FaissIndex`).

A saved index directory ends with ``manifest.json``, written last: the byte count and sha256 of every file
the save wrote. :meth:`FaissIndex.load` checks it before reading anything, so a truncated, corrupted or
half-written index raises :class:`CorruptIndexError` instead of loading as a wrong one.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, get_args

import faiss
import numpy as np

from ragdistill.utils.atomic import atomic_write_text, atomic_write_with
from ragdistill.utils.constraints import PositiveInt
from ragdistill.utils.manifest import (
    MANIFEST_FILE,
    CorruptArtifactError,
    NewerManifestError,
    verify_manifest,
    write_manifest,
)
from ragdistill.utils.progress import track_chunks

logger = logging.getLogger(__name__)

IndexKind = Literal["flat", "hnsw", "ivfpq"]
IndexMetric = Literal["ip", "l2"]
KINDS: tuple[str, ...] = get_args(IndexKind)
METRICS = {"ip": faiss.METRIC_INNER_PRODUCT, "l2": faiss.METRIC_L2}

INDEX_FILE = "index.faiss"
SHARD_FILE = "index-{:05d}.faiss"
IDS_FILE = "ids.json"
META_FILE = "meta.json"
FORMAT_VERSION = 2
"""Version in ``meta.json``. 2: saved with a manifest (version 1, without one, is no longer read)."""
_REBUILD_HINT = (
    "rerun the command that wrote it, or build it with FaissIndex.build(...) and FaissIndex.save(...) "
    "(the pipeline's evaluation writes <run_dir>/index)"
)

# faiss's k-means asks for ~39 training points per centroid and warns below that.
_POINTS_PER_CENTROID = 39
# Vectors added per faiss call; above this a progress bar is shown.
_ADD_CHUNK = 65_536
# IVF-PQ is trained on at most this many vectors: more adds time, not quality.
_MAX_TRAIN = 262_144


class CorruptIndexError(CorruptArtifactError):
    """A saved index directory that must not be used: truncated, corrupted, incomplete or half-written.

    The message names the file, what is wrong with it and how to rebuild the index.
    """


class FaissIndex:
    """Exact or approximate nearest-neighbour search over passage embeddings, keyed by passage id.

    Scores are always "higher = more similar": inner products for ``metric="ip"`` and negated
    squared L2 distances for ``metric="l2"``, so a run built from them ranks the same way for both.

    Args:
        kind: ``flat`` (exact, the reference), ``hnsw`` (graph, no training, fast queries) or
            ``ivfpq`` (inverted lists over product-quantised codes, small memory, needs training).
        metric: ``ip`` (inner product; cosine when the embeddings are normalised) or ``l2``.
        hnsw_m: Neighbours per HNSW node; more = better recall, more memory.
        hnsw_ef_search: HNSW search beam width; more = better recall, slower queries.
        ivf_nlist: Number of IVF lists; clamped to what the corpus can train (~39 points each).
        pq_m: Number of PQ sub-quantisers; must divide the dimension (the largest divisor of the
            dimension not above it is used).
        nprobe: IVF lists visited per query; more = better recall, slower queries.
        shards: Build the index as this many independent indexes, one per consecutive block of passages
            (block sizes differ by at most one; fewer shards if there are fewer passages). A query searches
            every shard (in parallel threads) and their top-k are merged into one top-k.

    Sharding limits: ``flat`` shards return exactly the top-k of one flat index (only ties between equal
    scores may order differently). ``hnsw`` and ``ivfpq`` shards are each built or trained on their own
    block only, so recall differs a little from one index over everything, and each query costs a search
    per shard. Shards bound what one faiss index holds (one file, one IVF-PQ training, one HNSW graph
    each) and split search over threads; they do not split memory over processes: all shards are loaded,
    and built from the full ``[N, D]`` embedding matrix, in the one process that builds or searches.

    Raises:
        ValueError: If ``kind`` or ``metric`` is unknown, or a size parameter is not positive.
    """

    def __init__(
        self,
        kind: IndexKind = "flat",
        metric: IndexMetric = "ip",
        hnsw_m: PositiveInt = 32,
        hnsw_ef_search: PositiveInt = 128,
        ivf_nlist: PositiveInt = 1024,
        pq_m: PositiveInt = 16,
        nprobe: PositiveInt = 32,
        shards: PositiveInt = 1,
    ) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown index kind {kind!r}; valid kinds: {', '.join(KINDS)}")
        if metric not in METRICS:
            raise ValueError(f"unknown metric {metric!r}; valid metrics: {', '.join(METRICS)}")
        for name, value in (
            ("hnsw_m", hnsw_m),
            ("hnsw_ef_search", hnsw_ef_search),
            ("ivf_nlist", ivf_nlist),
            ("pq_m", pq_m),
            ("nprobe", nprobe),
            ("shards", shards),
        ):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        self.kind = kind
        self.metric = metric
        self.hnsw_m = hnsw_m
        self.hnsw_ef_search = hnsw_ef_search
        self.ivf_nlist = ivf_nlist
        self.pq_m = pq_m
        self.nprobe = nprobe
        self.shards = shards
        self._index: Any = None
        self._parts: list[Any] = []  # the shards' own indexes (one, the index itself, when unsharded)
        self._ids: list[str] = []

    def __len__(self) -> int:
        return len(self._ids)

    def __repr__(self) -> str:
        dim = self.dim if self._index is not None else None
        sharded = f", shards={len(self._parts)}" if len(self._parts) > 1 else ""
        return f"FaissIndex(kind={self.kind!r}, metric={self.metric!r}, dim={dim}, count={len(self)}{sharded})"

    @property
    def dim(self) -> int:
        """Embedding dimension of the built index."""
        return int(self._built().d)

    def build(self, embeddings: np.ndarray, ids: list[str]) -> None:
        """Index ``embeddings``, row ``i`` answering to ``ids[i]``; replaces any previous content.

        Args:
            embeddings: Passage embeddings, converted to contiguous float32.
            ids: Unique passage ids, one per row.

        Shapes:
            embeddings: ``[N, D]``.

        Raises:
            ValueError: On an empty corpus, a non-2-D array, a row/id count mismatch or duplicate ids.
        """
        x = _as_matrix(embeddings, "embeddings")  # [N, D]
        n = len(x)
        if n == 0:
            raise ValueError("empty corpus: cannot build an index over 0 embeddings")
        if len(ids) != n:
            raise ValueError(f"got {n} embeddings but {len(ids)} ids; they must match one to one")
        if len(set(ids)) != n:
            raise ValueError(f"passage ids must be unique; {n - len(set(ids))} duplicates among {n}")

        shards = min(self.shards, n)
        if shards < self.shards:
            logger.warning("shards=%d but only %d passages; using %d shards", self.shards, n, shards)
        parts = [self._build_part(block) for block in np.array_split(x, shards)]
        self._set_parts(parts)
        self._ids = list(ids)
        self._apply_search_params()
        logger.info("Built %r", self)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, list[list[str]]]:
        """Return the ``k`` best passages for each query, best first.

        ``k`` is clamped to the number of indexed passages. Approximate indexes may find fewer
        than ``k`` neighbours; faiss's ``-1`` padding is dropped from the ids, and the matching
        score slots hold ``-inf``.

        Args:
            queries: Query embeddings, in the same space and dimension as the passages.
            k: Number of passages per query.

        Shapes:
            queries: ``[Q, D]``.

        Returns:
            ``(scores, ids)``: scores ``[Q, k']`` float32 (higher = better, ``k' = min(k, N)``)
            and, per query, the passage ids of the non-padded slots.

        Raises:
            ValueError: If ``k < 1`` or the query dimension differs from the index dimension.
            RuntimeError: If the index was neither built nor loaded.
        """
        index = self._built()
        q = _as_matrix(queries, "queries")  # [Q, D]
        if q.shape[1] != index.d:
            raise ValueError(f"query dimension {q.shape[1]} does not match index dimension {index.d}")
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        k = min(k, len(self._ids))
        scores, rows = index.search(q, k)  # [Q, k], [Q, k]
        if self.metric == "l2":
            scores = -scores  # squared distances -> similarities
        scores[rows < 0] = -np.inf
        ids = [[self._ids[r] for r in row if r >= 0] for row in rows.tolist()]
        return scores, ids

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write the index, its ids and a small meta file into ``directory``.

        An unsharded index is one ``index.faiss``; a sharded one is one ``index-NNNNN.faiss`` per shard,
        listed in the meta file (faiss cannot serialise the shards together). Each file is written under
        a temporary name, fsynced and renamed. ``manifest.json`` (the byte count and sha256 of every file
        written) comes last and an earlier save's manifest is removed first, so a directory without a
        manifest is an interrupted save, and :meth:`load` refuses it.

        Returns:
            The directory written to.
        """
        index = self._built()
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        files = [INDEX_FILE] if len(self._parts) == 1 else [SHARD_FILE.format(i) for i in range(len(self._parts))]
        # From here until the new manifest lands the directory holds no complete index: without these two an
        # interrupted save would look like a finished one (new manifest) or an old-format one (v1 meta file).
        for name in (MANIFEST_FILE, META_FILE):
            (out / name).unlink(missing_ok=True)
        for name, part in zip(files, self._parts, strict=True):
            atomic_write_with(out / name, _index_writer(part))
        atomic_write_text(out / IDS_FILE, json.dumps(self._ids))
        meta = {
            "format_version": FORMAT_VERSION,
            "dim": int(index.d),
            "count": len(self._ids),
            "files": files,
            **self._params(),
        }
        atomic_write_text(out / META_FILE, json.dumps(meta, indent=2))
        write_manifest(out, (*files, IDS_FILE, META_FILE))
        for stale in {*out.glob("index*.faiss")} - {out / name for name in files}:  # an earlier save's shards
            stale.unlink()
        logger.info("Saved %r to %s", self, out)
        return out

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> FaissIndex:
        """Read an index written by :meth:`save`, after checking every file against ``manifest.json``.

        Each file the manifest lists must exist with its recorded byte count and sha256 (streamed, so a
        multi-GB index is hashed in constant memory) before any is read; a directory without a manifest is
        refused (an interrupted save, or an index saved before manifests existed: rebuild it).

        Raises:
            FileNotFoundError: If ``directory`` holds no index files at all.
            CorruptIndexError: If a file is missing, truncated or fails its checksum, the manifest is missing
                from a directory saved with one (an interrupted save) or unreadable; the message names the
                file, the problem and how to rebuild the index.
            ValueError: If a file is unreadable, or the ids, the index and the meta file disagree.
        """
        src = Path(directory)
        if (src / MANIFEST_FILE).is_file():
            _verify_manifest(src)
        else:
            _refuse_unverifiable(src)
        meta: Any = _read_json(src / META_FILE)
        files = meta.get("files", [INDEX_FILE]) if isinstance(meta, dict) else [INDEX_FILE]
        if not isinstance(files, list) or not files or any(not isinstance(f, str) or Path(f).name != f for f in files):
            raise ValueError(f"malformed {src / META_FILE}: 'files' must list the index files by name")
        missing = [name for name in (IDS_FILE, *files) if not (src / name).is_file()]
        if missing:
            raise CorruptIndexError(
                f"incomplete faiss index directory {src}: missing {', '.join(missing)} "
                f"(expected {META_FILE}, {IDS_FILE}, {', '.join(files)}); delete {src} and rebuild it: "
                f"{_REBUILD_HINT}"
            )
        ids = _read_json(src / IDS_FILE)
        if not isinstance(meta, dict) or not isinstance(ids, list):
            raise ValueError(f"malformed index files in {src}: {META_FILE} must hold an object, {IDS_FILE} a list")
        parts = []
        for name in files:
            try:
                parts.append(faiss.read_index(str(src / name)))
            except RuntimeError as err:
                raise ValueError(f"cannot read faiss index {src / name}: {err}") from err
        held = "+".join(files)
        dims, total = {part.d for part in parts}, sum(part.ntotal for part in parts)
        if total != len(ids):
            raise ValueError(
                f"index {src} is inconsistent: {held} holds {total} vectors but {IDS_FILE} has {len(ids)} ids"
            )
        if dims != {meta.get("dim")} or meta.get("count") != total:
            raise ValueError(
                f"index {src} is inconsistent: {META_FILE} says dim={meta.get('dim')}, count={meta.get('count')} "
                f"but {held} has dim={'/'.join(map(str, sorted(dims)))}, count={total}"
            )
        params = {key: meta[key] for key in cls._param_names() if key in meta}
        obj = cls(**params)
        obj._set_parts(parts)
        obj._ids = [str(i) for i in ids]
        obj._apply_search_params()
        logger.info("Loaded %r from %s", obj, src)
        return obj

    # -- helpers ---------------------------------------------------------------------------------

    @staticmethod
    def _param_names() -> tuple[str, ...]:
        return ("kind", "metric", "hnsw_m", "hnsw_ef_search", "ivf_nlist", "pq_m", "nprobe", "shards")

    def _params(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self._param_names()}

    def _built(self) -> Any:
        if self._index is None:
            raise RuntimeError("the index is empty: call build(...) or FaissIndex.load(...) first")
        return self._index

    def _build_part(self, x: np.ndarray) -> Any:
        """One faiss index over ``x`` (``[n, D]``), trained on ``x`` when its kind needs training."""
        n, dim = x.shape
        index = faiss.index_factory(dim, self._factory_string(n, dim), METRICS[self.metric])
        if not index.is_trained:
            logger.info("Training %s index on %d vectors", self.kind, min(n, _MAX_TRAIN))
            index.train(_train_sample(x))
        _add_in_chunks(index, x)
        return index

    def _set_parts(self, parts: list[Any]) -> None:
        """Search ``parts`` as one index: rows numbered part after part (``successive_ids``), top-k merged."""
        self._parts = parts
        if len(parts) == 1:
            self._index = parts[0]
            return
        index = faiss.IndexShards(parts[0].d, True)  # threaded: shards are searched in parallel
        index.successive_ids = True  # shard i's rows follow shard i-1's, so row numbers index self._ids
        for part in parts:
            index.add_shard(part)
        self._index = index

    def _factory_string(self, n: int, dim: int) -> str:
        """The ``faiss.index_factory`` description for this kind, sized to ``n`` vectors of ``dim``."""
        if self.kind == "flat":
            return "Flat"
        if self.kind == "hnsw":
            return f"HNSW{self.hnsw_m}"
        nlist = _clamp_nlist(self.ivf_nlist, n)
        m = _pq_subquantizers(self.pq_m, dim)
        nbits = _pq_bits(n)
        # "np": no polysemous training, which only serves Hamming-filtered search and makes
        # training ~20x slower (13 s vs 0.7 s on 4k vectors).
        return f"IVF{nlist},PQ{m}x{nbits}np"

    def _apply_search_params(self) -> None:
        """Set the query-time knobs, which faiss does not take from the factory string."""
        for part in self._parts:
            if self.kind == "hnsw":
                part.hnsw.efSearch = self.hnsw_ef_search
            elif self.kind == "ivfpq":
                faiss.extract_index_ivf(part).nprobe = self.nprobe


def _as_matrix(x: np.ndarray, name: str) -> np.ndarray:
    """Return ``x`` as a C-contiguous float32 matrix, the only layout faiss accepts."""
    arr = np.asarray(x)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array [rows, dim], got shape {arr.shape}")
    return np.ascontiguousarray(arr, dtype=np.float32)


def _clamp_nlist(nlist: int, n: int) -> int:
    """Largest number of IVF lists that ``n`` training points support (at most ``nlist``)."""
    supported = max(1, n // _POINTS_PER_CENTROID)
    if nlist > supported:
        logger.warning(
            "ivf_nlist=%d needs ~%d training vectors but only %d are indexed; using nlist=%d",
            nlist,
            nlist * _POINTS_PER_CENTROID,
            n,
            supported,
        )
        return supported
    return nlist


def _pq_subquantizers(pq_m: int, dim: int) -> int:
    """Largest divisor of ``dim`` not above ``pq_m``: PQ splits each vector into equal parts."""
    m = next(d for d in range(min(pq_m, dim), 0, -1) if dim % d == 0)
    if m != pq_m:
        logger.warning("pq_m=%d does not divide dimension %d; using pq_m=%d", pq_m, dim, m)
    return m


def _pq_bits(n: int) -> int:
    """Bits per PQ code: 8 (256 centroids) unless fewer than 256 vectors exist to train them."""
    nbits = max(1, min(8, int(math.log2(n))))
    if nbits < 8:
        logger.warning("only %d vectors to train 256 PQ centroids; using %d-bit codes", n, nbits)
    return nbits


def _train_sample(x: np.ndarray) -> np.ndarray:
    """A fixed random subset of at most ``_MAX_TRAIN`` rows, so training time stays bounded."""
    if len(x) <= _MAX_TRAIN:
        return x
    rows = np.random.default_rng(0).choice(len(x), size=_MAX_TRAIN, replace=False)
    return x[np.sort(rows)]


def _add_in_chunks(index: Any, x: np.ndarray) -> None:
    """Add ``x`` to ``index`` in chunks, with a progress bar when there is more than one chunk."""
    for chunk in track_chunks(x, _ADD_CHUNK, "Indexing passages", disable=len(x) <= _ADD_CHUNK):
        index.add(chunk)


def _index_writer(index: Any) -> Callable[[Path], None]:
    """``write(path)`` for :func:`~ragdistill.utils.atomic.atomic_write_with`, writing ``index``."""

    def write(path: Path) -> None:
        faiss.write_index(index, str(path))

    return write


def _corrupt(src: Path, problem: str) -> CorruptIndexError:
    return CorruptIndexError(f"corrupt faiss index {src}: {problem}; delete {src} and rebuild it: {_REBUILD_HINT}")


def _verify_manifest(src: Path) -> None:
    """Check every file ``manifest.json`` lists (see :mod:`ragdistill.utils.manifest`); raise on any problem."""
    try:
        manifest = verify_manifest(src, required=(META_FILE, IDS_FILE))
    except NewerManifestError as err:
        raise ValueError(f"{err}, or rebuild it: {_REBUILD_HINT}") from err
    except CorruptArtifactError as err:
        raise _corrupt(src, str(err)) from err
    meta = _read_json(src / META_FILE)
    files = meta.get("files", [INDEX_FILE]) if isinstance(meta, dict) else []
    unlisted = [f for f in files if isinstance(f, str) and f not in manifest["files"]]
    if unlisted:
        raise _corrupt(src, f"{META_FILE} names {', '.join(unlisted)}, which {MANIFEST_FILE} does not list")


def _refuse_unverifiable(src: Path) -> None:
    """A directory without a manifest: no index there, or one that cannot be trusted (raise either way)."""
    present = sorted(p.name for p in src.glob("*") if p.name in (IDS_FILE, META_FILE) or p.suffix == ".faiss")
    if not present:
        raise FileNotFoundError(
            f"no faiss index in {src}: expected {MANIFEST_FILE}, {META_FILE}, {IDS_FILE} and "
            f"{INDEX_FILE} (or index-NNNNN.faiss shards), as written by FaissIndex.save"
        )
    raise _corrupt(
        src,
        f"{MANIFEST_FILE} is missing beside {', '.join(present)} (an interrupted save, deleted files, or an index "
        "saved before manifests existed): its files cannot be checked",
    )


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot read {path}: {err}") from err

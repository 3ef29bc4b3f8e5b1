"""Fuse runs from several retrievers (e.g. dense + BM25) into one, through ``ranx.fuse``.

Runs are plain ``qid -> pid -> score`` dicts, as :mod:`ragdistill.evaluation.metrics` uses them.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence

from ragdistill.evaluation.metrics import RunDict

logger = logging.getLogger(__name__)

# Unsupervised ranx fusions (no training run needed). rrf uses ranks only, the others add scores,
# which are only comparable across retrievers after normalisation.
METHODS = ("rrf", "wsum", "sum", "mnz", "max")
NORMS = ("min-max", "max", "sum", "zmuv", "rank", "borda")
SCORE_NORM = "min-max"


def fuse_runs(
    runs: Sequence[Mapping[str, Mapping[str, float]]],
    method: str = "rrf",
    norm: str | None = None,
    weights: Sequence[float] | None = None,
    *,
    rrf_k: int = 60,
) -> RunDict:
    """Combine the rankings of several retrievers for the same questions.

    ``rrf`` (reciprocal rank fusion): ``score(d) = Σ_r 1 / (rrf_k + rank_r(d))``, ranks from 1;
    robust because it ignores the incomparable raw scores (BM25 vs cosine).
    ``wsum``: ``score(d) = Σ_r w_r · norm_r(d)``, a passage missing from a run adding 0; weights
    default to equal. ``sum`` (CombSUM), ``mnz`` (CombMNZ) and ``max`` (CombMAX) likewise work on
    normalised scores. Note that ranx's ``min-max`` gives 0 to every passage of a query whose
    scores are all equal (e.g. a single retrieved passage).

    Args:
        runs: Two or more runs, ``qid -> pid -> score``, higher = better.
        method: One of :data:`METHODS`.
        norm: Score normalisation applied to each run before fusing, one of :data:`NORMS`; by
            default none for ``rrf`` and ``min-max`` for the score-based methods.
        weights: One weight per run, for ``wsum`` only.
        rrf_k: The RRF constant (60 in Cormack et al.); larger flattens the rank discount.

    Returns:
        The fused run over the union of the runs' qids (a qid some run lacks counts as an empty
        ranking there), as plain dicts of Python floats.

    Raises:
        ValueError: On an unknown method or norm, fewer than two runs, a run without any passage,
            or weights that do not fit the method or the number of runs.

    References:
        Cormack, Clarke & Büttcher, "Reciprocal rank fusion outperforms Condorcet and individual
        rank learning methods", SIGIR 2009. Fox & Shaw, "Combination of multiple searches", TREC-2.
    """
    if method not in METHODS:
        raise ValueError(f"unknown fusion method {method!r}; valid methods: {', '.join(METHODS)}")
    if norm is not None and norm not in NORMS:
        raise ValueError(f"unknown normalisation {norm!r}; valid: {', '.join(NORMS)} or None")
    if len(runs) < 2:
        raise ValueError(f"fusion needs at least two runs, got {len(runs)}")
    for i, run in enumerate(runs):
        if not any(run.values()):
            raise ValueError(f"run {i} retrieved no passage for any question; nothing to fuse")
    if norm is None and method != "rrf":
        norm = SCORE_NORM
    params = _params(method, weights, len(runs), rrf_k)

    from ranx import Run, fuse  # deferred: importing ranx costs ~1.5 s; first fuse compiles (numba)

    qids = sorted(set().union(*(run.keys() for run in runs)))
    aligned = [Run({qid: {str(p): float(s) for p, s in run.get(qid, {}).items()} for qid in qids}) for run in runs]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*unsafe cast.*")  # numba compile-time note in ranx
        fused = fuse(aligned, norm=norm, method=method, params=params)
    logger.info("Fused %d runs over %d questions with %s (norm=%s)", len(runs), len(qids), method, norm)
    result = fused.to_dict()
    return {qid: {pid: float(s) for pid, s in result.get(qid, {}).items()} for qid in qids}


def _params(method: str, weights: Sequence[float] | None, n_runs: int, rrf_k: int) -> dict[str, object]:
    """Build the keyword parameters ranx expects for ``method``, checking ``weights`` against it."""
    if method == "wsum":
        weights = list(weights) if weights is not None else [1.0 / n_runs] * n_runs
        if len(weights) != n_runs:
            raise ValueError(f"got {len(weights)} weights for {n_runs} runs; give one weight per run")
        return {"weights": weights}
    if weights is not None:
        raise ValueError(f"weights apply to method 'wsum' only, not {method!r}")
    if method == "rrf":
        if rrf_k < 0:
            raise ValueError(f"rrf_k must be >= 0, got {rrf_k}")
        return {"k": rrf_k}
    return {}

"""Runs and qrels in TREC format, so every figure in metrics.json can be checked with other tools.

A run line is ``qid Q0 docid rank score tag`` and a qrels line ``qid 0 docid relevance``, the formats
``trec_eval`` and ``ir_measures`` read. Writing them next to the metrics lets a reader of a result
recompute it with an implementation the project does not control (tests/evaluation/test_run_files.py
does so with ``ir_measures`` and requires agreement to 1e-6).

Two conventions of those tools matter when checking:

- They rank by score, breaking ties by document id in descending order, and ignore the rank
  column. The rows here are written in that order, so the rank column says what they will see.
- Without ``-c`` (``trec_eval``) they average only over queries that appear in the run; the project
  scores a question missing from the run (no passage retrieved) as 0 over every question with
  judgements, which is ``trec_eval -c``. In ``ir_measures``, average the per-query values over the
  qrels' queries with missing ones as 0.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from ragdistill.utils.atomic import atomic_write_text

logger = logging.getLogger(__name__)

RUN_SUFFIX = ".run"
QRELS_SUFFIX = ".qrels"

_WHITESPACE = re.compile(r"\s")


def trec_order(ranking: Mapping[str, float]) -> list[tuple[str, float]]:
    """Order one query's passages as trec_eval ranks them: score descending, ties by id descending.

    Args:
        ranking: ``pid -> score``, higher = better.

    Returns:
        ``(pid, score)`` pairs, best first.
    """
    return sorted(ranking.items(), key=lambda item: (item[1], item[0]), reverse=True)


def run_lines(run: Mapping[str, Mapping[str, float]], tag: str) -> Iterable[str]:
    """The lines of a TREC run file (``qid Q0 docid rank score tag``), queries in run order, ranks from 1.

    Scores are written with ``repr`` (the shortest text that reads back as the same float), so that two
    passages the retriever told apart are not made a tie by rounding.
    """
    for qid, ranking in run.items():
        for rank, (pid, score) in enumerate(trec_order(ranking), start=1):
            yield f"{qid} Q0 {pid} {rank} {float(score)!r} {tag}\n"


def qrels_lines(qrels: Mapping[str, Mapping[str, int]]) -> Iterable[str]:
    """The lines of a TREC qrels file (``qid 0 docid relevance``), grades as given."""
    for qid, judged in qrels.items():
        for pid, relevance in judged.items():
            yield f"{qid} 0 {pid} {int(relevance)}\n"


def write_run(path: Path, run: Mapping[str, Mapping[str, float]], tag: str) -> Path:
    """Write ``run`` to ``path`` in TREC run format, atomically (a crash leaves no half file)."""
    atomic_write_text(path, "".join(run_lines(run, tag)))
    return path


def write_qrels(path: Path, qrels: Mapping[str, Mapping[str, int]]) -> Path:
    """Write ``qrels`` to ``path`` in TREC qrels format, atomically."""
    atomic_write_text(path, "".join(qrels_lines(qrels)))
    return path


def write_run_files(
    directory: Path,
    runs: Mapping[str, Mapping[str, Mapping[str, float]]],
    qrels: Mapping[str, Mapping[str, Mapping[str, int]]],
) -> list[Path]:
    """Write each run as ``<name>.run`` (tagged with its name) and each qrels as ``<name>.qrels``.

    Ids holding whitespace cannot be written in these space-separated formats; then nothing is
    written and a warning says why, because a failure here would throw away a finished evaluation.

    Args:
        directory: Where the files go (created if missing).
        runs: Run name (the metric prefix, e.g. ``test_bm25``) -> ``qid -> pid -> score``.
        qrels: Qrels name (e.g. ``gold``, ``answer``) -> ``qid -> pid -> relevance``.

    Returns:
        The files written, runs first.
    """
    bad = _first_unwritable_id(runs, qrels)
    if bad is not None:
        logger.warning("TREC run files not written: id %r holds whitespace, which the format cannot hold", bad)
        return []
    directory.mkdir(parents=True, exist_ok=True)
    written = [write_run(directory / f"{name}{RUN_SUFFIX}", run, name) for name, run in runs.items()]
    written += [write_qrels(directory / f"{name}{QRELS_SUFFIX}", rels) for name, rels in qrels.items() if rels]
    logger.info("Wrote %d TREC run and qrels files to %s", len(written), directory)
    return written


def _first_unwritable_id(*tables: Mapping[str, Mapping[str, Mapping[str, object]]]) -> str | None:
    """The first query or passage id (or run name) that holds whitespace, or None."""
    for table in tables:
        for name, entries in table.items():
            for qid, row in entries.items():
                for item in (name, qid, *row):
                    if not item or _WHITESPACE.search(item):
                        return item
    return None

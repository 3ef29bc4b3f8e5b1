"""RAG evaluation: the reader answers each question from a run's top-k passages; exact match and F1 score it.

Retrieval recall says whether the gold paragraph was found; the reader's answers say whether what was found
is usable. Both come from the same ranked runs, so a retriever's ``test/gold/recall@5`` and its
``test/rag/em`` describe the same retrieved passages.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

from ragdistill.data.schemas import Passage, RetrievalData
from ragdistill.reader.lm_reader import write_answers
from ragdistill.reader.qa import qa_scores
from ragdistill.runtime.distributed import is_global_zero

logger = logging.getLogger(__name__)

Run = Mapping[str, Mapping[str, float]]
"""``qid -> pid -> score`` (higher first), the ranked-run shape the IR metrics take."""


class Reader(Protocol):
    """What RAG evaluation needs from a reader (:class:`~ragdistill.reader.lm_reader.LMReader` is one)."""

    def answer(self, questions: Sequence[str], passages: Sequence[Sequence[Passage]]) -> list[str]:
        """One answer per question, in question order, from its passages (best first)."""
        ...


def top_passages(run: Run, qids: Sequence[str], data: RetrievalData, k: int) -> list[list[Passage]]:
    """Each question's ``k`` best passages of ``run``, best first (ties broken by passage id for stability)."""
    if k < 1:
        raise ValueError(f"evaluation.reader_top_k must be >= 1, got {k}")
    ranked = []
    for qid in qids:
        scores = run.get(qid, {})
        best = sorted(scores, key=lambda pid: (-scores[pid], pid))[:k]
        ranked.append([data.passage(pid) for pid in best])
    return ranked


def evaluate_reader(
    reader: Reader, runs: Mapping[str, Run], data: RetrievalData, top_k: int, run_dir: Path
) -> dict[str, float]:
    """Answer ``data.eval`` from each run's top-``top_k`` and score the answers.

    Args:
        reader: Generates one answer per question from its passages.
        runs: Ranked runs by metric prefix (``test``, ``test_bm25``, ...); each is read separately.
        data: Corpus and evaluation questions (questions without answers are answered but not scored).
        top_k: Passages given to the reader, best first.
        run_dir: ``answers_<prefix>.jsonl`` goes here: per question the retrieved ids, the answer, the gold
            answers, EM, F1 and whether a retrieved passage holds an answer.

    Returns:
        ``<prefix>/rag/em`` and ``<prefix>/rag/f1`` (fractions in [0, 1]) and ``<prefix>/rag/questions``.
    """
    if not any(q.answers for q in data.eval):
        raise ValueError(f"data set {data.name!r} has no gold answers to score the reader's answers against")
    qids = [q.id for q in data.eval]
    metrics: dict[str, float] = {}
    for prefix, run in runs.items():
        passages = top_passages(run, qids, data, top_k)
        answers = reader.answer([q.text for q in data.eval], passages)
        if is_global_zero():  # every rank answers (the reader's passes are split over them); one writes
            write_answers(run_dir / f"answers_{prefix}.jsonl", data.eval, passages, answers)
        answered = [(a, q.answers) for a, q in zip(answers, data.eval, strict=True) if q.answers]
        scores = qa_scores([a for a, _ in answered], [list(g) for _, g in answered])
        metrics |= {f"{prefix}/rag/{name}": value for name, value in scores.items()}
        metrics[f"{prefix}/rag/questions"] = float(len(answered))
        logger.info("%-18s reader top-%d: EM %.3f  F1 %.3f", prefix, top_k, scores["em"], scores["f1"])
    reader_metrics = getattr(reader, "metrics", None)  # optional: what the reader itself adds (PEAR's figures)
    return metrics | (reader_metrics() if reader_metrics is not None else {})

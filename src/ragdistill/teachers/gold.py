"""The supervised baseline: human positives with BM25 hard negatives (DPR)."""

from __future__ import annotations

import logging

import numpy as np

from ragdistill.data.answers import has_answer
from ragdistill.data.ranking import RankedList
from ragdistill.data.schemas import Question, RetrievalData
from ragdistill.data.signal import TeacherSignal
from ragdistill.teachers.base import Teacher
from ragdistill.utils.constraints import PositiveInt

logger = logging.getLogger(__name__)


class GoldTeacher(Teacher):
    """Mark the human-labelled passages as positives and the other first-stage candidates as hard negatives.

    Scores: 1 for a gold passage, 0 for a hard negative (higher = more useful). InfoNCE uses only the
    positives; a distribution-matching loss approaches a one-hot target with a small teacher temperature.

    Args:
        num_candidates: How many first-stage candidates to keep as hard negatives per question.
        drop_answer_negatives: Drop candidates that contain a gold answer string from the negatives. On
            SQuAD several paragraphs of one article often mention the answer; pushing them away teaches
            the retriever to reject useful passages (DPR filters its BM25 negatives the same way). Matching is
            whole-word, as in the answer-hit metrics.
        labelled_negatives: Where the data labels a question's hard negatives (DPR's ``hard_negative_ctxs``,
            ``Question.negative_ids``), train on those, as DPR does, and mine none for that question.

    References:
        Karpukhin et al., Dense Passage Retrieval for Open-Domain Question Answering, EMNLP 2020,
        arXiv:2004.04906.
    """

    scores_on_every_rank = True  # labels and string matching: the same result on every rank, no side effect

    @property
    def marks_positives(self) -> bool:
        """Always: the human gold paragraphs."""
        return True

    def __init__(
        self, num_candidates: PositiveInt = 20, drop_answer_negatives: bool = True, labelled_negatives: bool = True
    ) -> None:
        if num_candidates < 1:
            raise ValueError(f"num_candidates must be >= 1, got {num_candidates}")
        self.num_candidates = num_candidates
        self.drop_answer_negatives = drop_answer_negatives
        self.labelled_negatives = labelled_negatives

    def score(
        self, questions: list[Question], candidates: dict[str, RankedList], data: RetrievalData
    ) -> list[TeacherSignal]:
        """Return a signal per question that has gold ids; questions without them are dropped (and counted)."""
        signals, unlabelled, without_negatives = [], 0, 0
        for question in questions:
            if not question.gold_ids:
                unlabelled += 1
                continue
            negatives = self._negatives(question, candidates, data)
            without_negatives += not negatives
            ids = list(question.gold_ids) + negatives
            scores = np.array([1.0] * len(question.gold_ids) + [0.0] * len(negatives), dtype=np.float32)
            signals.append(TeacherSignal(question.id, ids, scores, positive_ids=tuple(question.gold_ids)))
        if unlabelled:
            logger.warning("Gold teacher dropped %d of %d questions without gold ids", unlabelled, len(questions))
        if without_negatives:
            logger.warning("%d questions have no hard negative left (in-batch negatives only)", without_negatives)
        logger.info("Gold teacher: %d signals", len(signals))
        return signals

    def _negatives(self, question: Question, candidates: dict[str, RankedList], data: RetrievalData) -> list[str]:
        """The data's labelled hard negatives (DPR's), else the first stage's candidates without the answer."""
        if self.labelled_negatives and question.negative_ids:
            return list(question.negative_ids[: self.num_candidates])  # labelled by people: no answer filter
        gold = set(question.gold_ids)
        return [
            pid
            for pid in candidates[question.id].ids
            if pid not in gold
            and not (self.drop_answer_negatives and has_answer(data.passage(pid).text, question.answers))
        ][: self.num_candidates]

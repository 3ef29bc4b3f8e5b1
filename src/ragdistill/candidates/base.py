"""First-stage retrieval: the candidate pool a teacher judges."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ragdistill.data.schemas import Passage, Question

if TYPE_CHECKING:
    from ragdistill.retriever.bi_encoder import BiEncoder


@dataclass
class RankedList:
    """One question's ranked passages: ``ids[i]`` scored ``scores[i]``, best first."""

    ids: list[str]
    scores: np.ndarray  # [k]

    def __post_init__(self) -> None:
        if len(self.ids) != len(self.scores):
            raise ValueError(f"ranked list has {len(self.ids)} ids but {len(self.scores)} scores")


def as_run(ranked: dict[str, RankedList]) -> dict[str, dict[str, float]]:
    """Convert ranked lists to the ``qid -> pid -> score`` run the IR metrics library takes."""
    return {qid: dict(zip(r.ids, map(float, r.scores), strict=True)) for qid, r in ranked.items()}


class CandidateGenerator(ABC):
    """Index a corpus once, then return the top-k passages for questions.

    Args:
        k: Default depth of the candidate pool.
    """

    def __init__(self, k: int = 100) -> None:
        if k < 1:
            raise ValueError(f"candidate depth k must be >= 1, got {k}")
        self.k = k

    @abstractmethod
    def fit(self, corpus: list[Passage], retriever: BiEncoder | None = None, **kwargs: Any) -> CandidateGenerator:
        """Index ``corpus``; dense generators encode it with ``retriever``."""

    @abstractmethod
    def retrieve(self, questions: list[Question], k: int | None = None) -> dict[str, RankedList]:
        """Return the top-``k`` (default ``self.k``) passages per question id."""

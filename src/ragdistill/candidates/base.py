"""First-stage retrieval: the candidate pool a teacher judges."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

from ragdistill.data.ranking import RankedList
from ragdistill.data.schemas import Passage, Question
from ragdistill.utils.constraints import PositiveInt

if TYPE_CHECKING:
    from ragdistill.retriever.bi_encoder_module import BiEncoderModule


class CandidateGenerator(ABC):
    """Index a corpus once, then return the top-k passages for questions.

    Args:
        k: Default depth of the candidate pool.
    """

    def __init__(self, k: PositiveInt = 100) -> None:
        if k < 1:
            raise ValueError(f"candidate depth k must be >= 1, got {k}")
        self.k = k

    @abstractmethod
    def fit(self, corpus: list[Passage], retriever: BiEncoderModule | None = None, **kwargs: Any) -> CandidateGenerator:
        """Index ``corpus``; dense generators encode it with ``retriever``."""

    @abstractmethod
    def retrieve(self, questions: list[Question], k: int | None = None) -> dict[str, RankedList]:
        """Return the top-``k`` (default ``self.k``) passages per question id."""

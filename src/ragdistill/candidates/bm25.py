"""BM25 candidates through bm25s (a fast, well-kept BM25)."""

from __future__ import annotations

import logging
from typing import Any, Literal, get_args

import bm25s
import numpy as np
from bm25s.tokenization import Tokenizer

from ragdistill.candidates.base import CandidateGenerator
from ragdistill.data.ranking import RankedList
from ragdistill.data.schemas import Passage, Question
from ragdistill.utils.constraints import PositiveInt
from ragdistill.utils.progress import track_chunks

logger = logging.getLogger(__name__)


BM25Method = Literal["lucene", "robertson", "atire", "bm25l", "bm25+"]
BM25_METHODS: tuple[str, ...] = get_args(BM25Method)
"""The scoring variants bm25s knows (it rejects any other only when the index is built)."""


class BM25Candidates(CandidateGenerator):
    """Lexical first stage: Lucene-style BM25 over the passage texts.

    On SQuAD, whose questions were written while reading the paragraph, lexical overlap is strong:
    BM25 is both the hard-negative source for the supervised baseline and a baseline to beat.

    Args:
        k: Default depth of the candidate pool.
        k1: Term-frequency saturation.
        b: Length normalisation.
        method: bm25s scoring variant (``lucene``, ``robertson``, ``atire``, ``bm25l``, ``bm25+``).
        stopwords: Stopword list name for bm25s (``en``) or ``None`` to keep every token.
        batch_size: Questions scored per progress-bar step.
    """

    def __init__(
        self,
        k: PositiveInt = 100,
        k1: float = 1.5,
        b: float = 0.75,
        method: BM25Method = "lucene",
        stopwords: str | None = "en",
        batch_size: PositiveInt = 1000,
    ) -> None:
        super().__init__(k)
        if method not in BM25_METHODS:
            raise ValueError(f"candidates.method must be one of {BM25_METHODS}, got {method!r}")
        if batch_size < 1:
            raise ValueError(f"candidates.batch_size must be >= 1, got {batch_size}")
        self.bm25 = bm25s.BM25(k1=k1, b=b, method=method)
        self.tokenizer = Tokenizer(stopwords=stopwords or [])
        self.batch_size = batch_size
        self.ids: list[str] = []

    def fit(self, corpus: list[Passage], retriever: Any = None, **kwargs: Any) -> BM25Candidates:
        """Tokenize and index the corpus (``retriever`` is ignored: BM25 needs no encoder)."""
        if not corpus:
            raise ValueError("cannot build a BM25 index over an empty corpus")
        self.ids = [p.id for p in corpus]
        tokens = self.tokenizer.tokenize(
            [p.text for p in corpus], update_vocab=True, return_as="ids", show_progress=False
        )
        self.bm25.index(tokens, show_progress=False)
        logger.info("Indexed %d passages with BM25 (%d terms)", len(corpus), len(self.tokenizer.get_vocab_dict()))
        return self

    def retrieve(self, questions: list[Question], k: int | None = None) -> dict[str, RankedList]:
        """Return the top-k passages for each question, best first."""
        if not self.ids:
            raise RuntimeError("BM25Candidates.retrieve called before fit()")
        k = min(k or self.k, len(self.ids))
        ranked: dict[str, RankedList] = {}
        for batch in track_chunks(questions, self.batch_size, f"BM25 top-{k}"):
            tokens = self.tokenizer.tokenize(
                [q.text for q in batch], update_vocab=False, return_as="ids", show_progress=False
            )
            rows, scores = self.bm25.retrieve(tokens, k=k, show_progress=False)  # [b, k] each
            for question, row, row_scores in zip(batch, rows, scores, strict=True):
                ranked[question.id] = RankedList([self.ids[i] for i in row], np.asarray(row_scores, np.float32))
        return ranked

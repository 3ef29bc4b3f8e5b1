"""Dense retrieval end to end: encode the corpus, index it, encode questions, search."""

from __future__ import annotations

import logging

from ragdistill.data.ranking import RankedList
from ragdistill.data.schemas import Passage, Question
from ragdistill.index.faiss_index import FaissIndex
from ragdistill.retriever.bi_encoder_module import BiEncoderModule
from ragdistill.retriever.encode import DEFAULT_ENCODING, EncodeSettings, encode_texts

logger = logging.getLogger(__name__)


def build_index(
    retriever: BiEncoderModule,
    corpus: list[Passage],
    index: FaissIndex,
    settings: EncodeSettings = DEFAULT_ENCODING,
) -> FaissIndex:
    """Encode every passage with the retriever's passage tower and add them to ``index``."""
    if not corpus:
        raise ValueError("cannot index an empty corpus")
    vectors = encode_texts(retriever, [p.text for p in corpus], "passage", settings)
    index.build(vectors, [p.id for p in corpus])
    return index


def search(
    retriever: BiEncoderModule,
    index: FaissIndex,
    questions: list[Question],
    k: int,
    settings: EncodeSettings = DEFAULT_ENCODING,
) -> dict[str, RankedList]:
    """Return the top-``k`` passages of ``index`` for each question, best first."""
    vectors = encode_texts(retriever, [q.text for q in questions], "query", settings)
    scores, ids = index.search(vectors, k)  # [Q, k]
    # approximate indexes may return fewer than k ids (faiss pads with -1; the index drops those ids)
    return {
        q.id: RankedList(row_ids, row_scores[: len(row_ids)])
        for q, row_ids, row_scores in zip(questions, ids, scores, strict=True)
    }

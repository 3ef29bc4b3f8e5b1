"""Dense candidates: the current retriever's own top-k (the pool ANCE-style teachers re-mine from)."""

from __future__ import annotations

from typing import Any

from ragdistill.candidates.base import CandidateGenerator
from ragdistill.data.ranking import RankedList
from ragdistill.data.schemas import Passage, Question
from ragdistill.index.faiss_index import FaissIndex
from ragdistill.retriever.bi_encoder_module import BiEncoderModule
from ragdistill.retriever.encode import EncodeSettings
from ragdistill.retriever.search import build_index, search
from ragdistill.utils.constraints import PositiveInt, Precision

DENSE_KEYS = {
    "batch_size": "batch_size",
    "accelerator": "accelerator",
    "precision": "precision",
    "progress": "progress",
    "encode_backend": "backend",
    "export_dir": "export_dir",
}
"""``candidates.*`` keys of the encoding settings -> :class:`EncodeSettings` fields."""


class DenseCandidates(CandidateGenerator):
    """First stage through the retriever being trained (before training: the backbone as it is).

    Args:
        k: Default depth of the candidate pool.
        batch_size: Texts per encoding batch.
        precision: Lightning precision for encoding.
        accelerator: Lightning accelerator for encoding.
        progress: Show progress bars while encoding.
        encode_backend: ``torch``, or ``onnx`` / ``openvino`` (an export of the retriever on that engine,
            CPU only; see ``evaluation.encode_backend``).
        export_dir: Where exports are cached by a digest of the retriever's weights (``None``: not kept).
    """

    def __init__(
        self,
        k: PositiveInt = 100,
        batch_size: PositiveInt = 64,
        precision: Precision | None = "bf16-mixed",
        accelerator: str = "auto",
        progress: bool = True,
        encode_backend: str = "torch",
        export_dir: str | None = None,
    ) -> None:
        super().__init__(k)
        values = {"batch_size": batch_size, "accelerator": accelerator, "precision": precision, "progress": progress}
        values |= {"encode_backend": encode_backend, "export_dir": export_dir}
        self.settings = EncodeSettings.from_keys(values, DENSE_KEYS, "candidates")
        self.retriever: BiEncoderModule | None = None
        self.index: FaissIndex | None = None

    def fit(self, corpus: list[Passage], retriever: BiEncoderModule | None = None, **kwargs: Any) -> DenseCandidates:
        """Encode and index ``corpus`` with ``retriever`` (required)."""
        if retriever is None:
            raise ValueError("candidates=dense needs a retriever to encode the corpus")
        self.retriever = retriever
        self.index = build_index(retriever, corpus, FaissIndex("flat"), self.settings)
        return self

    def retrieve(self, questions: list[Question], k: int | None = None) -> dict[str, RankedList]:
        """Return the retriever's top-k passages per question."""
        if self.retriever is None or self.index is None:
            raise RuntimeError("DenseCandidates.retrieve called before fit()")
        return search(self.retriever, self.index, questions, k or self.k, self.settings)

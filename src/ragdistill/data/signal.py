"""The teacher-signal record: the one contract between teachers and losses (docs/architecture.md).

Every teacher, however it scores, returns one :class:`TeacherSignal` per training question.
The data module turns signals into ``[B, G]`` tensors; losses never learn which teacher made them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

NO_OPINION = -math.inf
"""Score of a candidate the teacher did not judge (masked out of distributions)."""


@dataclass
class TeacherSignal:
    """One training question's teacher judgement over its K candidates.

    Attributes:
        qid: The question id.
        candidate_ids: The K candidate passage ids, in first-stage order.
        scores: ``[K]`` float32, higher = more useful to answer the question; ``NO_OPINION`` (-inf) where
            the teacher has no opinion. Teachers emitting probabilities emit log-probabilities.
        positive_ids: Passages the teacher marks as positives (gold labels, AAR's LM-preferred, G2R's
            generated units); must be among ``candidate_ids``.
        diagnostics: Optional per-question figures (e.g. attention mass on answer tokens).
    """

    qid: str
    candidate_ids: list[str]
    scores: np.ndarray
    positive_ids: tuple[str, ...] = ()
    diagnostics: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.scores = np.asarray(self.scores, dtype=np.float32)
        if self.scores.shape != (len(self.candidate_ids),):
            raise ValueError(
                f"question {self.qid!r}: scores have shape {self.scores.shape}, "
                f"expected ({len(self.candidate_ids)},) — one per candidate"
            )
        if np.isnan(self.scores).any() or np.isposinf(self.scores).any():
            raise ValueError(f"question {self.qid!r}: teacher scores contain NaN or +inf")
        if not np.isfinite(self.scores).any():
            raise ValueError(
                f"question {self.qid!r}: the teacher has an opinion on none of its {len(self.candidate_ids)} "
                "candidates; a teacher drops such questions instead of emitting a signal"
            )
        if len(set(self.candidate_ids)) != len(self.candidate_ids):
            raise ValueError(f"question {self.qid!r}: duplicate candidate ids")
        missing = set(self.positive_ids) - set(self.candidate_ids)
        if missing:
            raise ValueError(f"question {self.qid!r}: positives {sorted(missing)} are not among the candidates")

    @property
    def positive_mask(self) -> np.ndarray:
        """``[K]`` bool, True where the candidate is a positive."""
        positives = set(self.positive_ids)
        return np.array([pid in positives for pid in self.candidate_ids], dtype=bool)


def with_positives(
    signal: TeacherSignal, positive_ids: list[str], diagnostics: dict[str, float] | None = None
) -> TeacherSignal:
    """``signal`` with ``positive_ids`` marked positive (after its own), joining the candidates where missing.

    A positive outside the teacher's pool (AAR's human positives, G2R's generated units) joins with
    ``NO_OPINION``: the teacher never scored it, so no score is invented for it. Contrastive losses train on
    it as a positive; distillation losses read only the scores the teacher gave (``losses/masking.py``).
    """
    ids, scores = list(signal.candidate_ids), signal.scores.copy()
    for pid in positive_ids:
        if pid not in ids:
            ids.append(pid)
            scores = np.append(scores, np.float32(NO_OPINION))
    positives = tuple(dict.fromkeys([*signal.positive_ids, *positive_ids]))
    return TeacherSignal(signal.qid, ids, scores, positives, diagnostics or dict(signal.diagnostics))

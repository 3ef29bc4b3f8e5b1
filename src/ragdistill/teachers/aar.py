"""AAR teacher: a small source LM's preferred passages become positives (augmentation-adapted retrieval)."""

from __future__ import annotations

import logging

import numpy as np
from pytorch_lightning.callbacks import Callback

from ragdistill.candidates.hard_negatives import HardNegativeRefresh
from ragdistill.data.ranking import RankedList
from ragdistill.data.schemas import Question, RetrievalData
from ragdistill.data.signal import TeacherSignal, with_positives
from ragdistill.teachers.base import Derivation, DerivedTeacher, Teacher
from ragdistill.utils.constraints import NonNegativeInt, PositiveInt

logger = logging.getLogger(__name__)


class AARTeacher(DerivedTeacher):
    """Mark the source LM's top-N candidates (plus, optionally, the human positives) as positives.

    Formula: ``P(q) = P_human(q) ∪ top-N_{d ∈ candidates(q)} s_LM(q, d)``; every other candidate is a hard
    negative, re-mined by the retriever being trained every ``refresh_every_n_steps`` (ANCE). Trained with
    multi-positive InfoNCE. Scores (higher = more useful) are the source teacher's; a human positive the LM
    did not judge joins without a score (the contrastive loss reads only the positives).

    Args:
        source: The teacher whose scores express the source LM's preference (``lm_likelihood`` or
            ``attention``); its settings are part of the cache key.
        top_n: How many of the source LM's best candidates become positives.
        use_human_positives: Add the human-labelled passages to the positives (AAR's default); with
            ``false`` the recipe needs no labels at all.
        refresh_every_n_steps: Re-mine hard negatives with the current retriever every N training steps
            (0 = keep the first-stage negatives).
        mining_depth: How deep in the retriever's ranking negatives are mined.
        drop_answer_negatives: Leave out mined passages that contain a gold answer string (they are likely
            unlabelled positives).

    References:
        Yu et al., Augmentation-Adapted Retriever Improves Generalization of Language Models as Generic
        Plug-In, ACL 2023, arXiv:2305.17331. ANCE: Xiong et al., arXiv:2007.00808.
    """

    def __init__(
        self,
        source: Teacher,
        top_n: PositiveInt = 2,
        use_human_positives: bool = True,
        refresh_every_n_steps: NonNegativeInt = 0,
        mining_depth: PositiveInt = 20,
        drop_answer_negatives: bool = False,
    ) -> None:
        if top_n < 1:
            raise ValueError(f"teacher.top_n must be >= 1, got {top_n}")
        if refresh_every_n_steps < 0 or mining_depth < 1:
            raise ValueError(
                f"teacher.refresh_every_n_steps must be >= 0 and mining_depth >= 1, got "
                f"{refresh_every_n_steps} and {mining_depth}"
            )
        self.source = source
        self.top_n = top_n
        self.use_human_positives = use_human_positives
        self.refresh_every_n_steps = refresh_every_n_steps
        self.mining_depth = mining_depth
        self.drop_answer_negatives = drop_answer_negatives

    @property
    def scores_on_every_rank(self) -> bool:  # type: ignore[override]
        """As its source: marking the top-N as positives is pure computation."""
        return self.source.scores_on_every_rank

    @property
    def marks_positives(self) -> bool:
        """Always: the source LM's top-N (and the human positives)."""
        return True

    def derive(
        self,
        signals: list[TeacherSignal],
        questions: list[Question],
        candidates: dict[str, RankedList],
        data: RetrievalData,
    ) -> Derivation:
        """One signal per question the source LM judged: its scores, with positives marked."""
        by_id = {q.id: q for q in questions}
        derived = []
        for signal in signals:
            ranked = [i for i in np.argsort(-signal.scores, kind="stable") if np.isfinite(signal.scores[i])]
            lm_positives = [signal.candidate_ids[i] for i in ranked[: self.top_n]]
            human = list(by_id[signal.qid].gold_ids) if self.use_human_positives else []
            agreement = float(bool(set(lm_positives) & set(by_id[signal.qid].gold_ids)))
            # only the derived positives: the source's own (e.g. a gold source's) are not the LM's preference
            plain = TeacherSignal(signal.qid, signal.candidate_ids, signal.scores)
            diagnostics = {**signal.diagnostics, "lm_positive_is_gold": agreement}  # the source's own kept
            derived.append(with_positives(plain, lm_positives + human, diagnostics))
        if derived:
            overlap = np.mean([s.diagnostics["lm_positive_is_gold"] for s in derived])
            logger.info("AAR: %d signals; an LM positive is the gold passage for %.1f%%", len(derived), 100 * overlap)
        return Derivation(derived)

    def training_callbacks(self, data: RetrievalData) -> list[Callback]:
        """The ANCE refresh of hard negatives, when switched on."""
        if not self.refresh_every_n_steps:
            return []
        return [
            HardNegativeRefresh(
                data, self.refresh_every_n_steps, self.mining_depth, drop_answer_negatives=self.drop_answer_negatives
            )
        ]

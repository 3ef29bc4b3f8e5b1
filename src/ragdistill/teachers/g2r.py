"""G2R: distil a generative LM into a retriever at the data level (generated positives) and the model level (scores).

Data level: the LM writes extra positive units for each training question (a passage that answers it, or
for dialogue data a response); they join the question's candidates as positives. Model level: the source
teacher's LM score of every (question, candidate) pair — a likelihood, as G2R's response-quality score — is
distilled with a KD loss, weighted against the contrastive loss on the augmented data
(``loss=kl_multi_positive_infonce``). Either level can be switched off: ``generation.per_question=0``
keeps the model level only; ``teacher/source=gold`` (labels only, no LM scores) keeps the
data level only.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from ragdistill.data.answers import has_answer
from ragdistill.data.ranking import RankedList
from ragdistill.data.schemas import Passage, Question, RetrievalData
from ragdistill.data.signal import TeacherSignal, with_positives
from ragdistill.models.chat_model import ChatModel
from ragdistill.teachers.base import Derivation, DerivedTeacher, Teacher
from ragdistill.teachers.unit_generation import UnitGenerator
from ragdistill.utils.constraints import NonNegativeInt

logger = logging.getLogger(__name__)


class G2RTeacher(DerivedTeacher):
    """Add LM-generated positives to the source teacher's scored candidates (arXiv:2108.12582).

    Signal per question: the source's K candidates with its scores (model level), plus the human positives
    and the generated units, all marked positive. A positive the source did not score (a generated unit, or
    a gold passage outside the pool) has no score (:func:`with_positives`): the KD term reads only what the
    teacher scored, the generated units are positives of the contrastive term only.

    Formula (with ``loss=kl_multi_positive_infonce``): ``L = w_kd · KL(p_LM ‖ p_ret)`` over the K scored
    candidates ``+ w_c · L_mpNCE(P_human ∪ P_generated)``; a question without a positive (its unit dropped,
    no gold) adds to the KD term only.

    Args:
        source: The model-level teacher (``lm_likelihood``: answer, query or response likelihood) or ``gold``
            for the data level alone.
        chat: The LM that writes the units (``teacher/chat@teacher=local``: the ``lm=`` LM; ``api``: an endpoint).
        generation: Decoding parameters for ``chat`` (``temperature`` > 0 samples; needed for
            ``per_question`` > 1).
        prompt: The user message; ``{question}`` and ``{answer}`` (first gold answer) are filled in.
        per_question: Generated units per question; 0 = no data level.
        min_chars: Shorter generations are garbage and dropped (counted in ``g2r/units_dropped``).
        use_human_positives: Mark the human-labelled passages positive as well.
        cache_dir: Where generated units are kept (``<cache_dir>/generated_units``).
        index_generated: Also add the generated units to the corpus, so evaluation (and any use of the
            index) can return them, as G2R's data level augments the response set at inference. Off by
            default: for question answering a generated paragraph must never be returned as evidence.

    References:
        Kim et al., Distilling the Knowledge of Large-scale Generative Models into Retrieval Models for
        Efficient Open-domain Conversation (G2R), Findings of EMNLP 2021, arXiv:2108.12582.
    """

    def __init__(
        self,
        source: Teacher,
        chat: ChatModel | None = None,
        generation: Mapping[str, Any] | None = None,
        prompt: str = "{question}",
        per_question: NonNegativeInt = 1,
        min_chars: int = 20,
        use_human_positives: bool = True,
        cache_dir: str = ".cache/ragdistill",
        index_generated: bool = False,
    ) -> None:
        if per_question < 0:
            raise ValueError(f"teacher.per_question must be >= 0, got {per_question}")
        if per_question and chat is None:
            raise ValueError("teacher.per_question > 0 needs a chat model (teacher/chat@teacher=local|api)")
        self.source = source
        self.generator = None
        if per_question and chat is not None:
            self.generator = UnitGenerator(chat, prompt, per_question, generation, min_chars, cache_dir=cache_dir)
        self.use_human_positives = use_human_positives
        self.index_generated = index_generated
        self._figures: dict[str, float] = {}

    @property
    def marks_positives(self) -> bool:
        """Whether the signals hold positives: generated units, or the human ones."""
        return self.generator is not None or self.use_human_positives or self.source.marks_positives

    def metrics(self) -> dict[str, float]:
        """The source's throughput figures, the generation counts and ``g2r/units_with_answer``."""
        return self.source.metrics() | self._figures

    def derive(
        self,
        signals: list[TeacherSignal],
        questions: list[Question],
        candidates: dict[str, RankedList],
        data: RetrievalData,
    ) -> Derivation:
        """The source's signals with human and generated positives added; the generated units come back with them.

        The units are training-only passages, or corpus passages with ``index_generated`` (the caller
        registers them with the data).
        """
        by_id = {q.id: q for q in questions}
        units: dict[str, list[Passage]] = {}
        generated: list[Passage] = []
        if self.generator is not None:
            units = self.generator.generate([by_id[s.qid] for s in signals])
            generated = [unit for group in units.values() for unit in group]
            if self.index_generated:
                logger.info("G2R: %d generated units join the corpus (teacher.index_generated=true)", len(generated))
            self._figures = self.generator.stats.metrics() | _answer_rate(units, by_id)
        derived = [self._augment(s, by_id[s.qid], units.get(s.qid, [])) for s in signals]
        without = sum(not s.positive_ids for s in derived)
        self._figures["g2r/questions_without_positive"] = float(without)
        logger.info(
            "G2R: %d signals, %d generated positives; %d questions have no positive (KD term only)",
            len(derived),
            int(self._figures.get("g2r/units_kept", 0)),
            without,
        )
        if self.index_generated:
            return Derivation(derived, corpus_passages=generated)
        return Derivation(derived, training_passages=generated)

    def _augment(self, signal: TeacherSignal, question: Question, units: list[Passage]) -> TeacherSignal:
        human = list(question.gold_ids) if self.use_human_positives else []
        return with_positives(signal, human + [u.id for u in units])


def answer_hits(units: Mapping[str, list[Passage]], questions: Mapping[str, Question]) -> list[bool]:
    """Whether each kept unit of a question with answers holds one of its gold answers (:func:`has_answer`).

    A generated "positive" without the answer teaches the retriever a passage that does not answer the
    question; SmolLM2-135M writes one for about half the SQuAD questions even when the prompt gives it the
    answer (docs/results/g2r.md).
    """
    return [
        has_answer(unit.text, questions[qid].answers)
        for qid, group in units.items()
        if questions[qid].answers
        for unit in group
    ]


def _answer_rate(units: Mapping[str, list[Passage]], questions: Mapping[str, Question]) -> dict[str, float]:
    """``g2r/units_with_answer``: the share of :func:`answer_hits` that are hits (absent without any unit)."""
    hits = answer_hits(units, questions)
    return {"g2r/units_with_answer": sum(hits) / len(hits)} if hits else {}

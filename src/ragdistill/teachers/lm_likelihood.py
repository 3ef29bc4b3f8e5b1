"""LM likelihood teacher: how likely the LM finds the answer (or the question) given each candidate."""

from __future__ import annotations

import logging
from typing import Any, Literal

import torch
from torch import Tensor
from transformers import PreTrainedModel

from ragdistill.candidates.base import RankedList
from ragdistill.data.schemas import Question, RetrievalData
from ragdistill.models.lm import LanguageModel
from ragdistill.teachers.lm_forward import target_log_probs
from ragdistill.teachers.lm_inputs import (
    QUERY_LIKELIHOOD_PROMPT,
    RESPONSE_LIKELIHOOD_PROMPT,
    LMExample,
    PromptTemplate,
)
from ragdistill.teachers.lm_teacher import LMTeacher, signals_from_scores
from ragdistill.teachers.signal import TeacherSignal

logger = logging.getLogger(__name__)

DEFAULT_PROMPTS = {
    "answer": PromptTemplate(),
    "question": QUERY_LIKELIHOOD_PROMPT,
    "candidate": RESPONSE_LIKELIHOOD_PROMPT,
}
"""The wording each target is scored with unless ``teacher.prompt`` overrides fields of it."""


class LMLikelihoodTeacher(LMTeacher):
    """Score each candidate by the LM's log-likelihood of the gold answer (or the question, or itself).

    Formula: ``score(d) = Σ_i log p_LM(a_i | a_<i, d, q)`` (``target=answer``), or the per-token mean of
    ``log p_LM(q_i | q_<i, d)`` (``target=question``, query likelihood, for data without answers), or of
    ``log p_LM(d_i | d_<i, q)`` (``target=candidate``: the candidate is the continuation, e.g. a dialogue
    response given its context — G2R's response-quality score). Higher = the LM prefers the candidate.
    Scores are log-probabilities, so KL with teacher temperature 1 matches
    the LM's own normalised preference over the K candidates.

    Shapes: one ``[K]`` float32 signal per question, K = ``num_candidates``.

    Args:
        lm: The teacher LM.
        target: ``answer`` (needs gold answers; questions without one are dropped and counted),
            ``question`` or ``candidate``.
        reduction: ``sum`` over target tokens (the sequence log-probability) or ``mean`` (per token; the
            default for question and candidate targets, so long questions or responses are not penalised).
        **kwargs: Shared LM teacher options (:class:`LMTeacher`).

    References:
        Atlas PDist: Izacard et al., arXiv:2208.03299. REPLUG LSR: Shi et al., arXiv:2301.12652.
        Query likelihood: Sachan et al., UPR, arXiv:2204.07496. Response likelihood: Kim et al., G2R,
        arXiv:2108.12582.
    """

    def __init__(
        self,
        lm: LanguageModel,
        target: Literal["answer", "question", "candidate"] = "answer",
        reduction: Literal["sum", "mean"] | None = None,
        **kwargs: Any,
    ) -> None:
        if target not in DEFAULT_PROMPTS:
            raise ValueError(f"teacher.target must be one of {sorted(DEFAULT_PROMPTS)}, got {target!r}")
        reduction = reduction or ("sum" if target == "answer" else "mean")
        if reduction not in ("sum", "mean"):
            raise ValueError(f"teacher.reduction must be 'sum' or 'mean', got {reduction!r}")
        self.default_prompt = DEFAULT_PROMPTS[target]
        super().__init__(lm, **kwargs)
        self.target = target
        self.reduction = reduction

    def _step(self, model: PreTrainedModel, batch: dict[str, Any]) -> Tensor:
        log_probs = target_log_probs(model, batch)  # [b, L]
        total = log_probs.sum(dim=1)
        if self.reduction == "mean":
            total = total / batch["target_mask"].sum(dim=1).clamp_min(1)
        return total.detach().cpu()

    @torch.no_grad()
    def score(
        self, questions: list[Question], candidates: dict[str, RankedList], data: RetrievalData
    ) -> list[TeacherSignal]:
        """One signal per question: the LM's log-likelihood of the target given each of its K candidates."""
        usable, pools = self.judgeable(questions, candidates, needs_answers=self.target == "answer")
        builder = self.builder()
        examples: list[LMExample] = []
        for qi, (question, pool) in enumerate(zip(usable, pools, strict=True)):
            for ci, pid in enumerate(pool):
                passage = data.passage(pid)
                if self.target == "candidate":  # the candidate is the continuation, not part of the context
                    examples.append(builder.build((qi, ci), [], question.text, passage.text))
                    continue
                target = question.answers[0] if self.target == "answer" else question.text
                examples.append(builder.build((qi, ci), [passage], question.text, target))
        run = self.run(examples, self._step, f"LM likelihood ({self.target})")
        scores = {key: float(value) for key, value in run.results.items()}
        signals = signals_from_scores(usable, pools, scores)
        logger.info("LM likelihood teacher: %d signals over K=%d candidates", len(signals), self.num_candidates)
        return signals

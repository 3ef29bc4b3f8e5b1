"""LM likelihood teacher: how likely the LM finds the answer (or the question) given each candidate."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, Literal

import torch
from torch import Tensor
from transformers import PreTrainedModel

from ragdistill.data.ranking import RankedList
from ragdistill.data.schemas import Question, RetrievalData
from ragdistill.data.signal import TeacherSignal
from ragdistill.models.lm import LanguageModel
from ragdistill.models.lm_forward import first_token_log_odds, target_log_probs
from ragdistill.models.lm_inputs import (
    QUERY_LIKELIHOOD_PROMPT,
    RELEVANCE_PROMPT,
    RESPONSE_LIKELIHOOD_PROMPT,
    LMExample,
    PromptTemplate,
)
from ragdistill.teachers.lm_teacher import LMTeacher, signals_from_scores

logger = logging.getLogger(__name__)

DEFAULT_PROMPTS = {
    "answer": PromptTemplate(),
    "question": QUERY_LIKELIHOOD_PROMPT,
    "candidate": RESPONSE_LIKELIHOOD_PROMPT,
    "relevance": RELEVANCE_PROMPT,
}
"""The wording each target is scored with unless ``teacher.prompt`` overrides fields of it."""

Target = Literal["answer", "question", "candidate", "relevance"]

RELEVANT, IRRELEVANT = "Yes", "No"
"""The two replies ``target=relevance`` compares (the relevance prompt asks for one of them)."""

SCORING_VERSIONS: dict[str, int] = {"question": 2}
"""Version of each target's scoring (default wording and scored span); a target not listed is at version 1.

The signal cache keys on the teacher's config, which holds ``prompt: null`` rather than the default wording in
:data:`DEFAULT_PROMPTS`. Bump a target's version whenever its default prompt or the tokens it scores change,
so its cached signals miss while the other targets' stay valid (version 1 adds nothing to the key).
Version 2 of ``question``: the ``Question:`` cue moved from the scored target into the context.
"""


class LMLikelihoodTeacher(LMTeacher):
    """Score each candidate by the LM's log-likelihood of the gold answer (or the question, or itself).

    Formula: ``score(d) = Σ_i log p_LM(a_i | a_<i, d, q)`` (``target=answer``), or the per-token mean of
    ``log p_LM(q_i | q_<i, d)`` (``target=question``, query likelihood, for data without answers), or of
    ``log p_LM(d_i | d_<i, q)`` (``target=candidate``: the candidate is the continuation, e.g. a dialogue
    response given its context — G2R's response-quality score), or the yes/no relevance log-odds
    ``log p_LM(Yes | d, q, "does the passage answer?") − log p_LM(No | …)`` (``target=relevance``, pointwise
    relevance generation for LMs too small to rank a list). Higher = the LM prefers the candidate.
    Likelihood scores are log-probabilities, so KL with teacher temperature 1 matches the LM's own normalised
    preference over the K candidates.

    Shapes: one ``[K]`` float32 signal per question, K = ``num_candidates``.

    Args:
        lm: The teacher LM.
        target: ``answer`` (needs gold answers; questions without one are dropped and counted),
            ``question``, ``candidate`` or ``relevance``. Only the target's own tokens are scored
            (``prompt.target`` must be ``{target}``, leading whitespace allowed); a ``question`` target is
            cut at ``max_question_tokens``, like the question anywhere else.
        reduction: ``sum`` over target tokens (the sequence log-probability) or ``mean`` (per token; the
            default for question and candidate targets, so long questions or responses are not penalised).
            Not used by ``relevance``, which reads one token.
        **kwargs: Shared LM teacher options (:class:`LMTeacher`).

    References:
        Atlas PDist: Izacard et al., arXiv:2208.03299. REPLUG LSR: Shi et al., arXiv:2301.12652.
        Relevance generation: Liang et al., HELM, arXiv:2211.09110; Nogueira et al., monoT5, arXiv:2003.06713.
        Query likelihood: Sachan et al., UPR, arXiv:2204.07496. Response likelihood: Kim et al., G2R,
        arXiv:2108.12582.
    """

    def __init__(
        self,
        lm: LanguageModel,
        target: Target = "answer",
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
        if self.template.target.lstrip() != "{target}":
            raise ValueError(
                f"teacher.prompt.target must be '{{target}}' (leading whitespace allowed), got "
                f"{self.template.target!r}: every target token is scored, so cue words such as 'Question:' "
                "belong at the end of teacher.prompt.question"
            )
        if target == "question":
            if "{question}" in self.template.question:
                raise ValueError("teacher.prompt.question must not hold {question} when the question is the target")
            self.limits = dataclasses.replace(self.limits, target=self.limits.question)
        self.target = target
        self.reduction = reduction
        self._irrelevant_id = -1  # set by score() from the LM's tokenizer for target=relevance

    def cache_identity(self) -> dict[str, str]:
        """The LM's fingerprint, plus the target's scoring version where it is above 1 (:data:`SCORING_VERSIONS`).

        Version 1 adds nothing, so the cached signals of targets whose scoring never changed keep their keys.
        """
        identity = super().cache_identity()
        version = SCORING_VERSIONS.get(self.target, 1)
        if version > 1:
            identity["scoring"] = f"{self.target}-v{version}"
        return identity

    def _step(self, model: PreTrainedModel, batch: dict[str, Any]) -> Tensor:
        if self.target == "relevance":
            return first_token_log_odds(model, batch, self._irrelevant_id).detach().cpu()
        log_probs = target_log_probs(model, batch)  # [b, L]
        total = log_probs.sum(dim=1)
        if self.reduction == "mean":
            total = total / batch["target_mask"].sum(dim=1).clamp_min(1)
        return total.detach().cpu()

    def _target_text(self, question: Question) -> str:
        """What the LM continues with after passage and question (``candidate`` continues with the passage)."""
        if self.target == "answer":
            return question.answers[0]
        return RELEVANT if self.target == "relevance" else question.text

    @torch.no_grad()
    def score(
        self, questions: list[Question], candidates: dict[str, RankedList], data: RetrievalData
    ) -> list[TeacherSignal]:
        """One signal per question: the LM's log-likelihood of the target given each of its K candidates."""
        usable, pools = self.judgeable(questions, candidates, needs_answers=self.target == "answer")
        builder = self.builder()
        if self.target == "relevance":  # the first token of each reply as the prompt writes it, in the LM's vocabulary
            relevant, irrelevant = (builder.build(r, [], "", r).target_ids[0] for r in (RELEVANT, IRRELEVANT))
            if relevant == irrelevant:
                raise ValueError(f"the LM's tokenizer starts {RELEVANT!r} and {IRRELEVANT!r} with the same token")
            self._irrelevant_id = irrelevant
        examples: list[LMExample] = []
        for qi, (question, pool) in enumerate(zip(usable, pools, strict=True)):
            for ci, pid in enumerate(pool):
                passage = data.passage(pid)
                if self.target == "candidate":  # the candidate is the continuation, not part of the context
                    examples.append(builder.build((qi, ci), [], question.text, passage.text))
                    continue
                examples.append(builder.build((qi, ci), [passage], question.text, self._target_text(question)))
        run = self.run(examples, self._step, f"LM likelihood ({self.target})")
        scores = {key: float(value) for key, value in run.results.items()}
        signals = signals_from_scores(usable, pools, scores)
        logger.info("LM likelihood teacher: %d signals over K=%d candidates", len(signals), self.num_candidates)
        return signals

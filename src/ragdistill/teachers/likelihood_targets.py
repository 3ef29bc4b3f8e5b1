"""What the likelihood teacher scores: one small class per target instead of a mode string branched on.

A target says which text the LM continues with after the context (the answer, the question, the candidate
itself, or a "Yes"), its default wording, whether it needs gold answers, how its log-probabilities reduce
to one score, and its scoring version for the signal cache. ``teacher.target`` names one of
:data:`TARGETS`; a new target is one class here and one entry in that table.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

from torch import Tensor
from transformers import PreTrainedModel

from ragdistill.data.schemas import Passage, Question
from ragdistill.models.lm_forward import first_token_log_odds, target_log_probs
from ragdistill.models.lm_inputs import (
    QUERY_LIKELIHOOD_PROMPT,
    RELEVANCE_PROMPT,
    RESPONSE_LIKELIHOOD_PROMPT,
    LMExample,
    PromptBuilder,
    PromptTemplate,
    TokenLimits,
)

Reduction = Literal["sum", "mean"]


class LikelihoodTarget:
    """The answer target: ``Σ_i log p_LM(a_i | a_<i, d, q)`` (Atlas PDist, REPLUG LSR); the base of the others.

    Subclasses override what differs: the continuation (:meth:`continuation`), how an example is laid out
    (:meth:`example`), how a forward pass becomes scores (:meth:`read`).
    """

    name: ClassVar[str] = "answer"
    default_prompt: ClassVar[PromptTemplate] = PromptTemplate()
    default_reduction: ClassVar[Reduction] = "sum"
    needs_answers: ClassVar[bool] = True
    scoring_version: ClassVar[int] = 1
    """Bump when the default prompt or the scored tokens change, so this target's cached signals miss while
    the other targets' stay valid (version 1 adds nothing to the cache key)."""

    def __init__(self, reduction: Reduction | None = None) -> None:
        self.reduction: Reduction = reduction or self.default_reduction
        if self.reduction not in ("sum", "mean"):
            raise ValueError(f"teacher.reduction must be 'sum' or 'mean', got {self.reduction!r}")

    def check(self, template: PromptTemplate, limits: TokenLimits) -> TokenLimits:
        """Refuse a prompt this target cannot score; return the token limits it scores under."""
        return limits

    def prepare(self, builder: PromptBuilder) -> None:
        """Read what scoring needs from the LM's tokenizer, once per scoring; nothing by default."""

    def continuation(self, question: Question) -> str:
        """The text whose tokens are scored after passage and question."""
        return question.answers[0]

    def example(self, key: Any, builder: PromptBuilder, question: Question, passage: Passage) -> LMExample:
        """One LM input: the passage as context, then the question, then the scored continuation."""
        return builder.build(key, [passage], question.text, self.continuation(question))

    def read(self, model: PreTrainedModel, batch: dict[str, Any]) -> Tensor:
        """``[b]`` scores of a batch: the continuation's log-probability, summed or averaged per token."""
        total = target_log_probs(model, batch).sum(dim=1)  # [b]
        if self.reduction == "mean":
            total = total / batch["target_mask"].sum(dim=1).clamp_min(1)
        return total.detach().cpu()

    def served_variants(self, example: LMExample) -> list[LMExample]:
        """The sequences a served LM echoes for one example (their log-probabilities go to :meth:`combine`)."""
        return [example]

    def combine(self, log_probs: Sequence[Sequence[float]]) -> float:
        """One score from the target-token log-probabilities of each served variant: as :meth:`read` reduces."""
        tokens = log_probs[0]
        total = float(sum(tokens))
        return total / max(len(tokens), 1) if self.reduction == "mean" else total


class QuestionTarget(LikelihoodTarget):
    """Query likelihood (UPR, arXiv:2204.07496): the per-token mean of ``log p_LM(q_i | q_<i, d)``."""

    name = "question"
    default_prompt = QUERY_LIKELIHOOD_PROMPT
    default_reduction = "mean"
    needs_answers = False
    scoring_version = 2
    """Version 2: the ``Question:`` cue moved from the scored target into the context."""

    def check(self, template: PromptTemplate, limits: TokenLimits) -> TokenLimits:
        """The question is the continuation, so the context may not hold it; it is cut like any question."""
        if "{question}" in template.question:
            raise ValueError("teacher.prompt.question must not hold {question} when the question is the target")
        return dataclasses.replace(limits, target=limits.question)

    def continuation(self, question: Question) -> str:
        """The question itself."""
        return question.text


class CandidateTarget(LikelihoodTarget):
    """Response likelihood (G2R, arXiv:2108.12582): the per-token mean of ``log p_LM(d_i | d_<i, q)``."""

    name = "candidate"
    default_prompt = RESPONSE_LIKELIHOOD_PROMPT
    default_reduction = "mean"
    needs_answers = False

    def example(self, key: Any, builder: PromptBuilder, question: Question, passage: Passage) -> LMExample:
        """No passage in the context: the candidate is the continuation of the question (a dialogue turn)."""
        return builder.build(key, [], question.text, passage.text)


class RelevanceTarget(LikelihoodTarget):
    """Relevance generation (HELM arXiv:2211.09110, monoT5 arXiv:2003.06713): ``log p(Yes | d, q) − log p(No | d, q)``.

    For LMs too small to rank a list; reads one token, so ``reduction`` does not apply.
    """

    name = "relevance"
    default_prompt = RELEVANCE_PROMPT
    default_reduction = "mean"
    needs_answers = False
    RELEVANT: ClassVar[str] = "Yes"
    IRRELEVANT: ClassVar[str] = "No"

    def __init__(self, reduction: Reduction | None = None) -> None:
        super().__init__(reduction)
        self._irrelevant_id = -1  # set by prepare() from the LM's tokenizer

    def prepare(self, builder: PromptBuilder) -> None:
        """The first token of each reply as the prompt writes it, in the LM's vocabulary."""
        relevant, irrelevant = (builder.build(r, [], "", r).target_ids[0] for r in (self.RELEVANT, self.IRRELEVANT))
        if relevant == irrelevant:
            raise ValueError(f"the LM's tokenizer starts {self.RELEVANT!r} and {self.IRRELEVANT!r} with the same token")
        self._irrelevant_id = irrelevant

    def continuation(self, question: Question) -> str:
        """The relevant reply, whose first token is compared with the irrelevant one's."""
        return self.RELEVANT

    def read(self, model: PreTrainedModel, batch: dict[str, Any]) -> Tensor:
        """``[b]`` log-odds of the relevant against the irrelevant reply's first token."""
        return first_token_log_odds(model, batch, self._irrelevant_id).detach().cpu()

    def served_variants(self, example: LMExample) -> list[LMExample]:
        """The relevant and the irrelevant reply's first token after the same context: two echoes.

        A served LM returns the log-probability of the tokens it is sent, not of any other token, so the
        irrelevant reply is sent too.
        """
        return [
            dataclasses.replace(example, key=(example.key, self.RELEVANT), target_ids=example.target_ids[:1]),
            dataclasses.replace(example, key=(example.key, self.IRRELEVANT), target_ids=[self._irrelevant_id]),
        ]

    def combine(self, log_probs: Sequence[Sequence[float]]) -> float:
        """``log p(Yes | d, q) − log p(No | d, q)`` from the two echoes."""
        relevant, irrelevant = log_probs
        return float(relevant[0] - irrelevant[0])


TARGETS: dict[str, type[LikelihoodTarget]] = {
    cls.name: cls for cls in (LikelihoodTarget, QuestionTarget, CandidateTarget, RelevanceTarget)
}
"""``teacher.target`` → its class."""

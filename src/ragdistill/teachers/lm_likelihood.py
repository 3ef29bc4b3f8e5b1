"""LM likelihood teacher: how likely the LM finds the answer (or the question) given each candidate."""

from __future__ import annotations

import logging
import time
from typing import Any, Literal

import torch

from ragdistill.data.ranking import RankedList
from ragdistill.data.schemas import Question, RetrievalData
from ragdistill.data.signal import TeacherSignal
from ragdistill.models.lm import LanguageModel
from ragdistill.models.lm_inputs import LMExample
from ragdistill.models.served_lm import ServedLanguageModel
from ragdistill.teachers.likelihood_targets import TARGETS, Reduction
from ragdistill.teachers.lm_teacher import LMTeacher, signals_from_scores

logger = logging.getLogger(__name__)

Target = Literal["answer", "question", "candidate", "relevance"]
"""The names of :data:`~ragdistill.teachers.likelihood_targets.TARGETS`."""


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
        reduction: Reduction | None = None,
        **kwargs: Any,
    ) -> None:
        if target not in TARGETS:
            raise ValueError(f"teacher.target must be one of {sorted(TARGETS)}, got {target!r}")
        self.scorer = TARGETS[target](reduction)
        self.default_prompt = self.scorer.default_prompt
        super().__init__(lm, **kwargs)
        if self.template.target.lstrip() != "{target}":
            raise ValueError(
                f"teacher.prompt.target must be '{{target}}' (leading whitespace allowed), got "
                f"{self.template.target!r}: every target token is scored, so cue words such as 'Question:' "
                "belong at the end of teacher.prompt.question"
            )
        self.limits = self.scorer.check(self.template, self.limits)
        self.target = target
        self.reduction = self.scorer.reduction

    def cache_identity(self) -> dict[str, str]:
        """The LM's fingerprint, plus the target's scoring version where it is above 1 (``scoring_version``).

        Version 1 adds nothing, so the cached signals of targets whose scoring never changed keep their keys.
        """
        identity = super().cache_identity()
        if self.scorer.scoring_version > 1:
            identity["scoring"] = f"{self.target}-v{self.scorer.scoring_version}"
        return identity

    @torch.no_grad()
    def score(
        self, questions: list[Question], candidates: dict[str, RankedList], data: RetrievalData
    ) -> list[TeacherSignal]:
        """One signal per question: the LM's log-likelihood of the target given each of its K candidates."""
        usable, pools = self.judgeable(questions, candidates, needs_answers=self.scorer.needs_answers)
        builder = self.builder()
        self.scorer.prepare(builder)
        examples = [
            self.scorer.example((qi, ci), builder, question, data.passage(pid))
            for qi, (question, pool) in enumerate(zip(usable, pools, strict=True))
            for ci, pid in enumerate(pool)
        ]
        description = f"LM likelihood ({self.target})"
        if self.lm.served:
            scores = self.score_served(examples, description)
        else:
            run = self.run(examples, self.scorer.read, description)
            scores = {key: float(value) for key, value in run.results.items()}
        signals = signals_from_scores(usable, pools, scores)
        logger.info("LM likelihood teacher: %d signals over K=%d candidates", len(signals), self.num_candidates)
        return signals

    def score_served(self, examples: list[LMExample], description: str) -> dict[Any, float]:
        """Each example's score from a served LM's echoed log-probabilities (``lm=api``); keeps the throughput.

        An example whose echo did not spell its target gets no score (no opinion on that candidate).
        """
        assert isinstance(self.lm, ServedLanguageModel)
        variants = [self.scorer.served_variants(example) for example in examples]
        start = time.perf_counter()
        log_probs = self.lm.target_log_probs([v for group in variants for v in group], description)
        self.seconds_reading += time.perf_counter() - start
        self.passages_read += len(examples)
        return {
            example.key: self.scorer.combine([log_probs[v.key] for v in group])
            for example, group in zip(examples, variants, strict=True)
            if all(v.key in log_probs for v in group)
        }

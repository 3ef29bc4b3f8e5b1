"""What every LM teacher shares: the LM handle, the candidate pool, prompt building and the scoring run."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from ragdistill.data.ranking import RankedList
from ragdistill.data.schemas import Question
from ragdistill.data.signal import TeacherSignal
from ragdistill.models.lm import LanguageModel
from ragdistill.models.lm_inputs import LMExample, PromptBuilder, PromptTemplate, TokenLimits
from ragdistill.models.lm_predict_module import LMRunSettings, RunResult, StepFn, run_lm
from ragdistill.teachers.base import Teacher
from ragdistill.utils.constraints import PositiveInt, Precision

logger = logging.getLogger(__name__)


class LMTeacher(Teacher):
    """Base of the teachers that read candidates with a language model.

    Args:
        lm: The LM (loaded on first use, so a run whose signals are all cached never loads it).
        num_candidates: K, how many first-stage candidates per question the LM judges.
        prompt: Overrides of :class:`PromptTemplate` fields (``passage``, ``question``, ``target``,
            ``instruction``).
        max_passage_tokens: Tokens kept per passage.
        max_question_tokens: Tokens kept of the question.
        max_target_tokens: Tokens kept of the target.
        max_batch_tokens: Padded tokens per batch (memory bound; results do not depend on it).
        max_batch_size: Sequences per batch at most.
        precision: Lightning precision of the scoring pass (``bf16-mixed`` or ``32-true``).
        accelerator: Lightning accelerator of the scoring pass.
    """

    default_prompt = PromptTemplate()
    scores_on_every_rank = True  # every LM pass (and a generated answer) goes through run_predict

    def __init__(
        self,
        lm: LanguageModel,
        num_candidates: PositiveInt = 10,
        prompt: dict[str, str] | None = None,
        max_passage_tokens: int = 256,
        max_question_tokens: int = 64,
        max_target_tokens: int = 32,
        max_batch_tokens: PositiveInt = 8192,
        max_batch_size: PositiveInt = 64,
        precision: Precision = "bf16-mixed",
        accelerator: str = "auto",
    ) -> None:
        if num_candidates < 1:
            raise ValueError(f"teacher.num_candidates must be >= 1, got {num_candidates}")
        fields = {**self.default_prompt.__dict__, **(prompt or {})}
        unknown = set(fields) - set(PromptTemplate.__dataclass_fields__)
        if unknown:
            valid = sorted(PromptTemplate.__dataclass_fields__)
            raise ValueError(f"teacher.prompt has unknown keys {sorted(unknown)}; valid: {valid}")
        self.lm = lm
        if lm.served:
            # requests to a server, not run_predict passes: every rank would send them all again
            self.scores_on_every_rank = False
        self.num_candidates = num_candidates
        self.template = PromptTemplate(**fields)
        self.limits = TokenLimits(max_passage_tokens, max_question_tokens, max_target_tokens)
        self.settings = LMRunSettings(max_batch_tokens, max_batch_size, accelerator, precision)
        self.passages_read = 0
        self.seconds_reading = 0.0

    def builder(self) -> PromptBuilder:
        """A prompt builder for this teacher's LM and template (uses the LM's chat template when it has one)."""
        return PromptBuilder.for_lm(self.lm, self.template, self.limits)

    def judgeable(
        self, questions: list[Question], candidates: dict[str, RankedList], needs_answers: bool
    ) -> tuple[list[Question], list[list[str]]]:
        """The questions this teacher can judge and each one's K candidate ids, in first-stage order.

        With ``needs_answers`` (a gold-answer target), questions without an answer are dropped and counted.
        """
        usable = [q for q in questions if q.answers] if needs_answers else list(questions)
        if len(usable) < len(questions):
            logger.warning(
                "%s dropped %d of %d questions without an answer (a target that needs none: see its docs)",
                type(self).__name__,
                len(questions) - len(usable),
                len(questions),
            )
        missing = [q.id for q in usable if q.id not in candidates]
        if missing:
            raise KeyError(f"no first-stage candidates for {len(missing)} training questions, e.g. {missing[:3]}")
        return usable, [candidates[q.id].ids[: self.num_candidates] for q in usable]

    def run(self, examples: list[LMExample], step: StepFn, description: str) -> RunResult:
        """Run ``step`` over ``examples`` with this teacher's batching and precision; keep the throughput.

        Raises:
            ValueError: If a prompt is longer than the LM's context window (before any work is done).
        """
        window = getattr(self.lm.model.config, "max_position_embeddings", None)
        longest = max((ex.length for ex in examples), default=0)
        if window and longest > window:
            raise ValueError(
                f"a {type(self).__name__} prompt has {longest} tokens but {self.lm.name} reads at most {window}: "
                "lower teacher.num_candidates or teacher.max_passage_tokens"
            )
        result = run_lm(self.lm.model, examples, step, self.lm.tokenizer.pad_token_id, self.settings, description)
        self.passages_read += result.passages
        self.seconds_reading += result.seconds
        return result

    def cache_identity(self) -> dict[str, str]:
        """The LM's fingerprint, plus the precision the scores are really made in where it is not the configured one.

        The configured precision is in the cached config already; on a CPU without bfloat16 a ``bf16-mixed``
        teacher scores in float32, and those scores must not be served to a machine that makes bfloat16 ones.
        """
        identity = super().cache_identity()
        if self.settings.effective_precision != self.settings.precision:
            identity["precision"] = self.settings.effective_precision
        return identity

    def metrics(self) -> dict[str, float]:
        """Throughput over every scoring run so far (``runtime/teacher_passages_per_s``), for metrics.json."""
        if not self.passages_read:
            return {}
        return {
            "teacher/passages": float(self.passages_read),
            "runtime/teacher_passages_per_s": self.passages_read / max(self.seconds_reading, 1e-9),
        }


def signals_from_scores(
    questions: list[Question], pools: list[list[str]], scores: dict[tuple[int, int], float], **extra: Any
) -> list[TeacherSignal]:
    """Assemble one signal per question from ``scores[(question index, candidate index)]``.

    A candidate without a score gets no opinion (-inf); a question with none is dropped (the contract).
    """
    signals = []
    for qi, (question, pool) in enumerate(zip(questions, pools, strict=True)):
        row = np.array([scores.get((qi, ci), -np.inf) for ci in range(len(pool))], dtype=np.float32)
        if np.isfinite(row).any():
            signals.append(TeacherSignal(question.id, list(pool), row, **extra))
    return signals

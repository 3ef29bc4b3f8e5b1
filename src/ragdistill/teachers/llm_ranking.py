"""Listwise LLM ranking (RankGPT-style): the LLM reads a window of candidates and writes their order.

Stage 0 of Intermediate Distillation (arXiv:2406.12169) when the LLM is a black box: no logits, only text.
The same teacher talks to a local LM (:class:`~ragdistill.models.local_chat.LocalChat`) or an
OpenAI-compatible endpoint (:class:`~ragdistill.models.chat_api.ChatClient`); both answer
``complete_many(conversations)``. Outputs are parsed and repaired by
:func:`~ragdistill.teachers.ranking_output.parse_ranking`; how many needed repair or were dropped is in
``metrics()``.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from typing import Any

import numpy as np

from ragdistill.data.ranking import RankedList
from ragdistill.data.schemas import Question, RetrievalData
from ragdistill.data.signal import TeacherSignal
from ragdistill.models.chat_model import ChatModel
from ragdistill.teachers.base import Teacher
from ragdistill.teachers.ranking_output import RepairStats, parse_ranking
from ragdistill.teachers.sliding_window import RankingPrompt, build_window_messages, sliding_window_rank_many
from ragdistill.utils.constraints import AtLeastTwo, Fraction
from ragdistill.utils.plain import plain

logger = logging.getLogger(__name__)


class ListwiseRankingTeacher(Teacher):
    """Order each question's K candidates by an LLM's listwise ranking; score = K − position (higher = better).

    Windows larger than the LLM can read slide from the back of the list to the front (RankGPT); every
    question's window at the same position goes to the LLM as one batch. A question with a window whose
    output could not be repaired is dropped (and counted): its order would be partly the first stage's.

    Args:
        chat: The LLM (local or served).
        num_candidates: K, the first-stage candidates ranked per question.
        window: Passages per LLM call (RankGPT: 20).
        step: Shift between windows (RankGPT: 10).
        prompt: The wording: a :class:`RankingPrompt` or overrides of its fields.
        max_passage_chars: Passages are cut to this many characters in the prompt (``None``: whole).
        min_valid_fraction: An answer naming fewer than this share of the window's passages is dropped.
        generation: Generation parameters for a served LLM (e.g. ``temperature: 0``, ``max_tokens``); part
            of its response cache key. Leave empty for a local LM (greedy).

    References:
        Sun et al., Is ChatGPT Good at Search? (RankGPT), arXiv:2304.09542. Li et al., Intermediate
        Distillation, arXiv:2406.12169.
    """

    def __init__(
        self,
        chat: ChatModel,
        num_candidates: AtLeastTwo = 10,
        window: int = 20,
        step: int = 10,
        prompt: RankingPrompt | Mapping[str, Any] | None = None,
        max_passage_chars: int | None = 600,
        min_valid_fraction: Fraction = 0.0,
        generation: Mapping[str, Any] | None = None,
    ) -> None:
        if num_candidates < 2:
            raise ValueError(f"teacher.num_candidates must be >= 2 to rank anything, got {num_candidates}")
        self.chat = chat
        self.num_candidates = num_candidates
        self.window = window
        self.step = step
        self.prompt = _ranking_prompt(prompt)
        self.max_passage_chars = max_passage_chars
        self.min_valid_fraction = min_valid_fraction
        # plain dicts and lists: a config's ListConfig (e.g. ``stop: [...]``) is not JSON, the request's format
        self.generation: dict[str, Any] = plain(generation or {})
        self.stats = RepairStats()

    @property
    def lm(self) -> Any:
        """The local LM behind the chat model, if any (its fingerprint keys the signal cache)."""
        return getattr(self.chat, "lm", None)

    def cache_identity(self) -> dict[str, str]:
        """What identifies a local chat model's answers (its LM, the precision it really runs in); none for an endpoint.

        An endpoint's ``base_url`` and ``model`` are in the cached config already.
        """
        return self.chat.identity() if self.lm is not None else {}

    def metrics(self) -> dict[str, float]:
        """How many LLM outputs were parsed, repaired and dropped (``teacher/llm_*``), and the served LLM's counts.

        A :class:`~ragdistill.models.chat_api.ChatClient` adds its requests, retries and cache hits
        (``runtime/llm_*``); a local LM has none.
        """
        chat_stats = getattr(self.chat, "stats", None)
        return self.stats.metrics() | (chat_stats.metrics() if chat_stats is not None else {})

    def score(
        self, questions: list[Question], candidates: dict[str, RankedList], data: RetrievalData
    ) -> list[TeacherSignal]:
        """Rank each question's top-K candidates with the LLM; questions with an unrepairable window are dropped."""
        usable = [q for q in questions if q.id in candidates and len(candidates[q.id].ids) >= 2]
        pools = [candidates[q.id].ids[: self.num_candidates] for q in usable]
        texts = [[data.passage(pid).text for pid in pool] for pool in pools]
        dropped: set[int] = set()

        def rank_windows(asked: list[tuple[int, list[int]]]) -> list[list[int] | None]:
            requests = [
                build_window_messages(usable[i].text, [texts[i][j] for j in shown], self.prompt, self.max_passage_chars)
                for i, shown in asked
            ]
            answers = self.chat.complete_many(requests, "LLM ranking windows", **self.generation)
            ranked: list[list[int] | None] = []
            for (i, shown), answer in zip(asked, answers, strict=True):
                parsed = parse_ranking(answer, len(shown), self.min_valid_fraction)
                self.stats.add(parsed)
                if parsed.order is None:
                    dropped.add(i)
                    ranked.append(None)
                else:
                    ranked.append([shown[j] for j in parsed.order])
            return ranked

        orders = sliding_window_rank_many([len(p) for p in pools], rank_windows, self.window, self.step)
        signals = []
        for i, (question, pool, order) in enumerate(zip(usable, pools, orders, strict=True)):
            if i in dropped:
                continue
            scores = np.empty(len(pool), dtype=np.float32)
            scores[order] = np.arange(len(pool), 0, -1, dtype=np.float32)  # best = K, worst = 1
            signals.append(TeacherSignal(question.id, list(pool), scores))
        if dropped or len(usable) < len(questions):
            logger.warning(
                "LLM ranking: %d questions dropped for unrepairable outputs, %d without 2 candidates",
                len(dropped),
                len(questions) - len(usable),
            )
        return signals


def _ranking_prompt(prompt: RankingPrompt | Mapping[str, Any] | None) -> RankingPrompt:
    if isinstance(prompt, RankingPrompt):
        return prompt
    fields = {f.name for f in dataclasses.fields(RankingPrompt)}
    unknown = set(prompt or {}) - fields
    if unknown:
        raise ValueError(f"teacher.prompt has unknown keys {sorted(unknown)}; valid: {sorted(fields)}")
    return RankingPrompt(**dict(prompt or {}))

r"""The two indicators of arXiv:2402.11794: does the reader's attention land on answer and question tokens?

Li et al. find that attention distillation teaches a retriever only when the reader is good enough, and that
a good reader's attention (from its output tokens, α·‖v‖) concentrates inside the passages on (1) the tokens
of the answer and (2) the tokens related to the question. They propose both as indicators to check before
training on a reader's attention. Here each indicator is, per question over its K passages in context:

    mass(S)  = Σ_{t ∈ S} a_t / Σ_{t ∈ passages} a_t        (the share of passage attention landing on S)
    share(S) = |S| / |passage tokens|                       (what uniform attention would give)
    lift(S)  = mass(S) / share(S) = mean_{t ∈ S} a_t / mean_{t ∈ passages} a_t

with ``a_t`` the very attention the teacher turns into scores (same rows, layers, heads, value-norm weighting).
``lift > 1``: the reader looks at those tokens more than at the average passage token; ``lift ≤ 1``: its
attention ignores them, and distilling it teaches the retriever little.

Token sets:
    answer tokens: passage tokens overlapping a case-insensitive, whole-word occurrence of a gold answer
        string in the passage text (no punctuation or article normalisation, unlike ``has_answer``, because
        the match must map back to characters and so to tokens).
    question tokens: passage tokens overlapping a passage word (``\w+``, lower-cased) that is also a word
        of the question, words of :data:`STOP_WORDS` (a small fixed English list) excluded. Words, not the
        tokenizer's sub-word tokens, so a shared frequent sub-word (``##s``, ``Ġthe``) never counts.

Differences from the paper: it studies the attention of a decoder-only reader (Falcon-1B) at different
training stages and finds fine-tuned readers concentrate it on answer- and question-related tokens; this
module was written from summaries of the paper (its full text was not at hand), so the exact per-token
statistic here is our reading. Both indicators are reduced to one number per question (mass and share over
all K passages, so ``lift`` is the ratio of mean attention per token); question-related tokens are taken as
shared non-stop words; the run-level check warns at ``lift ≤ 1.1`` (:data:`WEAK_LIFT`): no better than
chance, with a margin for the noise of a reader whose attention is random.
Passage tokens include the prompt's passage decoration (e.g. ``[3] ``), as the teacher's scores do.

Shapes: ``attention`` ``[N]`` over the N passage tokens of one question (its K spans concatenated in prompt
order); token marks ``[N]`` bool.

References:
    Li, Zhang & Zhang, Unveiling the Magic: Investigating Attention Distillation in Retrieval-augmented
    Generation, arXiv:2402.11794.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ragdistill.data.signal import TeacherSignal

logger = logging.getLogger(__name__)

ANSWER_MASS = "attention_on_answer_tokens"
ANSWER_SHARE = "answer_token_share"
QUESTION_MASS = "attention_on_question_tokens"
QUESTION_SHARE = "question_token_share"
"""Per-question diagnostic keys of the attention teacher's signals (averaged as ``teacher/<key>``)."""

WEAK_LIFT = 1.1
"""Lift at or below which the reader is flagged: it attends to the token set hardly more than uniform attention.

Not exactly 1: a reader with random weights lands on either side of 1 by chance (a tiny random Llama on 32
fixture questions, K=10: answer lift 0.99 and 1.0002, question lift 1.0007 and 1.02 for α·‖v‖ and α), while
SmolLM2-135M-Instruct's α·‖v‖ gives 14.0 and 1.73 on the same questions."""

_STOP_WORD_TEXT = """
a an the and or but if of at by for with about against between into through during before after above below to
from up down in out on off over under again then once here there when where why how all any both each few more
most other some such no nor not only own same so than too very can will just should now is are was were be been
being have has had having do does did doing i me my we our you your he him his she her it its they them their
what which who whom whose this that these those am s t
"""
STOP_WORDS = frozenset(_STOP_WORD_TEXT.split())
"""English function words and question words: shared with the passage by chance, not by topic."""

_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class TokenMarks:
    """Which passage tokens are answer tokens and which are question tokens.

    Attributes:
        answer: ``[N]`` bool, True on tokens inside a gold-answer occurrence.
        question: ``[N]`` bool, True on tokens inside a passage word that is a question word.
    """

    answer: np.ndarray
    question: np.ndarray

    @staticmethod
    def concat(parts: Sequence[TokenMarks]) -> TokenMarks:
        """The marks of several passages laid end to end (the K passages of one prompt, in order)."""
        return TokenMarks(
            np.concatenate([p.answer for p in parts]) if parts else np.zeros(0, bool),
            np.concatenate([p.question for p in parts]) if parts else np.zeros(0, bool),
        )


def question_words(question: str) -> frozenset[str]:
    """The lower-cased words of ``question`` minus :data:`STOP_WORDS`."""
    return frozenset(_WORD.findall(question.lower())) - STOP_WORDS


def answer_patterns(answers: Iterable[str]) -> list[re.Pattern[str]]:
    """One case-insensitive whole-word pattern per non-empty answer string."""
    return [re.compile(rf"(?<!\w){re.escape(a)}(?!\w)", re.IGNORECASE) for a in (a.strip() for a in answers) if a]


def _answer_chars(text: str, patterns: Sequence[re.Pattern[str]]) -> np.ndarray:
    """``[len(text)]`` bool: characters inside an occurrence of an answer (each answer searched on its own)."""
    marked = np.zeros(len(text), dtype=bool)
    for pattern in patterns:
        for match in pattern.finditer(text):
            marked[match.start() : match.end()] = True
    return marked


def _question_chars(text: str, words: frozenset[str]) -> np.ndarray:
    """``[len(text)]`` bool: characters of the words of ``text`` that are in ``words``."""
    marked = np.zeros(len(text), dtype=bool)
    for match in _WORD.finditer(text):
        if match.group().lower() in words:
            marked[match.start() : match.end()] = True
    return marked


def _covered(chars: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """``[n]`` bool: which ``[start, end)`` character ranges (``offsets`` ``[n, 2]``) hold a marked character."""
    before = np.concatenate([[0], np.cumsum(chars)])  # marked characters before each position
    return before[offsets[:, 1]] > before[offsets[:, 0]]


def mark_tokens(
    text: str, offsets: Sequence[tuple[int, int]], patterns: Sequence[re.Pattern[str]], words: frozenset[str]
) -> TokenMarks:
    """Mark the tokens of ``text`` (given by character ``offsets``) as answer and/or question tokens.

    A token is marked when any of its characters is (a token straddling a word boundary counts once).
    ``patterns`` come from :func:`answer_patterns`, ``words`` from :func:`question_words`.
    """
    spans = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)  # [n, 2]
    return TokenMarks(_covered(_answer_chars(text, patterns), spans), _covered(_question_chars(text, words), spans))


def prompt_marks(
    tokenizer: Any, texts: Sequence[str], token_ids: Sequence[Sequence[int]], answers: Iterable[str], question: str
) -> TokenMarks | None:
    """Marks of a prompt's passage tokens (``token_ids[i]`` encodes ``texts[i]``), laid end to end.

    The texts are re-tokenized with character offsets in one call (a fast tokenizer is needed); a passage's
    marks are used only when its ids start with exactly ``token_ids[i]`` (the prompt may keep a truncated
    prefix), so a marking never lands on the wrong tokens. ``None`` when any passage cannot be aligned.
    """
    if not getattr(tokenizer, "is_fast", False):
        return None
    encoded = tokenizer(list(texts), add_special_tokens=False, return_offsets_mapping=True)
    patterns, words = answer_patterns(answers), question_words(question)
    marks = []
    for text, ids, wanted, offsets in zip(
        texts, encoded["input_ids"], token_ids, encoded["offset_mapping"], strict=True
    ):
        if list(ids[: len(wanted)]) != list(wanted):
            return None
        marks.append(mark_tokens(text, offsets[: len(wanted)], patterns, words))
    return TokenMarks.concat(marks)


def attention_indicators(attention: np.ndarray, marks: TokenMarks) -> dict[str, float]:
    """Per-question indicators from the attention ``[N]`` on the passage tokens and their marks ``[N]``.

    An indicator whose token set is empty (no answer occurrence, no shared word) is left out, with its
    share, so run means compare mass and share over the same questions. Nothing is returned when the
    passages got no attention at all (or negative pre-softmax scores, which are not a distribution).
    """
    attention = np.asarray(attention, dtype=np.float64)
    if attention.shape != marks.answer.shape or attention.shape != marks.question.shape:
        raise ValueError(
            f"attention has shape {attention.shape} but the token marks have {marks.answer.shape} and "
            f"{marks.question.shape}; expected one mark per passage token"
        )
    total = attention.sum()
    if not np.isfinite(total) or total <= 0 or (attention < 0).any():
        return {}
    figures: dict[str, float] = {}
    for mask, mass_key, share_key in (
        (marks.answer, ANSWER_MASS, ANSWER_SHARE),
        (marks.question, QUESTION_MASS, QUESTION_SHARE),
    ):
        if mask.any():
            figures[mass_key] = float(attention[mask].sum() / total)
            figures[share_key] = float(mask.mean())
    return figures


def _lift(signals: Sequence[TeacherSignal], mass_key: str, share_key: str) -> tuple[float, float, int] | None:
    """``(mean mass, mean share, questions)`` over the signals reporting both keys; ``None`` if none do."""
    pairs = [(s.diagnostics[mass_key], s.diagnostics[share_key]) for s in signals if mass_key in s.diagnostics]
    pairs = [(mass, share) for mass, share in pairs if share > 0]
    if not pairs:
        return None
    mass, share = np.mean(pairs, axis=0)
    return float(mass), float(share), len(pairs)


def reader_indicators(signals: Sequence[TeacherSignal], weak_lift: float = WEAK_LIFT) -> dict[str, float]:
    """Return the run's lifts (``teacher/answer_attention_lift``, ``teacher/question_attention_lift``); warn if weak.

    ``lift = mean mass / mean share`` over the questions reporting the indicator: a ratio of means, so a
    question whose answer is one token among thousands cannot dominate as a mean of ratios would. Logs one
    warning when a lift is ``≤ weak_lift``: the reader attends to answer (or question) tokens hardly more than
    uniform attention would, which 2402.11794 finds is a reader too weak to teach. Signals without the
    diagnostics (other teachers, pre-softmax attention, shards cached before the indicators) give ``{}``.

    Args:
        signals: The teacher's signals (their ``diagnostics`` hold the per-question indicators).
        weak_lift: Lift at or below which the warning fires.

    Returns:
        ``teacher/*_attention_lift`` figures and ``teacher/*_indicator_questions`` counts, for metrics.json.
    """
    figures: dict[str, float] = {}
    weak = []
    for name, mass_key, share_key in (
        ("answer", ANSWER_MASS, ANSWER_SHARE),
        ("question", QUESTION_MASS, QUESTION_SHARE),
    ):
        found = _lift(signals, mass_key, share_key)
        if found is None:
            continue
        mass, share, count = found
        lift = mass / share
        figures |= {f"teacher/{name}_attention_lift": lift, f"teacher/{name}_indicator_questions": float(count)}
        if lift <= weak_lift:
            weak.append(
                f"{name} tokens get {mass:.1%} of the passage attention for {share:.1%} of its tokens "
                f"(lift {lift:.2f}, {count} questions)"
            )
    if weak:
        logger.warning(
            "The attention teacher's reader looks too weak to teach (arXiv:2402.11794 indicators): %s. "
            "Its attention picks these tokens out hardly better than chance, so distilling it gives the "
            "retriever little signal: use a fine-tuned or larger reader (lm.path=...), another attention "
            "variant (e.g. teacher.value_norm=true) or another teacher (e.g. teacher=lm_likelihood).",
            "; ".join(weak),
        )
    return figures

"""Reader answer quality: exact match and token F1, exactly as SQuAD v1.1's official evaluation script scores them.

RAG papers report reader EM/F1 with this script's answer normalisation (lowercase, drop punctuation, drop
the articles a/an/the, collapse whitespace), so figures are comparable only if the normalisation is the
same to the character. It is stricter than :func:`ragdistill.evaluation.metrics.normalize_text` (lowercase
and whitespace only), which decides whether a *passage* contains an answer: the two answer different
questions and are kept apart on purpose.

Scores are fractions in ``[0, 1]`` (the official script prints them × 100).

References:
    Rajpurkar et al., 2016, "SQuAD: 100,000+ Questions for Machine Comprehension of Text" (arXiv 1606.05250),
    ``evaluate-v1.1.py``.
"""

from __future__ import annotations

import logging
import re
import string
from collections import Counter
from collections.abc import Sequence

logger = logging.getLogger(__name__)

_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str) -> str:
    """Lowercase, remove punctuation, remove articles (a, an, the), collapse whitespace (SQuAD v1.1's order)."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, golds: Sequence[str]) -> float:
    """1.0 if the normalised prediction equals any normalised gold answer, else 0.0.

    Args:
        prediction: The reader's answer.
        golds: The gold answers (max over them, as SQuAD does).

    Raises:
        ValueError: If ``golds`` is empty (an unanswerable question has no EM).
    """
    _check_golds(golds)
    normed = normalize_answer(prediction)
    return float(any(normed == normalize_answer(gold) for gold in golds))


def token_f1(prediction: str, golds: Sequence[str]) -> float:
    """Highest bag-of-tokens F1 between the normalised prediction and any normalised gold answer.

    Formula: ``F1 = 2·P·R / (P + R)``, ``P = common / |pred tokens|``, ``R = common / |gold tokens|``, with
    ``common`` the multiset intersection. As in v1.1 (not v2.0), no common token gives 0, even when both
    sides normalise to nothing.

    Args:
        prediction: The reader's answer.
        golds: The gold answers.

    Raises:
        ValueError: If ``golds`` is empty.
    """
    _check_golds(golds)
    predicted = normalize_answer(prediction).split()
    return max(_f1(predicted, normalize_answer(gold).split()) for gold in golds)


def qa_scores(predictions: Sequence[str], golds: Sequence[Sequence[str]]) -> dict[str, float]:
    """Mean exact match and token F1 over the questions that have gold answers.

    Questions without a gold answer cannot be scored and are left out (logged), unlike the retrieval
    metrics' ``answer/*``, where they count as misses: a reader cannot be wrong about them.

    Args:
        predictions: One answer per question.
        golds: Each question's gold answers, aligned with ``predictions``.

    Returns:
        ``{"em": ..., "f1": ...}`` as fractions; the caller adds the prefix (``reader/em``).

    Raises:
        ValueError: If the two lists differ in length or no question has a gold answer.
    """
    if len(predictions) != len(golds):
        raise ValueError(f"{len(predictions)} predictions for {len(golds)} gold answer lists")
    scored = [(p, g) for p, g in zip(predictions, golds, strict=True) if g]
    if not scored:
        raise ValueError(f"none of the {len(golds)} questions has a gold answer; EM/F1 are undefined")
    if len(scored) < len(golds):
        logger.warning(
            "QA scores leave out %d of %d questions without a gold answer", len(golds) - len(scored), len(golds)
        )
    return {
        "em": sum(exact_match(p, g) for p, g in scored) / len(scored),
        "f1": sum(token_f1(p, g) for p, g in scored) / len(scored),
    }


def _f1(predicted: list[str], gold: list[str]) -> float:
    common = sum((Counter(predicted) & Counter(gold)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(gold)
    return 2 * precision * recall / (precision + recall)


def _check_golds(golds: Sequence[str]) -> None:
    if isinstance(golds, str):
        raise ValueError(f"golds must be a sequence of answers, got the string {golds!r}")
    if not golds:
        raise ValueError("no gold answers to score against")

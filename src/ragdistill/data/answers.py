"""What "the passage contains the answer" means: one definition for the metrics, the teachers and the miners."""

from __future__ import annotations

import re
from collections.abc import Iterable

_WHITESPACE = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    """Lowercase and collapse runs of whitespace to one space, so answers match across formatting."""
    return _WHITESPACE.sub(" ", text.lower()).strip()


def has_answer(text: str, answers: Iterable[str]) -> bool:
    """Whether ``text`` contains any answer as whole words after :func:`normalize_text` (``"1"`` ∉ ``"1990"``).

    The one definition of "contains the answer" shared by the metrics and the teachers that filter
    negatives, so a passage dropped as answer-bearing is also one the metrics count as a hit.
    """
    haystack = normalize_text(text)
    for answer in filter(None, map(normalize_text, answers)):
        pos = haystack.find(answer)
        while pos != -1:
            if at_word_boundaries(haystack, pos, answer):
                return True
            pos = haystack.find(answer, pos + 1)
    return False


def at_word_boundaries(haystack: str, pos: int, answer: str) -> bool:
    """Whether ``answer`` found at ``pos`` neither starts nor ends in the middle of a word."""
    end = pos + len(answer)
    before = haystack[pos - 1] if pos > 0 else " "
    after = haystack[end] if end < len(haystack) else " "
    if answer[0].isalnum() and before.isalnum():
        return False
    return not (answer[-1].isalnum() and after.isalnum())

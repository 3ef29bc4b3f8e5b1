"""Read an LLM's listwise ranking answer ("[2] > [1] > [3]") into a permutation, repairing what can be repaired.

A black-box LLM teacher (RankGPT, arXiv 2304.09542; Intermediate Distillation, arXiv 2406.12169) only gives
text. Models drift from the requested format (prose around the list, numbered lists, bare numbers), repeat
ids, invent ids past the window, or stop early. A teacher must neither crash on such text nor silently train
on a made-up order, so every repair is counted (:class:`RepairStats` turns the counts into ``teacher/llm_*``
metrics) and an answer that gives too few valid ids is *dropped*: the caller keeps the first-stage order
instead of inventing one.

Repairs, in the order RankGPT's own post-processing applies them: a repeated id keeps its first position,
an id outside ``[1, n]`` is discarded, and ids the model left out are appended in their original (shown)
order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_MAX_ID_DIGITS = 9
"""Longer digit runs are out of range for any window; never handed to ``int`` (Python caps it at 4300 digits)."""

_BRACKETED = re.compile(r"\[\s*([0-9]+)\s*\]")
_ID_WORD = r"(?:(?:passages?|documents?|docs?|ids?)\b\s*)?"
"""An optional word naming what an id counts: ``Passage 2``, ``doc 2``."""
_LIST_MARKER = re.compile(r"^\s*(?:[0-9]+\s*[.):]|[-*•])\s*", re.MULTILINE)
_ITEM_ID = re.compile(_ID_WORD + r"(?:#\s*)?([0-9]+)\b", re.IGNORECASE)
"""The id a list item starts with: ``2``, ``Passage 2``, ``#2``; an item starting with text names none."""
_NUMBER = re.compile(r"[0-9]+")
_JOINER = re.compile(r"\s*(?:>|->|→|,|;|\||\band\b|\bthen\b)?\s*" + _ID_WORD + r"#?\s*", re.IGNORECASE)
"""What may stand between two ids of one bare-number ranking: ``2 > 1``, ``2, 1``, ``Passage 2 > Passage 1``."""
_MAX_JOINER_CHARS = 32


@dataclass(frozen=True)
class ParsedRanking:
    """One parsed answer: the order (0-based, a permutation of ``range(n)``) or ``None`` if dropped.

    Attributes:
        order: Shown positions, most relevant first; ``None`` when the answer was too broken to trust.
        n: How many passages were shown (ids ``[1]..[n]``).
        given: Distinct in-range ids the model wrote (``n - missing``).
        duplicates: Ids written again after their first occurrence (ignored).
        out_of_range: Ids outside ``[1, n]`` (ignored).
        missing: Ids the model never wrote (appended in shown order when not dropped).
    """

    order: tuple[int, ...] | None
    n: int
    given: int
    duplicates: int = 0
    out_of_range: int = 0
    missing: int = 0

    @property
    def dropped(self) -> bool:
        """The answer was unusable; keep the shown order instead."""
        return self.order is None

    @property
    def repaired(self) -> bool:
        """The order was used, but only after fixing a duplicate, an out-of-range or a missing id."""
        return not self.dropped and (self.duplicates + self.out_of_range + self.missing) > 0


def extract_ids(text: str) -> list[int]:
    """Find the 1-based ids an answer lists, in the order written, before any repair.

    Three readings, the first that finds anything wins: bracketed ids anywhere (``[2] > [1]``, ``1. [2]``;
    numbers outside brackets are then prose, e.g. "the 3 passages"); a numbered or bulleted list, one id per
    line, the number the item starts with (``1. 2``, ``2) Passage 4``); else the longest run of bare numbers
    joined by ``>``, ``,`` and the like (``2 > 1 > 3``, ``Passage 2, Passage 1``), so a lone number in the
    prose loses to the list. A list's own markers are never ids: small LMs answer with numbered lists of
    passage text ("1. The Big Bang", "2. The Pink Panther"), whose counter would read as the shown order;
    numbers inside copied text ("... in 319 BC") are not ids either.

    Args:
        text: The generated answer.

    Returns:
        The ids as written; ids too long to be an id at all come back as ``0`` (out of range).
    """
    bracketed = _BRACKETED.findall(text)
    if bracketed:
        return [_to_id(d) for d in bracketed]
    listed: list[int] = []
    for line in text.splitlines():
        marker = _LIST_MARKER.match(line)
        item_id = _ITEM_ID.match(line, marker.end()) if marker else None
        if item_id:
            listed.append(_to_id(item_id.group(1)))
    if len(listed) >= 2:
        return listed
    return _longest_run(_LIST_MARKER.sub("", text))


def parse_ranking(text: str, n: int, min_valid_fraction: float = 0.0) -> ParsedRanking:
    """Parse a listwise answer over ``n`` shown passages into a repaired permutation, or drop it.

    Args:
        text: The generated answer (any string; never raises on it).
        n: Passages shown, identified ``[1]..[n]``.
        min_valid_fraction: Drop the answer unless the model wrote at least this fraction of the ``n`` ids
            (distinct, in range). At least one valid id is always required: with none, any order would be
            invented. E.g. ``0.5`` trusts an answer that ranks half the window and appends the rest.

    Returns:
        The order (0-based positions, most relevant first) and what was repaired.

    Raises:
        ValueError: ``n < 1`` or ``min_valid_fraction`` outside ``[0, 1]`` (caller errors, not model errors).
    """
    if n < 1:
        raise ValueError(f"n (passages shown) must be >= 1, got {n}")
    if not 0.0 <= min_valid_fraction <= 1.0:
        raise ValueError(f"min_valid_fraction must be in [0, 1], got {min_valid_fraction}")
    seen: dict[int, None] = {}  # insertion-ordered set
    duplicates = out_of_range = 0
    for pid in extract_ids(text):
        if not 1 <= pid <= n:
            out_of_range += 1
        elif pid in seen:
            duplicates += 1
        else:
            seen[pid] = None
    given = len(seen)
    missing = n - given
    if given == 0 or given < min_valid_fraction * n:
        return ParsedRanking(None, n, given, duplicates, out_of_range, missing)
    order = [pid - 1 for pid in seen] + [i for i in range(n) if i + 1 not in seen]
    return ParsedRanking(tuple(order), n, given, duplicates, out_of_range, missing)


@dataclass
class RepairStats:
    """Running counts over many parsed answers, for the teacher's ``metrics()``.

    Attributes:
        outputs: Answers parsed.
        repaired: Answers used after a repair.
        dropped: Answers discarded (the window kept its order).
        duplicates: Repeated ids, summed over answers.
        out_of_range: Out-of-range ids, summed over answers.
        missing: Ids appended because the model left them out, summed over used answers.
    """

    outputs: int = 0
    repaired: int = 0
    dropped: int = 0
    duplicates: int = 0
    out_of_range: int = 0
    missing: int = 0

    def add(self, parsed: ParsedRanking) -> None:
        """Count one parsed answer."""
        self.outputs += 1
        self.repaired += parsed.repaired
        self.dropped += parsed.dropped
        self.duplicates += parsed.duplicates
        self.out_of_range += parsed.out_of_range
        if not parsed.dropped:
            self.missing += parsed.missing

    def metrics(self) -> dict[str, float]:
        """The counts as ``teacher/llm_*`` metrics, with the repaired and dropped fractions."""
        total = max(self.outputs, 1)
        return {
            "teacher/llm_outputs": float(self.outputs),
            "teacher/llm_repaired": float(self.repaired),
            "teacher/llm_dropped": float(self.dropped),
            "teacher/llm_repaired_frac": self.repaired / total,
            "teacher/llm_dropped_frac": self.dropped / total,
            "teacher/llm_duplicate_ids": float(self.duplicates),
            "teacher/llm_out_of_range_ids": float(self.out_of_range),
            "teacher/llm_missing_ids": float(self.missing),
        }


def _to_id(digits: str) -> int:
    return int(digits) if len(digits) <= _MAX_ID_DIGITS else 0


def _longest_run(text: str) -> list[int]:
    """The longest sequence of numbers whose gaps are all joiners (the first such sequence on ties)."""
    runs: list[list[int]] = []
    previous_end: int | None = None
    for match in _NUMBER.finditer(text):
        if previous_end is None or not _is_joiner(text, previous_end, match.start()):
            runs.append([])
        runs[-1].append(_to_id(match.group()))
        previous_end = match.end()
    return max(runs, key=len, default=[])


def _is_joiner(text: str, start: int, end: int) -> bool:
    # A long gap is prose, not a separator; checking its length first also keeps the regex linear.
    return end - start <= _MAX_JOINER_CHARS and _JOINER.fullmatch(text, start, end) is not None

"""RankGPT's sliding-window listwise reranking, and the chat prompt for one window.

An LLM ranks at most ``window`` passages per prompt, but a teacher wants an order over all K candidates.
RankGPT (arXiv 2304.09542) slides the window from the back of the first-stage list to the front with a
``step`` smaller than the window, so each window carries its best ``window - step`` items into the next.

What this guarantees (and all it guarantees) with an exact ranker: the ``window - step`` truly best items
end in front, in the right order. The item in front is always the best one. Further down, the order is only
locally sorted: an item that lost in one window is never looked at again. Intermediate Distillation (arXiv
2406.12169) distils exactly this kind of top-heavy order.

Windows depend on each other (each starts from the previous one's output), so one question's windows run
one after another; parallelism belongs across questions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

RankWindows = Callable[[list[tuple[int, list[int]]]], Sequence[list[int] | None]]
"""Ranks one window of several lists: ``[(list index, items shown)] -> [reordering or None]``."""

RankWindow = Callable[[list[int]], list[int] | None]
"""Rank the given items (indices into the full list): return them most relevant first, or ``None`` to keep
their order (the LLM's answer was dropped)."""


def window_spans(n: int, window: int, step: int) -> list[tuple[int, int]]:
    """The half-open position ranges ``[start, end)`` ranked, in order: from the back of the list to the front.

    Unlike RankGPT's reference loop, which stops once a full window no longer fits and so never ranks the
    first ``(n - window) % step`` positions, the last window is clipped at position 0.

    Args:
        n: Items in the list.
        window: Items the ranker sees at once (>= 2).
        step: How far each window moves towards the front (``1 <= step < window``).

    Returns:
        The spans; a single ``(0, n)`` when ``window >= n``, none when ``n == 0``.

    Raises:
        ValueError: ``n < 0``, ``window < 2`` or ``step`` outside ``[1, window)``.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if window < 2:
        raise ValueError(f"window must be >= 2 (a ranker shown one item cannot reorder anything), got {window}")
    if not 1 <= step < window:
        raise ValueError(
            f"step must be in [1, window) = [1, {window}), got {step}: with step >= window consecutive windows "
            "do not overlap, so no item could move past its own window"
        )
    spans: list[tuple[int, int]] = []
    end = n
    while end > 0:
        start = max(0, end - window)
        spans.append((start, end))
        if start == 0:
            break
        end -= step
    return spans


def sliding_window_rank(n: int, rank_window: RankWindow, window: int = 20, step: int = 10) -> list[int]:
    """Rerank items ``0..n-1`` (given in first-stage order) with RankGPT's back-to-front sliding window.

    Args:
        n: Items to rank; the start order is ``0, 1, …, n-1``.
        rank_window: Called once per span of :func:`window_spans` with the items currently there.
        window: Items per call (RankGPT: 20).
        step: Shift between calls (RankGPT: 10); the best ``window - step`` items are sorted exactly.

    Returns:
        The final order: a permutation of ``range(n)``, most relevant first.

    Raises:
        ValueError: Bad ``n``/``window``/``step``, or ``rank_window`` returned something other than a
            reordering of the items it was given (a bug in the caller's glue, not an LLM error: parse and
            repair the LLM's text before returning).
    """
    return sliding_window_rank_many([n], lambda asked: [rank_window(shown) for _, shown in asked], window, step)[0]


def sliding_window_rank_many(
    sizes: Sequence[int], rank_windows: RankWindows, window: int = 20, step: int = 10
) -> list[list[int]]:
    """:func:`sliding_window_rank` over many lists at once, so an LLM gets each window position as one batch.

    Args:
        sizes: Items per list (each starts in first-stage order ``0..n-1``).
        rank_windows: Called once per window position with ``(list index, items shown)`` for every list that
            has that window; returns each window's reordering, or ``None`` to keep its order.
        window: Items per window.
        step: Shift between windows.

    Returns:
        One final order per list.

    Raises:
        ValueError: As :func:`sliding_window_rank`.
    """
    orders = [list(range(n)) for n in sizes]
    spans = [window_spans(n, window, step) for n in sizes]
    for depth in range(max((len(s) for s in spans), default=0)):
        asked = [
            (i, orders[i][spans[i][depth][0] : spans[i][depth][1]]) for i in range(len(sizes)) if depth < len(spans[i])
        ]
        answers = rank_windows([(i, list(shown)) for i, shown in asked])
        if len(answers) != len(asked):
            raise ValueError(f"rank_windows answered {len(answers)} of {len(asked)} windows")
        for (i, shown), ranked in zip(asked, answers, strict=True):
            if ranked is None:
                continue
            if sorted(ranked) != sorted(shown):
                raise ValueError(
                    f"rank_window({shown}) returned {list(ranked)}, which is not a reordering of its input"
                )
            start, end = spans[i][depth]
            orders[i][start:end] = list(ranked)
    return orders


@dataclass(frozen=True)
class RankingPrompt:
    """The wording of a listwise ranking prompt (defaults: RankGPT's, with its typos fixed).

    Attributes:
        system: The system message.
        prefix: Opens the user message; fields ``{num}`` (passages shown) and ``{query}``.
        passage: One passage line; fields ``{index}`` (1-based id) and ``{text}``.
        suffix: Closes the user message and asks for the ``[] > []`` format; fields ``{num}``, ``{query}``.
        multi_turn: Write RankGPT's original conversation instead (prefix, then each passage as its own user
            turn acknowledged by ``ack``, then the suffix) — longer, and what its GPT-3.5/4 results used.
        ready: The assistant turn after the prefix in the multi-turn layout.
        ack: The assistant turn after each passage in the multi-turn layout; field ``{index}``.
    """

    system: str = (
        "You are RankGPT, an intelligent assistant that can rank passages based on their relevancy to the query."
    )
    prefix: str = (
        "I will provide you with {num} passages, each indicated by a numerical identifier []. "
        "Rank the passages based on their relevance to the search query: {query}.\n\n"
    )
    passage: str = "[{index}] {text}\n"
    suffix: str = (
        "\nSearch Query: {query}.\nRank the {num} passages above based on their relevance to the search query. "
        "List the passages in descending order of relevance using their identifiers, the most relevant first. "
        "The output format should be [] > [], e.g., [2] > [1]. Only respond with the ranking, do not say any "
        "word or explain."
    )
    multi_turn: bool = False
    ready: str = "Okay, please provide the passages."
    ack: str = "Received passage [{index}]."

    def __post_init__(self) -> None:
        for needed in ("{index}", "{text}"):
            if needed not in self.passage:
                raise ValueError(f"prompt.passage must contain {needed}, got {self.passage!r}")


Truncate = int | Callable[[str], str] | None
"""Per-passage truncation: keep this many characters, apply a function (e.g. a tokenizer cut), or keep all."""


def build_window_messages(
    query: str,
    passages: Sequence[str],
    prompt: RankingPrompt | None = None,
    truncate: Truncate = None,
) -> list[dict[str, str]]:
    """Build the chat messages that ask an LLM to rank one window of passages, shown as ``[1]..[len]``.

    Passage whitespace (newlines included) is collapsed to single spaces, so a passage cannot break the
    one-line-per-id layout the answer refers to.

    Args:
        query: The search query.
        passages: The window's passage texts in shown order (prepend titles yourself if wanted).
        prompt: The wording (default :class:`RankingPrompt`).
        truncate: Characters kept per passage (cut at the last space before the limit when there is one),
            a callable applied to each passage, or ``None``.

    Returns:
        OpenAI-style messages ``[{"role": ..., "content": ...}, ...]``.

    Raises:
        ValueError: No passages, or a negative character limit.
    """
    if not passages:
        raise ValueError("build_window_messages needs at least one passage")
    if isinstance(truncate, int) and truncate < 0:
        raise ValueError(f"truncate must be >= 0 characters, got {truncate}")
    prompt = prompt or RankingPrompt()
    num = len(passages)
    lines = [
        prompt.passage.format(index=i, text=_cut(" ".join(text.split()), truncate))
        for i, text in enumerate(passages, start=1)
    ]
    head = prompt.prefix.format(num=num, query=query)
    tail = prompt.suffix.format(num=num, query=query)
    messages = [{"role": "system", "content": prompt.system}]
    if not prompt.multi_turn:
        return [*messages, {"role": "user", "content": head + "".join(lines) + tail}]
    messages += [{"role": "user", "content": head.strip()}, {"role": "assistant", "content": prompt.ready}]
    for i, line in enumerate(lines, start=1):
        messages += [
            {"role": "user", "content": line.strip()},
            {"role": "assistant", "content": prompt.ack.format(index=i)},
        ]
    return [*messages, {"role": "user", "content": tail.strip()}]


def _cut(text: str, truncate: Truncate) -> str:
    if truncate is None:
        return text
    if callable(truncate):
        return truncate(text)
    if len(text) <= truncate:
        return text
    cut = text[:truncate]
    space = cut.rfind(" ")
    return cut[:space] if space > 0 else cut

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ragdistill.teachers.ranking_output import parse_ranking
from ragdistill.teachers.sliding_window import (
    RankingPrompt,
    build_window_messages,
    sliding_window_rank,
    window_spans,
)


class Oracle:
    """Sorts each window by a hidden relevance (higher first) and records the windows it saw."""

    def __init__(self, relevance):
        self.relevance = relevance
        self.calls = []

    def __call__(self, items):
        self.calls.append(list(items))
        return sorted(items, key=lambda i: -self.relevance[i])


def test_rankgpt_spans_for_100_items():
    spans = window_spans(100, window=20, step=10)
    assert spans[0] == (80, 100) and spans[-1] == (0, 20)
    assert len(spans) == 9


def test_leading_remainder_is_ranked_too():
    # RankGPT's loop would stop after (5, 25) and never rank positions 0..4.
    assert window_spans(25, window=20, step=10) == [(5, 25), (0, 15)]


def test_window_covering_the_list_is_one_call():
    oracle = Oracle([0.1, 0.5, 0.3, 0.9])
    assert sliding_window_rank(4, oracle, window=4, step=2) == [3, 1, 2, 0]
    assert oracle.calls == [[0, 1, 2, 3]]
    assert window_spans(3, window=20, step=10) == [(0, 3)]


def test_empty_list():
    assert sliding_window_rank(0, Oracle([]), window=4, step=2) == []


@pytest.mark.parametrize(
    ("n", "window", "step", "match"),
    [(5, 1, 1, "window must be >= 2"), (5, 4, 0, "step must be in"), (5, 4, 4, "do not overlap"), (-1, 4, 2, "n must")],
)
def test_bad_settings_raise(n, window, step, match):
    with pytest.raises(ValueError, match=match):
        sliding_window_rank(n, Oracle([0.0] * max(n, 0)), window=window, step=step)


def test_dropped_window_keeps_its_order():
    # spans (1, 4) then (0, 3): the best item 3 can only move forward in the first window, which is dropped.
    oracle = Oracle([0, 1, 2, 3])

    def drop_first(items):
        ranked = oracle(items)
        return None if len(oracle.calls) == 1 else ranked

    assert sliding_window_rank(4, drop_first, window=3, step=1) == [2, 1, 0, 3]
    assert sliding_window_rank(10, lambda items: None, window=4, step=2) == list(range(10))


def test_ranker_returning_other_items_is_a_caller_bug():
    with pytest.raises(ValueError, match="not a reordering"):
        sliding_window_rank(5, lambda items: [*items[:-1], 99], window=3, step=1)


def test_only_window_minus_step_items_are_guaranteed():
    # Best items sit in the front window's tail, so they must be carried by overlap; item 5 (3rd best)
    # loses to items 6 and 7 in its first window, is left behind, and never reaches the top-3.
    relevance = {0: 0, 1: 0, 2: 0, 3: 0, 4: 0, 5: 8, 6: 9, 7: 10}
    order = sliding_window_rank(8, Oracle(relevance), window=3, step=1)
    assert order[:2] == [7, 6]
    assert 5 not in order[:3]


@settings(max_examples=200, deadline=None)
@given(data=st.data(), n=st.integers(1, 60), window=st.integers(2, 25))
def test_top_window_minus_step_are_the_true_best_in_order(data, n, window):
    step = data.draw(st.integers(1, window - 1))
    relevance = data.draw(st.permutations(range(n)))  # distinct, so "the true order" is unique
    oracle = Oracle(relevance)
    order = sliding_window_rank(n, oracle, window=window, step=step)
    truth = sorted(range(n), key=lambda i: -relevance[i])
    assert sorted(order) == list(range(n))
    guaranteed = min(window - step, n)
    assert order[:guaranteed] == truth[:guaranteed]
    assert order[0] == truth[0]
    assert len(oracle.calls) == len(window_spans(n, window, step))
    assert all(len(call) <= window for call in oracle.calls)


def test_end_to_end_with_parsed_llm_text():
    relevance = [3, 9, 1, 7, 5, 2]

    def fake_llm(items):
        shown = sorted(range(len(items)), key=lambda j: -relevance[items[j]])
        parsed = parse_ranking("Ranking: " + " > ".join(f"[{j + 1}]" for j in shown), len(items))
        return None if parsed.order is None else [items[j] for j in parsed.order]

    assert sliding_window_rank(6, fake_llm, window=4, step=2)[:2] == [1, 3]


def test_messages_list_passages_with_ids_and_ask_for_the_format():
    messages = build_window_messages("who wrote hamlet?", ["Hamlet is a play.", "Shakespeare\nwrote  it."])
    assert [m["role"] for m in messages] == ["system", "user"]
    user = messages[1]["content"]
    assert "[1] Hamlet is a play.\n[2] Shakespeare wrote it.\n" in user
    assert "who wrote hamlet?" in user and "[] > []" in user and "2 passages" in user


def test_truncation_by_characters_and_by_callable():
    text = "alpha beta gamma delta"
    by_chars = build_window_messages("q", [text], truncate=12)[1]["content"]
    assert "[1] alpha beta\n" in by_chars
    by_fn = build_window_messages("q", [text], truncate=lambda t: t.upper()[:5])[1]["content"]
    assert "[1] ALPHA\n" in by_fn
    with pytest.raises(ValueError, match="truncate"):
        build_window_messages("q", [text], truncate=-1)


def test_multi_turn_layout():
    messages = build_window_messages("q", ["a", "b"], RankingPrompt(multi_turn=True))
    roles = [m["role"] for m in messages]
    assert roles == ["system", "user", "assistant", "user", "assistant", "user", "assistant", "user"]
    assert messages[3]["content"] == "[1] a" and messages[6]["content"] == "Received passage [2]."


def test_custom_prompt_and_braces_in_text():
    prompt = RankingPrompt(system="S", prefix="Q={query} N={num}\n", passage="<{index}> {text}\n", suffix="Go.")
    messages = build_window_messages("{odd}", ["x {y}"], prompt)
    assert messages == [{"role": "system", "content": "S"}, {"role": "user", "content": "Q={odd} N=1\n<1> x {y}\nGo."}]
    with pytest.raises(ValueError, match="must contain \\{text\\}"):
        RankingPrompt(passage="[{index}]")
    with pytest.raises(ValueError, match="at least one passage"):
        build_window_messages("q", [])

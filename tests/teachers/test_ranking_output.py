import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ragdistill.teachers.ranking_output import ParsedRanking, RepairStats, extract_ids, parse_ranking

# Each renders 1-based ids in a format the parser must read exactly, with zero repairs.
FORMATS = {
    "rankgpt": lambda ids: " > ".join(f"[{i}]" for i in ids),
    "rankgpt_tight": lambda ids: ">".join(f"[{i}]" for i in ids),
    "bare_gt": lambda ids: " > ".join(str(i) for i in ids),
    "bracket_commas": lambda ids: ", ".join(f"[{i}]" for i in ids),
    "bare_commas": lambda ids: ", ".join(str(i) for i in ids),
    "numbered_brackets": lambda ids: "\n".join(f"{rank}. [{i}]" for rank, i in enumerate(ids, 1)),
    "numbered_bare": lambda ids: "\n".join(f"{rank}. {i}" for rank, i in enumerate(ids, 1)),
    "numbered_paren_passage": lambda ids: "\n".join(f"{rank}) Passage {i}" for rank, i in enumerate(ids, 1)),
    "bullets": lambda ids: "\n".join(f"- [{i}]" for i in ids),
    "passage_words": lambda ids: " > ".join(f"Passage {i}" for i in ids),
    "prose_brackets": lambda ids: "Sure! Of the 20 passages, the ranking is:\n\n" + " > ".join(f"[{i}]" for i in ids),
    "prose_bare": lambda ids: "Sure! The ranking is: " + " > ".join(str(i) for i in ids) + ". Hope this helps!",
    "whitespace": lambda ids: "\n  " + " \n>\n ".join(f"[ {i} ]" for i in ids) + "  \n",
}


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_every_format_reads_exactly(name):
    ids = [2, 4, 1, 3]
    parsed = parse_ranking(FORMATS[name](ids), 4)
    assert parsed.order == (1, 3, 0, 2)
    assert not parsed.repaired and not parsed.dropped


def test_rankgpt_answer():
    parsed = parse_ranking("[3] > [1] > [2]", 3)
    assert parsed == ParsedRanking(order=(2, 0, 1), n=3, given=3)


def test_duplicates_keep_first_occurrence():
    parsed = parse_ranking("[2] > [1] > [2] > [3] > [1]", 3)
    assert parsed.order == (1, 0, 2)
    assert (parsed.duplicates, parsed.out_of_range, parsed.missing) == (2, 0, 0)
    assert parsed.repaired


def test_out_of_range_ids_are_dropped():
    parsed = parse_ranking("[4] > [2] > [0] > [1] > [3] > [99999999999999999999]", 3)
    assert parsed.order == (1, 0, 2)
    assert parsed.out_of_range == 3
    assert parsed.repaired


def test_missing_ids_are_appended_in_shown_order():
    parsed = parse_ranking("[4] > [2]", 5)
    assert parsed.order == (3, 1, 0, 2, 4)
    assert parsed.missing == 3 and parsed.given == 2
    assert parsed.repaired


@pytest.mark.parametrize("text", ["", "I cannot rank these passages.", "[0] > [7]", "[] > []", "> > >"])
def test_garbage_is_dropped_not_invented(text):
    parsed = parse_ranking(text, 5)
    assert parsed.dropped and parsed.order is None
    assert not parsed.repaired


def test_min_valid_fraction():
    assert parse_ranking("[2]", 4).order == (1, 0, 2, 3)  # default: one valid id suffices
    assert parse_ranking("[2]", 4, min_valid_fraction=0.5).dropped
    assert parse_ranking("[2] > [2] > [9]", 4, min_valid_fraction=0.5).dropped  # duplicates do not count
    assert parse_ranking("[2] > [4]", 4, min_valid_fraction=0.5).order == (1, 3, 0, 2)
    assert parse_ranking("[2] > [4] > [1]", 4, min_valid_fraction=1.0).dropped
    assert not parse_ranking("[2] > [4] > [1] > [3]", 4, min_valid_fraction=1.0).dropped


@pytest.mark.parametrize(("n", "fraction"), [(0, 0.0), (3, -0.1), (3, 1.5)])
def test_caller_errors_raise(n, fraction):
    with pytest.raises(ValueError, match=r"n \(passages shown\)|min_valid_fraction"):
        parse_ranking("[1]", n, min_valid_fraction=fraction)


def test_bracketed_ids_win_over_prose_numbers():
    assert extract_ids("Ranking the 3 passages by relevance to 2024 events: [3] > [1] > [2]") == [3, 1, 2]


@pytest.mark.parametrize(
    "text",
    [
        "1. The Big Bang\n2. The Pink Panther\n3. The Beyoncé Experience",  # SmolLM2's answers, measured
        "1. The second Diadochi war began in 319 BC.\n2. Precipitation is uniformly distributed.",
        "- The passage about 1990 is best\n- Another one",
    ],
)
def test_a_list_of_passage_text_is_dropped_not_read_as_its_own_counter(text):
    parsed = parse_ranking(text, 10)
    assert parsed.dropped and not parsed.repaired


def test_list_items_name_their_id_first():
    assert extract_ids("1. Passage 3, about the 2 kings\n2. 1 (mentions 1990)\n3. #2") == [3, 1, 2]
    assert extract_ids("Ranking:\n1. The Big Bang\n2. Cats\nso 2 > 1 > 3") == [2, 1, 3]  # a run outside it


def test_longest_bare_run_wins_over_lone_numbers():
    assert extract_ids("Of 3 passages, passage 2 matters most: 2 > 3 > 1 (I am 90% sure)") == [2, 3, 1]


def test_repair_stats_metrics():
    stats = RepairStats()
    for text in ["[1] > [2] > [3]", "[1] > [1] > [3]", "nothing useful", "[3] > [9]"]:
        stats.add(parse_ranking(text, 3))
    metrics = stats.metrics()
    assert metrics["teacher/llm_outputs"] == 4
    assert metrics["teacher/llm_repaired"] == 2
    assert metrics["teacher/llm_dropped"] == 1
    assert metrics["teacher/llm_dropped_frac"] == 0.25
    assert metrics["teacher/llm_repaired_frac"] == 0.5
    assert metrics["teacher/llm_duplicate_ids"] == 1
    assert metrics["teacher/llm_out_of_range_ids"] == 1
    # 1 from "[1] > [1] > [3]" and 2 from "[3] > [9]"; the dropped answer's 3 do not count
    assert metrics["teacher/llm_missing_ids"] == 3
    assert all(isinstance(v, float) for v in metrics.values())


def test_empty_repair_stats():
    assert RepairStats().metrics()["teacher/llm_dropped_frac"] == 0.0


# --- properties -------------------------------------------------------------------------------------------

ANSWER_ALPHABET = st.sampled_from([*"[]>,.;:-)( \n\t0123456789abcPassage#→", "[1]", "[2]", " > ", "10", "١"])


@settings(max_examples=300, deadline=None)
@given(
    text=st.one_of(st.text(), st.lists(ANSWER_ALPHABET, max_size=60).map("".join)),
    n=st.integers(1, 25),
    fraction=st.floats(0.0, 1.0),
)
def test_never_raises_and_returns_a_permutation_or_drops(text, n, fraction):
    parsed = parse_ranking(text, n, min_valid_fraction=fraction)
    if parsed.dropped:
        assert parsed.order is None
    else:
        assert sorted(parsed.order) == list(range(n))
        assert parsed.given >= max(1, fraction * n)
    assert parsed.given + parsed.missing == n


@settings(max_examples=300, deadline=None)
@given(data=st.data(), n=st.integers(1, 30), name=st.sampled_from(sorted(FORMATS)))
def test_any_permutation_in_any_format_reads_back_exactly(data, n, name):
    order = data.draw(st.permutations(range(n)))
    parsed = parse_ranking(FORMATS[name]([i + 1 for i in order]), n)
    assert parsed.order == tuple(order)
    assert (parsed.duplicates, parsed.out_of_range, parsed.missing) == (0, 0, 0)


@settings(max_examples=200, deadline=None)
@given(data=st.data(), n=st.integers(1, 20))
def test_partial_answers_keep_the_given_prefix(data, n):
    order = data.draw(st.permutations(range(n)))
    k = data.draw(st.integers(1, n))
    parsed = parse_ranking(" > ".join(f"[{i + 1}]" for i in order[:k]), n)
    assert parsed.order[:k] == tuple(order[:k])
    assert list(parsed.order[k:]) == sorted(order[k:])
    assert parsed.missing == n - k

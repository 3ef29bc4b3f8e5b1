"""Retrieval metrics: hand-computed values, answer matching, exhaustiveness, misses."""

from __future__ import annotations

import random
import re

import numpy as np
import pytest

from ragdistill.data.answers import normalize_text
from ragdistill.data.schemas import Passage, Question
from ragdistill.evaluation.metrics import answer_qrels, evaluate_run, gold_qrels


def _q(qid: str, gold: tuple[str, ...] = (), answers: tuple[str, ...] = ()) -> Question:
    return Question(id=qid, text=f"question {qid}?", answers=answers, gold_ids=gold)


def _ranking(*pids: str) -> dict[str, float]:
    """A run entry ranking ``pids`` in the given order."""
    return {pid: float(len(pids) - i) for i, pid in enumerate(pids)}


def test_gold_metrics_by_hand() -> None:
    questions = [_q("q1", ("g1",)), _q("q2", ("g2",)), _q("q3", ("g3",)), _q("q0")]  # q0: no gold, left out
    run = {
        "q1": _ranking("g1", "x", "y"),  # gold at rank 1
        "q2": _ranking("x", "y", "g2"),  # gold at rank 3
        "q3": _ranking("x", "y", "z"),  # gold not retrieved
        "q0": _ranking("g1"),
    }
    m = evaluate_run(run, questions, corpus=None, ks=(1, 5))

    assert set(m) == {"gold/recall@1", "gold/recall@5", "gold/mrr@10", "gold/ndcg@10"}
    assert m["gold/recall@1"] == pytest.approx(1 / 3)
    assert m["gold/recall@5"] == pytest.approx(2 / 3)
    assert m["gold/mrr@10"] == pytest.approx((1 + 1 / 3 + 0) / 3)
    assert m["gold/ndcg@10"] == pytest.approx((1 + 1 / np.log2(4) + 0) / 3)  # one relevant: ideal DCG = 1
    assert all(type(v) is float for v in m.values())


def test_recall_with_two_gold_passages() -> None:
    m = evaluate_run({"q1": _ranking("x", "a", "y")}, [_q("q1", ("a", "b"))], corpus=None, ks=(1, 2))
    assert m["gold/recall@1"] == 0.0
    assert m["gold/recall@2"] == pytest.approx(0.5)
    assert m["gold/mrr@10"] == pytest.approx(0.5)


def test_empty_or_missing_run_entry_is_a_miss() -> None:
    questions = [_q("q1", ("a",)), _q("q2", ("b",))]
    hit = _ranking("a", "x")
    for run in ({"q1": hit, "q2": {}}, {"q1": hit}, {"q1": hit, "q2": {}, "extra": _ranking("b")}):
        m = evaluate_run(run, questions, corpus=None, ks=(1,))
        assert m["gold/recall@1"] == pytest.approx(0.5), run
        assert m["gold/mrr@10"] == pytest.approx(0.5), run


def test_all_empty_run_scores_zero() -> None:
    m = evaluate_run({"q1": {}}, [_q("q1", ("a",))], corpus=None, ks=(1, 5))
    assert m == {"gold/recall@1": 0.0, "gold/recall@5": 0.0, "gold/mrr@10": 0.0, "gold/ndcg@10": 0.0}


CORPUS = [
    Passage("p0", "The Eiffel\n  Tower was completed in 1889 in PARIS."),
    Passage("p1", "Gustave Eiffel's company built it; the tower is 330 m tall."),
    Passage("p2", "It was the tallest structure until 1930."),
]


def test_answer_matching_ignores_case_and_whitespace() -> None:
    qrels = answer_qrels([_q("q1", answers=("eiffel   TOWER",)), _q("q2", answers=("paris",))], CORPUS)
    assert qrels == {"q1": {"p0": 1}, "q2": {"p0": 1}}


def test_answer_matching_misses_absent_strings_and_word_pieces() -> None:
    questions = [
        _q("absent", answers=("Statue of Liberty",)),
        _q("piece", answers=("193",)),  # only inside "1930"
        _q("empty", answers=("  ",)),
        _q("none"),
    ]
    assert answer_qrels(questions, CORPUS) == {}
    assert answer_qrels(questions, CORPUS, whole_words=False) == {"piece": {"p2": 1}}


def test_answer_matching_punctuation_and_multiple_answers() -> None:
    questions = [_q("q1", answers=("1889", "330 m")), _q("q2", answers=("eiffel's",)), _q("q3", answers=("it;",))]
    assert answer_qrels(questions, CORPUS) == {"q1": {"p0": 1, "p1": 1}, "q2": {"p1": 1}, "q3": {"p1": 1}}


def _brute_force(questions: list[Question], corpus: list[Passage], whole_words: bool) -> dict[str, dict[str, int]]:
    """Double loop over questions x passages with a regex; the reference for answer_qrels."""
    qrels = {}
    for q in questions:
        rel = {}
        for p in corpus:
            text = normalize_text(p.text)
            for answer in filter(None, map(normalize_text, q.answers)):
                pattern = re.escape(answer)
                if whole_words:
                    left = r"(?<![^\W_])" if answer[0].isalnum() else ""
                    right = r"(?![^\W_])" if answer[-1].isalnum() else ""
                    pattern = left + pattern + right
                if re.search(pattern, text):
                    rel[p.id] = 1
        if rel:
            qrels[q.id] = rel
    return qrels


@pytest.mark.parametrize("whole_words", [True, False])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_answer_qrels_equal_brute_force(seed: int, whole_words: bool) -> None:
    rnd = random.Random(seed)
    words = ["ab", "a", "b", "Ba", "abc", "c", "1", "12", "a-b", "x.", "(c)", "A_b"]
    spaces = [" ", "  ", "\n", "\t "]

    def text(n: int) -> str:
        return "".join(rnd.choice(words) + rnd.choice(spaces) for _ in range(n)).strip()

    corpus = [Passage(f"p{i}", text(rnd.randint(0, 12))) for i in range(60)]
    questions = []
    for i in range(40):
        answers = []
        for _ in range(rnd.randint(0, 2)):
            source = normalize_text(rnd.choice(corpus).text)
            start = rnd.randrange(len(source) + 1)
            # a random slice of a passage (often cutting words) or random words
            answers.append(source[start : start + rnd.randint(1, 8)] if rnd.random() < 0.5 else text(rnd.randint(1, 3)))
        questions.append(_q(f"q{i}", answers=tuple(a.upper() if rnd.random() < 0.3 else a for a in answers)))

    expected = _brute_force(questions, corpus, whole_words)
    assert answer_qrels(questions, corpus, whole_words=whole_words) == expected
    assert expected  # the data produce matches at all


def test_answer_metrics_by_hand_and_unfound_answers_are_misses() -> None:
    questions = [
        _q("q1", answers=("1889",)),  # relevant: p0
        _q("q2", answers=("330 m",)),  # relevant: p1
        _q("q3", answers=("Statue of Liberty",)),  # in no passage: a miss for every k
        _q("q4"),  # no answer: left out
    ]
    run = {"q1": _ranking("p0", "p1"), "q2": _ranking("p0", "p2", "p1"), "q3": _ranking("p0"), "q4": _ranking("p0")}
    m = evaluate_run(run, questions, CORPUS, ks=(1, 3))

    assert m["answer/recall@1"] == pytest.approx(1 / 3)  # top-k accuracy: q1 only
    assert m["answer/recall@3"] == pytest.approx(2 / 3)  # q1, q2
    assert m["answer/mrr@10"] == pytest.approx((1 + 1 / 3 + 0) / 3)
    assert "gold/recall@1" not in m  # no gold ids at all


def test_answer_recall_is_hit_rate_not_recall() -> None:
    # Two passages contain the answer; finding one counts as a full hit (DPR's top-k accuracy).
    corpus = [Passage("a", "paris is big"), Passage("b", "paris again"), Passage("c", "london")]
    m = evaluate_run({"q": _ranking("a", "c")}, [_q("q", answers=("Paris",))], corpus, ks=(1,))
    assert m["answer/recall@1"] == 1.0


def test_precomputed_answer_relevance_is_used() -> None:
    questions = [_q("q1", answers=("1889",))]
    m = evaluate_run(
        {"q1": _ranking("p2")}, questions, corpus=None, ks=(1,), answer_relevance={"q1": {"p2": 1}, "other": {"x": 1}}
    )
    assert m["answer/recall@1"] == 1.0


def test_gold_qrels() -> None:
    assert gold_qrels([_q("q1", ("a", "b")), _q("q2")]) == {"q1": {"a": 1, "b": 1}}


def test_has_answer_is_whole_word_and_normalised() -> None:
    from ragdistill.data.answers import has_answer

    assert has_answer("Born in  PARIS, France", ["paris"])
    assert not has_answer("In 1990 it rained", ["1"])
    assert has_answer("In 1990 it rained", ["x", "1990"])
    assert not has_answer("anything", ["", "  "])


def test_graded_judgements_are_kept_as_gain() -> None:
    """nDCG weighs a grade-2 passage above a grade-1 one; recall and MRR count both as relevant."""
    graded = Question(id="q1", text="?", gold_ids=("a", "b"), graded=(("a", 1), ("b", 2)))
    assert gold_qrels([graded]) == {"q1": {"a": 1, "b": 2}}
    partly_first = evaluate_run({"q1": _ranking("a", "b")}, [graded], corpus=None, ks=(1, 2))
    highly_first = evaluate_run({"q1": _ranking("b", "a")}, [graded], corpus=None, ks=(1, 2))
    assert highly_first["gold/ndcg@10"] == pytest.approx(1.0)
    assert partly_first["gold/ndcg@10"] == pytest.approx((1 + 2 / np.log2(3)) / (2 + 1 / np.log2(3)))
    for m in (partly_first, highly_first):
        assert m["gold/recall@1"] == pytest.approx(0.5) and m["gold/mrr@10"] == 1.0


def test_graded_ids_must_be_the_gold_ids_with_positive_grades() -> None:
    with pytest.raises(ValueError, match="not its gold_ids"):
        Question(id="q1", text="?", gold_ids=("a",), graded=(("b", 1),))
    with pytest.raises(ValueError, match="grades must be >= 1"):
        Question(id="q1", text="?", gold_ids=("a",), graded=(("a", 0),))

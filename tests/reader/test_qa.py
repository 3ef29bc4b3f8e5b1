"""SQuAD v1.1 EM/F1: hand-checked cases and the official script's normalisation as the reference."""

from __future__ import annotations

import re
import string

import pytest

from ragdistill.reader.qa import exact_match, normalize_answer, qa_scores, token_f1


def _official_normalize_answer(s: str) -> str:
    """Verbatim from SQuAD's evaluate-v1.1.py (the reference)."""

    def remove_articles(text):
        return re.sub(r"\b(a|an|the)\b", " ", text)

    def white_space_fix(text):
        return " ".join(text.split())

    def remove_punc(text):
        exclude = set(string.punctuation)
        return "".join(ch for ch in text if ch not in exclude)

    def lower(text):
        return text.lower()

    return white_space_fix(remove_articles(remove_punc(lower(s))))


@pytest.mark.parametrize(
    "text",
    [
        "The Eiffel Tower",
        "  an\tapple,  a  banana\n",
        "U.S.-based (A) company's",
        "Anne and Theo: the-end",
        "The the THE",
        "café — naïve 1,000",
        "",
    ],
)
def test_normalisation_matches_the_official_script(text):
    assert normalize_answer(text) == _official_normalize_answer(text)


def test_articles_go_only_as_whole_words():
    assert normalize_answer("An ant ate the theory.") == "ant ate theory"
    assert normalize_answer("U.S.") == "us"


def test_exact_match_ignores_case_articles_and_punctuation():
    assert exact_match("The Eiffel Tower", ["eiffel tower"]) == 1.0
    assert exact_match("Eiffel Tower.", ["the eiffel tower"]) == 1.0
    assert exact_match("Eiffel", ["eiffel tower"]) == 0.0


def test_f1_by_hand():
    # pred {big, red, dog}, gold {red, dog, barks}: 2 common, P = R = 2/3
    assert token_f1("the big red dog", ["red dog barks"]) == pytest.approx(2 / 3)
    # P = 1/2, R = 1: F1 = 2 * 1/2 / (3/2) = 2/3
    assert token_f1("Denver Broncos", ["Broncos"]) == pytest.approx(2 / 3)
    # multiset overlap: "dog dog" vs "dog" shares one token (P = 1/2, R = 1)
    assert token_f1("dog dog", ["dog"]) == pytest.approx(2 / 3)
    # "dog dog" vs "dog dog cat": 2 common, P = 1, R = 2/3, F1 = 0.8
    assert token_f1("dog dog", ["dog dog cat"]) == pytest.approx(0.8)
    assert token_f1("The Eiffel Tower!", ["eiffel tower"]) == 1.0
    assert token_f1("Paris", ["London"]) == 0.0


def test_empty_prediction():
    assert exact_match("", ["Paris"]) == 0.0
    assert token_f1("", ["Paris"]) == 0.0
    # v1.1's quirk: both sides normalise to "", so EM is 1 while F1 (no common token) is 0
    assert exact_match("", ["the"]) == 1.0
    assert token_f1("", ["the"]) == 0.0


def test_multiple_golds_take_the_max():
    golds = ["Denver Broncos", "the Denver Broncos team"]  # F1 2/3 and 1/2 against "Broncos"
    assert token_f1("Broncos", golds) == pytest.approx(2 / 3)
    assert exact_match("Broncos", golds) == 0.0
    assert exact_match("Broncos", [*golds, "broncos"]) == 1.0
    assert token_f1("Broncos", [*golds, "broncos"]) == 1.0


def test_no_gold_answers_is_an_error():
    with pytest.raises(ValueError, match="no gold answers"):
        exact_match("x", [])
    with pytest.raises(ValueError, match="sequence of answers"):
        token_f1("x", "Paris")


def test_corpus_scores_average_over_answerable_questions():
    scores = qa_scores(["eiffel tower", "Broncos", "anything"], [["The Eiffel Tower"], ["Denver Broncos"], []])
    assert scores["em"] == pytest.approx(0.5)
    assert scores["f1"] == pytest.approx((1 + 2 / 3) / 2)
    with pytest.raises(ValueError, match="2 predictions for 1"):
        qa_scores(["a", "b"], [["a"]])
    with pytest.raises(ValueError, match="none of the 1 questions"):
        qa_scores(["a"], [[]])

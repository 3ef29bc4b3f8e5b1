import pytest

from ragdistill.candidates.bm25 import BM25Candidates
from ragdistill.data.ranking import as_run
from ragdistill.data.schemas import Passage, Question

CORPUS = [
    Passage("cat", "The cat sat on the mat and purred."),
    Passage("dog", "A dog barked at the mailman all morning."),
    Passage("paris", "Paris is the capital and largest city of France."),
]


def test_bm25_ranks_the_lexical_match_first():
    bm25 = BM25Candidates(k=2).fit(CORPUS)
    ranked = bm25.retrieve([Question("q1", "What is the capital of France?"), Question("q2", "dog mailman")])
    assert ranked["q1"].ids[0] == "paris" and len(ranked["q1"].ids) == 2
    assert ranked["q2"].ids[0] == "dog"
    run = as_run(ranked)
    assert run["q1"]["paris"] > 0


def test_k_is_clamped_to_corpus_size_and_unknown_words_do_not_crash():
    ranked = BM25Candidates(k=50).fit(CORPUS).retrieve([Question("q", "zyzzyva")])
    assert len(ranked["q"].ids) == 3


def test_errors_are_clear():
    with pytest.raises(ValueError, match="empty corpus"):
        BM25Candidates().fit([])
    with pytest.raises(RuntimeError, match="before fit"):
        BM25Candidates().retrieve([Question("q", "x")])
    with pytest.raises(ValueError, match="k must be"):
        BM25Candidates(k=0)

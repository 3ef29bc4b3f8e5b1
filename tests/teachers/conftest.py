"""Tiny LMs built from a config (random weights) wrapped as :class:`LanguageModel`, for fast teacher tests."""

from __future__ import annotations

import pytest

from ragdistill.models.lm import LanguageModel


@pytest.fixture(scope="session")
def tiny_llama(bert_tokenizer, build_tiny_llama) -> LanguageModel:
    """2 layers, 4 query heads sharing 2 key/value heads (grouped-query attention, like SmolLM2)."""
    return LanguageModel.from_objects(build_tiny_llama(bert_tokenizer), bert_tokenizer, name="tiny-llama")


@pytest.fixture(scope="session")
def tiny_t5(bert_tokenizer, build_tiny_t5) -> LanguageModel:
    """2 encoder and 2 decoder layers, 32 wide: the encoder-decoder case of every teacher."""
    return LanguageModel.from_objects(build_tiny_t5(bert_tokenizer), bert_tokenizer, name="tiny-t5")


@pytest.fixture(scope="session")
def packaged_smollm2(tmp_path_factory) -> LanguageModel:
    """The packaged SmolLM2-135M-Instruct, converted once per test session (slow tests only)."""
    return LanguageModel(cache_dir=str(tmp_path_factory.mktemp("lm_cache")))


@pytest.fixture(scope="session")
def fixture_pools():
    """``pools(n)``: the shipped fixture, its first ``n`` training questions and their BM25 top-6 candidates."""
    from ragdistill.candidates.bm25 import BM25Candidates
    from ragdistill.data.fixture import load_fixture

    data = load_fixture()
    bm25 = BM25Candidates(k=6).fit(data.corpus)

    def pools(n: int):
        questions = data.train[:n]
        return data, questions, bm25.retrieve(questions)

    return pools

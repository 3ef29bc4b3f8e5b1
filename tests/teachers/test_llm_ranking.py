"""Listwise LLM ranking: windows in lockstep, outputs parsed and repaired, unrepairable questions dropped."""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
import pytest

from ragdistill.data.ranking import RankedList
from ragdistill.data.schemas import Passage, Question, RetrievalData
from ragdistill.models.lm import LanguageModel
from ragdistill.models.local_chat import LocalChat
from ragdistill.teachers.llm_ranking import ListwiseRankingTeacher

CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)


class ScriptedChat:
    """Answers each ranking window from a script keyed by the question in the prompt (a stand-in LLM)."""

    def __init__(self, script: dict[str, str]) -> None:
        self.script = script
        self.calls: list[int] = []

    def complete_many(self, requests: Sequence[Sequence[dict[str, str]]], description: str = "", **params) -> list[str]:
        self.calls.append(len(requests))
        return [next(a for q, a in self.script.items() if q in r[-1]["content"]) for r in requests]


@pytest.fixture
def data() -> tuple[RetrievalData, dict[str, RankedList]]:
    corpus = [Passage(f"p{i}", f"passage number {i}") for i in range(4)]
    questions = [Question("q1", "first question", ("x",), ("p2",)), Question("q2", "second question", ("x",), ("p0",))]
    ranked = RankedList(["p0", "p1", "p2", "p3"], np.array([4.0, 3.0, 2.0, 1.0]))
    return RetrievalData("toy", corpus, questions, []), {"q1": ranked, "q2": ranked}


def test_orders_become_scores_and_garbage_drops_the_question(data):
    retrieval, candidates = data
    chat = ScriptedChat({"first question": "Sure! [3] > [1] > [3] > [9]", "second question": "I cannot help."})
    teacher = ListwiseRankingTeacher(chat, num_candidates=4, window=20, step=10)
    signals = teacher.score(retrieval.train, candidates, retrieval)
    assert chat.calls == [2]  # both questions' only window in one batch
    assert [s.qid for s in signals] == ["q1"]  # q2's answer named no passage: dropped, not invented
    # [3] > [1], the duplicate and the out-of-range id repaired, missing [2], [4] appended in first-stage order
    assert signals[0].scores.tolist() == [3.0, 2.0, 4.0, 1.0]
    metrics = teacher.metrics()
    assert metrics["teacher/llm_outputs"] == 2 and metrics["teacher/llm_repaired"] == 1
    assert metrics["teacher/llm_dropped"] == 1


def test_sliding_windows_go_back_to_front_in_lockstep(data):
    retrieval, candidates = data
    chat = ScriptedChat({"first question": "[2] > [1] > [3]", "second question": "[1] > [2] > [3]"})
    teacher = ListwiseRankingTeacher(chat, num_candidates=4, window=3, step=1)
    signals = teacher.score(retrieval.train, candidates, retrieval)
    assert chat.calls == [2, 2]  # two window positions, each one batch over both questions
    # q1: window [1..3] → p2 p1 p3 → order p0 p2 p1 p3; window [0..2] of p0 p2 p1 → p2 p0 p1
    assert signals[0].candidate_ids == ["p0", "p1", "p2", "p3"]
    assert signals[0].scores.tolist() == [3.0, 2.0, 4.0, 1.0]
    assert signals[1].scores.tolist() == [4.0, 3.0, 2.0, 1.0]  # the identity order kept


def test_unknown_prompt_keys_are_named():
    with pytest.raises(ValueError, match=r"unknown keys.*sytem"):
        ListwiseRankingTeacher(ScriptedChat({}), prompt={"sytem": "x"})


def test_local_lm_ranks_through_its_chat_template(data, bert_tokenizer, build_tiny_llama):
    retrieval, candidates = data
    tokenizer = copy.deepcopy(bert_tokenizer)
    tokenizer.chat_template = CHAT_TEMPLATE
    lm = LanguageModel.from_objects(build_tiny_llama(tokenizer), tokenizer, name="tiny-chat")
    chat = LocalChat(lm, max_new_tokens=8, precision="32-true", accelerator="cpu")
    teacher = ListwiseRankingTeacher(chat, num_candidates=4)
    signals = teacher.score(retrieval.train, candidates, retrieval)
    outputs = teacher.metrics()["teacher/llm_outputs"]
    assert outputs == 2 and len(signals) == 2 - teacher.metrics()["teacher/llm_dropped"]
    for signal in signals:  # a random LM's words: whatever survives parsing is a full permutation
        assert sorted(signal.scores.tolist()) == [1.0, 2.0, 3.0, 4.0]
    answers = chat.complete_many([[{"role": "user", "content": "rank [1] [2]"}]] * 2)
    assert answers[0] == answers[1]  # greedy


def test_local_chat_refuses_a_model_without_chat_template_and_unknown_params(bert_tokenizer, build_tiny_llama):
    lm = LanguageModel.from_objects(build_tiny_llama(bert_tokenizer), bert_tokenizer, name="tiny-plain")
    chat = LocalChat(lm, max_new_tokens=4)
    with pytest.raises(ValueError, match="no chat template"):
        chat.complete_many([[{"role": "user", "content": "hi"}]])
    with pytest.raises(ValueError, match="takes only temperature, top_p and seed"):
        chat.complete_many([[{"role": "user", "content": "hi"}]], frequency_penalty=0.5)


def test_local_chat_samples_with_a_temperature_reproducibly_by_seed(bert_tokenizer, build_tiny_llama):
    tokenizer = copy.deepcopy(bert_tokenizer)
    tokenizer.chat_template = CHAT_TEMPLATE
    lm = LanguageModel.from_objects(build_tiny_llama(tokenizer), tokenizer, name="tiny-chat")
    chat = LocalChat(lm, max_new_tokens=12, precision="32-true", accelerator="cpu")
    requests = [[{"role": "user", "content": "write something"}]] * 4
    first = chat.complete_many(requests, temperature=1.0, top_p=1.0, seed=3)
    assert len(set(first)) > 1  # four draws from one prompt differ (greedy would repeat one answer)
    assert chat.complete_many(requests, temperature=1.0, top_p=1.0, seed=3) == first
    assert chat.complete_many(requests, temperature=1.0, top_p=1.0, seed=4) != first
    assert len(set(chat.complete_many(requests, temperature=0))) == 1  # temperature 0 = greedy


def test_api_chat_config_builds_a_client_with_the_key_from_the_environment(compose_cfg, monkeypatch):
    from hydra.utils import instantiate

    from ragdistill.models.chat_api import ChatClient

    overrides = ["teacher=llm_ranking", "teacher/chat@teacher=api", "teacher.chat.model=smollm2"]
    cfg = compose_cfg("config", overrides)
    assert cfg.teacher.generation.temperature == 0  # deterministic answers from a served LLM
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(Exception, match="OPENAI_API_KEY"):
        instantiate(cfg.teacher)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-secret")
    teacher = instantiate(cfg.teacher)
    assert isinstance(teacher.chat, ChatClient) and "sk-test-secret" not in repr(teacher.chat)

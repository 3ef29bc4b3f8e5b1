"""What each likelihood target scores: the target's own tokens, never template words; and the cache key that says so."""

from __future__ import annotations

import pytest
import torch

from ragdistill.models.lm_inputs import QUERY_LIKELIHOOD_PROMPT, PromptBuilder, TokenLimits
from ragdistill.teachers.cache import SignalCache
from ragdistill.teachers.lm_likelihood import LMLikelihoodTeacher

EXACT = {"precision": "32-true", "accelerator": "cpu", "max_passage_tokens": 512}
"""float32 and passages kept whole, so a hand-written prompt is the teacher's prompt token for token."""


@pytest.fixture(scope="module")
def setting(fixture_pools):
    return fixture_pools(2)


def _ids(lm, text: str) -> list[int]:
    return lm.tokenizer(text, add_special_tokens=False)["input_ids"]


def test_the_question_target_is_the_question_tokens_alone(tiny_llama, setting):
    data, questions, candidates = setting
    teacher = LMLikelihoodTeacher(tiny_llama, target="question", **EXACT)
    question, pid = questions[0], candidates[questions[0].id].ids[0]
    example = teacher.builder().build("k", [data.passage(pid)], question.text, question.text)
    assert example.target_ids == _ids(tiny_llama, question.text)
    # the cue that introduces the question is read, not scored: it ends the context
    cue = _ids(tiny_llama, "Question:")
    assert example.context_ids[-len(cue) :] == cue
    assert tiny_llama.tokenizer.decode(example.context_ids).endswith(
        "write a question that this passage answers. question :"
    )


def test_the_question_target_is_the_question_alone_after_a_chat_template(bert_tokenizer):
    builder = PromptBuilder(
        bert_tokenizer, QUERY_LIKELIHOOD_PROMPT, TokenLimits(), chat_wrap=("<user> ", " <assistant>")
    )
    example = builder.build("k", [], "", "who wrote it?")
    assert example.target_ids == bert_tokenizer("who wrote it?", add_special_tokens=False)["input_ids"]


@pytest.mark.parametrize("lm_name", ["tiny_llama", "tiny_t5"])
def test_query_likelihood_is_the_mean_log_prob_of_the_question_tokens(request, setting, lm_name):
    """UPR's score, computed here from one plain forward pass over a prompt written out by hand."""
    lm = request.getfixturevalue(lm_name)
    data, questions, candidates = setting
    teacher = LMLikelihoodTeacher(lm, target="question", num_candidates=3, **EXACT)
    signals = teacher.score(questions, candidates, data)
    checked = 0
    for signal, question in zip(signals, questions, strict=True):
        for pid, score in zip(signal.candidate_ids, signal.scores, strict=True):
            context = _ids(
                lm, f"Passage: {data.passage(pid).text}\nWrite a question that this passage answers.\nQuestion:"
            )
            target = _ids(lm, question.text)
            with torch.no_grad():
                if lm_name == "tiny_t5":
                    logits = lm.model(input_ids=torch.tensor([context]), labels=torch.tensor([target])).logits[0]
                else:  # position t predicts token t + 1: the question's tokens are predicted from len(context) - 1 on
                    logits = lm.model(torch.tensor([context + target])).logits[0, len(context) - 1 : -1]
            log_probs = torch.log_softmax(logits.float(), dim=-1)[torch.arange(len(target)), torch.tensor(target)]
            assert score == pytest.approx(float(log_probs.mean()), abs=1e-4)
            checked += 1
    assert checked == 6


def test_the_other_targets_score_their_own_tokens_only(tiny_llama, setting):
    data, questions, candidates = setting
    question, passage = questions[0], data.passage(candidates[questions[0].id].ids[0])
    answer = LMLikelihoodTeacher(tiny_llama, target="answer", **EXACT).builder()
    assert answer.build("k", [passage], question.text, question.answers[0]).target_ids == _ids(
        tiny_llama, question.answers[0]
    )
    candidate = LMLikelihoodTeacher(tiny_llama, target="candidate", max_target_tokens=512, **EXACT).builder()
    assert candidate.build("k", [], question.text, passage.text).target_ids == _ids(tiny_llama, passage.text)
    relevance = LMLikelihoodTeacher(tiny_llama, target="relevance", **EXACT).builder()
    example = relevance.build("k", [passage], question.text, "Yes")
    assert example.target_ids == _ids(tiny_llama, "Yes")  # the first (only) target token is the reply itself
    assert tiny_llama.tokenizer.decode(example.context_ids).endswith("answer yes or no. answer :")


def test_a_long_question_target_is_cut_at_the_question_budget_not_the_target_one(tiny_llama):
    teacher = LMLikelihoodTeacher(tiny_llama, target="question", max_question_tokens=40, max_target_tokens=8)
    long_question = " ".join(["word"] * 50)
    assert len(teacher.builder().build("k", [], "", long_question).target_ids) == 40


def test_template_words_in_the_scored_target_are_refused(tiny_llama):
    with pytest.raises(ValueError, match=r"cue words such as 'Question:'"):
        LMLikelihoodTeacher(tiny_llama, target="question", prompt={"target": "\nQuestion: {target}"})
    with pytest.raises(ValueError, match=r"must not hold \{question\}"):
        LMLikelihoodTeacher(tiny_llama, target="question", prompt={"question": "Q: {question}"})
    LMLikelihoodTeacher(tiny_llama, target="answer", prompt={"target": "\n{target}"})  # whitespace is no word


def test_changed_scoring_misses_the_old_cache_and_unchanged_scoring_hits_it(tmp_path, tiny_llama):
    """The pipeline keys signals on the teacher config plus ``cache_identity()``; ``prompt: null`` hides the wording."""
    fingerprint = tiny_llama.fingerprint()

    def key(target: str, identity: dict[str, str]) -> str:
        config = {"_target_": "ragdistill.teachers.lm_likelihood.LMLikelihoodTeacher", "target": target, "prompt": None}
        return SignalCache.from_parts(tmp_path, {"teacher": config, **identity}).key

    for target in ("answer", "relevance", "candidate"):  # scoring unchanged: the keys of earlier runs
        identity = LMLikelihoodTeacher(tiny_llama, target=target).cache_identity()  # type: ignore[arg-type]
        assert identity == {"lm": fingerprint}
        assert key(target, identity) == key(target, {"lm": fingerprint})
    identity = LMLikelihoodTeacher(tiny_llama, target="question").cache_identity()
    assert identity == {"lm": fingerprint, "scoring": "question-v2"}
    assert key("question", identity) != key("question", {"lm": fingerprint})  # the template-scoring shards miss

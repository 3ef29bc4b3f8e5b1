"""The likelihood teacher through a served LM (``lm=api``) gives the in-process teacher's scores on the same weights.

The fake server computes its echo with a real tiny LM (``tests/fake_completions.py``), so reading the wrong
echo entries (an off-by-one, the generated token taken for the target, a special token counted) changes the
scores and fails the comparison; the ``shifted`` layout shows that it does.
"""

from __future__ import annotations

import numpy as np
import pytest

from fake_completions import FakeCompletionsServer
from ragdistill.models.completions_api import CompletionsClient, EchoedPrompt
from ragdistill.models.lm import LanguageModel
from ragdistill.models.openai_endpoint import EndpointError
from ragdistill.models.served_lm import ServedLanguageModel, echoed_target
from ragdistill.teachers.lm_likelihood import LMLikelihoodTeacher
from ragdistill.utils.errors import ConfigError

FAST = {"precision": "32-true", "accelerator": "cpu", "max_passage_tokens": 48, "num_candidates": 3}
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@pytest.fixture(scope="module")
def bpe_lm(fixture_pools, build_tiny_llama, save_model_dir):
    """A tiny Llama over a byte-level BPE tokenizer with a chat template (like SmolLM2's), saved to a folder."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    data, _, _ = fixture_pools(1)
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(
        vocab_size=600, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    bpe.train_from_iterator([p.text for p in data.corpus[:300]], trainer)
    # like SmolLM2: the bos token is the chat template's first token, so it must not be taken for a bos the LM adds
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token="<|im_start|>", eos_token="<|im_end|>", pad_token="<|endoftext|>"
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    model = build_tiny_llama(tokenizer)
    return save_model_dir("bpe_llama", model, tokenizer), model, tokenizer


@pytest.fixture
def serve(bpe_lm, tmp_path):
    """``serve(layout, generate_special)`` → a ServedLanguageModel talking to a fake server of the tiny LM."""
    folder, model, tokenizer = bpe_lm
    servers = []

    def make(layout="llama_cpp", generate_special=False, cache=True):
        server = FakeCompletionsServer(model, tokenizer, layout, generate_special).start()
        servers.append(server)
        endpoint = CompletionsClient(
            server.base_url,
            "tiny",
            api_key_env=None,
            cache_dir=tmp_path / "completions" if cache else None,
            max_concurrency=2,
            max_retries=0,
            progress=False,
        )
        return ServedLanguageModel(endpoint, tokenizer=str(folder), cache_dir=str(tmp_path)), server

    yield make
    for server in servers:
        server.stop()


def scores(lm, target, pools):
    data, questions, candidates = pools
    teacher = LMLikelihoodTeacher(lm, target=target, **FAST)
    return {s.qid: s.scores for s in teacher.score(questions, candidates, data)}, teacher


@pytest.mark.parametrize("target", ["answer", "question", "relevance"])
@pytest.mark.parametrize(
    ("layout", "generate_special"), [("llama_cpp", False), ("llama_cpp", True), ("vllm", False), ("vllm", True)]
)
def test_served_scores_equal_the_in_process_teachers(bpe_lm, serve, fixture_pools, target, layout, generate_special):
    _, model, tokenizer = bpe_lm
    pools = fixture_pools(2)
    local, _ = scores(LanguageModel.from_objects(model, tokenizer, name="bpe"), target, pools)
    served_lm, server = serve(layout, generate_special)
    served, teacher = scores(served_lm, target, pools)
    assert served.keys() == local.keys() and len(served) == 2
    for qid in local:
        np.testing.assert_allclose(served[qid], local[qid], rtol=1e-4, atol=1e-4)
    assert len(server.requests) == 6 * (2 if target == "relevance" else 1)  # Yes and No are two echoes
    assert teacher.metrics()["teacher/passages"] == 6
    assert "<|im_start|>user" in server.requests[0]["prompt"]  # the chat template, as text
    assert server.requests[0]["max_tokens"] == 1  # 0 would mean "no limit" on llama.cpp


def test_a_shifted_echo_changes_the_scores(bpe_lm, serve, fixture_pools):
    """What the comparison above catches: log-probabilities read one token off give other scores."""
    _, model, tokenizer = bpe_lm
    pools = fixture_pools(2)
    local, _ = scores(LanguageModel.from_objects(model, tokenizer, name="bpe"), "answer", pools)
    served, _ = scores(serve("shifted")[0], "answer", pools)
    assert any(not np.allclose(served[qid], local[qid], atol=1e-3) for qid in local)


def test_a_second_run_reads_every_echo_from_the_cache(serve, fixture_pools):
    lm, server = serve()
    first, _ = scores(lm, "answer", fixture_pools(2))
    again, teacher = scores(serve()[0], "answer", fixture_pools(2))
    assert len(server.requests) == 6
    assert teacher.lm.endpoint.stats.cache_hits == 6 and teacher.lm.endpoint.stats.http_requests == 0
    for qid in first:
        np.testing.assert_array_equal(first[qid], again[qid])


def test_a_server_with_another_tokenizer_fails_in_one_line(serve, fixture_pools):
    with pytest.raises(EndpointError, match=r"none of 6 echoed prompts ends with its target's tokens.*lm.tokenizer"):
        scores(serve("wrong_tokenizer", cache=False)[0], "answer", fixture_pools(2))


def test_a_server_that_does_not_echo_log_probabilities_fails_in_one_line(serve, fixture_pools):
    with pytest.raises(EndpointError, match=r"without choices\[0\]\.logprobs.*support echo with logprobs"):
        scores(serve("no_logprobs", cache=False)[0], "answer", fixture_pools(2))


def test_the_served_lm_has_no_weights_here_and_says_which_lm_to_use(serve):
    lm, _ = serve()
    with pytest.raises(ConfigError, match=r"lm=api serves tiny at http://127.0.0.1:\d+/v1.*lm=smollm2"):
        _ = lm.model


def test_the_cache_key_names_the_served_model_not_its_address(bpe_lm, tmp_path):
    folder = str(bpe_lm[0])

    def fingerprint(base_url, model):
        return ServedLanguageModel(CompletionsClient(base_url, model, api_key_env=None), tokenizer=folder).fingerprint()

    assert fingerprint("http://a:1/v1", "m") == fingerprint("http://b:2/v1", "m")
    assert fingerprint("http://a:1/v1", "m") != fingerprint("http://a:1/v1", "other")


@pytest.mark.parametrize(
    ("echo", "expected"),
    [
        (EchoedPrompt("ctx Paris.", ["ctx", " Paris", "."], [None, -1.0, -2.0]), [-1.0]),  # generated "." echoed
        (EchoedPrompt("ctx Paris", ["ctx", " Paris"], [None, -1.0]), [-1.0]),  # a special generated token left out
        (EchoedPrompt("ctx Paris", ["ctx", " Paris", "</s>"], [None, -1.0, -3.0]), [-1.0]),  # vLLM: eos echoed
        (EchoedPrompt("ctx Paris.", ["ctx", " Lyon", "."], [None, -1.0, -2.0]), None),  # another tokenizer
        (EchoedPrompt("ctx Paris.", ["ctx", " Paris", "."], [None, None, -2.0]), None),  # no log-probability
    ],
)
def test_the_target_is_found_at_the_end_of_each_servers_echo(echo, expected):
    assert echoed_target(echo, "ctx Paris", " Paris", 1) == expected


def test_a_served_teacher_scores_on_rank_zero_alone(serve, tiny_llama):
    """Under trainer=ddp every rank would send every request again: requests are not split like LM batches."""
    assert LMLikelihoodTeacher(serve()[0], **FAST).scores_on_every_rank is False
    assert LMLikelihoodTeacher(tiny_llama, **FAST).scores_on_every_rank is True

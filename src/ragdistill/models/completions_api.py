"""Prompt log-probabilities from an OpenAI-compatible ``/completions`` endpoint (``echo`` + ``logprobs``).

What a likelihood teacher needs from a served LLM: for one prompt, the log-probability the model gives each
of its tokens. The OpenAI completions API returns them when the prompt is echoed (``echo: true``) with
``logprobs``; vLLM, llama.cpp's Python server (llama-cpp-python) and OpenAI's legacy models answer this way.
Concurrency, retries, the per-request cache and the API key handling are the shared
:class:`~ragdistill.models.openai_endpoint.OpenAIEndpoint`'s.

Every request asks for one generated token (``max_tokens: 1``): llama.cpp's server reads ``max_tokens: 0``
as "no limit" and would generate until its context is full. Servers differ in what they echo, which
:func:`~ragdistill.models.served_lm.echoed_target` handles when it finds the target's tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ragdistill.models.openai_endpoint import MalformedAnswer, OpenAIEndpoint

ECHO_PARAMS: dict[str, Any] = {"max_tokens": 1, "echo": True, "logprobs": 1, "temperature": 0}
"""Sent with every request (and part of its cache key): echo the prompt with one log-probability per token."""


@dataclass(frozen=True)
class EchoedPrompt:
    """What the server echoed for one prompt.

    Attributes:
        text: ``choices[0].text``: the prompt as echoed, then the generated text.
        tokens: ``logprobs.tokens``: each token's text (a server may leave special tokens out).
        log_probs: ``logprobs.token_logprobs``: each token's log-probability given the tokens before it
            (``None`` for the first, which has no context).
    """

    text: str
    tokens: list[str]
    log_probs: list[float | None]


class CompletionsClient(OpenAIEndpoint):
    """A thread-pooled, retrying, caching client for ``POST {base_url}/completions`` with echoed log-probabilities.

    The settings are :class:`~ragdistill.models.openai_endpoint.OpenAIEndpoint`'s.
    """

    path = "completions"
    label = "completions"
    payload_field = "prompt"
    answer_field = "logprobs"
    cache_format = "completions-1"

    def echo_many(self, prompts: Sequence[str], description: str = "Prompt log-probabilities") -> list[EchoedPrompt]:
        """The echoed tokens and log-probabilities of each prompt, in input order (cached ones from disk).

        Raises:
            EndpointError: A request failed for good, or the server answered without echoed log-probabilities
                (a server that does not support ``echo`` with ``logprobs``).
        """
        answers = self.request_many(list(prompts), ECHO_PARAMS, description, self.progress)
        return [EchoedPrompt(a["text"], a["tokens"], a["token_logprobs"]) for a in answers]

    def answer_description(self) -> str:
        """What a completions answer must hold."""
        return "choices[0].logprobs with the echoed prompt's tokens (does the server support echo with logprobs?)"

    def parse(self, data: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """``choices[0]``'s text, tokens and token log-probabilities."""
        choice = data["choices"][0]
        logprobs = choice.get("logprobs")
        if not isinstance(logprobs, dict):
            raise MalformedAnswer("logprobs is missing")
        fields = {"tokens": logprobs.get("tokens"), "token_logprobs": logprobs.get("token_logprobs")}
        answer = self.check_answer({"text": choice.get("text"), **fields})
        return answer, {"finish_reason": choice.get("finish_reason"), "usage": data.get("usage")}

    def check_answer(self, answer: Any) -> dict[str, Any]:
        """An answer is the echoed text, a list of token texts and as many log-probabilities (numbers or null)."""
        if not isinstance(answer, dict) or not isinstance(answer.get("text"), str):
            raise MalformedAnswer("no echoed text")
        tokens, log_probs = answer.get("tokens"), answer.get("token_logprobs")
        if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
            raise MalformedAnswer("logprobs.tokens is not a list of strings")
        if not isinstance(log_probs, list) or len(log_probs) != len(tokens):
            raise MalformedAnswer("logprobs.token_logprobs is not a list as long as logprobs.tokens")
        if not all(v is None or (isinstance(v, int | float) and not isinstance(v, bool)) for v in log_probs):
            raise MalformedAnswer("logprobs.token_logprobs holds something other than numbers and null")
        return {"text": answer["text"], "tokens": tokens, "token_logprobs": log_probs}

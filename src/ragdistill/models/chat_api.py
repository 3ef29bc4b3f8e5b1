"""Call an OpenAI-compatible chat-completions endpoint many times, concurrently, and pay for each request once.

A black-box LLM teacher (RankGPT, arXiv 2304.09542; Intermediate Distillation, arXiv 2406.12169) sends
thousands of prompts to a paid or rate-limited server (OpenAI, vLLM, TGI, llama.cpp). Concurrency, retries
with backoff, the per-request answer cache and the API key handling are the shared
:class:`~ragdistill.models.openai_endpoint.OpenAIEndpoint`'s; this module says what a chat request sends
(``messages``) and reads (``choices[0].message.content``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ragdistill.models.openai_endpoint import EndpointError, MalformedAnswer, OpenAIEndpoint

CHAT_CACHE_FORMAT = 1
"""Part of every key: bump when the stored record changes meaning, and old entries miss."""

Messages = Sequence[Mapping[str, Any]]
"""One conversation: ``[{"role": "system", "content": ...}, {"role": "user", "content": ...}]``."""

ChatAPIError = EndpointError
"""A chat request failed for good (the name older code and the CLI know)."""


class ChatClient(OpenAIEndpoint):
    """A thread-pooled, retrying, caching client for ``POST {base_url}/chat/completions``.

    The settings are :class:`~ragdistill.models.openai_endpoint.OpenAIEndpoint`'s.
    """

    path = "chat/completions"
    label = "chat"
    payload_field = "messages"
    answer_field = "content"
    cache_format = CHAT_CACHE_FORMAT

    def complete(self, messages: Messages, **params: Any) -> str:
        """The answer to one conversation (cached); see :meth:`complete_many`."""
        return str(self.request_many([[dict(m) for m in messages]], params, description="", show=False)[0])

    def complete_many(
        self, requests: Sequence[Messages], description: str = "Chat completions", **params: Any
    ) -> list[str]:
        """Answer many conversations: cached ones from disk, the rest concurrently, each cached on arrival.

        Args:
            requests: The conversations.
            description: The progress bar's label.
            **params: Generation parameters sent with every request and part of the cache key
                (``temperature``, ``max_tokens``, ``seed`` …).

        Returns:
            The text of ``choices[0].message.content`` per request, in input order.

        Raises:
            ChatAPIError: A request failed for good (the message names the URL, status and server message).
            ValueError: ``params`` holds ``model``, ``messages`` or ``stream`` (set by the client).
        """
        conversations = [[dict(message) for message in messages] for messages in requests]
        return [str(answer) for answer in self.request_many(conversations, params, description, self.progress)]

    def answer_description(self) -> str:
        """What a chat answer must hold."""
        return "choices[0].message.content"

    def parse(self, data: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """``choices[0].message.content`` (``None``, e.g. a refusal or a tool call, reads as empty text)."""
        choice = data["choices"][0]
        content = choice["message"]["content"]
        meta = {"finish_reason": choice.get("finish_reason"), "usage": data.get("usage")}
        if content is None:
            # no text to parse; the ranking parser will drop it, visibly
            content = ""
        if not isinstance(content, str):
            raise MalformedAnswer(f"message.content is {type(content).__name__}, not text")
        return content, meta

    def check_answer(self, answer: Any) -> str:
        """A cached answer is text."""
        if not isinstance(answer, str):
            raise MalformedAnswer("no text content")
        return answer


__all__ = ["ChatAPIError", "ChatClient", "Messages"]

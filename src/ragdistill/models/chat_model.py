"""What the teachers that talk to a chat LLM need from it, whether it runs here or behind an endpoint."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol


class ChatModel(Protocol):
    """:class:`~ragdistill.models.local_chat.LocalChat` or :class:`~ragdistill.models.chat_api.ChatClient`.

    Used by the listwise ranking teacher (stage 0 of ``teacher=intermediate``) and G2R's unit generation.
    """

    def complete_many(self, requests: Sequence[Any], description: str = ..., **params: Any) -> list[str]:
        """One answer per conversation, in order."""
        ...

    def identity(self) -> dict[str, str]:
        """What determines its answers besides the prompt, for caches of them.

        A local LM: its fingerprint, ``max_new_tokens`` and the precision it really runs in; an endpoint: its
        ``base_url`` and ``model`` (never the API key).
        """
        ...

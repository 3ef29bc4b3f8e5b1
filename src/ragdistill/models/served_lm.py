"""A language model behind an OpenAI-compatible ``/completions`` endpoint, scored by its echoed log-probabilities.

Users who outgrow one machine serve their LLM with vLLM, llama.cpp or TGI, often many replicas behind one
URL. ``lm=api`` lets the likelihood teachers (``teacher=lm_likelihood`` and the teachers built on it: ``aar``,
``g2r``'s model level) score through such a server: the prompts are the same token sequences the in-process
teacher reads (built with the served model's tokenizer, loaded here), sent as text; the server echoes them
with one log-probability per token, and the target's tokens are found at the end of the echo.

What differs between servers, and how it is handled (:func:`echoed_target`):

- llama.cpp's Python server (llama-cpp-python) refuses token-id prompts, so prompts go as text (the decoded
  token ids, chat template included, which it parses back into the same special tokens); its echo leaves
  special tokens out and ends with the one generated token unless that one is special (then the
  completion text is empty); ``max_tokens: 0`` means "no limit" there, so one token is generated.
- vLLM and the OpenAI spec echo every token and then the generated one.

The target's log-probabilities are the last ``len(target tokens)`` entries once the generated token is
dropped; a tail that does not spell the target (the server tokenized differently) gives that candidate no
score and is counted in a warning; a server whose tails never spell the target fails in one line.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from typing import Any, ClassVar

from torch import nn

from ragdistill.models.completions_api import CompletionsClient, EchoedPrompt
from ragdistill.models.lm import LanguageModel
from ragdistill.models.lm_inputs import LMExample, added_bos
from ragdistill.models.openai_endpoint import EndpointError
from ragdistill.utils.errors import ConfigError

logger = logging.getLogger(__name__)


def echoed_target(echo: EchoedPrompt, prompt: str, target: str, n: int) -> list[float] | None:
    """The log-probabilities of the ``n`` target tokens that end ``prompt``, read from the server's echo.

    The echo may end with the generated token (vLLM, OpenAI, llama.cpp when it generated text) or not
    (llama.cpp when the generated token is special: the completion text is empty). The more likely layout,
    told by the completion text, is tried first; a layout counts only if its ``n`` tokens spell ``target``
    (up to whitespace at the ends: tokenizers differ in how they show a leading space) and all have a
    log-probability.

    Args:
        echo: What the server echoed.
        prompt: The prompt as sent (context then target).
        target: The target's text as the local tokenizer decodes its tokens.
        n: How many tokens the target has.

    Returns:
        ``n`` log-probabilities, or ``None`` if the echo's tail does not spell the target.
    """
    generated = echo.text[len(prompt) :] if echo.text.startswith(prompt) else None
    drops = (0, 1) if generated == "" else (1, 0)
    for drop in drops:
        end = len(echo.tokens) - drop
        if n < 1 or end - n < 0:
            continue
        tail, values = echo.tokens[end - n : end], echo.log_probs[end - n : end]
        if "".join(tail).strip() == target.strip() and all(v is not None for v in values):
            return [float(v) for v in values if v is not None]
    return None


class ServedLanguageModel(LanguageModel):
    """The teacher LM served behind ``/completions``; its tokenizer (and chat template) loaded here.

    Args:
        endpoint: The server (its ``model`` names the served LM in every request and in the teacher cache key).
        tokenizer: Where the served model's tokenizer is: ``packaged:<name>``, a local folder or a hub id
            (as :class:`~ragdistill.models.lm.LanguageModel`'s ``path``). Prompts are built with it, so it
            must be the served model's.
        gguf_file: The GGUF file inside ``tokenizer``'s folder, when the tokenizer is read from one.
        cache_dir: Where a GGUF tokenizer source is converted once.
        trust_remote_code: Passed to ``from_pretrained`` for the tokenizer.
        use_chat_template: Wrap prompts in the tokenizer's chat template, as the in-process LM does.
    """

    served: ClassVar[bool] = True

    def __init__(
        self,
        endpoint: CompletionsClient,
        tokenizer: str = "packaged:SmolLM2-135M-Instruct",
        gguf_file: str | None = None,
        cache_dir: str = ".cache/ragdistill",
        trust_remote_code: bool = False,
        use_chat_template: bool = True,
    ) -> None:
        super().__init__(tokenizer, gguf_file, "float32", cache_dir, trust_remote_code, use_chat_template)
        self.endpoint = endpoint

    def __repr__(self) -> str:
        return f"ServedLanguageModel(model={self.endpoint.model!r}, base_url={self.endpoint.base_url!r})"

    @property
    def name(self) -> str:
        """The served model's name (the ``model`` field of the requests)."""
        return self.endpoint.model

    @property
    def model(self) -> nn.Module:
        """Not here: the weights are on the server."""
        raise ConfigError(
            f"lm=api serves {self.endpoint.model} at {self.endpoint.base_url}: its weights are not in this "
            "process, and this step reads them (an attention teacher, a reader, local generation); use an "
            "in-process LM for it (lm=smollm2, lm=gemma270m or lm=hf)"
        )

    @property
    def is_encoder_decoder(self) -> bool:
        """Completions are decoder-only."""
        return False

    def fingerprint(self) -> str:
        """The served model's name and the tokenizer's source: what the teacher-signal cache keys on.

        The URL is not part of it: the same model served by another replica (or after a restart on another
        port) gives the same scores.
        """
        blob = "\n".join(["served", self.endpoint.model, super().fingerprint()])
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def target_log_probs(self, examples: Sequence[LMExample], description: str) -> dict[Any, list[float]]:
        """Each example's target-token log-probabilities, keyed by ``example.key``.

        Examples whose echo does not spell their target are left out (and counted in a warning).

        Raises:
            EndpointError: A request failed for good, or no echo spelled its target (the server's tokenizer
                is not ``tokenizer``'s, or it does not echo the prompt).
        """
        prompts, targets = [], []
        bos = added_bos(self.tokenizer, self.chat_wrap())
        for example in examples:
            context = list(example.context_ids)
            if context and bos is not None and context[0] == bos:
                context = context[1:]  # the server adds the bos token its model expects
            prompts.append(self._decode(context + list(example.target_ids)))
            targets.append(self._decode(list(example.target_ids)))
        echoes = self.endpoint.echo_many(prompts, description)
        found: dict[Any, list[float]] = {}
        missed: list[tuple[str, str]] = []
        for example, prompt, target, echo in zip(examples, prompts, targets, echoes, strict=True):
            log_probs = echoed_target(echo, prompt, target, len(example.target_ids))
            if log_probs is None:
                missed.append((target, "".join(echo.tokens[-len(example.target_ids) - 1 :])))
            else:
                found[example.key] = log_probs
        if missed and not found:
            raise EndpointError(
                f"{self.endpoint.url}: none of {len(missed)} echoed prompts ends with its target's tokens (e.g. "
                f"target {missed[0][0]!r}, echo ends {missed[0][1]!r}): is lm.tokenizer the served model's "
                "tokenizer, and does the server echo prompts with logprobs?"
            )
        if missed:
            logger.warning(
                "%s: %d of %d echoed prompts do not end with their target's tokens (e.g. target %r, echo ends %r); "
                "those candidates get no score",
                self.endpoint.url,
                len(missed),
                len(examples),
                *missed[0],
            )
        return found

    def _decode(self, ids: list[int]) -> str:
        return str(self.tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False))

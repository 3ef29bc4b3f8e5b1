"""Chat completions from a local LM, with the same call as the OpenAI-compatible client (``complete_many``).

A listwise ranking teacher talks to "a chat model"; this lets it use the packaged SmolLM2 (or any hub id or
folder) on the machine, and :class:`~ragdistill.models.chat_api.ChatClient` for a served LLM, unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ragdistill.models.generate import Sampling, generate_texts
from ragdistill.models.lm import LanguageModel
from ragdistill.models.lm_predict_module import LMRunSettings
from ragdistill.utils.constraints import PositiveInt, Precision

Messages = Sequence[dict[str, str]]


class LocalChat:
    """Chat completions of a local LM, batched by length (:func:`~ragdistill.models.generate.generate_texts`).

    Greedy by default; ``temperature`` (> 0), ``top_p`` and ``seed`` — the OpenAI-compatible parameter names,
    so one config drives either backend — switch to sampling.

    Args:
        lm: The LM; it needs a chat template (instruct models ship one).
        max_new_tokens: Tokens generated per answer (a ranking of 20 passages as ``[i] > [j]`` takes ~100).
        max_batch_tokens: Padded tokens per batch (memory bound; answers do not depend on it).
        max_batch_size: Conversations per batch at most.
        precision: Lightning precision (``32-true`` keeps answers independent of the batch).
        accelerator: Lightning accelerator.
    """

    def __init__(
        self,
        lm: LanguageModel,
        max_new_tokens: PositiveInt = 128,
        max_batch_tokens: PositiveInt = 16384,
        max_batch_size: PositiveInt = 16,
        precision: Precision = "32-true",
        accelerator: str = "auto",
    ) -> None:
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        self.lm = lm
        self.max_new_tokens = max_new_tokens
        self.settings = LMRunSettings(max_batch_tokens, max_batch_size, accelerator, precision)

    def identity(self) -> dict[str, str]:
        """What determines this model's answers besides the prompt (for caches of what it generated).

        The precision is the one it really runs in (``32-true`` where a CPU lacks bfloat16): it changes the answers.
        """
        return {
            "lm": self.lm.fingerprint(),
            "max_new_tokens": str(self.max_new_tokens),
            "precision": self.settings.effective_precision,
        }

    def complete_many(
        self, requests: Sequence[Messages], description: str = "Chat completions", **params: Any
    ) -> list[str]:
        """One answer per conversation, in order: greedy, or sampled when ``params`` has a temperature > 0.

        Raises:
            ValueError: If the LM has no chat template, or a parameter other than temperature, top_p and seed is
                given (it would be silently ignored otherwise).
        """
        unknown = sorted(set(params) - {"temperature", "top_p", "seed"})
        if unknown:
            raise ValueError(f"LocalChat takes only temperature, top_p and seed; got {unknown}")
        sampling = None
        if float(params.get("temperature", 0.0)) > 0:
            top_p, seed = float(params.get("top_p", 1.0)), int(params.get("seed", 0))
            sampling = Sampling(float(params["temperature"]), top_p, seed)
        tokenizer = self.lm.tokenizer
        if getattr(tokenizer, "chat_template", None) is None:
            raise ValueError(f"{self.lm.name} has no chat template: a listwise ranking prompt needs an instruct model")
        texts = [tokenizer.apply_chat_template(list(m), add_generation_prompt=True, tokenize=False) for m in requests]
        # the template writes any bos itself: tokenize without adding special tokens again
        prompts = [tokenizer(str(text), add_special_tokens=False)["input_ids"] for text in texts]
        window = getattr(self.lm.model.config, "max_position_embeddings", None)
        longest = max((len(p) for p in prompts), default=0)
        if window is not None and longest + self.max_new_tokens > window:
            raise ValueError(
                f"a chat prompt has {longest} tokens + {self.max_new_tokens} to generate, over {self.lm.name}'s "
                f"window of {window}: show fewer passages per window or truncate them"
            )
        return generate_texts(
            self.lm, prompts, self.max_new_tokens, self.settings, sampling=sampling, description=description
        )

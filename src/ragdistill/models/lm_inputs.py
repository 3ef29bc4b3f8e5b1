"""Build the token sequences LM teachers read: prompt pieces tokenized apart, so every span is known exactly.

Both LM teachers put the same pieces in the same order: (chat prefix) passages, question, (chat suffix),
then the target the LM is teacher-forced on (the gold answer, a generated answer, or the question itself
for query likelihood). Tokenizing each piece on its own costs nothing and gives the exact token span of
every passage, which the attention teacher aggregates over — no offset mapping, no fast-tokenizer
requirement.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ragdistill.data.schemas import Passage

Span = tuple[int, int]
"""Half-open token range ``[start, end)`` inside a sequence."""


@dataclass(frozen=True)
class PromptTemplate:
    """How passages, question and target are written; ``{…}`` fields are filled per example.

    Attributes:
        passage: One passage; fields ``{index}`` (1-based position in the prompt), ``{title}``, ``{text}``.
        question: What follows the passages; field ``{question}`` (left out when the question is the target).
        target: The teacher-forced continuation; field ``{target}``. Without a chat template the
            target follows ``Answer:`` directly, hence the leading space. Every target token is scored,
            so the likelihood teachers take ``{target}`` alone here (leading whitespace allowed): cue words
            such as ``Question:`` belong at the end of ``question``, in the context.
        instruction: Text before the passages (e.g. the task); may be empty.
    """

    passage: str = "Passage: {text}\n"
    question: str = "Question: {question}\nAnswer:"
    target: str = " {target}"
    instruction: str = ""

    def __post_init__(self) -> None:
        for name, needed in (("passage", "{text}"), ("target", "{target}")):
            if needed not in getattr(self, name):
                raise ValueError(f"prompt.{name} must contain {needed}, got {getattr(self, name)!r}")


QUERY_LIKELIHOOD_PROMPT = PromptTemplate(
    instruction="",
    passage="Passage: {text}\n",
    question="Write a question that this passage answers.\nQuestion:",
    target=" {target}",
)
"""Query likelihood log p(question | passage) (UPR, arXiv:2204.07496): the question is the target, not part of
the context, and only its own tokens are scored; the ``Question:`` cue ends the context. (Before scoring
version 2 the cue was part of the target and its tokens counted in the per-token mean.)"""

RESPONSE_LIKELIHOOD_PROMPT = PromptTemplate(
    instruction="",
    passage="Passage: {text}\n",
    question="{question}\nReply:",
    target=" {target}",
)
"""Response likelihood log p(candidate | context): no passage in the context, the candidate is the target."""

RELEVANCE_PROMPT = PromptTemplate(
    instruction="",
    passage="Passage: {text}\n",
    question="Question: {question}\nDoes the passage answer the question? Answer Yes or No.\nAnswer:",
    target=" {target}",
)
"""Yes/no relevance: the LM's log-odds of answering "Yes" rather than "No" after passage and question."""


def added_bos(tokenizer: Any, chat_wrap: tuple[str, str] | None) -> int | None:
    """The bos token id a prompt builder puts first, or ``None``: only plain prompts of a tokenizer that adds one.

    A chat template writes its own first tokens, which may include the bos token itself (SmolLM2's
    ``<|im_start|>``): that one is part of the prompt, not an added bos.
    """
    add = chat_wrap is None and getattr(tokenizer, "add_bos_token", False)
    return tokenizer.bos_token_id if add else None


@dataclass
class LMExample:
    """One sequence for the LM: a context and a teacher-forced target.

    Attributes:
        key: Where the result goes (e.g. ``(question index, candidate index)``).
        context_ids: Prompt tokens (the encoder input of a seq2seq LM).
        target_ids: Target tokens (the decoder input of a seq2seq LM; appended to the context otherwise).
        passage_spans: Token span of each passage inside ``context_ids``, in prompt order.
        question_span: Token span of the question inside ``context_ids``.
    """

    key: Any
    context_ids: list[int]
    target_ids: list[int]
    passage_spans: list[Span]
    question_span: Span

    @property
    def passages(self) -> int:
        """Passages this sequence reads (the unit of the passages/s figure; at least 1)."""
        return max(1, len(self.passage_spans))

    @property
    def length(self) -> int:
        """Tokens a decoder-only LM reads (context + target)."""
        return len(self.context_ids) + len(self.target_ids)


@dataclass(frozen=True)
class TokenLimits:
    """Token budgets per piece, so one long passage cannot crowd out the others.

    Attributes:
        passage: Tokens kept from each passage (SQuAD paragraphs average ~160 tokens; 256 keeps ~95%).
        question: Tokens kept from the question.
        target: Tokens kept from the target (SQuAD answers are a few tokens).
    """

    passage: int = 256
    question: int = 64
    target: int = 32


class PromptBuilder:
    """Tokenize prompt pieces for one LM and assemble :class:`LMExample` sequences.

    Args:
        tokenizer: The LM's tokenizer.
        template: The prompt wording.
        limits: Token budgets per piece.
        chat_wrap: ``(prefix, suffix)`` the LM's chat template puts around one user message (ending with the
            generation prompt), or ``None`` to write plain text.
        bos_token_id: Prepended to every context when the LM expects one (``None``: nothing).
    """

    def __init__(
        self,
        tokenizer: Any,
        template: PromptTemplate,
        limits: TokenLimits,
        chat_wrap: tuple[str, str] | None = None,
        bos_token_id: int | None = None,
    ) -> None:
        self.tokenizer = tokenizer
        self.template = template
        self.limits = limits
        self.chat_wrap = chat_wrap
        self.bos = [bos_token_id] if bos_token_id is not None else []

    @classmethod
    def for_lm(cls, lm: Any, template: PromptTemplate, limits: TokenLimits | None = None) -> PromptBuilder:
        """A builder for ``lm`` (a :class:`~ragdistill.models.lm.LanguageModel`).

        Uses its chat template when it has one, else plain text with a bos token when its tokenizer adds one.
        """
        wrap = lm.chat_wrap()
        return cls(lm.tokenizer, template, limits or TokenLimits(), wrap, added_bos(lm.tokenizer, wrap))

    def tokens(self, text: str, limit: int | None = None) -> list[int]:
        """Token ids of ``text`` without special tokens, cut to ``limit``."""
        if not text:
            return []
        ids: list[int] = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return ids[:limit] if limit is not None else ids

    def target_tokens(self, target: str, limit: int | None = None) -> list[int]:
        """Token ids of ``target`` as the template writes it, cut to ``limit``.

        After a chat template the leading whitespace is dropped: the assistant turn starts on a fresh token.
        """
        text = self.template.target.format(target=target)
        return self.tokens(text.lstrip() if self.chat_wrap else text, limit)

    def build(self, key: Any, passages: list[Passage], question: str, target: str) -> LMExample:
        """Assemble ``[bos] [chat prefix] instruction passages question [chat suffix] | target``.

        With a chat template the target is the assistant's reply, so its leading whitespace is dropped.
        """
        context: list[int] = list(self.bos)
        prefix, suffix = self.chat_wrap or ("", "")
        context += self.tokens(prefix) + self.tokens(self.template.instruction)
        spans: list[Span] = []
        for index, passage in enumerate(passages, start=1):
            body = self.template.passage.format(index=index, title=passage.title, text=passage.text)
            ids = self.tokens(body, self.limits.passage)
            spans.append((len(context), len(context) + len(ids)))
            context += ids
        question_ids = self.tokens(self.template.question.format(question=question), self.limits.question)
        question_span = (len(context), len(context) + len(question_ids))
        context += question_ids + self.tokens(suffix)
        target_ids = self.target_tokens(target, self.limits.target)
        if not target_ids:
            raise ValueError(f"example {key!r}: the target {target!r} has no tokens")
        return LMExample(key, context, target_ids, spans, question_span)

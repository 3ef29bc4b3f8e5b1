"""Answer questions from retrieved passages with a language model: the RAG reader that scores a retriever end to end.

A retriever is only as good as the answers a reader gives from what it retrieves, so evaluation reads each
question's top-k passages with an LM and scores the answer (``reader/qa.py``). The prompt is written with
the LM teachers' pieces (``PromptTemplate``, the chat wrap, piece-wise tokenization of
``models/lm_inputs.py``), so the reader reads passages the way the teacher that judged them did.

Three choices matter for the figures:
- Passages are cut to a token budget (the LM window minus the answer's tokens) in rank order: each passage
  keeps at most ``max_passage_tokens`` of its text, the one that overflows the budget is cut, later ones are
  left out. The question is never cut; a question that alone overflows is an error.
- Decoding is greedy and batched with *left* padding: a decoder-only LM continues from the last position of
  each row, so right padding would put pad tokens between a short prompt and its answer. With left padding
  and the attention mask (from which ``generate`` derives position ids) a batched answer equals the answer
  given alone.
- The answer is the first non-empty line of the generation, stripped (base models go on with
  ``Question: ...`` on the next line); generation stops once every row has a newline or an eos token.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ragdistill.data.answers import has_answer
from ragdistill.data.schemas import Passage, Question
from ragdistill.models.generate import generate_texts
from ragdistill.models.lm import LanguageModel
from ragdistill.models.lm_inputs import PromptBuilder, PromptTemplate
from ragdistill.models.lm_predict_module import LMRunSettings
from ragdistill.reader.pear import PearResult, PearSettings, apply_pear, run_pear
from ragdistill.reader.qa import exact_match, token_f1
from ragdistill.utils.atomic import atomic_write_text
from ragdistill.utils.constraints import PositiveInt, Precision

logger = logging.getLogger(__name__)

READER_PROMPT = PromptTemplate(
    instruction="Answer the question using the passages below. Reply with the answer only, in a few words.\n\n",
    passage="Title: {title}\n{text}\n\n",
    question="Question: {question}\nAnswer:",
)
"""The reader's wording; ``target`` is unused (the reader generates instead of being teacher-forced)."""


@dataclass(frozen=True)
class ReaderPrompt:
    """One question's prompt as token ids.

    Attributes:
        ids: ``[bos] [chat prefix] instruction passages question [chat suffix]``.
        passages: Passages read, whole or cut (rank order: the first ``passages`` of the list).
        cut: Passages whose text was cut (to ``max_passage_tokens`` or to the budget's end).
    """

    ids: list[int]
    passages: int
    cut: int


def clean_answer(text: str) -> str:
    """The first line of a generation, stripped; leading whitespace and newlines are skipped first.

    Args:
        text: The decoded generation.

    Returns:
        The answer (``""`` when the generation is blank).
    """
    return text.lstrip().split("\n", 1)[0].strip()


class LMReader:
    """Generate a short answer per question from its retrieved passages, greedily and in length-bucketed batches.

    Nothing loads in the constructor; the LM loads on the first :meth:`answer`.

    Args:
        lm: The reader LM (decoder-only, or encoder-decoder).
        prompt: The wording: a :class:`PromptTemplate`, or overrides of :data:`READER_PROMPT`'s fields.
        max_new_tokens: Answer tokens generated at most (SQuAD answers are a few tokens).
        max_passage_tokens: Text tokens kept per passage (``None``: only the budget limits it), so one long
            passage cannot crowd out the next ones.
        max_prompt_tokens: Prompt tokens at most (``None``: the LM window minus ``max_new_tokens``; the
            smaller of the two when both are known).
        max_batch_tokens: Padded tokens per batch, answer included (memory bound; answers do not depend on it).
        max_batch_size: Questions per batch at most.
        precision: Lightning precision. ``32-true`` by default: evaluation figures should not depend on the
            batch an answer was generated in, and CPUs without bfloat16 units gain nothing from ``bf16-mixed``
            (the teachers' default, worth it on GPUs).
        accelerator: Lightning accelerator (``auto``, ``cpu``, ``gpu``).
        pear: Re-weight the LM's copy-suppressing attention heads with PEAR before answering
            (:mod:`ragdistill.reader.pear`): the coefficients are computed once per LM and settings, cached
            under ``cache_dir`` (``ragdistill-pear`` with the same settings makes the same ones) and folded
            into the weights, so answering costs what it did.
        pear_settings: :class:`~ragdistill.reader.pear.PearSettings` fields to change from their defaults.
        cache_dir: Where PEAR's coefficients are cached (``None``: computed every run, not saved).

    Raises:
        ValueError: For unknown prompt fields, a passage format without exactly one ``{text}``, or
            non-positive sizes, or PEAR settings PearSettings does not take.
    """

    def __init__(
        self,
        lm: LanguageModel,
        prompt: PromptTemplate | Mapping[str, str] | None = None,
        max_new_tokens: PositiveInt = 16,
        max_passage_tokens: PositiveInt | None = 256,
        max_prompt_tokens: int | None = None,
        max_batch_tokens: PositiveInt = 8192,
        max_batch_size: PositiveInt = 64,
        precision: Precision = "32-true",
        accelerator: str = "auto",
        pear: bool = False,
        pear_settings: Mapping[str, Any] | None = None,
        cache_dir: str | None = None,
    ) -> None:
        self.template = _template(prompt)
        if self.template.passage.count("{text}") != 1:
            raise ValueError(f"reader prompt.passage must contain {{text}} exactly once, got {self.template.passage!r}")
        for name, value in (("max_new_tokens", max_new_tokens), ("max_passage_tokens", max_passage_tokens)):
            if value is not None and value < 1:
                raise ValueError(f"reader.{name} must be >= 1, got {value}")
        self.lm = lm
        self.max_new_tokens = max_new_tokens
        self.max_passage_tokens = max_passage_tokens
        self.max_prompt_tokens = max_prompt_tokens
        self.settings = LMRunSettings(max_batch_tokens, max_batch_size, accelerator, precision)
        self.pear = PearSettings.from_mapping(pear_settings or {}) if pear else None
        self.cache_dir = cache_dir
        self.pear_result: PearResult | None = None
        self._builder: PromptBuilder | None = None

    @property
    def prompt_budget(self) -> int | None:
        """Prompt tokens at most: ``max_prompt_tokens`` and the LM window minus ``max_new_tokens``, the smaller.

        Reading the window loads the LM; ``None`` when neither is known (e.g. T5, whose positions are relative).
        """
        window = getattr(self.lm.model.config, "max_position_embeddings", None)
        limits = [n for n in (self.max_prompt_tokens, window and window - self.max_new_tokens) if n is not None]
        return min(limits) if limits else None

    def build_prompt(self, question: str, passages: Sequence[Passage]) -> ReaderPrompt:
        """Tokenize one prompt, cutting passages (never the question) to fit :attr:`prompt_budget`.

        Raises:
            ValueError: If the prompt without any passage is already over the budget.
        """
        builder = self.prompt_builder()
        prefix, suffix = builder.chat_wrap or ("", "")
        head = builder.bos + builder.tokens(prefix) + builder.tokens(self.template.instruction)
        tail = builder.tokens(self.template.question.format(question=question)) + builder.tokens(suffix)
        budget = self.prompt_budget
        room = budget - len(head) - len(tail) if budget is not None else None
        if room is not None and room < 0:
            raise ValueError(
                f"the reader prompt of question {question[:80]!r} has {len(head) + len(tail)} tokens without any "
                f"passage, over the budget of {budget} ({self.lm.name}'s window minus reader.max_new_tokens="
                f"{self.max_new_tokens}, or reader.max_prompt_tokens): shorten the instruction or the question"
            )
        body: list[int] = []
        read = cut = 0
        before, after = self.template.passage.split("{text}")
        for index, passage in enumerate(passages, start=1):
            frame = builder.tokens(before.format(index=index, title=passage.title))
            end = builder.tokens(after.format(index=index, title=passage.title))
            text = builder.tokens(passage.text)
            keep = len(text) if self.max_passage_tokens is None else min(len(text), self.max_passage_tokens)
            if room is not None:
                space = room - len(body) - len(frame) - len(end)
                if space < 1:
                    break  # rank order: a lower-ranked passage never displaces a higher-ranked one
                keep = min(keep, space)
            body += frame + text[:keep] + end
            read += 1
            cut += keep < len(text)
        return ReaderPrompt(head + body + tail, read, cut)

    def answer(self, questions: Sequence[str], passages: Sequence[Sequence[Passage]]) -> list[str]:
        """Answer every question from its passages (rank order); the answers come back in question order.

        Args:
            questions: Question texts.
            passages: Each question's retrieved passages, best first.

        Returns:
            One cleaned answer per question (see :func:`clean_answer`).

        Raises:
            ValueError: If the lists differ in length or a question does not fit (before any generation).
        """
        if len(questions) != len(passages):
            raise ValueError(f"{len(questions)} questions but {len(passages)} passage lists")
        if not questions:
            return []
        self._apply_pear()
        prompts = [self.build_prompt(q, ps) for q, ps in zip(questions, passages, strict=True)]
        logger.info(
            "Reader <%s>: %d questions, %d passages read (%d cut), %d left out to fit the budget",
            self.lm.name,
            len(prompts),
            sum(p.passages for p in prompts),
            sum(p.cut for p in prompts),
            sum(len(ps) for ps in passages) - sum(p.passages for p in prompts),
        )
        texts = generate_texts(
            self.lm,
            [p.ids for p in prompts],
            self.max_new_tokens,
            self.settings,
            stop_at_newline=True,
            units=[p.passages for p in prompts],
            description="Reader answering",
        )
        return [clean_answer(text) for text in texts]

    def metrics(self) -> dict[str, float]:
        """What the reader adds to a run's metrics: PEAR's ``pear/*`` figures once it was applied."""
        return self.pear_result.metrics() if self.pear_result is not None else {}

    def _apply_pear(self) -> None:
        """Compute (or reuse) PEAR's coefficients and fold them into the LM, once."""
        if self.pear is None or self.pear_result is not None:
            return
        self.pear_result = run_pear(self.lm, self.pear, cache_dir=self.cache_dir)
        apply_pear(self.lm, self.pear_result)
        values = [h["value"] for h in self.pear_result.heads]
        logger.info(
            "Reader <%s> with PEAR: %d heads re-weighted (coefficients %.3f to %.3f)",
            self.lm.name,
            len(values),
            min(values, default=float("nan")),
            max(values, default=float("nan")),
        )

    def prompt_builder(self) -> PromptBuilder:
        """The LM teachers' builder (same chat wrap and bos rule), made once.

        Only ``tokens()`` is used: the reader applies its own budget instead of the builder's limits.
        """
        if self._builder is None:
            self._builder = PromptBuilder.for_lm(self.lm, self.template)
        return self._builder


def answer_records(
    questions: Sequence[Question], retrieved: Sequence[Sequence[Passage]], answers: Sequence[str]
) -> list[dict[str, Any]]:
    """One error-analysis record per question: what was retrieved, what the reader said, how it scored.

    Args:
        questions: The evaluation questions.
        retrieved: Each question's retrieved passages, best first (the ones given to the reader).
        answers: The reader's answers, in question order.

    Returns:
        Records with ``qid``, ``question``, ``retrieved_ids``, ``answer``, ``gold_answers``, ``em`` and ``f1``
        (``None`` without a gold answer) and ``hit`` (a retrieved passage contains a gold answer, by
        :func:`~ragdistill.data.answers.has_answer`; counted over every retrieved passage, including
        any the prompt budget left out).

    Raises:
        ValueError: If the three lists differ in length.
    """
    if not len(questions) == len(retrieved) == len(answers):
        raise ValueError(f"{len(questions)} questions, {len(retrieved)} passage lists, {len(answers)} answers")
    records = []
    for question, passages, answer in zip(questions, retrieved, answers, strict=True):
        golds = list(question.answers)
        records.append(
            {
                "qid": question.id,
                "question": question.text,
                "retrieved_ids": [p.id for p in passages],
                "answer": answer,
                "gold_answers": golds,
                "em": exact_match(answer, golds) if golds else None,
                "f1": token_f1(answer, golds) if golds else None,
                "hit": any(has_answer(p.text, golds) for p in passages),
            }
        )
    return records


def write_answers(
    path: str | Path, questions: Sequence[Question], retrieved: Sequence[Sequence[Passage]], answers: Sequence[str]
) -> list[dict[str, Any]]:
    """Write :func:`answer_records` as JSON lines, atomically (a reader of ``path`` never sees half a file).

    Returns:
        The records written, one per question in question order.
    """
    records = answer_records(questions, retrieved, answers)
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    logger.info("Wrote %d reader answers to <%s>", len(records), path)
    return records


def _template(prompt: PromptTemplate | Mapping[str, str] | None) -> PromptTemplate:
    if isinstance(prompt, PromptTemplate):
        return prompt
    unknown = set(prompt or {}) - {f.name for f in dataclasses.fields(PromptTemplate)}
    if unknown:
        valid = sorted(f.name for f in dataclasses.fields(PromptTemplate))
        raise ValueError(f"reader.prompt has unknown keys {sorted(unknown)}; valid: {valid}")
    return dataclasses.replace(READER_PROMPT, **dict(prompt or {}))

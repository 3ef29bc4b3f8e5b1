"""Attention distillation teacher: how much the reader attends to each passage while producing the answer."""

from __future__ import annotations

import dataclasses
import logging
import random
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

import torch
from torch import Tensor
from transformers import PreTrainedModel

from ragdistill.data.ranking import RankedList
from ragdistill.data.schemas import Passage, Question, RetrievalData
from ragdistill.data.signal import TeacherSignal
from ragdistill.models.attention_capture import AttentionOptions
from ragdistill.models.lm import LanguageModel
from ragdistill.models.lm_forward import output_attention
from ragdistill.models.lm_inputs import LMExample, PromptTemplate
from ragdistill.teachers.attention_indicators import attention_indicators, prompt_marks, reader_indicators
from ragdistill.teachers.lm_teacher import LMTeacher, signals_from_scores

logger = logging.getLogger(__name__)

TINY = 1e-30
"""Floor before the log (``log_score``), so a passage the reader ignores entirely gets a very low finite score."""


def passage_scores(attention: Tensor, spans: list[tuple[int, int]], reduction: str, log: bool) -> Tensor:
    """``[K]`` passage scores from one prompt's per-token attention ``[T]`` and its passages' ``[start, end)`` spans.

    ``reduction`` (``mean`` | ``sum``) combines a passage's tokens; ``log`` takes the log of the result. A KL
    loss turns the scores into ``softmax(score / τ_t)``: with ``mean`` and no log that is the papers' target
    ``p ∝ exp(mean / τ_t)``; with ``sum`` and the log it is ``p ∝ (attention mass)^(1/τ_t)``.
    """
    reduce = torch.sum if reduction == "sum" else torch.mean
    values = torch.stack([reduce(attention[start:end]) for start, end in spans])
    return values.clamp_min(TINY).log() if log else values


@dataclass(frozen=True)
class _Prompt:
    """What the indicators need of one question's prompt: its question and its passages in prompt order."""

    question: Question
    passages: list[Passage]


class AttentionTeacher(LMTeacher):
    """Score each candidate by the reader's attention to it from the output tokens, with all K in context.

    Formula (default, the papers'): ``score(d) = mean_{t ∈ d} mean_{l ∈ L, h ∈ H, o ∈ O} α^{l,h}_{o,t} ·
    ‖v^{l,h}_t‖`` (post-softmax probability times the key token's value norm, averaged over the passage's
    tokens), emitted with no log, so a KL loss's target is ``p(d) ∝ exp(score(d) / τ_t)``. O = the positions
    producing the answer tokens (or only the first), L/H = the chosen layers and heads. Higher = the reader
    used the passage more. α·‖v‖ is small (α sums to 1 over the whole context), so this target needs a
    small τ_t to be anything but uniform: Atlas uses 0.01.

    Sources: FiD-KD (facebookresearch/FiD ``src/model.py`` ``get_crossattention_scores``: pre-softmax
    scores averaged over heads, layers and the passage's tokens; ``Retriever.kldivloss``: softmax at τ = 1);
    Atlas ADist (arXiv:2208.03299 §2.2: α·‖v‖ averaged over heads, layers and tokens, then a softmax;
    facebookresearch/atlas ``src/options.py``: ``temperature_gold`` 0.01; its code, ``normssum`` in
    ``src/fid.py``, divides each passage's sum by a fixed 256 tokens rather than by its own length, i.e.
    ``passage_reduction=sum`` without the log at τ_t = 2.56).

    Legacy form (``passage_reduction=sum``, ``log_score=true``): ``score(d) = log Σ_{t ∈ d} mean α·‖v‖``, so at
    τ_t = 1 the target is the reader's normalised attention mass ``p(d) ∝ Σ_{t ∈ d} α·‖v‖`` — a different
    distribution (long passages gain, no exponent), and the one every published figure of this project used.
    Any earlier post-softmax configuration is reproduced by naming its ``passage_reduction`` (the old default
    was ``sum``) and adding ``log_score=true``. With ``pre_softmax``
    the mean (or sum) scaled score ``q·k/√d`` replaces ``α·‖v‖`` and no log is allowed.

    Shapes: one ``[K]`` float32 signal per question; memory per batch is ``[b, R, T]`` (R output rows),
    never a ``T×T`` attention map (see ``attention_capture``).

    Diagnostics: each signal carries arXiv:2402.11794's two indicators of whether the reader is good enough
    to teach, from the same attention (``attention_on_answer_tokens`` / ``answer_token_share`` and
    ``attention_on_question_tokens`` / ``question_token_share``; see ``attention_indicators``, which also
    holds the run-level check). Not with ``pre_softmax``, whose scores are not a distribution.

    Args:
        lm: The reader LM (decoder-only, or encoder-decoder whose decoder cross-attention is read).
        target: ``answer`` (the gold answer, teacher-forced; questions without one are dropped) or
            ``generated`` (the reader's own greedy answer with the K passages in context).
        pre_softmax: Read scaled scores instead of probabilities.
        value_norm: Weight probabilities by the value-vector norm (α·‖v‖: Atlas ADist, also used by
            arXiv:2402.11794).
        layers: Attention layers averaged (negative = from the end); ``None`` = all.
        heads: Heads averaged; ``None`` = all.
        first_token_only: Use only the position producing the first output token.
        passage_reduction: ``mean`` over the passage's tokens (the papers') or ``sum`` (its attention mass,
            which grows with its length).
        log_score: Take the log of the reduced attention (the legacy form with ``sum``: KL at τ_t = 1 then
            matches the normalised attention mass). Not with ``pre_softmax``.
        shuffle_passages: Put the K passages in a random order (seeded per question) instead of first-stage
            order, so the reader's position bias does not simply echo the first stage.
        seed: Seed of the shuffles.
        max_new_tokens: Answer length limit with ``target=generated``.
        **kwargs: Shared LM teacher options (:class:`LMTeacher`).

    References:
        Izacard & Grave, Distilling Knowledge from Reader to Retriever, arXiv:2012.04584 (FiD-KD).
        Izacard et al., Atlas, arXiv:2208.03299 (ADist, α·‖v‖). Li, Zhang & Zhang, Unveiling the Magic:
        Investigating Attention Distillation in Retrieval-augmented Generation, arXiv:2402.11794 (Atlas's
        attention distillation with a decoder-only Falcon-1B reader; a fine-tuned reader is what makes it
        work; the answer/question-token indicators).
    """

    default_prompt = PromptTemplate(
        instruction="Answer the question using the passages.\n", passage="[{index}] {text}\n"
    )

    def __init__(
        self,
        lm: LanguageModel,
        target: Literal["answer", "generated"] = "answer",
        pre_softmax: bool = False,
        value_norm: bool = True,
        layers: list[int] | None = None,
        heads: list[int] | None = None,
        first_token_only: bool = False,
        passage_reduction: Literal["mean", "sum"] = "mean",
        log_score: bool = False,
        shuffle_passages: bool = False,
        seed: int = 0,
        max_new_tokens: int = 16,
        **kwargs: Any,
    ) -> None:
        super().__init__(lm, **kwargs)
        if target not in ("answer", "generated"):
            raise ValueError(f"teacher.target must be 'answer' or 'generated', got {target!r}")
        if passage_reduction not in ("sum", "mean"):
            raise ValueError(f"teacher.passage_reduction must be 'mean' or 'sum', got {passage_reduction!r}")
        if log_score and pre_softmax:
            raise ValueError(
                "teacher.log_score takes the log of attention probabilities; pre-softmax scores are logits: "
                "set log_score=false or pre_softmax=false"
            )
        self.options = AttentionOptions(
            pre_softmax, value_norm, tuple(layers) if layers is not None else None, tuple(heads) if heads else None
        )
        self.target = target
        self.first_token_only = first_token_only
        self.passage_reduction = passage_reduction
        self.log_score = log_score
        self.shuffle_passages = shuffle_passages
        self.seed = seed
        self.max_new_tokens = max_new_tokens

    def _order(self, question: Question, size: int) -> list[int]:
        """Prompt order of the candidates: ``order[j]`` = candidate index at prompt position j."""
        order = list(range(size))
        if self.shuffle_passages:
            random.Random(f"{self.seed}:{question.id}").shuffle(order)
        return order

    def _step(
        self, model: PreTrainedModel, batch: dict[str, Any], prompts: dict[int, _Prompt] | None = None
    ) -> list[tuple[Tensor, dict[str, float]]]:
        """Each example's ``[K]`` passage scores (prompt order) and, given its ``prompts``, its indicators."""
        attention = output_attention(model, batch, self.options, self.first_token_only)  # [b, T]
        per_example = []
        for row, example in enumerate(batch["examples"]):
            spans = example.passage_spans
            values = passage_scores(attention[row], spans, self.passage_reduction, self.log_score)  # [K], prompt order
            tokens = torch.cat([attention[row, start:end] for start, end in spans])
            indicators = self._indicators(example, tokens, prompts[example.key]) if prompts else {}
            per_example.append((values.detach().float().cpu(), indicators))
        return per_example

    def _indicators(self, example: LMExample, attention: Tensor, prompt: _Prompt) -> dict[str, float]:
        """arXiv:2402.11794's indicators of one prompt from its passage-token attention ``[N]``.

        ``{}`` when the passages' prompt tokens cannot be matched to their text (see ``prompt_marks``).
        """
        # the texts PromptBuilder.build tokenized for the passages, at their prompt positions
        texts = [
            self.template.passage.format(index=index, title=passage.title, text=passage.text)
            for index, passage in enumerate(prompt.passages, start=1)
        ]
        token_ids = [example.context_ids[start:end] for start, end in example.passage_spans]
        question = prompt.question
        marks = prompt_marks(self.lm.tokenizer, texts, token_ids, question.answers, question.text)
        return attention_indicators(attention.detach().float().cpu().numpy(), marks) if marks is not None else {}

    def _generate(self, model: PreTrainedModel, batch: dict[str, Any]) -> list[list[int]]:
        """Greedy answers for a batch of contexts (left-padded for a decoder-only LM)."""
        pad = self.lm.tokenizer.pad_token_id
        seq2seq = bool(getattr(model.config, "is_encoder_decoder", False))
        contexts = [ex.context_ids for ex in batch["examples"]]
        width = max(len(c) for c in contexts)
        # an encoder reads right-padded input; a decoder-only LM continues from its last token: pad on the left
        rows = [c + [pad] * (width - len(c)) if seq2seq else [pad] * (width - len(c)) + c for c in contexts]
        mask = [
            [1] * len(c) + [0] * (width - len(c)) if seq2seq else [0] * (width - len(c)) + [1] * len(c)
            for c in contexts
        ]
        device = batch["input_ids"].device
        out = model.generate(  # type: ignore[operator]
            input_ids=torch.tensor(rows, device=device),
            attention_mask=torch.tensor(mask, device=device),
            max_new_tokens=self.max_new_tokens,
            do_sample=False,
            pad_token_id=pad,
        )
        new_tokens = out[:, 1:] if seq2seq else out[:, width:]  # seq2seq output starts with the decoder start token
        stop = {self.lm.tokenizer.eos_token_id, pad}
        answers = []
        for row in new_tokens.tolist():
            cut = next((i for i, token in enumerate(row) if token in stop), len(row))
            answers.append(row[:cut])
        return answers

    @torch.no_grad()
    def score(
        self, questions: list[Question], candidates: dict[str, RankedList], data: RetrievalData
    ) -> list[TeacherSignal]:
        """One signal per question: the reader's attention to each of its K candidates."""
        usable, pools = self.judgeable(questions, candidates, needs_answers=self.target == "answer")
        builder = self.builder()
        orders = [self._order(q, len(pool)) for q, pool in zip(usable, pools, strict=True)]
        examples: list[LMExample] = []
        prompts: dict[int, _Prompt] = {}
        for qi, (question, pool, order) in enumerate(zip(usable, pools, orders, strict=True)):
            passages = [data.passage(pool[ci]) for ci in order]
            prompts[qi] = _Prompt(question, passages)
            # with target=generated this placeholder is replaced by the reader's own answer before scoring
            target = question.answers[0] if question.answers else "?"
            examples.append(builder.build(qi, passages, question.text, target))
        if self.target == "generated":
            examples = self._with_generated_targets(examples)
        # pre-softmax scores are not a distribution over tokens: no share of them means anything
        step = self._step if self.options.pre_softmax else partial(self._step, prompts=prompts)
        run = self.run(examples, step, f"Attention ({self.target})")
        scores: dict[tuple[int, int], float] = {}
        indicators: dict[str, dict[str, float]] = {}
        for qi, (values, diagnostics) in run.results.items():
            indicators[usable[qi].id] = diagnostics
            for position, ci in enumerate(orders[qi]):
                scores[(qi, ci)] = float(values[position])
        signals = signals_from_scores(usable, pools, scores)
        for signal in signals:
            signal.diagnostics = indicators.get(signal.qid, {})
        self._log_indicator_coverage(signals)
        logger.info("Attention teacher: %d signals over K=%d candidates", len(signals), self.num_candidates)
        return signals

    def quality(self, signals: list[TeacherSignal]) -> dict[str, float]:
        """The run's answer and question attention lifts (arXiv:2402.11794's indicators); warns on a weak reader."""
        return reader_indicators(signals)

    def _log_indicator_coverage(self, signals: list[TeacherSignal]) -> None:
        """Say when questions carry no indicator, so a missing ``teacher/attention_on_*`` figure is explained."""
        if self.options.pre_softmax:
            logger.info("Attention teacher: no answer/question-token indicators for pre-softmax scores")
            return
        bare = sum(not s.diagnostics for s in signals)
        if bare:
            logger.info(
                "Attention teacher: %d of %d questions have no answer/question-token indicator "
                "(no answer occurrence and no question word in their passages, or a tokenizer without offsets)",
                bare,
                len(signals),
            )

    def _with_generated_targets(self, examples: list[LMExample]) -> list[LMExample]:
        """Replace each gold target by the reader's own greedy answer; drop (and count) empty answers."""
        generated = self.run(examples, self._generate, "Generating reader answers").results
        kept = [dataclasses.replace(ex, target_ids=generated[ex.key]) for ex in examples if generated[ex.key]]
        if len(kept) < len(examples):
            logger.warning(
                "Attention teacher dropped %d questions whose generated answer was empty", len(examples) - len(kept)
            )
        return kept

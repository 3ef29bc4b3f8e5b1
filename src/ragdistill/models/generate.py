"""Batched generation with an LM: the RAG reader's answers, a listwise LLM ranker's orders, G2R's units.

Prompts are token ids; batches are formed from length-sorted prompts under a token budget (as the LM
teachers do) and left-padded, so a batched continuation equals the one generated alone: a decoder-only LM
continues from each row's last position, and right padding would put pad tokens between a short prompt and
its continuation. The pass runs as Lightning ``predict`` (device and bf16 autocast chosen by Lightning).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from ragdistill.models.lm import LanguageModel
from ragdistill.models.lm_predict_module import LMPredictor, LMRunSettings, PassageRate, bucket_batches
from ragdistill.runtime.predict import run_predict


def left_pad(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[Tensor, Tensor]:
    """Pad token rows on the left, so every row's last real token sits in the last column.

    Returns:
        ``input_ids`` ``[B, T]`` and ``attention_mask`` ``[B, T]`` (1 on real tokens).
    """
    width = max((len(r) for r in rows), default=0)
    input_ids = torch.tensor([[pad_id] * (width - len(r)) + list(r) for r in rows], dtype=torch.long)
    attention_mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], dtype=torch.long)
    return input_ids, attention_mask


class NewlineStop:
    """Stop a row once its generation, leading whitespace skipped, holds a newline (a ``StoppingCriteria``).

    Decoding the few generated tokens each step costs microseconds next to a forward pass, and finds a
    newline inside any token (``.`` and a newline merged into one), which a list of stop ids would have to
    enumerate over the whole vocabulary.
    """

    def __init__(self, tokenizer: Any, start: int) -> None:
        self.tokenizer = tokenizer
        self.start = start

    def __call__(self, input_ids: Tensor, scores: Any, **kwargs: Any) -> Tensor:
        """``[B]`` True for the rows whose generation so far holds a newline."""
        texts = self.tokenizer.batch_decode(input_ids[:, self.start :], skip_special_tokens=True)
        return torch.tensor(["\n" in t.lstrip() for t in texts], dtype=torch.bool, device=input_ids.device)


def eos_ids(model: nn.Module, tokenizer: Any) -> set[int]:
    """The model's and the tokenizer's end-of-sequence ids (chat models often end turns with their own)."""
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids = set(configured if isinstance(configured, list) else [configured])
    ids.add(tokenizer.eos_token_id)
    ids.discard(None)
    return ids


@dataclass(frozen=True)
class Sampling:
    """Nucleus sampling instead of greedy decoding (several different generations from one prompt).

    Attributes:
        temperature: Softmax temperature (> 0).
        top_p: Nucleus mass kept (0 < top_p <= 1).
        seed: Seeds torch's generator before the pass, so the same call samples the same texts.
    """

    temperature: float = 0.7
    top_p: float = 0.95
    seed: int = 0

    def __post_init__(self) -> None:
        if self.temperature <= 0 or not 0 < self.top_p <= 1:
            raise ValueError(f"sampling needs temperature > 0 and 0 < top_p <= 1, got {self.temperature}, {self.top_p}")


def generate_texts(
    lm: LanguageModel,
    prompts: Sequence[Sequence[int]],
    max_new_tokens: int,
    settings: LMRunSettings,
    *,
    sampling: Sampling | None = None,
    stop_at_newline: bool = False,
    units: Sequence[int] | None = None,
    description: str = "Generating",
) -> list[str]:
    """Continuations of ``prompts`` (token ids), greedy or sampled, decoded without special tokens, in prompt order.

    Args:
        lm: The LM (decoder-only, or encoder-decoder: then the prompt is the encoder input).
        prompts: Token ids per prompt (bos and chat template already applied).
        max_new_tokens: Tokens generated at most per prompt.
        settings: Batch token budget, batch size, accelerator, precision.
        sampling: Sample with these settings; ``None`` = greedy (deterministic, batch-independent).
        stop_at_newline: Stop a row at its first newline after leading whitespace (short answers).
        units: What the progress bar counts per prompt (e.g. passages read); default one per prompt.
        description: The progress bar's label.

    Returns:
        Each continuation up to its first end-of-sequence token.

    Raises:
        ValueError: If the tokenizer has no pad (or eos) token to pad batches with.
    """
    if not prompts:
        return []
    tokenizer = lm.tokenizer
    pad_id = tokenizer.pad_token_id
    if pad_id is None:
        raise ValueError(f"the tokenizer of {lm.name} has neither a pad nor an eos token; batches need one")
    counts = list(units) if units is not None else [1] * len(prompts)
    lengths = [len(p) + max_new_tokens for p in prompts]
    batches = bucket_batches(lengths, settings.max_batch_tokens, settings.max_batch_size)

    decoding: dict[str, Any] = {"do_sample": False}
    if sampling is not None:
        decoding = {"do_sample": True, "temperature": sampling.temperature, "top_p": sampling.top_p, "top_k": 0}
        torch.manual_seed(sampling.seed)

    def collate(rows: list[int]) -> dict[str, Any]:
        input_ids, attention_mask = left_pad([prompts[i] for i in rows], pad_id)
        return {
            "keys": rows,
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "n_passages": sum(counts[i] for i in rows),
        }

    def step(model: nn.Module, batch: dict[str, Any]) -> list[str]:
        from transformers import StoppingCriteriaList

        seq2seq = bool(getattr(model.config, "is_encoder_decoder", False))
        start = 1 if seq2seq else batch["input_ids"].shape[1]  # the decoder start token, or the prompt
        stops = eos_ids(model, tokenizer)
        output = model.generate(  # type: ignore[operator]
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            num_beams=1,
            **decoding,
            max_new_tokens=max_new_tokens,
            pad_token_id=pad_id,
            eos_token_id=sorted(stops) or None,
            stopping_criteria=StoppingCriteriaList([NewlineStop(tokenizer, start)] if stop_at_newline else []),
        )
        texts = []
        for row in output[:, start:].tolist():
            ids = next((row[:i] for i, token in enumerate(row) if token in stops), row)  # eos, then padding
            texts.append(tokenizer.decode(ids, skip_special_tokens=True))
        return texts

    # batch_size=None: each item is one precomputed index batch, collated by collate_fn
    loader: DataLoader[list[int]] = DataLoader(batches, batch_size=None, collate_fn=collate)  # type: ignore[arg-type]
    predictor = LMPredictor(lm.model, step)
    predictor.train(lm.model.training)  # run_predict restores the wrapper's mode, and with it the LM's
    rate = PassageRate(description, sum(counts))
    outputs = run_predict(predictor, loader, settings.accelerator, settings.precision, [rate])
    texts: dict[int, str] = {}
    for keys, values in outputs:
        texts.update(zip(keys, values, strict=True))
    return [texts[i] for i in range(len(prompts))]

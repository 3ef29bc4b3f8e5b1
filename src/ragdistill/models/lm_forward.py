"""What LM teachers read from one forward pass over a batch from :func:`collate_examples`.

Two readings: the log-probability of each target token (likelihood teachers) and the attention from the
output tokens to every context token (attention teachers). Both work for decoder-only and encoder-decoder
LMs; both take the batch layout made in ``lm_runner``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from transformers import PreTrainedModel

from ragdistill.models.attention_capture import AttentionOptions, capture_attention


def _softcap(model: PreTrainedModel, logits: Tensor) -> Tensor:
    """Apply the final-logit soft cap some LMs (Gemma) use, as their own forward would."""
    cap = getattr(model.config, "final_logit_softcapping", None)
    return torch.tanh(logits / cap) * cap if cap else logits


def _forward(model: PreTrainedModel, batch: dict[str, Any]) -> Any:
    """The one pass both readings make.

    A seq2seq LM runs teacher-forced on the targets (its output has decoder ``logits``); a decoder-only LM
    runs its body without the output head (its output has ``last_hidden_state``).
    """
    if getattr(model.config, "is_encoder_decoder", False):
        labels = batch["target_ids"].masked_fill(~batch["target_mask"], -100)
        return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=labels)
    return model.base_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])


def _target_logits(model: PreTrainedModel, batch: dict[str, Any]) -> Tensor:
    """``[b, L, V]`` float32 logits at the ``L`` positions that predict the target tokens.

    Decoder-only LMs: the output head runs only at those positions, not over the whole sequence (the head is
    a 49k-wide matmul per position — most of the cost of a full-logits pass on short models).
    """
    output = _forward(model, batch)
    if getattr(model.config, "is_encoder_decoder", False):
        return output.logits.float()  # [b, L, V]
    states = output.last_hidden_state  # [b, T, D]
    positions = batch["target_positions"]  # [b, L]
    picked = states.gather(1, positions[:, :, None].expand(-1, -1, states.shape[-1]))  # [b, L, D]
    return _softcap(model, model.get_output_embeddings()(picked)).float()


def target_log_probs(model: PreTrainedModel, batch: dict[str, Any]) -> Tensor:
    """``[b, L]`` float32 log p(target token i | context, earlier target tokens); 0 at padding."""
    targets, target_mask = batch["target_ids"], batch["target_mask"]  # [b, L]
    log_probs = torch.log_softmax(_target_logits(model, batch), dim=-1).gather(-1, targets[:, :, None])[..., 0]
    return log_probs.masked_fill(~target_mask, 0.0)


def first_token_log_odds(model: PreTrainedModel, batch: dict[str, Any], against: int) -> Tensor:
    """``[b]`` float32 ``log p(first target token) − log p(against)`` at the first target position.

    The yes/no relevance reading: with "Yes" as the target and "No" as ``against``, the LM's log-odds that
    the passage answers the question (HELM's relevance prompt; monoT5's true/false softmax). Only the first
    target position is read, so a one-token target costs one head row per sequence.
    """
    log_probs = torch.log_softmax(_target_logits(model, batch)[:, 0], dim=-1)  # [b, V]
    first = batch["target_ids"][:, :1]
    return log_probs.gather(-1, first)[:, 0] - log_probs[:, against]


def output_attention(
    model: PreTrainedModel, batch: dict[str, Any], options: AttentionOptions, first_token_only: bool
) -> Tensor:
    """``[b, T]`` attention from the output tokens to each context token, averaged over watched layers and heads.

    The output rows are the positions that predict the target tokens (decoder-only) or the decoder positions
    (encoder-decoder, read from the cross-attention); they are averaged, or only the first is used.
    """
    rows, row_mask = batch["target_positions"], batch["target_mask"]  # [b, R]
    if first_token_only:
        rows, row_mask = rows[:, :1], row_mask[:, :1]
    with capture_attention(model, options, rows, batch["attention_mask"]) as recorder:
        _forward(model, batch)
    if recorder.total is None:
        raise RuntimeError(
            f"no attention was recorded from {type(model).__name__}: "
            "does it dispatch attention through transformers' ALL_ATTENTION_FUNCTIONS?"
        )
    per_row = recorder.total / recorder.layers  # [b, R, T]
    weights = row_mask.float()[:, :, None]
    return (per_row * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1.0)  # [b, T]

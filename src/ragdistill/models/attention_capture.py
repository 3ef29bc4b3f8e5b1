"""Record a reader's attention from its output tokens only, without ever holding a full ``T×T`` attention map.

``output_attentions=True`` would keep every layer's ``[B, H, T, T]`` weights: with 20 passages of ~200
tokens that is 30 layers × 9 heads × 4,000² floats ≈ 17 GB. Instead the model runs under a registered
transformers attention function that computes the normal (SDPA) output and, for the attention modules
being watched, re-computes the scores of the few query rows that produce the output tokens:
``[B, H, R, T]`` with ``R`` ≈ the answer length. They are reduced over heads at once and summed over
layers, so memory stays at ``[B, R, T]``.

Works for any transformers model that dispatches through ``ALL_ATTENTION_FUNCTIONS`` (Llama, Qwen,
Gemma, Mistral, … and T5, whose decoder cross-attention is watched for encoder-decoder readers).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from transformers import AttentionInterface, PreTrainedModel
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

CAPTURE_IMPLEMENTATION = "ragdistill_capture"
"""Name under which the capturing attention function is registered with transformers."""

_SELF_ATTENTION = re.compile(r"(self_attn|self_attention)$")
_CROSS_ATTENTION = re.compile(r"(EncDecAttention|encoder_attn|crossattention|cross_attn)$")


@dataclass(frozen=True)
class AttentionOptions:
    """Which attention to read and how to turn it into one number per key token.

    Attributes:
        pre_softmax: Read the scaled scores ``q·k/√d`` instead of the softmax probabilities.
        value_norm: Weight each probability by the norm of the key token's value vector (α·‖v‖: Atlas ADist,
            arXiv:2208.03299; also Li, Zhang & Zhang, arXiv:2402.11794). Only meaningful after the softmax.
        layers: Indices of the watched attention layers (negative counts from the end); ``None`` = all.
        heads: Indices of the query heads averaged; ``None`` = all.
    """

    pre_softmax: bool = False
    value_norm: bool = True
    layers: tuple[int, ...] | None = None
    heads: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if self.pre_softmax and self.value_norm:
            raise ValueError(
                "value_norm weights attention probabilities by ‖v‖ and needs post-softmax scores; "
                "set pre_softmax=false or value_norm=false"
            )


class _Recorder:
    """The state of one capturing forward pass: which rows to read and the running sum over layers."""

    def __init__(
        self, modules: dict[int, int], options: AttentionOptions, rows: Tensor, key_mask: Tensor, causal: bool
    ) -> None:
        self.modules = modules  # id(module) -> watched layer number
        self.options = options
        self.rows = rows  # [B, R] query positions producing the output tokens
        self.key_mask = key_mask  # [B, T] True on real (non-padding) key tokens
        self.causal = causal
        self.total: Tensor | None = None  # [B, R, T] summed over watched layers
        self.layers = 0

    def record(self, module: nn.Module, query: Tensor, key: Tensor, value: Tensor, extra: dict[str, Any]) -> None:
        batch, heads, _, dim = query.shape
        rows = self.rows.to(query.device)
        picked = query.gather(2, rows[:, None, :, None].expand(batch, heads, rows.shape[1], dim))  # [B, H, R, d]
        repeat = heads // key.shape[1]  # grouped-query attention shares key/value heads
        key = key.repeat_interleave(repeat, dim=1)
        scaling = extra.get("scaling")
        scale = scaling if scaling is not None else dim**-0.5
        with torch.autocast(device_type=query.device.type, enabled=False):
            logits = picked.float() @ key.float().transpose(-1, -2) * scale  # [B, H, R, T]
            softcap = extra.get("softcap")
            if softcap is not None:
                logits = torch.tanh(logits / softcap) * softcap
            bias = extra.get("position_bias")
            if bias is not None:  # T5: relative position bias (zeros on cross-attention)
                bias = bias.float().expand(batch, heads, -1, -1)
                logits = logits + bias.gather(
                    2, rows[:, None, :, None].expand(batch, heads, rows.shape[1], bias.shape[-1])
                )
            visible = self._visible(module, rows, key.shape[2])  # [B, 1, R, T]
            if self.options.heads is not None:
                logits = logits[:, list(self.options.heads)]
            if self.options.pre_softmax:
                reduced = logits.masked_fill(~visible, 0.0).mean(dim=1)  # [B, R, T]
            else:
                probs = torch.softmax(logits.masked_fill(~visible, float("-inf")), dim=-1)
                if self.options.value_norm:
                    norms = value.float().norm(dim=-1).repeat_interleave(repeat, dim=1)  # [B, H, T]
                    if self.options.heads is not None:
                        norms = norms[:, list(self.options.heads)]
                    probs = probs * norms[:, :, None, :]
                reduced = probs.mean(dim=1)  # [B, R, T]
        self.total = reduced if self.total is None else self.total + reduced
        self.layers += 1

    def _visible(self, module: nn.Module, rows: Tensor, length: int) -> Tensor:
        """``[B, 1, R, T]``: which keys each output row may attend to (padding, causality, sliding window)."""
        positions = torch.arange(length, device=rows.device)
        visible = self.key_mask.to(rows.device)[:, None, :].expand(-1, rows.shape[1], -1)  # [B, R, T]
        if self.causal:
            visible = visible & (positions[None, None, :] <= rows[:, :, None])
            window = getattr(module, "sliding_window", None)
            if window:
                visible = visible & (positions[None, None, :] > rows[:, :, None] - window)
        return visible[:, None]


_ACTIVE: ContextVar[_Recorder | None] = ContextVar("ragdistill_attention_recorder", default=None)


def capturing_attention_forward(
    module: nn.Module,
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attention_mask: Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[Tensor, None]:
    """SDPA attention that also hands the watched modules' output-token rows to the active recorder."""
    recorder = _ACTIVE.get()
    if recorder is not None and id(module) in recorder.modules:
        recorder.record(
            module,
            query,
            key,
            value,
            {"scaling": scaling, "softcap": kwargs.get("softcap"), "position_bias": kwargs.get("position_bias")},
        )
    kwargs.pop("softcap", None)  # SDPA cannot apply a softcap; models that need one are read, not served, here
    return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs)


AttentionInterface.register(CAPTURE_IMPLEMENTATION, capturing_attention_forward)
AttentionMaskInterface.register(CAPTURE_IMPLEMENTATION, sdpa_mask)


def attention_modules(model: PreTrainedModel) -> list[nn.Module]:
    """The attention modules whose output-token rows are read, in depth order.

    Decoder-only LMs: every self-attention. Encoder-decoder LMs: the decoder's cross-attention (FiD-KD
    reads the decoder's attention over the encoder's passage tokens).
    """
    is_seq2seq = bool(getattr(model.config, "is_encoder_decoder", False))
    pattern = _CROSS_ATTENTION if is_seq2seq else _SELF_ATTENTION
    found = [m for name, m in model.named_modules() if pattern.search(name) and (not is_seq2seq or "decoder" in name)]
    if not found:
        kind = "decoder cross-attention" if is_seq2seq else "self-attention"
        raise ValueError(f"found no {kind} modules in {type(model).__name__} to read attention from")
    return found


def select_layers(count: int, layers: tuple[int, ...] | None) -> list[int]:
    """Resolve (possibly negative) layer indices against ``count`` layers; ``None`` = all."""
    if layers is None:
        return list(range(count))
    resolved = sorted({layer % count for layer in layers if -count <= layer < count})
    bad = [layer for layer in layers if not -count <= layer < count]
    if bad:
        raise ValueError(f"attention layers {bad} are out of range for a model with {count} attention layers")
    return resolved


@contextmanager
def capture_attention(
    model: PreTrainedModel, options: AttentionOptions, rows: Tensor, key_mask: Tensor
) -> Iterator[_Recorder]:
    """Run the body with ``model`` recording attention from query ``rows`` (``[B, R]``) over keys.

    The model's attention implementation is switched to the capturing one for the body and restored after,
    even on error. ``key_mask`` (``[B, T]``) marks real key tokens. The recorder's ``total`` holds the
    ``[B, R, T]`` scores summed over the watched layers (divide by ``layers`` for the mean).
    """
    modules = attention_modules(model)
    watched = select_layers(len(modules), options.layers)
    if options.heads is not None:
        heads = int(getattr(model.config, "num_attention_heads", 0) or getattr(model.config, "num_heads", 0))
        bad = [h for h in options.heads if not 0 <= h < heads]
        if bad:
            raise ValueError(f"attention heads {bad} are out of range for a model with {heads} heads")
    causal = not bool(getattr(model.config, "is_encoder_decoder", False))
    recorder = _Recorder({id(modules[i]): i for i in watched}, options, rows, key_mask, causal)
    previous = model.config._attn_implementation
    model.set_attn_implementation(CAPTURE_IMPLEMENTATION)
    token = _ACTIVE.set(recorder)
    try:
        yield recorder
    finally:
        _ACTIVE.reset(token)
        model.set_attn_implementation(previous)

"""Turn token states into one vector per text."""

from __future__ import annotations

from typing import Literal, get_args

import torch
from torch import Tensor

PoolingMode = Literal["mean", "cls"]
POOLING_MODES: tuple[str, ...] = get_args(PoolingMode)


def pool(hidden: Tensor, attention_mask: Tensor, mode: str = "mean", normalize: bool = True) -> Tensor:
    """Pool ``[B, T, D]`` token states into ``[B, D]`` text vectors (in float32, even under bf16 autocast).

    Args:
        hidden: ``[B, T, D]`` last-layer states.
        attention_mask: ``[B, T]``, 1 on real tokens.
        mode: ``mean`` over real tokens (sentence-transformers' MiniLM/MPNet default) or ``cls`` (first token).
        normalize: L2-normalise, so the dot product is the cosine.
    """
    if mode == "mean":
        weights = attention_mask.unsqueeze(-1).float()  # [B, T, 1]
        pooled = (hidden.float() * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)
    elif mode == "cls":
        pooled = hidden[:, 0].float()
    else:
        raise ValueError(f"unknown pooling {mode!r}; valid: {POOLING_MODES}")
    return torch.nn.functional.normalize(pooled, dim=-1) if normalize else pooled

"""PEAR's proxy task: copy a random token sequence from the context (arXiv 2409.19745, §3).

Each example is ``[bos] s s`` with ``s`` ``length`` random tokens: after the first ``s`` nothing but the
context tells the model what comes next, so the loss on the second half measures how well the model copies
from its context, the ability RAG answers need. Random tokens carry no meaning the model could use instead.

Two readings of it: :func:`copy_loss`, the cross-entropy over the whole second half (what the coefficients
are trained on), and :class:`FinalPosition`, the logits at the last position only, where the model must
produce the last token of ``s`` (what the paper scores heads by).
"""

from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100
"""Label of positions without a loss (transformers' convention)."""


@dataclass(frozen=True)
class CopyBatch:
    """Random sequences repeated twice, with labels on the second half only.

    Attributes:
        input_ids: ``[N, P + 2L]``: an optional ``P``-token prefix (the bos token), then ``s``, then ``s``.
        labels: ``[N, P + 2L]``: ``-100`` on the prefix and the first half, the token ids on the second half.
        length: ``L``, the length of one half.
    """

    input_ids: Tensor
    labels: Tensor
    length: int

    @property
    def targets(self) -> Tensor:
        """``[N, L]``: the second half, the tokens the loss asks for."""
        return self.labels[:, -self.length :]

    def to(self, device: torch.device | str) -> CopyBatch:
        """The batch on ``device``."""
        return CopyBatch(self.input_ids.to(device), self.labels.to(device), self.length)


def copy_task(vocab: int | Any, n_sequences: int, length: int, seed: int, bos_token_id: int | None = None) -> CopyBatch:
    """Draw ``n_sequences`` random sequences of ``length`` tokens and repeat each once.

    Args:
        vocab: A vocabulary size (ids ``0 … vocab-1``), or a tokenizer: its base vocabulary without its special
            tokens, and its bos token as the prefix (position 0 is where models park idle attention; a random
            token there would make the task unlike any real prompt).
        n_sequences: Examples ``N``.
        length: Tokens per half ``L``.
        seed: Seeds a private generator: the same arguments give the same batch, whatever else drew numbers.
        bos_token_id: Prefix token for an integer ``vocab`` (``None``: no prefix).

    Returns:
        The batch, on the CPU.

    Raises:
        ValueError: For non-positive sizes or a vocabulary without ordinary tokens.
    """
    if n_sequences < 1 or length < 2:
        raise ValueError(f"the copy task needs n_sequences >= 1 and length >= 2, got {n_sequences} and {length}")
    if isinstance(vocab, int):
        allowed = torch.arange(vocab)
    else:
        special = set(getattr(vocab, "all_special_ids", []))
        allowed = torch.tensor([i for i in range(vocab.vocab_size) if i not in special], dtype=torch.long)
        bos_token_id = getattr(vocab, "bos_token_id", None)
    if len(allowed) < 2:
        raise ValueError(f"the copy task needs at least 2 ordinary token ids, the vocabulary has {len(allowed)}")
    generator = torch.Generator().manual_seed(seed)
    half = allowed[torch.randint(len(allowed), (n_sequences, length), generator=generator)]  # [N, L]
    prefix = torch.full((n_sequences, 0 if bos_token_id is None else 1), bos_token_id or 0, dtype=torch.long)
    input_ids = torch.cat([prefix, half, half], dim=1)  # [N, P + 2L]
    labels = input_ids.clone()
    labels[:, :-length] = IGNORE_INDEX
    return CopyBatch(input_ids, labels, length)


def copy_logits(model: nn.Module, batch: CopyBatch) -> Tensor:
    """``[N, L, V]``: the logits that predict the second half's tokens.

    Only the last ``L + 1`` positions go through the LM head (``logits_to_keep``): the vocabulary projection
    of the other positions would be thrown away.
    """
    batch = batch.to(next(model.parameters()).device)
    output = model(input_ids=batch.input_ids, logits_to_keep=batch.length + 1, use_cache=False)
    return output.logits[:, :-1]  # position t predicts token t + 1


def copy_loss(model: nn.Module, batch: CopyBatch) -> Tensor:
    """Mean cross-entropy over the second half's tokens (scalar, differentiable); equals transformers' ``loss``."""
    logits = copy_logits(model, batch)  # [N, L, V]
    return F.cross_entropy(logits.flatten(0, 1).float(), batch.targets.to(logits.device).flatten())


@torch.no_grad()
def copy_scores(model: nn.Module, batch: CopyBatch) -> tuple[float, float]:
    """``(loss, accuracy)`` from one pass: accuracy = share of second-half tokens that are the argmax."""
    logits = copy_logits(model, batch)  # [N, L, V]
    targets = batch.targets.to(logits.device)
    loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())
    return float(loss), float((logits.argmax(dim=-1) == targets).float().mean())


def copy_accuracy(model: nn.Module, batch: CopyBatch) -> float:
    """Share of second-half tokens predicted exactly (greedy next-token argmax)."""
    return copy_scores(model, batch)[1]


def centred_target_logits(logits: Tensor, targets: Tensor) -> Tensor:
    """``[N]``: each row's target logit minus the row's mean logit, ``z_n[y_n] − (1/V) Σ_v z_n[v]``.

    A softmax ignores a shift shared by all logits, and an ablation can cause one; centring removes it (the
    authors' code reads the target logit this way, its ``iw`` metric).

    Args:
        logits: ``[N, V]``.
        targets: ``[N]`` token ids.
    """
    logits = logits.float()
    return logits.gather(1, targets.to(logits.device)[:, None])[:, 0] - logits.mean(dim=-1)


class FinalPosition:
    """The LM's logits at a copy batch's final position: the one that must produce the last token of ``s``.

    In ``[bos] s s`` (``P + 2L`` tokens) that is position ``P + 2L − 2``; its target is ``s_{L-1}``, copied from
    the end of the first half (the authors' ``end`` position). Every ablation PEAR scores changes that
    position only, so the ``P + 2L − 2`` tokens before it run once with ``use_cache`` and each call runs the
    last input token alone against their cached keys and values, then crops the cache back. The cached logits
    are checked against a full pass once; a model whose cache disagrees or has none gets full passes.

    Args:
        model: A transformers causal LM.
        batch: The copy task.
        use_cache: Try the cache (``False``: full passes, e.g. for a reference).
    """

    def __init__(self, model: nn.Module, batch: CopyBatch, use_cache: bool = True) -> None:
        self.model = model
        ids = batch.input_ids.to(next(model.parameters()).device)
        self.inputs = ids[:, :-1]  # [N, P + 2L - 1]: the last column is the final position
        self.targets = ids[:, -1]  # [N]: s_{L-1}
        self.argument = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
        self.cache: Any = None
        if use_cache:
            self.cache = self._prefix_cache()

    def logits(self) -> Tensor:
        """``[N, V]``: the logits at the final position (in the hooks active now)."""
        if self.cache is None:
            return self.model(input_ids=self.inputs, logits_to_keep=1, use_cache=False).logits[:, -1]
        before = self.cache.get_seq_length()
        try:
            output = self.model(input_ids=self.inputs[:, -1:], use_cache=True, **{self.argument: self.cache})
        finally:
            added = self.cache.get_seq_length() - before
            if added > 0:
                self.cache.crop(-added)
        return output.logits[:, -1]

    def target_logit(self) -> float:
        """The centred target logit at the final position, averaged over the batch (:func:`centred_target_logits`)."""
        return float(centred_target_logits(self.logits(), self.targets).mean())

    def _prefix_cache(self) -> Any:
        """The keys and values of every position before the final one, or ``None`` where a cache does not work."""
        output = self.model(input_ids=self.inputs[:, :-1], logits_to_keep=1, use_cache=True)
        cache = getattr(output, "cache", None)
        cache = getattr(output, "past_key_values", None) if cache is None else cache
        if cache is None or not hasattr(cache, "crop") or not hasattr(cache, "get_seq_length"):
            return None
        self.cache = cache
        full = self.model(input_ids=self.inputs, logits_to_keep=1, use_cache=False).logits[:, -1]
        cached = self.logits()
        if not torch.allclose(cached.float(), full.float(), rtol=1e-3, atol=1e-3):
            logger.warning(
                "%s: cached final-position logits differ from a full pass; scoring with full passes",
                type(self.model).__name__,
            )
            return None
        return cache

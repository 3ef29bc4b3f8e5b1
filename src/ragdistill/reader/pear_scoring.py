"""PEAR's two searches: which heads suppress copying (mean ablation), and how much to turn each down.

Both run on the copy task of :mod:`~ragdistill.reader.pear_copy` with the LM frozen; both go through the
hooks of :mod:`~ragdistill.reader.pear_heads` and leave none behind (arXiv 2409.19745, §3.1–3.2).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from ragdistill.reader.pear_copy import CopyBatch, copy_loss
from ragdistill.reader.pear_heads import (
    HeadId,
    HeadLayout,
    head_layout,
    mean_ablated,
    record_layers,
    scaled_heads,
    skip_layers,
)
from ragdistill.utils.progress import progress_bar

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class HeadScore:
    """One head's effect on copying: ``delta`` = copy loss with the head mean-ablated − clean (< 0: suppressing)."""

    layer: int
    head: int
    delta: float


@contextmanager
def _frozen(model: nn.Module) -> Iterator[None]:
    """Eval mode and no parameter gradients for the body; the model's own flags are restored after."""
    flags = [p.requires_grad for p in model.parameters()]
    training = model.training
    model.eval().requires_grad_(False)
    try:
        yield
    finally:
        for parameter, flag in zip(model.parameters(), flags, strict=True):
            parameter.requires_grad_(flag)
        model.train(training)


@torch.no_grad()
def score_heads(
    model: nn.Module, batch: CopyBatch, layout: HeadLayout | None = None, progress: bool = True
) -> list[HeadScore]:
    """Mean-ablate every head in turn and record the change of the copy loss; most suppressing first.

    One clean pass records each layer's mean ``o_proj`` input (the ablation values) and output; an ablation
    in layer ``l`` then recomputes layers ``l …`` only (:func:`~ragdistill.reader.pear_heads.skip_layers`).

    Args:
        model: The frozen decoder.
        batch: The copy task the loss is measured on.
        layout: From :func:`~ragdistill.reader.pear_heads.head_layout` (found when ``None``).
        progress: Show a progress bar over the L×H passes.

    Returns:
        One score per head, sorted by ``delta`` ascending (Δ < 0: ablating it helps copying).
    """
    layout = layout or head_layout(model)
    scores: list[HeadScore] = []
    bar = progress_bar()
    bar.disable = not progress
    with _frozen(model), bar:
        with record_layers(layout) as record:
            clean = float(copy_loss(model, batch))
        task = bar.add_task("PEAR head scoring", total=layout.num_layers * layout.num_heads, rate="")
        for layer in range(layout.num_layers):
            with skip_layers(layout, record, layer):
                for head in range(layout.num_heads):
                    with mean_ablated(layout, layer, head, record.means[layer]):
                        scores.append(HeadScore(layer, head, float(copy_loss(model, batch)) - clean))
                    bar.update(task, advance=1, rate=f"L{layer}H{head} Δ={scores[-1].delta:+.3f}")
    return sorted(scores, key=lambda s: s.delta)


def select_heads(scores: Sequence[HeadScore], n_heads: int) -> list[HeadScore]:
    """The ``n_heads`` most suppressing heads (Δ < 0, most negative first); fewer when fewer suppress."""
    picked = sorted((s for s in scores if s.delta < 0), key=lambda s: s.delta)[:n_heads]
    if len(picked) < n_heads:
        logger.warning(
            "Only %d heads suppress copying (Δ loss < 0); PEAR re-weights those, not %d", len(picked), n_heads
        )
    return picked


def learn_coefficients(
    model: nn.Module, batch: CopyBatch, heads: Sequence[HeadId], steps: int, lr: float, layout: HeadLayout | None = None
) -> dict[HeadId, float]:
    """Learn one scalar per head (init 1) that minimises the copy loss, with every LM parameter frozen.

    Layers before the shallowest selected head see no change, so they run once (recorded) instead of
    every step. The model's ``requires_grad`` flags and train/eval mode are restored afterwards.

    Args:
        model: The decoder.
        batch: The copy task (full batch every step).
        heads: ``(layer, head)`` pairs to re-weight.
        steps: Adam steps.
        lr: Adam's learning rate.
        layout: From :func:`~ragdistill.reader.pear_heads.head_layout` (found when ``None``).

    Returns:
        ``(layer, head)`` → learned coefficient.
    """
    layout = layout or head_layout(model)
    if not heads:
        return {}
    layout.check(heads)
    coefficients = [nn.Parameter(torch.ones(())) for _ in heads]  # separate leaves: no views to go stale
    optimizer = torch.optim.Adam(coefficients, lr=lr)
    with _frozen(model):
        with torch.no_grad(), record_layers(layout) as record:
            copy_loss(model, batch)
        first = min(layer for layer, _ in heads)
        scaled = dict(zip(heads, coefficients, strict=True))
        with skip_layers(layout, record, first), scaled_heads(layout, scaled):
            for step in range(steps):
                optimizer.zero_grad()
                loss = copy_loss(model, batch)
                loss.backward()
                optimizer.step()
                if step in (0, steps - 1):
                    logger.info("PEAR step %d/%d: copy loss %.4f", step + 1, steps, loss.item())
    return {head: value.item() for head, value in zip(heads, coefficients, strict=True)}

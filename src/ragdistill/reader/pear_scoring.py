"""PEAR's two searches: which heads suppress copying (mean ablation), and how much to turn each down.

Both run on the copy task of :mod:`~ragdistill.reader.pear_copy` with the LM frozen; both go through the
hooks of :mod:`~ragdistill.reader.pear_heads` and leave none behind (arXiv 2409.19745, §3.1–3.2).

Head scores, two metrics (:data:`HEAD_METRICS`); either way ``score > 0`` means that removing the head helps
copying (a suppression head), and the score is averaged over the copy batches given (one per length):

* ``final_logit`` (the paper's): mean-ablate the head at the final position (its output there becomes its
  batch mean there) and take the relative change of the centred target logit ``ℓ`` (target logit minus the
  mean logit, averaged over the batch) at that position::

      score(l, h) = 1/|Λ| Σ_{L ∈ Λ} (ℓ_L^{ablated(l,h)} − ℓ_L^{clean}) / |ℓ_L^{clean}|

  over the sequence lengths ``Λ``. ``paths="direct"`` holds every other head at its clean output (the
  authors' path patching to the final residual stream: the change travels through the residual stream and
  the MLPs only); ``"total"`` lets later heads react.
* ``copy_loss`` (this project's first metric): mean-ablate the head at every position (its mean over batch
  and positions) and take the fall of the mean copy cross-entropy over the second half,
  ``score = CE^{clean} − CE^{ablated}``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from ragdistill.reader.pear_copy import CopyBatch, FinalPosition, copy_loss
from ragdistill.reader.pear_heads import (
    HeadId,
    HeadLayout,
    final_position_ablated,
    head_layout,
    mean_ablated,
    record_final_inputs,
    record_layers,
    scaled_heads,
    skip_layers,
)
from ragdistill.utils.progress import progress_bar

logger = logging.getLogger(__name__)

HeadMetric = Literal["final_logit", "copy_loss"]
ScorePaths = Literal["direct", "total"]
HEAD_METRICS: tuple[str, ...] = ("final_logit", "copy_loss")
SCORE_PATHS: tuple[str, ...] = ("direct", "total")

Step = Callable[[int, int, float], None]
"""Called after each head's pass with ``(layer, head, score on this batch)`` (progress)."""


@dataclass(frozen=True)
class HeadScore:
    """One head's effect on copying: ``score > 0`` when ablating it helps copying (a suppression head).

    ``final_logit``: the relative change of the final target logit, averaged over lengths; ``copy_loss``:
    the fall of the copy loss (formulas in the module docstring).
    """

    layer: int
    head: int
    score: float


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


def relative_change(ablated: float, clean: float) -> float:
    """``(ablated − clean) / |clean|``: > 0 when the ablation raised the value, whatever the sign of ``clean``.

    Raises:
        ValueError: When ``clean`` is 0 (no relative change exists).
    """
    if clean == 0:
        raise ValueError("the clean target logit is 0: its relative change is undefined")
    return (ablated - clean) / abs(clean)


@torch.no_grad()
def final_logit_scores(model: nn.Module, batch: CopyBatch, layout: HeadLayout, paths: ScorePaths, step: Step) -> Tensor:
    """``[layers, heads]``: each head's relative change of the final target logit on one batch (one length).

    One clean pass records every layer's projection input at the final position (the ablation means and, for
    ``direct``, the frozen outputs); each head then costs one pass over the last token (:class:`FinalPosition`).

    Args:
        model: The frozen decoder.
        batch: The copy task at one length.
        layout: From :func:`~ragdistill.reader.pear_heads.head_layout`.
        paths: ``direct`` (other heads frozen, the authors' path patching) or ``total``.
        step: Progress callback.
    """
    final = FinalPosition(model, batch)
    with record_final_inputs(layout) as clean_inputs:
        clean = final.target_logit()
    scores = torch.zeros(layout.num_layers, layout.num_heads)
    for layer in range(layout.num_layers):
        for head in range(layout.num_heads):
            with final_position_ablated(layout, layer, head, clean_inputs, freeze_others=paths == "direct"):
                scores[layer, head] = relative_change(final.target_logit(), clean)
            step(layer, head, float(scores[layer, head]))
    return scores


@torch.no_grad()
def copy_loss_scores(model: nn.Module, batch: CopyBatch, layout: HeadLayout, step: Step) -> Tensor:
    """``[layers, heads]``: each head's fall of the copy loss when mean-ablated at every position, on one batch.

    One clean pass records each layer's mean projection input (the ablation values) and output; an ablation
    in layer ``l`` then recomputes layers ``l …`` only (:func:`~ragdistill.reader.pear_heads.skip_layers`).
    """
    with record_layers(layout) as record:
        clean = float(copy_loss(model, batch))
    scores = torch.zeros(layout.num_layers, layout.num_heads)
    for layer in range(layout.num_layers):
        with skip_layers(layout, record, layer):
            for head in range(layout.num_heads):
                with mean_ablated(layout, layer, head, record.means[layer]):
                    scores[layer, head] = clean - float(copy_loss(model, batch))
                step(layer, head, float(scores[layer, head]))
    return scores


def length_scores(
    model: nn.Module, batch: CopyBatch, layout: HeadLayout, metric: HeadMetric, paths: ScorePaths, step: Step
) -> Tensor:
    """``[layers, heads]``: every head's score on one copy batch under ``metric``."""
    if metric == "final_logit":
        return final_logit_scores(model, batch, layout, paths, step)
    if metric == "copy_loss":
        return copy_loss_scores(model, batch, layout, step)
    raise ValueError(f"unknown PEAR head metric {metric!r}; known: {list(HEAD_METRICS)}")


def score_heads(
    model: nn.Module,
    batches: CopyBatch | Sequence[CopyBatch],
    layout: HeadLayout | None = None,
    progress: bool = True,
    metric: HeadMetric = "final_logit",
    paths: ScorePaths = "direct",
) -> list[HeadScore]:
    """Score every head on each batch, average over the batches; most suppressing first.

    Args:
        model: The frozen decoder.
        batches: Copy batches, typically one per sequence length (the paper averages over lengths).
        layout: From :func:`~ragdistill.reader.pear_heads.head_layout` (found when ``None``).
        progress: Show a progress bar over the ``batches × L × H`` passes.
        metric: ``final_logit`` (the paper's) or ``copy_loss`` (:data:`HEAD_METRICS`).
        paths: For ``final_logit``: ``direct`` (other heads frozen) or ``total``.

    Returns:
        One score per head (the mean over batches), sorted by ``score`` descending (> 0: ablating it helps).
    """
    batches = [batches] if isinstance(batches, CopyBatch) else list(batches)
    if not batches:
        raise ValueError("PEAR head scoring needs at least one copy batch")
    if metric not in HEAD_METRICS:
        raise ValueError(f"unknown PEAR head metric {metric!r}; known: {list(HEAD_METRICS)}")
    if paths not in SCORE_PATHS:
        raise ValueError(f"unknown PEAR score paths {paths!r}; known: {list(SCORE_PATHS)}")
    layout = layout or head_layout(model)
    bar = progress_bar()
    bar.disable = not progress
    with _frozen(model), bar:
        task = bar.add_task("PEAR head scoring", total=len(batches) * layout.num_layers * layout.num_heads, rate="")

        def step(layer: int, head: int, score: float) -> None:
            bar.update(task, advance=1, rate=f"L{layer}H{head} {score:+.3f}")

        per_batch = [length_scores(model, batch, layout, metric, paths, step) for batch in batches]
    mean = torch.stack(per_batch).mean(dim=0)  # [layers, heads]
    scores = [HeadScore(layer, head, float(mean[layer, head])) for layer, head in _all_heads(layout)]
    return sorted(scores, key=lambda s: -s.score)


def _all_heads(layout: HeadLayout) -> list[HeadId]:
    return [(layer, head) for layer in range(layout.num_layers) for head in range(layout.num_heads)]


def select_heads(scores: Sequence[HeadScore], n_heads: int) -> list[HeadScore]:
    """The ``n_heads`` most suppressing heads (score > 0, highest first); fewer when fewer suppress."""
    picked = sorted((s for s in scores if s.score > 0), key=lambda s: -s.score)[:n_heads]
    if len(picked) < n_heads:
        logger.warning(
            "Only %d heads suppress copying (score > 0); PEAR re-weights those, not %d", len(picked), n_heads
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

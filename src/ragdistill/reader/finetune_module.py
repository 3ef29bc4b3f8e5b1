"""The reader fine-tuning LightningModule: answer-only cross-entropy over left-padded prompt + answer sequences.

:func:`ragdistill.reader.finetune.finetune_reader` builds the examples, the Trainer and the cache around it.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ragdistill.models.generate import left_pad

IGNORE_INDEX = -100
"""Label of a token the loss skips (prompt and padding), as ``F.cross_entropy`` expects."""


@dataclass(frozen=True)
class ReaderExample:
    """One training sequence: prompt, answer and end token, labelled on the answer and end token only.

    Attributes:
        qid: The question's id.
        input_ids: ``prompt + answer + [end]``.
        labels: :data:`IGNORE_INDEX` on the prompt, the token ids on ``answer + [end]``.
    """

    qid: str
    input_ids: list[int]
    labels: list[int]

    @property
    def answer_start(self) -> int:
        """Index of the first labelled token."""
        return next(i for i, label in enumerate(self.labels) if label != IGNORE_INDEX)


def answer_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Mean cross-entropy of the labelled tokens, from the logits of a sequence's last positions.

    Formula: −1/N Σ_{t: labels_t ≠ −100} log softmax(logits_{t−1})[labels_t] (position t−1 predicts token t).

    Args:
        logits: The LM's logits at the last ``K`` positions (``K = T`` for all of them), float32 or bf16.
        labels: Token ids, :data:`IGNORE_INDEX` where no loss is taken.

    Shapes:
        logits ``[B, K, V]``, labels ``[B, T]`` with ``2 <= K <= T``; every labelled token at a position
        ``>= T − K + 1`` (predicted by a kept position).

    Returns:
        The scalar loss, float32.

    Raises:
        ValueError: For other shapes, or a labelled token the kept logits do not predict.
    """
    if logits.dim() != 3 or labels.dim() != 2 or logits.shape[0] != labels.shape[0]:
        raise ValueError(
            f"expected logits [B, K, V] and labels [B, T], got {tuple(logits.shape)}, {tuple(labels.shape)}"
        )
    keep, length = logits.shape[1], labels.shape[1]
    if not 2 <= keep <= length:
        raise ValueError(f"expected 2 <= K <= T, got K={keep} logits for T={length} labels")
    if (labels[:, : length - keep + 1] != IGNORE_INDEX).any():
        raise ValueError(f"labelled tokens lie before the last {keep - 1} positions the {keep} kept logits predict")
    predicted = logits[:, :-1].float()  # [B, K-1, V]: position t predicts token t+1
    targets = labels[:, length - keep + 1 :]  # [B, K-1]
    return F.cross_entropy(predicted.reshape(-1, predicted.shape[-1]), targets.reshape(-1), ignore_index=IGNORE_INDEX)


def collate_examples(examples: Sequence[ReaderExample], pad_id: int) -> dict[str, Tensor | int]:
    """Left-pad a batch so every answer ends in the last column; ``keep`` = logits positions the loss needs.

    Position ids count real tokens only (as ``generate`` derives them from the attention mask), so a padded
    row sees the positions it sees when answering.

    Returns:
        ``input_ids``, ``attention_mask``, ``position_ids``, ``labels`` ``[B, T]`` and ``keep`` (an int).
    """
    input_ids, attention_mask = left_pad([e.input_ids for e in examples], pad_id)
    labels, _ = left_pad([e.labels for e in examples], IGNORE_INDEX)
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    keep = max(len(e.labels) - e.answer_start for e in examples) + 1
    return {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "position_ids": position_ids,
        "labels": labels,
        "keep": min(keep, input_ids.shape[1]),
    }


class ReaderFinetuner(pl.LightningModule):
    """Train a causal LM on :class:`ReaderExample` batches with :func:`answer_loss` and AdamW.

    Only the logits the loss needs are computed (``logits_to_keep``, where the model takes it): the LM head
    over a 49k vocabulary costs ~20% of SmolLM2's forward pass per position.

    Args:
        model: The trainable LM (train mode, gradients on).
        lr: AdamW's learning rate.
        weight_decay: AdamW's weight decay.
    """

    def __init__(self, model: nn.Module, lr: float, weight_decay: float) -> None:
        super().__init__()
        self.model = model
        self.lr = lr
        self.weight_decay = weight_decay
        self.slice_logits = "logits_to_keep" in inspect.signature(model.forward).parameters
        self.epoch_losses: list[float] = []
        self._step_losses: list[float] = []

    def forward(self, batch: dict[str, Any]) -> Tensor:
        """The batch's mean answer loss."""
        extra = {"logits_to_keep": batch["keep"]} if self.slice_logits else {}
        logits = self.model(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            position_ids=batch["position_ids"],
            **extra,
        ).logits  # [B, K, V]
        return answer_loss(logits, batch["labels"])

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        """One step's loss, logged as ``train/loss``."""
        loss = self(batch)
        self.log("train/loss", loss, batch_size=batch["input_ids"].shape[0], prog_bar=True)
        self._step_losses.append(float(loss.detach()))
        return loss

    def on_train_epoch_end(self) -> None:
        """Keep the epoch's mean loss (the reader record reports them)."""
        self.epoch_losses.append(sum(self._step_losses) / max(len(self._step_losses), 1))
        self._step_losses = []

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """AdamW over the LM's parameters."""
        return torch.optim.AdamW(self.model.parameters(), lr=self.lr, weight_decay=self.weight_decay)

"""A cross-encoder ranker: reads question and passage together and returns one relevance score.

Intermediate Distillation (arXiv:2406.12169) puts one between a black-box LLM and the retriever: the LLM
gives only orders, which a cross-encoder can learn (ListMLE) from ~1,000 questions because it sees both
texts at once; its scores are then a dense, calibrated-enough distribution for the bi-encoder's KL loss.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor, nn
from transformers import AutoModel, AutoTokenizer, PreTrainedModel

from ragdistill.losses.base import ScoreLoss
from ragdistill.models.locate import resolve_model_path
from ragdistill.retriever.pooling import pool

logger = logging.getLogger(__name__)

HEAD_FILE = "score_head.pt"
"""The scoring head's weights, saved beside the backbone's own files."""


class CrossEncoderRanker(pl.LightningModule):
    """Score (question, passage) pairs with a transformer over both texts and a linear head.

    Args:
        path: Backbone: ``packaged:all-MiniLM-L6-v2``, a hub id, a local folder, or a folder saved by
            :meth:`save` (then the trained head is loaded too).
        max_length: Tokens of question + passage together (the passage is cut, never the question).
        loss: A ranking loss over ``[B, K]`` scores (ListMLE for LLM orders); needed only to train.
        lr: AdamW learning rate (the head, new, learns at 10×).
        cache_dir: Where packaged multi-part models are assembled.
        trust_remote_code: Run Python code shipped with a hub model (off: such a model is refused).

    Shapes:
        ``score`` takes B questions and B·K passages (K per question) and returns ``[B, K]``.
    """

    def __init__(
        self,
        path: str = "packaged:all-MiniLM-L6-v2",
        max_length: int = 320,
        loss: ScoreLoss | None = None,
        lr: float = 2e-5,
        cache_dir: str = ".cache/ragdistill",
        trust_remote_code: bool = False,
    ) -> None:
        super().__init__()
        resolved = resolve_model_path(path, cache_dir)
        self.tokenizer = AutoTokenizer.from_pretrained(resolved, trust_remote_code=trust_remote_code)
        self.encoder: PreTrainedModel = AutoModel.from_pretrained(resolved, trust_remote_code=trust_remote_code)
        self.head = nn.Linear(int(self.encoder.config.hidden_size), 1)
        head_file = Path(resolved) / HEAD_FILE
        if head_file.exists():
            self.head.load_state_dict(torch.load(head_file, weights_only=True))
        self.max_length = max_length
        self.loss = loss
        self.lr = lr
        self.train()

    def score(self, questions: Sequence[str], passages: Sequence[str]) -> Tensor:
        """``[B, K]`` float32 scores of ``passages`` (B·K, grouped per question) for ``questions`` (B)."""
        if not questions or len(passages) % len(questions):
            raise ValueError(f"{len(passages)} passages do not split into groups for {len(questions)} questions")
        per_question = len(passages) // len(questions)
        firsts = [q for q in questions for _ in range(per_question)]
        tokens = self.tokenizer(
            firsts,
            list(passages),
            padding=True,
            truncation="only_second",
            max_length=self.max_length,
            return_tensors="pt",
        ).to(self.device)
        hidden = self.encoder(**tokens).last_hidden_state  # [B·K, T, D]
        pooled = pool(hidden, tokens["attention_mask"], "mean", normalize=False)  # [B·K, D]
        return self.head(pooled).float().view(len(questions), per_question)

    def _step(self, batch: dict[str, Any], split: str) -> Tensor:
        if self.loss is None:
            raise RuntimeError("CrossEncoderRanker has no loss: build it with loss=... to train")
        scores = self.score(batch["queries"], batch["passages"])  # padding columns are masked out by the loss
        loss = self.loss(scores, batch["teacher_scores"], batch["group_mask"])
        self.log(f"ranker_{split}/loss", loss, batch_size=len(batch["queries"]), prog_bar=True)
        return loss

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        """ListMLE (or the configured loss) of the LLM's orders under this ranker's scores."""
        return self._step(batch, "train")

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        """The same loss on held-out questions."""
        return self._step(batch, "val")

    def predict_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> Tensor:
        """``[B, K]`` scores of a batch of groups (padding columns ``-inf``)."""
        scores = self.score(batch["queries"], batch["passages"])
        return scores.masked_fill(~batch["group_mask"], float("-inf")).cpu()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """AdamW; the freshly initialised head at 10× the backbone's rate, so it catches up in one epoch."""
        return torch.optim.AdamW(
            [
                {"params": self.encoder.parameters(), "lr": self.lr},
                {"params": self.head.parameters(), "lr": 10 * self.lr},
            ],
            weight_decay=0.01,
        )

    def save(self, folder: Path) -> None:
        """Write backbone, tokenizer and head into ``folder`` (loadable with ``CrossEncoderRanker(path=folder)``)."""
        folder.mkdir(parents=True, exist_ok=True)
        self.encoder.save_pretrained(folder)
        self.tokenizer.save_pretrained(folder)
        torch.save(self.head.state_dict(), folder / HEAD_FILE)

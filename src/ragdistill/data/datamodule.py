"""Turn teacher signals into shuffled batches of per-question candidate groups."""

from __future__ import annotations

import logging
import random
from typing import Any

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from ragdistill.data.schemas import Question, RetrievalData
from ragdistill.teachers.signal import TeacherSignal

logger = logging.getLogger(__name__)


def select_group(signal: TeacherSignal, group_size: int, rng: random.Random) -> list[int]:
    """Pick which of a signal's K candidates form its training group of at most ``group_size``.

    With positives (gold, AAR, G2R): one positive drawn at random first, then ``group_size - 1`` of the
    other candidates drawn at random (DPR/Tevatron sample hard negatives from the top of the pool, so
    each epoch sees different ones). Without positives (pure distillation): the first ``group_size``
    candidates the teacher has an opinion on, in first-stage order.
    """
    positive = signal.positive_mask
    if positive.any():
        first = rng.choice([i for i, p in enumerate(positive) if p])
        others = [i for i, p in enumerate(positive) if not p]
        return [first, *rng.sample(others, min(group_size - 1, len(others)))]
    judged = [i for i, s in enumerate(signal.scores) if s > float("-inf")]
    return judged[:group_size]


class SignalDataset(Dataset):
    """One item per teacher signal: the question text and its candidate group, padded to ``group_size``."""

    def __init__(self, signals: list[TeacherSignal], data: RetrievalData, group_size: int, seed: int) -> None:
        questions: dict[str, Question] = {q.id: q for q in data.train}
        unknown = [s.qid for s in signals if s.qid not in questions]
        if unknown:
            raise ValueError(f"teacher signals name {len(unknown)} unknown training questions, e.g. {unknown[:3]}")
        self.signals = signals
        self.questions = questions
        self.data = data
        self.group_size = group_size
        # one generator for the dataset: with num_workers=0 and a seeded sampler the draw order is fixed
        self.rng = random.Random(seed)

    def __len__(self) -> int:
        return len(self.signals)

    def __getitem__(self, index: int) -> dict[str, Any]:
        signal = self.signals[index]
        chosen = select_group(signal, self.group_size, self.rng)
        padding = self.group_size - len(chosen)
        pids = [signal.candidate_ids[i] for i in chosen]
        return {
            "qid": signal.qid,
            "query": self.questions[signal.qid].text,
            "pids": pids + [""] * padding,
            "passages": [self.data.passage(pid).text for pid in pids] + [""] * padding,
            "teacher_scores": [float(signal.scores[i]) for i in chosen] + [float("-inf")] * padding,
            "positive_mask": [bool(signal.positive_mask[i]) for i in chosen] + [False] * padding,
            "group_mask": [True] * len(chosen) + [False] * padding,
            "positive_ids": set(signal.positive_ids),
        }


def collate_groups(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack items into a batch: texts as lists, per-candidate fields as ``[B, G]`` tensors."""
    return {
        "qids": [it["qid"] for it in items],
        "queries": [it["query"] for it in items],
        "passages": [text for it in items for text in it["passages"]],  # B·G, row-major
        "pids": [it["pids"] for it in items],
        "positive_ids": [it["positive_ids"] for it in items],
        "teacher_scores": torch.tensor([it["teacher_scores"] for it in items], dtype=torch.float32),
        "positive_mask": torch.tensor([it["positive_mask"] for it in items], dtype=torch.bool),
        "group_mask": torch.tensor([it["group_mask"] for it in items], dtype=torch.bool),
    }


class DistillationDataModule(pl.LightningDataModule):
    """Serve teacher signals to the retriever; a fixed slice of them is held out for validation.

    Args:
        signals: One teacher signal per training question.
        data: The data set (for question and passage texts).
        batch_size: Questions per batch (each brings ``group_size`` passages).
        group_size: Passages per question: 1 positive + hard negatives, or the top distillation candidates.
        val_size: Signals held out (chosen at random with ``seed``) for ``val/loss`` and ``val/acc@1``.
        num_workers: DataLoader workers (0 keeps runs bit-reproducible on CPU).
        seed: Seed for the split, the shuffling and the negative sampling.
    """

    def __init__(
        self,
        signals: list[TeacherSignal],
        data: RetrievalData,
        batch_size: int = 16,
        group_size: int = 4,
        val_size: int = 64,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if not signals:
            raise ValueError("no teacher signals to train on (did the teacher drop every question?)")
        if group_size < 1 or batch_size < 1:
            raise ValueError(f"batch_size and group_size must be >= 1, got {batch_size} and {group_size}")
        order = list(range(len(signals)))
        random.Random(seed).shuffle(order)
        val_size = min(val_size, len(signals) // 5)  # never hold out more than a fifth
        held_out = set(order[:val_size])
        self.train_signals = [s for i, s in enumerate(signals) if i not in held_out]
        self.val_signals = [s for i, s in enumerate(signals) if i in held_out]
        self.data = data
        self.batch_size = batch_size
        self.group_size = group_size
        self.num_workers = num_workers
        self.seed = seed
        logger.info(
            "Data module: %d training / %d validation signals, batch %d × group %d",
            len(self.train_signals),
            len(self.val_signals),
            batch_size,
            group_size,
        )

    def train_dataloader(self) -> DataLoader:
        """Shuffled batches, same order for the same seed."""
        return DataLoader(
            SignalDataset(self.train_signals, self.data, self.group_size, self.seed),
            batch_size=self.batch_size,
            shuffle=True,
            generator=torch.Generator().manual_seed(self.seed),
            collate_fn=collate_groups,
            num_workers=self.num_workers,
            drop_last=len(self.train_signals) > self.batch_size,
        )

    def val_dataloader(self) -> DataLoader:
        """The held-out signals in a fixed order with fixed negatives."""
        return DataLoader(
            SignalDataset(self.val_signals, self.data, self.group_size, self.seed + 1),
            batch_size=self.batch_size,
            shuffle=False,
            collate_fn=collate_groups,
            num_workers=self.num_workers,
        )

"""Turn teacher signals into shuffled batches of per-question candidate groups."""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from ragdistill.data.schemas import Question, RetrievalData
from ragdistill.data.signal import NO_OPINION, TeacherSignal
from ragdistill.utils.constraints import NonNegativeInt, PositiveInt

logger = logging.getLogger(__name__)

CONTRASTIVE_GROUP_SIZE = 2
"""Passages per question for a single-positive loss when none is set: 1 positive + 1 hard negative, as DPR."""


def select_group(
    signal: TeacherSignal, group_size: int | None, rng: random.Random, positives_per_group: int | None = 1
) -> list[int]:
    """Pick which of a signal's K candidates form its training group of at most ``group_size`` (None = all K).

    With positives (gold, AAR, G2R): ``positives_per_group`` positives drawn at random first (None = all,
    for multi-positive losses), then negatives drawn at random to fill the group (DPR/Tevatron sample hard
    negatives from the top of the pool, so each epoch sees different ones); a group keeps room for at least
    one negative. Without positives (pure distillation): the first ``group_size`` candidates the teacher
    has an opinion on, in first-stage order.
    """
    group_size = group_size or len(signal.candidate_ids)
    positive = signal.positive_mask
    if positive.any():
        positives = [i for i, p in enumerate(positive) if p]
        take = len(positives) if positives_per_group is None else positives_per_group
        count = max(1, min(take, len(positives), group_size - 1))
        chosen = [rng.choice(positives)] if count == 1 else rng.sample(positives, count)
        others = [i for i, p in enumerate(positive) if not p]
        return [*chosen, *rng.sample(others, min(group_size - len(chosen), len(others)))]
    judged = [i for i, s in enumerate(signal.scores) if s > float("-inf")]
    return judged[:group_size]


class SignalDataset(Dataset):
    """One item per teacher signal: the question text and its candidate group.

    The group is drawn with a generator seeded by (seed, epoch, question id), so an item is the same
    whichever worker or order fetches it; :class:`EpochSampler` advances ``epoch`` for training, and
    validation stays at epoch 0 (fixed negatives, comparable ``val/loss`` across epochs).
    """

    def __init__(
        self,
        signals: list[TeacherSignal],
        data: RetrievalData,
        group_size: int | None,
        seed: int,
        positives_per_group: int | None = 1,
    ) -> None:
        questions: dict[str, Question] = {q.id: q for q in data.train}
        unknown = [s.qid for s in signals if s.qid not in questions]
        if unknown:
            raise ValueError(f"teacher signals name {len(unknown)} unknown training questions, e.g. {unknown[:3]}")
        self.signals = signals
        self.questions = questions
        self.data = data
        self.group_size = group_size
        self.positives_per_group = positives_per_group
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.signals)

    def __getitem__(self, index: int) -> dict[str, Any]:
        signal = self.signals[index]
        rng = random.Random(f"{self.seed}:{self.epoch}:{signal.qid}")
        chosen = select_group(signal, self.group_size, rng, self.positives_per_group)
        positive = signal.positive_mask
        pids = [signal.candidate_ids[i] for i in chosen]
        return {
            "qid": signal.qid,
            "query": self.questions[signal.qid].text,
            "pids": pids,
            "passages": [self.data.passage(pid).text for pid in pids],
            "teacher_scores": [float(signal.scores[i]) for i in chosen],
            "positive_mask": [bool(positive[i]) for i in chosen],
            "positive_ids": set(signal.positive_ids),
        }


class EpochSampler(DistributedSampler):
    """A seeded shuffle, dealt out over the ranks of a distributed run, that tells the dataset the epoch.

    Lightning calls ``set_epoch`` on a loader's sampler before every epoch, before workers copy the
    dataset, so each epoch gets a new, reproducible order and new negatives. On one process the order is
    a permutation seeded with ``seed + epoch`` (as a seeded ``RandomSampler``); under DDP each rank takes
    every ``num_replicas``-th index of that same permutation (padded to equal counts). Being a
    ``DistributedSampler``, it is kept by Lightning, whose own replacement would never advance the
    dataset's epoch (same negatives every epoch).

    Args:
        dataset: The training items.
        seed: Seed of the shuffle (the epoch is added).
        num_replicas: Ranks sharing the epoch (the trainer's world size).
        rank: This process's global rank.
    """

    def __init__(self, dataset: SignalDataset, seed: int, num_replicas: int = 1, rank: int = 0) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)
        self.signals = dataset
        self._skip = 0

    def set_epoch(self, epoch: int) -> None:
        """Re-seed the shuffle and the dataset's negative sampling for ``epoch``."""
        super().set_epoch(epoch)
        self.signals.epoch = epoch

    def skip_next(self, items: int) -> None:
        """Leave out the first ``items`` indices of the next pass only: the part of an epoch trained before a restart.

        ``len()`` still counts the whole epoch, as Lightning's loop position (restored from the checkpoint)
        counts the batches already trained.
        """
        self._skip = items

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())
        skip, self._skip = self._skip, 0
        return iter(indices[skip:])


def _warn_if_cut(signals: list[TeacherSignal], group_size: int | None) -> None:
    """Log what ``group_size`` cuts from the teacher's scored pools, for a loss that learns their scores."""
    if group_size is None:
        return
    judged = [int(np.isfinite(signal.scores).sum()) for signal in signals]
    cut = [count for count in judged if count > group_size]
    if cut:
        logger.warning(
            "datamodule.group_size=%d keeps %d of the up to %d candidates the teacher scored for %d of %d "
            "questions: the loss learns a cut distribution, not the teacher's (datamodule.group_size=null "
            "keeps the whole pool)",
            group_size,
            group_size,
            max(cut),
            len(cut),
            len(signals),
        )


def _pad(rows: list[list[Any]], width: int, fill: Any) -> list[list[Any]]:
    return [row + [fill] * (width - len(row)) for row in rows]


def collate_groups(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack items into a batch padded to its largest group ``G``: texts as lists, the rest ``[B, G]`` tensors."""
    width = max(len(it["pids"]) for it in items)
    return {
        "qids": [it["qid"] for it in items],
        "queries": [it["query"] for it in items],
        "passages": [text for row in _pad([it["passages"] for it in items], width, "") for text in row],  # B·G
        "pids": _pad([it["pids"] for it in items], width, ""),
        "positive_ids": [it["positive_ids"] for it in items],
        "teacher_scores": torch.tensor(_pad([it["teacher_scores"] for it in items], width, NO_OPINION)),
        "positive_mask": torch.tensor(_pad([it["positive_mask"] for it in items], width, False), dtype=torch.bool),
        "group_mask": torch.tensor(_pad([[True] * len(it["pids"]) for it in items], width, False), dtype=torch.bool),
    }


class DistillationDataModule(pl.LightningDataModule):
    """Serve teacher signals to the retriever; a fixed slice of them is held out for validation.

    Which passages a question brings depends on what the loss learns (the pipeline says, from the loss
    module's ``reads_teacher_scores`` and ``single_positive``): a loss that learns the teacher's grading gets
    each question's whole scored pool, so it distils the distribution the teacher gave; a single-positive loss
    (InfoNCE) gets 1 positive + 1 hard negative, as DPR; a multi-positive loss gets every positive and every
    other candidate (AAR). A ``group_size`` that cuts a scored pool is logged as a warning with what it cut.

    Args:
        signals: One teacher signal per training question.
        data: The data set (for question and passage texts).
        batch_size: Questions per batch (each brings ``group_size`` passages).
        group_size: Passages per question: positives + hard negatives, or the first distillation candidates;
            ``None`` = what the loss needs (see above).
        positives_per_group: Positives per group for teachers that mark several (AAR, G2R); ``None`` = what
            the loss needs: 1 for single-positive losses (InfoNCE), all for the others.
        val_size: Signals held out (chosen at random with ``seed``) for ``val/loss`` and ``val/acc@1``.
        num_workers: DataLoader workers (0 keeps runs bit-reproducible on CPU).
        seed: Seed for the split, the shuffling and the negative sampling.
        reads_teacher_scores: Whether the loss learns the teacher's scores (KL, ListNet, ListMLE, ...).
        single_positive: Whether the loss needs exactly one positive per row (InfoNCE).
    """

    def __init__(
        self,
        signals: list[TeacherSignal],
        data: RetrievalData,
        batch_size: PositiveInt = 16,
        group_size: PositiveInt | None = None,
        positives_per_group: int | None = None,
        val_size: NonNegativeInt = 64,
        num_workers: NonNegativeInt = 0,
        seed: int = 0,
        reads_teacher_scores: bool = True,
        single_positive: bool = False,
    ) -> None:
        super().__init__()
        if not signals:
            raise ValueError("no teacher signals to train on (did the teacher drop every question?)")
        if (group_size is not None and group_size < 1) or batch_size < 1:
            raise ValueError(f"batch_size and group_size must be >= 1, got {batch_size} and {group_size}")
        if reads_teacher_scores:
            _warn_if_cut(signals, group_size)
        elif group_size is None and single_positive:
            group_size = CONTRASTIVE_GROUP_SIZE
        if positives_per_group is None and single_positive:
            positives_per_group = 1
        order = list(range(len(signals)))
        random.Random(seed).shuffle(order)
        val_size = min(val_size, len(signals) // 5)  # never hold out more than a fifth
        held_out = set(order[:val_size])
        self.train_signals = [s for i, s in enumerate(signals) if i not in held_out]
        self.val_signals = [s for i, s in enumerate(signals) if i in held_out]
        self.data = data
        self.batch_size = batch_size
        self.group_size = group_size
        self.positives_per_group = positives_per_group
        self.num_workers = num_workers
        self.seed = seed
        self._resume_at: tuple[int, int] | None = None  # (epoch, batches trained) from a resume checkpoint
        logger.info(
            "Data module: %d training / %d validation signals, batch %d × group %s, positives per group %s",
            len(self.train_signals),
            len(self.val_signals),
            batch_size,
            group_size or "all K (the whole scored pool)",
            positives_per_group or "all",
        )

    def train_dataloader(self) -> DataLoader:
        """Shuffled batches: a new reproducible order and new negatives each epoch."""
        dataset = SignalDataset(self.train_signals, self.data, self.group_size, self.seed, self.positives_per_group)
        sampler = EpochSampler(dataset, self.seed, *self._ranks())
        loader = DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            collate_fn=collate_groups,
            num_workers=self.num_workers,
            drop_last=len(self.train_signals) > self.batch_size,
        )
        if self._resume_at is not None:
            epoch, trained = self._resume_at
            if trained >= len(loader):  # saved at the end of an epoch: the next one starts afresh
                epoch, trained = epoch + 1, 0
            sampler.set_epoch(epoch)  # Lightning draws the first batch before it sets the epoch itself
            sampler.skip_next(trained * self.batch_size)
            logger.info("Resuming the training data at epoch %d after %d of %d batches", epoch, trained, len(loader))
            self._resume_at = None
        return loader

    def state_dict(self) -> dict[str, Any]:
        """Saved in each training checkpoint: which epoch is running and how many of its batches were trained.

        Lightning asks while a checkpoint is written, inside ``on_train_batch_end``, when the batch that just
        ended counts as processed but not yet completed.
        """
        trainer = self.trainer
        if trainer is None or not trainer.training:
            return {}
        progress = trainer.fit_loop.epoch_loop.batch_progress.current  # a _ProcessedTracker, typed as its base
        trained = int(progress.processed)  # type: ignore[attr-defined]
        return {"epoch": trainer.current_epoch, "batches_trained": trained}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Start the next training pass where the checkpoint's epoch stopped (see :meth:`train_dataloader`)."""
        if "epoch" in state_dict:
            self._resume_at = (int(state_dict["epoch"]), int(state_dict["batches_trained"]))

    def _ranks(self) -> tuple[int, int]:
        """(world size, global rank) of the trainer using this module; one process without a trainer."""
        trainer = self.trainer
        return (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)

    def val_dataloader(self) -> DataLoader:
        """The held-out signals in a fixed order with fixed negatives."""
        return DataLoader(
            SignalDataset(self.val_signals, self.data, self.group_size, self.seed, self.positives_per_group),
            batch_size=self.batch_size,
            shuffle=False,
            collate_fn=collate_groups,
            num_workers=self.num_workers,
        )

"""Re-mine hard negatives with the retriever being trained (ANCE), during training."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback

from ragdistill.data.answers import has_answer
from ragdistill.data.schemas import RetrievalData
from ragdistill.data.signal import TeacherSignal

logger = logging.getLogger(__name__)


def remine(signal: TeacherSignal, ranked_ids: list[str], keep: int, exclude: set[str]) -> TeacherSignal:
    """Return ``signal`` with its negatives replaced by the first ``keep`` of ``ranked_ids`` (positives kept).

    Mined negatives get the row's lowest judged score (they only need to be in the loss, below positives).
    """
    positives = set(signal.positive_ids)
    kept_ids = [pid for pid in signal.candidate_ids if pid in positives]
    kept_scores = [float(s) for pid, s in zip(signal.candidate_ids, signal.scores, strict=True) if pid in positives]
    floor = float(np.min(signal.scores[np.isfinite(signal.scores)]))
    mined = [pid for pid in ranked_ids if pid not in positives and pid not in exclude][:keep]
    return TeacherSignal(
        signal.qid,
        kept_ids + mined,
        np.array(kept_scores + [floor] * len(mined), dtype=np.float32),
        positive_ids=signal.positive_ids,
        diagnostics=signal.diagnostics,
    )


class HardNegativeRefresh(Callback):
    """Every ``every_n_steps`` training steps, encode the corpus with the current retriever and re-mine negatives.

    The training signals are replaced in place in the data module's list, which its dataset reads at every
    item: with ``num_workers=0`` the next batch already sees the new negatives (with worker processes, the
    next epoch does). Validation signals keep their negatives, so ``val/loss`` stays comparable.

    Args:
        data: The data set (corpus and training questions).
        every_n_steps: Steps between refreshes.
        depth: How deep in the retriever's ranking negatives are mined.
        drop_answer_negatives: Leave out mined passages that contain a gold answer string.
    """

    def __init__(self, data: RetrievalData, every_n_steps: int, depth: int = 20, drop_answer_negatives: bool = False):
        self.data = data
        self.every_n_steps = every_n_steps
        self.depth = depth
        self.drop_answer_negatives = drop_answer_negatives
        self.refreshes = 0

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        """Refresh after every ``every_n_steps``-th optimisation step."""
        step = trainer.global_step
        if step == 0 or step % self.every_n_steps:
            return
        self.refresh(trainer, pl_module)

    def refresh(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Encode the corpus, search every training question, and swap in the new negatives."""
        from ragdistill.candidates.dense import DenseCandidates  # imports the retriever package

        signals: list[TeacherSignal] = trainer.datamodule.train_signals  # type: ignore[attr-defined]
        questions = {q.id: q for q in self.data.train}
        # encoding runs its own predict Trainer on this module: keep what the fitting Trainer had set on it
        fit_trainer, hook_name = pl_module.trainer, pl_module._current_fx_name
        logger.info("Re-mining hard negatives for %d questions at step %d (ANCE)", len(signals), trainer.global_step)
        try:
            # no progress bars of its own: Lightning's training bar is live
            dense = DenseCandidates(k=self.depth + 10, progress=False)
            dense.fit(self.data.corpus, retriever=pl_module)  # type: ignore[arg-type]
            ranked = dense.retrieve([questions[s.qid] for s in signals])
        finally:
            pl_module.trainer, pl_module._current_fx_name = fit_trainer, hook_name
        for i, signal in enumerate(signals):
            question = questions[signal.qid]
            exclude = set()
            if self.drop_answer_negatives and question.answers:
                exclude = {
                    pid for pid in ranked[signal.qid].ids if has_answer(self.data.passage(pid).text, question.answers)
                }
            signals[i] = remine(signal, ranked[signal.qid].ids, self.depth, exclude)
        self.refreshes += 1
        pl_module.log("train/negative_refreshes", float(self.refreshes))

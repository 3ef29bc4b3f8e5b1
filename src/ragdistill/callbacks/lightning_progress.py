"""Lightning's progress bar for fits and predict runs: Rich's on a terminal, plain log lines elsewhere.

Lightning's ``RichProgressBar`` draws nothing into a log file or a pipe until the stage ends, so a ranker or
retriever fit run under ``nohup`` or a scheduler looks hung for half an hour. :func:`lightning_progress_bar`
picks the bar once, where the run starts; ``conf/callbacks/default.yaml`` and the inner predict and fit runs
(encoding, ranker training) all use it.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ProgressBar, RichProgressBar

from ragdistill.utils.progress import PLAIN_EVERY_S, PlainProgressLog, interactive_console


class LogProgressBar(ProgressBar):
    """Training and predict progress as plain log lines: steps done/total, time left, and the logged metrics.

    Validation and test loops are short next to the stage around them and log nothing of their own.
    """

    def __init__(self, every_s: float = PLAIN_EVERY_S) -> None:
        super().__init__()
        self.every_s = every_s
        self.enabled = True
        self._log: PlainProgressLog | None = None

    def disable(self) -> None:  # noqa: D102
        self.enabled = False

    def enable(self) -> None:  # noqa: D102
        self.enabled = True

    @property
    def is_enabled(self) -> bool:  # noqa: D102
        return self.enabled

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:  # noqa: D102
        self._log = PlainProgressLog(f"{self.train_description} epoch {trainer.current_epoch}", self.every_s)

    def on_train_batch_end(  # noqa: D102
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self.enabled and self._log is not None:
            self._log.update(batch_idx + 1, self.total_train_batches, _metrics(self.get_metrics(trainer, pl_module)))

    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:  # noqa: D102
        self.reset_dataloader_idx_tracker()

    def on_predict_batch_start(  # noqa: D102
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        if self.has_dataloader_changed(dataloader_idx):  # one count per predict dataloader, as Lightning's bars
            self._log = PlainProgressLog(self.predict_description, self.every_s)

    def on_predict_batch_end(  # noqa: D102
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if self.enabled and self._log is not None:
            self._log.update(batch_idx + 1, self.total_predict_batches_current_dataloader)


def _metrics(metrics: dict[str, Any]) -> str:
    """``loss 0.4123, val/loss 0.5`` from the progress-bar metrics (Lightning's ``v_num`` left out)."""
    shown = []
    for name, value in metrics.items():
        if name == "v_num":
            continue
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            value = value.item()
        shown.append(f"{name} {value:.4g}" if isinstance(value, float) else f"{name} {value}")
    return ", ".join(shown)


def lightning_progress_bar(every_s: float = PLAIN_EVERY_S) -> ProgressBar:
    """Rich's bar where it can be redrawn (a terminal, a notebook), :class:`LogProgressBar` otherwise."""
    return RichProgressBar() if interactive_console() else LogProgressBar(every_s)

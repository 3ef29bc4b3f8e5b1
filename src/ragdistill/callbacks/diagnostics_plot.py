"""Training diagnostics of a run, drawn as ``diagnostics.png`` in its run dir once training ends.

Dashboards show the same curves live (every value here is also logged); the PNG is for a run dir looked at
later, and for the run reports. Panels: the loss (train and validation), top-1 accuracy (a positive ranked
first, for teachers with positives) and ``val/teacher_student_spearman`` (whether the student orders each
held-out question's candidates as its teacher does).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback

from ragdistill.utils.atomic import atomic_write_text
from ragdistill.utils.plots import plot_training_diagnostics

logger = logging.getLogger(__name__)

PANELS = {
    "loss": ("train/loss", "val/loss"),
    "top-1 accuracy": ("train/acc@1", "val/acc@1"),
    "teacher-student Spearman": ("val/teacher_student_spearman",),
}
"""Panel title -> the logged metrics it draws."""


class DiagnosticsPlot(Callback):
    """Collect the diagnostics Lightning logs during ``fit`` and write them as a PNG and a JSON at its end.

    Training metrics are read every ``log_every_n_steps`` optimizer steps (when the loggers get them), the
    validation ones after every validation (the sanity check excluded).

    Args:
        path: The PNG; the series go beside it as ``<stem>.json`` (metric -> step -> value).
    """

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self.series: dict[str, dict[int, float]] = {key: {} for keys in PANELS.values() for key in keys}

    def _record(self, trainer: pl.Trainer, prefix: str) -> None:
        for key, points in self.series.items():
            value = trainer.callback_metrics.get(key)
            if key.startswith(prefix) and value is not None:
                points[trainer.global_step] = float(value)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *_: Any) -> None:
        """Read the training metrics when Lightning logs them."""
        every = int(getattr(trainer, "log_every_n_steps", 1))  # set in Trainer.__init__, not in its stubs
        if trainer.global_step % max(every, 1) == 0:
            self._record(trainer, "train/")

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Read the validation metrics (not those of the sanity check before training)."""
        if not trainer.sanity_checking:
            self._record(trainer, "val/")

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Write the PNG and the JSON (rank 0); a run that logged nothing gets a log line instead."""
        if not trainer.is_global_zero:
            return
        panels = {name: {key: self.series[key] for key in keys} for name, keys in PANELS.items()}
        if not any(points for points in self.series.values()):
            logger.info("No training diagnostics were logged; %s not written", self.path.name)
            return
        atomic_write_text(self.path.with_suffix(".json"), json.dumps(self.series, indent=2, sort_keys=True))
        plot_training_diagnostics(panels, self.path, title=self.path.parent.name)
        logger.info("Wrote training diagnostics to <%s>", self.path)

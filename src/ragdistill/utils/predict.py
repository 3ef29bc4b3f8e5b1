"""One Lightning ``predict`` pass outside training: corpus encoding and LM teacher scoring both run through here."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback
from torch.utils.data import DataLoader


def run_predict(
    module: pl.LightningModule,
    loader: DataLoader,
    accelerator: str,
    precision: str | None,
    callbacks: Sequence[Callback],
) -> list[Any]:
    """Return ``module``'s ``predict_step`` outputs over ``loader`` on one device; the module's train/eval mode is kept.

    Lightning picks the device and the precision (e.g. ``bf16-mixed`` autocast), so the same call runs on a
    CPU or a GPU. No logger, checkpoints or model summary: this is inference inside a larger run. Progress is
    shown by the ``callbacks`` (Lightning's own bar is used only when one of them is a progress bar).
    """
    trainer = pl.Trainer(
        accelerator=accelerator,
        devices=1,
        precision=precision,  # type: ignore[arg-type]
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=any(isinstance(c, pl.callbacks.ProgressBar) for c in callbacks),
        callbacks=list(callbacks),
    )
    was_training = module.training
    try:
        with warnings.catch_warnings():  # batch samplers here yield every index once (nothing for drop_last to do)
            warnings.filterwarnings("ignore", message=".*custom batch sampler.*")
            return list(trainer.predict(module, loader) or [])
    finally:
        module.train(was_training)

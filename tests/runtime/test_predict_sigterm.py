"""SIGTERM during a predict run (teacher scoring, encoding) stops it, where Lightning alone would go on."""

from __future__ import annotations

import os
import signal

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from ragdistill.runtime.predict import run_predict


class TerminatedAtSecondBatch(pl.LightningModule):
    """Sends itself SIGTERM while predicting batch 1, as ``kill`` or a scheduler would."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[int] = []

    def predict_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        self.seen.append(batch_idx)
        if batch_idx == 1:
            os.kill(os.getpid(), signal.SIGTERM)
        return batch * 2


def test_sigterm_stops_a_predict_run_after_the_batch_with_status_143_and_restores_the_handler():
    before = signal.getsignal(signal.SIGTERM)
    module = TerminatedAtSecondBatch()
    loader = DataLoader(torch.arange(6.0), batch_size=1)
    with pytest.raises(SystemExit) as stopped:
        run_predict(module, loader, "cpu", "32-true", [])
    assert stopped.value.code == 128 + signal.SIGTERM
    assert module.seen == [0, 1]  # Lightning's predict loop alone predicted all 6 and returned
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_predict_run_without_sigterm_returns_every_batch():
    class Doubler(pl.LightningModule):
        def predict_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
            return batch * 2

    outputs = run_predict(Doubler(), DataLoader(torch.arange(3.0), batch_size=1), "cpu", "32-true", [])
    assert [float(o) for o in outputs] == [0.0, 2.0, 4.0]

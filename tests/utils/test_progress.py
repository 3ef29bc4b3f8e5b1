"""Progress off a terminal: plain log lines, so a long stage run under nohup or a scheduler shows it is alive."""

from __future__ import annotations

import logging

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import RichProgressBar
from torch.utils.data import DataLoader

from ragdistill.callbacks import lightning_progress
from ragdistill.callbacks.lightning_progress import LogProgressBar, lightning_progress_bar
from ragdistill.runtime.predict import run_predict
from ragdistill.utils.progress import LoggedProgress, PlainProgressLog, progress_line


def test_progress_line_with_a_known_total_shows_share_and_time_left():
    line = progress_line("[cyan]Encoding", 250, 1000, 60.0, "4.2 items/s")
    assert line == "Encoding: 250/1,000 (25%), 0:01:00 elapsed, ~0:03:00 left, 4.2 items/s"


@pytest.mark.parametrize("total", [None, float("inf")])
def test_progress_line_without_a_total_shows_the_count_only(total):
    assert progress_line("Steps", 12, total, 5.0) == "Steps: 12, 0:00:05 elapsed"


def test_short_work_logs_nothing_and_long_work_a_closing_line_once(caplog):
    caplog.set_level(logging.INFO, logger="ragdistill.utils.progress")
    short = PlainProgressLog("Short", every_s=3600)
    for done in (1, 2, 3):
        short.update(done, 3)
    assert caplog.messages == []

    long = PlainProgressLog("Long", every_s=3600)
    long.last -= 3601  # an hour went by without a line
    long.update(1, 3)
    long.update(2, 3)  # not due: the last line was just now
    long.update(3, 3)  # finished after a line: the closing line
    long.update(3, 3)
    assert [m.split(",")[0] for m in caplog.messages] == ["Long: 1/3 (33%)", "Long: 3/3 (100%)"]


def test_rich_progress_off_a_terminal_also_logs_plain_lines(caplog):
    caplog.set_level(logging.INFO, logger="ragdistill.utils.progress")
    with LoggedProgress(every_s=0) as progress:  # pytest captures stdout: not a terminal
        assert progress.plain
        task = progress.add_task("Scoring", total=4, rate="")
        for _ in range(4):
            progress.update(task, advance=1, rate="2.0 passages/s")
    assert [m.split(",")[0] for m in caplog.messages] == [f"Scoring: {n}/4 ({25 * n}%)" for n in (1, 2, 3, 4)]
    assert caplog.messages[-1].endswith("2.0 passages/s")


class TinyRegression(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(1, 1)

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        loss = (self.layer(batch[:, None]) - 2 * batch[:, None]).pow(2).mean()
        self.log("loss", loss, prog_bar=True)
        return loss

    def predict_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        return self.layer(batch[:, None])

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.001)


def test_fit_and_predict_log_steps_with_the_loss_when_not_on_a_terminal(caplog):
    caplog.set_level(logging.INFO, logger="ragdistill.utils.progress")
    module, loader = TinyRegression(), DataLoader(torch.arange(8.0), batch_size=2)
    bar = lightning_progress_bar(every_s=0)
    assert isinstance(bar, LogProgressBar)
    trainer = pl.Trainer(
        accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False, enable_model_summary=False,
        callbacks=[bar],
    )  # fmt: skip
    trainer.fit(module, loader)
    fit_lines = [m for m in caplog.messages if m.startswith("Training epoch 0")]
    assert [m.split(",")[0] for m in fit_lines] == [f"Training epoch 0: {n}/4 ({25 * n}%)" for n in (1, 2, 3, 4)]
    assert "loss " in fit_lines[-1]

    caplog.clear()
    run_predict(module, loader, "cpu", "32-true", [LogProgressBar(every_s=0)])
    assert [m.split(",")[0] for m in caplog.messages] == [f"Predicting: {n}/4 ({25 * n}%)" for n in (1, 2, 3, 4)]


def test_a_terminal_gets_richs_bar(monkeypatch):
    monkeypatch.setattr(lightning_progress, "interactive_console", lambda: True)
    assert isinstance(lightning_progress_bar(), RichProgressBar)

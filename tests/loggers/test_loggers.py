"""Loggers work without an account: CSV, TensorBoard and W&B offline."""

from __future__ import annotations

from pathlib import Path

from hydra.utils import instantiate

from ragdistill.pipeline import instantiate_group


def test_wandb_offline_writes_a_syncable_run_folder(compose_cfg, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
    cfg = compose_cfg("config", ["logger=wandb", "name=offline_check"])
    (wandb_logger,) = instantiate_group(cfg.logger)
    wandb_logger.log_hyperparams({"teacher": "gold"})
    wandb_logger.log_metrics({"test/gold/recall@5": 0.5}, step=0)
    wandb_logger.experiment.finish()
    runs = list((Path(cfg.paths.output_dir) / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("*.wandb"))


def test_many_gives_three_loggers(compose_cfg):
    cfg = compose_cfg("config", ["logger=many"])
    names = sorted(type(instantiate(entry)).__name__ for entry in cfg.logger.values() if "Wandb" not in entry._target_)
    assert names == ["CSVLogger", "TensorBoardLogger"] and "wandb" in cfg.logger

"""Compose configs the way the CLI does, but on CPU, with small limits and a tmp run dir."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from ragdistill.cli import CONFIG_PATH
from ragdistill.utils.quiet import quiet_third_party

CPU_OVERRIDES = ["trainer=cpu", "datamodule.num_workers=0"]


def compose_config(config_name: str, overrides: list[str], run_dir: Path) -> DictConfig:
    """Compose ``conf/<config_name>.yaml`` with overrides; the run dir and cache go to ``run_dir``."""
    GlobalHydra.instance().clear()
    extra = CPU_OVERRIDES if config_name == "config" else []
    with initialize_config_dir(config_dir=CONFIG_PATH, version_base="1.3"):
        cfg = compose(config_name=config_name, overrides=[*extra, *overrides], return_hydra_config=True)
    HydraConfig().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(run_dir)
        cfg.paths.cache_dir = str(run_dir / "cache")
    return cfg


@pytest.fixture(autouse=True, scope="session")
def _quiet() -> None:
    quiet_third_party()


@pytest.fixture(scope="session")
def compose_at():
    """``compose_at(name, overrides, run_dir)`` for module-scoped fixtures that pick their own run dir."""
    return compose_config


@pytest.fixture
def compose_cfg(tmp_path: Path):
    """``compose_cfg(name, overrides)`` → a composed config whose run dir is a fresh tmp dir."""

    def make(config_name: str = "config", overrides: list[str] | None = None) -> DictConfig:
        return compose_config(config_name, overrides or [], tmp_path / "run")

    yield make
    GlobalHydra.instance().clear()

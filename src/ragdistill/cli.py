"""Entry points: thin Hydra apps that hand a composed config to ``pipeline``."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
from hydra.errors import CompactHydraException
from omegaconf import DictConfig

from ragdistill.config_check import ConfigError
from ragdistill.data.errors import DataValidationError
from ragdistill.utils.quiet import quiet_third_party

logger = logging.getLogger(__name__)

CONFIG_PATH = str(Path(__file__).resolve().parents[2] / "conf")

INPUT_ERRORS = (ConfigError, DataValidationError)
"""Errors in what the user gave (a config value, a data file) whose message says all there is to fix."""


class RunInputError(CompactHydraException):
    """A config or data error, re-raised so that Hydra prints its one line and exits 1, with no traceback.

    Hydra prints a :class:`~hydra.errors.CompactHydraException` as its message alone (``HYDRA_FULL_ERROR=1``
    still shows the whole trace); in a ``--multirun`` it fails that one job like any other exception.
    The original error is the ``__cause__``.
    """


def run_task(
    task: Callable[[DictConfig], tuple[dict[str, float], dict[str, Any]]], cfg: DictConfig
) -> dict[str, float]:
    """Run ``task`` with the config tree printed first; log any failure with the run dir, always close W&B.

    A bad config value or data file (:data:`INPUT_ERRORS`) is logged as one line, and re-raised as a
    :class:`RunInputError`; SIGTERM ends the run with exit status
    :data:`~ragdistill.utils.predict.TERMINATED`; any other failure is
    logged with its traceback and re-raised as it is.
    """
    from pytorch_lightning.utilities.exceptions import SIGTERMException

    from ragdistill.utils.config_tree import print_config_tree  # imports Lightning: not for a bad override
    from ragdistill.utils.predict import TERMINATED

    print_config_tree(cfg, save_to=Path(cfg.paths.output_dir) / "config_tree.log")
    try:
        metrics, _ = task(cfg)
        return metrics
    except SIGTERMException as stop:  # Lightning's loops raise it with exit status 0: a killed run looked finished
        logger.error(
            "Terminated by SIGTERM; what the run finished is kept in <%s> and the caches", cfg.paths.output_dir
        )
        raise SystemExit(TERMINATED) from stop
    except INPUT_ERRORS as error:
        message = f"{type(error).__name__}: {error} (run dir <{cfg.paths.output_dir}>)"
        logger.error("%s", message)
        raise RunInputError(message) from error
    except Exception:
        logger.exception("Run failed; what it computed so far is in <%s>", cfg.paths.output_dir)
        raise
    finally:
        if "wandb" in sys.modules:  # close the run (also on failure) so its folder is complete for `wandb sync`
            import wandb

            if wandb.run is not None:
                wandb.finish()


def _metric(metrics: dict[str, float], cfg: DictConfig) -> float | None:
    """Return ``metrics[cfg.optimized_metric]``, the value a sweeper optimises (Optuna reads the return value)."""
    name = cfg.get("optimized_metric")
    if not name:
        return None
    if name not in metrics:  # e.g. evaluate=false: a search would fail on None, so say which key was missing
        logger.warning("optimized_metric <%s> is not among this run's metrics (see metrics.json)", name)
        return None
    return float(metrics[name])


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="config")
def train_main(cfg: DictConfig) -> float | None:
    """``ragdistill-train``: train a retriever from a teacher and evaluate it."""
    quiet_third_party()  # before the heavy imports, some of which log on import (faiss)
    from ragdistill import pipeline  # torch, transformers, faiss only once a run starts: --help stays fast

    return _metric(run_task(pipeline.train, cfg), cfg)


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="eval")
def eval_main(cfg: DictConfig) -> float | None:
    """``ragdistill-eval retriever.path=...``: evaluate any retriever folder without training."""
    quiet_third_party()
    from ragdistill import pipeline

    return _metric(run_task(pipeline.evaluate, cfg), cfg)


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="pear")
def pear_main(cfg: DictConfig) -> float | None:
    """``ragdistill-pear``: find the reader LM's copy-suppressing heads and learn their PEAR coefficients."""
    quiet_third_party()
    from ragdistill.reader.pear import pear_task

    return _metric(run_task(pear_task, cfg), cfg)


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="finetune_reader")
def finetune_reader_main(cfg: DictConfig) -> float | None:
    """``ragdistill-finetune-reader``: fine-tune the reader LM on gold + distractor passages; EM/F1 before and after."""
    quiet_third_party()
    from ragdistill.reader.finetune import finetune_task

    return _metric(run_task(finetune_task, cfg), cfg)


def report_main() -> int:
    """``ragdistill-report PATH...``: compare finished runs in report.md/report.html (plain argparse, no Hydra)."""
    from ragdistill.report.command import main

    return main()

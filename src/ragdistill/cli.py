"""Entry points: thin Hydra apps that hand a composed config to ``pipeline``."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
from hydra.errors import CompactHydraException
from hydra.experimental.callback import Callback
from omegaconf import DictConfig
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from ragdistill.config_check import check_missing
from ragdistill.data.errors import DataValidationError
from ragdistill.models.locate import ModelNotFoundError
from ragdistill.runtime.run_info import UnwritableDirError, probe_writable
from ragdistill.utils.errors import ConfigError
from ragdistill.utils.quiet import quiet_third_party

logger = logging.getLogger(__name__)

CONFIG_PATH = str(Path(__file__).resolve().parents[2] / "conf")

INPUT_ERRORS: tuple[type[BaseException], ...] = (
    ConfigError,
    DataValidationError,
    ModelNotFoundError,
    MissingMandatoryValue,
    UnwritableDirError,
)
"""Errors in what the user gave (a config value, a data file, a model path, a directory) whose message says
all there is to fix. ``ChatAPIError`` (an endpoint that does not answer) is matched by name, so that this
module does not import the HTTP client."""

USER_ERROR_NAMES = frozenset({"ChatAPIError", "EndpointError"})
"""Input errors recognised by class name, whose modules are too heavy to import for ``--help``."""


def full_error() -> bool:
    """Whether the user asked for whole tracebacks (``HYDRA_FULL_ERROR=1``), as Hydra reads it."""
    return os.environ.get("HYDRA_FULL_ERROR") == "1"


def user_error(error: BaseException) -> BaseException | None:
    """The user's error inside ``error``, or None.

    Hydra's ``instantiate`` wraps what a constructor raised (a ``DataValidationError`` of a data file, a
    ``ModelNotFoundError``) in an ``InstantiationException`` whose message is a repr; the cause chain still
    holds the error itself.
    """
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, INPUT_ERRORS) or type(current).__name__ in USER_ERROR_NAMES:
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def one_line(error: BaseException) -> str:
    """``ConfigError: <message>``, squeezed to one line (a message may quote a multi-line value)."""
    message = " ".join(str(error).split())
    if isinstance(error, MissingMandatoryValue):  # OmegaConf's own form: 'Missing mandatory value: data.x ...'
        message = f"{message}; give it on the command line"
    return f"{type(error).__name__}: {message}"


class RunInputError(CompactHydraException):
    """A user's error (:data:`INPUT_ERRORS`) as its one line: ``<Error>: <message> (run dir <...>)``.

    A single run's entry point prints it and exits 1 (:func:`_entry`); in a ``--multirun`` Hydra prints a
    :class:`~hydra.errors.CompactHydraException` as its message, without a traceback, and fails that job.
    The user's error is the ``__cause__`` (none for an OmegaConf error, which Hydra would print again).
    """


class ProbeRunDir(Callback):
    """Hydra callback: check that the run (or sweep) dir can be written before Hydra makes it.

    Hydra creates the run dir, its log file and ``.hydra/`` before the task starts, and an unwritable one
    fails there with a traceback. A callback's exception is only a warning to Hydra, so this one prints its
    line and exits 1 itself (``HYDRA_FULL_ERROR=1``: it raises instead).
    """

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Probe ``hydra.run.dir``."""
        self._probe(str(config.hydra.run.dir), "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Probe ``hydra.sweep.dir``, under which every job's dir goes."""
        self._probe(str(config.hydra.sweep.dir), "hydra.sweep.dir")

    @staticmethod
    def _probe(directory: str, key: str) -> None:
        try:
            probe_writable(Path(directory), key)
        except UnwritableDirError as error:
            if full_error():
                raise
            sys.stderr.write(one_line(error) + os.linesep)
            raise SystemExit(1) from None


def run_task(
    task: Callable[[DictConfig], tuple[dict[str, float], dict[str, Any]]], cfg: DictConfig
) -> dict[str, float]:
    """Run ``task`` with the config tree printed first; log any failure with the run dir, always close W&B.

    A bad config value, data file, model path or directory (:data:`INPUT_ERRORS`, also when Hydra's
    ``instantiate`` wrapped it) is logged as one line and re-raised as a :class:`RunInputError`; SIGTERM
    ends the run with exit status :data:`~ragdistill.runtime.predict.TERMINATED`; any other failure is logged
    with its traceback and re-raised as it is. Missing mandatory values are all named before anything runs.
    """
    from pytorch_lightning.utilities.exceptions import SIGTERMException

    from ragdistill.runtime.config_tree import print_config_tree  # imports Lightning: not for a bad override
    from ragdistill.runtime.predict import TERMINATED

    try:
        check_missing(cfg)  # before the tree: it would print '???' and the run fail on the first one read
        print_config_tree(cfg, save_to=Path(cfg.paths.output_dir) / "config_tree.log")
        metrics, _ = task(cfg)
        return metrics
    except SIGTERMException as stop:  # Lightning's loops raise it with exit status 0: a killed run looked finished
        logger.error(
            "Terminated by SIGTERM; what the run finished is kept in <%s> and the caches", cfg.paths.output_dir
        )
        raise SystemExit(TERMINATED) from stop
    except Exception as error:
        found = user_error(error)
        if found is None:
            logger.exception("Run failed; what it computed so far is in <%s>", cfg.paths.output_dir)
            raise
        message = f"{one_line(found)} (run dir <{cfg.paths.output_dir}>)"
        logger.error("%s", message)
        if isinstance(found, OmegaConfBaseException) and not full_error():
            raise RunInputError(message) from None  # Hydra prints an OmegaConf cause as a second line
        raise RunInputError(message) from found
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


def _entry(task: Callable[[DictConfig], tuple[dict[str, float], dict[str, Any]]], cfg: DictConfig) -> float | None:
    """Run ``task`` as an entry point does: an input error of a single run ends the process with its one line.

    Raised out of the task, Hydra would add a line naming the overrides and a hint about ``HYDRA_FULL_ERROR``
    to the message; so a single run writes the line to stderr and exits 1 here. In a ``--multirun`` the
    error fails that job as Hydra does (the sweep's other jobs still run); ``HYDRA_FULL_ERROR=1`` raises it
    with its chain.
    """
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    try:
        return _metric(run_task(task, cfg), cfg)
    except RunInputError as error:
        if full_error() or HydraConfig.get().mode == RunMode.MULTIRUN:
            raise
        sys.stderr.write(f"{error}{os.linesep}")
        raise SystemExit(1) from None


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="config")
def train_main(cfg: DictConfig) -> float | None:
    """``ragdistill-train``: train a retriever from a teacher and evaluate it."""
    quiet_third_party()  # before the heavy imports, some of which log on import (faiss)
    from ragdistill import pipeline  # torch, transformers, faiss only once a run starts: --help stays fast

    return _entry(pipeline.train, cfg)


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="eval")
def eval_main(cfg: DictConfig) -> float | None:
    """``ragdistill-eval retriever.path=...``: evaluate any retriever folder without training."""
    quiet_third_party()
    from ragdistill import pipeline

    return _entry(pipeline.evaluate, cfg)


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="pear")
def pear_main(cfg: DictConfig) -> float | None:
    """``ragdistill-pear``: find the reader LM's copy-suppressing heads and learn their PEAR coefficients."""
    quiet_third_party()
    from ragdistill.reader.pear import pear_task

    return _entry(pear_task, cfg)


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="finetune_reader")
def finetune_reader_main(cfg: DictConfig) -> float | None:
    """``ragdistill-finetune-reader``: fine-tune the reader LM on gold + distractor passages; EM/F1 before and after."""
    quiet_third_party()
    from ragdistill.reader.finetune import finetune_task

    return _entry(finetune_task, cfg)


def report_main() -> int:
    """``ragdistill-report PATH...``: compare finished runs in report.md/report.html (plain argparse, no Hydra)."""
    from ragdistill.report.command import main

    return main()

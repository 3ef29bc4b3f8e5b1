"""Build a run's loggers with its dashboard labels; at the end, hand the run's outputs to the dashboards.

Every logger of ``cfg.logger`` gets the flat config (:func:`~ragdistill.loggers.run_labels.flat_config`);
W&B and MLflow also get the group and tags of :func:`~ragdistill.loggers.run_labels.run_labels` wherever
their config leaves them ``null``. When the run ends, W&B and MLflow store the exported ``retriever/``
folder and ``metrics.json`` as artifacts, and TensorBoard's HParams tab pairs the config with the final
metrics.
"""

from __future__ import annotations

import logging
import math
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from hydra.utils import get_class, instantiate
from omegaconf import DictConfig
from pytorch_lightning.loggers import Logger, MLFlowLogger, TensorBoardLogger, WandbLogger
from pytorch_lightning.utilities import rank_zero_only

from ragdistill.loggers.run_labels import RunLabels, flat_config, run_labels

logger = logging.getLogger(__name__)

RUN_OUTPUTS = ("retriever", "metrics.json")
"""What a run dir holds that dashboards keep as artifacts (an evaluation-only run has no ``retriever/``)."""

MLFLOW_MISSING = (
    "logger=mlflow needs the mlflow package, an optional extra: pip install 'ragdistill[mlflow]' "
    "(or pip install mlflow); or pick another logger (logger=csv|tensorboard|wandb|many)"
)


def _label_kwargs(entry: DictConfig, labels: RunLabels) -> dict[str, Any]:
    """The run's labels as the logger class of ``entry`` takes them, where its config leaves them empty.

    Raises:
        ModuleNotFoundError: If ``entry`` is an MLflow logger and mlflow is not installed.
    """
    cls = get_class(entry._target_)
    if issubclass(cls, WandbLogger):  # group, job_type and tags go through to wandb.init
        own_tags = [str(tag) for tag in entry.get("tags") or ()]
        return {
            "group": entry.get("group") or labels.group,
            "job_type": entry.get("job_type") or labels.job_type,
            "tags": list(dict.fromkeys([*labels.tags, *own_tags])),
        }
    if issubclass(cls, MLFlowLogger):
        if find_spec("mlflow") is None:
            raise ModuleNotFoundError(MLFLOW_MISSING)
        return {"tags": labels.as_key_values() | {str(k): str(v) for k, v in (entry.get("tags") or {}).items()}}
    return {}


def build_loggers(cfg: DictConfig) -> list[Logger]:
    """Instantiate ``cfg.logger``'s entries labelled for dashboards, and log the flat config to each.

    Returns:
        The loggers, for ``pl.Trainer(logger=...)``; ``[]`` when the config names none.
    """
    entries = [entry for entry in (cfg.get("logger") or {}).values() if entry is not None and "_target_" in entry]
    if not entries:
        return []
    labels = run_labels(cfg)
    loggers: list[Logger] = []
    for entry in entries:
        logger.info("Instantiating logger <%s>", entry._target_)
        loggers.append(instantiate(entry, _convert_="all", **_label_kwargs(entry, labels)))
    logger.info("Dashboard group <%s>, tags <%s>", labels.group, ", ".join(labels.tags))
    params = flat_config(cfg)
    for lg in loggers:
        lg.log_hyperparams(params)
    return loggers


@rank_zero_only
def log_run_outputs(loggers: list[Logger], run_dir: Path, metrics: dict[str, float]) -> None:
    """Attach the finished run to its dashboards: artifacts on W&B and MLflow, HParams on TensorBoard.

    Call it once ``metrics.json`` is written and before the loggers are finalized.
    """
    outputs = {name: run_dir / name for name in RUN_OUTPUTS if (run_dir / name).exists()}
    for lg in loggers:
        if isinstance(lg, WandbLogger):
            _wandb_artifacts(lg, outputs, metrics)
        elif isinstance(lg, MLFlowLogger):
            _mlflow_artifacts(lg, outputs)
        elif isinstance(lg, TensorBoardLogger):
            _tensorboard_hparams(lg, metrics)


def _wandb_artifacts(lg: WandbLogger, outputs: dict[str, Path], metrics: dict[str, float]) -> None:
    """``retriever-<run id>`` (type ``model``, the final metrics as metadata) and ``metrics-<run id>``.

    Offline, the files are staged under ``$WANDB_DATA_DIR`` and uploaded by ``wandb sync``.
    """
    import wandb

    run = lg.experiment
    if "retriever" in outputs:
        finite = {key: value for key, value in metrics.items() if math.isfinite(value)}
        model = wandb.Artifact(f"retriever-{run.id}", type="model", metadata=finite)
        model.add_dir(str(outputs["retriever"]))
        run.log_artifact(model)
    if "metrics.json" in outputs:
        figures = wandb.Artifact(f"metrics-{run.id}", type="metrics")
        figures.add_file(str(outputs["metrics.json"]))
        run.log_artifact(figures)
    logger.info("Logged W&B artifacts <%s> of run <%s>", ", ".join(outputs), run.id)


def _mlflow_artifacts(lg: MLFlowLogger, outputs: dict[str, Path]) -> None:
    """Copy ``retriever/`` and ``metrics.json`` into the run's artifact store (``logger.mlflow.artifact_location``)."""
    for name, path in outputs.items():
        if path.is_dir():
            lg.experiment.log_artifacts(lg.run_id, str(path), artifact_path=name)
        else:
            lg.experiment.log_artifact(lg.run_id, str(path))
    logger.info("Logged MLflow artifacts <%s> of run <%s>", ", ".join(outputs), lg.run_id)


def _tensorboard_hparams(lg: TensorBoardLogger, metrics: dict[str, float]) -> None:
    """Write the HParams summary: the flat config against the final metrics' names.

    The metric values are the scalars the run logs under the same names; Lightning writes this summary
    only with ``default_hp_metric``, whose placeholder metric would mean nothing here.
    """
    from torch.utils.tensorboard.summary import hparams

    params = {
        str(key): value if isinstance(value, bool | int | float | str) else str(value)
        for key, value in dict(lg.hparams).items()
    }
    experiment, session_start, session_end = hparams(params, dict.fromkeys(metrics, 0.0))
    writer = lg.experiment._get_file_writer()
    for summary in (experiment, session_start, session_end):
        writer.add_summary(summary)

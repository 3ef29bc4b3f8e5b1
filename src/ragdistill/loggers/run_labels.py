"""Label a run for dashboards from its composed config: group, job type, tags and the flat config.

Nothing here is typed by hand per run: the labels come from the options Hydra picked
(``experiment=aar teacher=aar loss=multi_positive_infonce``), so a sweep's runs are grouped and
filterable on W&B or MLflow as they are launched.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from ragdistill.report.runs import flatten
from ragdistill.runtime.run_info import job_config

LABELLED_GROUPS = ("experiment", "teacher", "loss", "data")
"""Config groups whose chosen option becomes a ``group=option`` tag (``backbone`` is read from the retriever)."""

MAX_TAG_LENGTH = 64  # W&B refuses longer tags


@dataclass(frozen=True)
class RunLabels:
    """How dashboards file one run.

    Attributes:
        group: The experiment file (``experiment=aar`` → ``aar``), else ``teacher=<option>``, else the run's name.
        job_type: ``train`` for ``ragdistill-train``, ``eval`` for ``ragdistill-eval``.
        fields: ``{"teacher": "gold", "loss": "infonce", "backbone": "all-MiniLM-L6-v2", ...}``.
        extra_tags: The run's own ``tags`` from the config (experiment files set them).
    """

    group: str
    job_type: str
    fields: dict[str, str]
    extra_tags: tuple[str, ...] = ()

    @property
    def tags(self) -> list[str]:
        """W&B tags: the config's own tags, then ``key=value`` for each field; unique, at most 64 characters."""
        tags = [*self.extra_tags, *(f"{key}={value}" for key, value in self.fields.items())]
        return list(dict.fromkeys(tag[:MAX_TAG_LENGTH] for tag in tags))

    def as_key_values(self) -> dict[str, str]:
        """MLflow tags (key → value): the fields plus ``group``, ``job_type`` and the config's tags joined by commas."""
        pairs = {"group": self.group, "job_type": self.job_type, **self.fields}
        if self.extra_tags:
            pairs["tags"] = ",".join(self.extra_tags)
        return pairs


def config_choices(cfg: DictConfig) -> dict[str, str]:
    """The option Hydra picked in each config group (``{"teacher": "gold", ...}``); ``{}`` outside Hydra."""
    if HydraConfig.initialized():
        choices: Any = HydraConfig.get().runtime.choices
    elif OmegaConf.select(cfg, "hydra.runtime.choices") is not None:
        choices = cfg.hydra.runtime.choices
    else:
        return {}
    return {str(group): str(option) for group, option in choices.items() if option is not None}


def _target_name(node: Any) -> str | None:
    """``ragdistill.teachers.gold.GoldTeacher`` → ``GoldTeacher``: the label of a group built outside Hydra."""
    target = node.get("_target_") if isinstance(node, DictConfig) else None
    return str(target).rsplit(".", 1)[-1] if target else None


def backbone_name(path: str) -> str:
    """The model a retriever starts from: the last part of its path, hub id or ``packaged:`` name."""
    return path.rstrip("/").replace(":", "/").rsplit("/", 1)[-1]


def run_labels(cfg: DictConfig) -> RunLabels:
    """Derive the run's group, job type and tags from its composed config (see :class:`RunLabels`)."""
    choices = config_choices(cfg)
    fields: dict[str, str] = {}
    for group in LABELLED_GROUPS:
        option = choices.get(group) or _target_name(cfg.get(group))
        if option:
            fields[group] = option
    retriever_path = OmegaConf.select(cfg, "retriever.path", default=None)
    if retriever_path:
        fields["backbone"] = backbone_name(str(retriever_path))
    elif "retriever" in choices:
        fields["backbone"] = choices["retriever"]
    if "experiment" in fields:
        group = fields["experiment"]
    elif "teacher" in fields:
        group = f"teacher={fields['teacher']}"
    else:
        group = str(cfg.get("name", "run"))
    job_type = "train" if "teacher" in cfg else "eval"
    extra_tags = tuple(str(tag) for tag in cfg.get("tags") or ())
    return RunLabels(group=group, job_type=job_type, fields=fields, extra_tags=extra_tags)


def flat_config(cfg: DictConfig) -> dict[str, Any]:
    """The resolved run config (without Hydra's node) with dotted keys: ``{"loss.temperature": 0.05, ...}``.

    The same keys as ``ragdistill-report``'s config columns; lists stay values, empty mappings are ``{}``.
    Dashboards filter and group on these keys (W&B's runs table, MLflow params, TensorBoard's HParams).
    """
    return flatten(cast(dict[str, Any], OmegaConf.to_container(job_config(cfg), resolve=True)))

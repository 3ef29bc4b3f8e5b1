from __future__ import annotations

import pytest
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf

from ragdistill.loggers.run_labels import RunLabels, backbone_name, flat_config, run_labels


def test_experiment_file_is_the_group_and_every_choice_a_tag(compose_cfg):
    labels = run_labels(compose_cfg("config", ["experiment=quickstart"]))
    assert labels.group == "quickstart" and labels.job_type == "train"
    assert labels.tags == [
        *("quickstart", "gold", "infonce", "minilm"),  # the experiment file's own tags come first
        *("experiment=quickstart", "teacher=gold", "loss=infonce", "data=squad_open", "backbone=all-MiniLM-L6-v2"),
    ]


def test_without_an_experiment_the_teacher_is_the_group(compose_cfg):
    labels = run_labels(compose_cfg("config", ["teacher=lm_likelihood", "loss=kl", "retriever=mpnet"]))
    assert labels.group == "teacher=lm_likelihood"
    assert labels.fields == {
        "teacher": "lm_likelihood",
        "loss": "kl",
        "data": "squad_open",
        "backbone": "all-mpnet-base-v2",
    }
    assert labels.as_key_values() == {"group": "teacher=lm_likelihood", "job_type": "train", **labels.fields}


def test_eval_runs_are_their_own_job_type(compose_cfg):
    labels = run_labels(compose_cfg("eval", ["retriever.path=outputs/2026-11-21/06-48-42_quickstart/retriever"]))
    assert (labels.group, labels.job_type) == ("eval", "eval")
    assert labels.fields == {"data": "squad_open", "backbone": "retriever"}


def test_outside_hydra_the_labels_are_the_built_class_names(monkeypatch):
    monkeypatch.setattr(HydraConfig.instance(), "cfg", None)
    cfg = OmegaConf.create(
        {
            "name": "notebook",
            "tags": ["try"],
            "teacher": {"_target_": "ragdistill.teachers.gold.GoldTeacher"},
            "loss": {"_target_": "ragdistill.losses.kl.KLDistillLoss"},
            "retriever": {"path": "intfloat/e5-small-v2"},
        }
    )
    labels = run_labels(cfg)
    assert labels.group == "teacher=GoldTeacher"
    assert labels.tags == ["try", "teacher=GoldTeacher", "loss=KLDistillLoss", "backbone=e5-small-v2"]


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("packaged:all-MiniLM-L6-v2", "all-MiniLM-L6-v2"),
        ("intfloat/e5-small-v2", "e5-small-v2"),
        ("/runs/quickstart/retriever/", "retriever"),
    ],
)
def test_backbone_is_the_last_part_of_the_path(path, name):
    assert backbone_name(path) == name


def test_tags_are_unique_and_short_enough_for_wandb():
    labels = RunLabels(group="g", job_type="train", fields={"teacher": "x" * 80}, extra_tags=("a", "a"))
    assert labels.tags == ["a", "teacher=" + "x" * 56]


def test_flat_config_has_dotted_keys_resolved_and_no_hydra_node(compose_cfg):
    cfg = compose_cfg("config", ["data=fixture"])
    flat = flat_config(cfg)
    assert flat["loss.temperature"] == 0.05 and flat["teacher._target_"] == "ragdistill.teachers.gold.GoldTeacher"
    assert flat["data.seed"] == cfg.seed  # ${seed} resolved
    assert flat["evaluation.ks"] == [1, 5, 20, 100]  # lists stay values
    assert not any(key.startswith("hydra") for key in flat)
    assert not any(isinstance(value, dict) and value for value in flat.values())

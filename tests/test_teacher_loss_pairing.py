"""Each teacher trains with its own loss unless told otherwise; a pair that cannot train fails before any work."""

from __future__ import annotations

import pytest

from ragdistill.candidates.bm25 import BM25Candidates
from ragdistill.pipeline import train
from ragdistill.utils.errors import ConfigError

NATURAL_LOSS = {
    "gold": "infonce",
    "lm_likelihood": "kl",
    "attention": "kl",
    "aar": "multi_positive_infonce",
    "llm_ranking": "listmle",
    "intermediate": "kl",
    "g2r": "kl_multi_positive_infonce",
}
"""The teacher table's "typical loss": what each teacher's paper trains the retriever with."""


@pytest.mark.parametrize(("teacher", "loss"), NATURAL_LOSS.items())
def test_a_teacher_without_a_loss_trains_with_its_own(compose_cfg, teacher, loss):
    cfg = compose_cfg("config", [f"teacher={teacher}"])
    assert cfg.hydra.runtime.choices.loss == loss
    assert compose_cfg("config", [f"teacher={teacher}", "loss=listnet"]).hydra.runtime.choices.loss == "listnet"


@pytest.mark.parametrize(
    ("overrides", "loss"),
    [
        ([], "infonce"),
        (["experiment=replug_lsr"], "kl"),
        (["experiment=aar"], "multi_positive_infonce"),
        (["experiment=aar", "loss=kl"], "kl"),
        (["+sweep=teacher_x_loss"], "infonce"),
    ],
)
def test_experiment_files_and_the_command_line_choose_over_the_teacher(compose_cfg, overrides, loss):
    assert compose_cfg("config", overrides).hydra.runtime.choices.loss == loss


@pytest.mark.parametrize(
    "overrides",
    [
        ["teacher=attention", "loss=infonce"],
        ["teacher=lm_likelihood", "loss=multi_positive_infonce"],
        ["teacher=intermediate", "loss=infonce"],
        ["teacher=llm_ranking", "loss=kl_infonce"],
    ],
)
def test_a_contrastive_loss_with_a_grading_teacher_fails_before_any_work(compose_cfg, monkeypatch, overrides):
    def expensive(*args, **kwargs):
        raise AssertionError("the first stage started: the pairing was checked too late")

    monkeypatch.setattr(BM25Candidates, "fit", expensive)
    cfg = compose_cfg("config", ["data=fixture", *overrides])
    with pytest.raises(ConfigError, match=r"^loss <\w+> trains on positives, but teacher <\w+> marks none"):
        train(cfg)


def test_a_teacher_that_marks_positives_may_train_a_distillation_loss(compose_cfg, monkeypatch):
    class Reached(Exception):
        pass

    def first_stage(*args, **kwargs):
        raise Reached

    monkeypatch.setattr(BM25Candidates, "fit", first_stage)
    with pytest.raises(Reached):
        train(compose_cfg("config", ["data=fixture", "teacher=gold", "loss=kl"]))


def test_experiment_aar_is_the_papers_recipe(compose_cfg):
    """AAR (arXiv:2305.17331): human ∪ the source LM's top-2, candidates and negatives from the base retriever."""
    cfg = compose_cfg("config", ["experiment=aar"])
    assert cfg.hydra.runtime.choices.candidates == "dense"  # the base retriever's top-K, not BM25's
    assert cfg.teacher.use_human_positives is True and cfg.teacher.top_n == 2
    assert cfg.teacher.refresh_every_n_steps == 0  # negatives from the base retriever, never re-mined
    assert cfg.teacher.drop_answer_negatives is False
    assert cfg.datamodule.positives_per_group is None  # every positive of a question in its group


def test_the_label_free_ablation_reads_no_label(compose_cfg):
    cfg = compose_cfg("config", ["experiment=aar_label_free"])
    assert cfg.teacher.use_human_positives is False
    assert cfg.teacher.drop_answer_negatives is False  # no answer-string filter either
    assert "no_labels" in cfg.tags and "no_labels" not in compose_cfg("config", ["experiment=aar"]).tags

"""Every data format trains and evaluates from one command: the fixture written in each, a short run on each."""

from __future__ import annotations

import pytest

from ragdistill.data.convert import WRITERS, tsv_safe
from ragdistill.data.fixture import load_fixture
from ragdistill.data.irds import register_msmarco_layout
from ragdistill.pipeline import train

pytestmark = pytest.mark.pipeline  # end-to-end runs: `make test-fast` leaves them out

SHORT = [
    "+trainer.max_steps=2",
    "datamodule.batch_size=8",
    "datamodule.val_size=0",
    "optimized_metric=null",  # the default optimises val/..., which a run without held-out questions lacks
    "evaluation.bm25_baseline=false",
    "evaluation.fusion=none",
    "evaluation.save_index=false",
    "logger=csv",
]


@pytest.mark.parametrize("fmt", [*WRITERS, "ir_datasets"])
def test_each_format_trains_and_evaluates_from_one_command(fmt, tmp_path, compose_at) -> None:
    data, _ = tsv_safe(load_fixture(n_train=24, n_eval=20))
    overrides = WRITERS["msmarco" if fmt == "ir_datasets" else fmt](data, tmp_path / fmt)
    if fmt == "ir_datasets":  # one id per split over the same documents
        evaluation = register_msmarco_layout(f"ragdistill-pipeline/{tmp_path.name}/dev", tmp_path / fmt, "dev")
        training = register_msmarco_layout(f"ragdistill-pipeline/{tmp_path.name}/train", tmp_path / fmt, "train")
        overrides = ["data=ir_datasets", f"data.id={evaluation}", f"data.train_id={training}"]
    metrics, objects = train(compose_at("config", [*overrides, *SHORT], tmp_path / "run"))
    assert metrics["train/questions"] == 24.0
    assert objects["trainer"].global_step == 2
    assert metrics["test/questions"] == 20.0 and 0.0 <= metrics["test/gold/recall@5"] <= 1.0
    assert (tmp_path / "run" / "runs" / "test.run").stat().st_size > 0

"""A new teacher and a new loss need one module and one YAML file each, and no edit anywhere else.

Both live in a temporary folder outside the package (a module on ``sys.path`` and a config dir added with
``hydra.searchpath``), exactly as a user would add them; the fixture pipeline then trains with them.
"""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest

from ragdistill.pipeline import train

pytestmark = pytest.mark.pipeline  # end-to-end runs: `make test-fast` leaves them out

EXTENSION = '''
"""A user's teacher and loss, written against the public contracts only."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ragdistill.data.ranking import RankedList
from ragdistill.data.schemas import Question, RetrievalData
from ragdistill.data.signal import TeacherSignal
from ragdistill.losses.base import LossInputs, ScoreLoss
from ragdistill.losses.masking import judged_columns, resolve_mask
from ragdistill.teachers.base import Teacher


class OverlapTeacher(Teacher):
    """Grades each candidate by how many of the question's words it contains."""

    def __init__(self, num_candidates: int = 5) -> None:
        self.num_candidates = num_candidates
        self.scored = 0

    def score(self, questions: list[Question], candidates: dict[str, RankedList], data: RetrievalData):
        signals = []
        for question in questions:
            ids = candidates[question.id].ids[: self.num_candidates]
            words = set(question.text.lower().split())
            scores = [float(len(words & set(data.passage(pid).text.lower().split()))) for pid in ids]
            signals.append(TeacherSignal(question.id, list(ids), np.asarray(scores, dtype=np.float32)))
        self.scored += len(signals)
        return signals

    def metrics(self) -> dict[str, float]:
        return {"teacher/overlap_scored": float(self.scored)}


class BestOverRestHinge(ScoreLoss):
    """max(0, margin - (s_best - s_j)) over the judged candidates j, best = the teacher's top candidate."""

    reads_teacher_scores = True
    calls = 0

    def __init__(self, margin: float = 0.1) -> None:
        super().__init__()
        self.margin = margin

    def compute_loss(self, inputs: LossInputs) -> Tensor:
        type(self).calls += 1
        teacher = inputs.teacher
        judged = judged_columns(teacher, resolve_mask(inputs.mask, inputs.student_scores))
        best = torch.where(judged, teacher, torch.full_like(teacher, -torch.inf)).argmax(dim=1, keepdim=True)
        gap = inputs.student_scores.gather(1, best) - inputs.student_scores  # [B, N]
        hinge = (self.margin - gap).clamp(min=0) * judged
        return hinge.sum() / judged.sum().clamp(min=1)
'''


@pytest.fixture
def user_extension(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The user's module on ``sys.path`` and their config dir; returns the config dir."""
    code = tmp_path / "code"
    code.mkdir()
    (code / "my_extension.py").write_text(EXTENSION)
    monkeypatch.syspath_prepend(str(code))
    conf = tmp_path / "conf"
    (conf / "teacher").mkdir(parents=True)
    (conf / "loss").mkdir()
    (conf / "teacher" / "overlap.yaml").write_text(
        textwrap.dedent(
            """\
            defaults:
              - override /loss@_global_.loss: best_over_rest
              - _self_

            _target_: my_extension.OverlapTeacher
            num_candidates: 5
            """
        )
    )
    (conf / "loss" / "best_over_rest.yaml").write_text("_target_: my_extension.BestOverRestHinge\nmargin: 0.2\n")
    yield conf
    sys.modules.pop("my_extension", None)


def test_a_teacher_and_a_loss_from_outside_the_package_train_the_fixture(user_extension, compose_cfg):
    """Selected by name like the shipped ones (the teacher's YAML picks its loss); no file of the project edited."""
    cfg = compose_cfg(
        "config",
        [
            "experiment=fixture_smoke",
            "trainer.max_epochs=1",
            f"hydra.searchpath=[file://{user_extension}]",
            "teacher=overlap",
        ],
    )
    assert cfg.loss._target_ == "my_extension.BestOverRestHinge"  # chosen by the teacher's own YAML

    metrics, _ = train(cfg)

    module = sys.modules["my_extension"]
    assert module.BestOverRestHinge.calls > 0
    assert metrics["teacher/overlap_scored"] >= metrics["train/questions"] > 0  # train + validation questions
    assert 0 <= metrics["test/gold/recall@5"] <= 1
    written = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())
    assert written["teacher/overlap_scored"] == metrics["teacher/overlap_scored"]

"""Intermediate Distillation end to end with tiny models: stage 0 cached, the ranker trained once and reused."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch
from scipy.stats import kendalltau

from ragdistill.data.ranking import RankedList
from ragdistill.data.schemas import Passage, Question, RetrievalData
from ragdistill.data.signal import TeacherSignal
from ragdistill.losses.listmle import list_mle
from ragdistill.pipeline import train
from ragdistill.teachers.base import Teacher
from ragdistill.teachers.intermediate import (
    IntermediateTeacher,
    _agreement,
    ranker_overfit_warning,
    uniform_list_mle,
)


def test_agreement_compares_orders_on_the_same_candidates():
    llm = [TeacherSignal("q", ["a", "b", "c"], np.array([3.0, 2.0, 1.0], dtype=np.float32))]
    same = [TeacherSignal("q", ["c", "a", "b"], np.array([0.1, 0.9, 0.5], dtype=np.float32))]
    reversed_ = [TeacherSignal("q", ["a", "b", "c"], np.array([1.0, 2.0, 3.0], dtype=np.float32))]
    assert _agreement(llm, same) == {"ranker/top1_agrees": 1.0, "ranker/held_out": 1.0, "ranker/kendall_tau": 1.0}
    assert _agreement(llm, reversed_)["ranker/kendall_tau"] == pytest.approx(-1.0)
    assert _agreement(llm, reversed_)["ranker/top1_agrees"] == 0.0


@pytest.mark.pipeline
def test_intermediate_trains_the_ranker_once_and_distils_its_scores(
    tmp_path, compose_at, tiny_lm_dir, tiny_encoder_dir, monkeypatch
):
    overrides = [
        "experiment=fixture_smoke",
        "logger=csv",
        "teacher=intermediate",
        "lm=hf",
        f"lm.path={tiny_lm_dir}",
        f"retriever.path={tiny_encoder_dir}",
        f"teacher.ranker_path={tiny_encoder_dir}",
        "teacher.source.num_candidates=4",
        "teacher.source.max_passage_tokens=48",
        "teacher.source.precision=32-true",
        "teacher.precision=32-true",
        "teacher.max_length=64",
        "teacher.val_size=4",
        "loss=kl",
        "datamodule.group_size=null",
        "trainer.max_epochs=1",
        "+trainer.max_steps=2",
        "evaluate=false",
    ]
    first_cfg = compose_at("config", overrides, tmp_path / "first")
    first_cfg.paths.cache_dir = str(tmp_path / "cache")
    scored_by_ranker: list[int] = []
    score = IntermediateTeacher._score

    def counting_score(self, ranker, signals, data):
        scored_by_ranker.append(len(signals))
        return score(self, ranker, signals, data)

    monkeypatch.setattr(IntermediateTeacher, "_score", counting_score)
    first, objects = train(first_cfg)
    # one ranker pass over every training question: the held-out questions' agreement reuses stage 2's scores
    assert scored_by_ranker == [len(objects["signals"])]
    assert first["ranker/held_out"] == 4
    assert first["ranker/uniform_val_loss"] > 0  # the bar the overfit warning compares ranker/val_loss with
    assert first["ranker/reused"] == 0.0 and first["runtime/ranker_fit_s"] > 0
    assert -1.0 <= first["ranker/kendall_tau"] <= 1.0 and 0.0 <= first["ranker/top1_agrees"] <= 1.0
    signals = objects["signals"]
    assert signals and all(len(s.candidate_ids) == 4 and np.isfinite(s.scores).all() for s in signals)
    assert len(list((tmp_path / "cache" / "rankers").iterdir())) == 1

    second_cfg = compose_at("config", [*overrides, "loss=listnet"], tmp_path / "second")  # a loss sweep
    second_cfg.paths.cache_dir = str(tmp_path / "cache")
    second, again = train(second_cfg)
    assert second["teacher/cache_shards_reused"] == second["teacher/cache_shards_total"]  # stage 0 not rerun
    assert second["ranker/reused"] == 1.0  # stage 1 not retrained
    assert [s.scores.tolist() for s in again["signals"]] == [s.scores.tolist() for s in signals]

    # a flipped byte in the cached ranker's weights: detected by its manifest, the ranker retrained the same
    (ranker_dir,) = (tmp_path / "cache" / "rankers").iterdir()
    weights = ranker_dir / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0xFF
    weights.write_bytes(bytes(data))
    third_cfg = compose_at("config", [*overrides, "loss=listnet"], tmp_path / "third")
    third_cfg.paths.cache_dir = str(tmp_path / "cache")
    third, retrained = train(third_cfg)
    assert third["ranker/reused"] == 0.0
    assert [s.scores.tolist() for s in retrained["signals"]] == [s.scores.tolist() for s in signals]

    # the LLM ranks only the first 20 questions (a prefix: its cached shards are reused); the ranker
    # still labels every training question
    few_cfg = compose_at("config", [*overrides, "teacher.llm_questions=20"], tmp_path / "few")
    few_cfg.paths.cache_dir = str(tmp_path / "cache")
    few, few_objects = train(few_cfg)
    assert few["ranker/llm_questions"] == 20 and few["ranker/train_questions"] == 16  # 4 held out
    assert few.get("teacher/passages", 0) <= 4 * 20  # the LLM read at most the 20 questions' candidates
    assert {s.qid for s in few_objects["signals"]} == {s.qid for s in signals}
    assert few["ranker/reused"] == 0.0  # a different stage 0 set: a different ranker
    assert few["ranker/epochs"] == 1

    # min_steps holds the ranker's training length across budgets: 16 questions in batches of 8 are 2 steps
    # an epoch, so 5 steps take 3 epochs (a new ranker); a min_steps one epoch meets is the same ranker
    longer_cfg = compose_at("config", [*overrides, "teacher.llm_questions=20", "teacher.min_steps=5"], tmp_path / "l")
    longer_cfg.paths.cache_dir = str(tmp_path / "cache")
    longer, _ = train(longer_cfg)
    assert longer["ranker/epochs"] == 3 and longer["ranker/reused"] == 0.0
    met_cfg = compose_at("config", [*overrides, "teacher.llm_questions=20", "teacher.min_steps=2"], tmp_path / "m")
    met_cfg.paths.cache_dir = str(tmp_path / "cache")
    met, _ = train(met_cfg)
    assert met["ranker/epochs"] == 1 and met["ranker/reused"] == 1.0  # the "few" run's ranker

    # stage 2 over fewer candidates than the LLM ranked: the held-out questions are scored over the LLM's own
    scored_by_ranker.clear()
    narrow_cfg = compose_at("config", [*overrides, "teacher.num_candidates=3"], tmp_path / "narrow")
    narrow_cfg.paths.cache_dir = str(tmp_path / "cache")
    narrow, narrow_objects = train(narrow_cfg)
    assert all(len(s.candidate_ids) == 3 for s in narrow_objects["signals"])
    assert scored_by_ranker == [len(narrow_objects["signals"]), 4] and narrow["ranker/held_out"] == 4

    # top-k ListMLE for the ranker: stage 0 reused, a new ranker (its own cache entry) trained on the top 2
    rankers_before = len(list((tmp_path / "cache" / "rankers").iterdir()))
    top2_cfg = compose_at("config", [*overrides, "teacher.ranker_top_k=2"], tmp_path / "top2")
    top2_cfg.paths.cache_dir = str(tmp_path / "cache")
    top2, top2_objects = train(top2_cfg)
    assert top2["teacher/cache_shards_reused"] == top2["teacher/cache_shards_total"]
    assert top2["ranker/reused"] == 0.0
    assert len(list((tmp_path / "cache" / "rankers").iterdir())) == rankers_before + 1
    assert [s.scores.tolist() for s in top2_objects["signals"]] != [s.scores.tolist() for s in signals]


def test_a_ranker_top_k_below_one_is_refused_by_its_config_key(tiny_llama):
    from ragdistill.teachers.lm_likelihood import LMLikelihoodTeacher

    with pytest.raises(ValueError, match=r"teacher\.ranker_top_k"):
        IntermediateTeacher(LMLikelihoodTeacher(tiny_llama), ranker_top_k=0)
    with pytest.raises(ValueError, match=r"teacher\.min_steps"):
        IntermediateTeacher(LMLikelihoodTeacher(tiny_llama), min_steps=0)


def test_uniform_list_mle_is_the_loss_of_equal_scores():
    """The held-out bar the overfit warning uses is ListMLE itself, at temperature 1, on a ranker that says nothing."""
    nan = float("nan")
    teacher = torch.tensor([[3.0, 1.0, 2.0, 0.5, nan], [0.2, 0.9, 0.1, 0.4, 0.3]])
    judged = ~torch.isnan(teacher)  # the first question's LLM judged only 4 of its 5 candidates
    signals = [
        TeacherSignal("q0", list("abcd"), teacher[0, :4].numpy()),
        TeacherSignal("q1", list("abcde"), teacher[1].numpy()),
    ]
    for top_k in (None, 2):
        equal = list_mle(torch.zeros_like(teacher), teacher.nan_to_num(0.0), judged, temperature=1.0, top_k=top_k)
        assert uniform_list_mle(signals, top_k) == pytest.approx(float(equal))
    assert uniform_list_mle(signals[1:], 2) == pytest.approx(math.log(5) + math.log(4))


def test_ranker_overfit_warning_only_when_held_out_loss_exceeds_uniform():
    figures = {"ranker/uniform_val_loss": 4.50, "ranker/train_loss": 0.40, "ranker/train_questions": 80.0}
    warning = ranker_overfit_warning(figures | {"ranker/val_loss": 10.47})
    assert warning is not None and "memorised its 80 training orders" in warning and "10.470" in warning
    assert ranker_overfit_warning(figures | {"ranker/val_loss": 4.44}) is None
    assert ranker_overfit_warning({"ranker/val_loss": 10.0}) is None  # no held-out questions: no bar


FILLER = ["apple", "river", "stone", "cloud", "table", "green", "music", "paper", "window", "garden", "lamp", "chair"]
MARKER = "zebra"


def _marker_pools(questions: int, k: int, seed: int):
    """Questions whose K candidates hold 0..K-1 copies of a marker word among ten filler words, in shuffled order.

    Returns the data, the questions, their candidates and each passage's marker count (the learnable rule).
    """
    rng = random.Random(seed)
    corpus, asked, candidates, counts = [], [], {}, {}
    for qi in range(questions):
        copies = list(range(k))
        rng.shuffle(copies)
        ids = []
        for ci, count in enumerate(copies):
            words = [rng.choice(FILLER) for _ in range(10)]
            for position in rng.sample(range(10), count):
                words[position] = MARKER
            pid = f"q{qi}-p{ci}"
            corpus.append(Passage(pid, " ".join(words)))
            ids.append(pid)
            counts[pid] = count
        question = Question(f"q{qi}", f"which passage is question {qi} about?")
        asked.append(question)
        candidates[question.id] = RankedList(ids, np.zeros(k))
    return RetrievalData("markers", corpus, asked, []), asked, candidates, counts


class _NoSource(Teacher):
    """Stage 0 comes from the test itself: ``derive`` is handed the orders, the source is never asked."""

    def score(self, questions, candidates, data):  # pragma: no cover - never called
        raise AssertionError("derive() must not rescore stage 0")


def _distil_marker_rule(tmp_path, tiny_encoder_dir, direction: float):
    """Train the ranker on stage-0 orders ``direction × marker count`` (48 questions); score 40 unseen questions.

    Returns the teacher's figures and, over the unseen questions, the mean Kendall τ between the ranker's
    scores and the marker counts, and how often its top candidate is the one with the most markers.
    """
    k, ranked, total = 4, 48, 88
    data, questions, candidates, counts = _marker_pools(total, k, seed=0)
    stage0 = [
        TeacherSignal(q.id, candidates[q.id].ids, np.array([direction * counts[p] for p in candidates[q.id].ids]))
        for q in questions[:ranked]
    ]
    teacher = IntermediateTeacher(
        _NoSource(),
        num_candidates=k,
        ranker_path=str(tiny_encoder_dir),
        max_length=32,
        epochs=3,
        batch_size=8,
        lr=3e-3,
        val_size=8,
        precision="32-true",
        accelerator="cpu",
        cache_dir=str(tmp_path),
    )
    scored = teacher.derive(stage0, questions, candidates, data).signals
    assert [s.qid for s in scored] == [q.id for q in questions]  # stage 2 labels every question
    unseen = scored[ranked:]  # neither trained on nor held out: new passages, same rule
    taus = [kendalltau([counts[pid] for pid in s.candidate_ids], s.scores).statistic for s in unseen]
    top1 = [counts[s.candidate_ids[int(np.argmax(s.scores))]] == k - 1 for s in unseen]
    return teacher.metrics(), float(np.mean(taus)), float(np.mean(top1))


def test_the_ranker_learns_a_known_stage0_order(tmp_path, tiny_encoder_dir):
    """Stage 0 ranks passages by how many marker words they hold; the ranker must rank unseen pools the same way."""
    figures, tau, top1 = _distil_marker_rule(tmp_path, tiny_encoder_dir, direction=1.0)
    assert tau > 0.6 and top1 > 0.8, (tau, top1)
    assert figures["ranker/kendall_tau"] > 0.6 and figures["ranker/top1_agrees"] > 0.8  # agrees with stage 0
    assert figures["ranker/val_loss"] < figures["ranker/uniform_val_loss"] / 2  # far better than saying nothing


def test_a_reversed_stage0_order_gives_a_reversed_ranker(tmp_path, tiny_encoder_dir):
    """The same pools, stage 0 now preferring fewer markers: the ranker follows stage 0, against the marker rule."""
    figures, tau, top1 = _distil_marker_rule(tmp_path, tiny_encoder_dir, direction=-1.0)
    assert tau < -0.6 and top1 < 0.2, (tau, top1)
    assert figures["ranker/kendall_tau"] > 0.6 and figures["ranker/top1_agrees"] > 0.8  # still agrees with stage 0

import random

import numpy as np
import pytest
import torch

from ragdistill.data.distillation_datamodule import DistillationDataModule, EpochSampler, select_group
from ragdistill.data.schemas import Passage, Question, RetrievalData
from ragdistill.data.signal import TeacherSignal


def _data(n_questions=10):
    corpus = [Passage(f"p{i}", f"passage {i}") for i in range(8)]
    train = [Question(f"q{i}", f"question {i}", (), ("p0",)) for i in range(n_questions)]
    return RetrievalData("toy", corpus, train, [])


def _signal(qid, n=6, positives=("p0",)):
    ids = [f"p{i}" for i in range(n)]
    scores = np.array([1.0 if pid in positives else 0.0 for pid in ids], dtype=np.float32)
    return TeacherSignal(qid, ids, scores, positive_ids=positives)


def test_select_group_puts_a_positive_first():
    rng = random.Random(0)
    for _ in range(20):
        chosen = select_group(_signal("q"), 4, rng)
        assert chosen[0] == 0 and len(chosen) == 4 and len(set(chosen)) == 4


def test_select_group_without_positives_keeps_judged_order():
    signal = TeacherSignal("q", ["a", "b", "c"], np.array([-np.inf, 0.3, 0.1]))
    assert select_group(signal, 2, random.Random(0)) == [1, 2]


def test_batches_are_padded_and_reproducible():
    data = _data()
    signals = [_signal(q.id, n=2 if i == 0 else 6) for i, q in enumerate(data.train)]

    def first_batch():
        module = DistillationDataModule(signals, data, batch_size=10, group_size=4, val_size=0, seed=3)
        return next(iter(module.train_dataloader()))

    batch = first_batch()
    assert batch["teacher_scores"].shape == (10, 4)
    assert len(batch["passages"]) == 40
    padded_row = batch["qids"].index("q0")
    assert batch["group_mask"][padded_row].tolist() == [True, True, False, False]
    assert batch["teacher_scores"][padded_row, 2].item() == float("-inf")
    again = first_batch()
    assert batch["pids"] == again["pids"] and torch.equal(batch["positive_mask"], again["positive_mask"])


def test_validation_split_is_held_out():
    data = _data(50)
    module = DistillationDataModule([_signal(q.id) for q in data.train], data, val_size=5, seed=0)
    train_ids = {s.qid for s in module.train_signals}
    val_ids = {s.qid for s in module.val_signals}
    assert len(val_ids) == 5 and not train_ids & val_ids and len(train_ids) == 45


def test_empty_signals_and_unknown_questions_raise():
    data = _data()
    with pytest.raises(ValueError, match="no teacher signals"):
        DistillationDataModule([], data)
    module = DistillationDataModule([_signal("nope")], data, val_size=0)
    with pytest.raises(ValueError, match="unknown training questions"):
        module.train_dataloader()


def test_new_negatives_each_epoch_but_fixed_validation():
    data = _data(20)
    signals = [_signal(q.id, n=8) for q in data.train]
    module = DistillationDataModule(signals, data, batch_size=20, group_size=3, val_size=4, seed=0)

    def epoch_groups(epoch):
        loader = module.train_dataloader()
        loader.sampler.set_epoch(epoch)
        batch = next(iter(loader))
        return dict(zip(batch["qids"], map(tuple, batch["pids"]), strict=True))

    assert epoch_groups(0) == epoch_groups(0)
    assert epoch_groups(0) != epoch_groups(1)
    val = [next(iter(module.val_dataloader()))["pids"] for _ in range(2)]
    assert val[0] == val[1]


def test_group_size_none_takes_every_candidate_and_pads_to_the_batch():
    data = _data(4)
    signals = [_signal(q.id, n=3 + i) for i, q in enumerate(data.train)]
    module = DistillationDataModule(signals, data, batch_size=4, group_size=None, val_size=0, seed=0)
    batch = next(iter(module.train_dataloader()))
    assert batch["teacher_scores"].shape == (4, 6)
    assert sorted(batch["group_mask"].sum(dim=1).tolist()) == [3, 4, 5, 6]


def test_ddp_ranks_share_each_epoch_and_still_get_new_negatives():
    data = _data(20)
    signals = [_signal(q.id, n=8) for q in data.train]
    module = DistillationDataModule(signals, data, batch_size=20, group_size=3, val_size=4, seed=0)
    dataset = module.train_dataloader().dataset

    def epoch_order(epoch, replicas, rank):
        sampler = EpochSampler(dataset, seed=0, num_replicas=replicas, rank=rank)
        sampler.set_epoch(epoch)
        return list(sampler)

    for epoch in (0, 1):
        ranks = [epoch_order(epoch, 2, rank) for rank in (0, 1)]
        alone = epoch_order(epoch, 1, 0)
        assert sorted(alone) == list(range(16))  # 16 training signals
        assert ranks == [alone[0::2], alone[1::2]]  # the one-process order, dealt out
        assert dataset.epoch == epoch  # negatives follow the epoch on every rank
    assert epoch_order(0, 2, 0) != epoch_order(1, 2, 0)


def _graded(qid, n=10):
    """A teacher without positives that scored ``n`` candidates (an LM's likelihoods)."""
    return TeacherSignal(qid, [f"p{i % 8}x{i}" for i in range(n)], -np.arange(n, dtype=np.float32))


def _graded_data(n_questions=10, n=10):
    corpus = [Passage(f"p{i % 8}x{i}", f"passage {i}") for i in range(n)]
    return RetrievalData("toy", corpus, [Question(f"q{i}", f"question {i}", (), ()) for i in range(n_questions)], [])


def test_a_loss_that_learns_scores_gets_the_whole_scored_pool_by_default():
    data = _graded_data()
    signals = [_graded(q.id) for q in data.train]
    module = DistillationDataModule(signals, data, batch_size=4, val_size=0, reads_teacher_scores=True)
    batch = next(iter(module.train_dataloader()))
    assert batch["teacher_scores"].shape == (4, 10)  # all K = 10, not a cut to 2


def test_a_single_positive_loss_gets_one_positive_and_one_hard_negative_by_default():
    data = _data()
    signals = [_signal(q.id, positives=("p0", "p1")) for q in data.train]
    module = DistillationDataModule(
        signals, data, batch_size=4, val_size=0, reads_teacher_scores=False, single_positive=True
    )
    batch = next(iter(module.train_dataloader()))
    assert batch["teacher_scores"].shape == (4, 2)
    assert batch["positive_mask"].sum(dim=1).tolist() == [1, 1, 1, 1]
    several = DistillationDataModule(signals, data, batch_size=4, val_size=0, reads_teacher_scores=False)
    batch = next(iter(several.train_dataloader()))  # a multi-positive loss: every positive, every candidate
    assert batch["positive_mask"].sum(dim=1).tolist() == [2, 2, 2, 2] and batch["teacher_scores"].shape == (4, 6)


def test_cutting_a_scored_pool_is_logged_with_what_was_cut(caplog):
    data = _graded_data()
    signals = [_graded(q.id) for q in data.train]
    with caplog.at_level("WARNING"):
        DistillationDataModule(signals, data, batch_size=4, group_size=2, val_size=0, reads_teacher_scores=True)
    assert "datamodule.group_size=2 keeps 2 of the up to 10 candidates the teacher scored for 10 of 10" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        DistillationDataModule(signals, data, batch_size=4, group_size=10, val_size=0, reads_teacher_scores=True)
    assert "group_size" not in caplog.text

from ragdistill.models.lm_inputs import LMExample
from ragdistill.models.lm_predict_module import bucket_batches, collate_examples


def test_buckets_cover_every_index_once_within_the_token_budget():
    lengths = [5, 300, 40, 41, 39, 1000, 2, 38]
    batches = bucket_batches(lengths, max_tokens=100, max_size=3)
    flat = [i for batch in batches for i in batch]
    assert sorted(flat) == list(range(len(lengths)))
    assert batches[0] == [5]  # longest first, alone (longer than the budget)
    for batch in batches:
        assert len(batch) <= 3
        assert len(batch) == 1 or max(lengths[i] for i in batch) * len(batch) <= 100
    widths = [max(lengths[i] for i in batch) for batch in batches]
    assert widths == sorted(widths, reverse=True)


def test_collate_points_each_target_token_at_the_position_that_predicts_it():
    examples = [
        LMExample("a", [1, 2, 3], [7, 8], [(0, 2)], (2, 3)),
        LMExample("b", [4], [9], [(0, 1)], (1, 1)),
    ]
    batch = collate_examples(examples, pad_id=0, seq2seq=False)
    assert batch["input_ids"].tolist() == [[1, 2, 3, 7, 8], [4, 9, 0, 0, 0]]
    assert batch["target_positions"].tolist() == [[2, 3], [0, 0]]
    assert batch["target_mask"].tolist() == [[True, True], [True, False]]
    assert batch["n_passages"] == 2
    seq2seq = collate_examples(examples, pad_id=0, seq2seq=True)
    assert seq2seq["input_ids"].tolist() == [[1, 2, 3], [4, 0, 0]]
    assert seq2seq["target_positions"].tolist() == [[0, 1], [0, 0]]

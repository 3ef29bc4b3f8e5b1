import pytest
from omegaconf import OmegaConf

from ragdistill.evaluation.retrieval import check_evaluation_settings, needs_bm25


def _settings(**changes):
    base = {"ks": [1, 5, 20, 100], "depth": 100, "bm25_baseline": True, "fusion": "rrf"}
    return OmegaConf.create(base | changes)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"ks": [0, 5]}, "evaluation.ks"),
        ({"ks": []}, "evaluation.ks"),
        ({"depth": 0}, "evaluation.depth"),
        ({"fusion": "borda"}, "evaluation.fusion must be one of"),
    ],
)
def test_bad_evaluation_settings_are_named(changes, message):
    with pytest.raises(ValueError, match=message):
        check_evaluation_settings(_settings(**changes))


def test_bm25_is_needed_for_the_baseline_or_for_fusion():
    check_evaluation_settings(_settings(fusion="none"))
    assert needs_bm25(_settings(bm25_baseline=False, fusion="wsum"))
    assert not needs_bm25(_settings(bm25_baseline=False, fusion="none"))
    assert not needs_bm25(_settings(bm25_baseline=False, fusion=None))

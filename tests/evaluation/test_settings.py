import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
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


def test_bad_settings_are_config_errors_so_the_cli_prints_one_line():
    from ragdistill.utils.errors import ConfigError

    with pytest.raises(ConfigError, match=r"^evaluation\.depth must be an integer >= 1, got 0$"):
        check_evaluation_settings(_settings(depth=0))
    with pytest.raises(ConfigError, match=r"evaluation\.encode_quantize"):
        check_evaluation_settings(_settings(encode_quantize="int4"))
    with pytest.raises(ConfigError, match=r"^evaluation\.encode_backend must be one of \['torch', 'onnx'"):
        check_evaluation_settings(_settings(encode_backend="tensorrt"))
    with pytest.raises(ConfigError, match=r"^evaluation\.encode_quantize must be 'none' with backend 'openvino'"):
        check_evaluation_settings(_settings(encode_backend="openvino", encode_quantize="int8"))


@pytest.mark.parametrize(("ks", "depth"), [([1, 500], 100), ([101], 100), ([1, 5, 21], 20)])
def test_a_cut_off_beyond_the_search_depth_is_refused(ks, depth):
    """recall@500 of a depth-100 search would be a figure nobody measured (it was reported, issue 29)."""
    with pytest.raises(ValueError, match=rf"evaluation\.ks=.* goes beyond evaluation\.depth={depth}.* to {max(ks)}"):
        check_evaluation_settings(_settings(ks=ks, depth=depth))
    check_evaluation_settings(_settings(ks=ks, depth=max(ks)))


@pytest.mark.parametrize(
    ("name", "held_out", "problem"),
    [
        ("val/gold/recall@5", True, None),
        ("test/gold/mrr@10", True, None),
        ("test_bm25/answer/ndcg@10", True, None),
        ("test_fusion_rrf/gold/recall@100", True, None),
        ("test/questions", True, None),
        ("teacher/top1_gold", True, None),  # not an evaluation figure: not judged
        ("test/rag/f1", True, None),
        ("val/gold/recall@5", False, "no val/... figures"),
        ("val/gold/recall@7", True, "not gold/recall@7"),
        ("test/gold/mrr@5", True, "not gold/mrr@5"),
        ("test_fusion_wsum/gold/recall@5", True, "no test_fusion_wsum/... figures"),
    ],
)
def test_metric_problem_names_what_the_evaluation_cannot_make(name, held_out, problem):
    from ragdistill.evaluation.retrieval import metric_problem

    found = metric_problem(name, _settings(), held_out=held_out)
    assert (found is None) if problem is None else (problem in found)


@settings(max_examples=200, deadline=None)
@given(
    ks=st.lists(st.integers(min_value=-3, max_value=300), max_size=5),
    depth=st.integers(min_value=-3, max_value=300),
    fusion=st.sampled_from(["none", "rrf", "wsum", "borda", "", None]),
)
def test_the_settings_check_accepts_exactly_what_evaluation_can_measure(ks, depth, fusion):
    """Any ks/depth/fusion: either accepted, and then every cut-off is searched, or one ConfigError line."""
    from ragdistill.utils.errors import ConfigError

    valid = bool(ks) and min(ks) >= 1 and depth >= 1 and max(ks) <= depth and fusion in ("none", "rrf", "wsum", None)
    try:
        check_evaluation_settings(_settings(ks=ks, depth=depth, fusion=fusion))
    except ConfigError as error:
        assert not valid and "\n" not in str(error) and str(error).startswith("evaluation.")
    else:
        assert valid

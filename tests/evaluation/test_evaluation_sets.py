"""Several evaluation sets in one run (``evaluation.sets``): each scored as it would be as the run's own data.

The check of the method: a set's figures under its prefix must equal the ``test/...`` figures of a run
that has the same data as its own ``data=`` (same retriever, same settings). A set scored against the
wrong corpus, the wrong qrels or the main data's questions gives other figures.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ragdistill.pipeline import evaluate
from ragdistill.utils.errors import ConfigError

BEIR = Path(__file__).parents[1] / "fixtures" / "beir"
FAST = ["evaluation.ks=[1,5,10]", "evaluation.depth=10", "evaluation.fusion=none", "logger=csv"]


@pytest.fixture(scope="module")
def fixture_with_beir_set(tmp_path_factory, compose_at):
    run_dir = tmp_path_factory.mktemp("sets") / "run"
    cfg = compose_at(
        "eval",
        ["data=fixture", "+data@evaluation.sets.beir=beir", f"evaluation.sets.beir.path={BEIR}", *FAST],
        run_dir,
    )
    metrics, _ = evaluate(cfg)
    return metrics, run_dir


@pytest.fixture(scope="module")
def beir_alone(tmp_path_factory, compose_at):
    run_dir = tmp_path_factory.mktemp("alone") / "run"
    cfg = compose_at("eval", ["data=beir", f"data.path={BEIR}", *FAST], run_dir)
    metrics, _ = evaluate(cfg)
    return metrics


def test_a_set_is_scored_as_it_would_be_as_the_runs_own_data(fixture_with_beir_set, beir_alone):
    metrics, _ = fixture_with_beir_set
    as_set = {key.removeprefix("beir"): value for key, value in metrics.items() if key.startswith("beir")}
    alone = {key.removeprefix("test"): value for key, value in beir_alone.items() if key.startswith("test")}
    assert as_set.keys() == alone.keys()
    assert "/gold/ndcg@10" in as_set and "_bm25/gold/recall@5" in as_set
    for key, value in alone.items():
        assert as_set[key] == pytest.approx(value, abs=1e-9), key


def test_the_runs_own_data_keeps_its_test_prefix(fixture_with_beir_set):
    metrics, _ = fixture_with_beir_set
    assert metrics["test/questions"] == 60.0  # the fixture's eval questions, not the set's
    assert metrics["beir/questions"] == 6.0


def test_each_set_writes_its_runs_qrels_and_plot_beside_the_main_ones(fixture_with_beir_set):
    metrics, run_dir = fixture_with_beir_set
    runs = {path.name for path in (run_dir / "runs").iterdir()}
    assert {"test.run", "gold.qrels", "beir.run", "beir_bm25.run", "beir_gold.qrels"} <= runs
    assert (run_dir / "recall_at_k_beir.png").stat().st_size > 0
    assert json.loads((run_dir / "metrics.json").read_text())["beir/gold/ndcg@10"] == metrics["beir/gold/ndcg@10"]
    dashboard = (run_dir / "csv" / "metrics.csv").read_text().splitlines()[0].split(",")  # what loggers received
    assert {"beir/gold/ndcg@10", "beir_bm25/gold/recall@5", "test/gold/recall@5"} <= set(dashboard)
    qids = {line.split()[0] for line in (run_dir / "runs" / "beir.run").read_text().splitlines()}
    assert qids == {line.split()[0] for line in (run_dir / "runs" / "beir_gold.qrels").read_text().splitlines()}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["+data@evaluation.sets.test=fixture"], r"evaluation\.sets\.test: a set's name becomes its metric prefix"),
        (["+data@evaluation.sets.test_x=fixture"], r"evaluation\.sets\.test_x: a set's name"),
        (["+evaluation.sets.x=3"], r"evaluation\.sets\.x is not a data config: add one with \+data@"),
        (["+data@evaluation.sets.f=fixture", "+evaluation.sets.f.n_evl=3"], r"evaluation\.sets\.f\.n_evl: .*takes no"),
        (
            ["+data@evaluation.sets.f=fixture", "optimized_metric=f/gold/recall@500"],
            r"optimized_metric='f/gold/recall@500': the evaluation makes gold/",
        ),
        (
            ["+data@evaluation.sets.f=fixture", "optimized_metric=g/gold/recall@5"],
            None,  # a prefix of no set and not test...: not the evaluation's to judge
        ),
    ],
)
def test_bad_sets_are_refused_in_one_line_before_any_work(compose_cfg, overrides, message):
    from ragdistill.config_check import check_run

    cfg = compose_cfg("config", ["data=fixture", *overrides])
    if message is None:
        check_run(cfg)
        return
    with pytest.raises(ConfigError, match=message):
        check_run(cfg)


def test_a_set_without_evaluation_questions_fails_before_training(compose_cfg, tmp_path):
    from ragdistill.pipeline import train

    cfg = compose_cfg("config", ["data=fixture", "+data@evaluation.sets.f=fixture", "evaluation.sets.f.n_eval=0"])
    with pytest.raises(ConfigError, match=r"evaluation\.sets\.f .* has no evaluation questions"):
        train(cfg)
    assert not (tmp_path / "run" / "checkpoints").exists()

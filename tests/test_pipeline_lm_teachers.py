"""LM teachers end to end on the fixture with a tiny LM: teacher figures in metrics.json, the cache reused."""

from __future__ import annotations

import json

import pytest

from ragdistill.pipeline import train

pytestmark = pytest.mark.pipeline  # end-to-end runs: `make test-fast` leaves them out

FAST = [
    "experiment=fixture_smoke",
    "trainer.max_epochs=1",
    "logger=csv",
    "lm=hf",
    "teacher.num_candidates=4",
    "teacher.max_passage_tokens=48",
    "teacher.precision=32-true",
    "datamodule.group_size=null",
    "loss=kl",
    "evaluation.bm25_baseline=false",
    "+trainer.max_steps=2",
]


@pytest.mark.parametrize("teacher", ["lm_likelihood", "attention"])
def test_lm_teacher_trains_and_second_run_reuses_the_cache(
    tmp_path, compose_at, tiny_lm_dir, tiny_encoder_dir, teacher
):
    overrides = [*FAST, f"teacher={teacher}", f"lm.path={tiny_lm_dir}", f"retriever.path={tiny_encoder_dir}"]
    first_dir, second_dir = tmp_path / "first", tmp_path / "second"
    cfg = compose_at("config", overrides, first_dir)
    cfg.paths.cache_dir = str(tmp_path / "cache")
    first, objects = train(cfg)
    assert first["teacher/cache_shards_scored"] == first["teacher/cache_shards_total"] > 0
    assert first["teacher/passages"] == 4 * first["train/questions"] + 4 * (
        len(objects["signals"]) - first["train/questions"]
    )
    assert 0 <= first["teacher/top1_gold"] <= 1 and first["runtime/teacher_passages_per_s"] > 0
    assert 0 <= first["test/gold/recall@5"] <= 1
    assert (first_dir / "retriever").is_dir()

    overrides.append("evaluate=false")  # the reruns check the cache only
    cfg = compose_at("config", overrides, second_dir)
    cfg.paths.cache_dir = str(tmp_path / "cache")
    second, _ = train(cfg)
    assert second["teacher/cache_shards_reused"] == second["teacher/cache_shards_total"]
    assert "teacher/passages" not in second  # the LM read nothing
    assert second["teacher/top1_gold"] == first["teacher/top1_gold"]
    assert json.loads((second_dir / "metrics.json").read_text())["teacher/cache_shards_scored"] == 0

    cfg = compose_at("config", [*overrides, "teacher.max_target_tokens=8"], tmp_path / "third")
    cfg.paths.cache_dir = str(tmp_path / "cache")
    third, _ = train(cfg)
    assert third["teacher/cache_shards_reused"] == 0  # a teacher option changed: rescored


def test_aar_remines_negatives_with_the_retriever_during_training(tmp_path, compose_at, tiny_lm_dir, tiny_encoder_dir):
    from ragdistill.candidates.hard_negatives import HardNegativeRefresh

    overrides = [
        *[o for o in FAST if not o.startswith(("teacher.", "loss=", "datamodule.group_size"))],
        "teacher=aar",
        f"lm.path={tiny_lm_dir}",
        f"retriever.path={tiny_encoder_dir}",
        "teacher.source.num_candidates=4",
        "teacher.source.precision=32-true",
        "teacher.refresh_every_n_steps=1",
        "loss=multi_positive_infonce",
        "datamodule.positives_per_group=null",
        "datamodule.group_size=4",
        "evaluate=false",
    ]
    cfg = compose_at("config", overrides, tmp_path / "run")
    cfg.paths.cache_dir = str(tmp_path / "cache")
    metrics, objects = train(cfg)
    refresh = next(c for c in objects["trainer"].callbacks if isinstance(c, HardNegativeRefresh))
    assert refresh.refreshes >= 1
    before = {s.qid: s for s in objects["signals"]}
    after = objects["trainer"].datamodule.train_signals
    assert any(s.candidate_ids != before[s.qid].candidate_ids for s in after)  # negatives were re-mined
    assert all(s.positive_ids == before[s.qid].positive_ids for s in after)  # positives kept
    assert 0 <= metrics["teacher/top1_gold"] <= 1


def test_aar_reuses_the_scores_of_its_source_teacher_run_alone(tmp_path, compose_at, tiny_lm_dir, tiny_encoder_dir):
    """AAR's source scores are cached under the source's own config: a prior lm_likelihood run pays for both."""
    models = [f"lm.path={tiny_lm_dir}", f"retriever.path={tiny_encoder_dir}", "evaluate=false"]
    alone = compose_at("config", [*FAST, *models, "teacher=lm_likelihood"], tmp_path / "alone")
    alone.paths.cache_dir = str(tmp_path / "cache")
    first, _ = train(alone)
    assert first["teacher/cache_shards_scored"] > 0

    source = [o.replace("teacher.", "teacher.source.") for o in FAST if o.startswith("teacher.")]
    others = [o for o in FAST if not o.startswith(("teacher.", "loss=", "datamodule.group_size"))]
    aar_overrides = [*others, *models, "teacher=aar", *source, "loss=multi_positive_infonce", "datamodule.group_size=4"]
    cfg = compose_at("config", aar_overrides, tmp_path / "aar")
    cfg.paths.cache_dir = str(tmp_path / "cache")
    aar, objects = train(cfg)
    assert (
        aar["teacher/cache_shards_reused"] == aar["teacher/cache_shards_total"] == first["teacher/cache_shards_total"]
    )
    assert "teacher/passages" not in aar  # the LM read nothing
    assert all(s.positive_ids for s in objects["signals"])  # AAR's derivation still ran on the cached scores

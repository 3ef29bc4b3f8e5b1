"""End to end on the shipped SQuAD-dev fixture with the real packaged MiniLM."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from sentence_transformers import SentenceTransformer

from ragdistill.data.ranking import as_run
from ragdistill.evaluation.metrics import evaluate_run
from ragdistill.index.faiss_index import FaissIndex
from ragdistill.pipeline import evaluate, train
from ragdistill.retriever.search import search

pytestmark = pytest.mark.pipeline  # end-to-end runs: `make test-fast` leaves them out

FAST = ["experiment=fixture_smoke", "trainer.max_epochs=1", "logger=csv"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, compose_at):
    run_dir = tmp_path_factory.mktemp("train") / "run"
    cfg = compose_at("config", FAST, run_dir)
    metrics, objects = train(cfg)
    return run_dir, metrics, objects


def test_run_dir_holds_every_artifact(trained):
    run_dir, metrics, _ = trained
    on_disk = json.loads((run_dir / "metrics.json").read_text())
    assert on_disk == pytest.approx(metrics)
    for name in ("run_info.json", "resolved_config.yaml", "recall_at_k.png", "csv/metrics.csv", "diagnostics.png"):
        assert (run_dir / name).stat().st_size > 0, name
    diagnostics = json.loads((run_dir / "diagnostics.json").read_text())
    assert diagnostics["train/loss"] and diagnostics["val/loss"]
    assert all(-1 <= rho <= 1 for rho in diagnostics["val/teacher_student_spearman"].values())
    assert diagnostics["val/teacher_student_spearman"]
    info = json.loads((run_dir / "run_info.json").read_text())
    assert info["packages"]["torch"].startswith("2.13.0") and "commit" in info["git"]
    assert len(FaissIndex.load(run_dir / "index")) == 211


def test_the_run_keeps_one_copy_of_its_weights(trained):
    """retriever/ is the run's weights; no Lightning checkpoint beside it (callbacks=checkpoints adds one)."""
    run_dir, _, _ = trained
    weights = [p for p in run_dir.rglob("*") if p.suffix in {".ckpt", ".safetensors", ".bin", ".pt"}]
    assert [p.relative_to(run_dir).as_posix() for p in weights] == ["retriever/model.safetensors"]


def test_metrics_are_probabilities_with_every_family(trained):
    _, metrics, _ = trained
    for system in ("test", "test_bm25", "test_fusion_rrf"):
        for name in (
            "gold/recall@1",
            "gold/recall@5",
            "gold/recall@20",
            "gold/recall@100",
            "gold/mrr@10",
            "gold/ndcg@10",
            "answer/recall@5",
            "answer/mrr@10",
        ):
            assert 0.0 <= metrics[f"{system}/{name}"] <= 1.0, (system, name)
        assert metrics[f"{system}/gold/recall@1"] <= metrics[f"{system}/gold/recall@20"]
    assert metrics["train/questions"] > 0 and metrics["runtime/fit_s"] > 0


def test_validation_metrics_score_the_training_questions_held_out_from_fitting(trained):
    run_dir, metrics, objects = trained
    held_out = {signal.qid for signal in objects["trainer"].datamodule.val_signals}
    questions = [q for q in objects["data"].train if q.id in held_out]
    assert metrics["val/questions"] == len(questions) > 0
    assert metrics["val/questions"] + metrics["train/questions"] == len(objects["data"].train)
    run = as_run(search(objects["retriever"], FaissIndex.load(run_dir / "index"), questions, 100))
    expected = evaluate_run(run, questions, objects["data"].corpus)
    for name in ("gold/recall@5", "gold/mrr@10", "answer/recall@5"):
        assert metrics[f"val/{name}"] == pytest.approx(expected[name]), name


def test_exported_retriever_loads_in_sentence_transformers_and_matches(trained):
    run_dir, _, objects = trained
    model = SentenceTransformer(str(run_dir / "retriever"), device="cpu")
    texts = ["Who ruled the duchy of Normandy?", "The Normans were in Normandy."]
    retriever = objects["retriever"].eval()
    with torch.no_grad():
        ours = retriever.encode_passages(texts).numpy()
    assert np.allclose(model.encode(texts), ours, atol=1e-5)


def test_training_changed_the_weights(trained):
    from ragdistill.retriever.bi_encoder_module import BiEncoderModule

    _, _, objects = trained
    before = BiEncoderModule().passage_encoder.state_dict()
    after = objects["retriever"].passage_encoder.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_same_command_twice_gives_the_same_metrics(trained, compose_cfg):
    _, first, _ = trained
    second, _ = train(compose_cfg("config", FAST))
    for key, value in first.items():
        if not key.startswith("runtime/"):
            assert second[key] == pytest.approx(value, abs=1e-9), key


def test_eval_entry_scores_an_exported_folder_like_training_did(trained, compose_cfg):
    run_dir, metrics, _ = trained
    cfg = compose_cfg("eval", ["data=fixture", f"retriever.path={run_dir / 'retriever'}"])
    evaluated, _ = evaluate(cfg)
    scored = [key for key in metrics if key.startswith("test")]
    assert scored and all(evaluated[key] == metrics[key] for key in scored)
    assert Path(cfg.paths.output_dir, "metrics.json").exists()


@pytest.mark.parametrize("backend", ["onnx", "openvino"])
def test_an_engine_scores_the_trained_retriever_as_pytorch_does(trained, compose_cfg, backend):
    run_dir = trained[0]
    base = ["data=fixture", f"retriever.path={run_dir / 'retriever'}", "evaluation.precision=32-true"]
    on_torch, _ = evaluate(compose_cfg("eval", base))
    cfg = compose_cfg("eval", [*base, f"evaluation.encode_backend={backend}"])
    on_engine, _ = evaluate(cfg)
    scored = [key for key in on_torch if key.startswith("test/gold/")]
    assert scored and all(on_engine[key] == pytest.approx(on_torch[key], abs=1e-9) for key in scored)
    exports = Path(cfg.evaluation.encode_export_dir)
    assert len(list(exports.iterdir())) == 1  # one export for the corpus and the questions (shared towers)
